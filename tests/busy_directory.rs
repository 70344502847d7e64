//! A bus in a directory where other programs create, write, rename and
//! delete files all the time: consumers (lossy and named ones once they
//! follow their bus file instead of the whole directory) still see every
//! chunk; `stat` says how busy the directory is. (What waiting there costs is measured by
//! `filebus bench --only idle`, not asserted here.)

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::util::{
    Running, Scratch, filebus, input_in, numbered_records, records, run, stat, wait_until,
};

/// Another program writing files in `dir` (create, write, rename, delete,
/// under names that are not the bus's) until dropped.
struct Churn {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Churn {
    fn start(dir: &Path) -> Churn {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            let staged = dir.join("other.part");
            let named = dir.join("other");
            move || {
                while !stop.load(Ordering::Relaxed) {
                    // In bursts, so as not to take a whole CPU from the
                    // programs under test: thousands of files a second.
                    for _ in 0..20 {
                        std::fs::write(&staged, b"not a chunk").expect("write");
                        std::fs::rename(&staged, &named).expect("rename");
                        std::fs::remove_file(&named).expect("remove");
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        Churn {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What a consumer logs at `-v` once other programs' files made it follow
/// its bus file.
const FOLLOWING: &str = "following";

/// `stat ARGS... BUS`.
fn stat_of(bus: &Path, args: &[&str]) -> String {
    let mut all: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    all.push(bus.as_os_str());
    stat(&all)
}

#[test]
fn a_lossy_consumer_sees_every_chunk_while_other_programs_churn_its_directory() {
    let scratch = Scratch::new();
    let bus = scratch.bus();
    run(filebus(&bus, &["producer"]), b"start\n").assert_success();
    let consumer = Running::consumer(&bus, &["-v"]);
    consumer.wait_for_output(b"start\n".len());
    let _churn = Churn::start(scratch.dir.path());
    wait_until("the consumer to follow its bus file", || {
        consumer.stderr().contains(FOLLOWING)
    });
    // One chunk at a time, each waited for: replaced by exchange (the first
    // publish after `start`) and by rename alike, none may be missed.
    let mut expected = b"start\n".to_vec();
    for number in 0..20 {
        let record = records(number..number + 1);
        run(filebus(&bus, &["producer"]), &record).assert_success();
        expected.extend_from_slice(&record);
        assert_eq!(consumer.wait_for_output(expected.len()), expected);
    }
    assert!(
        consumer.stderr().contains(FOLLOWING),
        "{}",
        consumer.stderr()
    );
}

/// Passes 3,000 numbered records through `bus` with a producer given `mode`
/// (its options before `producer`), and checks that `consumer` wrote out
/// every byte in order and exited 0.
fn every_byte_through(bus: &Path, consumer: Running, mode: &[&str]) {
    let aux = Scratch::new();
    let input = numbered_records(3000);
    let mut args = mode.to_vec();
    args.extend(["--block-size", "900", "producer"]);
    let producer = Running::with_stdio(
        filebus(bus, &args),
        input_in(aux.dir.path(), "input", &input),
        Stdio::null(),
    );
    producer.wait().assert_success();
    let finished = consumer.wait();
    finished.assert_success();
    assert!(finished.stdout == input, "{} bytes", finished.stdout.len());
}

#[test]
fn a_lossless_consumer_takes_every_chunk_while_other_programs_churn_its_directory() {
    let scratch = Scratch::new();
    let bus = scratch.bus();
    let _churn = Churn::start(scratch.dir.path());
    // It watches arrivals only, and the producer departures only (neither
    // follows the bus file): other programs' files wake them for nothing.
    let consumer = Running::consumer(&bus, &["--lossless", "-v"]);
    every_byte_through(&bus, consumer, &["--lossless"]);
}

#[test]
fn a_named_consumer_writes_out_every_chunk_while_other_programs_churn_its_directory() {
    let scratch = Scratch::new();
    let bus = scratch.bus();
    // A history bus, with its end-of-stream chunk at `F`.
    run(filebus(&bus, &["producer", "--history", "4"]), b"").assert_success();
    let consumer = Running::start(filebus(&bus, &["-v", "consumer", "--name", "reader"]), None);
    let _churn = Churn::start(scratch.dir.path());
    wait_until("the consumer to follow its bus file", || {
        consumer.stderr().contains(FOLLOWING)
    });
    every_byte_through(&bus, consumer, &[]);
}

#[test]
fn stat_says_when_other_programs_make_the_bus_directory_busy() {
    let scratch = Scratch::new();
    let bus: PathBuf = scratch.bus();
    run(filebus(&bus, &["producer"]), b"chunk\n").assert_success();
    // The bus's own files do not count: a producer publishing is not busy.
    let quiet = stat_of(&bus, &[]);
    assert!(quiet.contains("directory: quiet (0 files"), "{quiet}");
    let json = stat_of(&bus, &["--json"]);
    assert!(
        json.contains("\"foreign_arrivals_per_second\":0,\"directory_busy\":false"),
        "{json}"
    );
    let churn = Churn::start(scratch.dir.path());
    let mut text = String::new();
    wait_until("stat to see the directory busy", || {
        text = stat_of(&bus, &[]);
        text.contains("directory: busy: ")
    });
    assert!(
        text.contains("give the bus a directory of its own"),
        "{text}"
    );
    wait_until("stat --json to see the directory busy", || {
        stat_of(&bus, &["--json"]).contains("\"directory_busy\":true")
    });
    drop(churn);
    let quiet = stat_of(&bus, &[]);
    assert!(quiet.contains("directory: quiet (0 files"), "{quiet}");
}

//! Faults, with the real binary in real processes: producers and consumers
//! killed at any moment, termination signals, a full disk, a file size
//! limit, a chunk truncated in place under a consumer, a standard output
//! whose reader goes away (quietly, or by SIGPIPE after its `--stats`), and
//! many producers and consumers on one bus.
//!
//! Chunks are made identifiable: the input is numbered records read from a
//! regular file with a block size of a whole number of records, so every
//! chunk is a run of aligned, whole, consecutive records, and any loss,
//! duplicate, reordering or tear shows.
//!
//! Kills come two ways: at random moments, and at exact ones, with the
//! process stopped inside a chosen system call by a seccomp filter
//! ([`crate::util::SyscallTrap`]), so that the worst moments are hit every run.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use libc::{SIGHUP, SIGINT, SIGKILL, SIGPIPE, SIGTERM, SIGXFSZ};

use crate::util::{
    CHUNK, CHUNK_ARG, PRODUCER_STRIDE, PUBLISH_SYSCALLS, Rng, SyscallTrap, UNLINK_SYSCALLS,
    assert_one_line_error, check_chunk, check_full_chunks, ended_by, input_in, pipe_capacity,
    pipe_queued, process_state, produce, records, run_with_input, wait_until_sleeping,
};
use crate::util::{
    Running, Scratch, binary_data, collect, filebus, filebus_bin, names_in, numbered_records,
    parse_records, wait_until,
};

/// How soon a signalled process must be gone.
const PROMPTLY: Duration = Duration::from_secs(5);

/// Reads `path`, or `None` if nothing is there.
fn read_if_present(path: &Path) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(error) if error.kind() == ErrorKind::NotFound => None,
        Err(error) => panic!("cannot read {}: {error}", path.display()),
    }
}

#[test]
fn lossy_producer_killed_at_random_moments_leaves_a_whole_chunk_and_no_stray_files() {
    const TRIALS: usize = 100;
    // 20,000 chunks: even a release build on a fast machine needs far longer
    // for them (several system calls each) than the kill delays below, so
    // every kill lands before the producer is done.
    const TOTAL: usize = 2_000_000;
    let bus_dir = Scratch::new();
    let aux = Scratch::new();
    let bus = bus_dir.bus();
    let input = aux.path("input");
    std::fs::write(&input, numbered_records(TOTAL)).expect("cannot write input");
    let mut rng = Rng::from_clock("kill -9 of a lossy producer");
    let bytes = std::sync::Arc::new(std::fs::read(&input).expect("cannot read input"));
    for trial in 0..TRIALS {
        // A regular file with the mmap and write input methods, or a pipe
        // with the default method for pipes (chunks are cut when full only:
        // the sleep interval is an hour).
        let (how, method, from_pipe) = match trial % 3 {
            0 => ("file, mmap", "mmap", false),
            1 => ("file, write", "write", false),
            _ => ("pipe, default method", "auto", true),
        };
        let what = format!("trial {trial} ({how})");
        let mut args = vec!["--block-size", CHUNK_ARG, "--sleep-interval", "3600"];
        if method != "auto" {
            args.extend(["--input-method", method]);
        }
        args.push("producer");
        let (mut producer, feeder) = if from_pipe {
            let (reader, mut writer) = std::io::pipe().expect("cannot create a pipe");
            let producer = Running::with_stdio(filebus(&bus, &args), reader, Stdio::null());
            let bytes = std::sync::Arc::clone(&bytes);
            // Ends with EPIPE when the producer is killed.
            let feeder = std::thread::spawn(move || drop(writer.write_all(&bytes)));
            (producer, Some(feeder))
        } else {
            let stdin = File::open(&input).expect("cannot open input");
            (
                Running::with_stdio(filebus(&bus, &args), stdin, Stdio::null()),
                None,
            )
        };
        std::thread::sleep(Duration::from_micros(rng.below(60_000)));
        producer.send(SIGKILL);
        let status = producer.wait_status();
        if let Some(feeder) = feeder {
            feeder.join().expect("feeder panicked");
        }
        assert!(
            ended_by(status, SIGKILL),
            "{what}: the kill did not land (the producer ended first, with {status:?}); \
             stderr:\n{}",
            producer.stderr()
        );
        let names = bus_dir.names();
        for name in &names {
            assert!(
                ["bus", "bus.lock", "bus.__new__"].contains(&name.as_str()),
                "{what}: stray file {name:?} among {names:?}"
            );
        }
        for name in ["bus", "bus.__new__"] {
            if let Some(bytes) = read_if_present(&bus_dir.path(name)) {
                check_chunk(&bytes, Some(TOTAL), &format!("{what}: {name}"));
            }
        }
    }
    // A later producer publishes normally and leaves nothing behind.
    produce(
        &bus,
        &["--block-size", CHUNK_ARG],
        &records(0..250),
        aux.dir.path(),
    );
    assert_eq!(bus_dir.names(), ["bus", "bus.lock"]);
    assert_eq!(
        std::fs::read(&bus).expect("cannot read bus"),
        records(200..250)
    );
}

#[test]
fn lossless_consumers_killed_mid_stream_lose_nothing_and_repeat_at_most_one_chunk() {
    // Each victim emits at most 16 chunks before it is killed.
    const TOTAL: usize = 300_000; // 3000 chunks
    const KILLED: usize = 100;
    let bus_dir = Scratch::new();
    let aux = Scratch::new();
    let bus = bus_dir.bus();
    let input = numbered_records(TOTAL);
    let mut producer = Running::with_stdio(
        filebus(&bus, &["--lossless", "--block-size", CHUNK_ARG, "producer"]),
        input_in(aux.dir.path(), "input", &input),
        Stdio::null(),
    );
    let mut rng = Rng::from_clock("kill -9 of lossless consumers");
    let mut outputs = Vec::new();
    for victim in 0..KILLED {
        // The test reads the consumer's pipe only after the kill, so the
        // consumer can emit no more than the pipe holds (each spliced chunk
        // takes one of its 16 slots) before it blocks: the stream cannot end
        // under a consumer meant to be killed, however slow this thread is.
        let mut consumer = Running::with_stdio(
            filebus(&bus, &["--lossless", "consumer"]),
            Stdio::null(),
            Stdio::piped(),
        );
        let mut stdout = consumer.child.stdout.take().expect("stdout was piped");
        let slots = (pipe_capacity(&stdout) / 4096) as u64;
        let target = CHUNK * (1 + rng.below(slots) as usize);
        wait_until("output from the consumer to be killed", || {
            pipe_queued(&stdout) >= target
        });
        consumer.send(SIGKILL);
        let status = consumer.wait_status();
        assert!(
            ended_by(status, SIGKILL),
            "consumer {victim} ended on its own: {status:?}; stderr:\n{}",
            consumer.stderr()
        );
        let mut output = Vec::new();
        stdout
            .read_to_end(&mut output)
            .expect("cannot read the consumer's output");
        outputs.push(output);
    }
    let last = Running::consumer(&bus, &["--lossless"]).wait();
    last.assert_success();
    outputs.push(last.stdout);
    let status = producer.wait_status();
    assert!(
        status.success(),
        "producer: {status:?}; stderr:\n{}",
        producer.stderr()
    );

    // Each output continues the previous one, or repeats its last chunk (the
    // consumer was killed between emitting a chunk and deleting it).
    let mut end = 0;
    let mut repeated = 0;
    for (index, output) in outputs.iter().enumerate() {
        // Whole chunks only: a chunk of 900 bytes goes to the pipe in one
        // system call that a kill cannot split.
        check_full_chunks(output, &format!("consumer {index}"));
        let start = if input[end..].starts_with(output) {
            end
        } else if index > 0 && end >= CHUNK && input[end - CHUNK..].starts_with(output) {
            repeated += 1;
            end - CHUNK
        } else {
            let first = parse_records(output).first().copied();
            panic!(
                "consumer {index} emitted {} bytes starting at record {first:?}, which neither \
                 continue nor repeat the last chunk of the {end} bytes emitted before",
                output.len()
            );
        };
        end = start + output.len();
    }
    assert_eq!(end, input.len(), "the stream was not delivered to its end");
    eprintln!("{repeated} of {KILLED} kills repeated a chunk");
    assert_eq!(bus_dir.names(), ["bus.lock"]);
}

#[test]
fn lossless_producer_killed_mid_stream_tears_nothing_and_a_new_producer_continues() {
    const FIRST: usize = 30_000; // 300 chunks
    let bus_dir = Scratch::new();
    let aux = Scratch::new();
    let bus = bus_dir.bus();
    let first_input = numbered_records(FIRST);
    let consumer = Running::consumer(&bus, &["--lossless"]);
    // The first producer reads a pipe that stays open, so it never reaches
    // the end of its input: whenever the kill comes, it is mid-stream. A
    // sleep interval of an hour makes it publish full chunks only.
    let (reader, mut writer) = std::io::pipe().expect("cannot create a pipe");
    let args = [
        "--lossless",
        "--block-size",
        CHUNK_ARG,
        "--sleep-interval",
        "3600",
        "producer",
    ];
    let mut producer = Running::with_stdio(filebus(&bus, &args), reader, Stdio::null());
    let feeder = std::thread::spawn(move || {
        // Fails with EPIPE once the producer is killed; the writer is handed
        // back so the pipe stays open until the test is done.
        let _ = writer.write_all(&first_input);
        writer
    });
    let mut rng = Rng::from_clock("kill -9 of a lossless producer");
    let published = CHUNK * (1 + rng.below(50) as usize);
    consumer.wait_for_output(published);
    producer.send(SIGKILL);
    let status = producer.wait_status();
    assert!(
        ended_by(status, SIGKILL),
        "the producer was not killed: {status:?}"
    );
    // Whatever is at F now is a whole chunk (the consumer may take it any time).
    if let Some(bytes) = read_if_present(&bus) {
        check_chunk(&bytes, None, "F after the kill");
    }
    drop(feeder.join().expect("feeder panicked"));

    // The lock is not stale: a second producer publishes the rest and the
    // end-of-stream marker.
    let second_input = records(FIRST..FIRST + 1_000);
    produce(
        &bus,
        &["--lossless", "--block-size", CHUNK_ARG],
        &second_input,
        aux.dir.path(),
    );
    let finished = consumer.wait();
    finished.assert_success();
    let output = finished.stdout;
    assert!(
        output.ends_with(&second_input),
        "the second producer's records are missing"
    );
    let kept = &output[..output.len() - second_input.len()];
    check_full_chunks(kept, "chunks of the killed producer");
    assert!(
        kept.len() >= published,
        "the consumer lost chunks it had emitted"
    );
    assert!(
        records(0..FIRST).starts_with(kept),
        "the killed producer's chunks are not a prefix of its input"
    );
    assert_eq!(bus_dir.names(), ["bus.lock"]);
}

/// Sends `signal` to a producer that is blocked, and checks that it ends
/// promptly, by that signal, leaving `expected_names` in the bus directory.
fn interrupt(producer: &mut Running, signal: i32, bus_dir: &Scratch, expected_names: &[&str]) {
    wait_until_sleeping(producer.pid());
    let sent = Instant::now();
    producer.send(signal);
    let status = producer.wait_within(PROMPTLY);
    let stderr = producer.stderr();
    assert!(
        ended_by(status, signal),
        "signal {signal}: expected the producer to end by it, got {status:?}; stderr:\n{stderr}"
    );
    assert!(sent.elapsed() < PROMPTLY);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(bus_dir.names(), expected_names, "after signal {signal}");
}

#[test]
fn producer_blocked_on_stdin_ends_promptly_on_sigterm_sigint_and_sighup() {
    for signal in [SIGTERM, SIGINT, SIGHUP] {
        for partly_filled in [false, true] {
            let bus_dir = Scratch::new();
            let bus = bus_dir.bus();
            let (reader, mut writer) = std::io::pipe().expect("cannot create a pipe");
            let args = [
                "--block-size",
                CHUNK_ARG,
                "--sleep-interval",
                "3600",
                "producer",
            ];
            let mut producer = Running::with_stdio(filebus(&bus, &args), reader, Stdio::null());
            let first = records(0..100);
            writer.write_all(&first).expect("cannot feed the producer");
            wait_until("the first chunk", || {
                read_if_present(&bus).is_some_and(|bytes| bytes == first)
            });
            if partly_filled {
                // Half a chunk, which the producer holds for an hour.
                writer
                    .write_all(&records(100..150))
                    .expect("cannot feed the producer");
                wait_until("the producer to read its input", || {
                    pipe_queued(&writer) == 0
                });
            }
            interrupt(&mut producer, signal, &bus_dir, &["bus", "bus.lock"]);
            assert_eq!(std::fs::read(&bus).expect("cannot read bus"), first);
        }
    }
}

#[test]
fn lossless_producer_waiting_for_back_pressure_ends_promptly_on_sigterm_sigint_and_sighup() {
    for signal in [SIGTERM, SIGINT, SIGHUP] {
        let bus_dir = Scratch::new();
        let bus = bus_dir.bus();
        std::fs::write(&bus, b"not consumed yet\n").expect("cannot write bus");
        let (reader, mut writer) = std::io::pipe().expect("cannot create a pipe");
        let args = ["--lossless", "--block-size", CHUNK_ARG, "producer"];
        let mut producer = Running::with_stdio(filebus(&bus, &args), reader, Stdio::null());
        // A full chunk, ready to publish once F is consumed, which it never is.
        writer
            .write_all(&records(0..100))
            .expect("cannot feed the producer");
        wait_until("the producer to read its input", || {
            pipe_queued(&writer) == 0
        });
        interrupt(&mut producer, signal, &bus_dir, &["bus", "bus.lock"]);
        assert_eq!(
            std::fs::read(&bus).expect("cannot read bus"),
            b"not consumed yet\n"
        );
    }
}

#[test]
fn producer_with_named_temp_files_leaves_no_temporary_file_on_sigterm_sigint_and_sighup() {
    // With --named-temp-files (and on filesystems without O_TMPFILE, where
    // filebus falls back to them) the chunk being filled has a name in the
    // bus directory; a termination signal must not leave it behind.
    for signal in [SIGTERM, SIGINT, SIGHUP] {
        let bus_dir = Scratch::new();
        let bus = bus_dir.bus();
        let (reader, mut writer) = std::io::pipe().expect("cannot create a pipe");
        let args = [
            "--named-temp-files",
            "--block-size",
            CHUNK_ARG,
            "--sleep-interval",
            "3600",
            "producer",
        ];
        let mut producer = Running::with_stdio(filebus(&bus, &args), reader, Stdio::null());
        let first = records(0..100);
        writer.write_all(&first).expect("cannot feed the producer");
        wait_until("the first chunk", || {
            read_if_present(&bus).is_some_and(|bytes| bytes == first)
        });
        writer
            .write_all(&records(100..150))
            .expect("cannot feed the producer");
        wait_until("the producer to read its input", || {
            pipe_queued(&writer) == 0
        });
        interrupt(&mut producer, signal, &bus_dir, &["bus", "bus.lock"]);
    }
}

#[test]
fn consumers_end_promptly_by_sighup_sigterm_and_sigint() {
    // The documented statuses 129, 143 and 130: the consumer ends by the
    // signal, waiting for a chunk (lossy and lossless) or for its reader to
    // take what it wrote; with --stats, after printing its summary.
    let cases: [(&str, &[&str]); 4] = [
        ("lossy", &["consumer"]),
        ("lossless", &["--lossless", "consumer"]),
        ("lossy --stats", &["consumer", "--stats"]),
        ("lossless --stats", &["--lossless", "consumer", "--stats"]),
    ];
    for signal in [SIGHUP, SIGTERM, SIGINT] {
        for (what, args) in cases {
            let what = format!("{what} consumer, signal {signal}");
            let bus_dir = Scratch::new();
            let bus = bus_dir.bus();
            let mut consumer =
                Running::with_stdio(filebus(&bus, args), Stdio::null(), Stdio::null());
            if args.contains(&"--stats") {
                // The thread that prints the summary exists once the
                // signals are routed to it.
                wait_until(&format!("{what}: the reporting thread"), || {
                    std::fs::read_dir(format!("/proc/{}/task", consumer.pid()))
                        .is_ok_and(|tasks| tasks.count() >= 2)
                });
            }
            wait_until_sleeping(consumer.pid());
            let sent = Instant::now();
            consumer.send(signal);
            let status = consumer.wait_within(PROMPTLY);
            let stderr = consumer.stderr();
            assert!(
                ended_by(status, signal),
                "{what}: expected the consumer to end by the signal, got {status:?}; \
                 stderr:\n{stderr}"
            );
            assert!(sent.elapsed() < PROMPTLY, "{what}");
            if args.contains(&"--stats") {
                assert_eq!(
                    stderr.matches("stats: 0 chunks").count(),
                    1,
                    "{what}: {stderr}"
                );
            } else {
                assert_eq!(stderr, "", "{what}");
            }
        }
    }
}

/// Writes a file at `path` until the filesystem is full; returns its size.
fn fill_up(path: &Path) -> u64 {
    let mut file = File::create(path).expect("cannot create the filler");
    let block = vec![0xA5u8; 4096];
    let mut size = 0u64;
    loop {
        match file.write(&block) {
            Ok(0) => break,
            Ok(count) => size += count as u64,
            Err(error) if error.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(error) => panic!("cannot fill the filesystem: {error}"),
        }
    }
    size
}

/// Runs producers with each of `variants` of arguments, reading a regular
/// file and then a pipe (the input methods differ for each), and checks that
/// each fails with one line mentioning `message`, leaving the bus as it was.
fn assert_producers_fail(
    bus: &Path,
    variants: &[&[&str]],
    command: impl Fn(&[&str]) -> Command,
    input: &[u8],
    message: &str,
    aux: &Path,
) {
    let dir = bus.parent().expect("bus has a directory");
    let before = std::fs::read(bus).expect("cannot read bus");
    for args in variants {
        for from_pipe in [false, true] {
            let what = format!("{args:?}, input from a pipe: {from_pipe}");
            let (status, stderr) = if from_pipe {
                run_with_queued_pipe(command(args), input)
            } else {
                run_with_input(command(args), input, aux)
            };
            assert!(
                status.signal().is_none(),
                "{what}: the producer died of signal {:?}",
                status.signal()
            );
            assert_one_line_error(status, &stderr, None, &[message], &what);
            assert_eq!(
                std::fs::read(bus).expect("cannot read bus"),
                before,
                "{what}: F changed"
            );
            assert_eq!(names_in(dir), ["bus", "bus.lock"], "{what}: stray files");
        }
    }
}

/// Runs `command` to completion with `input` as its standard input, already
/// whole in a pipe (enlarged to hold it) whose writing end is closed: the
/// producer finds all of it ready at its first read, so that how it is cut
/// into chunks does not depend on when the bytes arrive (input that arrives
/// after a quiet spell is published as soon as the pipe is empty).
fn run_with_queued_pipe(command: Command, input: &[u8]) -> (std::process::ExitStatus, String) {
    let (read, write) = rustix::pipe::pipe().expect("cannot create a pipe");
    rustix::pipe::fcntl_setpipe_size(&write, input.len()).expect("cannot enlarge the pipe");
    File::from(write)
        .write_all(input)
        .expect("cannot fill the pipe");
    let finished =
        Running::with_stdio(command, Stdio::from(File::from(read)), Stdio::null()).wait();
    (finished.status, finished.stderr)
}

/// Every way a producer builds a chunk: the default input method, each
/// method by name, named temporary files, and lossless mode, with `extra`
/// arguments (a block size) added to each.
fn build_variants(extra: &'static [&'static str]) -> Vec<Vec<&'static str>> {
    let ways: [&[&str]; 6] = [
        &[],
        &["--input-method", "mmap"],
        &["--input-method", "write"],
        &["--named-temp-files"],
        &["--lossless"],
        &["--lossless", "--input-method", "mmap"],
    ];
    ways.iter()
        .map(|way| way.iter().chain(extra).copied().collect())
        .collect()
}

fn as_slices<'a>(variants: &'a [Vec<&'a str>]) -> Vec<&'a [&'a str]> {
    variants.iter().map(Vec::as_slice).collect()
}

fn producer_command(bus: &Path) -> impl Fn(&[&str]) -> Command {
    let bus = bus.to_owned();
    move |args: &[&str]| {
        let mut all = args.to_vec();
        all.push("producer");
        filebus(&bus, &all)
    }
}

#[test]
fn producer_on_a_full_disk_fails_with_one_line_and_keeps_the_previous_chunk() {
    let fs = crate::util::Tmpfs::mount("size=64k,mode=0755");
    let aux = Scratch::new();
    let dir = fs.path().join("bus-dir");
    std::fs::create_dir(&dir).expect("cannot create the bus directory");
    let bus = dir.join("bus");
    let first = records(0..100);
    produce(&bus, &["--block-size", CHUNK_ARG], &first, aux.dir.path());
    // 72 KB: more than the filesystem holds, whichever way it is chunked.
    let input = records(100..8_100);
    // The next chunk is larger than the free space.
    let larger = build_variants(&["--block-size", "1048576"]);
    assert_producers_fail(
        &bus,
        &as_slices(&larger),
        producer_command(&bus),
        &input,
        "No space left on device",
        aux.dir.path(),
    );
    // The filesystem is full but for a page or two.
    let filler = fs.path().join("filler");
    let size = fill_up(&filler);
    File::options()
        .write(true)
        .open(&filler)
        .and_then(|file| file.set_len(size - 8192))
        .expect("cannot shrink the filler");
    let small = build_variants(&["--block-size", "65536"]);
    assert_producers_fail(
        &bus,
        &as_slices(&small),
        producer_command(&bus),
        &input,
        "No space left on device",
        aux.dir.path(),
    );
    // Completely full: not even the default block size fits.
    fill_up(&fs.path().join("filler-2"));
    let full = build_variants(&[]);
    assert_producers_fail(
        &bus,
        &as_slices(&full),
        producer_command(&bus),
        &input,
        "No space left on device",
        aux.dir.path(),
    );
    // With space again, the bus works as before.
    std::fs::remove_file(&filler).expect("cannot remove the filler");
    std::fs::remove_file(fs.path().join("filler-2")).expect("cannot remove the filler");
    produce(
        &bus,
        &["--block-size", CHUNK_ARG],
        &records(100..200),
        aux.dir.path(),
    );
    assert_eq!(
        std::fs::read(&bus).expect("cannot read bus"),
        records(100..200)
    );
    assert_eq!(names_in(&dir), ["bus", "bus.lock"]);
}

#[test]
fn producer_over_the_file_size_limit_fails_with_one_line_instead_of_dying_of_sigxfsz() {
    let bus_dir = Scratch::new();
    let aux = Scratch::new();
    let bus = bus_dir.bus();
    let first = records(0..100);
    produce(&bus, &["--block-size", CHUNK_ARG], &first, aux.dir.path());
    let limited = {
        let bus = bus.clone();
        move |args: &[&str]| {
            let mut all = args.to_vec();
            all.push("producer");
            let mut command = filebus(&bus, &all);
            // SAFETY: setrlimit is async-signal-safe and touches no memory of
            // the parent.
            unsafe {
                command.pre_exec(|| {
                    let limit = libc::rlimit {
                        rlim_cur: 4096,
                        rlim_max: 4096,
                    };
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
            command
        }
    };
    let input = records(100..8_100);
    let larger = build_variants(&["--block-size", "1048576"]);
    assert_producers_fail(
        &bus,
        &as_slices(&larger),
        &limited,
        &input,
        "File too large",
        aux.dir.path(),
    );
    // SIGXFSZ specifically is not how it ends (checked above as "no signal");
    // and a chunk within the limit still goes through.
    let (status, stderr) = run_with_input(
        limited(&["--block-size", CHUNK_ARG]),
        &records(100..200),
        aux.dir.path(),
    );
    assert_ne!(status.signal(), Some(SIGXFSZ));
    assert!(status.success(), "{status:?}; stderr:\n{stderr}");
    assert_eq!(
        std::fs::read(&bus).expect("cannot read bus"),
        records(100..200)
    );
}

/// Output of a consumer being drained in the background.
struct Drained {
    output: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Drained {
    fn new(stream: impl Read + Send + 'static) -> Drained {
        // The thread ends when the consumer is killed and the pipe closes.
        let (output, _reader) = collect(stream);
        Drained { output }
    }

    fn get(&self) -> Vec<u8> {
        self.output.lock().expect("poisoned").clone()
    }

    fn wait_for_suffix(&self, suffix: &[u8]) -> Vec<u8> {
        wait_until("the next chunk in the output", || {
            self.output.lock().expect("poisoned").ends_with(suffix)
        });
        self.get()
    }
}

/// Ends a consumer that must still be running, and checks it left no message.
fn stop_consumer(consumer: &mut Running, what: &str) {
    assert!(
        consumer.try_status().is_none(),
        "{what}: the consumer ended: {:?}; stderr:\n{}",
        consumer.try_status(),
        consumer.stderr()
    );
    consumer.send(SIGKILL);
    let status = consumer.wait_status();
    assert!(ended_by(status, SIGKILL), "{what}: {status:?}");
    assert_eq!(consumer.stderr(), "", "{what}: the consumer complained");
}

#[test]
fn chunk_truncated_in_place_under_a_consumer_raises_no_sigbus() {
    const BIG: usize = 50 << 20;
    let bus_dir = Scratch::new();
    let aux = Scratch::new();
    let bus = bus_dir.bus();
    let original = binary_data(1 << 16).repeat(BIG >> 16);
    let next = b"the chunk published after the truncation\n";

    // Truncated while the consumer is in the middle of emitting it: its
    // stdout pipe is full, so it is blocked with most of the chunk to go.
    for method in ["auto", "splice", "sendfile", "write"] {
        let what = format!("--output-method {method}, truncated mid-emission");
        let _ = std::fs::remove_file(&bus);
        std::fs::write(&bus, &original).expect("cannot write the big chunk");
        let mut consumer = Running::with_stdio(
            filebus(&bus, &["--output-method", method, "consumer"]),
            Stdio::null(),
            Stdio::piped(),
        );
        let stdout = consumer.child.stdout.take().expect("stdout was piped");
        let capacity = pipe_capacity(&stdout);
        wait_until("the consumer to fill its pipe", || {
            pipe_queued(&stdout) >= capacity / 2 && process_state(consumer.pid()) == Some('S')
        });
        File::options()
            .write(true)
            .open(&bus)
            .and_then(|file| file.set_len(1000))
            .expect("cannot truncate the chunk");
        let drained = Drained::new(stdout);
        produce(&bus, &[], next, aux.dir.path());
        let output = drained.wait_for_suffix(next);
        // The first bytes are the chunk's; past the truncation point the
        // kernel may have zeroed a page the pipe still referenced.
        assert_eq!(output[..1000], original[..1000], "{what}");
        assert!(output.len() <= BIG + next.len(), "{what}: too much output");
        stop_consumer(&mut consumer, &what);
    }

    // Truncated (to a little, or to nothing) as the consumer starts on it.
    for (attempt, new_len) in [500u64, 0, 500, 0].into_iter().enumerate() {
        let what = format!("truncated to {new_len} as the consumer starts (attempt {attempt})");
        let _ = std::fs::remove_file(&bus);
        std::fs::write(&bus, &original).expect("cannot write the big chunk");
        let mut consumer =
            Running::with_stdio(filebus(&bus, &["consumer"]), Stdio::null(), Stdio::piped());
        let drained = Drained::new(consumer.child.stdout.take().expect("stdout was piped"));
        std::thread::sleep(Duration::from_millis(attempt as u64 * 2));
        File::options()
            .write(true)
            .open(&bus)
            .and_then(|file| file.set_len(new_len))
            .expect("cannot truncate the chunk");
        produce(&bus, &[], next, aux.dir.path());
        let output = drained.wait_for_suffix(next);
        // Whatever the consumer emitted of the truncated chunk (nothing, if
        // it looked only after the publish) begins as the chunk did.
        let before = &output[..output.len() - next.len()];
        let checked = before.len().min(new_len as usize);
        assert_eq!(before[..checked], original[..checked], "{what}");
        assert!(before.len() <= BIG, "{what}: too much output");
        stop_consumer(&mut consumer, &what);
    }
}

#[test]
fn consumer_whose_reader_goes_away_ends_quietly() {
    let bus_dir = Scratch::new();
    let aux = Scratch::new();
    let bus = bus_dir.bus();
    let big = binary_data(2 * filebus_core::testing::LARGEST_PIPE);
    std::fs::write(&bus, &big).expect("cannot write bus");
    for method in ["auto", "splice", "sendfile", "write"] {
        // `filebus consumer | head -c 10`: the chunk is larger than the
        // consumer can grow the pipe, so it is writing when head exits.
        let mut shell = Command::new("bash");
        shell
            .args(["-c", r#"set -o pipefail; "$0" --filename "$1" --output-method "$2" consumer | head -c 10"#])
            .arg(filebus_bin())
            .arg(&bus)
            .arg(method);
        let finished = Running::start(shell, None).wait();
        assert_eq!(finished.stdout, big[..10], "{method}");
        assert_eq!(finished.stderr, "", "{method}: the consumer was not quiet");
        assert_eq!(
            finished.status.code(),
            Some(141),
            "{method}: the pipeline did not end by SIGPIPE (141)"
        );
    }
    for method in ["auto", "splice", "sendfile", "write"] {
        // The reader goes away while the consumer waits for the next chunk:
        // it notices at its next write.
        crate::util::put_chunk_by_hand(&bus, b"a small chunk\n");
        let mut consumer = Running::with_stdio(
            filebus(&bus, &["--output-method", method, "consumer"]),
            Stdio::null(),
            Stdio::piped(),
        );
        let mut stdout = consumer.child.stdout.take().expect("stdout was piped");
        let mut first = [0u8; 10];
        stdout
            .read_exact(&mut first)
            .expect("cannot read the consumer's output");
        assert_eq!(&first, b"a small ch");
        drop(stdout);
        produce(&bus, &[], b"another chunk\n", aux.dir.path());
        let status = consumer.wait_status();
        assert!(
            ended_by(status, SIGPIPE),
            "{method}: the consumer ended with {status:?}; stderr:\n{}",
            consumer.stderr()
        );
        assert_eq!(
            consumer.stderr(),
            "",
            "{method}: the consumer was not quiet"
        );
    }
}

/// The input of producer `index` among several: its own record numbers.
fn producer_records(index: usize, count: usize) -> Vec<u8> {
    let base = index * PRODUCER_STRIDE;
    records(base..base + count)
}

/// Starts producers `0..count`, each publishing `per_producer` records.
fn start_producers(
    bus: &Path,
    args: &[&str],
    count: usize,
    per_producer: usize,
    aux: &Path,
) -> Vec<Running> {
    let mut all = args.to_vec();
    all.extend(["--block-size", CHUNK_ARG, "producer"]);
    (0..count)
        .map(|index| {
            let input = input_in(
                aux,
                &format!("input-{index}"),
                &producer_records(index, per_producer),
            );
            Running::with_stdio(filebus(bus, &all), input, Stdio::null())
        })
        .collect()
}

fn assert_all_succeed(producers: Vec<Running>) {
    for (index, mut producer) in producers.into_iter().enumerate() {
        let status = producer.wait_status();
        assert!(
            status.success(),
            "producer {index}: {status:?}; stderr:\n{}",
            producer.stderr()
        );
    }
}

#[test]
fn lossy_consumers_see_whole_chunks_in_order_from_several_producers() {
    const PRODUCERS: usize = 4;
    const PER_PRODUCER: usize = 10_000; // 100 chunks each
    const CONSUMERS: usize = 3;
    let bus_dir = Scratch::new();
    let aux = Scratch::new();
    let bus = bus_dir.bus();
    let consumers: Vec<Running> = (0..CONSUMERS)
        .map(|_| Running::consumer(&bus, &[]))
        .collect();
    let producers = start_producers(&bus, &[], PRODUCERS, PER_PRODUCER, aux.dir.path());
    assert_all_succeed(producers);
    let last = std::fs::read(&bus).expect("cannot read bus");
    check_chunk(&last, None, "the last chunk");
    for (index, consumer) in consumers.into_iter().enumerate() {
        let what = format!("consumer {index}");
        consumer.wait_for_suffix(&last);
        let finished = consumer.kill();
        assert_eq!(finished.stderr, "", "{what}");
        let starts = check_full_chunks(&finished.stdout, &what);
        for producer in 0..PRODUCERS {
            let mine: Vec<usize> = starts
                .iter()
                .copied()
                .filter(|start| start / PRODUCER_STRIDE == producer)
                .collect();
            assert!(
                mine.windows(2).all(|pair| pair[0] < pair[1]),
                "{what}: chunks of producer {producer} repeated or out of order: {mine:?}"
            );
        }
        eprintln!("{what} saw {} chunks", starts.len());
    }
    assert_eq!(bus_dir.names(), ["bus", "bus.lock"]);
}

#[test]
fn lossless_bus_with_several_producers_delivers_every_record_exactly_once() {
    const PRODUCERS: usize = 4;
    const PER_PRODUCER: usize = 5_000; // 50 chunks each
    let bus_dir = Scratch::new();
    let aux = Scratch::new();
    let bus = bus_dir.bus();
    let producers = start_producers(
        &bus,
        &["--lossless"],
        PRODUCERS,
        PER_PRODUCER,
        aux.dir.path(),
    );
    // Every producer ends its stream with an empty chunk, and a lossless
    // consumer exits at the first one it takes. So consumers run one after
    // another, once per producer: each run ends at one end-of-stream marker.
    // A producer publishes its marker only after a consumer took its last
    // chunk, so once the last of the markers is taken every record has been
    // delivered; the runs never overlap, so their outputs concatenate in the
    // order the chunks were taken.
    let mut output = Vec::new();
    for run in 0..PRODUCERS {
        let finished = Running::consumer(&bus, &["--lossless"]).wait();
        assert!(
            finished.status.success(),
            "consumer run {run}: {:?}; stderr:\n{}",
            finished.status,
            finished.stderr
        );
        output.extend_from_slice(&finished.stdout);
    }
    assert_all_succeed(producers);
    check_full_chunks(&output, "lossless consumers");
    let numbers = parse_records(&output);
    assert_eq!(
        numbers.len(),
        PRODUCERS * PER_PRODUCER,
        "records lost or repeated"
    );
    for producer in 0..PRODUCERS {
        let base = producer * PRODUCER_STRIDE;
        let mine: Vec<usize> = numbers
            .iter()
            .copied()
            .filter(|number| number / PRODUCER_STRIDE == producer)
            .collect();
        assert!(
            mine.iter().copied().eq(base..base + PER_PRODUCER),
            "producer {producer}: its records did not arrive exactly once, in order"
        );
    }
    assert_eq!(bus_dir.names(), ["bus.lock"]);
}

#[test]
fn lossless_consumer_killed_between_emitting_and_deleting_a_chunk_repeats_exactly_that_chunk() {
    // The kill lands at the one moment that causes a duplicate, every time:
    // the consumer is stopped inside the unlinkat that deletes the chunk it
    // has just emitted.
    const CHUNKS: usize = 20;
    let bus_dir = Scratch::new();
    let aux = Scratch::new();
    let bus = bus_dir.bus();
    let input = numbered_records(CHUNKS * crate::util::RECORDS_PER_CHUNK);
    let mut producer = Running::with_stdio(
        filebus(&bus, &["--lossless", "--block-size", CHUNK_ARG, "producer"]),
        input_in(aux.dir.path(), "input", &input),
        Stdio::null(),
    );
    let mut rng = Rng::from_clock("a lossless consumer killed before deleting");
    let emitted = 1 + rng.below(10) as usize;
    let mut command = filebus(&bus, &["--lossless", "consumer"]);
    SyscallTrap::install(&mut command, UNLINK_SYSCALLS);
    let mut consumer = Running::with_stdio(command, Stdio::null(), Stdio::piped());
    let (output, reader) = collect(consumer.child.stdout.take().expect("stdout was piped"));
    let trap = SyscallTrap::attach(&consumer);
    for _ in 1..emitted {
        let call = trap.wait();
        trap.resume(call);
    }
    trap.wait();
    consumer.send(SIGKILL);
    let status = consumer.wait_status();
    assert!(
        ended_by(status, SIGKILL),
        "{status:?}; stderr:\n{}",
        consumer.stderr()
    );
    reader.join().expect("reader panicked");
    let first = output.lock().expect("poisoned").clone();
    assert_eq!(
        first,
        input[..emitted * CHUNK],
        "the killed consumer should have emitted exactly {emitted} chunks"
    );
    let second = Running::consumer(&bus, &["--lossless"]).wait();
    second.assert_success();
    assert_eq!(
        second.stdout,
        input[(emitted - 1) * CHUNK..],
        "the next consumer should start with the chunk that was emitted but not deleted"
    );
    let status = producer.wait_status();
    assert!(
        status.success(),
        "producer: {status:?}; stderr:\n{}",
        producer.stderr()
    );
    assert_eq!(bus_dir.names(), ["bus.lock"]);
}

#[test]
fn producer_killed_at_every_step_of_a_publish_leaves_whole_chunks_only() {
    // The producer is stopped inside each system call that can publish or
    // stage a chunk (link, rename, unlink), one after the other, and killed
    // there: the worst moments for a kill, hit every time, whatever the
    // publishing strategy.
    const STEPS: usize = 12;
    const INPUT: std::ops::Range<usize> = 0..2_000; // 20 chunks
    let allowed = ["bus", "bus.__new__", "bus.lock"];
    for lossless in [false, true] {
        for step in 0..STEPS {
            let what = format!(
                "{}, killed at trapped call {step}",
                if lossless { "lossless" } else { "lossy" }
            );
            let bus_dir = Scratch::new();
            let aux = Scratch::new();
            let bus = bus_dir.bus();
            let consumer = lossless.then(|| Running::consumer(&bus, &["--lossless"]));
            let mut args = vec!["--block-size", CHUNK_ARG, "producer"];
            if lossless {
                args.insert(0, "--lossless");
            }
            let mut command = filebus(&bus, &args);
            SyscallTrap::install(&mut command, PUBLISH_SYSCALLS);
            let input = input_in(aux.dir.path(), "input", &records(INPUT));
            let mut producer = Running::with_stdio(command, input, Stdio::null());
            let trap = SyscallTrap::attach(&producer);
            for _ in 0..step {
                let call = trap.wait();
                trap.resume(call);
            }
            trap.wait();
            producer.send(SIGKILL);
            let status = producer.wait_status();
            assert!(
                ended_by(status, SIGKILL),
                "{what}: {status:?}; stderr:\n{}",
                producer.stderr()
            );
            let names = bus_dir.names();
            for name in &names {
                assert!(
                    allowed.contains(&name.as_str()),
                    "{what}: stray file {name:?} among {names:?}"
                );
            }
            for name in ["bus", "bus.__new__"] {
                if let Some(bytes) = read_if_present(&bus_dir.path(name)) {
                    check_chunk(&bytes, Some(INPUT.end), &format!("{what}: {name}"));
                }
            }

            // The next producer publishes, and clears what was left.
            let next = records(50_000..50_100);
            let mut args = vec!["--block-size", CHUNK_ARG];
            if lossless {
                args.push("--lossless");
            }
            produce(&bus, &args, &next, aux.dir.path());
            if let Some(consumer) = consumer {
                let finished = consumer.wait();
                finished.assert_success();
                let output = finished.stdout;
                assert!(
                    output.ends_with(&next),
                    "{what}: the next producer's chunk is missing"
                );
                let kept = &output[..output.len() - next.len()];
                check_full_chunks(kept, &what);
                assert!(
                    records(INPUT).starts_with(kept),
                    "{what}: the killed producer's chunks are not a prefix of its input"
                );
                assert_eq!(bus_dir.names(), ["bus.lock"], "{what}");
            } else {
                assert_eq!(
                    std::fs::read(&bus).expect("cannot read bus"),
                    next,
                    "{what}: F"
                );
                assert_eq!(bus_dir.names(), ["bus", "bus.lock"], "{what}");
            }
        }
    }
}

#[test]
fn lossless_producers_killed_at_random_moments_tear_and_lose_nothing_they_published() {
    // 100 producers in turn, each killed at a random moment after its first
    // chunk arrived, while one consumer takes chunks throughout: what each
    // published (a chunk-aligned prefix of its input, at least one chunk)
    // arrives whole, once, in order, up to the last chunk it published.
    const TRIALS: usize = 100;
    const PER_TRIAL: usize = 10_000; // records, 100 chunks
    let bus_dir = Scratch::new();
    let aux = Scratch::new();
    let bus = bus_dir.bus();
    let consumer = Running::consumer(&bus, &["--lossless"]);
    let mut rng = Rng::from_clock("kill -9 of lossless producers, 100 trials");
    let args = [
        "--lossless",
        "--block-size",
        CHUNK_ARG,
        "--sleep-interval",
        "3600",
        "producer",
    ];
    for trial in 0..TRIALS {
        let (reader, mut writer) = std::io::pipe().expect("cannot create a pipe");
        let mut producer = Running::with_stdio(filebus(&bus, &args), reader, Stdio::null());
        let input = records(trial * PER_TRIAL..(trial + 1) * PER_TRIAL);
        // The pipe stays open (the writer is handed back), so the producer
        // never reaches the end of its input: the kill always lands.
        let feeder = std::thread::spawn(move || {
            let _ = writer.write_all(&input);
            writer
        });
        // At least one chunk of this trial is delivered before the kill.
        let before = consumer.output().len();
        consumer.wait_for_output(before + CHUNK);
        std::thread::sleep(Duration::from_micros(rng.below(20_000)));
        producer.send(SIGKILL);
        let status = producer.wait_status();
        assert!(
            ended_by(status, SIGKILL),
            "trial {trial}: the producer was not killed: {status:?}"
        );
        // The last chunk the killed producer published is still at F unless
        // the consumer already took it; either way it arrives, before the
        // next producer starts.
        if let Some(last) = read_if_present(&bus) {
            check_chunk(&last, None, &format!("trial {trial}: F after the kill"));
            consumer.wait_for_suffix(&last);
        }
        wait_until("the consumer to take the last chunk", || !bus.exists());
        drop(feeder.join().expect("feeder panicked"));
    }
    produce(
        &bus,
        &["--lossless", "--block-size", CHUNK_ARG],
        b"",
        aux.dir.path(),
    );
    let finished = consumer.wait();
    finished.assert_success();
    // The first record of each chunk; per trial, consecutive chunks from its first.
    let numbers = check_full_chunks(&finished.stdout, "chunks of the killed producers");
    let mut expected_next: Vec<usize> = (0..TRIALS).map(|trial| trial * PER_TRIAL).collect();
    let mut last_trial = 0;
    for number in numbers {
        let trial = number / PER_TRIAL;
        assert!(
            trial >= last_trial,
            "record {number} of trial {trial} came after trial {last_trial}"
        );
        assert_eq!(
            number, expected_next[trial],
            "trial {trial}: record {number} lost, repeated or out of order"
        );
        expected_next[trial] += crate::util::RECORDS_PER_CHUNK;
        last_trial = trial;
    }
    for (trial, next) in expected_next.iter().enumerate() {
        assert!(
            *next > trial * PER_TRIAL,
            "trial {trial}: nothing delivered, though a chunk arrived before the kill"
        );
    }
    assert_eq!(bus_dir.names(), ["bus.lock"]);
}

#[test]
fn lossy_consumers_killed_at_random_moments_emit_only_whole_chunks_in_order() {
    const TRIALS: usize = 100;
    let bus_dir = Scratch::new();
    let bus = bus_dir.bus();
    // A producer publishing steadily for the whole test: a pipe that a
    // thread fills with numbered records until told to stop.
    let (reader, mut writer) = std::io::pipe().expect("cannot create a pipe");
    let mut producer = Running::with_stdio(
        filebus(&bus, &["--block-size", CHUNK_ARG, "producer"]),
        reader,
        Stdio::null(),
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopping = std::sync::Arc::clone(&stop);
    let feeder = std::thread::spawn(move || {
        let mut next = 0;
        while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
            if writer
                .write_all(&records(next..next + crate::util::RECORDS_PER_CHUNK))
                .is_err()
            {
                break;
            }
            next += crate::util::RECORDS_PER_CHUNK;
            std::thread::sleep(Duration::from_micros(200));
        }
    });
    let mut rng = Rng::from_clock("kill -9 of lossy consumers, 100 trials");
    for trial in 0..TRIALS {
        // Each consumer is killed at a random moment after it emitted its
        // first chunk (into a pipe the test reads only after the kill: once
        // the pipe is full, the consumer waits on it and misses chunks, as a
        // lossy consumer may).
        let mut consumer =
            Running::with_stdio(filebus(&bus, &["consumer"]), Stdio::null(), Stdio::piped());
        let mut stdout = consumer.child.stdout.take().expect("stdout was piped");
        wait_until(&format!("trial {trial}: a chunk from the consumer"), || {
            pipe_queued(&stdout) >= CHUNK
        });
        std::thread::sleep(Duration::from_micros(rng.below(30_000)));
        consumer.send(SIGKILL);
        let status = consumer.wait_status();
        assert!(
            ended_by(status, SIGKILL),
            "trial {trial}: the kill did not land: {status:?}; stderr:\n{}",
            consumer.stderr()
        );
        let mut output = Vec::new();
        stdout
            .read_to_end(&mut output)
            .expect("cannot read the consumer's output");
        let numbers = check_full_chunks(&output, &format!("trial {trial}"));
        assert!(
            !numbers.is_empty(),
            "trial {trial}: the chunk seen in the pipe before the kill is gone"
        );
        assert!(
            numbers.windows(2).all(|pair| pair[0] < pair[1]),
            "trial {trial}: repeated or reordered records"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    producer.send(SIGTERM);
    producer.wait_status();
    feeder.join().expect("feeder panicked");
}

#[test]
fn a_stats_consumer_whose_reader_goes_away_ends_by_sigpipe() {
    let scratch = Scratch::new();
    // Larger than the consumer can grow its pipe: still writing when head exits.
    let chunk_len = 2 * filebus_core::testing::LARGEST_PIPE;
    std::fs::write(scratch.bus(), vec![b'x'; chunk_len]).expect("cannot write bus");
    let mut shell = Command::new("bash");
    shell
        .args([
            "-c",
            r#"set -o pipefail; "$0" --filename "$1" consumer --stats | head -c 1"#,
        ])
        .arg(filebus_bin())
        .arg(scratch.bus());
    let finished = Running::start(shell, None).wait();
    assert_eq!(finished.stdout, b"x");
    assert_eq!(
        finished.status.code(),
        Some(141),
        "documented: 141 for a reader that went away; stderr: {}",
        finished.stderr
    );
    assert!(
        finished.stderr.contains("stats:"),
        "the summary was not printed first: {:?}",
        finished.stderr
    );
}

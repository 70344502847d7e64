//! Reliable multicast, with the real binary in real processes: a producer
//! keeping a bounded history of chunks (`--history N`), consumers catching up
//! from it in sequence order, replaying (`--last K`) and ending at the
//! end-of-stream chunk, named consumers (`--name`) that hold the producer
//! back and resume after their cursor, `filebus stat` showing it all, the
//! Python reference on the same bus, hostile files in the history and cursor
//! directories, kill -9 at random moments and a full disk.
//!
//! Input is numbered records read with a block size of a whole number of
//! records ([`CHUNK`], see `crate::util::inputs`), so any loss, repeat,
//! reordering or tear shows.
//! Tests wait for facts (a line on stderr, bytes of output, an exit), never
//! for time.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdout, Command, Stdio};
use std::time::Duration;

use libc::{SIGKILL, SIGUSR1};

use crate::util::{
    CHUNK, CHUNK_ARG, RECORDS_PER_CHUNK, Rng, Running, Scratch, assert_one_line_error,
    check_full_chunks, command_for, ended_by, filebus, history_bus, history_dir, history_entries,
    input_in, parse_records, produce, ready_consumer, records, reference_filebus, run_with_input,
    wait_until, wait_until_ready,
};

fn entry_path(bus: &Path, sequence: u64) -> PathBuf {
    history_dir(bus).join(format!("{sequence:020}"))
}

/// The bus counter: the last sequence number given (on `BUS.lock`).
fn bus_counter(bus: &Path) -> u64 {
    crate::util::get_xattr(&bus.with_file_name("bus.lock"), "user.filebus.seq")
        .expect("the bus has no sequence counter")
        .trim()
        .parse()
        .expect("counter is a number")
}

/// `filebus stat ARGS... BUS`, which must succeed; its stdout.
fn stat(bus: &Path, args: &[&str]) -> String {
    let mut all: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    all.push(bus.as_os_str());
    crate::util::stat(&all)
}

/// A consumer whose stdout the test reads only when it wants to: while it
/// does not, the consumer blocks once the pipe is full.
fn blocked_consumer(bus: &Path, args: &[&str]) -> (Running, ChildStdout) {
    let mut all = vec!["-vvv", "consumer"];
    all.extend_from_slice(args);
    let mut consumer = Running::with_stdio(filebus(bus, &all), Stdio::null(), Stdio::piped());
    let stdout = consumer.child.stdout.take().expect("stdout was piped");
    wait_until_ready(&consumer);
    (consumer, stdout)
}

/// The lag of the named consumer `name` in `filebus stat --json` output.
fn lag_of(json: &str, name: &str) -> Option<u64> {
    let start = json.find(&format!("{{\"name\":\"{name}\","))?;
    let rest = &json[start..];
    let lag = &rest[rest.find("\"lag\":")? + 6..];
    lag[..lag.find('}')?].parse().ok()
}

/// The lag of `name` in a line of `filebus stat --watch --json`.
fn watched_lag(line: &str, name: &str) -> Option<u64> {
    let key = format!("\"{name}\":");
    let rest = &line[line.find("\"lag\":{")?..];
    let lag = &rest[rest.find(&key)? + key.len()..];
    lag[..lag.find(['}', ','])?].parse().ok()
}

/// Waits until `name`'s lag (per `filebus stat`) is `lag` while the
/// consumer is alive: with a consumer that stopped reading, the producer is
/// then waiting for it.
fn wait_for_lag(bus: &Path, name: &str, lag: u64) {
    wait_until(&format!("{name} to lag {lag} chunks behind"), || {
        let json = stat(bus, &["--json"]);
        json.contains(&format!("{{\"name\":\"{name}\",\"alive\":true"))
            && lag_of(&json, name) == Some(lag)
    });
}

/// The `lost N chunk(s)` lines on stderr.
fn lost_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|line| line.starts_with("filebus: lost "))
        .collect()
}

/// The count in a `lost N chunks` line.
fn lost_count(line: &str) -> u64 {
    line.trim_start_matches("filebus: lost ")
        .split(' ')
        .next()
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line:?}"))
}

#[test]
fn history_keeps_the_last_n_chunks_as_hard_links_of_the_published_files() {
    let scratch = Scratch::new();
    let aux = Scratch::new();
    let bus = scratch.bus();
    // 20 chunks of 100 records, then the end-of-stream chunk: 21 in all.
    let input = records(0..20 * RECORDS_PER_CHUNK);
    produce(
        &bus,
        &["--block-size", CHUNK_ARG, "--history", "5"],
        &input,
        aux.dir.path(),
    );
    assert_eq!(
        scratch.names(),
        ["bus", "bus.history", "bus.lock"],
        "nothing else beside the bus"
    );
    assert_eq!(
        std::fs::read_to_string(history_dir(&bus).join("depth")).expect("no depth file"),
        "5\n"
    );
    assert_eq!(history_entries(&bus), [17, 18, 19, 20, 21]);
    assert_eq!(
        crate::util::names_in(&history_dir(&bus)).len(),
        6,
        "the entries and the depth file, nothing else"
    );
    // The newest entry is the very file at F (the end-of-stream chunk).
    let at_f = std::fs::metadata(&bus).expect("no bus file");
    let newest = std::fs::metadata(entry_path(&bus, 21)).expect("no newest entry");
    assert_eq!((at_f.dev(), at_f.ino()), (newest.dev(), newest.ino()));
    assert_eq!((at_f.len(), at_f.nlink()), (0, 2));
    for (index, sequence) in (17..=20).enumerate() {
        let entry = std::fs::read(entry_path(&bus, sequence)).expect("entry unreadable");
        let first = (16 + index) * RECORDS_PER_CHUNK;
        assert_eq!(
            entry,
            records(first..first + RECORDS_PER_CHUNK),
            "entry {sequence}"
        );
        let meta = std::fs::metadata(entry_path(&bus, sequence)).expect("entry");
        assert_eq!(meta.nlink(), 1, "entry {sequence} is the only link left");
    }
}

#[test]
fn history_with_back_pressure_is_a_command_line_error() {
    let scratch = Scratch::new();
    for args in [
        &["--back-pressure", "producer", "--history", "4"][..],
        &["producer", "--history", "4", "--lossless"][..],
    ] {
        let output = filebus(&scratch.bus(), args)
            .stdin(Stdio::null())
            .output()
            .expect("cannot run filebus");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains("--history"), "{args:?}: {stderr}");
    }
    for bad in ["0", "-1", "x", "1048577"] {
        let output = filebus(&scratch.bus(), &["producer", "--history", bad])
            .stdin(Stdio::null())
            .output()
            .expect("cannot run filebus");
        assert_eq!(output.status.code(), Some(2), "--history {bad} accepted");
    }
    assert!(
        scratch.names().is_empty(),
        "a refused command created files"
    );
}

#[test]
fn the_depth_belongs_to_the_bus_and_every_producer_keeps_it() {
    let scratch = Scratch::new();
    let aux = Scratch::new();
    let bus = scratch.bus();
    history_bus(&bus, "3", aux.dir.path());
    let (status, stderr) = run_with_input(
        filebus(&bus, &["producer", "--history", "8"]),
        b"refused\n",
        aux.dir.path(),
    );
    assert_one_line_error(
        status,
        &stderr,
        None,
        &["bus.history", "3", "--history 8"],
        "a producer asking for another depth",
    );
    assert_eq!(history_entries(&bus), [1], "the refused producer published");
    // A producer without --history keeps the bus's history all the same,
    // and ends its stream with an end-of-stream chunk.
    let input = records(0..10 * RECORDS_PER_CHUNK);
    produce(&bus, &["--block-size", CHUNK_ARG], &input, aux.dir.path());
    assert_eq!(history_entries(&bus), [10, 11, 12]);
    assert_eq!(std::fs::metadata(&bus).expect("bus").len(), 0);
    // The same depth is accepted.
    produce(&bus, &["--history", "3"], b"same depth\n", aux.dir.path());
    assert_eq!(history_entries(&bus), [12, 13, 14]);
    assert_eq!(
        std::fs::read(entry_path(&bus, 13)).expect("entry 13"),
        b"same depth\n"
    );
}

#[test]
fn consumer_started_on_an_empty_directory_receives_every_chunk_then_exits_at_end_of_stream() {
    let scratch = Scratch::new();
    let aux = Scratch::new();
    let bus = scratch.bus();
    // No bus, no history yet: the consumer starts as a plain one.
    let consumer = Running::start(filebus(&bus, &["-vvv", "consumer"]), None);
    wait_until("the consumer to watch the bus", || {
        consumer.stderr().contains("watching")
    });
    // Deep enough to hold the whole stream: nothing can be lost, however
    // slowly the consumer runs.
    let input = records(0..300 * RECORDS_PER_CHUNK);
    produce(
        &bus,
        &["--block-size", CHUNK_ARG, "--history", "1000"],
        &input,
        aux.dir.path(),
    );
    let finished = consumer.wait();
    finished.assert_success();
    assert!(
        finished.stdout == input,
        "{} bytes received of {}; stderr:\n{}",
        finished.stdout.len(),
        input.len(),
        finished.stderr
    );
    assert!(lost_lines(&finished.stderr).is_empty());
}

#[test]
fn consumer_on_a_history_bus_ends_after_the_stream_and_follow_keeps_it_across_producers() {
    let scratch = Scratch::new();
    let aux = Scratch::new();
    let bus = scratch.bus();
    history_bus(&bus, "1000", aux.dir.path());
    // The end-of-stream chunk already at F ends nothing: both wait.
    let ending = ready_consumer(&bus, &[]);
    let following = ready_consumer(&bus, &["--follow"]);
    let first = records(0..50 * RECORDS_PER_CHUNK);
    let second = records(50 * RECORDS_PER_CHUNK..80 * RECORDS_PER_CHUNK);
    produce(&bus, &["--block-size", CHUNK_ARG], &first, aux.dir.path());
    let ended = ending.wait();
    ended.assert_success();
    assert!(ended.stdout == first, "{} bytes", ended.stdout.len());
    produce(&bus, &["--block-size", CHUNK_ARG], &second, aux.dir.path());
    let mut both = first.clone();
    both.extend_from_slice(&second);
    let received = following.wait_for_output(both.len());
    assert!(received == both, "{} bytes", received.len());
    let mut following = following;
    assert!(following.is_running(), "--follow ended at an end of stream");
    following.kill();
}

#[test]
fn consumer_more_than_n_behind_reports_each_gap_once_and_stats_count_it() {
    let scratch = Scratch::new();
    let aux = Scratch::new();
    let bus = scratch.bus();
    history_bus(&bus, "4", aux.dir.path());
    // Its output is not read: it blocks once the pipe is full, about 72
    // chunks in, while the producer publishes all 300 and ends.
    let (mut consumer, mut stdout) = blocked_consumer(&bus, &["--stats"]);
    let input = records(0..300 * RECORDS_PER_CHUNK);
    produce(&bus, &["--block-size", CHUNK_ARG], &input, aux.dir.path());
    let reader = std::thread::spawn(move || {
        let mut output = Vec::new();
        let _ = stdout.read_to_end(&mut output);
        output
    });
    // Waits with a deadline: a consumer that missed the end of the stream
    // fails here.
    let status = consumer.wait_status();
    let stderr = consumer.stderr();
    assert!(status.success(), "{status:?}: {stderr}");
    let output = reader.join().expect("reader panicked");
    // Chunks 2..=301 carry the records, 302 ends the stream; history holds
    // 299..=302. Output: a prefix of whole chunks, then the last three.
    let firsts = check_full_chunks(&output, "the slow consumer's output");
    let tail = [297, 298, 299].map(|chunk| chunk * RECORDS_PER_CHUNK);
    assert!(firsts.len() >= 3, "{firsts:?}");
    assert_eq!(firsts[firsts.len() - 3..], tail, "the chunks still held");
    // Each jump in the numbers (the first chunk included: under load, the
    // consumer may fall behind early too) is one gap, reported once.
    let mut gaps = usize::from(firsts[0] != 0);
    for pair in firsts.windows(2) {
        assert!(pair[0] < pair[1], "repeated or reordered: {firsts:?}");
        gaps += usize::from(pair[1] != pair[0] + RECORDS_PER_CHUNK);
    }
    let lines = lost_lines(&stderr);
    assert!(gaps >= 1, "a consumer blocked for 228 chunks lost none");
    assert_eq!(lines.len(), gaps, "one report per gap:\n{stderr}");
    let lost = (300 - firsts.len()) as u64;
    assert_eq!(
        lines.iter().map(|line| lost_count(line)).sum::<u64>(),
        lost,
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{lost} missed")),
        "--stats counts the lost chunks as missed:\n{stderr}"
    );
}

#[test]
fn gap_report_is_printed_without_any_verbosity() {
    let scratch = Scratch::new();
    let aux = Scratch::new();
    let bus = scratch.bus();
    history_bus(&bus, "2", aux.dir.path());
    let mut consumer = Running::with_stdio(
        filebus(&bus, &["consumer", "--name", "late"]),
        Stdio::null(),
        Stdio::piped(),
    );
    let mut stdout = consumer.child.stdout.take().expect("stdout was piped");
    // It wrote the end-of-stream chunk already at F (number 1).
    wait_until("the cursor", || {
        stat(&bus, &["--json"]).contains("\"alive\":true,\"cursor\":1,")
    });
    // Kill it, publish more than the history holds, start it again.
    consumer.send(SIGKILL);
    consumer.wait();
    let _ = stdout.read_to_end(&mut Vec::new());
    let input = records(0..10 * RECORDS_PER_CHUNK);
    produce(&bus, &["--block-size", CHUNK_ARG], &input, aux.dir.path());
    let (status, stderr) = run_with_input(
        filebus(&bus, &["consumer", "--name", "late"]),
        b"",
        aux.dir.path(),
    );
    assert!(status.success(), "{status:?}: {stderr}");
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        ["filebus: lost 9 chunks: chunks 2 to 10 left the history before this consumer wrote them"]
    );
}

#[test]
fn last_k_starts_k_chunks_back_as_far_as_history_holds() {
    let scratch = Scratch::new();
    let aux = Scratch::new();
    let bus = scratch.bus();
    let input = records(0..20 * RECORDS_PER_CHUNK);
    produce(
        &bus,
        &["--block-size", CHUNK_ARG, "--history", "10"],
        &input,
        aux.dir.path(),
    );
    // Chunks 1..=20 hold the records, 21 ends the stream; 12..=21 are held.
    for (k, first_chunk) in [(5, 15), (1, 19), (9, 11), (1000, 11)] {
        let consumer = Running::start(filebus(&bus, &["consumer", "--last", &k.to_string()]), None);
        let expected = records(first_chunk * RECORDS_PER_CHUNK..input.len() / 9);
        // The stream ended before it started, and the replay reaches its
        // end-of-stream chunk: like `tail -n K`, it writes and exits.
        let finished = consumer.wait();
        finished.assert_success();
        assert!(
            finished.stdout == expected,
            "--last {k}: {} bytes, expected {}",
            finished.stdout.len(),
            expected.len()
        );
        assert!(
            lost_lines(&finished.stderr).is_empty(),
            "--last {k} reaching past the history is no loss: {}",
            finished.stderr
        );
    }
    // Without --last, a consumer that finds the stream ended waits for the
    // next one (it writes the last chunk, as a late joiner does).
    let mut waiting = Running::start(filebus(&bus, &["consumer"]), None);
    let last_chunk = records(19 * RECORDS_PER_CHUNK..20 * RECORDS_PER_CHUNK);
    assert_eq!(waiting.wait_for_output(last_chunk.len()), last_chunk);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        waiting.is_running(),
        "a plain late joiner ended at an old end of stream"
    );
    waiting.kill();
    // --last 0: only what comes next.
    let consumer = ready_consumer(&bus, &["--last", "0"]);
    produce(&bus, &[], b"next\n", aux.dir.path());
    let finished = consumer.wait();
    finished.assert_success();
    assert_eq!(finished.stdout, b"next\n");
}

#[test]
fn named_consumers_receive_every_byte_while_the_slow_one_holds_the_producer_back() {
    let scratch = Scratch::new();
    let aux = Scratch::new();
    let bus = scratch.bus();
    history_bus(&bus, "4", aux.dir.path());
    let fast = ready_consumer(&bus, &["--name", "fast"]);
    let (mut slow, mut slow_stdout) = blocked_consumer(&bus, &["--name", "slow"]);
    let input = records(0..300 * RECORDS_PER_CHUNK);
    let stdin = input_in(aux.dir.path(), "input", &input);
    let mut producer = Running::with_stdio(
        filebus(&bus, &["--block-size", CHUNK_ARG, "producer"]),
        stdin,
        Stdio::null(),
    );
    // The slow consumer's pipe is full: the producer waits for it, with the
    // history at its bound (plus the chunk being published).
    wait_for_lag(&bus, "slow", 4);
    for _ in 0..20 {
        assert!(producer.try_status().is_none(), "the producer did not wait");
        assert!(
            history_entries(&bus).len() <= 5,
            "{:?}",
            history_entries(&bus)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let text = stat(&bus, &[]);
    assert!(text.contains("history:  depth 4, "), "{text}");
    assert!(text.contains("consumer: slow alive, cursor "), "{text}");
    let reader = std::thread::spawn(move || {
        let mut output = Vec::new();
        slow_stdout.read_to_end(&mut output).expect("read slow");
        output
    });
    let status = producer.wait_status();
    assert!(status.success(), "{status:?}: {}", producer.stderr());
    let fast = fast.wait();
    fast.assert_success();
    assert!(fast.stdout == input, "fast: {} bytes", fast.stdout.len());
    assert!(slow.wait_status().success(), "{}", slow.stderr());
    let slow_output = reader.join().expect("reader panicked");
    assert!(slow_output == input, "slow: {} bytes", slow_output.len());
    assert!(history_entries(&bus).len() <= 4);
    let json = stat(&bus, &["--json"]);
    assert!(
        json.contains("{\"name\":\"fast\",\"alive\":false,\"cursor\":302,\"lag\":0}")
            && json.contains("{\"name\":\"slow\",\"alive\":false,\"cursor\":302,\"lag\":0}")
            && json
                .contains("\"history\":{\"depth\":4,\"chunks\":4,\"oldest\":299,\"newest\":302,"),
        "{json}"
    );
}

#[test]
fn a_second_consumer_of_the_same_name_is_refused_and_names_are_checked() {
    let scratch = Scratch::new();
    let aux = Scratch::new();
    let bus = scratch.bus();
    history_bus(&bus, "4", aux.dir.path());
    let first = ready_consumer(&bus, &["--name", "backup"]);
    let (status, stderr) = run_with_input(
        filebus(&bus, &["consumer", "--name", "backup"]),
        b"",
        aux.dir.path(),
    );
    assert_one_line_error(
        status,
        &stderr,
        None,
        &["bus.consumers/backup", "already running"],
        "a second consumer named backup",
    );
    first.kill();
    for bad in ["", ".", "..", "a/b", "../x", &"n".repeat(65)] {
        let output = filebus(&bus, &["consumer", "--name", bad])
            .stdin(Stdio::null())
            .output()
            .expect("cannot run filebus");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "--name {bad:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    assert_eq!(
        crate::util::names_in(&bus.with_file_name("bus.consumers")),
        ["backup"]
    );
}

#[test]
fn a_killed_named_consumer_stops_holding_the_producer_back() {
    let scratch = Scratch::new();
    let aux = Scratch::new();
    let bus = scratch.bus();
    history_bus(&bus, "8", aux.dir.path());
    let (mut consumer, stdout) = blocked_consumer(&bus, &["--name", "stuck"]);
    let input = records(0..300 * RECORDS_PER_CHUNK);
    let stdin = input_in(aux.dir.path(), "input", &input);
    let mut producer = Running::with_stdio(
        filebus(&bus, &["--block-size", CHUNK_ARG, "producer"]),
        stdin,
        Stdio::null(),
    );
    wait_for_lag(&bus, "stuck", 8);
    assert!(producer.try_status().is_none());
    consumer.send(SIGKILL);
    assert!(ended_by(consumer.wait_status(), SIGKILL));
    drop(stdout);
    let status = producer.wait_status();
    assert!(status.success(), "{status:?}: {}", producer.stderr());
    let json = stat(&bus, &["--json"]);
    assert!(
        json.contains("\"name\":\"stuck\",\"alive\":false"),
        "{json}"
    );
    assert_eq!(history_entries(&bus), (295..=302).collect::<Vec<u64>>());
}

#[test]
fn a_named_consumer_started_again_resumes_right_after_its_cursor() {
    let scratch = Scratch::new();
    let aux = Scratch::new();
    let bus = scratch.bus();
    history_bus(&bus, "10000", aux.dir.path());
    let total = 400 * RECORDS_PER_CHUNK;
    let first = ready_consumer(&bus, &["--name", "resumer"]);
    let (reader, mut writer) = std::io::pipe().expect("pipe");
    let mut producer = Running::with_stdio(
        filebus(&bus, &["--block-size", CHUNK_ARG, "producer"]),
        reader,
        Stdio::null(),
    );
    // Half the input, then a kill while the consumer is somewhere in it.
    writer
        .write_all(&records(0..total / 2))
        .expect("cannot feed");
    first.wait_for_output(100 * CHUNK);
    let first = first.kill();
    writer
        .write_all(&records(total / 2..total))
        .expect("cannot feed");
    drop(writer);
    assert!(producer.wait_status().success(), "{}", producer.stderr());
    let second = ready_consumer(&bus, &["--name", "resumer"]);
    let second = second.wait();
    second.assert_success();
    assert!(lost_lines(&second.stderr).is_empty(), "{}", second.stderr);
    let whole = first.stdout.len() / crate::util::CHUNK * crate::util::CHUNK;
    let firsts = check_full_chunks(&first.stdout[..whole], "before the kill");
    let resumed = check_full_chunks(&second.stdout, "after the restart");
    let stopped_at = firsts.len() * RECORDS_PER_CHUNK;
    let resumed_at = resumed[0];
    assert!(
        resumed_at <= stopped_at && resumed_at + RECORDS_PER_CHUNK >= stopped_at,
        "stopped after record {stopped_at}, resumed at {resumed_at}: lost or repeated more than a chunk"
    );
    let mut all = parse_records(&first.stdout[..whole]);
    all.truncate(resumed_at);
    all.extend(parse_records(&second.stdout));
    assert_eq!(all, (0..total).collect::<Vec<_>>());
}

#[test]
fn stat_shows_history_and_named_consumers_and_watch_shows_the_lag_moving() {
    let scratch = Scratch::new();
    let aux = Scratch::new();
    let bus = scratch.bus();
    let input = records(0..6 * RECORDS_PER_CHUNK);
    produce(
        &bus,
        &["--block-size", CHUNK_ARG, "--history", "4"],
        &input,
        aux.dir.path(),
    );
    let text = stat(&bus, &[]);
    assert!(
        text.contains(&format!(
            "history:  depth 4, 4 chunks held (4 to 7), {} bytes\n",
            3 * CHUNK
        )),
        "{text}"
    );
    // A late joiner writes the last chunk of the ended stream (6) and the
    // end-of-stream chunk (7), then waits for the next stream.
    let (consumer, stdout) = blocked_consumer(&bus, &["--name", "watcher"]);
    wait_until("the cursor at 7", || {
        stat(&bus, &["--json"]).contains(
            "\"consumers\":[{\"name\":\"watcher\",\"alive\":true,\"cursor\":7,\"lag\":0}]",
        )
    });
    let text = stat(&bus, &[]);
    assert!(
        text.contains("consumer: watcher alive, cursor 7, lag 0 chunks\n"),
        "{text}"
    );
    // --watch: a line a second with the lag, which grows to 4 while the
    // consumer's output is not read (the producer waits), and beyond once
    // it is killed (the producer goes on).
    let watch = Running::start(
        {
            let mut command = Command::new(crate::util::filebus_bin());
            command.args(["stat", "--watch", "--json"]).arg(&bus);
            command
        },
        None,
    );
    wait_until("a first line", || watch.output().contains(&b'\n'));
    let big = records(0..200 * RECORDS_PER_CHUNK);
    let producer = Running::start(
        filebus(&bus, &["--block-size", CHUNK_ARG, "producer"]),
        Some(big),
    );
    wait_for_lag(&bus, "watcher", 4);
    consumer.send(SIGKILL);
    consumer.wait();
    drop(stdout);
    producer.wait().assert_success();
    wait_until("the lag to grow past 4 in --watch", || {
        String::from_utf8_lossy(&watch.output())
            .lines()
            .any(|line| watched_lag(line, "watcher").is_some_and(|lag| lag > 4))
    });
    let finished = watch.kill();
    let lags: Vec<u64> = String::from_utf8_lossy(&finished.stdout)
        .lines()
        .map(|line| watched_lag(line, "watcher").unwrap_or_else(|| panic!("no lag in {line}")))
        .collect();
    assert_eq!(lags[0], 0, "{lags:?}");
    assert!(lags.windows(2).all(|pair| pair[0] <= pair[1]), "{lags:?}");
    let text = stat(&bus, &[]);
    assert!(text.contains("consumer: watcher dead, cursor "), "{text}");
}

#[test]
fn foreign_files_in_the_history_and_cursor_directories_are_skipped_and_kept() {
    let scratch = Scratch::new();
    let aux = Scratch::new();
    let bus = scratch.bus();
    // Chunks 1..=10 hold the records, 11 ends the stream; 2..=11 are held.
    let input = records(0..10 * RECORDS_PER_CHUNK);
    produce(
        &bus,
        &["--block-size", CHUNK_ARG, "--history", "10"],
        &input,
        aux.dir.path(),
    );
    assert_eq!(history_entries(&bus), (2..=11).collect::<Vec<u64>>());
    let history = history_dir(&bus);
    // Entries 4..=8 replaced by what an attacker with write access could put there.
    for sequence in 4..=8 {
        std::fs::remove_file(entry_path(&bus, sequence)).expect("cannot remove an entry");
    }
    std::os::unix::fs::symlink(&bus, entry_path(&bus, 4)).expect("symlink");
    std::fs::create_dir(entry_path(&bus, 5)).expect("dir");
    let fifo = CString::new(entry_path(&bus, 6).as_os_str().as_bytes()).expect("path");
    // SAFETY: mkfifo reads a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let sparse = File::create(entry_path(&bus, 7)).expect("sparse");
    sparse.set_len(1 << 40).expect("cannot make a sparse file");
    std::fs::write(entry_path(&bus, 8), records(0..RECORDS_PER_CHUNK)).expect("unstamped");
    std::fs::write(history.join("junk"), b"junk").expect("junk");
    std::fs::write(history.join("0000000000000000000x"), b"x").expect("x");
    let consumers = bus.with_file_name("bus.consumers");
    std::fs::create_dir(&consumers).expect("consumers dir");
    std::os::unix::fs::symlink(&bus, consumers.join("linked")).expect("symlink");
    std::fs::create_dir(consumers.join("adir")).expect("dir");
    let cfifo = CString::new(consumers.join("pipe").as_os_str().as_bytes()).expect("path");
    // SAFETY: as above.
    assert_eq!(unsafe { libc::mkfifo(cfifo.as_ptr(), 0o644) }, 0);
    // A named consumer replaying everything held: it writes the real
    // chunks, reports each foreign entry as a lost chunk, and never hangs.
    let consumer = ready_consumer(&bus, &["--name", "reader", "--last", "100"]);
    let expected: Vec<u8> = [1, 2, 8, 9]
        .iter()
        .flat_map(|chunk| records(chunk * RECORDS_PER_CHUNK..(chunk + 1) * RECORDS_PER_CHUNK))
        .collect();
    // The replay reaches the end-of-stream chunk at F: it ends there.
    let finished = consumer.wait();
    finished.assert_success();
    assert!(
        finished.stdout == expected,
        "{} bytes",
        finished.stdout.len()
    );
    let json = stat(&bus, &["--json"]);
    assert!(
        json.contains("\"consumers\":[{\"name\":\"reader\",\"alive\":false,\"cursor\":11,"),
        "{json}"
    );
    assert!(
        json.contains("\"history\":{\"depth\":10,\"chunks\":7,"),
        "{json}"
    );
    let lost: u64 = lost_lines(&finished.stderr)
        .iter()
        .map(|line| lost_count(line))
        .sum();
    assert_eq!(lost, 5, "{}", finished.stderr);
    // Producers move the window past them: the regular files under entry
    // names (the sparse and the unstamped one) go as chunks do; the rest stays.
    produce(&bus, &["--block-size", CHUNK_ARG], &input, aux.dir.path());
    let mut expected = vec![4, 5, 6];
    expected.extend(13..=22);
    assert_eq!(history_entries(&bus), expected);
    for name in ["junk", "0000000000000000000x"] {
        assert!(history.join(name).exists(), "{name} was deleted");
    }
    assert_eq!(std::fs::read_link(entry_path(&bus, 4)).expect("link"), bus);
    assert!(entry_path(&bus, 5).is_dir(), "directory deleted");
    assert_eq!(
        crate::util::names_in(&consumers),
        ["adir", "linked", "pipe", "reader"]
    );
    // A non-file squatting the name of the next chunk stops a producer
    // with one line (it is never deleted).
    std::fs::create_dir(entry_path(&bus, 23)).expect("dir");
    let (status, stderr) = run_with_input(filebus(&bus, &["producer"]), b"x\n", aux.dir.path());
    assert_one_line_error(
        status,
        &stderr,
        None,
        &["00000000000000000023", "exists"],
        "a directory at the next entry",
    );
    assert!(entry_path(&bus, 23).is_dir());
    // A symlink instead of the history directory: consumers ignore it,
    // producers asking for history refuse it.
    let elsewhere = Scratch::new();
    let other = elsewhere.bus();
    std::os::unix::fs::symlink(&history, history_dir(&other)).expect("symlink");
    let (status, stderr) = run_with_input(
        filebus(&other, &["producer", "--history", "10"]),
        b"x\n",
        aux.dir.path(),
    );
    assert_one_line_error(
        status,
        &stderr,
        None,
        &["bus.history", "not a directory"],
        "symlinked history",
    );
    produce(&other, &[], b"plain\n", aux.dir.path());
    let consumer = Running::start(filebus(&other, &["consumer"]), None);
    assert_eq!(consumer.wait_for_output(6), b"plain\n");
    consumer.kill();
    assert_eq!(elsewhere.names(), ["bus", "bus.history", "bus.lock"]);
}

#[test]
fn python_lossy_consumer_reads_a_history_bus_chunk_by_chunk() {
    let scratch = Scratch::new();
    let aux = Scratch::new();
    let bus = scratch.bus();
    history_bus(&bus, "8", aux.dir.path());
    let python = Running::start(command_for(&reference_filebus(), &bus, &["consumer"]), None);
    // One record per chunk, each published as soon as it is read, the next
    // fed only once the reference consumer wrote the previous one.
    let (reader, mut writer) = std::io::pipe().expect("cannot create a pipe");
    let mut producer = Running::with_stdio(
        filebus(&bus, &["--block-size", "9", "producer"]),
        reader,
        Stdio::null(),
    );
    for number in 0..10 {
        writer
            .write_all(&records(number..number + 1))
            .expect("cannot feed the producer");
        python.wait_for_output((number + 1) * 9);
    }
    drop(writer);
    assert!(producer.wait_status().success(), "{}", producer.stderr());
    // The end-of-stream chunk (12) is an empty chunk to the reference.
    wait_until("the end-of-stream chunk", || {
        history_entries(&bus).last() == Some(&12)
    });
    assert_eq!(std::fs::metadata(&bus).expect("bus").len(), 0);
    let finished = python.kill();
    assert_eq!(finished.stdout, records(0..10), "{}", finished.stderr);
    assert!(
        !finished.stderr.contains("Traceback"),
        "{}",
        finished.stderr
    );
    assert_eq!(history_entries(&bus), (5..=12).collect::<Vec<u64>>());
}

#[test]
fn python_producer_chunks_on_a_history_bus_reach_our_consumer_counted_as_unknown() {
    let scratch = Scratch::new();
    let aux = Scratch::new();
    let bus = scratch.bus();
    history_bus(&bus, "8", aux.dir.path());
    let consumer = ready_consumer(&bus, &["--stats", "--follow"]);
    let (status, stderr) = run_with_input(
        command_for(&reference_filebus(), &bus, &["producer"]),
        b"from python\n",
        aux.dir.path(),
    );
    assert!(status.success(), "the reference producer failed: {stderr}");
    consumer.wait_for_output(12);
    produce(&bus, &[], b"from ours\n", aux.dir.path());
    let received = consumer.wait_for_output(22);
    assert_eq!(received, b"from python\nfrom ours\n");
    // The reference's chunk is not in history (it carries no number).
    assert_eq!(history_entries(&bus), [1, 2, 3]);
    // SAFETY: kill(2) on our own running child.
    unsafe {
        libc::kill(consumer.child.id() as i32, SIGUSR1);
    }
    wait_until("the stats line", || consumer.stderr().contains("stats:"));
    let stderr = consumer.stderr();
    assert!(stderr.contains("0 missed, 1 unknown"), "{stderr}");
    consumer.kill();
}

#[test]
fn producers_with_history_killed_at_random_moments_tear_nothing_and_keep_history_bounded() {
    const TRIALS: usize = 100;
    const PER_TRIAL: usize = 100 * RECORDS_PER_CHUNK;
    const DEPTH: usize = 16;
    let scratch = Scratch::new();
    let aux = Scratch::new();
    let bus = scratch.bus();
    history_bus(&bus, &DEPTH.to_string(), aux.dir.path());
    // A named consumer throughout: nothing published may be lost to it.
    let keeper = ready_consumer(&bus, &["--name", "keeper", "--follow", "--stats"]);
    let mut rng = Rng::from_clock("kill -9 of producers with history, 100 trials");
    let args = [
        "--block-size",
        CHUNK_ARG,
        "--sleep-interval",
        "3600",
        "producer",
    ];
    let mut landed = 0;
    for trial in 0..TRIALS {
        let (reader, mut writer) = std::io::pipe().expect("cannot create a pipe");
        let mut producer = Running::with_stdio(filebus(&bus, &args), reader, Stdio::null());
        let input = records(trial * PER_TRIAL..(trial + 1) * PER_TRIAL);
        let feeder = std::thread::spawn(move || {
            let _ = writer.write_all(&input);
        });
        std::thread::sleep(Duration::from_micros(rng.below(20_000)));
        producer.send(SIGKILL);
        let status = producer.wait_status();
        if ended_by(status, SIGKILL) {
            landed += 1;
        } else {
            assert!(
                status.success(),
                "trial {trial}: {status:?}: {}",
                producer.stderr()
            );
        }
        feeder.join().expect("feeder panicked");
        let held = history_entries(&bus);
        assert!(
            held.len() <= DEPTH + 1,
            "trial {trial}: {} entries",
            held.len()
        );
    }
    produce(&bus, &[], b"", aux.dir.path());
    let counter = bus_counter(&bus);
    let deadline = std::time::Instant::now() + crate::util::PATIENCE;
    while !stat(&bus, &["--json"]).contains(&format!("\"cursor\":{counter},")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the keeper did not write everything up to {counter}: {}\n{}",
            stat(&bus, &["--json"]),
            keeper.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: kill(2) on our own running child.
    unsafe {
        libc::kill(keeper.child.id() as i32, SIGUSR1);
    }
    wait_until("the stats line", || keeper.stderr().contains("stats:"));
    let finished = keeper.kill();
    assert!(finished.stderr.contains(" 0 missed"), "{}", finished.stderr);
    assert!(
        lost_lines(&finished.stderr).is_empty(),
        "{}",
        finished.stderr
    );
    // Whole chunks; per trial, consecutive chunks from its first, trials in order.
    let firsts = check_full_chunks(&finished.stdout, "chunks of the killed producers");
    let mut expected_next: Vec<usize> = (0..TRIALS).map(|trial| trial * PER_TRIAL).collect();
    let mut last_trial = 0;
    for first in &firsts {
        let trial = first / PER_TRIAL;
        assert!(
            trial >= last_trial,
            "record {first} of trial {trial} after trial {last_trial}"
        );
        assert_eq!(
            *first, expected_next[trial],
            "trial {trial}: lost, repeated or reordered"
        );
        expected_next[trial] += RECORDS_PER_CHUNK;
        last_trial = trial;
    }
    assert!(
        landed >= TRIALS / 2,
        "only {landed} of {TRIALS} kills landed"
    );
    assert!(
        firsts.len() >= TRIALS,
        "only {} chunks delivered",
        firsts.len()
    );
    // Nothing left over but what a bus with history has.
    for name in scratch.names() {
        assert!(
            [
                "bus",
                "bus.lock",
                "bus.__new__",
                "bus.history",
                "bus.consumers"
            ]
            .contains(&name.as_str()),
            "left over: {name}"
        );
    }
    let held = history_entries(&bus);
    assert_eq!(held.len(), DEPTH);
    assert_eq!(
        crate::util::names_in(&history_dir(&bus)).len(),
        DEPTH + 1,
        "only entries and depth"
    );
}

#[test]
fn named_consumers_killed_at_random_moments_lose_nothing_and_repeat_at_most_one_chunk() {
    const TRIALS: usize = 100;
    const DEPTH: usize = 16;
    let scratch = Scratch::new();
    let aux = Scratch::new();
    let bus = scratch.bus();
    history_bus(&bus, &DEPTH.to_string(), aux.dir.path());
    // A producer publishing steadily from a pipe a thread keeps full.
    let (reader, mut writer) = std::io::pipe().expect("cannot create a pipe");
    let mut producer = Running::with_stdio(
        filebus(
            &bus,
            &[
                "--block-size",
                CHUNK_ARG,
                "--sleep-interval",
                "3600",
                "producer",
            ],
        ),
        reader,
        Stdio::null(),
    );
    // While no consumer of the name is alive, nothing holds the producer
    // back: it is stopped then, so that what the next one needs is held.
    producer.send(libc::SIGSTOP);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopping = std::sync::Arc::clone(&stop);
    let feeder = std::thread::spawn(move || {
        let mut next = 0;
        while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
            if writer
                .write_all(&records(next..next + RECORDS_PER_CHUNK))
                .is_err()
            {
                break;
            }
            next += RECORDS_PER_CHUNK;
        }
        next
    });
    let mut rng = Rng::from_clock("kill -9 of named consumers, 100 trials");
    let mut outputs = Vec::new();
    for trial in 0..TRIALS {
        let (mut consumer, mut stdout) = blocked_consumer(&bus, &["--name", "victim"]);
        let reader = std::thread::spawn(move || {
            let mut output = Vec::new();
            let _ = stdout.read_to_end(&mut output);
            output
        });
        producer.send(libc::SIGCONT);
        std::thread::sleep(Duration::from_micros(rng.below(30_000)));
        producer.send(libc::SIGSTOP);
        consumer.send(SIGKILL);
        assert!(
            ended_by(consumer.wait_status(), SIGKILL),
            "trial {trial}: {}",
            consumer.stderr()
        );
        assert!(
            lost_lines(&consumer.stderr()).is_empty(),
            "trial {trial}: {}",
            consumer.stderr()
        );
        outputs.push(reader.join().expect("reader panicked"));
        let held = history_entries(&bus);
        assert!(
            held.len() <= DEPTH + 1,
            "trial {trial}: {} entries",
            held.len()
        );
    }
    // The last consumer of the name, alive before the producer goes on,
    // writes everything to the end of the stream.
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let last = ready_consumer(&bus, &["--name", "victim"]);
    producer.send(libc::SIGCONT);
    let fed = feeder.join().expect("feeder panicked");
    assert!(producer.wait_status().success(), "{}", producer.stderr());
    let finished = last.wait();
    finished.assert_success();
    assert!(
        lost_lines(&finished.stderr).is_empty(),
        "{}",
        finished.stderr
    );
    outputs.push(finished.stdout);
    // Concatenated, the outputs are the stream: each consumer starts at
    // most one chunk before where the previous one stopped, never after.
    let mut expected_next = 0;
    let mut repeats = 0;
    for (index, output) in outputs.iter().enumerate() {
        let whole = output.len() / CHUNK * CHUNK;
        let firsts = check_full_chunks(&output[..whole], &format!("consumer {index}"));
        let Some(&start) = firsts.first() else {
            continue;
        };
        assert!(
            start == expected_next || start + RECORDS_PER_CHUNK == expected_next,
            "consumer {index} started at record {start}, expected {expected_next}"
        );
        repeats += usize::from(start != expected_next);
        for pair in firsts.windows(2) {
            assert_eq!(pair[0] + RECORDS_PER_CHUNK, pair[1], "consumer {index}");
        }
        expected_next = firsts[firsts.len() - 1] + RECORDS_PER_CHUNK;
    }
    assert!(repeats <= TRIALS, "{repeats} repeats");
    assert_eq!(expected_next, fed, "records fed and delivered");
    assert!(fed >= 20 * RECORDS_PER_CHUNK, "only {fed} records fed");
    assert_eq!(
        crate::util::names_in(&bus.with_file_name("bus.consumers")),
        ["victim"]
    );
}

// On tmpfs a hard link uses up an inode of the budget like a new file does,
// so filling the inodes makes linking a chunk into history fail with ENOSPC.

/// Creates empty files `filler-N` in `dir` until no inode is left; returns
/// their paths.
fn use_up_inodes(dir: &Path) -> Vec<PathBuf> {
    let mut fillers = Vec::new();
    loop {
        let path = dir.join(format!("filler-{}", fillers.len()));
        match File::create(&path) {
            Ok(_) => fillers.push(path),
            Err(error) if error.raw_os_error() == Some(libc::ENOSPC) => return fillers,
            Err(error) => panic!("cannot fill the inodes: {error}"),
        }
    }
}

#[test]
fn a_full_disk_while_linking_into_history_fails_with_one_line_and_leaves_bus_and_history_as_they_were()
 {
    let aux = Scratch::new();
    for (variant, extra) in [
        ("named temporary files", "--named-temp-files"),
        ("anonymous", ""),
    ] {
        let fs = crate::util::Tmpfs::mount("size=4m,nr_inodes=64,mode=0755");
        let bus = fs.path().join("bus");
        let input = records(0..5 * RECORDS_PER_CHUNK);
        produce(
            &bus,
            &["--block-size", CHUNK_ARG, "--history", "4"],
            &input,
            aux.dir.path(),
        );
        let counter = bus_counter(&bus);
        let held = history_entries(&bus);
        assert_eq!((counter, held.clone()), (6, vec![3, 4, 5, 6]), "{variant}");
        // One inode left: for the chunk's file. Its link into history (the
        // second link of the named file, the first of the anonymous one
        // being free, the link at F then) finds none.
        let mut fillers = use_up_inodes(fs.path());
        std::fs::remove_file(fillers.pop().expect("no filler")).expect("cannot free an inode");
        let mut args = vec!["--block-size", CHUNK_ARG];
        if !extra.is_empty() {
            args.push(extra);
        }
        args.push("producer");
        let (status, stderr) = run_with_input(filebus(&bus, &args), b"refused\n", aux.dir.path());
        assert_one_line_error(status, &stderr, None, &["No space left on device"], variant);
        assert_eq!(history_entries(&bus), held, "{variant}: history changed");
        assert_eq!(
            std::fs::metadata(&bus).expect("bus").len(),
            0,
            "{variant}: F changed"
        );
        assert_eq!(
            std::fs::metadata(&bus).expect("bus").ino(),
            std::fs::metadata(entry_path(&bus, 6))
                .expect("entry 6")
                .ino(),
            "{variant}: F is still the newest entry"
        );
        let names = crate::util::names_in(fs.path());
        assert!(
            names.iter().all(|name| name.starts_with("filler-")
                || ["bus", "bus.history", "bus.lock"].contains(&name.as_str())),
            "{variant}: left over: {names:?}"
        );
        // Room again: the next producer goes on; a consumer that was
        // waiting sees no loss (a number the failed publish took is a hole
        // in the window, not a lost chunk).
        for filler in fillers {
            std::fs::remove_file(filler).expect("cannot remove a filler");
        }
        let consumer = ready_consumer(&bus, &[]);
        produce(&bus, &[], b"after\n", aux.dir.path());
        let finished = consumer.wait();
        finished.assert_success();
        // A late joiner starts with the last chunk of the ended stream.
        let mut expected = records(4 * RECORDS_PER_CHUNK..5 * RECORDS_PER_CHUNK);
        expected.extend_from_slice(b"after\n");
        assert_eq!(finished.stdout, expected, "{variant}");
        assert!(
            lost_lines(&finished.stderr).is_empty(),
            "{variant}: {}",
            finished.stderr
        );
    }
}

#[test]
fn a_symlink_instead_of_the_cursor_directory_is_never_followed() {
    let scratch = Scratch::new();
    let aux = Scratch::new();
    let elsewhere = Scratch::new();
    let bus = scratch.bus();
    history_bus(&bus, "2", aux.dir.path());
    std::os::unix::fs::symlink(elsewhere.dir.path(), bus.with_file_name("bus.consumers"))
        .expect("symlink");
    let (status, stderr) = run_with_input(
        filebus(&bus, &["consumer", "--name", "n"]),
        b"",
        aux.dir.path(),
    );
    assert_one_line_error(
        status,
        &stderr,
        None,
        &["bus.consumers", "not a directory"],
        "a named consumer on a symlinked cursor directory",
    );
    // Producers have nobody to wait for, and go on.
    produce(
        &bus,
        &["--block-size", CHUNK_ARG],
        &records(0..5 * RECORDS_PER_CHUNK),
        aux.dir.path(),
    );
    assert_eq!(history_entries(&bus), [6, 7]);
    assert!(
        elsewhere.names().is_empty(),
        "something was written through the symlink"
    );
    let json = stat(&bus, &["--json"]);
    assert!(json.contains("\"consumers\":[]"), "{json}");
}

#[test]
fn without_file_events_the_producer_still_waits_for_named_consumers_by_polling() {
    let scratch = Scratch::new();
    let aux = Scratch::new();
    let bus = scratch.bus();
    history_bus(&bus, "4", aux.dir.path());
    let polling = ["--no-file-monitoring", "--sleep-interval", "0.01"];
    let (mut slow, mut slow_stdout) = blocked_consumer(&bus, &["--name", "slow"]);
    let input = records(0..200 * RECORDS_PER_CHUNK);
    let stdin = input_in(aux.dir.path(), "input", &input);
    let mut args = polling.to_vec();
    args.extend(["--block-size", CHUNK_ARG, "producer"]);
    let mut producer = Running::with_stdio(filebus(&bus, &args), stdin, Stdio::null());
    wait_for_lag(&bus, "slow", 4);
    assert!(producer.try_status().is_none(), "the producer did not wait");
    let reader = std::thread::spawn(move || {
        let mut output = Vec::new();
        let _ = slow_stdout.read_to_end(&mut output);
        output
    });
    // Waits with a deadline: a producer that never looks again fails here.
    assert!(producer.wait_status().success(), "{}", producer.stderr());
    assert!(slow.wait_status().success(), "{}", slow.stderr());
    let output = reader.join().expect("reader panicked");
    assert!(output == input, "{} bytes of {}", output.len(), input.len());
}

#[test]
fn an_unnamed_consumer_stopped_through_a_whole_stream_reports_the_loss_and_ends_with_it() {
    let scratch = Scratch::new();
    let aux = Scratch::new();
    let bus = scratch.bus();
    // Started before the bus exists, then stopped for the whole stream.
    let consumer = Running::start(filebus(&bus, &["-vvv", "consumer", "--stats"]), None);
    wait_until("the consumer to watch the bus", || {
        consumer.stderr().contains("watching")
    });
    consumer.send(libc::SIGSTOP);
    // 2,000 records of 9 bytes, whole records of at most 900 bytes: 20
    // chunks, then the end-of-stream chunk 21; history keeps 18..=21.
    let input = records(0..20 * RECORDS_PER_CHUNK);
    produce(
        &bus,
        &["--history", "4", "--lines", "--block-size", CHUNK_ARG],
        &input,
        aux.dir.path(),
    );
    consumer.send(libc::SIGCONT);
    // A consumer that missed the end of the stream fails here, by timeout.
    let finished = consumer.wait();
    finished.assert_success();
    assert!(
        finished.stdout == records(17 * RECORDS_PER_CHUNK..20 * RECORDS_PER_CHUNK),
        "{} bytes: not the three chunks still held; stderr:\n{}",
        finished.stdout.len(),
        finished.stderr
    );
    assert_eq!(
        lost_lines(&finished.stderr),
        [
            "filebus: lost 17 chunks: chunks 1 to 17 left the history before this consumer wrote them"
        ]
    );
    assert!(
        crate::util::last_stats_line(&finished.stderr)
            .contains("4 chunks, 2700 bytes emitted; 17 missed"),
        "--stats counts the chunks missed before the first one written:\n{}",
        finished.stderr
    );
}

/// The records of producer `index` (numbers from `index * PRODUCER_STRIDE`).
fn producer_records(index: usize, chunks: usize) -> Vec<u8> {
    let base = index * crate::util::PRODUCER_STRIDE;
    records(base..base + chunks * RECORDS_PER_CHUNK)
}

/// Checks that `output` holds whole chunks, and, for every producer in
/// `producers`, all of its `chunks` chunks in order, and nothing else.
fn assert_every_stream(output: &[u8], producers: &[usize], chunks: usize, what: &str) {
    let firsts = check_full_chunks(output, what);
    for &producer in producers {
        let base = producer * crate::util::PRODUCER_STRIDE;
        let mine: Vec<usize> = firsts
            .iter()
            .copied()
            .filter(|first| first / crate::util::PRODUCER_STRIDE == producer)
            .collect();
        let expected: Vec<usize> = (0..chunks)
            .map(|chunk| base + chunk * RECORDS_PER_CHUNK)
            .collect();
        assert_eq!(mine, expected, "{what}: producer {producer}'s stream");
    }
    assert_eq!(
        firsts.len(),
        producers.len() * chunks,
        "{what}: chunks of other producers"
    );
}

#[test]
fn producers_one_after_another_and_at_once_reach_every_named_consumer_whole() {
    let scratch = Scratch::new();
    let aux = Scratch::new();
    let bus = scratch.bus();
    history_bus(&bus, "8", aux.dir.path());
    // Two following named consumers, and a plain one, which ends with the
    // first stream that starts after it.
    let following: Vec<Running> = ["f1", "f2"]
        .iter()
        .map(|name| ready_consumer(&bus, &["--name", name, "--follow"]))
        .collect();
    let plain = ready_consumer(&bus, &["--name", "plain"]);
    const CHUNKS: usize = 30;
    let args = ["--block-size", CHUNK_ARG];
    // One after another...
    for producer in [1, 2] {
        produce(
            &bus,
            &args,
            &producer_records(producer, CHUNKS),
            aux.dir.path(),
        );
    }
    // ...then two at once.
    let at_once: Vec<_> = [3, 4]
        .into_iter()
        .map(|producer| {
            let bus = bus.clone();
            let aux = aux.dir.path().to_owned();
            std::thread::spawn(move || {
                produce(&bus, &args, &producer_records(producer, CHUNKS), &aux);
            })
        })
        .collect();
    for producer in at_once {
        producer.join().expect("a producer thread panicked");
    }
    let ended = plain.wait();
    ended.assert_success();
    assert_every_stream(&ended.stdout, &[1], CHUNKS, "the plain named consumer");
    for (consumer, name) in following.into_iter().zip(["f1", "f2"]) {
        consumer.wait_for_output(4 * CHUNKS * CHUNK);
        let mut consumer = consumer;
        assert!(consumer.is_running(), "{name} ended although it follows");
        let finished = consumer.kill();
        assert_every_stream(&finished.stdout, &[1, 2, 3, 4], CHUNKS, name);
        assert!(
            lost_lines(&finished.stderr).is_empty(),
            "{name}: {}",
            finished.stderr
        );
    }
}

/// A producer killed between its rename of chunk s onto `F` and its drop of
/// entry s − N leaves that entry behind, below the window, until the next
/// producer sweeps it (seen in the soak of
/// `results/2026-12-03-soak-after-fix/`). A consumer catching up finds the
/// entry before a missing number held: that must not make the numbers that
/// left the window after it look like holes (never published), unreported.
#[test]
fn an_entry_left_below_the_window_does_not_make_a_loss_look_like_a_hole() {
    let scratch = Scratch::new();
    let aux = Scratch::new();
    let bus = scratch.bus();
    // Chunk 1 ends an empty stream; the consumer counts from chunk 2.
    history_bus(&bus, "4", aux.dir.path());
    let mut consumer = ready_consumer(&bus, &[]);
    consumer.send(libc::SIGSTOP);
    // Chunks 2 to 6 and the end of that stream (7), then chunks 8 to 12 and
    // the end (13): the window holds 10 to 13 by then. Entry 6, kept aside
    // while it was held, is put back as a killed producer leaves it.
    let block = ["--history", "4", "--block-size", CHUNK_ARG];
    produce(
        &bus,
        &block,
        &records(0..5 * RECORDS_PER_CHUNK),
        aux.dir.path(),
    );
    let aside = aux.path("entry-6");
    std::fs::hard_link(entry_path(&bus, 6), &aside).expect("cannot keep entry 6");
    produce(
        &bus,
        &block,
        &records(5 * RECORDS_PER_CHUNK..10 * RECORDS_PER_CHUNK),
        aux.dir.path(),
    );
    assert_eq!(history_entries(&bus), [10, 11, 12, 13]);
    std::fs::hard_link(&aside, entry_path(&bus, 6)).expect("cannot put entry 6 back");
    consumer.send(libc::SIGCONT);
    let status = consumer.wait_status();
    let stderr = consumer.stderr();
    assert!(status.success(), "{status:?}: {stderr}");
    // Chunk 6 (records of the fifth chunk) and 10 to 12; 2 to 5 and 7 to 9
    // (the end of the first stream among them) reported lost.
    let mut expected = records(4 * RECORDS_PER_CHUNK..5 * RECORDS_PER_CHUNK);
    expected.extend(records(7 * RECORDS_PER_CHUNK..10 * RECORDS_PER_CHUNK));
    assert_eq!(
        parse_records(&consumer.output()),
        parse_records(&expected),
        "{stderr}"
    );
    assert_eq!(
        lost_lines(&stderr),
        [
            "filebus: lost 4 chunks: chunks 2 to 5 left the history before this consumer wrote them",
            "filebus: lost 3 chunks: chunks 7 to 9 left the history before this consumer wrote them",
        ],
        "{stderr}"
    );
}

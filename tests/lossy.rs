//! Lossy multicast (the default): consumers emit each chunk they see, whole,
//! once, in order; a late joiner sees the current chunk; the latest chunk is
//! never missed, even when inode numbers are recycled; a lone record goes
//! out at once.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::util::{
    RECORD_LEN, Running, Scratch, binary_data, filebus, input_in, lone_records_come_out_at_once,
    numbered_records, parse_records, run,
};

/// Runs a producer to completion with `input` from a regular file, so that
/// chunks are exact, aligned slices of `block_size` bytes.
fn publish_file(scratch: &Scratch, input: &[u8], block_size: usize) {
    let stdin = input_in(scratch.dir.path(), "input", input);
    let block = block_size.to_string();
    let mut command = filebus(&scratch.bus(), &["--block-size", &block, "producer"]);
    command.stdin(Stdio::from(stdin));
    Running::with_own_stdin(command).wait().assert_success();
}

/// Checks that `output` is a sequence of whole chunks of `input` (cut every
/// `block_size` bytes), strictly in order: nothing torn, duplicated or reordered.
fn assert_whole_chunks_in_order(output: &[u8], input: &[u8], block_size: usize) -> Vec<usize> {
    let chunks: Vec<&[u8]> = input.chunks(block_size).collect();
    let mut seen = Vec::new();
    let mut rest = output;
    let mut next = 0;
    while !rest.is_empty() {
        let found = (next..chunks.len()).find(|&index| rest.starts_with(chunks[index]));
        let index = found.unwrap_or_else(|| {
            panic!(
                "output at byte {} is not a whole chunk in order",
                output.len() - rest.len()
            )
        });
        seen.push(index);
        rest = &rest[chunks[index].len()..];
        next = index + 1;
    }
    seen
}

#[test]
fn late_joiner_sees_the_current_chunk() {
    let scratch = Scratch::new();
    run(filebus(&scratch.bus(), &["producer"]), b"hello\n").assert_success();
    let consumer = Running::consumer(&scratch.bus(), &[]);
    assert_eq!(consumer.wait_for_output(6), b"hello\n");
}

#[test]
fn each_new_chunk_is_emitted_once_in_order() {
    let scratch = Scratch::new();
    let consumer = Running::consumer(&scratch.bus(), &[]);
    let mut expected = Vec::new();
    for number in 0..20 {
        let record = format!("chunk {number}\n");
        run(filebus(&scratch.bus(), &["producer"]), record.as_bytes()).assert_success();
        expected.extend_from_slice(record.as_bytes());
        // Wait for each before publishing the next, so none may be skipped.
        consumer.wait_for_output(expected.len());
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let finished = consumer.kill();
    assert_eq!(
        String::from_utf8_lossy(&finished.stdout),
        String::from_utf8_lossy(&expected)
    );
}

#[test]
fn latest_chunk_is_never_missed_when_inode_numbers_are_recycled() {
    // Two publishes in quick succession free the first chunk's inode and the
    // third file can get that number back: a consumer that only remembers the
    // number would take the new chunk for the old one.
    let scratch = Scratch::new();
    let consumer = Running::consumer(&scratch.bus(), &[]);
    let block = 4 * RECORD_LEN;
    for round in 0..100 {
        let records = numbered_records((round + 1) * 8);
        let input = &records[round * 8 * RECORD_LEN..];
        publish_file(&scratch, input, block);
        consumer.wait_for_suffix(&input[block..]);
    }
    let finished = consumer.kill();
    let records = parse_records(&finished.stdout);
    assert!(
        records.windows(2).all(|pair| pair[0] < pair[1]),
        "duplicated or reordered records"
    );
}

#[test]
fn ten_mebibytes_of_binary_data_arrive_as_whole_chunks() {
    let scratch = Scratch::new();
    let input = binary_data(10 << 20);
    let consumer = Running::consumer(&scratch.bus(), &[]);
    publish_file(&scratch, &input, 4096);
    let last_chunk = &input[input.len() - 4096..];
    let output = consumer.wait_for_suffix(last_chunk);
    drop(consumer);
    let seen = assert_whole_chunks_in_order(&output, &input, 4096);
    assert_eq!(
        seen.last(),
        Some(&(input.len() / 4096 - 1)),
        "the last chunk is missing"
    );
}

#[test]
fn several_consumers_each_see_whole_chunks_and_the_last_one() {
    let scratch = Scratch::new();
    let input = numbered_records(50_000);
    let consumers: Vec<Running> = (0..4)
        .map(|_| Running::consumer(&scratch.bus(), &[]))
        .collect();
    let block = 100 * RECORD_LEN;
    publish_file(&scratch, &input, block);
    let last_chunk = &input[input.len() - block..];
    for consumer in consumers {
        let output = consumer.wait_for_suffix(last_chunk);
        assert_whole_chunks_in_order(&output, &input, block);
    }
}

#[test]
fn empty_input_publishes_nothing() {
    let scratch = Scratch::new();
    run(filebus(&scratch.bus(), &["producer"]), b"").assert_success();
    assert!(
        !scratch.bus().exists(),
        "a lossy producer published an empty chunk"
    );
}

#[test]
fn input_after_a_pause_is_published_without_waiting_for_more() {
    let scratch = Scratch::new();
    let consumer = Running::consumer(&scratch.bus(), &[]);
    let mut producer = filebus(&scratch.bus(), &["--sleep-interval", "0.05", "producer"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("cannot start producer");
    let mut stdin = producer.stdin.take().expect("piped");
    stdin.write_all(b"first\n").expect("write");
    // The producer's stdin stays open: only the pause can publish this.
    consumer.wait_for_output(6);
    stdin.write_all(b"second\n").expect("write");
    assert_eq!(consumer.wait_for_output(13), b"first\nsecond\n");
    drop(stdin);
    assert!(producer.wait().expect("wait").success());
}

#[test]
fn polling_without_file_monitoring_delivers_too() {
    let scratch = Scratch::new();
    let consumer = Running::consumer(
        &scratch.bus(),
        &["--no-file-monitoring", "--sleep-interval", "0.01", "-vv"],
    );
    for number in 0..5 {
        let record = format!("polled {number}\n");
        run(filebus(&scratch.bus(), &["producer"]), record.as_bytes()).assert_success();
        consumer.wait_for_suffix(record.as_bytes());
    }
    assert!(
        consumer.stderr().contains("polling"),
        "stderr: {}",
        consumer.stderr()
    );
}

#[test]
fn a_lossy_consumer_creates_no_files() {
    let scratch = Scratch::new();
    std::fs::write(scratch.bus(), b"existing\n").expect("write bus");
    let consumer = Running::consumer(&scratch.bus(), &[]);
    consumer.wait_for_output(9);
    assert_eq!(scratch.names(), ["bus"]);
}

#[test]
fn stdin_may_be_a_socket_a_terminal_or_dev_null() {
    let scratch = Scratch::new();
    // A socket.
    let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    let mut command = filebus(&scratch.bus(), &["--lossless", "producer"]);
    command.stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)));
    let producer = Running::with_own_stdin(command);
    ours.write_all(b"via socket\n").expect("write");
    drop(ours);
    let consumer = Running::consumer(&scratch.bus(), &["--lossless"]);
    assert_eq!(consumer.wait().assert_success().stdout, b"via socket\n");
    producer.wait().assert_success();

    // /dev/null: end of input at once, and nothing published.
    let dev_null = || std::fs::File::open("/dev/null").expect("cannot open /dev/null");
    let mut command = filebus(&scratch.bus(), &["producer"]);
    command.stdin(dev_null());
    let finished = Running::with_own_stdin(command).wait();
    finished.assert_success();
    assert_eq!(finished.stderr, "", "/dev/null as stdin");
    assert_eq!(
        scratch.names(),
        ["bus.lock"],
        "a lossy producer with /dev/null as stdin published something"
    );
    // Lossless, only the end-of-stream marker: its consumer emits nothing.
    let mut command = filebus(&scratch.bus(), &["--lossless", "producer"]);
    command.stdin(dev_null());
    let producer = Running::with_own_stdin(command);
    let consumer = Running::consumer(&scratch.bus(), &["--lossless"]);
    assert_eq!(consumer.wait().assert_success().stdout, b"");
    producer.wait().assert_success();
    assert_eq!(scratch.names(), ["bus.lock"]);

    // A terminal: `script` gives the producer a pseudo-terminal as stdin;
    // the line typed is published, then ^D ends the input.
    let bus = scratch.bus();
    let command_line = format!(
        "{} --filename {} producer",
        crate::util::filebus_bin().display(),
        bus.display()
    );
    let mut script = Command::new("script")
        .args(["-qfec", &command_line, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("cannot run script(1)");
    let mut typed = script.stdin.take().expect("piped");
    typed.write_all(b"typed line\n").expect("write");
    crate::util::wait_until("the typed line to be published", || {
        std::fs::read(&bus).is_ok_and(|chunk| chunk == b"typed line\n")
    });
    typed.write_all(&[4]).expect("write ^D");
    drop(typed);
    assert!(script.wait().expect("wait").success());
}

#[test]
fn a_lone_record_is_published_without_waiting_the_sleep_interval_lossy() {
    lone_records_come_out_at_once(&[], &[], b'\n');
}

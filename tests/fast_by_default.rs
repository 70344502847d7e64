//! Fast by default, through the real binary with default options:
//!
//! - latency without tuning: input that arrives after a quiet spell is
//!   published at once, not after `--sleep-interval`; `--sleep-interval` only
//!   bounds how long input that keeps coming is gathered;
//! - the default block size is 1 MiB, and no chunk exceeds it.
//!
//! The tests use a sleep interval of 30 s and only ask that a record arrives
//! within half of it: far more than the milliseconds it takes, far less than
//! the interval the old rule made every lone record wait. No timing is
//! asserted beyond that.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{
    Running, Scratch, binary_data, filebus, input_in, put_chunk_by_hand, take_chunks_by_hand,
};

/// The `--sleep-interval` of these tests.
const SLEEP_INTERVAL: &str = "30";
/// A record must come out sooner than this: half the sleep interval.
const BOUND: Duration = Duration::from_secs(15);
/// Longer than a quiet spell (a tenth of the sleep interval, 3 s).
const QUIET_SPELL: Duration = Duration::from_millis(3_500);

/// A producer whose standard input stays open until the test closes it.
fn producer(bus: &std::path::Path, mode: &[&str]) -> Child {
    let mut args = mode.to_vec();
    args.extend(["--sleep-interval", SLEEP_INTERVAL, "producer"]);
    let mut command: Command = filebus(bus, &args);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    command.spawn().expect("cannot start the producer")
}

/// Writes `record` to the producer and waits until the consumer's output is
/// `expected`; fails if that takes [`BOUND`] or longer.
fn send_and_expect(producer: &mut Child, consumer: &Running, record: &[u8], expected: &[u8]) {
    let stdin = producer.stdin.as_mut().expect("stdin was piped");
    stdin
        .write_all(record)
        .expect("cannot write to the producer");
    stdin.flush().expect("cannot flush the producer's input");
    let sent = Instant::now();
    while consumer.output() != expected {
        assert!(
            sent.elapsed() < BOUND,
            "{:?} did not come out within {BOUND:?} with --sleep-interval {SLEEP_INTERVAL} \
             (output so far: {:?}; consumer stderr: {})",
            String::from_utf8_lossy(record),
            String::from_utf8_lossy(&consumer.output()),
            consumer.stderr()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn lone_records_come_out_at_once(mode: &[&str]) {
    let scratch = Scratch::new();
    let bus = scratch.bus();
    let mut consumer_args = mode.to_vec();
    consumer_args.extend(["--sleep-interval", SLEEP_INTERVAL]);
    let consumer = Running::consumer(&bus, &consumer_args);
    let mut producer = producer(&bus, mode);
    send_and_expect(
        &mut producer,
        &consumer,
        b"first record\n",
        b"first record\n",
    );
    // After a quiet spell the next lone record goes out at once as well.
    std::thread::sleep(QUIET_SPELL);
    send_and_expect(
        &mut producer,
        &consumer,
        b"second record\n",
        b"first record\nsecond record\n",
    );
    drop(producer.stdin.take());
    let status = producer.wait().expect("cannot wait for the producer");
    assert!(status.success(), "producer: {status}");
    if mode.is_empty() {
        consumer.kill();
    } else {
        // The end-of-stream marker ends the lossless consumer.
        consumer.wait().assert_success();
    }
}

#[test]
fn a_lone_record_is_published_without_waiting_the_sleep_interval_lossy() {
    lone_records_come_out_at_once(&[]);
}

#[test]
fn a_lone_record_is_published_without_waiting_the_sleep_interval_lossless() {
    lone_records_come_out_at_once(&["--lossless"]);
}

#[test]
fn the_default_block_size_is_1_mib_and_no_chunk_exceeds_it() {
    const BLOCK: usize = 1 << 20;
    for len in [BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 123] {
        let scratch = Scratch::new();
        let input = binary_data(len);
        // A regular file is always ready, so every chunk but the last is full.
        let stdin = input_in(scratch.dir.path(), "input", &input);
        let mut command = filebus(&scratch.bus(), &["--lossless", "producer"]);
        command.stdin(Stdio::from(stdin));
        let producer = Running::with_own_stdin(command);
        let chunks = take_chunks_by_hand(&scratch.bus());
        producer.wait().assert_success();
        let sizes: Vec<usize> = chunks.iter().map(Vec::len).collect();
        let mut expected = vec![BLOCK; len / BLOCK];
        if len % BLOCK != 0 {
            expected.push(len % BLOCK);
        }
        assert_eq!(sizes, expected, "chunk sizes for {len} bytes");
        assert!(chunks.concat() == input, "{len} bytes: output differs");
    }
}

/// A lossless publish links the chunk as `F`, which fails if a chunk is
/// there: then the chunk comes back unpublished and its sequence number is
/// given back, so that consumers count no chunk as missed.
#[test]
fn a_lossless_publish_onto_a_waiting_chunk_hands_it_back_and_gives_back_its_number() {
    use filebus_core::Format;
    use filebus_core::testing::{Bus, stamp, write_chunk};

    let scratch = Scratch::new();
    let bus = Bus::open(&scratch.bus()).expect("bus");
    let mut lock = bus.lock_file().expect("lock file");
    let first = write_chunk(&bus, b"first", true, Format::Raw).expect("chunk");
    let guard = lock.acquire().expect("lock");
    assert!(
        bus.publish_if_absent(first, &guard)
            .expect("publish")
            .is_none(),
        "the first chunk was not published"
    );
    assert_eq!(stamp::last_sequence(guard.lock_file()), Some(1));
    let second = write_chunk(&bus, b"second", true, Format::Raw).expect("chunk");
    let back = bus
        .publish_if_absent(second, &guard)
        .expect("publish")
        .expect("the second chunk was published over the first");
    drop(back);
    assert_eq!(
        stamp::last_sequence(guard.lock_file()),
        Some(1),
        "the number of the chunk not published was not given back"
    );
    drop(guard);
    assert_eq!(std::fs::read(scratch.bus()).expect("read F"), b"first");
    assert_eq!(
        crate::util::names_in(scratch.dir.path()),
        ["bus", "bus.lock"]
    );
}

/// The size of a pipe after the program at its other end started on it.
fn pipe_grows_to(pipe: &impl std::os::fd::AsRawFd, expected: usize, what: &str) {
    crate::util::wait_until(&format!("{what}: a pipe of {expected} bytes"), || {
        crate::util::pipe_capacity(pipe) == expected
    });
}

#[test]
fn the_producer_grows_its_input_pipe_to_the_block_size_once_it_finds_it_full() {
    // A lone record leaves the pipe as it is (default block size, 1 MiB).
    let scratch = Scratch::new();
    let mut producer = filebus(&scratch.bus(), &["producer"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("cannot start the producer");
    let mut stdin = producer.stdin.take().expect("stdin was piped");
    let before = crate::util::pipe_capacity(&stdin);
    stdin
        .write_all(b"one record\n")
        .expect("the producer reads");
    crate::util::wait_until("the chunk", || scratch.bus().exists());
    assert_eq!(
        crate::util::pipe_capacity(&stdin),
        before,
        "a lone record grew the pipe"
    );
    drop(stdin);
    assert!(producer.wait().expect("cannot wait").success());

    // Bulk input: a lossless producer with no consumer yet stops reading once
    // its second chunk is full, the writer fills the pipe, and the first
    // read after a consumer took a chunk finds the pipe full.
    for (block_size, expected) in [("1048576", 1 << 20), ("262144", 256 << 10)] {
        let scratch = Scratch::new();
        let mut producer = filebus(
            &scratch.bus(),
            &["--lossless", "--block-size", block_size, "producer"],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("cannot start the producer");
        let mut stdin = producer.stdin.take().expect("stdin was piped");
        let watched = std::os::fd::AsFd::as_fd(&stdin)
            .try_clone_to_owned()
            .expect("cannot duplicate the pipe");
        let input = binary_data(4 << 20);
        let writer = {
            let input = input.clone();
            std::thread::spawn(move || stdin.write_all(&input).expect("the producer reads"))
        };
        crate::util::wait_until("the first chunk", || scratch.bus().exists());
        let consumer = Running::consumer(&scratch.bus(), &["--lossless"]);
        pipe_grows_to(&watched, expected, &format!("--block-size {block_size}"));
        writer.join().expect("the writer panicked");
        // Our copy of the pipe's end would keep the producer from its end.
        drop(watched);
        let finished = consumer.wait();
        finished.assert_success();
        assert!(
            finished.stdout == input,
            "--block-size {block_size}: output differs"
        );
        assert!(producer.wait().expect("cannot wait").success());
    }
}

#[test]
fn a_consumer_grows_its_output_pipe_to_the_largest_chunk_up_to_1_mib() {
    use std::io::Read;
    let scratch = Scratch::new();
    let mut consumer = Running::with_stdio(
        filebus(&scratch.bus(), &["--lossless", "consumer"]),
        Stdio::null(),
        Stdio::piped(),
    );
    let mut stdout = consumer.child.stdout.take().expect("stdout was piped");
    let default = crate::util::pipe_capacity(&stdout);
    // Chunks published by hand, each read whole before the next: a small one
    // leaves the pipe as it is, bigger ones grow it, up to 1 MiB.
    for (len, expected) in [
        (1000, default),
        (200 << 10, 256 << 10),
        (4 << 20, 1 << 20),
        (100 << 10, 1 << 20),
    ] {
        let chunk = binary_data(len);
        put_chunk_by_hand(&scratch.bus(), &chunk);
        let mut read = vec![0; len];
        stdout.read_exact(&mut read).expect("cannot read the chunk");
        assert!(read == chunk, "a chunk of {len} bytes came out changed");
        assert_eq!(
            crate::util::pipe_capacity(&stdout),
            expected,
            "after a chunk of {len} bytes"
        );
        crate::util::wait_until("the chunk to be taken", || !scratch.bus().exists());
    }
    put_chunk_by_hand(&scratch.bus(), b"");
    assert_eq!(consumer.wait_status().code(), Some(0));
}

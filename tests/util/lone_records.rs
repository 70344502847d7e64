//! A lone record's way through a producer whose standard input stays open,
//! with a long `--sleep-interval`: input that arrives after a quiet spell is
//! published at once, not after `--sleep-interval`, which only bounds how
//! long input that keeps coming is gathered.
//!
//! The sleep interval is 30 s, and a record need only arrive within half of
//! it: far more than the milliseconds it takes, far less than the interval
//! the old rule made every lone record wait. No timing is asserted beyond
//! that.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Running, Scratch, filebus};

/// The `--sleep-interval` of these tests.
const SLEEP_INTERVAL: &str = "30";

/// A record must come out sooner than this: half the sleep interval.
const BOUND: Duration = Duration::from_secs(15);

/// Longer than a quiet spell (a tenth of the sleep interval, 3 s).
const QUIET_SPELL: Duration = Duration::from_millis(3_500);

/// A producer whose standard input stays open until the test closes it.
fn producer(bus: &std::path::Path, mode: &[&str], producer_options: &[&str]) -> Child {
    let mut args = mode.to_vec();
    args.extend(["--sleep-interval", SLEEP_INTERVAL, "producer"]);
    args.extend_from_slice(producer_options);
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

/// A consumer (with `mode`, such as `--lossless`, on both sides) and a
/// producer (with `producer_options` too, such as `--lines`); a record ending
/// in `end`, then another after a quiet spell, must each come out within
/// half the sleep interval.
pub fn lone_records_come_out_at_once(mode: &[&str], producer_options: &[&str], end: u8) {
    let scratch = Scratch::new();
    let bus = scratch.bus();
    let mut consumer_args = mode.to_vec();
    consumer_args.extend(["--sleep-interval", SLEEP_INTERVAL]);
    let consumer = Running::consumer(&bus, &consumer_args);
    let mut producer = producer(&bus, mode, producer_options);
    let first = [b"first record".as_slice(), &[end]].concat();
    let second = [b"second record".as_slice(), &[end]].concat();
    send_and_expect(&mut producer, &consumer, &first, &first);
    // After a quiet spell the next lone record goes out at once as well.
    std::thread::sleep(QUIET_SPELL);
    send_and_expect(
        &mut producer,
        &consumer,
        &second,
        &[first.as_slice(), &second].concat(),
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

//! Stamps and `consumer --stats`: sequence gaps are counted exactly, foreign
//! chunks and stamps out of range are counted as unknown, and the summary
//! comes on SIGUSR1 and at exit.

use crate::util::{
    Running, Scratch, filebus, get_xattr, run, set_xattr, stat, stats_counts, wait_until,
};

fn publish(scratch: &Scratch, text: &str) {
    run(filebus(&scratch.bus(), &["producer"]), text.as_bytes()).assert_success();
}

#[test]
fn producers_share_one_sequence_stamped_on_each_chunk() {
    let scratch = Scratch::new();
    for number in 1..=3 {
        publish(&scratch, &format!("chunk {number}\n"));
        assert_eq!(
            get_xattr(&scratch.bus(), "user.filebus.seq").as_deref(),
            Some(number.to_string().as_str())
        );
    }
    assert_eq!(
        get_xattr(&scratch.path("bus.lock"), "user.filebus.seq").as_deref(),
        Some("3")
    );
    let time: u128 = get_xattr(&scratch.bus(), "user.filebus.time")
        .expect("time stamp")
        .parse()
        .expect("a number");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    assert!(
        time <= now && now - time < 600_000_000_000,
        "time stamp {time} is not recent"
    );
}

#[test]
fn lossless_stats_count_every_chunk_and_miss_none() {
    let scratch = Scratch::new();
    let consumer = Running::start(
        filebus(&scratch.bus(), &["--lossless", "consumer", "--stats"]),
        None,
    );
    let input = crate::util::numbered_records(1000);
    run(
        filebus(
            &scratch.bus(),
            &["--lossless", "--block-size", "900", "producer"],
        ),
        &input,
    )
    .assert_success();
    let finished = consumer.wait();
    finished.assert_success();
    assert!(finished.stdout == input);
    // 10 chunks of records and the empty end-of-stream marker.
    assert_eq!(
        stats_counts(&finished.stderr),
        [11, 9000, 0, 0],
        "{}",
        finished.stderr
    );
}

#[test]
fn lossy_stats_count_gaps_unknown_chunks_and_report_on_signals() {
    let scratch = Scratch::new();
    publish(&scratch, "before\n");
    let consumer = Running::start(filebus(&scratch.bus(), &["consumer", "--stats"]), None);
    consumer.wait_for_output(7);
    publish(&scratch, "one\n");
    consumer.wait_for_output(11);
    // Stopped, the consumer misses the first two of three chunks.
    consumer.send(libc::SIGSTOP);
    for text in ["two\n", "three\n", "four\n"] {
        publish(&scratch, text);
    }
    consumer.send(libc::SIGCONT);
    consumer.wait_for_output(16);
    // A chunk from a foreign producer has no stamp.
    crate::util::put_chunk_by_hand(&scratch.bus(), b"foreign\n");
    consumer.wait_for_output(24);
    consumer.send(libc::SIGUSR1);
    wait_until("the summary on SIGUSR1", || {
        consumer.stderr().contains("stats:")
    });
    assert_eq!(stats_counts(&consumer.stderr()), [4, 24, 2, 1]);
    let finished = consumer.signal(libc::SIGTERM);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&finished.status),
        Some(libc::SIGTERM)
    );
    assert_eq!(finished.stdout, b"before\none\nfour\nforeign\n");
    assert_eq!(
        finished.stderr.matches("stats:").count(),
        2,
        "{}",
        finished.stderr
    );
    assert_eq!(stats_counts(&finished.stderr), [4, 24, 2, 1]);
}

#[test]
fn a_sequence_stamp_at_the_top_of_the_range_is_no_stamp() {
    let scratch = Scratch::new();
    run(filebus(&scratch.bus(), &["producer"]), b"first\n").assert_success();
    let lock = scratch.path("bus.lock");
    // Anyone with write access can set the bus-wide counter.
    set_xattr(&lock, "user.filebus.seq", b"18446744073709551615");
    run(filebus(&scratch.bus(), &["producer"]), b"second\n").assert_success();
    assert_eq!(
        get_xattr(&scratch.bus(), "user.filebus.seq").as_deref(),
        Some("1"),
        "the count did not start again after an out-of-range counter"
    );
    // A chunk stamped with the largest number counts as unknown, not as a
    // gap of billions.
    set_xattr(&scratch.bus(), "user.filebus.seq", b"18446744073709551615");
    let consumer = Running::start(filebus(&scratch.bus(), &["consumer", "--stats"]), None);
    assert_eq!(consumer.wait_for_output(7), b"second\n");
    // The chunk is counted just after it is written: ask for summaries
    // (SIGUSR1) until one counts it.
    wait_until("a summary counting the chunk", || {
        consumer.send(libc::SIGUSR1);
        std::thread::sleep(std::time::Duration::from_millis(20));
        consumer.stderr().contains("stats: 1 chunks")
    });
    let finished = consumer.signal(libc::SIGTERM);
    let last = finished.stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("1 chunks") && last.contains("0 missed, 1 unknown"),
        "stats: {:?}",
        finished.stderr
    );
    assert!(!finished.stderr.contains("panicked"), "{}", finished.stderr);
}

/// Stops `consumer --stats` once a summary counts `chunks` chunks (each is
/// counted just after it is written: ask for summaries with SIGUSR1 until
/// one does), and returns the counts of its last summary.
fn counts_once_it_counted(consumer: Running, chunks: u64) -> [u64; 4] {
    let counted = format!("stats: {chunks} chunks");
    wait_until(&format!("a summary counting {chunks} chunks"), || {
        consumer.send(libc::SIGUSR1);
        std::thread::sleep(std::time::Duration::from_millis(20));
        consumer.stderr().contains(&counted)
    });
    let finished = consumer.signal(libc::SIGTERM);
    assert!(!finished.stderr.contains("panicked"), "{}", finished.stderr);
    stats_counts(&finished.stderr)
}

/// Publishes `file` (a chunk made beside the bus) at `bus` by a rename, as a
/// foreign producer would.
fn publish_by_hand(file: &std::path::Path, bus: &std::path::Path) {
    std::fs::rename(file, bus).expect("cannot rename a chunk onto the bus");
}

/// The realtime clock in nanoseconds, as a stamp's time.
fn now_ns() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock before 1970")
        .as_nanos()
        .to_string()
}

/// Sequence numbers start at 1: a chunk whose stamp says 0 (with a time) is
/// unstamped. `filebus stat` says so, and a consumer counts it as unknown,
/// not as a sequence started again, after which the next chunk (number 2)
/// would look like one missed.
#[test]
fn a_sequence_stamp_of_zero_is_no_stamp() {
    let scratch = Scratch::new();
    let consumer = Running::start(filebus(&scratch.bus(), &["consumer", "--stats"]), None);
    publish(&scratch, "one\n");
    consumer.wait_for_output(4);
    let zero = scratch.path("zero");
    std::fs::write(&zero, b"zero\n").expect("cannot write a chunk by hand");
    set_xattr(&zero, "user.filebus.seq", b"0");
    set_xattr(&zero, "user.filebus.time", now_ns().as_bytes());
    publish_by_hand(&zero, &scratch.bus());
    let status = stat(&[scratch.bus()]);
    assert!(
        status.contains("sequence: none (unstamped chunk)"),
        "a chunk stamped 0:\n{status}"
    );
    consumer.wait_for_output(9);
    publish(&scratch, "two\n");
    assert_eq!(consumer.wait_for_output(13), b"one\nzero\ntwo\n");
    assert_eq!(counts_once_it_counted(consumer, 3), [3, 13, 0, 1]);
}

/// The same with the stamp in a tar chunk's PAX records (`--format tar`),
/// the chunk written by Python's `tarfile`.
#[test]
fn a_sequence_stamp_of_zero_in_a_tar_chunk_is_no_stamp() {
    let scratch = Scratch::new();
    let tar = ["--format", "tar"];
    let consumer = Running::start(
        filebus(
            &scratch.bus(),
            &[&tar[..], &["consumer", "--stats"]].concat(),
        ),
        None,
    );
    let produce = |text: &[u8]| {
        run(
            filebus(&scratch.bus(), &[&tar[..], &["producer"]].concat()),
            text,
        )
        .assert_success();
    };
    produce(b"one\n");
    consumer.wait_for_output(4);
    let zero = scratch.path("zero.tar");
    let script = "import io, sys, tarfile\n\
                  data = sys.argv[2].encode()\n\
                  member = tarfile.TarInfo('from_server')\n\
                  member.size = len(data)\n\
                  member.pax_headers = {'FILEBUS.seq': '0', 'FILEBUS.time': sys.argv[3]}\n\
                  with tarfile.open(sys.argv[1], 'w', format=tarfile.PAX_FORMAT) as archive:\n\
                  \x20   archive.addfile(member, io.BytesIO(data))\n";
    let output = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&zero)
        .args(["zero\n", &now_ns()])
        .output()
        .expect("cannot run python3 (on the PATH), which this test needs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    publish_by_hand(&zero, &scratch.bus());
    consumer.wait_for_output(9);
    produce(b"two\n");
    assert_eq!(consumer.wait_for_output(13), b"one\nzero\ntwo\n");
    assert_eq!(counts_once_it_counted(consumer, 3), [3, 13, 0, 1]);
}

//! What a new user trips over, each through the real binary: warnings that
//! must show without `-v`, absurd sizes and names refused in one line before
//! anything is published, hostile stamps, the exit status of a consumer
//! whose reader went away, and the reference's own command line.

use std::process::Command;

use crate::util::{
    Running, Scratch, assert_one_line_error, filebus, filebus_bin, get_xattr, names_in, run,
    set_xattr, wait_until,
};

#[test]
fn a_skipped_huge_chunk_is_reported_without_verbose() {
    let scratch = Scratch::new();
    let huge = std::fs::File::create(scratch.bus()).expect("create");
    huge.set_len(2 << 30).expect("a 2 GiB sparse file");
    drop(huge);
    let consumer = Running::consumer(&scratch.bus(), &[]);
    wait_until("the warning, without -v", || {
        consumer.stderr().contains("warning") && consumer.stderr().contains("--max-chunk-size")
    });
    drop(consumer);
    // -q silences it; the consumer then goes on quietly.
    let quiet = Running::consumer(&scratch.bus(), &["-q"]);
    run(filebus(&scratch.bus(), &["producer"]), b"real\n").assert_success();
    assert_eq!(quiet.wait_for_output(5), b"real\n");
    assert_eq!(quiet.stderr(), "", "-q still printed something");
}

#[test]
fn a_record_split_beyond_the_limit_is_reported_without_verbose() {
    let scratch = Scratch::new();
    // One line of 17 MiB: longer than the 16 MiB a record may grow to.
    let mut input = vec![b'x'; 17 << 20];
    input.push(b'\n');
    let consumer = Running::consumer(&scratch.bus(), &["--lossless"]);
    let producer = run(
        filebus(&scratch.bus(), &["--lossless", "producer", "--lines"]),
        &input,
    );
    producer.assert_success();
    assert!(
        producer.stderr.contains("warning") && producer.stderr.contains("split"),
        "no warning of the split record: {:?}",
        producer.stderr
    );
    let finished = consumer.wait();
    finished.assert_success();
    assert_eq!(finished.stdout.len(), input.len(), "bytes lost or added");
}

#[test]
fn an_absurd_block_size_is_refused_in_one_line_before_any_allocation() {
    let scratch = Scratch::new();
    for size in ["99999999999999", "1073741825", "99999999999999999999999"] {
        let finished = run(
            filebus(&scratch.bus(), &["--block-size", size, "producer"]),
            b"data\n",
        );
        assert_one_line_error(
            finished.status,
            &finished.stderr,
            Some(2),
            &["block size", "1073741824"],
            size,
        );
        assert!(
            !finished.stderr.contains("backtrace"),
            "{}",
            finished.stderr
        );
    }
    assert!(
        names_in(scratch.dir.path()).is_empty(),
        "something was created"
    );
    // The largest allowed size works, and allocates nothing up front.
    let finished = run(
        filebus(
            &scratch.bus(),
            &["--block-size", "1073741824", "producer", "--lines"],
        ),
        b"small\n",
    );
    finished.assert_success();
    assert_eq!(std::fs::read(scratch.bus()).expect("published"), b"small\n");
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

#[test]
fn a_bus_name_too_long_for_its_own_files_is_refused_before_publishing() {
    let scratch = Scratch::new();
    let bus = scratch.dir.path().join("b".repeat(250));
    let finished = run(filebus(&bus, &["producer"]), b"data\n");
    assert_one_line_error(
        finished.status,
        &finished.stderr,
        Some(1),
        &["250 bytes", "245"],
        "a 250-byte bus name",
    );
    assert!(
        names_in(scratch.dir.path()).is_empty(),
        "something was published"
    );
    // The longest name that leaves room (for `F.consumers`) works, publish
    // after publish.
    let bus = scratch.dir.path().join("b".repeat(245));
    for chunk in [b"one\n", b"two\n"] {
        run(filebus(&bus, &["producer"]), chunk).assert_success();
    }
    assert_eq!(std::fs::read(&bus).expect("published"), b"two\n");
}

#[test]
fn the_reference_impl_option_is_accepted() {
    let scratch = Scratch::new();
    // `--impl python` changes nothing.
    let finished = run(
        filebus(
            &scratch.bus(),
            &["--impl", "python", "--block-size", "10", "producer"],
        ),
        b"12345\n1234567\n",
    );
    finished.assert_success();
    assert_eq!(std::fs::read(scratch.bus()).expect("published"), b"567\n");
    // `--implementation bash` cuts chunks at newlines, as the bash variant.
    let finished = run(
        filebus(
            &scratch.bus(),
            &["--implementation", "bash", "--block-size", "10", "producer"],
        ),
        b"12345\n1234567\n",
    );
    finished.assert_success();
    assert_eq!(
        std::fs::read(scratch.bus()).expect("published"),
        b"1234567\n"
    );
    let finished = run(
        filebus(&scratch.bus(), &["--impl", "perl", "producer"]),
        b"",
    );
    assert_one_line_error(
        finished.status,
        &finished.stderr,
        Some(2),
        &["perl"],
        "--impl perl",
    );
}

#[test]
fn an_option_on_the_wrong_side_of_the_subcommand_says_where_it_belongs() {
    let scratch = Scratch::new();
    let bus = scratch.bus();
    let bus = bus.to_str().expect("a UTF-8 path");
    let cases: [(&[&str], &[&str]); 3] = [
        (
            &["--lines", "--filename", bus, "producer"],
            &["--lines", "filebus producer", "after"],
        ),
        (
            &["--stats", "--filename", bus, "consumer"],
            &["--stats", "filebus consumer", "after"],
        ),
        (
            &["--filename", bus, "producer", "--impl", "bash"],
            &["--impl", "before the subcommand"],
        ),
    ];
    for (args, needles) in cases {
        let finished = run(
            {
                let mut command = Command::new(filebus_bin());
                command.args(args);
                command
            },
            b"",
        );
        assert_one_line_error(
            finished.status,
            &finished.stderr,
            Some(2),
            needles,
            &args.join(" "),
        );
    }
    assert!(names_in(scratch.dir.path()).is_empty());
}

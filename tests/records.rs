//! Whole records (`--delimiter`, `--lines`, `--null`): chunks end only at
//! record boundaries, so even a lossy consumer never prints part of a record;
//! a record beyond the limit is split, with a warning shown without `-v`.

use crate::util::{Running, Scratch, filebus, lone_records_come_out_at_once, run};

/// Lines of varying length ("17:xxxxxxxxxx\n"), each naming its own length,
/// so a torn or glued line is detectable.
fn varied_lines(count: usize) -> Vec<u8> {
    let mut data = Vec::new();
    for number in 0..count {
        let filler = "x".repeat(number * 7 % 97);
        data.extend_from_slice(format!("{number}:{filler}\n").as_bytes());
    }
    data
}

/// Checks every line is one that was sent: number, colon, the right filler.
fn assert_whole_lines(output: &[u8]) -> Vec<usize> {
    assert!(
        output.is_empty() || output.ends_with(b"\n"),
        "output ends inside a line"
    );
    output
        .split(|&byte| byte == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let text = std::str::from_utf8(line).expect("line is not text: torn");
            let (number, filler) = text
                .split_once(':')
                .unwrap_or_else(|| panic!("torn line {text:?}"));
            let number: usize = number
                .parse()
                .unwrap_or_else(|_| panic!("torn line {text:?}"));
            assert_eq!(filler.len(), number * 7 % 97, "torn line {text:?}");
            number
        })
        .collect()
}

/// The chunks a lossless consumer would take, read by hand.
fn lossless_chunks(input: &[u8], args: &[&str]) -> Vec<Vec<u8>> {
    let scratch = Scratch::new();
    // Global options are accepted after the subcommand, like its own.
    let mut all = vec!["producer", "--lossless"];
    all.extend_from_slice(args);
    let producer = Running::start(filebus(&scratch.bus(), &all), Some(input.to_vec()));
    let mut chunks = Vec::new();
    let lock = scratch.path("bus.lock");
    loop {
        crate::util::wait_until("a chunk", || scratch.bus().exists());
        let guard = std::fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock)
            .expect("lock");
        // SAFETY: flock on a descriptor we own.
        assert_eq!(
            unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&guard), libc::LOCK_EX) },
            0
        );
        let chunk = std::fs::read(scratch.bus()).expect("read chunk");
        std::fs::remove_file(scratch.bus()).expect("delete chunk");
        drop(guard);
        if chunk.is_empty() {
            break;
        }
        chunks.push(chunk);
    }
    producer.wait().assert_success();
    chunks
}

#[test]
fn lossy_consumers_of_a_fast_line_stream_print_only_whole_lines() {
    let scratch = Scratch::new();
    let input = varied_lines(200_000);
    let consumers: Vec<Running> = (0..3)
        .map(|_| Running::consumer(&scratch.bus(), &[]))
        .collect();
    run(
        filebus(
            &scratch.bus(),
            &["--block-size", "1000", "producer", "--lines"],
        ),
        &input,
    )
    .assert_success();
    let last_line = format!("199999:{}\n", "x".repeat(199_999 * 7 % 97));
    for consumer in consumers {
        let output = consumer.wait_for_suffix(last_line.as_bytes());
        let numbers = assert_whole_lines(&output);
        assert!(
            numbers.windows(2).all(|pair| pair[0] < pair[1]),
            "duplicated or reordered lines"
        );
    }
}

#[test]
fn chunks_hold_as_many_whole_lines_as_fit_in_a_block() {
    let input = varied_lines(2000);
    let chunks = lossless_chunks(&input, &["--block-size", "300", "--lines"]);
    assert_eq!(chunks.concat(), input, "records lost or reordered");
    for chunk in &chunks {
        assert!(
            chunk.len() <= 300,
            "a chunk of {} bytes exceeds the block",
            chunk.len()
        );
        assert!(chunk.ends_with(b"\n"), "a chunk ends inside a line");
        assert_whole_lines(chunk);
    }
    // Most chunks are well filled: the next line would not have fit.
    let filled = chunks
        .iter()
        .filter(|chunk| chunk.len() > 300 - 110)
        .count();
    assert!(
        filled * 10 >= chunks.len() * 9,
        "chunks are not filled with whole lines"
    );
}

#[test]
fn a_record_longer_than_the_block_is_a_chunk_of_its_own() {
    let long = "y".repeat(5000);
    let input = format!("short\n{long}\nafter\n").into_bytes();
    let chunks = lossless_chunks(&input, &["--block-size", "100", "--lines"]);
    let expected: Vec<Vec<u8>> = vec![
        b"short\n".to_vec(),
        format!("{long}\n").into_bytes(),
        b"after\n".to_vec(),
    ];
    assert_eq!(chunks, expected);
}

#[test]
fn nul_and_custom_delimiters_end_chunks() {
    let input = b"one\0two\0three\0".to_vec();
    let chunks = lossless_chunks(&input, &["--block-size", "9", "-z"]);
    assert_eq!(chunks, [b"one\0two\0".to_vec(), b"three\0".to_vec()]);
    let input = b"a,bb,ccc,".to_vec();
    let chunks = lossless_chunks(&input, &["--block-size", "6", "--delimiter", ","]);
    assert_eq!(chunks, [b"a,bb,".to_vec(), b"ccc,".to_vec()]);
}

#[test]
fn an_unterminated_last_record_is_published_at_end_of_input() {
    let chunks = lossless_chunks(b"whole\npartial", &["--block-size", "100", "--lines"]);
    assert_eq!(chunks.concat(), b"whole\npartial");
}

#[test]
fn conflicting_record_options_are_refused() {
    let scratch = Scratch::new();
    let finished = run(
        filebus(&scratch.bus(), &["producer", "--lines", "--null"]),
        b"",
    );
    assert_eq!(finished.status.code(), Some(2), "{}", finished.stderr);
    assert_eq!(finished.stderr.lines().count(), 1, "{}", finished.stderr);
    let finished = run(
        filebus(&scratch.bus(), &["producer", "--delimiter", "ab"]),
        b"",
    );
    assert_eq!(finished.status.code(), Some(2), "{}", finished.stderr);
    assert!(finished.stderr.contains("one byte"), "{}", finished.stderr);
}

#[test]
fn the_bash_reference_consumes_our_whole_line_chunks() {
    // The bash reference is newline-delimited: our --lines chunks are what
    // it reads and writes, line for line.
    let scratch = Scratch::new();
    let reference = crate::util::reference_filebus();
    let consumer = Running::start(
        crate::util::command_for(
            &reference,
            &scratch.bus(),
            &[
                "--impl",
                "bash",
                "--back-pressure",
                "--sleep-interval",
                "0.01",
                "consumer",
            ],
        ),
        None,
    );
    let input = varied_lines(300);
    run(
        filebus(
            &scratch.bus(),
            &["--lossless", "--block-size", "500", "producer", "--lines"],
        ),
        &input,
    )
    .assert_success();
    let finished = consumer.wait();
    finished.assert_success();
    assert!(
        finished.stdout == input,
        "the bash consumer wrote {} bytes of {}",
        finished.stdout.len(),
        input.len()
    );
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

/// A lone line goes out at once, as raw input does (see the lossy and
/// lossless modules): whole lines wait for a quiet spell or
/// `--sleep-interval` only while input keeps coming.
#[test]
fn a_lone_line_is_published_without_waiting_the_sleep_interval() {
    lone_records_come_out_at_once(&[], &["--lines"], b'\n');
}

/// The same with a delimiter of the user's, on a lossless bus.
#[test]
fn a_lone_delimited_record_is_published_without_waiting_the_sleep_interval() {
    lone_records_come_out_at_once(&["--lossless"], &["--delimiter", ";"], b';');
}

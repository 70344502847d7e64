//! Each way of writing chunks to standard output (splice, sendfile,
//! copy_file_range, read/write) and each way of building them (mmap, write;
//! anonymous or named temporary files) moves the same bytes.

use std::fs::File;
use std::process::Stdio;

use crate::util::{Running, Scratch, binary_data, filebus, run};

/// Publishes `input` losslessly with `producer_args` while a lossless
/// consumer with `consumer_args` writes to `stdout`; returns the consumer's stderr.
fn lossless_transfer(
    scratch: &Scratch,
    input: &[u8],
    producer_args: &[&str],
    consumer_args: &[&str],
    stdout: Stdio,
) -> String {
    let mut args = vec!["--lossless", "-vvv"];
    args.extend_from_slice(consumer_args);
    args.push("consumer");
    let mut consumer = filebus(&scratch.bus(), &args)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start consumer");
    let mut args = vec!["--lossless", "--block-size", "65536"];
    args.extend_from_slice(producer_args);
    args.push("producer");
    run(filebus(&scratch.bus(), &args), input).assert_success();
    let mut stderr = String::new();
    std::io::Read::read_to_string(consumer.stderr.as_mut().expect("piped"), &mut stderr)
        .expect("read stderr");
    assert!(
        consumer.wait().expect("wait").success(),
        "consumer failed: {stderr}"
    );
    stderr
}

/// Transfers to a regular file and returns (file content, consumer stderr).
fn transfer_to_file(consumer_args: &[&str], append: bool) -> (Vec<u8>, String, Vec<u8>) {
    let scratch = Scratch::new();
    let input = binary_data(3 << 20);
    let out_path = scratch.path("out");
    let out = File::options()
        .create(true)
        .write(true)
        .append(append)
        .open(&out_path)
        .expect("open out");
    let stderr = lossless_transfer(&scratch, &input, &[], consumer_args, Stdio::from(out));
    (std::fs::read(&out_path).expect("read out"), stderr, input)
}

#[test]
fn a_pipe_gets_splice() {
    let scratch = Scratch::new();
    let input = binary_data(3 << 20);
    let consumer = Running::consumer(&scratch.bus(), &["--lossless", "-vvv"]);
    run(
        filebus(
            &scratch.bus(),
            &["--lossless", "--block-size", "65536", "producer"],
        ),
        &input,
    )
    .assert_success();
    let finished = consumer.wait();
    finished.assert_success();
    assert!(
        finished.stderr.contains("output: splice"),
        "{}",
        finished.stderr
    );
    assert!(
        !finished.stderr.contains("falling back"),
        "{}",
        finished.stderr
    );
    assert!(finished.stdout == input, "output differs");
}

#[test]
fn a_regular_file_gets_copy_file_range() {
    let (output, stderr, input) = transfer_to_file(&[], false);
    assert!(stderr.contains("output: copy-file-range"), "{stderr}");
    assert!(!stderr.contains("falling back"), "{stderr}");
    assert!(output == input, "output differs");
}

#[test]
fn a_file_opened_for_append_falls_back_from_copy_file_range() {
    let (output, stderr, input) = transfer_to_file(&[], true);
    assert!(
        stderr.contains("output: copy-file-range refused"),
        "{stderr}"
    );
    assert!(output == input, "output differs");
}

#[test]
fn a_socket_gets_sendfile() {
    let scratch = Scratch::new();
    let input = binary_data(3 << 20);
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    let reader = std::thread::spawn(move || {
        let mut received = Vec::new();
        std::io::Read::read_to_end(&mut &ours, &mut received).expect("read socket");
        received
    });
    let stderr = lossless_transfer(
        &scratch,
        &input,
        &[],
        &[],
        Stdio::from(std::os::fd::OwnedFd::from(theirs)),
    );
    let received = reader.join().expect("reader panicked");
    assert!(stderr.contains("output: sendfile"), "{stderr}");
    assert!(!stderr.contains("falling back"), "{stderr}");
    assert!(received == input, "output differs");
}

#[test]
fn sendfile_can_be_chosen_for_a_pipe() {
    let scratch = Scratch::new();
    let input = binary_data(1 << 20);
    let consumer = Running::consumer(
        &scratch.bus(),
        &["--lossless", "-vvv", "--output-method", "sendfile"],
    );
    run(filebus(&scratch.bus(), &["--lossless", "producer"]), &input).assert_success();
    let finished = consumer.wait();
    finished.assert_success();
    assert!(
        finished.stderr.contains("output: sendfile"),
        "{}",
        finished.stderr
    );
    assert!(finished.stdout == input, "output differs");
}

#[test]
fn read_and_write_is_the_last_resort() {
    let (output, stderr, input) = transfer_to_file(&["--output-method", "write"], false);
    assert!(stderr.contains("output: write"), "{stderr}");
    assert!(output == input, "output differs");
}

#[test]
fn splice_refused_by_a_regular_file_falls_back() {
    let (output, stderr, input) = transfer_to_file(&["--output-method", "splice"], false);
    assert!(stderr.contains("output: splice refused"), "{stderr}");
    assert!(output == input, "output differs");
}

#[test]
fn every_way_of_building_chunks_moves_the_same_bytes() {
    // The producer's stdin is a pipe here, so splice applies.
    for (method, logged) in [
        ("mmap", "Mmap"),
        ("write", "Write"),
        ("splice", "Splice"),
        ("auto", "Splice"),
    ] {
        let scratch = Scratch::new();
        let input = binary_data(3 << 20);
        let consumer = Running::consumer(&scratch.bus(), &["--lossless"]);
        let producer = run(
            filebus(
                &scratch.bus(),
                &["--lossless", "-vvv", "--input-method", method, "producer"],
            ),
            &input,
        );
        producer.assert_success();
        assert!(
            producer.stderr.contains(&format!("input: {logged}")),
            "{method}: {}",
            producer.stderr
        );
        assert!(
            consumer.wait().assert_success().stdout == input,
            "{method}: output differs"
        );
    }
}

#[test]
fn splice_is_not_used_for_input_that_is_not_a_pipe() {
    let scratch = Scratch::new();
    let input = binary_data(1 << 20);
    let stdin = crate::util::input_in(scratch.dir.path(), "input", &input);
    let consumer = Running::consumer(&scratch.bus(), &["--lossless"]);
    let mut command = filebus(
        &scratch.bus(),
        &["--lossless", "-vvv", "--input-method", "splice", "producer"],
    );
    command.stdin(Stdio::from(stdin));
    let producer = Running::with_own_stdin(command).wait();
    producer.assert_success();
    assert!(
        producer.stderr.contains("input: Write"),
        "{}",
        producer.stderr
    );
    assert!(
        consumer.wait().assert_success().stdout == input,
        "output differs"
    );
}

#[test]
fn named_temporary_files_work_and_leave_nothing_behind() {
    let scratch = Scratch::new();
    let input = binary_data(1 << 20);
    let consumer = Running::consumer(&scratch.bus(), &["--lossless"]);
    run(
        filebus(
            &scratch.bus(),
            &["--lossless", "--named-temp-files", "producer"],
        ),
        &input,
    )
    .assert_success();
    assert!(
        consumer.wait().assert_success().stdout == input,
        "output differs"
    );
    assert_eq!(scratch.names(), ["bus.lock"]);
}

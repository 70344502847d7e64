//! Something other than a chunk put at `F` while filebus runs: no crash, no
//! hang, a clear message where the bus cannot be used, and what was put
//! there left as it was.

use std::io::Write;
use std::process::Stdio;

use crate::util::{Running, Scratch, filebus, run, wait_until};

#[test]
fn a_producer_stops_when_the_bus_file_becomes_a_directory_and_leaves_it() {
    let scratch = Scratch::new();
    let mut producer = filebus(&scratch.bus(), &["--sleep-interval", "0", "producer"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start producer");
    let mut stdin = producer.stdin.take().expect("piped");
    stdin.write_all(b"first\n").expect("write");
    wait_until("the first chunk", || {
        std::fs::read(scratch.bus()).is_ok_and(|chunk| chunk == b"first\n")
    });
    std::fs::remove_file(scratch.bus()).expect("remove");
    std::fs::create_dir(scratch.bus()).expect("mkdir");
    std::fs::write(scratch.bus().join("precious"), b"keep me").expect("write");
    // The producer may already be gone (the write may fail): that is fine.
    let _ = stdin.write_all(b"second\n");
    drop(stdin);
    let output = producer.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("is a directory"), "{stderr}");
    assert_eq!(
        std::fs::read(scratch.bus().join("precious")).expect("directory intact"),
        b"keep me"
    );
    assert_eq!(scratch.names(), ["bus", "bus.lock"], "stray files left");
}

#[test]
fn a_lossy_consumer_waits_past_a_fifo_or_directory_at_the_bus_path() {
    let scratch = Scratch::new();
    run(filebus(&scratch.bus(), &["producer"]), b"one\n").assert_success();
    let consumer = Running::consumer(&scratch.bus(), &["-v"]);
    consumer.wait_for_output(4);
    std::fs::remove_file(scratch.bus()).expect("remove");
    let status = std::process::Command::new("mkfifo")
        .arg(scratch.bus())
        .status()
        .expect("mkfifo");
    assert!(status.success());
    wait_until("the warning about the FIFO", || {
        consumer.stderr().contains("FIFO")
    });
    std::fs::remove_file(scratch.bus()).expect("remove fifo");
    run(filebus(&scratch.bus(), &["producer"]), b"two\n").assert_success();
    assert_eq!(consumer.wait_for_output(8), b"one\ntwo\n");
}

#[test]
fn a_lossless_consumer_refuses_a_directory_at_the_bus_path() {
    let scratch = Scratch::new();
    let consumer = Running::consumer(&scratch.bus(), &["--lossless"]);
    std::fs::create_dir(scratch.bus()).expect("mkdir");
    let finished = consumer.wait();
    assert_eq!(finished.status.code(), Some(1), "{}", finished.stderr);
    assert!(
        finished.stderr.contains("is a directory"),
        "{}",
        finished.stderr
    );
    assert!(scratch.bus().is_dir());
}

#[test]
fn a_deleted_lock_file_is_recreated_and_locking_goes_on() {
    let scratch = Scratch::new();
    let consumer = Running::consumer(&scratch.bus(), &["--lossless"]);
    let mut producer = filebus(
        &scratch.bus(),
        &["--lossless", "--sleep-interval", "0", "producer"],
    )
    .stdin(Stdio::piped())
    .spawn()
    .expect("cannot start producer");
    let mut stdin = producer.stdin.take().expect("piped");
    stdin.write_all(b"before\n").expect("write");
    consumer.wait_for_output(7);
    std::fs::remove_file(scratch.path("bus.lock")).expect("remove lock");
    stdin.write_all(b"after\n").expect("write");
    drop(stdin);
    assert!(producer.wait().expect("wait").success());
    let finished = consumer.wait();
    finished.assert_success();
    assert_eq!(finished.stdout, b"before\nafter\n");
}

#[test]
fn a_huge_sparse_file_at_the_bus_path_is_refused_not_emitted() {
    let scratch = Scratch::new();
    let huge = std::fs::File::create(scratch.bus()).expect("create");
    huge.set_len(1 << 40).expect("a 1 TiB sparse file");
    drop(huge);
    // Lossy: a warning, and the next real chunk comes through.
    let consumer = Running::consumer(&scratch.bus(), &["-v"]);
    wait_until("the warning", || {
        consumer.stderr().contains("more than --max-chunk-size")
    });
    run(filebus(&scratch.bus(), &["producer"]), b"real\n").assert_success();
    assert_eq!(consumer.wait_for_output(5), b"real\n");
    drop(consumer);
    // Lossless: one line, exit 1, the file left as it was.
    let huge = std::fs::File::create(scratch.bus()).expect("create");
    huge.set_len(1 << 40).expect("a 1 TiB sparse file");
    let finished = Running::consumer(&scratch.bus(), &["--lossless"]).wait();
    assert_eq!(finished.status.code(), Some(1), "{}", finished.stderr);
    assert_eq!(finished.stderr.lines().count(), 1, "{}", finished.stderr);
    assert!(
        finished.stderr.contains("more than --max-chunk-size"),
        "{}",
        finished.stderr
    );
    assert!(finished.stdout.is_empty());
    assert_eq!(
        std::fs::metadata(scratch.bus()).expect("still there").len(),
        1 << 40
    );
}

#[test]
fn a_lock_file_replaced_while_in_use_is_locked_anew() {
    let scratch = Scratch::new();
    let consumer = Running::consumer(&scratch.bus(), &["--lossless"]);
    let mut producer = filebus(
        &scratch.bus(),
        &["--lossless", "--sleep-interval", "0", "producer"],
    )
    .stdin(Stdio::piped())
    .spawn()
    .expect("cannot start producer");
    let mut stdin = producer.stdin.take().expect("piped");
    stdin.write_all(b"before\n").expect("write");
    consumer.wait_for_output(7);
    // Another file takes the lock file's name while both hold it open.
    std::fs::write(scratch.path("new.lock"), b"").expect("write");
    std::fs::rename(scratch.path("new.lock"), scratch.path("bus.lock")).expect("rename");
    stdin.write_all(b"after\n").expect("write");
    drop(stdin);
    assert!(producer.wait().expect("wait").success());
    let finished = consumer.wait();
    finished.assert_success();
    assert_eq!(finished.stdout, b"before\nafter\n");
}

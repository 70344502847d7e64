//! `filebus stat` on an empty, a waiting and a busy bus; the rate meter;
//! shell completions and the manual page.

mod common;

use std::os::fd::AsRawFd;
use std::process::Command;

use common::{Running, Scratch, filebus, filebus_bin, run};

fn stat(args: &[&str]) -> String {
    let output = Command::new(filebus_bin())
        .arg("stat")
        .args(args)
        .output()
        .expect("cannot run filebus stat");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

#[test]
fn stat_of_an_empty_bus() {
    let scratch = Scratch::new();
    let bus = scratch.bus();
    let text = stat(&[bus.to_str().expect("utf-8 path")]);
    assert!(text.contains("chunk:    none"), "{text}");
    assert!(text.contains("lock:     no lock file"), "{text}");
    let json = stat(&["--json", bus.to_str().expect("utf-8 path")]);
    assert!(
        json.contains("\"chunk\":null") && json.contains("\"lock\":\"missing\""),
        "{json}"
    );
    assert!(
        scratch.names().is_empty(),
        "stat created files: {:?}",
        scratch.names()
    );
}

#[test]
fn stat_of_a_bus_with_a_chunk_waiting_to_be_taken() {
    let scratch = Scratch::new();
    let producer = Running::start(
        filebus(&scratch.bus(), &["--lossless", "producer"]),
        Some(b"first\nsecond".to_vec()),
    );
    common::wait_until("a chunk", || scratch.bus().exists());
    let json = stat(&["--json", scratch.bus().to_str().expect("utf-8 path")]);
    assert!(json.contains("\"format\":\"raw\""), "{json}");
    assert!(json.contains("\"size\":12"), "{json}");
    assert!(json.contains("\"sequence\":1"), "{json}");
    assert!(json.contains("\"lock\":\"free\""), "{json}");
    let consumer = Running::consumer(&scratch.bus(), &["--lossless"]);
    consumer.wait().assert_success();
    producer.wait().assert_success();
}

#[test]
fn stat_of_a_busy_bus_shows_the_lock_held() {
    let scratch = Scratch::new();
    run(filebus(&scratch.bus(), &["producer"]), b"chunk\n").assert_success();
    let lock = std::fs::File::options()
        .read(true)
        .write(true)
        .open(scratch.path("bus.lock"))
        .expect("lock file");
    // SAFETY: flock on a descriptor we own.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let text = stat(&[scratch.bus().to_str().expect("utf-8 path")]);
    assert!(text.contains("lock:     held"), "{text}");
    assert!(text.contains("size:     6 bytes"), "{text}");
    drop(lock);
    // Not at once: a child that another test spawns at this moment holds a
    // copy of our descriptor, and with it the lock, until it execs.
    common::wait_until("the lock to be seen free", || {
        stat(&[scratch.bus().to_str().expect("utf-8 path")]).contains("lock:     free")
    });
}

#[test]
fn stat_watch_counts_chunks_per_second() {
    let scratch = Scratch::new();
    let bus = scratch.bus();
    let mut command = Command::new(filebus_bin());
    command
        .args(["stat", "--watch", "--json", "--count", "2"])
        .arg(&bus);
    let meter = Running::start(command, None);
    // Publish steadily across both seconds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(2500);
    while std::time::Instant::now() < deadline {
        run(filebus(&bus, &["producer"]), b"tick\n").assert_success();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let finished = meter.wait();
    finished.assert_success();
    let lines: Vec<String> = String::from_utf8_lossy(&finished.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    for line in &lines {
        let chunks: u64 = line
            .split("\"chunks_per_second\":")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .and_then(|number| number.parse().ok())
            .unwrap_or_else(|| panic!("no chunks_per_second in {line}"));
        assert!(chunks >= 1, "no chunks counted in {line}");
        assert!(line.contains("\"bytes_per_second\":"), "{line}");
    }
}

#[test]
fn completions_and_manual_page_are_generated() {
    for shell in ["bash", "zsh", "fish"] {
        let output = Command::new(filebus_bin())
            .args(["completions", shell])
            .output()
            .expect("run");
        assert!(output.status.success());
        let script = String::from_utf8_lossy(&output.stdout);
        assert!(
            script.contains("filebus") && script.contains("back-pressure"),
            "{shell}: {script}"
        );
    }
    let output = Command::new(filebus_bin())
        .arg("man")
        .output()
        .expect("run");
    assert!(output.status.success());
    let page = String::from_utf8_lossy(&output.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH filebus 1"),
        "{page}"
    );
    assert!(
        page.contains("Exit status") && page.contains("back\\-pressure"),
        "{page}"
    );
}

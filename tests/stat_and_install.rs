//! `filebus stat` on an empty, a waiting and a busy bus; the rate meter;
//! shell completions and the manual page; `cargo install` of both names,
//! `filebus` and `pipebus`.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;

use crate::util::{Running, Scratch, command_for, filebus, filebus_bin, run, stat, wait_until};

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
    crate::util::wait_until("a chunk", || scratch.bus().exists());
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
    wait_until("the lock to be seen free", || {
        stat(&[scratch.bus().to_str().expect("utf-8 path")]).contains("lock:     free")
    });
}

/// The lines of `stat --watch --json` in `output` (whole lines only).
fn meter_lines(output: &[u8]) -> Vec<serde_json::Value> {
    let whole = output
        .iter()
        .rposition(|&byte| byte == b'\n')
        .map_or(&output[..0], |end| &output[..=end]);
    String::from_utf8_lossy(whole)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{line:?}: {error}")))
        .collect()
}

/// A count from a meter line.
fn field(line: &serde_json::Value, name: &str) -> u64 {
    line[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no {name} in {line}"))
}

#[test]
fn stat_watch_counts_chunks_per_second() {
    // Chunks carry sequence stamps, so the meter's count is exact: over the
    // seconds it reports, the chunks add up to the chunks published, however
    // the seconds fall (the machine may be slow, so no second is assumed to
    // hold any particular share).
    const PUBLISHED: u64 = 40;
    const TICK: &[u8] = b"tick\n";
    let scratch = Scratch::new();
    let bus = scratch.bus();
    run(filebus(&bus, &["producer"]), b"before\n").assert_success();
    let mut command = Command::new(filebus_bin());
    command.args(["stat", "--watch", "--json"]).arg(&bus);
    let meter = Running::start(command, None);
    // Publishing starts once the first second is reported: the meter has
    // read the starting sequence by then.
    wait_until("the meter's first line", || {
        !meter_lines(&meter.output()).is_empty()
    });
    for _ in 0..PUBLISHED {
        run(filebus(&bus, &["producer"]), TICK).assert_success();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Three more lines: the last of them was counted after the last publish,
    // even if this thread saw the first of them late.
    let seen = meter_lines(&meter.output()).len();
    wait_until("three more lines from the meter", || {
        meter_lines(&meter.output()).len() >= seen + 3
    });
    let lines = meter_lines(&meter.kill().stdout);
    let (mut chunks, mut bytes) = (0, 0);
    for (index, line) in lines.iter().enumerate() {
        assert_eq!(field(line, "second"), index as u64 + 1, "{lines:?}");
        chunks += field(line, "chunks_per_second");
        bytes += field(line, "bytes_per_second");
    }
    assert_eq!(
        field(&lines[0], "chunks_per_second"),
        0,
        "a chunk counted before any was published: {lines:?}"
    );
    assert_eq!(
        chunks, PUBLISHED,
        "the chunks per second do not add up to the {PUBLISHED} chunks published: {lines:?}"
    );
    // Bytes are counted from the directory's events: one per publish.
    assert_eq!(
        bytes,
        PUBLISHED * TICK.len() as u64,
        "the bytes per second do not add up to the bytes published: {lines:?}"
    );
}

#[test]
fn stat_watch_stops_after_count_lines() {
    let scratch = Scratch::new();
    let mut command = Command::new(filebus_bin());
    command
        .args(["stat", "--watch", "--json", "--count", "2"])
        .arg(scratch.bus());
    let finished = Running::start(command, None).wait();
    finished.assert_success();
    let lines = meter_lines(&finished.stdout);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|line| field(line, "chunks_per_second") == 0),
        "chunks counted on an empty bus: {lines:?}"
    );
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

/// `cargo install --path .` installs the command under both of the
/// reference's names, `filebus` and `pipebus`, and they are one program: a
/// `pipebus` producer streams to a `filebus` consumer. Built offline in debug
/// mode, in a target directory of its own kept under the cargo target
/// directory (so only the first run compiles everything, and the binaries
/// the other tests run are never rebuilt under them), with one job and no
/// FUSE test meanwhile, so that the build leaves a core to the other tests
/// and its load does not reach the timing of those on FUSE.
#[test]
fn cargo_install_installs_filebus_and_pipebus() {
    let root = Scratch::new();
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cargo-install-target");
    let building = crate::util::fuse::no_fuse_test_meanwhile();
    let output = Command::new(env!("CARGO"))
        .args([
            "install",
            "--offline",
            "--locked",
            "--debug",
            "--quiet",
            "--jobs",
            "1",
            "--path",
        ])
        .arg(env!("CARGO_MANIFEST_DIR"))
        .arg("--root")
        .arg(root.dir.path())
        .arg("--target-dir")
        .arg(&target)
        .output()
        .expect("cannot run cargo");
    drop(building);
    assert!(
        output.status.success(),
        "cargo install failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let bin = root.dir.path().join("bin");
    assert_eq!(crate::util::names_in(&bin), ["filebus", "pipebus"]);
    let (filebus, pipebus) = (bin.join("filebus"), bin.join("pipebus"));

    let help = Command::new(&pipebus)
        .arg("--help")
        .output()
        .expect("cannot run the installed pipebus");
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success(), "pipebus --help: {help:?}");
    assert!(
        text.contains("Usage: pipebus") && text.contains("producer") && text.contains("consumer"),
        "pipebus --help:\n{text}"
    );

    let bus = Scratch::new();
    let consumer = Running::start(
        command_for(&filebus, &bus.bus(), &["--lossless", "consumer"]),
        None,
    );
    let input = crate::util::numbered_records(1000);
    run(
        command_for(
            &pipebus,
            &bus.bus(),
            &["--lossless", "--block-size", "900", "producer"],
        ),
        &input,
    )
    .assert_success();
    let finished = consumer.wait();
    finished.assert_success();
    assert!(finished.stdout == input, "the stream came out changed");
}

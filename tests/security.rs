//! Security, with the real binary in real processes: symlinks planted at the
//! names filebus writes, unprivileged users (`nobody`, through `setpriv`),
//! and the permissions of the files filebus creates.

use std::fs::Permissions;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::util::{
    CHUNK_ARG, assert_one_line_error, produce, records, run_with_input, wait_until_sleeping,
};
use crate::util::{Running, Scratch, filebus, filebus_bin, wait_until};

const VICTIM_CONTENT: &[u8] = b"the victim's precious content\n";

/// A file outside the bus directory that a planted symlink points to.
struct Victim {
    _dir: Scratch,
    path: PathBuf,
    exists: bool,
}

impl Victim {
    /// A victim file with content, or (`exists` false) a path where nothing
    /// is and where nothing may be created.
    fn new(exists: bool) -> Victim {
        let dir = Scratch::new();
        let path = dir.path("victim");
        if exists {
            std::fs::write(&path, VICTIM_CONTENT).expect("cannot write the victim");
        }
        Victim {
            _dir: dir,
            path,
            exists,
        }
    }

    fn assert_untouched(&self, what: &str) {
        if self.exists {
            let metadata = std::fs::symlink_metadata(&self.path).expect("the victim is gone");
            assert!(
                metadata.is_file(),
                "{what}: the victim is no longer a regular file"
            );
            assert_eq!(
                std::fs::read(&self.path).expect("cannot read the victim"),
                VICTIM_CONTENT,
                "{what}: the victim was written"
            );
        } else {
            assert!(
                std::fs::symlink_metadata(&self.path).is_err(),
                "{what}: a file was created at the symlink's target"
            );
        }
    }
}

/// Makes a scratch directory readable and searchable by everyone (but
/// writable by root only, its owner).
fn world_readable(scratch: &Scratch) {
    std::fs::set_permissions(scratch.dir.path(), Permissions::from_mode(0o755))
        .expect("cannot chmod the scratch directory");
}

/// A copy of our binary that user `nobody` can execute (the original may be
/// under /root, which nobody cannot search).
struct NobodyBinary {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl NobodyBinary {
    fn new() -> NobodyBinary {
        let dir = tempfile::Builder::new()
            .prefix("filebus-bin-")
            .tempdir_in("/tmp")
            .expect("cannot create a directory for the binary");
        std::fs::set_permissions(dir.path(), Permissions::from_mode(0o755))
            .expect("cannot chmod the binary's directory");
        let path = dir.path().join("filebus");
        // Copied by cp(1), not std::fs::copy: a descriptor open for writing
        // in this process would be inherited by any child another test
        // thread forks meanwhile, and exec of the copy would then fail with
        // ETXTBSY ("Text file busy").
        let copied = Command::new("cp")
            .arg(filebus_bin())
            .arg(&path)
            .status()
            .expect("cannot run cp");
        assert!(copied.success(), "cannot copy the binary");
        std::fs::set_permissions(&path, Permissions::from_mode(0o755))
            .expect("cannot chmod the binary");
        NobodyBinary { _dir: dir, path }
    }

    /// `filebus --filename BUS ARGS...` run as nobody:nogroup, no other groups.
    fn command(&self, bus: &Path, args: &[&str]) -> Command {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(&self.path)
            .arg("--filename")
            .arg(bus)
            .args(args);
        command
    }
}

/// The user id a process runs as, from /proc.
fn uid_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `command` with the process umask set to `umask`.
fn with_umask(mut command: Command, umask: libc::mode_t) -> Command {
    // SAFETY: umask is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(move || {
            libc::umask(umask);
            Ok(())
        });
    }
    command
}

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|error| panic!("cannot inspect {}: {error}", path.display()))
        .mode()
        & 0o7777
}

#[test]
fn producer_publishes_past_a_symlink_planted_at_the_staging_name_without_touching_its_target() {
    let variants: &[&[&str]] = &[
        &[],
        &["--named-temp-files"],
        &["--input-method", "write"],
        &["--lossless"],
        &["--lossless", "--named-temp-files"],
    ];
    for victim_exists in [true, false] {
        for args in variants {
            let what = format!("{args:?}, victim exists: {victim_exists}");
            let bus_dir = Scratch::new();
            let aux = Scratch::new();
            let bus = bus_dir.bus();
            let victim = Victim::new(victim_exists);
            symlink(&victim.path, bus_dir.path("bus.__new__")).expect("cannot plant the symlink");
            let input = records(0..250);
            let mut all = args.to_vec();
            all.extend(["--block-size", CHUNK_ARG]);
            if args.contains(&"--lossless") {
                let consumer = Running::consumer(&bus, &["--lossless"]);
                produce(&bus, &all, &input, aux.dir.path());
                let finished = consumer.wait();
                finished.assert_success();
                assert_eq!(finished.stdout, input, "{what}: the consumer's output");
            } else {
                produce(&bus, &all, &input, aux.dir.path());
                let metadata = std::fs::symlink_metadata(&bus).expect("no bus file");
                assert!(metadata.is_file(), "{what}: F is not a regular file");
                assert_eq!(
                    std::fs::read(&bus).expect("cannot read bus"),
                    records(200..250),
                    "{what}: F"
                );
            }
            victim.assert_untouched(&what);
        }
    }
}

#[test]
fn symlink_planted_at_the_lock_file_is_refused_and_never_followed() {
    for victim_exists in [true, false] {
        for (args, is_producer) in [
            (&["producer"][..], true),
            (&["--lossless", "producer"][..], true),
            (&["--lossless", "consumer"][..], false),
        ] {
            let what = format!("{args:?}, victim exists: {victim_exists}");
            let bus_dir = Scratch::new();
            let aux = Scratch::new();
            let bus = bus_dir.bus();
            std::fs::write(&bus, b"existing chunk\n").expect("cannot write bus");
            let victim = Victim::new(victim_exists);
            symlink(&victim.path, bus_dir.path("bus.lock")).expect("cannot plant the symlink");
            let input: &[u8] = if is_producer { b"some input\n" } else { b"" };
            let (status, stderr) = run_with_input(filebus(&bus, args), input, aux.dir.path());
            assert_one_line_error(status, &stderr, None, &["symbolic link"], &what);
            assert!(
                stderr.contains("bus.lock"),
                "{what}: {stderr:?} does not name the lock file"
            );
            victim.assert_untouched(&what);
            assert_eq!(
                std::fs::read(&bus).expect("cannot read bus"),
                b"existing chunk\n",
                "{what}: F changed"
            );
            assert_eq!(bus_dir.names(), ["bus", "bus.lock"], "{what}");
        }
    }
}

#[test]
fn symlink_planted_at_the_bus_file_is_never_followed() {
    let bus_dir = Scratch::new();
    let aux = Scratch::new();
    let bus = bus_dir.bus();
    let victim = Victim::new(true);
    symlink(&victim.path, &bus).expect("cannot plant the symlink");

    // A lossless consumer refuses it without emitting the target.
    let finished = Running::consumer(&bus, &["--lossless"]).wait();
    assert_one_line_error(
        finished.status,
        &finished.stderr,
        None,
        &["symbolic link"],
        "lossless consumer",
    );
    assert_eq!(
        finished.stdout, b"",
        "the lossless consumer emitted the symlink's target"
    );

    // A lossy consumer ignores it and emits the next real chunk only.
    let consumer = Running::consumer(&bus, &[]);
    wait_until_sleeping(consumer.child.id() as i32);
    produce(&bus, &[], b"a real chunk\n", aux.dir.path());
    consumer.wait_for_output(b"a real chunk\n".len());
    let finished = consumer.kill();
    assert_eq!(
        finished.stdout, b"a real chunk\n",
        "the lossy consumer's output"
    );
    assert!(
        std::fs::symlink_metadata(&bus)
            .expect("no bus file")
            .is_file(),
        "the publish did not replace the symlink"
    );
    victim.assert_untouched("after a publish over a symlink at F");
}

#[test]
fn lossy_consumer_as_nobody_needs_only_read_permission() {
    let binary = NobodyBinary::new();
    let bus_dir = Scratch::new();
    let aux = Scratch::new();
    world_readable(&bus_dir);
    let bus = bus_dir.bus();
    std::fs::write(&bus, b"the current chunk\n").expect("cannot write bus");
    std::fs::set_permissions(&bus, Permissions::from_mode(0o644)).expect("cannot chmod bus");

    let consumer = Running::start(binary.command(&bus, &["consumer"]), None);
    let mut expected = b"the current chunk\n".to_vec();
    consumer.wait_for_output(expected.len());
    assert_eq!(
        uid_of(consumer.child.id()),
        Some(65534),
        "the consumer does not run as nobody"
    );
    assert_eq!(consumer.output(), expected);
    assert_eq!(bus_dir.names(), ["bus"], "the consumer created a file");

    // Chunks published by root (readable by all under umask 022) come through.
    for chunk in [records(0..100), records(100..200)] {
        let args = ["--block-size", CHUNK_ARG, "producer"];
        let (status, stderr) = run_with_input(
            with_umask(filebus(&bus, &args), 0o022),
            &chunk,
            aux.dir.path(),
        );
        assert!(
            status.success(),
            "root producer: {status:?}; stderr:\n{stderr}"
        );
        expected.extend_from_slice(&chunk);
        consumer.wait_for_suffix(&chunk);
    }
    let finished = consumer.kill();
    assert_eq!(finished.stdout, expected);
    assert_eq!(finished.stderr, "", "the consumer complained");
    assert_eq!(bus_dir.names(), ["bus", "bus.lock"]);
}

/// A root-owned bus directory (0755) holding a root-owned chunk (0644), and
/// a root-owned lock file (0644) if `with_lock`.
fn read_only_bus(with_lock: bool) -> Scratch {
    let bus_dir = Scratch::new();
    world_readable(&bus_dir);
    std::fs::write(bus_dir.bus(), b"root's chunk\n").expect("cannot write bus");
    std::fs::set_permissions(bus_dir.bus(), Permissions::from_mode(0o644)).expect("cannot chmod");
    if with_lock {
        std::fs::write(bus_dir.path("bus.lock"), b"").expect("cannot write lock");
        std::fs::set_permissions(bus_dir.path("bus.lock"), Permissions::from_mode(0o644))
            .expect("cannot chmod");
    }
    bus_dir
}

fn assert_bus_untouched(bus_dir: &Scratch, names: &[&str], what: &str) {
    assert_eq!(
        bus_dir.names(),
        names,
        "{what}: files were created or removed"
    );
    assert_eq!(
        std::fs::read(bus_dir.bus()).expect("cannot read bus"),
        b"root's chunk\n",
        "{what}: F changed"
    );
}

const PRODUCER_VARIANTS: &[&[&str]] = &[
    &["producer"],
    &["--named-temp-files", "producer"],
    &["--input-method", "write", "producer"],
    &["--lossless", "producer"],
];

#[test]
fn producer_as_nobody_in_a_read_only_directory_fails_naming_the_lock_file() {
    // No lock file yet: filebus must create it, and may not.
    let binary = NobodyBinary::new();
    let aux = Scratch::new();
    for args in PRODUCER_VARIANTS {
        let bus_dir = read_only_bus(false);
        let command = binary.command(&bus_dir.bus(), args);
        let (status, stderr) = run_with_input(command, b"some input\n", aux.dir.path());
        assert_one_line_error(
            status,
            &stderr,
            None,
            &["bus.lock", "Permission denied"],
            &format!("{args:?}"),
        );
        assert_bus_untouched(&bus_dir, &["bus"], &format!("{args:?}"));
    }
}

#[test]
fn producer_as_nobody_with_a_foreign_lock_file_fails_with_permission_denied() {
    // The lock file exists (root's, read-only to others, which is enough to
    // lock it): the temporary file is what cannot be created.
    let binary = NobodyBinary::new();
    let aux = Scratch::new();
    for args in PRODUCER_VARIANTS {
        let bus_dir = read_only_bus(true);
        let command = binary.command(&bus_dir.bus(), args);
        let (status, stderr) = run_with_input(command, b"some input\n", aux.dir.path());
        let dir = bus_dir.dir.path().to_string_lossy().into_owned();
        assert_one_line_error(
            status,
            &stderr,
            None,
            &[&dir, "Permission denied"],
            &format!("{args:?}"),
        );
        assert_bus_untouched(&bus_dir, &["bus", "bus.lock"], &format!("{args:?}"));
    }
}

#[test]
fn lossless_consumer_as_nobody_without_write_permission_fails_clearly() {
    let binary = NobodyBinary::new();
    let aux = Scratch::new();
    for with_lock in [true, false] {
        let what = format!("lock file present: {with_lock}");
        let bus_dir = read_only_bus(with_lock);
        let command = binary.command(&bus_dir.bus(), &["--lossless", "consumer"]);
        let (status, stderr) = run_with_input(command, b"", aux.dir.path());
        assert_one_line_error(status, &stderr, None, &["Permission denied"], &what);
        let names: &[&str] = if with_lock {
            &["bus", "bus.lock"]
        } else {
            &["bus"]
        };
        assert_bus_untouched(&bus_dir, names, &what);
    }
}

#[test]
fn lossless_consumer_without_write_permission_does_not_emit_a_chunk_it_cannot_take() {
    // Exactly one lossless consumer gets each chunk. One that cannot delete
    // the chunk leaves it for the next consumer, so it must not emit it.
    let binary = NobodyBinary::new();
    let bus_dir = read_only_bus(true);
    let finished = Running::start(
        binary.command(&bus_dir.bus(), &["--lossless", "consumer"]),
        None,
    )
    .wait();
    assert_one_line_error(
        finished.status,
        &finished.stderr,
        None,
        &["Permission denied"],
        "lossless consumer as nobody",
    );
    assert_eq!(
        String::from_utf8_lossy(&finished.stdout),
        "",
        "the consumer emitted a chunk it could not take, which the next consumer gets again"
    );
    assert_bus_untouched(&bus_dir, &["bus", "bus.lock"], "after the failed consumer");
}

#[test]
fn chunk_and_lock_files_respect_the_umask() {
    let aux = Scratch::new();
    let variants: &[&[&str]] = &[
        &[],
        &["--named-temp-files"],
        &["--input-method", "write"],
        &["--lossless"],
    ];
    for umask in [0o077, 0o027, 0o002] {
        for args in variants {
            let what = format!("umask {umask:03o}, {args:?}");
            let expected = 0o666 & !umask;
            let bus_dir = Scratch::new();
            let bus = bus_dir.bus();
            let mut all = args.to_vec();
            all.push("producer");
            let command = with_umask(filebus(&bus, &all), umask);
            if args.contains(&"--lossless") {
                let input = crate::util::input_in(aux.dir.path(), "lossless-input", b"one chunk\n");
                let mut producer = Running::with_stdio(command, input, Stdio::null());
                wait_until("the chunk", || bus.exists());
                assert_eq!(mode_of(&bus), expected, "{what}: F");
                let finished = Running::consumer(&bus, &["--lossless"]).wait();
                finished.assert_success();
                assert_eq!(finished.stdout, b"one chunk\n");
                let status = producer.wait_status();
                assert!(
                    status.success(),
                    "{what}: {status:?}; stderr:\n{}",
                    producer.stderr()
                );
            } else {
                let (status, stderr) = run_with_input(command, b"one chunk\n", aux.dir.path());
                assert!(status.success(), "{what}: {status:?}; stderr:\n{stderr}");
                assert_eq!(mode_of(&bus), expected, "{what}: F");
            }
            assert_eq!(
                mode_of(&bus_dir.path("bus.lock")),
                expected,
                "{what}: F.lock"
            );
        }
    }
}

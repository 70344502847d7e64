//! Something other than a chunk put at `F` while filebus runs: no crash, no
//! hang, a clear message where the bus cannot be used (shown without `-v`),
//! and what was put there left as it was.

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

/// The `flock` locks of process `pid` in /proc/locks: the inode of each
/// lock file, and whether the process waits for that lock (rather than
/// holding it).
fn flocks_of(pid: u32) -> Vec<(u64, bool)> {
    let table = std::fs::read_to_string("/proc/locks").expect("cannot read /proc/locks");
    table
        .lines()
        .filter_map(|line| {
            // "1: FLOCK  ADVISORY  WRITE 5868 fe:00:10011233 0 EOF", with
            // "->" after the number for a process waiting for the lock.
            let mut fields = line.split_whitespace().skip(1).peekable();
            let waiting = fields.next_if_eq(&"->").is_some();
            let fields: Vec<&str> = fields.collect();
            if fields.first() != Some(&"FLOCK") || fields.get(3) != Some(&pid.to_string().as_str())
            {
                return None;
            }
            let inode = fields.get(4)?.rsplit(':').next()?.parse().ok()?;
            Some((inode, waiting))
        })
        .collect()
}

/// The inode number of the file at `path`.
fn inode(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .unwrap_or_else(|error| panic!("cannot stat {}: {error}", path.display()))
        .ino()
}

/// How the lock file is replaced under a process waiting for it.
#[derive(Clone, Copy, Debug)]
enum Replacement {
    /// Another file is renamed over `F.lock`.
    RenamedOver,
    /// `F.lock` is deleted, and the next locker creates it anew.
    DeletedAndRecreated,
}

/// The race that the identity re-check after locking exists for: a process
/// waits for the lock on `F.lock`; meanwhile that file is replaced, and a
/// newcomer locks the new `F.lock`; then the old lock is released. The
/// waiter now holds a lock on a file nobody else will ever lock again: it
/// must notice, and wait for the newcomer's lock, instead of going ahead
/// while the newcomer believes it holds the bus alone.
///
/// The test plays the first holder and the newcomer with `flock` on the
/// same files; the waiter is our binary, as a lossy producer with a chunk
/// to publish and as a lossless consumer with a chunk to take. What the
/// waiter locks and waits for is read from /proc/locks, so every step
/// happens in order, however slow the machine.
#[test]
fn a_locker_that_waited_on_a_replaced_lock_file_waits_for_the_new_one() {
    for replacement in [Replacement::RenamedOver, Replacement::DeletedAndRecreated] {
        for role in ["producer", "lossless consumer"] {
            let what = format!("{role}, lock file {replacement:?}");
            let scratch = Scratch::new();
            let lock_path = scratch.path("bus.lock");
            // The first holder.
            let first = std::fs::File::create(&lock_path).expect("cannot create the lock file");
            first.lock().expect("cannot lock the lock file");
            let old_inode = inode(&lock_path);
            let waiter = match role {
                "producer" => Running::start(
                    filebus(&scratch.bus(), &["producer"]),
                    Some(b"mine\n".to_vec()),
                ),
                _ => {
                    std::fs::write(scratch.bus(), b"waiting\n").expect("cannot write the bus");
                    Running::consumer(&scratch.bus(), &["--lossless"])
                }
            };
            let pid = waiter.child.id();
            wait_until(&format!("{what}: the {role} to wait for the lock"), || {
                flocks_of(pid).contains(&(old_inode, true))
            });

            // The lock file is replaced, and the newcomer locks the new one.
            match replacement {
                Replacement::RenamedOver => {
                    std::fs::write(scratch.path("new.lock"), b"").expect("cannot write");
                    std::fs::rename(scratch.path("new.lock"), &lock_path).expect("rename");
                }
                Replacement::DeletedAndRecreated => {
                    std::fs::remove_file(&lock_path).expect("cannot delete the lock file");
                }
            }
            let newcomer = std::fs::File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&lock_path)
                .expect("cannot open the new lock file");
            newcomer
                .try_lock()
                .expect("nobody else may hold the new lock file yet");
            let new_inode = inode(&lock_path);
            assert_ne!(
                new_inode, old_inode,
                "{what}: the lock file was not replaced"
            );

            // The old lock goes free: the waiter gets it, sees that it is no
            // longer the lock file, and must wait for the newcomer's lock.
            drop(first);
            let went_ahead = || match role {
                "producer" => scratch.bus().exists(),
                _ => !waiter.output().is_empty() || !scratch.bus().exists(),
            };
            wait_until(
                &format!("{what}: the {role} to wait for the new lock file"),
                || {
                    assert!(
                        !went_ahead(),
                        "{what}: the {role} went ahead on the replaced lock file while \
                         another process held the new one: two holders of the bus lock"
                    );
                    flocks_of(pid).contains(&(new_inode, true))
                },
            );
            assert!(!went_ahead(), "{what}: two holders of the bus lock");

            // Once the newcomer is done, the waiter does its work.
            drop(newcomer);
            match role {
                "producer" => {
                    waiter.wait().assert_success();
                    assert_eq!(
                        std::fs::read(scratch.bus()).expect("cannot read the bus"),
                        b"mine\n",
                        "{what}"
                    );
                }
                _ => {
                    assert_eq!(waiter.wait_for_output(8), b"waiting\n", "{what}");
                    wait_until(&format!("{what}: the chunk to be taken"), || {
                        !scratch.bus().exists()
                    });
                }
            }
            let expected: &[&str] = match role {
                "producer" => &["bus", "bus.lock"],
                _ => &["bus.lock"],
            };
            assert_eq!(scratch.names(), expected, "{what}");
        }
    }
}

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

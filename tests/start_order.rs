//! Reliable multicast whatever the order in which people start a pipe:
//! consumers (named or not) started before the bus exists, together with
//! the producer, late within the history's window, late beyond it, or
//! stopped (SIGSTOP) through the whole stream; on a local disk, on tmpfs,
//! and on a FUSE mount (bindfs) with the producer on "another machine".
//!
//! Every case runs the real binary: one producer with `--history DEPTH`
//! publishing [`CHUNKS`] numbered chunks, written to its stdin a chunk at a
//! time by the test, and one consumer. Each case asserts every byte in
//! order from where the consumer had to start, or exactly the loss it
//! reported, and that the consumer ended by itself at the end of the stream
//! with status 0.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Stdio};

use crate::util::fuse::{NFS_FORWARD_LOCKS, SharedDir};
use crate::util::{
    CHUNK, CHUNK_ARG, RECORDS_PER_CHUNK, Running, Scratch, Tmpfs, check_full_chunks, filebus,
    records, wait_until,
};

/// The history's depth.
const DEPTH: usize = 8;
/// Chunks in the stream (then one end-of-stream chunk): five windows.
const CHUNKS: usize = 5 * DEPTH;
/// Chunks published before a late consumer starts, within the window.
const WITHIN: usize = DEPTH / 2;
/// Chunks published before a late consumer starts, beyond the window.
const BEYOND: usize = 3 * DEPTH;

/// Where the bus lives, and the paths by which each side reaches it.
struct Site {
    consumer_bus: PathBuf,
    producer_bus: PathBuf,
    /// Keeps the directory (and any mount) alive.
    _holder: Holder,
}

#[allow(dead_code)]
enum Holder {
    Disk(Scratch),
    Tmpfs(Tmpfs),
    Shared(SharedDir),
}

#[derive(Debug, Clone, Copy)]
enum Place {
    /// ext4 under /tmp.
    Disk,
    /// A tmpfs of its own.
    Tmpfs,
    /// The consumer on a bindfs mount with bindfs's default caches, the
    /// producer on the directory underneath (another machine).
    Bindfs,
    /// bindfs as it comes: locks on the mount are not seen underneath, so
    /// the producer sees a named consumer alive only by its heartbeat.
    BindfsWithoutLocks,
    /// Two mounts of `nfs_fs.py`, an NFSv3 client's behaviour (inode
    /// numbers reused while open elsewhere, no extended attributes, no
    /// O_TMPFILE) with locks coordinated by the server (lockd): the
    /// consumer on one, the producer on the other.
    NfsLike,
    /// The same, where a read of a chunk or history entry deleted by the
    /// other mount fails with EFAULT, and the first read of each waits
    /// 20 ms (a slow server): chunks and entries go away under readers.
    NfsLikeSlowEfault,
}

impl Site {
    fn new(place: Place) -> Site {
        match place {
            Place::Disk => {
                let scratch = Scratch::new();
                let bus = scratch.bus();
                Site {
                    consumer_bus: bus.clone(),
                    producer_bus: bus,
                    _holder: Holder::Disk(scratch),
                }
            }
            Place::Tmpfs => {
                let tmpfs = Tmpfs::mount("size=64m");
                let bus = tmpfs.path().join("bus");
                Site {
                    consumer_bus: bus.clone(),
                    producer_bus: bus,
                    _holder: Holder::Tmpfs(tmpfs),
                }
            }
            Place::Bindfs => {
                let shared = SharedDir::new();
                Site {
                    consumer_bus: shared.bus_here(),
                    producer_bus: shared.bus_there(),
                    _holder: Holder::Shared(shared),
                }
            }
            Place::BindfsWithoutLocks => {
                let shared = SharedDir::without_lock_forwarding();
                Site {
                    consumer_bus: shared.bus_here(),
                    producer_bus: shared.bus_there(),
                    _holder: Holder::Shared(shared),
                }
            }
            Place::NfsLike | Place::NfsLikeSlowEfault => {
                let mut options = NFS_FORWARD_LOCKS.to_vec();
                if let Place::NfsLikeSlowEfault = place {
                    options.extend(["--stale-errno", "EFAULT", "--read-delay", "0.02"]);
                }
                let shared = SharedDir::nfs_like(&options);
                Site {
                    consumer_bus: shared.bus_here(),
                    producer_bus: shared.bus_there(),
                    _holder: Holder::Shared(shared),
                }
            }
        }
    }

    /// The newest history entry published, seen from the producer's side.
    fn newest_entry(&self) -> usize {
        let dir = self.producer_bus.with_file_name("bus.history");
        let Ok(listing) = std::fs::read_dir(&dir) else {
            return 0;
        };
        listing
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.len() == 20)
            .filter_map(|name| name.parse().ok())
            .max()
            .unwrap_or(0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// The consumer runs before the bus exists; the producer comes after.
    ConsumerFirst,
    /// As `ConsumerFirst`, but the producer comes six seconds later, longer
    /// than a named consumer's heartbeat lease: only a beating heartbeat
    /// (not the cursor file's creation) says it is alive where locks are
    /// not shared.
    ConsumerLongBefore,
    /// Both started at once, nobody waiting for anybody.
    Together,
    /// The consumer starts after [`WITHIN`] chunks.
    LateWithinWindow,
    /// The consumer starts after [`BEYOND`] chunks.
    LateBeyondWindow,
    /// The consumer runs first, then is stopped (SIGSTOP) while the whole
    /// stream is published, then continued.
    StoppedThroughStream,
}

/// The producer, fed by the test a chunk at a time.
struct Producer {
    running: Running,
    stdin: Option<ChildStdin>,
}

impl Producer {
    fn start(bus: &Path) -> Producer {
        let command = filebus(
            bus,
            &[
                "-vvv",
                "producer",
                "--history",
                &DEPTH.to_string(),
                "--block-size",
                CHUNK_ARG,
            ],
        );
        let mut running = Running::with_stdio(command, Stdio::piped(), Stdio::null());
        let stdin = running.child.stdin.take();
        Producer { running, stdin }
    }

    /// Writes chunks `chunks` (indices from 0) to the producer's stdin.
    fn feed(&mut self, chunks: std::ops::Range<usize>) {
        let bytes = records(chunks.start * RECORDS_PER_CHUNK..chunks.end * RECORDS_PER_CHUNK);
        self.stdin
            .as_mut()
            .expect("stdin still open")
            .write_all(&bytes)
            .expect("cannot feed the producer");
    }

    fn close(&mut self) {
        self.stdin = None;
    }
}

/// What the consumer must have received.
struct Expected {
    /// The first chunk it must account for (written or reported lost).
    first: usize,
    /// Whether it may lose anything at all (named consumers may not).
    may_lose: bool,
}

fn consumer_args(named: bool) -> Vec<&'static str> {
    let mut args = vec!["-vvv", "consumer"];
    if named {
        args.extend(["--name", "reader"]);
    }
    args
}

/// Waits until a consumer has decided where it starts (named: its cursor is
/// registered) or watches the bus (unnamed, no history yet).
fn wait_ready(consumer: &Running, named: bool) {
    // Said once its watcher exists: by inotify, or by polling (FUSE).
    let signs: &[&str] = if named {
        &[crate::util::HISTORY_CONSUMER_READY]
    } else {
        &["watching", "polling every"]
    };
    wait_until("the consumer to be ready", || {
        let stderr = consumer.stderr();
        signs.iter().any(|sign| stderr.contains(sign))
    });
}

fn run_case(place: Place, named: bool, start: Start) {
    let site = Site::new(place);
    let what = format!(
        "{place:?}, {}, {start:?}",
        if named { "named" } else { "unnamed" }
    );
    let consumer_command = || filebus(&site.consumer_bus, &consumer_args(named));
    let (consumer, mut producer, expected) = match start {
        Start::ConsumerFirst | Start::ConsumerLongBefore => {
            let consumer = Running::start(consumer_command(), None);
            wait_ready(&consumer, named);
            if start == Start::ConsumerLongBefore {
                std::thread::sleep(std::time::Duration::from_secs(6));
            }
            let mut producer = Producer::start(&site.producer_bus);
            producer.feed(0..CHUNKS);
            (
                consumer,
                producer,
                Expected {
                    first: 0,
                    may_lose: !named,
                },
            )
        }
        Start::Together => {
            let consumer = Running::start(consumer_command(), None);
            let mut producer = Producer::start(&site.producer_bus);
            producer.feed(0..CHUNKS);
            // The stream ends once the consumer runs: a consumer that
            // finds a stream already ended waits for the next one.
            wait_ready(&consumer, true);
            // Where it starts depends on who was first; from there on
            // nothing may be lost but what it reports.
            (
                consumer,
                producer,
                Expected {
                    first: usize::MAX,
                    may_lose: !named,
                },
            )
        }
        Start::LateWithinWindow | Start::LateBeyondWindow => {
            let before = if start == Start::LateWithinWindow {
                WITHIN
            } else {
                BEYOND
            };
            let mut producer = Producer::start(&site.producer_bus);
            producer.feed(0..before);
            wait_until("the first chunks to be published", || {
                site.newest_entry() >= before
            });
            let consumer = Running::start(consumer_command(), None);
            wait_ready(&consumer, true);
            producer.feed(before..CHUNKS);
            // A late joiner starts with the chunk at F.
            (
                consumer,
                producer,
                Expected {
                    first: before - 1,
                    may_lose: !named,
                },
            )
        }
        Start::StoppedThroughStream => {
            let consumer = Running::start(consumer_command(), None);
            wait_ready(&consumer, named);
            consumer.send(libc::SIGSTOP);
            let mut producer = Producer::start(&site.producer_bus);
            producer.feed(0..CHUNKS);
            if named {
                // The producer fills the window, then waits for it.
                wait_until("the producer to wait for the stopped consumer", || {
                    producer
                        .running
                        .stderr()
                        .contains("waiting for named consumer reader")
                });
            } else {
                producer.close();
                wait_until("the producer to end", || {
                    producer.running.try_status().is_some()
                });
            }
            consumer.send(libc::SIGCONT);
            (
                consumer,
                producer,
                Expected {
                    first: 0,
                    may_lose: !named,
                },
            )
        }
    };
    producer.close();
    let status = producer.running.wait_status();
    assert!(
        status.success(),
        "{what}: producer failed: {status:?}; stderr:\n{}",
        producer.running.stderr()
    );
    let finished = consumer.wait();
    assert!(
        finished.status.success(),
        "{what}: consumer did not end well: {:?}; stderr:\n{}",
        finished.status,
        finished.stderr
    );
    check_received(&what, &finished.stdout, &finished.stderr, &expected);
}

/// Checks the consumer's output against the stream: whole chunks in order,
/// the last one included, and every chunk missing after `expected.first`
/// reported in a `lost` line naming exactly its range.
fn check_received(what: &str, output: &[u8], stderr: &str, expected: &Expected) {
    let firsts = check_full_chunks(output, what);
    let written: Vec<usize> = firsts
        .iter()
        .map(|first| first / RECORDS_PER_CHUNK)
        .collect();
    assert!(
        written.last() == Some(&(CHUNKS - 1)),
        "{what}: the stream's last chunk was not written ({} of {} bytes); stderr:\n{stderr}",
        output.len(),
        CHUNKS * CHUNK
    );
    assert!(
        written.windows(2).all(|pair| pair[0] < pair[1]),
        "{what}: repeated or reordered chunks: {written:?}; stderr:\n{stderr}"
    );
    let reported: Vec<(usize, usize)> = stderr
        .lines()
        .filter(|line| line.starts_with("filebus: lost "))
        .map(lost_range)
        .collect();
    let first = if expected.first != usize::MAX {
        expected.first
    } else {
        // Where it started is where it accounts from: its first chunk, or
        // the first one it reported lost before that.
        reported
            .first()
            .map_or(written[0], |&(from, _)| written[0].min(from - 1))
    };
    // Chunk index i is sequence i + 1 on a fresh bus.
    let mut missing = Vec::new();
    let mut next = first;
    for &chunk in &written {
        if chunk > next {
            missing.push((next + 1, chunk));
        }
        next = chunk + 1;
    }
    assert!(
        written[0] >= first,
        "{what}: started at chunk {} before chunk {first}",
        written[0]
    );
    assert_eq!(
        reported, missing,
        "{what}: the losses reported (sequence ranges) are not the chunks missing; stderr:\n{stderr}"
    );
    if !expected.may_lose {
        assert!(
            missing.is_empty(),
            "{what}: a named consumer lost {missing:?}"
        );
    }
}

/// The sequence range in "filebus: lost N chunks: chunks A to B left ..." or
/// "... lost 1 chunk: chunk A left ...".
fn lost_range(line: &str) -> (usize, usize) {
    let numbers: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|word| !word.is_empty())
        .filter_map(|word| word.parse().ok())
        .collect();
    match numbers[..] {
        [1, a] => (a, a),
        [_, a, b] => (a, b),
        _ => panic!("cannot read the range in {line:?}"),
    }
}

macro_rules! start_order_cases {
    ($($name:ident: $place:expr, $named:expr, $start:expr;)*) => {
        $(
            #[test]
            fn $name() {
                run_case($place, $named, $start);
            }
        )*
    };
}

start_order_cases! {
    disk_named_consumer_first: Place::Disk, true, Start::ConsumerFirst;
    disk_named_together: Place::Disk, true, Start::Together;
    disk_named_late_within_window: Place::Disk, true, Start::LateWithinWindow;
    disk_named_late_beyond_window: Place::Disk, true, Start::LateBeyondWindow;
    disk_named_stopped_through_stream: Place::Disk, true, Start::StoppedThroughStream;
    disk_unnamed_consumer_first: Place::Disk, false, Start::ConsumerFirst;
    disk_unnamed_together: Place::Disk, false, Start::Together;
    disk_unnamed_late_within_window: Place::Disk, false, Start::LateWithinWindow;
    disk_unnamed_late_beyond_window: Place::Disk, false, Start::LateBeyondWindow;
    disk_unnamed_stopped_through_stream: Place::Disk, false, Start::StoppedThroughStream;
    tmpfs_named_consumer_first: Place::Tmpfs, true, Start::ConsumerFirst;
    tmpfs_named_together: Place::Tmpfs, true, Start::Together;
    tmpfs_named_late_within_window: Place::Tmpfs, true, Start::LateWithinWindow;
    tmpfs_named_late_beyond_window: Place::Tmpfs, true, Start::LateBeyondWindow;
    tmpfs_named_stopped_through_stream: Place::Tmpfs, true, Start::StoppedThroughStream;
    tmpfs_unnamed_consumer_first: Place::Tmpfs, false, Start::ConsumerFirst;
    tmpfs_unnamed_together: Place::Tmpfs, false, Start::Together;
    tmpfs_unnamed_late_within_window: Place::Tmpfs, false, Start::LateWithinWindow;
    tmpfs_unnamed_late_beyond_window: Place::Tmpfs, false, Start::LateBeyondWindow;
    tmpfs_unnamed_stopped_through_stream: Place::Tmpfs, false, Start::StoppedThroughStream;
    bindfs_named_consumer_first: Place::Bindfs, true, Start::ConsumerFirst;
    bindfs_named_together: Place::Bindfs, true, Start::Together;
    bindfs_named_late_within_window: Place::Bindfs, true, Start::LateWithinWindow;
    bindfs_named_late_beyond_window: Place::Bindfs, true, Start::LateBeyondWindow;
    bindfs_named_stopped_through_stream: Place::Bindfs, true, Start::StoppedThroughStream;
    bindfs_unnamed_consumer_first: Place::Bindfs, false, Start::ConsumerFirst;
    bindfs_unnamed_together: Place::Bindfs, false, Start::Together;
    bindfs_unnamed_late_within_window: Place::Bindfs, false, Start::LateWithinWindow;
    bindfs_unnamed_late_beyond_window: Place::Bindfs, false, Start::LateBeyondWindow;
    bindfs_unnamed_stopped_through_stream: Place::Bindfs, false, Start::StoppedThroughStream;
    nfs_named_consumer_first: Place::NfsLike, true, Start::ConsumerFirst;
    nfs_named_together: Place::NfsLike, true, Start::Together;
    nfs_named_late_within_window: Place::NfsLike, true, Start::LateWithinWindow;
    nfs_named_late_beyond_window: Place::NfsLike, true, Start::LateBeyondWindow;
    nfs_named_stopped_through_stream: Place::NfsLike, true, Start::StoppedThroughStream;
    nfs_unnamed_consumer_first: Place::NfsLike, false, Start::ConsumerFirst;
    nfs_unnamed_together: Place::NfsLike, false, Start::Together;
    nfs_unnamed_late_within_window: Place::NfsLike, false, Start::LateWithinWindow;
    nfs_unnamed_late_beyond_window: Place::NfsLike, false, Start::LateBeyondWindow;
    nfs_unnamed_stopped_through_stream: Place::NfsLike, false, Start::StoppedThroughStream;
    nfs_efault_unnamed_consumer_first: Place::NfsLikeSlowEfault, false, Start::ConsumerFirst;
    nfs_efault_unnamed_together: Place::NfsLikeSlowEfault, false, Start::Together;
    nfs_efault_unnamed_stopped_through_stream: Place::NfsLikeSlowEfault, false, Start::StoppedThroughStream;
    nfs_efault_named_consumer_first: Place::NfsLikeSlowEfault, true, Start::ConsumerFirst;
    bindfs_unlocked_named_consumer_first: Place::BindfsWithoutLocks, true, Start::ConsumerFirst;
    bindfs_unlocked_named_together: Place::BindfsWithoutLocks, true, Start::Together;
    bindfs_unlocked_named_late_within_window: Place::BindfsWithoutLocks, true, Start::LateWithinWindow;
    bindfs_unlocked_named_late_beyond_window: Place::BindfsWithoutLocks, true, Start::LateBeyondWindow;
    bindfs_unlocked_named_consumer_long_before: Place::BindfsWithoutLocks, true, Start::ConsumerLongBefore;
}

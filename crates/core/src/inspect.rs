//! `filebus stat`: a bus at a glance, and (with `--watch`) a rate meter.

use std::fmt::Write as _;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, FlockOperation, Mode, OFlags};
use rustix::io::Errno;
use serde::Serialize;

use crate::bus::{Bus, Current};
use crate::error::{Error, Result};
use crate::stamp;
use crate::watch::{self, WakeUp, Watcher};

/// What `filebus stat` reports about a bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusStatus {
    /// The current chunk, if there is one.
    pub chunk: Option<ChunkStatus>,
    /// Whether the bus lock is held right now.
    pub lock: LockState,
    /// How consumers and lossless producers on this machine wake up for
    /// this bus (with file monitoring on, the default).
    pub wake_up: WakeUp,
}

/// The current chunk of a bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkStatus {
    /// `raw` or `tar`.
    pub format: &'static str,
    /// Its size in bytes.
    pub size: u64,
    /// How long ago it was published (from its stamp, else its mtime).
    pub age: Option<Duration>,
    /// Its sequence number, if stamped.
    pub sequence: Option<u64>,
}

/// The state of `F.lock`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockState {
    /// No lock file yet: nobody has produced or taken losslessly.
    Missing,
    /// Nobody holds it.
    Free,
    /// A producer or lossless consumer holds it right now.
    Held,
}

/// Looks at the bus at `path` without changing it.
pub fn status(path: &Path) -> Result<BusStatus> {
    let bus = Bus::open(path)?;
    let chunk = match bus.open_current()? {
        Current::Absent => None,
        Current::Unusable(kind) => {
            return Err(Error::BadBusPath {
                path: path.to_owned(),
                problem: format!("is {kind}, not a chunk"),
            });
        }
        Current::Chunk(chunk) => {
            let stamp = stamp::read(&chunk.file);
            let published_ns = match stamp {
                Some(stamp) => stamp.published_ns,
                None => {
                    let stat = rustix::fs::fstat(&chunk.file)
                        .map_err(|errno| Error::file("cannot inspect", path, errno))?;
                    (stat.st_mtime as u64)
                        .saturating_mul(1_000_000_000)
                        .saturating_add(stat.st_mtime_nsec as u64)
                }
            };
            let now = stamp::now_ns();
            Some(ChunkStatus {
                format: if looks_like_tar(&chunk.file) {
                    "tar"
                } else {
                    "raw"
                },
                size: chunk.len,
                age: now.checked_sub(published_ns).map(Duration::from_nanos),
                sequence: stamp.map(|stamp| stamp.sequence),
            })
        }
    };
    Ok(BusStatus {
        chunk,
        lock: lock_state(&bus)?,
        wake_up: watch::wake_up(&bus, true),
    })
}

/// Whether the chunk starts with a POSIX tar header (the `ustar` magic).
fn looks_like_tar(file: &std::fs::File) -> bool {
    let mut magic = [0u8; 5];
    rustix::io::pread(file, &mut magic, 257).is_ok_and(|count| count == 5 && &magic == b"ustar")
}

/// Tries a shared lock without waiting: it fails only while someone holds
/// the exclusive lock. Released at once.
fn lock_state(bus: &Bus) -> Result<LockState> {
    let name = bus.lock_name();
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let lock = match rustix::fs::openat(bus.dir(), name, flags, Mode::empty()) {
        Ok(lock) => lock,
        Err(Errno::NOENT) => return Ok(LockState::Missing),
        Err(errno) => {
            return Err(Error::file(
                "cannot open lock file",
                &bus.dir_path().join(name),
                errno,
            ));
        }
    };
    match rustix::fs::flock(&lock, FlockOperation::NonBlockingLockShared) {
        Ok(()) => Ok(LockState::Free),
        Err(Errno::WOULDBLOCK) => Ok(LockState::Held),
        Err(errno) => Err(Error::file(
            "cannot test lock",
            &bus.dir_path().join(name),
            errno,
        )),
    }
}

impl BusStatus {
    /// The status for people, a line per fact.
    pub fn to_text(&self, path: &Path) -> String {
        let mut text = format!("bus:      {}\n", path.display());
        match &self.chunk {
            None => text.push_str(
                "chunk:    none (nothing published yet, or a lossless chunk was taken)\n",
            ),
            Some(chunk) => {
                let _ = writeln!(
                    text,
                    "chunk:    present (in lossless mode: waiting to be taken)"
                );
                let _ = writeln!(text, "format:   {}", chunk.format);
                let _ = writeln!(text, "size:     {} bytes", chunk.size);
                match chunk.age {
                    Some(age) => {
                        let _ = writeln!(text, "age:      {:.3} s", age.as_secs_f64());
                    }
                    None => text.push_str("age:      unknown\n"),
                }
                match chunk.sequence {
                    Some(sequence) => {
                        let _ = writeln!(text, "sequence: {sequence}");
                    }
                    None => text.push_str("sequence: none (unstamped chunk)\n"),
                }
            }
        }
        let lock = match self.lock {
            LockState::Missing => "no lock file",
            LockState::Free => "free",
            LockState::Held => "held",
        };
        let _ = writeln!(text, "lock:     {lock}");
        match self.wake_up {
            WakeUp::Polling {
                remote_filesystem: Some(kind),
            } => {
                let _ = writeln!(
                    text,
                    "wake-up:  polling every --sleep-interval, consumers and lossless \
                     producers alike (the bus is on {kind}: inotify misses changes made \
                     by other machines)"
                );
            }
            WakeUp::Polling {
                remote_filesystem: None,
            }
            | WakeUp::Events => text.push_str(
                "wake-up:  inotify events, consumers and lossless producers alike \
                 (a local filesystem; --no-file-monitoring polls instead)\n",
            ),
        }
        text
    }

    /// The status as one JSON object.
    pub fn to_json(&self, path: &Path) -> String {
        let lock = match self.lock {
            LockState::Missing => "missing",
            LockState::Free => "free",
            LockState::Held => "held",
        };
        to_json(&serde_json::json!({
            "bus": path.to_string_lossy(),
            "chunk": self.chunk.as_ref().map(|chunk| serde_json::json!({
                "format": chunk.format,
                "size": chunk.size,
                "age_seconds": chunk.age.map(|age| age.as_secs_f64()),
                "sequence": chunk.sequence,
            })),
            "lock": lock,
            "wake_up": match self.wake_up {
                WakeUp::Events => "events",
                WakeUp::Polling { .. } => "polling",
            },
            "remote_filesystem": match self.wake_up {
                WakeUp::Polling { remote_filesystem } => remote_filesystem,
                WakeUp::Events => None,
            },
        }))
    }
}

/// Prints a line per second with the bus's publish rate, `count` lines or
/// until interrupted. Chunks are counted from the sequence stamps where the
/// chunks carry them (exact), else from the directory's events.
pub fn watch(path: &Path, json: bool, count: Option<u64>) -> Result<()> {
    let bus = Bus::open(path)?;
    // Events, whatever the filesystem: chunks are counted from them only
    // where the chunks carry no sequence stamps.
    let mut watcher = Watcher::new(&bus, true, Duration::from_millis(100))?;
    let mut last_sequence = current_sequence(&bus);
    let started = Instant::now();
    for line in 1.. {
        let arrivals = watcher.count_arrivals_until(started + Duration::from_secs(line))?;
        let sequence = current_sequence(&bus);
        let chunks_per_second = match (last_sequence, sequence) {
            (Some(before), Some(now)) if now >= before => now - before,
            _ => arrivals,
        };
        last_sequence = sequence.or(last_sequence);
        let rate = Rate {
            second: line,
            chunks_per_second,
            bytes_per_second: chunks_per_second.saturating_mul(chunk_size(&bus)),
        };
        if json {
            println!("{}", to_json(&rate));
        } else {
            println!(
                "{:>6} s  {:>9} chunks/s  {:>13} bytes/s",
                rate.second, rate.chunks_per_second, rate.bytes_per_second
            );
        }
        if count.is_some_and(|count| line >= count) {
            break;
        }
    }
    Ok(())
}

/// One second of `stat --watch`.
#[derive(Debug, Serialize)]
struct Rate {
    second: u64,
    chunks_per_second: u64,
    /// Estimated from the current chunk's size.
    bytes_per_second: u64,
}

/// `value` as one line of JSON.
fn to_json(value: &impl Serialize) -> String {
    // Plain structs of numbers and strings always serialize.
    serde_json::to_string(value).unwrap_or_else(|error| format!("{{\"error\":\"{error}\"}}"))
}

fn current_sequence(bus: &Bus) -> Option<u64> {
    match bus.open_current() {
        Ok(Current::Chunk(chunk)) => stamp::read(&chunk.file).map(|stamp| stamp.sequence),
        _ => None,
    }
}

fn chunk_size(bus: &Bus) -> u64 {
    rustix::fs::statat(bus.dir().as_fd(), bus.name(), AtFlags::SYMLINK_NOFOLLOW)
        .map_or(0, |stat| stat.st_size as u64)
}

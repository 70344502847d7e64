//! `filebus stat`: a bus at a glance, and (with `--watch`) a rate meter.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, FlockOperation, Mode, OFlags};
use rustix::io::Errno;
use serde::Serialize;

use crate::bus::stamp;
use crate::bus::{Bus, Current};
use crate::cursor::{self, NamedConsumer};
use crate::error::{Error, Report, Result};
use crate::history::{HistoryDir, Holdings};
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
    /// The bus's history, if it keeps one.
    pub history: Option<HistoryStatus>,
    /// Its named consumers, sorted by name.
    pub consumers: Vec<ConsumerStatus>,
    /// Other programs' files arriving in the bus directory, per second
    /// (measured over [`BUSY_WINDOW`]); `None` where waiters poll.
    pub foreign_arrivals: Option<u64>,
}

/// How long `stat` watches the bus directory for other programs' files.
pub const BUSY_WINDOW: Duration = Duration::from_millis(100);

/// From how many files of other programs arriving per second `stat` calls
/// the bus directory busy. A consumer waiting for a missing bus file wakes
/// for each, at 2 to 2.7 µs of CPU an arrival on the 2-CPU development
/// machine (`results/2026-12-03-idle-consumer/`): 1,000 a second cost each
/// such waiter 0.2 to 0.3% of a CPU there, where it starts to show.
pub const BUSY_ARRIVALS_PER_SECOND: u64 = 1000;

/// The history of a bus (`F.history`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryStatus {
    /// The depth recorded, if readable.
    pub depth: Option<u64>,
    /// What it holds.
    pub holdings: Holdings,
}

/// A named consumer and how far behind it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerStatus {
    /// Its name, liveness and cursor.
    pub consumer: NamedConsumer,
    /// Chunks published after its cursor, if both are known.
    pub lag: Option<u64>,
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
#[non_exhaustive]
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
    let history = history_status(&bus);
    let newest = newest_sequence(
        chunk.as_ref().and_then(|chunk| chunk.sequence),
        history.as_ref(),
    );
    Ok(BusStatus {
        chunk,
        lock: lock_state(&bus)?,
        wake_up: watch::wake_up(&bus, true),
        history,
        consumers: consumers(&bus, newest),
        foreign_arrivals: watch::foreign_arrivals_per_second(&bus, BUSY_WINDOW),
    })
}

/// The history's depth and holdings; a bad history directory is reported
/// as a warning and shown as none.
fn history_status(bus: &Bus) -> Option<HistoryStatus> {
    let holdings = HistoryDir::open(bus).and_then(|dir| match dir {
        Some(dir) => Ok(Some((dir.depth(), dir.holdings()?))),
        None => Ok(None),
    });
    match holdings {
        Ok(found) => found.map(|(depth, holdings)| HistoryStatus { depth, holdings }),
        Err(error) => {
            log::warn!("{}", Report(&error));
            None
        }
    }
}

/// The newest sequence number published, from `F` or the history.
fn newest_sequence(at_f: Option<u64>, history: Option<&HistoryStatus>) -> Option<u64> {
    let held = history.and_then(|history| history.holdings.newest);
    at_f.max(held)
}

/// The named consumers with their lag behind `newest`.
fn consumers(bus: &Bus, newest: Option<u64>) -> Vec<ConsumerStatus> {
    let surveyed = cursor::survey(bus).unwrap_or_else(|error| {
        log::warn!("{}", Report(&error));
        Vec::new()
    });
    surveyed
        .into_iter()
        .map(|consumer| ConsumerStatus {
            lag: newest
                .zip(consumer.cursor)
                .map(|(newest, cursor)| newest.saturating_sub(cursor)),
            consumer,
        })
        .collect()
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
        if let Some(history) = &self.history {
            let depth = history
                .depth
                .map_or("unknown depth".to_owned(), |depth| format!("depth {depth}"));
            let held = &history.holdings;
            let range = match (held.oldest, held.newest) {
                (Some(oldest), Some(newest)) => format!(" ({oldest} to {newest})"),
                _ => String::new(),
            };
            let _ = writeln!(
                text,
                "history:  {depth}, {} chunks held{range}, {} bytes",
                held.chunks, held.bytes
            );
        }
        for status in &self.consumers {
            let consumer = &status.consumer;
            let _ = writeln!(
                text,
                "consumer: {} {}, cursor {}, lag {}",
                consumer.name,
                if consumer.alive { "alive" } else { "dead" },
                consumer
                    .cursor
                    .map_or("none".to_owned(), |cursor| cursor.to_string()),
                status
                    .lag
                    .map_or("unknown".to_owned(), |lag| format!("{lag} chunks")),
            );
        }
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
        match (self.foreign_arrivals, self.directory_busy()) {
            (Some(arrivals), Some(true)) => {
                let _ = writeln!(
                    text,
                    "directory: busy: {arrivals} files of other programs arrive a second; \
                     a consumer waiting for a chunk that is not there (lossless, or before \
                     the first) wakes up for each: give the bus a directory of its own"
                );
            }
            (Some(arrivals), _) => {
                let _ = writeln!(
                    text,
                    "directory: quiet ({arrivals} files of other programs arrive a second)"
                );
            }
            (None, _) => {}
        }
        text
    }

    /// Whether other programs' files arrive in the bus directory at
    /// [`BUSY_ARRIVALS_PER_SECOND`] or more; `None` where waiters poll.
    pub fn directory_busy(&self) -> Option<bool> {
        self.foreign_arrivals
            .map(|arrivals| arrivals >= BUSY_ARRIVALS_PER_SECOND)
    }

    /// The status as one JSON object.
    pub fn to_json(&self, path: &Path) -> String {
        let lock = match self.lock {
            LockState::Missing => "missing",
            LockState::Free => "free",
            LockState::Held => "held",
        };
        let status = StatusJson {
            bus: path.to_string_lossy(),
            chunk: self.chunk.as_ref().map(|chunk| ChunkJson {
                format: chunk.format,
                size: chunk.size,
                age_seconds: chunk.age.map(|age| age.as_secs_f64()),
                sequence: chunk.sequence,
            }),
            lock,
            history: self.history.as_ref().map(|history| HistoryJson {
                depth: history.depth,
                chunks: history.holdings.chunks,
                oldest: history.holdings.oldest,
                newest: history.holdings.newest,
                bytes: history.holdings.bytes,
            }),
            consumers: self.consumers.iter().map(ConsumerJson::of).collect(),
            wake_up: match self.wake_up {
                WakeUp::Events => "events",
                WakeUp::Polling { .. } => "polling",
            },
            remote_filesystem: match self.wake_up {
                WakeUp::Polling { remote_filesystem } => remote_filesystem,
                WakeUp::Events => None,
            },
            foreign_arrivals_per_second: self.foreign_arrivals,
            directory_busy: self.directory_busy(),
        };
        to_json(&status)
    }
}

/// A rate meter on a bus (`filebus stat --watch`): the publish rate, second
/// by second. Chunks are counted from the sequence stamps where the chunks
/// carry them (exact), else from the directory's events.
#[derive(Debug)]
pub struct RateMeter {
    bus: Bus,
    watcher: Watcher,
    last_sequence: Option<u64>,
    started: Instant,
    seconds: u64,
}

impl RateMeter {
    /// Starts measuring the bus at `path`.
    pub fn new(path: &Path) -> Result<RateMeter> {
        let bus = Bus::open(path)?;
        // Events, whatever the filesystem: chunks are counted from them only
        // where the chunks carry no sequence stamps.
        let watcher = Watcher::counting_arrivals(&bus)?;
        let last_sequence = current_sequence(&bus);
        Ok(RateMeter {
            bus,
            watcher,
            last_sequence,
            started: Instant::now(),
            seconds: 0,
        })
    }

    /// Waits for the end of the next second since the start, and says what
    /// was published during it.
    pub fn next_second(&mut self) -> Result<Rate> {
        self.seconds += 1;
        let arrivals = self
            .watcher
            .count_arrivals_until(self.started + Duration::from_secs(self.seconds))?;
        let bus = &self.bus;
        let sequence = current_sequence(bus);
        let chunks_per_second = match (self.last_sequence, sequence) {
            (Some(before), Some(now)) if now >= before => now - before,
            _ => arrivals,
        };
        self.last_sequence = sequence.or(self.last_sequence);
        // The lag of each named consumer, to watch it move.
        let newest = newest_sequence(sequence, history_status(bus).as_ref());
        Ok(Rate {
            second: self.seconds,
            chunks_per_second,
            bytes_per_second: chunks_per_second.saturating_mul(chunk_size(bus)),
            lag: consumers(bus, newest)
                .into_iter()
                .map(|status| (status.consumer.name, status.lag))
                .collect(),
        })
    }
}

/// One second of a bus's life, as [`RateMeter`] measured it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Rate {
    /// Which second since the meter started (from 1).
    pub second: u64,
    /// Chunks published during it.
    pub chunks_per_second: u64,
    /// Bytes published during it, estimated from the current chunk's size.
    pub bytes_per_second: u64,
    /// The lag of each named consumer, by name (`None`: unknown).
    pub lag: BTreeMap<String, Option<u64>>,
}

impl Rate {
    /// The rate for people, on one line.
    pub fn to_text(&self) -> String {
        let lags: String = self
            .lag
            .iter()
            .map(|(name, lag)| {
                format!(
                    "  {name}: lag {}",
                    lag.map_or("?".to_owned(), |lag| lag.to_string())
                )
            })
            .collect();
        format!(
            "{:>6} s  {:>9} chunks/s  {:>13} bytes/s{lags}",
            self.second, self.chunks_per_second, self.bytes_per_second
        )
    }

    /// The rate as one JSON object.
    pub fn to_json(&self) -> String {
        to_json(self)
    }
}

/// `filebus stat --json`, its fields in the order people read them.
#[derive(Debug, Serialize)]
struct StatusJson<'a> {
    bus: std::borrow::Cow<'a, str>,
    chunk: Option<ChunkJson>,
    lock: &'static str,
    history: Option<HistoryJson>,
    consumers: Vec<ConsumerJson<'a>>,
    wake_up: &'static str,
    remote_filesystem: Option<&'static str>,
    foreign_arrivals_per_second: Option<u64>,
    directory_busy: Option<bool>,
}

#[derive(Debug, Serialize)]
struct ChunkJson {
    format: &'static str,
    size: u64,
    age_seconds: Option<f64>,
    sequence: Option<u64>,
}

#[derive(Debug, Serialize)]
struct HistoryJson {
    depth: Option<u64>,
    chunks: u64,
    oldest: Option<u64>,
    newest: Option<u64>,
    bytes: u64,
}

#[derive(Debug, Serialize)]
struct ConsumerJson<'a> {
    name: &'a str,
    alive: bool,
    cursor: Option<u64>,
    lag: Option<u64>,
}

impl<'a> ConsumerJson<'a> {
    fn of(status: &'a ConsumerStatus) -> Self {
        ConsumerJson {
            name: &status.consumer.name,
            alive: status.consumer.alive,
            cursor: status.consumer.cursor,
            lag: status.lag,
        }
    }
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

//! `filebus stat`: a bus at a glance, and (with `--watch`) a rate meter.

use std::fmt::Write as _;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use inotify::{EventMask, Inotify, WatchMask};
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::{AtFlags, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use crate::bus::{Bus, Current, LOCK_SUFFIX};
use crate::cursor::{self, NamedConsumer};
use crate::error::{Error, Result};
use crate::history::{HistoryDir, Holdings};
use crate::json::json_string;
use crate::stamp;

/// What `filebus stat` reports about a bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusStatus {
    /// The current chunk, if there is one.
    pub chunk: Option<ChunkStatus>,
    /// Whether the bus lock is held right now.
    pub lock: LockState,
    /// The bus's history, if it keeps one.
    pub history: Option<HistoryStatus>,
    /// Its named consumers, sorted by name.
    pub consumers: Vec<ConsumerStatus>,
}

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
        history,
        consumers: consumers(&bus, newest),
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
            log::warn!("{error}");
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
        log::warn!("{error}");
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

fn json_number(number: Option<u64>) -> String {
    number.map_or("null".to_owned(), |number| number.to_string())
}

/// Whether the chunk starts with a POSIX tar header (the `ustar` magic).
fn looks_like_tar(file: &std::fs::File) -> bool {
    let mut magic = [0u8; 5];
    rustix::io::pread(file, &mut magic, 257).is_ok_and(|count| count == 5 && &magic == b"ustar")
}

/// Tries a shared lock without waiting: it fails only while someone holds
/// the exclusive lock. Released at once.
fn lock_state(bus: &Bus) -> Result<LockState> {
    let mut name = bus.name().to_owned();
    name.push(LOCK_SUFFIX);
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let lock = match rustix::fs::openat(bus.dir(), name.as_os_str(), flags, Mode::empty()) {
        Ok(lock) => lock,
        Err(Errno::NOENT) => return Ok(LockState::Missing),
        Err(errno) => {
            return Err(Error::file(
                "cannot open lock file",
                &bus.dir_path().join(&name),
                errno,
            ));
        }
    };
    match rustix::fs::flock(&lock, FlockOperation::NonBlockingLockShared) {
        Ok(()) => Ok(LockState::Free),
        Err(Errno::WOULDBLOCK) => Ok(LockState::Held),
        Err(errno) => Err(Error::file(
            "cannot test lock",
            &bus.dir_path().join(&name),
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
        text
    }

    /// The status as one JSON object.
    pub fn to_json(&self, path: &Path) -> String {
        let lock = match self.lock {
            LockState::Missing => "missing",
            LockState::Free => "free",
            LockState::Held => "held",
        };
        let chunk = match &self.chunk {
            None => "null".to_owned(),
            Some(chunk) => format!(
                "{{\"format\":\"{}\",\"size\":{},\"age_seconds\":{},\"sequence\":{}}}",
                chunk.format,
                chunk.size,
                chunk
                    .age
                    .map_or("null".to_owned(), |age| format!("{:.6}", age.as_secs_f64())),
                chunk
                    .sequence
                    .map_or("null".to_owned(), |sequence| sequence.to_string()),
            ),
        };
        let history = match &self.history {
            None => "null".to_owned(),
            Some(history) => format!(
                "{{\"depth\":{},\"chunks\":{},\"oldest\":{},\"newest\":{},\"bytes\":{}}}",
                json_number(history.depth),
                history.holdings.chunks,
                json_number(history.holdings.oldest),
                json_number(history.holdings.newest),
                history.holdings.bytes
            ),
        };
        let consumers: Vec<String> = self
            .consumers
            .iter()
            .map(|status| {
                format!(
                    "{{\"name\":{},\"alive\":{},\"cursor\":{},\"lag\":{}}}",
                    json_string(&status.consumer.name),
                    status.consumer.alive,
                    json_number(status.consumer.cursor),
                    json_number(status.lag)
                )
            })
            .collect();
        format!(
            "{{\"bus\":{},\"chunk\":{chunk},\"lock\":\"{lock}\",\"history\":{history},\"consumers\":[{}]}}",
            json_string(&path.to_string_lossy()),
            consumers.join(",")
        )
    }
}

/// Prints a line per second with the bus's publish rate, `count` lines or
/// until interrupted. Chunks are counted from the sequence stamps where the
/// chunks carry them (exact), else from the directory's events.
pub fn watch(path: &Path, json: bool, count: Option<u64>) -> Result<()> {
    let bus = Bus::open(path)?;
    let inotify = Inotify::init()
        .map_err(|error| Error::stream("cannot create an inotify instance", error))?;
    inotify
        .watches()
        .add(bus.dir_path(), WatchMask::CREATE | WatchMask::MOVED_TO)
        .map_err(|error| Error::file("cannot watch", bus.dir_path(), error))?;
    let mut inotify = inotify;
    let mut buffer = vec![0u8; 64 * 1024];
    let mut last_sequence = current_sequence(&bus);
    let started = Instant::now();
    for line in 1.. {
        let until = started + Duration::from_secs(line);
        let (mut events, mut bytes) = (0u64, 0u64);
        while let Some(left) = until
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
        {
            let timeout = Timespec {
                tv_sec: left.as_secs() as _,
                tv_nsec: left.subsec_nanos() as _,
            };
            let mut fds = [PollFd::new(&inotify, PollFlags::IN)];
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Ok(0) | Err(Errno::INTR) => continue,
                Ok(_) => {}
                Err(errno) => return Err(Error::stream("cannot wait for inotify events", errno)),
            }
            let read = match inotify.read_events(&mut buffer) {
                Ok(read) => read,
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(error) => return Err(Error::stream("cannot read inotify events", error)),
            };
            for event in read {
                if event
                    .mask
                    .intersects(EventMask::CREATE | EventMask::MOVED_TO)
                    && event.name == Some(bus.name())
                {
                    events += 1;
                    bytes += chunk_size(&bus);
                }
            }
        }
        let sequence = current_sequence(&bus);
        let chunks = match (last_sequence, sequence) {
            (Some(before), Some(now)) if now >= before => now - before,
            _ => events,
        };
        last_sequence = sequence.or(last_sequence);
        // The lag of each named consumer, to watch it move.
        let newest = newest_sequence(sequence, history_status(&bus).as_ref());
        let lags = consumers(&bus, newest);
        if json {
            let lags: Vec<String> = lags
                .iter()
                .map(|status| {
                    format!(
                        "{}:{}",
                        json_string(&status.consumer.name),
                        json_number(status.lag)
                    )
                })
                .collect();
            println!(
                "{{\"second\":{line},\"chunks_per_second\":{chunks},\"bytes_per_second\":{bytes},\"lag\":{{{}}}}}",
                lags.join(",")
            );
        } else {
            let lags: String = lags
                .iter()
                .map(|status| {
                    format!(
                        "  {}: lag {}",
                        status.consumer.name,
                        status.lag.map_or("?".to_owned(), |lag| lag.to_string())
                    )
                })
                .collect();
            println!("{line:>6} s  {chunks:>9} chunks/s  {bytes:>13} bytes/s{lags}");
        }
        if count.is_some_and(|count| line >= count) {
            break;
        }
    }
    Ok(())
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

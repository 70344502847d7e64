//! The protocol floor: a minimal filebus of the benchmark's own, measured in
//! the same sweeps as the programs it compares, so that every figure can be
//! read as a fraction of what the protocol itself costs on this machine and
//! filesystem ("ours reaches 75% of the floor with 4 KiB chunks").
//!
//! It speaks the on-disk protocol (`docs/PROTOCOL.md`) and makes only the
//! system calls the protocol needs for each chunk, like `fbfloor.c`, the C
//! floor it follows:
//!
//! - producer ([`producer`]): one `read` of standard input is one chunk
//!   with `--sleep-interval 0` (what the benchmark gives every program where
//!   latency matters), else input that keeps coming is gathered into chunks
//!   as ours does, so that both publish as many chunks (the fan-out and
//!   throughput sections leave every program its default interval); an
//!   `O_TMPFILE` in the bus's directory, one `write`, the two
//!   stamp attributes, `flock` on `F.lock` and the counter on it, then
//!   `linkat` as `F` (lossless, or lossy onto an absent `F`) or `linkat` as
//!   `F.__new__`, `RENAME_EXCHANGE` and `unlink` of the chunk it replaced
//!   (lossy); with `--history N` also a link into `F.history/` and the unlink
//!   of the entry N back; with named consumers of that bus, the probe of
//!   their cursors before an entry leaves the window ([`cursors`]);
//! - consumer ([`consumer`]): inotify wake-ups on the directory, `open`,
//!   `fstat`, `sendfile` to standard output; lossless also `flock` and
//!   `unlink` (an empty chunk ends the stream); on a bus with history the
//!   stamp, and the entries it missed, replayed from `F.history/`; named
//!   (`--name`), its cursor set after each chunk.
//!
//! It grows its pipes to the chunk size as ours does (once, not per chunk).
//! It has no checks against hostile files, no recovery, no support for
//! filesystems without extended attributes or inotify, no heartbeat of named
//! consumers (their lock is seen on one machine), and its counter is read
//! once when a producer starts rather than at each publish (one producer per
//! bus, as in every run of the benchmark). So it is what a chunk costs when
//! nothing else is done: the floor the others are measured against, not a
//! program to use.
//!
//! The benchmark runs it as a process like any other implementation: the
//! `filebus` binary's hidden subcommand `bench-floor` parses the usual bus
//! options and calls [`run`].

mod consumer;
mod cursors;
mod producer;

use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::inotify::{self, WatchFlags};
use rustix::fs::{AtFlags, CWD, FlockOperation, Mode, OFlags, XattrFlags};
use rustix::io::Errno;

use super::BenchError;

/// The hidden subcommand of the `filebus` binary that runs the floor.
pub const SUBCOMMAND: &str = "bench-floor";

/// What the floor was asked to do: the bus options the benchmark gives
/// every implementation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloorOptions {
    /// The bus file, `F`.
    pub bus: PathBuf,
    /// `--back-pressure`: lossless unicast.
    pub lossless: bool,
    /// `--block-size`: the most bytes read from standard input per chunk.
    pub block_size: usize,
    /// `--sleep-interval`: 0 makes each `read` of standard input one chunk;
    /// otherwise input that keeps coming is gathered into chunks for up to
    /// this long, as ours does.
    pub sleep_interval: std::time::Duration,
    /// Which side of the bus to run.
    pub side: FloorSide,
}

/// The side of the bus the floor runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FloorSide {
    /// Publish standard input, with `--history N` if given (lossy only).
    Producer {
        /// `--history N`: keep the last N chunks in `F.history/`.
        history: Option<u64>,
    },
    /// Write the chunks to standard output, with `--name NAME` if given
    /// (a named consumer of a bus with history).
    Consumer {
        /// `--name NAME`: the cursor `F.consumers/NAME`.
        name: Option<String>,
    },
}

/// Runs the floor's producer or consumer until its input ends (producer),
/// its end-of-stream chunk is taken (lossless or history consumer), or it
/// is killed (plain lossy consumer).
pub fn run(options: &FloorOptions) -> Result<(), BenchError> {
    if options.block_size == 0 {
        return Err(BenchError::Usage(
            "the block size must be at least 1".into(),
        ));
    }
    match &options.side {
        FloorSide::Producer { history } => {
            if options.lossless && history.is_some() {
                return Err(BenchError::Usage(
                    "--history is for lossy producers only".into(),
                ));
            }
            producer::run(options, *history)
        }
        FloorSide::Consumer { name } => consumer::run(options, name.as_deref()),
    }
}

/// The stamp attribute with the chunk's sequence number, also the bus's
/// counter on `F.lock`.
const SEQUENCE: &CStr = c"user.filebus.seq";
/// The stamp attribute with the publish time, ns since the epoch.
const TIME: &CStr = c"user.filebus.time";
/// A named consumer's cursor, on its file in `F.consumers/`.
const CURSOR: &CStr = c"user.filebus.cursor";
/// The largest pipe asked for, the default of `/proc/sys/fs/pipe-max-size`.
const LARGEST_PIPE: usize = 1 << 20;

/// A bus as the floor sees it: its directory, its names in it, the lock
/// file, and an inotify descriptor watching the directory.
struct Bus {
    /// `F`, for messages.
    path: PathBuf,
    /// The directory of `F`, where chunks are created and linked.
    dir: OwnedFd,
    /// `F`'s name in `dir`.
    name: CString,
    /// `F.lock`, open for reading and writing (for `flock` and the counter).
    lock: OwnedFd,
    /// Wake-ups: the directory's events, and those of `F.consumers` once
    /// watched.
    events: OwnedFd,
}

impl Bus {
    /// Opens the bus's directory and lock file (created when missing) and
    /// watches the directory for `watch` events, if any (a lossy producer
    /// waits for no change of the directory).
    fn open(path: &Path, watch: Option<WatchFlags>) -> Result<Bus, BenchError> {
        let parent = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let Some(file_name) = path.file_name() else {
            return Err(BenchError::Usage(format!(
                "{}: the bus must be a file name",
                path.display()
            )));
        };
        let dir = rustix::fs::open(
            parent,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| {
            BenchError::io(format!("cannot open directory {}", parent.display()), errno)
        })?;
        let name = c_name(file_name)?;
        let lock = rustix::fs::openat(
            &dir,
            c_name(&suffixed(file_name, ".lock"))?.as_c_str(),
            OFlags::CREATE | OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(|errno| {
            BenchError::io(
                format!("cannot open lock file {}.lock", path.display()),
                errno,
            )
        })?;
        let events = inotify::init(inotify::CreateFlags::CLOEXEC)
            .map_err(|errno| BenchError::io("cannot create an inotify descriptor", errno))?;
        if let Some(watch) = watch {
            inotify::add_watch(&events, parent, watch).map_err(|errno| {
                BenchError::io(
                    format!("cannot watch directory {}", parent.display()),
                    errno,
                )
            })?;
        }
        Ok(Bus {
            path: path.to_owned(),
            dir,
            name,
            lock,
            events,
        })
    }

    /// The name in the bus's directory of `F` followed by `suffix`
    /// (`.history`, `.consumers`, `.__new__`).
    fn sibling(&self, suffix: &str) -> CString {
        let mut bytes = self.name.as_bytes().to_vec();
        bytes.extend_from_slice(suffix.as_bytes());
        // `name` has no NUL, and neither has any suffix given here.
        CString::new(bytes).unwrap_or_default()
    }

    /// `F` followed by `suffix`, for messages.
    fn display(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.path.display())
    }

    /// Takes (`true`) or releases the bus lock.
    fn lock(&self, exclusive: bool) -> Result<(), BenchError> {
        let operation = if exclusive {
            FlockOperation::LockExclusive
        } else {
            FlockOperation::Unlock
        };
        rustix::fs::flock(&self.lock, operation).map_err(|errno| {
            BenchError::io(format!("cannot lock {}", self.display(".lock")), errno)
        })
    }

    /// The last sequence number given on this bus, from `F.lock` (0 if none).
    fn counter(&self) -> Result<u64, BenchError> {
        read_number(self.lock.as_fd(), SEQUENCE)
            .map(Option::unwrap_or_default)
            .map_err(|errno| {
                BenchError::io(
                    format!("cannot read the counter of {}", self.display(".lock")),
                    errno,
                )
            })
    }

    /// Blocks until an event arrives and hands every event of the batch
    /// read to `seen`, with its file name.
    fn wait(&self, mut seen: impl FnMut(Option<&CStr>)) -> Result<(), BenchError> {
        let mut buffer = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = inotify::Reader::new(&self.events, &mut buffer);
        loop {
            match reader.next() {
                Ok(event) => seen(event.file_name()),
                Err(Errno::INTR) => continue,
                Err(errno) => return Err(BenchError::io("cannot read inotify events", errno)),
            }
            if reader.is_buffer_empty() {
                return Ok(());
            }
        }
    }
}

/// `name` as a C string (a file name has no NUL byte).
fn c_name(name: &OsStr) -> Result<CString, BenchError> {
    CString::new(name.as_bytes())
        .map_err(|_| BenchError::Usage(format!("{}: a file name with a NUL byte", name.display())))
}

/// `name` followed by `suffix`.
fn suffixed(name: &OsStr, suffix: &str) -> std::ffi::OsString {
    let mut joined = name.to_owned();
    joined.push(suffix);
    joined
}

/// The name of history entry `sequence`: 20 decimal digits.
fn entry_name(sequence: u64) -> CString {
    // Digits only: no NUL.
    CString::new(format!("{sequence:020}")).unwrap_or_default()
}

/// Sets the extended attribute `name` of `fd` to `value` in decimal.
fn write_number(fd: BorrowedFd<'_>, name: &CStr, value: u64) -> rustix::io::Result<()> {
    let mut digits = [0u8; 20];
    let text = decimal(value, &mut digits);
    rustix::fs::fsetxattr(fd, name, text, XattrFlags::empty())
}

/// `value` in decimal ASCII, written into `digits`, without allocating.
fn decimal(mut value: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return &digits[start..];
        }
    }
}

/// The decimal number in the extended attribute `name` of `fd`; `None`
/// when it is missing or not a number.
fn read_number(fd: BorrowedFd<'_>, name: &CStr) -> rustix::io::Result<Option<u64>> {
    let mut buffer = [0u8; 24];
    match rustix::fs::fgetxattr(fd, name, &mut buffer) {
        Ok(len) => Ok(std::str::from_utf8(&buffer[..len])
            .ok()
            .and_then(|text| text.trim().parse().ok())),
        Err(Errno::NODATA) => Ok(None),
        Err(errno) => Err(errno),
    }
}

/// Opens `name` in `dir` for reading; `None` if it is not there.
fn open_if_there(dir: BorrowedFd<'_>, name: &CStr) -> rustix::io::Result<Option<OwnedFd>> {
    open_existing(dir, name, OFlags::RDONLY)
}

/// Opens the directory `name` in `dir`; `None` if it is not there.
fn open_dir_if_there(dir: BorrowedFd<'_>, name: &CStr) -> rustix::io::Result<Option<OwnedFd>> {
    open_existing(dir, name, OFlags::DIRECTORY | OFlags::RDONLY)
}

/// Opens `name` in `dir` with `flags`, never following a symlink; `None`
/// if it is not there.
fn open_existing(
    dir: BorrowedFd<'_>,
    name: &CStr,
    flags: OFlags,
) -> rustix::io::Result<Option<OwnedFd>> {
    match rustix::fs::openat(
        dir,
        name,
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT) => Ok(None),
        Err(errno) => Err(errno),
    }
}

/// Creates the directory `name` in `dir` if it is not there, and opens it.
fn make_dir(dir: BorrowedFd<'_>, name: &CStr) -> rustix::io::Result<OwnedFd> {
    match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(errno) => return Err(errno),
    }
    open_dir_if_there(dir, name)?.ok_or(Errno::NOENT)
}

/// Links the open file `fd` (an `O_TMPFILE` too) as `name` in `dir`,
/// through `/proc/self/fd` (`AT_EMPTY_PATH` would need a capability).
fn link_as(fd: BorrowedFd<'_>, dir: BorrowedFd<'_>, name: &CStr) -> rustix::io::Result<()> {
    use std::os::fd::AsRawFd;
    let source = format!("/proc/self/fd/{}", fd.as_raw_fd());
    rustix::fs::linkat(CWD, source.as_str(), dir, name, AtFlags::SYMLINK_FOLLOW)
}

/// Grows the pipe `fd` to hold `wanted` bytes (at most 1 MiB), if it is a
/// pipe smaller than that; returns its size (`None`: not a pipe). A refusal
/// leaves it as it was: the size changes how often the two ends take turns,
/// never what goes through.
fn grow_pipe(fd: BorrowedFd<'_>, wanted: usize) -> Option<usize> {
    let size = rustix::pipe::fcntl_getpipe_size(fd).ok()?;
    let wanted = wanted.min(LARGEST_PIPE);
    if size >= wanted {
        return Some(size);
    }
    Some(rustix::pipe::fcntl_setpipe_size(fd, wanted).unwrap_or(size))
}

/// A failed system call on a path of the bus, as an error with context.
fn failed(what: &str, errno: Errno) -> BenchError {
    BenchError::io(what.to_owned(), std::io::Error::from(errno))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_in_decimal() {
        let mut digits = [0u8; 20];
        assert_eq!(decimal(0, &mut digits), b"0");
        assert_eq!(decimal(42, &mut digits), b"42");
        assert_eq!(decimal(u64::MAX, &mut digits), b"18446744073709551615");
    }

    #[test]
    fn entries_are_named_by_twenty_digits() {
        assert_eq!(entry_name(42).as_bytes(), b"00000000000000000042");
    }
}

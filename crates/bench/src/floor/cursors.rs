//! Named consumers' cursors in `F.consumers/`: a consumer claims its cursor
//! and sets it after each chunk; a producer keeping history, before an
//! entry leaves the window, waits until every live cursor is past it.

use std::os::fd::{AsFd, OwnedFd};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::inotify::{self, WatchFlags};
use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use super::{Bus, CURSOR, failed, make_dir, open_dir_if_there, read_number, write_number};
use crate::BenchError;

/// How long a producer waits for an event before it looks at the cursors
/// again: a consumer's exit closes its file (the event) just before its
/// lock is released, so the look after the event may still see it live.
const SAFETY_NET: Timespec = Timespec {
    tv_sec: 0,
    tv_nsec: 100_000_000,
};

/// The producer's view of the named consumers.
pub(super) struct Cursors {
    /// `F.consumers` in the bus's directory.
    name: std::ffi::CString,
    /// Whether `F.consumers` is watched (once it exists).
    watched: bool,
}

impl Cursors {
    pub(super) fn new(bus: &Bus) -> Cursors {
        Cursors {
            name: bus.sibling(".consumers"),
            watched: false,
        }
    }

    /// Waits until every live named consumer has written out chunk
    /// `sequence`: lists `F.consumers` and probes every cursor afresh at
    /// each look (a non-blocking shared lock that fails means live).
    pub(super) fn wait_until_written(
        &mut self,
        bus: &Bus,
        sequence: u64,
    ) -> Result<(), BenchError> {
        let what = || bus.display(".consumers");
        loop {
            let Some(dir) = open_dir_if_there(bus.dir.as_fd(), &self.name)
                .map_err(|errno| failed(&format!("cannot open {}", what()), errno))?
            else {
                return Ok(());
            };
            if !self.watched {
                inotify::add_watch(
                    &bus.events,
                    format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&dir)),
                    WatchFlags::ATTRIB | WatchFlags::CLOSE_WRITE,
                )
                .map_err(|errno| failed(&format!("cannot watch {}", what()), errno))?;
                self.watched = true;
                // Look after the watch is set, so no advance goes unseen.
                continue;
            }
            if !lagging(dir, sequence).map_err(|errno| {
                failed(&format!("cannot probe the cursors in {}", what()), errno)
            })? {
                return Ok(());
            }
            let mut fds = [PollFd::new(&bus.events, PollFlags::IN)];
            match rustix::event::poll(&mut fds, Some(&SAFETY_NET)) {
                Ok(0) | Err(Errno::INTR) => {}
                Ok(_) => bus.wait(|_| {})?,
                Err(errno) => return Err(failed("cannot wait for the cursors", errno)),
            }
        }
    }
}

/// Whether a live cursor in `dir` is before `sequence` (a live cursor with
/// no position yet holds every chunk).
fn lagging(dir: OwnedFd, sequence: u64) -> rustix::io::Result<bool> {
    let mut entries = rustix::fs::Dir::new(dir)?;
    loop {
        let Some(entry) = entries.next() else {
            return Ok(false);
        };
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let cursor = match rustix::fs::openat(
            entries.fd()?,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(cursor) => cursor,
            Err(Errno::NOENT) => continue,
            Err(errno) => return Err(errno),
        };
        match rustix::fs::flock(&cursor, FlockOperation::NonBlockingLockShared) {
            // Not locked: a consumer that has ended holds no one back.
            Ok(()) => continue,
            Err(Errno::WOULDBLOCK) => {}
            Err(errno) => return Err(errno),
        }
        if read_number(cursor.as_fd(), CURSOR)?.is_none_or(|written| written < sequence) {
            return Ok(true);
        }
    }
}

/// A named consumer's claimed cursor.
pub(super) struct Cursor {
    file: OwnedFd,
}

impl Cursor {
    /// Claims `F.consumers/NAME`: creates it if missing and locks it
    /// (waiting for a producer's probe to let go).
    pub(super) fn claim(bus: &Bus, name: &str) -> Result<Cursor, BenchError> {
        let path = || format!("{}/{name}", bus.display(".consumers"));
        let dir = make_dir(bus.dir.as_fd(), &bus.sibling(".consumers")).map_err(|errno| {
            failed(
                &format!("cannot create {}", bus.display(".consumers")),
                errno,
            )
        })?;
        let file = rustix::fs::openat(
            &dir,
            name,
            OFlags::CREATE | OFlags::RDWR | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(|errno| failed(&format!("cannot open cursor {}", path()), errno))?;
        rustix::fs::flock(&file, FlockOperation::LockExclusive)
            .map_err(|errno| failed(&format!("cannot lock cursor {}", path()), errno))?;
        Ok(Cursor { file })
    }

    /// Records that chunk `sequence` was written out.
    pub(super) fn record(&self, sequence: u64) -> Result<(), BenchError> {
        write_number(self.file.as_fd(), CURSOR, sequence)
            .map_err(|errno| failed("cannot set a cursor", errno))
    }
}

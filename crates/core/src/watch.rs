//! Waking up when the bus file changes.
//!
//! With file monitoring (the default) the waiter watches the bus's
//! *directory* with inotify and filters events by the bus's name: a watch on
//! `F` itself would follow the first chunk's inode and go stale at the first
//! rename. Between events it sleeps in `poll(2)` with no timeout, so an idle
//! consumer or a blocked lossless producer costs no CPU at all.
//!
//! A directory watch cannot be told which names matter: every file another
//! program creates, writes, renames or deletes in the directory wakes the
//! waiter, only to be filtered out (a churning neighbour cost an idle
//! consumer 20% of a CPU). So once a bus watcher has seen another program's
//! name change, it follows the file at `F` itself instead: a watch on that
//! file's inode reports its replacement (`IN_ATTRIB` for the link count a
//! rename over it or an unlink drops, `IN_MOVE_SELF` for an exchange or a
//! rename away), and the directory's watch is narrowed to its own removal,
//! or, while there is no file at `F`, to names arriving. A waiter for a
//! missing `F` (a consumer before the first chunk) still wakes for other
//! programs' new names, and so do lossless consumers and producers, which
//! watch only the one kind of change they wait for (arrivals, departures)
//! and do not follow: `filebus stat` says when a directory is that busy,
//! and the remedy is a directory of the bus's own.
//!
//! Inotify only reports changes made through this kernel, so on network and
//! FUSE filesystems (and with `--no-file-monitoring`, or when inotify cannot
//! be set up) the waiter polls every `--sleep-interval` instead.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;

use crate::bus::Bus;
use crate::bus::names;
use crate::error::{Error, Result};
use crate::stop::StopFlag;

/// The events on the bus directory a waiter for any change of the bus file
/// watches for, while the directory is quiet.
const ANY_CHANGE: WatchMask = WatchMask::CREATE
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::DELETE)
    .union(WatchMask::CLOSE_WRITE);

/// The shortest polling interval: a zero `--sleep-interval` would spin.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(1);

/// The events on the bus directory that put a file at a name: what a
/// lossless consumer waits for, and all a waiter that follows the file at
/// `F` needs of the directory while there is none (a file at `F` can only
/// appear so).
const ARRIVALS: WatchMask = WatchMask::CREATE.union(WatchMask::MOVED_TO);
/// What a watch on a directory always reports: its own removal, which turns
/// the waiter to polling.
const DIRECTORY_SELF_MASK: WatchMask = WatchMask::DELETE_SELF
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::ONLYDIR);
/// What a watch on the file at `F` reports: `ATTRIB` when a rename over it or
/// an unlink drops its link count (with or without other links, as in the
/// history), `MOVE_SELF` when it is exchanged or renamed away, `DELETE_SELF`,
/// and `CLOSE_WRITE` as the directory's watch would (a file written in place).
/// A symlink at `F` is watched itself, never its target.
///
/// `MASK_ADD`, although the mask never changes: the file's watch is added
/// again at every wake-up, and without it the kernel replaces the mask of an
/// existing watch by clearing it and then setting it (Linux 6.0 and later),
/// while events are matched against it without a lock; an event in between
/// is lost (4 in 100,000 changes while a thread re-added the watch in a
/// loop, on the development machine), and with it a replacement of `F`.
const FILE_MASK: WatchMask = WatchMask::ATTRIB
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::CLOSE_WRITE)
    .union(WatchMask::DONT_FOLLOW)
    .union(WatchMask::MASK_ADD);

/// Waits for changes to a bus file (or, for a producer waiting on named
/// consumers, to anything in a directory).
#[derive(Debug)]
pub struct Watcher {
    /// The name whose changes count (`None`: every name in the directory).
    name: Option<OsString>,
    /// The watched directory, and the bus file's path in it (for a watch on
    /// the file itself).
    dir_path: PathBuf,
    file_path: PathBuf,
    mode: Mode,
    /// The interval if events become unavailable.
    poll_interval: Duration,
    /// Checked when a wait is interrupted.
    stop: StopFlag,
}

#[derive(Debug)]
enum Mode {
    Events {
        inotify: Inotify,
        buffer: Vec<u8>,
        watches: Watches,
    },
    Polling {
        interval: Duration,
    },
}

/// The watches of one inotify instance: the directory's, and, while
/// following the file at `F`, that file's.
#[derive(Debug)]
struct Watches {
    directory: WatchDescriptor,
    /// What the directory's watch reports now, besides its own removal.
    directory_mask: WatchMask,
    follow: Follow,
    /// The watch on the file found at `F` when last armed (see
    /// [`Watcher::arm`]); `None` where there was none or it cannot be watched.
    file: Option<WatchDescriptor>,
}

/// Whether a bus watcher follows the file at `F` rather than every change
/// in its directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Follow {
    /// Never: a directory watcher, or one counting arrivals at `F` (which
    /// needs every rename onto it, not one wake-up per look).
    Never,
    /// Once another program's name changes in the directory (until then the
    /// directory's events cost nothing more, and need no calls to re-arm).
    WhenBusy,
    /// From now on.
    Now,
}

impl Watcher {
    /// Prepares to wait for changes of `bus`. Must be created before the
    /// caller first looks at the bus, so that no change can slip in between.
    pub fn new(bus: &Bus, file_monitoring: bool, sleep_interval: Duration) -> Result<Self> {
        Self::watching(
            bus,
            file_monitoring,
            sleep_interval,
            ANY_CHANGE,
            Follow::WhenBusy,
        )
    }

    /// Prepares to count the chunks that arrive at the bus file (see
    /// [`Watcher::count_arrivals_until`]), by events whatever the filesystem.
    pub fn counting_arrivals(bus: &Bus) -> Result<Self> {
        Self::watching(
            bus,
            true,
            Duration::from_millis(100),
            ANY_CHANGE,
            Follow::Never,
        )
    }

    /// Prepares to wait for `change` of `bus` only ([`Watcher::wait_for`]),
    /// as a lossless consumer (arrivals) or producer (departures) does: the
    /// other changes, its own among them, do not wake it. (Nor does it follow
    /// the file at `F` in a busy directory: a lossless consumer waits while
    /// there is none, when the directory's arrivals are all there is to
    /// watch.)
    pub(crate) fn new_for(
        bus: &Bus,
        change: Change,
        file_monitoring: bool,
        sleep_interval: Duration,
    ) -> Result<Self> {
        let mask = match change {
            Change::Arrival => ARRIVALS,
            Change::Departure => WatchMask::DELETE | WatchMask::MOVED_FROM,
        };
        Self::watching(bus, file_monitoring, sleep_interval, mask, Follow::Never)
    }

    fn watching(
        bus: &Bus,
        file_monitoring: bool,
        sleep_interval: Duration,
        mask: WatchMask,
        follow: Follow,
    ) -> Result<Self> {
        let poll_interval = sleep_interval.max(MIN_POLL_INTERVAL);
        let mode = match events_for(bus, file_monitoring, mask) {
            Some((inotify, directory)) => Mode::Events {
                inotify,
                buffer: vec![0; 64 * 1024],
                watches: Watches {
                    directory,
                    directory_mask: mask,
                    follow,
                    file: None,
                },
            },
            None => Mode::Polling {
                interval: poll_interval,
            },
        };
        Ok(Watcher {
            name: Some(bus.name().to_owned()),
            dir_path: bus.dir_path().to_owned(),
            file_path: bus.dir_path().join(bus.name()),
            mode,
            poll_interval,
            stop: bus.stop_flag(),
        })
    }

    /// Prepares to wait for changes to anything in the directory `path` of
    /// `bus` (events in `mask`, besides the directory's own removal), by
    /// events where `use_events` and inotify can watch it, else by looking
    /// every `sleep_interval`.
    pub(crate) fn on_directory(
        bus: &Bus,
        path: &std::path::Path,
        mask: WatchMask,
        use_events: bool,
        sleep_interval: Duration,
    ) -> Watcher {
        let poll_interval = sleep_interval.max(MIN_POLL_INTERVAL);
        let watched = use_events
            .then(|| {
                let inotify = Inotify::init().ok()?;
                let directory = inotify
                    .watches()
                    .add(path, mask | DIRECTORY_SELF_MASK)
                    .ok()?;
                Some((inotify, directory))
            })
            .flatten();
        let mode = match watched {
            Some((inotify, directory)) => Mode::Events {
                inotify,
                buffer: vec![0; 16 * 1024],
                watches: Watches {
                    directory,
                    directory_mask: mask,
                    follow: Follow::Never,
                    file: None,
                },
            },
            None => {
                log::info!("watching {} by polling", path.display());
                Mode::Polling {
                    interval: poll_interval,
                }
            }
        };
        Watcher {
            name: None,
            dir_path: path.to_owned(),
            file_path: path.to_owned(),
            mode,
            poll_interval,
            stop: bus.stop_flag(),
        }
    }

    /// Returns after a change (or, while polling, a poll interval), or after
    /// `limit`, whichever comes first.
    pub(crate) fn wait_for_change_within(&mut self, limit: Duration) -> Result<()> {
        self.stop.check()?;
        self.next_events(Some(limit)).map(|_| ())
    }

    /// Returns once `ready()` is true, checking it after every change of the
    /// bus file (or every poll interval).
    pub fn wait_until(&mut self, mut ready: impl FnMut() -> Result<bool>) -> Result<()> {
        // The events already queued (most of them caused by our own last
        // change of the bus) tell nothing that `ready()` will not see now:
        // dropping them saves a wake-up and a second check for each.
        self.discard_queued()?;
        // What was dropped may have said that the file followed was
        // replaced: point the watches at what is there before looking.
        self.arm()?;
        while !ready()? {
            self.wait_for_change()?;
        }
        Ok(())
    }

    /// Drops the events queued so far, with one non-blocking read (a full
    /// buffer's worth; any left over cause one more check later, no harm).
    fn discard_queued(&mut self) -> Result<()> {
        self.queued_events().map(|_| ())
    }

    /// Whether the watcher sleeps until an event rather than polling.
    pub(crate) fn uses_events(&self) -> bool {
        matches!(self.mode, Mode::Events { .. })
    }

    /// Returns once an event says the bus file may have made `change`:
    /// a file put at its name, or taken from it. Events queued already
    /// count (`poll` returns at once for them). While polling, returns after
    /// one interval: anything may have changed.
    ///
    /// A lossless producer or consumer that tracks the bus file this way
    /// needs no `stat` of `F` per chunk: the `link` or `open` it makes under
    /// the lock is the check, and this says when to make it again.
    pub(crate) fn wait_for(&mut self, change: Change) -> Result<()> {
        self.stop.check()?;
        loop {
            if self
                .next_events(None)?
                .is_some_and(|events| events.may_show(change))
            {
                return self.arm();
            }
        }
    }

    /// Blocks until the bus file may have changed.
    pub fn wait_for_change(&mut self) -> Result<()> {
        // A signal that arrived before this call interrupted nothing.
        self.stop.check()?;
        loop {
            match self.next_events(None)? {
                Some(events) if events.relevant => return self.arm(),
                _ => continue,
            }
        }
    }
    /// While following the file at `F`, points the watches at what is there
    /// now; otherwise does nothing. Called before every return to a caller
    /// that will look at the bus: whatever it then sees, any later change
    /// wakes us. Either the file at `F` is watched (the caller sees that file,
    /// or a later one whose arrival that watch has reported), or there is
    /// none and the directory reports names arriving. The directory's watch
    /// keeps its wider mask until the file's watch is set, so no change
    /// falls between the two.
    fn arm(&mut self) -> Result<()> {
        let Mode::Events {
            inotify, watches, ..
        } = &mut self.mode
        else {
            return Ok(());
        };
        if watches.follow != Follow::Now {
            return Ok(());
        }
        let mut list = inotify.watches();
        loop {
            let (file, directory_mask) = match list.add(&self.file_path, FILE_MASK) {
                Ok(file) => (Some(file), WatchMask::empty()),
                Err(error) if error.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => {
                    (None, ARRIVALS)
                }
                // Unreadable, say: the directory's watch tells, as before.
                Err(error) => {
                    log::debug!("cannot watch {}: {error}", self.file_path.display());
                    (None, ANY_CHANGE)
                }
            };
            let found = file.is_some();
            // The kernel attaches a new watch to the file it looked up at
            // `F`, which may have been renamed over or away in between: that
            // file's watch then never reports the change (a link in the
            // history, or a reader's descriptor, keeps it alive), and the
            // caller sees its successor, unwatched. Only a lookup made after
            // the watch was set, finding that same file, shows that the
            // watch was set while the file was at `F`.
            let settled = file == watches.file;
            // The same file keeps its descriptor; one replaced is dropped.
            if !settled && let Some(old) = std::mem::replace(&mut watches.file, file) {
                // Fails only if the kernel dropped it already (deleted).
                let _ = list.remove(old);
            }
            if found && !settled {
                continue;
            }
            if directory_mask == watches.directory_mask {
                return Ok(());
            }
            let reported_arrivals = watches.directory_mask.contains(ARRIVALS);
            let changed = list.add(&self.dir_path, directory_mask | DIRECTORY_SELF_MASK);
            if !changed.is_ok_and(|directory| directory == watches.directory) {
                log::warn!("the bus directory was removed or moved: polling from now on");
                self.mode = Mode::Polling {
                    interval: self.poll_interval,
                };
                return Ok(());
            }
            watches.directory_mask = directory_mask;
            // No file was at `F` a moment ago, but one may have arrived
            // before the directory reported arrivals again: look once more.
            if found || reported_arrivals {
                return Ok(());
            }
        }
    }

    /// Waits until `deadline`, counting the chunks that arrive at the bus
    /// file meanwhile (created or renamed onto it). Counts nothing while
    /// polling, which cannot tell.
    pub fn count_arrivals_until(&mut self, deadline: Instant) -> Result<u64> {
        let mut arrivals = 0;
        while let Some(left) = deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
        {
            self.stop.check()?;
            if let Some(events) = self.next_events(Some(left))? {
                arrivals += events.arrivals;
            }
        }
        Ok(arrivals)
    }

    /// Waits for the next batch of events, at most `timeout` (`None`: no
    /// limit), and sums it up; `None` if the time ran out or a signal came.
    /// While polling, sleeps one interval (within `timeout`) and reports a
    /// possible change.
    fn next_events(&mut self, timeout: Option<Duration>) -> Result<Option<Events>> {
        let inotify = match &mut self.mode {
            Mode::Events { inotify, .. } => inotify,
            Mode::Polling { interval } => {
                let interval = timeout.map_or(*interval, |timeout| timeout.min(*interval));
                sleep(interval, self.stop)?;
                return Ok(Some(Events {
                    relevant: true,
                    uncertain: true,
                    arrivals: 0,
                    departures: 0,
                }));
            }
        };
        let mut fds = [PollFd::new(inotify, PollFlags::IN)];
        match rustix::event::poll(&mut fds, timeout.map(self::timeout).as_ref()) {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(Errno::INTR) => {
                self.stop.check()?;
                return Ok(None);
            }
            Err(errno) => return Err(Error::stream("cannot wait for inotify events", errno)),
        }
        self.queued_events()
    }

    /// Reads the events queued now, without blocking, and sums them up;
    /// `None` if there are none (or the watcher polls).
    fn queued_events(&mut self) -> Result<Option<Events>> {
        let Mode::Events {
            inotify,
            buffer,
            watches,
        } = &mut self.mode
        else {
            return Ok(None);
        };
        let read = match inotify.read_events(buffer) {
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
            Err(error) => return Err(Error::stream("cannot read inotify events", error)),
        };
        let mut events = Events {
            relevant: false,
            uncertain: false,
            arrivals: 0,
            departures: 0,
        };
        let mut watch_gone = false;
        // The first name of another program's in this batch, if any.
        let mut foreign: Option<OsString> = None;
        for event in read {
            let overflow = event.mask.contains(EventMask::Q_OVERFLOW);
            events.relevant |= overflow;
            events.uncertain |= overflow;
            if event.wd != watches.directory {
                // The file followed was replaced or changed, in a way its
                // own events cannot tell (the kernel's own IGNORED follows a
                // removal we asked for, or one already reported); events of
                // files followed before are old news.
                let followed = Some(&event.wd) == watches.file.as_ref()
                    && !event.mask.contains(EventMask::IGNORED);
                events.relevant |= followed;
                events.uncertain |= followed;
                continue;
            }
            watch_gone |= removes_watch(event.mask);
            let names_bus = match (&self.name, event.name) {
                (Some(watched), Some(name)) => {
                    if foreign.is_none() && !names::is_bus_name(watched, name) && !anonymous(name) {
                        foreign = Some(name.to_owned());
                    }
                    name == watched.as_os_str()
                }
                (Some(_), None) => false,
                (None, _) => true,
            };
            events.relevant |= names_bus;
            if names_bus
                && event
                    .mask
                    .intersects(EventMask::CREATE | EventMask::MOVED_TO)
            {
                events.arrivals += 1;
            }
            if names_bus
                && event
                    .mask
                    .intersects(EventMask::DELETE | EventMask::MOVED_FROM)
            {
                events.departures += 1;
            }
        }
        if let Some(name) = foreign.filter(|_| watches.follow == Follow::WhenBusy) {
            log::info!(
                "other programs change files in {} ({} first): following {} itself",
                self.dir_path.display(),
                name.to_string_lossy(),
                self.file_path.display()
            );
            watches.follow = Follow::Now;
            // Set now, since this wait goes on; the directory's watch saw
            // no change of `F` in this batch, and reports any from here on
            // until the file's watch is set.
            if !events.relevant {
                self.arm()?;
            }
        }
        if watch_gone && matches!(self.mode, Mode::Events { .. }) {
            let what = match self.name {
                Some(_) => "the bus directory",
                None => "the watched directory",
            };
            log::warn!("{what} was removed or moved: polling from now on");
            self.mode = Mode::Polling {
                interval: self.poll_interval,
            };
            events.relevant = true;
            events.uncertain = true;
        }
        Ok(Some(events))
    }
}

/// A batch of inotify events, summed up.
#[derive(Debug, Clone, Copy)]
struct Events {
    /// Whether the bus file may have changed.
    relevant: bool,
    /// Whether events may have been lost (queue overflow, the watch gone,
    /// or polling): then any change may have happened.
    uncertain: bool,
    /// How many of them put a new file at the bus file's name.
    arrivals: u64,
    /// How many took a file from the bus file's name (deleted or renamed
    /// away).
    departures: u64,
}

impl Events {
    /// Whether the bus file may have made `change` in this batch.
    fn may_show(&self, change: Change) -> bool {
        self.uncertain
            || match change {
                Change::Arrival => self.arrivals > 0,
                Change::Departure => self.departures > 0,
            }
    }
}

/// A change of the bus file a waiter needs to see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// A file was put at `F` (a lossless consumer waits for a chunk).
    Arrival,
    /// The file at `F` was taken away (a lossless producer waits for room).
    Departure,
}

/// Whether `name` is what inotify names an anonymous (`O_TMPFILE`) file by
/// when it is closed after writing: `#` and its inode number. Our producers
/// write every chunk so before linking it, and nothing tells theirs from
/// another program's: they are not taken for other programs' files.
fn anonymous(name: &std::ffi::OsStr) -> bool {
    use std::os::unix::ffi::OsStrExt;
    name.as_bytes()
        .strip_prefix(b"#")
        .is_some_and(|number| !number.is_empty() && number.iter().all(u8::is_ascii_digit))
}

/// Whether an event of a directory's watch says that the watch is gone (the
/// directory was removed or moved).
fn removes_watch(mask: EventMask) -> bool {
    mask.intersects(EventMask::IGNORED | EventMask::DELETE_SELF | EventMask::MOVE_SELF)
}

/// An inotify watch on the bus directory, or `None` (with the reason logged)
/// where the watcher must poll instead.
fn events_for(
    bus: &Bus,
    file_monitoring: bool,
    mask: WatchMask,
) -> Option<(Inotify, WatchDescriptor)> {
    if !file_monitoring {
        log::info!("file monitoring off: polling");
        return None;
    }
    if let WakeUp::Polling {
        remote_filesystem: Some(kind),
    } = wake_up(bus, true)
    {
        // Shown at -v: the latency is now about one --sleep-interval instead
        // of microseconds.
        log::info!(
            "{} is on {kind}, where inotify misses changes made by other machines: \
             polling every --sleep-interval",
            bus.dir_path().display()
        );
        return None;
    }
    let watched = Inotify::init().and_then(|inotify| {
        let directory = inotify
            .watches()
            .add(bus.dir_path(), mask | DIRECTORY_SELF_MASK)?;
        Ok((inotify, directory))
    });
    match watched {
        Ok(watched) => {
            log::debug!("watching {} with inotify", bus.dir_path().display());
            Some(watched)
        }
        Err(error) => {
            log::warn!(
                "cannot watch {} with inotify ({error}): polling",
                bus.dir_path().display()
            );
            None
        }
    }
}

/// How many files of other programs arrive (are created or moved in) in the
/// bus directory per second, counted over `window`. A waiter whose bus file
/// is missing (a lossless consumer between chunks, any consumer before the
/// first chunk) wakes for each. `None` where waiters poll instead (a shared
/// filesystem), or inotify cannot watch the directory.
pub fn foreign_arrivals_per_second(bus: &Bus, window: Duration) -> Option<u64> {
    if wake_up(bus, true) != WakeUp::Events {
        return None;
    }
    let mut inotify = Inotify::init().ok()?;
    inotify
        .watches()
        .add(bus.dir_path(), ARRIVALS | WatchMask::ONLYDIR)
        .ok()?;
    let mut buffer = vec![0; 64 * 1024];
    let mut arrivals = 0u64;
    let deadline = Instant::now() + window;
    while let Some(left) = deadline
        .checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())
    {
        let mut fds = [PollFd::new(&inotify, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&timeout(left))) {
            Ok(0) => break,
            Ok(_) | Err(Errno::INTR) => {}
            Err(_) => return None,
        }
        match inotify.read_events(&mut buffer) {
            Ok(events) => {
                arrivals += events
                    .filter(|event| {
                        event
                            .name
                            .is_some_and(|name| !names::is_bus_name(bus.name(), name))
                    })
                    .count() as u64;
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return None,
        }
    }
    let seconds = window.as_secs_f64();
    (seconds > 0.0).then(|| (arrivals as f64 / seconds).round() as u64)
}

/// Sleeps for `interval`, returning early when a signal asks us to stop.
/// (poll(2) with no descriptors returns on a signal; thread::sleep would not.)
fn sleep(interval: Duration, stop: StopFlag) -> Result<()> {
    match rustix::event::poll(&mut [], Some(&timeout(interval))) {
        Ok(_) => Ok(()),
        Err(Errno::INTR) => stop.check(),
        Err(errno) => Err(Error::stream("cannot sleep", errno)),
    }
}

/// How the processes of this machine that wait on a bus (consumers, and
/// lossless producers waiting for their chunk to be taken) wake up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WakeUp {
    /// On inotify events, at once.
    Events,
    /// By looking every `--sleep-interval`.
    Polling {
        /// The shared filesystem the bus is on, which is why events are not
        /// used (`None`: file monitoring was turned off).
        remote_filesystem: Option<&'static str>,
    },
}

/// How a waiter of `bus` on this machine wakes up, judged from the bus
/// directory's filesystem (without setting up a watch).
pub fn wake_up(bus: &Bus, file_monitoring: bool) -> WakeUp {
    match bus.remote_filesystem() {
        Some(kind) => WakeUp::Polling {
            remote_filesystem: Some(kind),
        },
        None if !file_monitoring => WakeUp::Polling {
            remote_filesystem: None,
        },
        None => WakeUp::Events,
    }
}

/// `duration` as a `poll(2)` timeout (saturating: a duration too long for a
/// `Timespec` waits as long as one can).
pub(crate) fn timeout(duration: Duration) -> Timespec {
    Timespec::try_from(duration).unwrap_or(Timespec {
        tv_sec: i64::MAX,
        tv_nsec: 0,
    })
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::fs;
    use std::path::Path;

    use rustix::fs::{CWD, RenameFlags};

    use super::*;

    /// Longer than any wake-up takes; what does not wake a watcher within it
    /// is taken as never waking it.
    const QUIET: Duration = Duration::from_millis(200);

    /// Whether the watcher wakes up for its bus file within [`QUIET`],
    /// re-arming as `wait_for_change` does before it returns.
    fn wakes(watcher: &mut Watcher) -> bool {
        let deadline = Instant::now() + QUIET;
        while let Some(left) = deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
        {
            let events = watcher.next_events(Some(left)).expect("events");
            if events.is_some_and(|events| events.relevant) {
                watcher.arm().expect("arm");
                return true;
            }
        }
        false
    }

    /// Creates, writes, renames and deletes `name` in `dir`, as another
    /// program writing there does.
    fn churn(dir: &Path, name: &str) {
        let staged = dir.join(format!("{name}.part"));
        fs::write(&staged, b"not a chunk").expect("write");
        fs::rename(&staged, dir.join(name)).expect("rename");
        fs::remove_file(dir.join(name)).expect("remove");
    }

    /// Puts a new file at `name` in `dir` by renaming it over what is there.
    fn replace(dir: &Path, name: &str) {
        let staged = dir.join("staged");
        fs::write(&staged, b"chunk").expect("write");
        fs::rename(&staged, dir.join(name)).expect("rename");
    }

    fn following(watcher: &Watcher) -> Option<(Follow, bool, WatchMask)> {
        match &watcher.mode {
            Mode::Events { watches, .. } => Some((
                watches.follow,
                watches.file.is_some(),
                watches.directory_mask,
            )),
            Mode::Polling { .. } => None,
        }
    }

    #[test]
    fn the_bus_s_own_names_are_told_from_other_programs_names() {
        let bus = OsStr::new("bus");
        for own in [
            "bus",
            "bus.lock",
            "bus.__new__",
            "bus.history",
            "bus.consumers",
            "bus.filebus-tmp.4242.0",
        ] {
            assert!(names::is_bus_name(bus, OsStr::new(own)), "{own:?}");
        }
        for foreign in [
            "other",
            "bu",
            "busy",
            "bus2",
            "bus.log",
            "bus.lock.old",
            "bus.history~",
            "bus.filebus-tmp",
            "",
        ] {
            assert!(!names::is_bus_name(bus, OsStr::new(foreign)), "{foreign:?}");
        }
        for name in ["#1", "#10259301"] {
            assert!(anonymous(OsStr::new(name)), "{name:?}");
        }
        for name in ["#", "#12a", "12", "a#12", "#-1"] {
            assert!(!anonymous(OsStr::new(name)), "{name:?}");
        }
    }

    #[test]
    fn other_programs_files_turn_a_waiter_to_following_its_bus_file() {
        let dir = tempfile::tempdir().expect("temporary directory");
        replace(dir.path(), "bus");
        let bus = Bus::open(&dir.path().join("bus")).expect("bus");
        let mut watcher = Watcher::new(&bus, true, Duration::from_millis(100)).expect("watcher");
        // The bus's own names, and anonymous files as our producers write
        // chunks, leave it watching the directory.
        fs::write(dir.path().join("bus.lock"), b"").expect("lock file");
        fs::write(dir.path().join("bus.__new__"), b"").expect("staged chunk");
        let anonymous = rustix::fs::open(
            dir.path(),
            rustix::fs::OFlags::TMPFILE | rustix::fs::OFlags::WRONLY,
            rustix::fs::Mode::from_raw_mode(0o644),
        )
        .expect("O_TMPFILE");
        rustix::io::write(&anonymous, b"chunk").expect("write");
        drop(anonymous);
        assert!(!wakes(&mut watcher));
        assert_eq!(
            following(&watcher),
            Some((Follow::WhenBusy, false, ANY_CHANGE))
        );
        churn(dir.path(), "other");
        assert!(!wakes(&mut watcher), "woken by another program's file");
        assert_eq!(
            following(&watcher),
            Some((Follow::Now, true, WatchMask::empty()))
        );
        for round in 0..3 {
            churn(dir.path(), "other");
            assert!(!wakes(&mut watcher), "woken by churn, round {round}");
        }
    }

    #[test]
    fn a_followed_bus_file_wakes_its_waiter_however_it_is_replaced_or_removed() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = |name: &str| dir.path().join(name);
        replace(dir.path(), "bus");
        let bus = Bus::open(&path("bus")).expect("bus");
        let mut watcher = Watcher::new(&bus, true, Duration::from_millis(100)).expect("watcher");
        churn(dir.path(), "other");
        assert!(!wakes(&mut watcher));

        replace(dir.path(), "bus");
        assert!(wakes(&mut watcher), "renamed over");
        churn(dir.path(), "other");
        assert!(!wakes(&mut watcher), "woken by churn after a rename");

        // Renamed over while another link holds it (the history's).
        fs::hard_link(path("bus"), path("held")).expect("link");
        replace(dir.path(), "bus");
        assert!(wakes(&mut watcher), "renamed over a linked chunk");

        // Exchanged (our producers), then the old chunk deleted.
        fs::write(path("bus.__new__"), b"chunk").expect("write");
        rustix::fs::renameat_with(
            CWD,
            path("bus.__new__"),
            CWD,
            path("bus"),
            RenameFlags::EXCHANGE,
        )
        .expect("exchange");
        assert!(wakes(&mut watcher), "exchanged");
        fs::remove_file(path("bus.__new__")).expect("remove");
        assert!(!wakes(&mut watcher), "woken by the old chunk's deletion");

        // Taken (lossless), then no file: the directory reports arrivals.
        fs::remove_file(path("bus")).expect("take");
        assert!(wakes(&mut watcher), "taken");
        assert_eq!(following(&watcher), Some((Follow::Now, false, ARRIVALS)));
        fs::write(path("bus.__new__"), b"chunk").expect("write");
        fs::hard_link(path("bus.__new__"), path("bus")).expect("link");
        assert!(wakes(&mut watcher), "linked as the bus file");
        assert_eq!(
            following(&watcher),
            Some((Follow::Now, true, WatchMask::empty()))
        );

        fs::rename(path("bus"), path("moved")).expect("rename away");
        assert!(wakes(&mut watcher), "renamed away");
        replace(dir.path(), "bus");
        assert!(wakes(&mut watcher), "renamed into place");

        fs::write(path("bus"), b"written in place").expect("write");
        assert!(wakes(&mut watcher), "written in place");
    }

    #[test]
    fn a_bus_file_that_arrives_before_a_waiter_looks_is_followed() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("bus");
        replace(dir.path(), "bus");
        let bus = Bus::open(&path).expect("bus");
        let mut watcher = Watcher::new(&bus, true, Duration::from_millis(100)).expect("watcher");
        churn(dir.path(), "other");
        assert!(!wakes(&mut watcher));
        // As a lossless producer sees it: the chunk followed is taken and a
        // new one published before the waiter looks (the events that said
        // so are dropped as stale); then that one is taken too.
        fs::remove_file(&path).expect("take");
        replace(dir.path(), "bus");
        let (done, waited) = std::sync::mpsc::channel();
        std::thread::spawn({
            let path = path.clone();
            move || {
                let mut looks = 0;
                let outcome = watcher.wait_until(|| {
                    looks += 1;
                    Ok(!path.exists())
                });
                let _ = done.send((outcome, looks));
            }
        });
        std::thread::sleep(Duration::from_millis(50));
        fs::remove_file(&path).expect("take");
        // A waiter that still followed the first chunk would never wake.
        let (outcome, looks) = waited
            .recv_timeout(Duration::from_secs(10))
            .expect("the waiter did not see the second chunk taken");
        outcome.expect("wait");
        assert!(looks >= 2, "{looks} looks");
    }

    #[test]
    fn a_bus_file_replaced_while_its_watch_is_being_set_is_not_followed() {
        // `arm` watches the file at `F` by its path: the file the kernel
        // looks up may be renamed over (while a history link keeps it, its
        // link count dropping to 1, not 0) before the watch is attached to
        // it, and then no event of it will ever come. Each trial renames
        // chunks over `F` as fast as it can while the watcher follows, then
        // checks that one more chunk still wakes it.
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = |name: String| dir.path().join(name);
        replace(dir.path(), "bus");
        let bus = Bus::open(&dir.path().join("bus")).expect("bus");
        let mut watcher = Watcher::new(&bus, true, Duration::from_millis(100)).expect("watcher");
        churn(dir.path(), "other");
        assert!(!wakes(&mut watcher));
        const CHUNKS: usize = 300;
        for trial in 0..5 {
            for chunk in 0..CHUNKS {
                fs::write(path(format!("staged.{chunk}")), b"chunk").expect("write");
                fs::hard_link(
                    path(format!("staged.{chunk}")),
                    path(format!("held.{chunk}")),
                )
                .expect("link");
            }
            let publisher = std::thread::spawn({
                let dir = dir.path().to_owned();
                move || {
                    for chunk in 0..CHUNKS {
                        fs::rename(dir.join(format!("staged.{chunk}")), dir.join("bus"))
                            .expect("rename");
                    }
                }
            });
            while wakes(&mut watcher) {}
            publisher.join().expect("publisher");
            while wakes(&mut watcher) {}
            replace(dir.path(), "bus");
            assert!(wakes(&mut watcher), "trial {trial}: asleep on a chunk gone");
            for chunk in 0..CHUNKS {
                fs::remove_file(path(format!("held.{chunk}"))).expect("remove");
            }
            while wakes(&mut watcher) {}
        }
    }

    #[test]
    fn watching_the_followed_file_again_loses_none_of_its_changes() {
        // The file's watch is added again at every wake-up. Each change of
        // the file here (a `chmod`: an `ATTRIB` as a rename over it gives)
        // is made while the watcher adds its watch again and again, and
        // must be reported.
        use std::os::unix::fs::PermissionsExt;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        const CHANGES: u64 = 20_000;
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("bus");
        replace(dir.path(), "bus");
        let bus = Bus::open(&path).expect("bus");
        let mut watcher = Watcher::new(&bus, true, Duration::from_millis(100)).expect("watcher");
        churn(dir.path(), "other");
        assert!(!wakes(&mut watcher));
        let reported = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let changer = std::thread::spawn({
            let (reported, done) = (reported.clone(), done.clone());
            move || {
                let mut lost = 0;
                for change in 0..CHANGES {
                    let mode = if change % 2 == 0 { 0o640 } else { 0o644 };
                    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
                    let deadline = Instant::now() + Duration::from_millis(200);
                    while reported.load(Ordering::SeqCst) <= change {
                        if Instant::now() > deadline {
                            lost += 1;
                            reported.store(change + 1, Ordering::SeqCst);
                            break;
                        }
                        std::thread::yield_now();
                    }
                }
                done.store(true, Ordering::SeqCst);
                lost
            }
        });
        while !done.load(Ordering::SeqCst) {
            watcher.arm().expect("arm");
            if watcher
                .queued_events()
                .expect("events")
                .is_some_and(|events| events.relevant)
            {
                reported.fetch_add(1, Ordering::SeqCst);
            }
        }
        let lost = changer.join().expect("changer");
        assert_eq!(lost, 0, "changes not reported");
    }

    #[test]
    fn a_counting_watcher_counts_every_arrival_amid_other_programs_files() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let bus = Bus::open(&dir.path().join("bus")).expect("bus");
        let mut watcher = Watcher::counting_arrivals(&bus).expect("watcher");
        for _ in 0..3 {
            churn(dir.path(), "other");
            replace(dir.path(), "bus");
        }
        let arrivals = watcher
            .count_arrivals_until(Instant::now() + QUIET)
            .expect("count");
        assert_eq!(arrivals, 3);
    }

    #[test]
    fn other_programs_files_arriving_are_counted_for_stat() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let bus = Bus::open(&dir.path().join("bus")).expect("bus");
        let counter = std::thread::spawn({
            let dir = dir.path().to_owned();
            move || {
                std::thread::sleep(Duration::from_millis(20));
                for _ in 0..10 {
                    churn(&dir, "other");
                    replace(&dir, "bus");
                }
            }
        });
        let per_second = foreign_arrivals_per_second(&bus, Duration::from_millis(500));
        counter.join().expect("churn");
        // Each round, `other.part` and `staged` are created and `other`
        // moved in: 30 in half a second. The bus file's arrivals are not
        // counted.
        assert_eq!(per_second, Some(60));
    }
}

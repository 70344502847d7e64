//! Waking up when the bus file changes.
//!
//! With file monitoring (the default) the waiter watches the bus's
//! *directory* with inotify and filters events by the bus's name: a watch on
//! `F` itself would follow the first chunk's inode and go stale at the first
//! rename. Between events it sleeps in `poll(2)` with no timeout, so an idle
//! consumer or a blocked lossless producer costs no CPU at all.
//!
//! Inotify only reports changes made through this kernel, so on network and
//! FUSE filesystems (and with `--no-file-monitoring`, or when inotify cannot
//! be set up) the waiter polls every `--sleep-interval` instead.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use inotify::{EventMask, Inotify, WatchMask};
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;

use crate::bus::Bus;
use crate::error::{Error, Result};
use crate::stop::StopFlag;

/// The events on the bus directory a waiter for any change of the bus file
/// watches for.
const ANY_CHANGE: WatchMask = WatchMask::CREATE
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::DELETE)
    .union(WatchMask::CLOSE_WRITE);

/// The shortest polling interval: a zero `--sleep-interval` would spin.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(1);

/// Waits for changes to a bus file (or, for a producer waiting on named
/// consumers, to anything in a directory).
#[derive(Debug)]
pub struct Watcher {
    /// The name whose changes count (`None`: every name in the directory).
    name: Option<OsString>,
    mode: Mode,
    /// The interval if events become unavailable.
    poll_interval: Duration,
    /// Checked when a wait is interrupted.
    stop: StopFlag,
}

#[derive(Debug)]
enum Mode {
    Events { inotify: Inotify, buffer: Vec<u8> },
    Polling { interval: Duration },
}

impl Watcher {
    /// Prepares to wait for changes of `bus`. Must be created before the
    /// caller first looks at the bus, so that no change can slip in between.
    pub fn new(bus: &Bus, file_monitoring: bool, sleep_interval: Duration) -> Result<Self> {
        Self::watching(bus, file_monitoring, sleep_interval, ANY_CHANGE)
    }

    /// Prepares to wait for `change` of `bus` only ([`Watcher::wait_for`]),
    /// as a lossless consumer (arrivals) or producer (departures) does: the
    /// other changes, its own among them, do not wake it.
    pub(crate) fn new_for(
        bus: &Bus,
        change: Change,
        file_monitoring: bool,
        sleep_interval: Duration,
    ) -> Result<Self> {
        let mask = match change {
            Change::Arrival => WatchMask::CREATE | WatchMask::MOVED_TO,
            Change::Departure => WatchMask::DELETE | WatchMask::MOVED_FROM,
        };
        Self::watching(bus, file_monitoring, sleep_interval, mask)
    }

    fn watching(
        bus: &Bus,
        file_monitoring: bool,
        sleep_interval: Duration,
        mask: WatchMask,
    ) -> Result<Self> {
        let poll_interval = sleep_interval.max(MIN_POLL_INTERVAL);
        let mode = match events_for(bus, file_monitoring, mask) {
            Some(inotify) => Mode::Events {
                inotify,
                buffer: vec![0; 64 * 1024],
            },
            None => Mode::Polling {
                interval: poll_interval,
            },
        };
        Ok(Watcher {
            name: Some(bus.name().to_owned()),
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
                let mask =
                    mask | WatchMask::DELETE_SELF | WatchMask::MOVE_SELF | WatchMask::ONLYDIR;
                inotify.watches().add(path, mask).ok()?;
                Some(inotify)
            })
            .flatten();
        let mode = match watched {
            Some(inotify) => Mode::Events {
                inotify,
                buffer: vec![0; 16 * 1024],
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
                return Ok(());
            }
        }
    }

    /// Blocks until the bus file may have changed.
    pub fn wait_for_change(&mut self) -> Result<()> {
        // A signal that arrived before this call interrupted nothing.
        self.stop.check()?;
        loop {
            match self.next_events(None)? {
                Some(events) if events.relevant => return Ok(()),
                _ => continue,
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
        let Mode::Events { inotify, buffer } = &mut self.mode else {
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
        for event in read {
            if event
                .mask
                .intersects(EventMask::IGNORED | EventMask::DELETE_SELF | EventMask::MOVE_SELF)
            {
                watch_gone = true;
            }
            let names_bus = match &self.name {
                Some(watched) => event.name.is_some_and(|name| name == watched.as_os_str()),
                None => true,
            };
            let overflow = event.mask.contains(EventMask::Q_OVERFLOW);
            events.relevant |= names_bus || overflow;
            events.uncertain |= overflow;
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
        if watch_gone {
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

/// An inotify watch on the bus directory, or `None` (with the reason logged)
/// where the watcher must poll instead.
fn events_for(bus: &Bus, file_monitoring: bool, mask: WatchMask) -> Option<Inotify> {
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
    let mask = mask | WatchMask::DELETE_SELF | WatchMask::MOVE_SELF | WatchMask::ONLYDIR;
    let watched = Inotify::init().and_then(|inotify| {
        inotify.watches().add(bus.dir_path(), mask)?;
        Ok(inotify)
    });
    match watched {
        Ok(inotify) => {
            log::debug!("watching {} with inotify", bus.dir_path().display());
            Some(inotify)
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

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
use std::os::fd::AsFd;
use std::time::Duration;

use inotify::{EventMask, Inotify, WatchMask};
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;

use crate::bus::Bus;
use crate::error::{Error, Result};

/// The shortest polling interval: a zero `--sleep-interval` would spin.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(1);

/// Waits for changes to a bus file.
#[derive(Debug)]
pub struct Watcher {
    name: OsString,
    mode: Mode,
    /// The interval if events become unavailable.
    poll_interval: Duration,
}

#[derive(Debug)]
enum Mode {
    Events { inotify: Inotify, buffer: Vec<u8> },
    Polling { interval: Duration },
}

/// Filesystems whose changes can come from other machines, where inotify
/// reports nothing for them (values of `statfs.f_type`).
const REMOTE_FILESYSTEMS: &[(i64, &str)] = &[
    (0x6969, "NFS"),
    (0xFF53_4D42, "CIFS"),
    (0xFE53_4D42, "SMB2"),
    (0x517B, "SMB"),
    (0x6573_5546, "FUSE"),
    (0x0102_1997, "9P"),
    (0x00C3_6400, "Ceph"),
    (0x5346_414F, "AFS"),
    (0x0BD0_0BD0, "Lustre"),
];

impl Watcher {
    /// Prepares to wait for changes of `bus`. Must be created before the
    /// caller first looks at the bus, so that no change can slip in between.
    pub fn new(bus: &Bus, file_monitoring: bool, sleep_interval: Duration) -> Result<Self> {
        let poll_interval = sleep_interval.max(MIN_POLL_INTERVAL);
        let mode = match events_for(bus, file_monitoring) {
            Some(inotify) => Mode::Events {
                inotify,
                buffer: vec![0; 64 * 1024],
            },
            None => Mode::Polling {
                interval: poll_interval,
            },
        };
        Ok(Watcher {
            name: bus.name().to_owned(),
            mode,
            poll_interval,
        })
    }

    /// Whether the watcher sleeps until an event rather than polling.
    pub fn uses_events(&self) -> bool {
        matches!(self.mode, Mode::Events { .. })
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
        let Mode::Events { inotify, buffer } = &mut self.mode else {
            return Ok(());
        };
        let watch_gone = match inotify.read_events(buffer) {
            Ok(events) => events.into_iter().any(|event| {
                event
                    .mask
                    .intersects(EventMask::IGNORED | EventMask::DELETE_SELF | EventMask::MOVE_SELF)
            }),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => false,
            Err(error) => return Err(Error::stream("cannot read inotify events", error)),
        };
        if watch_gone {
            log::warn!("the bus directory was removed or moved: polling from now on");
            self.mode = Mode::Polling {
                interval: self.poll_interval,
            };
        }
        Ok(())
    }

    /// Blocks until the bus file may have changed.
    pub fn wait_for_change(&mut self) -> Result<()> {
        // A signal that arrived before this call interrupted nothing.
        crate::signals::check_termination()?;
        let (inotify, buffer) = match &mut self.mode {
            Mode::Events { inotify, buffer } => (inotify, buffer),
            Mode::Polling { interval } => return sleep(*interval),
        };
        loop {
            let mut fds = [PollFd::new(inotify, PollFlags::IN)];
            match rustix::event::poll(&mut fds, None) {
                Ok(_) => {}
                Err(Errno::INTR) => crate::signals::check_termination()?,
                Err(errno) => return Err(Error::stream("cannot wait for inotify events", errno)),
            }
            let events = match inotify.read_events(buffer) {
                Ok(events) => events,
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(error) => return Err(Error::stream("cannot read inotify events", error)),
            };
            let mut relevant = false;
            let mut watch_gone = false;
            for event in events {
                if event
                    .mask
                    .intersects(EventMask::IGNORED | EventMask::DELETE_SELF | EventMask::MOVE_SELF)
                {
                    watch_gone = true;
                }
                relevant |= event.mask.contains(EventMask::Q_OVERFLOW)
                    || event.name.is_some_and(|name| name == self.name.as_os_str());
            }
            if watch_gone {
                log::warn!("the bus directory was removed or moved: polling from now on");
                self.mode = Mode::Polling {
                    interval: self.poll_interval,
                };
                return Ok(());
            }
            if relevant {
                return Ok(());
            }
        }
    }
}

/// An inotify watch on the bus directory, or `None` (with the reason logged)
/// where the watcher must poll instead.
fn events_for(bus: &Bus, file_monitoring: bool) -> Option<Inotify> {
    if !file_monitoring {
        log::info!("file monitoring off: polling");
        return None;
    }
    if let Some(kind) = remote_filesystem(bus) {
        log::info!(
            "{} is on {kind}, where inotify misses remote changes: polling",
            bus.dir_path().display()
        );
        return None;
    }
    let mask = WatchMask::CREATE
        | WatchMask::MOVED_TO
        | WatchMask::MOVED_FROM
        | WatchMask::DELETE
        | WatchMask::CLOSE_WRITE
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::ONLYDIR;
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
fn sleep(interval: Duration) -> Result<()> {
    let timeout = Timespec {
        tv_sec: interval.as_secs().try_into().unwrap_or(i64::MAX),
        tv_nsec: interval.subsec_nanos().into(),
    };
    match rustix::event::poll(&mut [], Some(&timeout)) {
        Ok(_) => Ok(()),
        Err(Errno::INTR) => crate::signals::check_termination(),
        Err(errno) => Err(Error::stream("cannot sleep", errno)),
    }
}

fn remote_filesystem(bus: &Bus) -> Option<&'static str> {
    let stats = rustix::fs::fstatfs(bus.dir().as_fd()).ok()?;
    let kind = stats.f_type as i64;
    REMOTE_FILESYSTEMS
        .iter()
        .find(|(magic, _)| *magic == kind)
        .map(|(_, name)| *name)
}

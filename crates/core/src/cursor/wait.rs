//! A producer keeping a history waits, before dropping an entry, until
//! every live named consumer has written it out.

use std::time::Duration;

use inotify::WatchMask;
use rustix::fs::OFlags;

use super::{directory_name, open_directory, survey};
use crate::bus::Bus;
use crate::error::{Report, Result};
use crate::watch::Watcher;

/// How a producer waits for cursors to advance: a watch on the cursor
/// directory (a cursor's position is an extended attribute, so `ATTRIB`
/// reports an advance), with a timeout as the safety net, because a
/// consumer's exit is signalled by the close of its cursor just *before* its
/// lock goes away.
#[derive(Debug)]
pub struct CursorWait {
    watcher: Watcher,
    interval: Duration,
}

/// The shortest wait between two looks: a zero `--sleep-interval` would spin.
const MIN_INTERVAL: Duration = Duration::from_millis(1);

impl CursorWait {
    fn new(bus: &Bus, sleep_interval: Duration, file_monitoring: bool) -> CursorWait {
        let path = bus.dir_path().join(directory_name(bus.name()));
        let use_events = file_monitoring && bus.remote_filesystem().is_none();
        let mask = WatchMask::ATTRIB
            | WatchMask::CLOSE_WRITE
            | WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::MOVED_TO
            | WatchMask::MOVED_FROM
            | WatchMask::DONT_FOLLOW;
        CursorWait {
            watcher: Watcher::on_directory(bus, &path, mask, use_events, sleep_interval),
            interval: sleep_interval,
        }
    }

    /// Returns after a change in the cursor directory, or after the interval.
    fn wait(&mut self) -> Result<()> {
        self.watcher
            .wait_for_change_within(self.interval.max(MIN_INTERVAL))
    }
}

/// Returns once every live named consumer of `bus` has written out chunk
/// `needed` (at once if there are none). `wait` keeps the watch between
/// calls. Called by a producer under the bus lock.
pub(crate) fn wait_until_written(
    bus: &Bus,
    needed: u64,
    wait: &mut Option<CursorWait>,
    sleep_interval: Duration,
    file_monitoring: bool,
) -> Result<()> {
    let mut reported = false;
    loop {
        if wait.is_none() {
            match open_directory(bus, OFlags::PATH) {
                Ok(Some(_)) => {}
                Ok(None) => return Ok(()),
                // Not a directory (a planted symlink, say): no consumer can
                // keep a cursor there, so there is nobody to wait for.
                Err(error) => {
                    log::debug!("{}: no named consumers", Report(&error));
                    return Ok(());
                }
            }
            // Watching starts before the look below, so no advance is missed.
            *wait = Some(CursorWait::new(bus, sleep_interval, file_monitoring));
        }
        let lagging = survey(bus)
            .unwrap_or_default()
            .into_iter()
            .find(|consumer| {
                // A consumer that holds the lock of its name but has not
                // recorded where it starts yet holds everything until it
                // does (a file that is only fresh may be anybody's).
                match consumer.cursor {
                    Some(cursor) => (consumer.alive || consumer.heartbeat) && cursor < needed,
                    None => consumer.alive,
                }
            });
        let Some(lagging) = lagging else {
            return Ok(());
        };
        if !reported {
            log::debug!(
                "waiting for named consumer {} (at {:?}) to write out chunk {needed}",
                lagging.name,
                lagging.cursor
            );
            reported = true;
        }
        if let Some(wait) = wait {
            wait.wait()?;
        }
    }
}

//! Lossless unicast: each chunk at `F` taken, under the bus lock, until an
//! empty chunk ends the stream.

use super::output::{Output, looking_again};
use crate::bus::{Bus, Current};
use crate::error::{Error, Result};
use crate::watch::{Change, Watcher};

/// Lossless unicast: under the lock, emit the chunk at `F` and delete it;
/// an empty chunk ends the stream.
///
/// The chunk is emitted before it is deleted: a consumer killed in between
/// leaves it for the next consumer, which emits it again (at most one
/// duplicate, never a loss).
pub(super) fn take_until_end_of_stream(
    bus: &Bus,
    watcher: &mut Watcher,
    output: &mut Output<'_>,
) -> Result<()> {
    let rights = bus.delete_rights()?;
    let mut lock = bus.lock_file()?;
    // Whether a chunk may be at `F`, as far as the watcher's events tell:
    // where it has events, the open under the lock is the check, with no
    // `stat` of `F` per chunk (see Watcher::wait_for).
    let mut maybe_present = true;
    loop {
        if !watcher.uses_events() {
            watcher.wait_until(|| bus.exists())?;
        } else if !maybe_present {
            watcher.wait_for(Change::Arrival)?;
        }
        let guard = lock.acquire()?;
        let chunk = match bus.open_current()? {
            Current::Absent => {
                drop(guard);
                if watcher.uses_events() {
                    // Not there yet (an old event), or taken by another
                    // consumer since: the next arrival tells.
                    maybe_present = false;
                } else {
                    // Taken by another consumer since we looked. On a shared
                    // filesystem a cached lookup can go on showing `F` for a
                    // while: wait for the next change instead of spinning on
                    // the lock.
                    log::info!(
                        "{}: taken by another consumer before us: looking again",
                        bus.path().display()
                    );
                    watcher.wait_for_change()?;
                }
                continue;
            }
            Current::Unusable(kind) => {
                return Err(Error::BadBusPath {
                    path: bus.path().to_owned(),
                    problem: format!("is {kind}, not a chunk"),
                });
            }
            Current::Chunk(chunk) => chunk,
        };
        rights.check(bus, &chunk)?;
        // A chunk that is not of our format stops us, left where it is.
        let emitted = output
            .content(bus, &chunk)
            .and_then(|content| output.emit(&chunk, &content).map(|()| content));
        let content = match emitted {
            Ok(content) => content,
            // Deleted under our lock: only a machine whose flock is not
            // coordinated with ours does that. Whatever is at `F` now is not
            // what we read, so it must not be removed.
            Err(Error::ChunkVanished) => {
                looking_again(bus);
                drop(guard);
                watcher.wait_for_change()?;
                continue;
            }
            Err(error) => return Err(error),
        };
        bus.remove_current(&guard)?;
        // Under the lock, no producer put a new chunk at `F` meanwhile: the
        // next one is an arrival still to come.
        maybe_present = false;
        // Unlock before closing: closing the last descriptor of a deleted
        // file frees it, which is slow on ext4, and producers need not wait.
        drop(guard);
        drop(chunk.file);
        if content.len == 0 {
            return Ok(());
        }
    }
}

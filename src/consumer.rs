//! The consumer: wake-up → look at (lossy) or take (lossless) the chunk at `F`
//! → standard output.

use crate::Options;
use crate::bus::{Bus, Chunk, Current};
use crate::error::{Error, Result};
use crate::sink::Sink;
use crate::watch::Watcher;

/// Writes the bus's chunks to standard output: every new chunk it sees
/// (lossy; never returns), or each chunk it takes until the end-of-stream
/// marker (lossless).
pub fn run(options: &Options) -> Result<()> {
    let bus = Bus::open(&options.path)?;
    let mut sink = Sink::stdout(options.output_method)?;
    // The watcher exists before the first look, so no change is missed.
    let mut watcher = Watcher::new(&bus, options.file_monitoring, options.sleep_interval)?;
    if options.lossless {
        take_until_end_of_stream(&bus, &mut watcher, &mut sink)
    } else {
        look_forever(&bus, &mut watcher, &mut sink)
    }
}

/// Lossy multicast: emit each chunk not emitted before, without a lock.
///
/// The last emitted chunk stays open: its inode number cannot be recycled
/// while we hold it, so a new file at `F` always has a different identity.
/// (ext4 hands a freed inode number straight to the next file; a consumer
/// that only remembers the number misses chunks.)
fn look_forever(bus: &Bus, watcher: &mut Watcher, sink: &mut Sink) -> Result<()> {
    let mut last: Option<Chunk> = None;
    let mut warned_unusable = false;
    loop {
        let last_id = last.as_ref().map(|chunk| chunk.id);
        // A stat is cheaper than an open; open only when `F` changed.
        if bus.current_id()?.is_none_or(|id| Some(id) != last_id) {
            match bus.open_current()? {
                Current::Chunk(chunk) if Some(chunk.id) != last_id => {
                    sink.emit(&chunk.file, chunk.len)?;
                    last = Some(chunk);
                    warned_unusable = false;
                }
                Current::Unusable(kind) if !warned_unusable => {
                    log::warn!(
                        "{} is {kind}, not a chunk: waiting for the next one",
                        bus.path().display()
                    );
                    warned_unusable = true;
                }
                _ => {}
            }
        }
        watcher.wait_for_change()?;
    }
}

/// Lossless unicast: under the lock, emit the chunk at `F` and delete it;
/// an empty chunk ends the stream.
///
/// The chunk is emitted before it is deleted: a consumer killed in between
/// leaves it for the next consumer, which emits it again (at most one
/// duplicate, never a loss).
fn take_until_end_of_stream(bus: &Bus, watcher: &mut Watcher, sink: &mut Sink) -> Result<()> {
    bus.check_deletable_here()?;
    let mut lock = bus.lock_file()?;
    loop {
        watcher.wait_until(|| bus.exists())?;
        let guard = lock.acquire()?;
        let chunk = match bus.open_current()? {
            Current::Absent => continue,
            Current::Unusable(kind) => {
                return Err(Error::BadBusPath {
                    path: bus.path().to_owned(),
                    problem: format!("is {kind}, not a chunk"),
                });
            }
            Current::Chunk(chunk) => chunk,
        };
        bus.check_removable(&chunk)?;
        sink.emit(&chunk.file, chunk.len)?;
        bus.remove_current(&guard)?;
        // Unlock before closing: closing the last descriptor of a deleted
        // file frees it, which is slow on ext4, and producers need not wait.
        drop(guard);
        drop(chunk.file);
        if chunk.len == 0 {
            return Ok(());
        }
    }
}

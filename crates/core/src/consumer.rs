//! The consumer: wake-up → look at (lossy) or take (lossless) the chunk at `F`
//! → standard output.

use std::sync::PoisonError;

use crate::bus::{Bus, Chunk, Current};
use crate::error::{Error, Result};
use crate::sink::Sink;
use crate::stamp::Stamp;
use crate::stats::{self, SharedStats};
use crate::watch::Watcher;
use crate::{Format, Options, stamp, tar};

/// Writes the bus's chunks to standard output: every new chunk it sees
/// (lossy; never returns), or each chunk it takes until the end-of-stream
/// marker (lossless).
pub fn run(options: &Options) -> Result<()> {
    let bus = Bus::open(&options.path)?.stopped_by(options.stop);
    let stats = options.stats.clone();
    let mut output = Output {
        sink: Sink::stdout(options.output_method)?,
        format: options.format,
        stats: stats.clone(),
        max_chunk_size: options.max_chunk_size,
    };
    // The watcher exists before the first look, so no change is missed.
    let mut watcher = Watcher::new(&bus, options.file_monitoring, options.sleep_interval)?;
    let outcome = if options.lossless {
        take_until_end_of_stream(&bus, &mut watcher, &mut output)
    } else {
        look_forever(&bus, &mut watcher, &mut output)
    };
    if let Some(stats) = &stats {
        stats::report(stats);
    }
    outcome
}

/// Standard output, the format of the chunks, and the stats of what went
/// there if asked for.
struct Output {
    sink: Sink<'static>,
    format: Format,
    stats: Option<SharedStats>,
    /// Larger chunks are refused (a huge sparse file put at `F`, say).
    max_chunk_size: u64,
}

/// What a chunk carries: where its content lies in its file, and its stamp.
struct Content {
    offset: u64,
    len: u64,
    stamp: Option<Stamp>,
}

impl Output {
    /// Where the content of `chunk` lies, or why it is not a chunk of our
    /// format. Reads the stamp only when counting.
    fn content(&self, bus: &Bus, chunk: &Chunk) -> Result<Content> {
        let content = self.locate(bus, chunk)?;
        if content.len > self.max_chunk_size {
            return Err(Error::BadBusPath {
                path: bus.path().to_owned(),
                problem: format!(
                    "holds a chunk of {} bytes, more than --max-chunk-size {}",
                    content.len, self.max_chunk_size
                ),
            });
        }
        Ok(content)
    }

    /// Where the content of `chunk` lies, in our format.
    fn locate(&self, bus: &Bus, chunk: &Chunk) -> Result<Content> {
        match self.format {
            Format::Raw => Ok(Content {
                offset: 0,
                len: chunk.len,
                stamp: self.stats.as_ref().and_then(|_| stamp::read(&chunk.file)),
            }),
            // An empty file is an end-of-stream marker in either format.
            Format::Tar if chunk.len == 0 => Ok(Content {
                offset: 0,
                len: 0,
                stamp: None,
            }),
            Format::Tar => {
                let archive = tar::parse(&chunk.file, chunk.len).map_err(|error| match error {
                    // Replaced or taken by another machine (see Sink::emit_range).
                    tar::TarError::Read { source, .. }
                        if matches!(
                            source.raw_os_error(),
                            Some(libc::ESTALE) | Some(libc::ENOENT)
                        ) =>
                    {
                        Error::ChunkVanished
                    }
                    error => Error::BadBusPath {
                        path: bus.path().to_owned(),
                        problem: format!("is not a tar chunk: {error}"),
                    },
                })?;
                let stamp = match archive.stamp {
                    tar::ChunkStamp {
                        sequence: Some(sequence),
                        published_ns: Some(published_ns),
                    } => stamp::valid_sequence(sequence).map(|sequence| Stamp {
                        sequence,
                        published_ns,
                    }),
                    _ => None,
                };
                Ok(Content {
                    offset: archive.content_offset,
                    len: archive.content_len,
                    stamp,
                })
            }
        }
    }

    /// Writes the content of a chunk to standard output and counts it.
    fn emit(&mut self, chunk: &Chunk, content: &Content) -> Result<()> {
        let written = self
            .sink
            .emit_range(&chunk.file, content.offset, content.len)?;
        if let Some(stats) = &self.stats {
            let emitted_ns = stamp::now_ns();
            stats.lock().unwrap_or_else(PoisonError::into_inner).record(
                content.stamp,
                written,
                emitted_ns,
            );
        }
        Ok(())
    }
}

/// Lossy multicast: emit each chunk not emitted before, without a lock.
///
/// The last emitted chunk stays open: its inode number cannot be recycled
/// while we hold it, so a new file at `F` always has a different identity.
/// (ext4 hands a freed inode number straight to the next file; a consumer
/// that only remembers the number misses chunks.)
fn look_forever(bus: &Bus, watcher: &mut Watcher, output: &mut Output) -> Result<()> {
    let mut last: Option<Chunk> = None;
    let mut warned_unusable = false;
    loop {
        let last_id = last.as_ref().map(|chunk| chunk.id);
        // A stat is cheaper than an open; open only when `F` changed.
        if bus.current_id()?.is_none_or(|id| Some(id) != last_id) {
            match bus.open_current()? {
                Current::Chunk(chunk) if Some(chunk.id) != last_id => {
                    // A chunk that is not of our format is skipped, once.
                    match output
                        .content(bus, &chunk)
                        .and_then(|content| output.emit(&chunk, &content))
                    {
                        Ok(()) => {}
                        // One that vanished is missed, like any chunk
                        // replaced before we looked; it is not remembered as
                        // seen: on a path-based FUSE filesystem (bindfs) the
                        // identity `fstat` gave is that of whatever is at `F`
                        // by then, which may be a newer chunk, not yet read.
                        Err(Error::ChunkVanished) => {
                            looking_again(bus);
                            watcher.wait_for_change()?;
                            continue;
                        }
                        Err(error @ Error::BadBusPath { .. }) => log::warn!("{error}: skipped"),
                        Err(error) => return Err(error),
                    }
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
fn take_until_end_of_stream(bus: &Bus, watcher: &mut Watcher, output: &mut Output) -> Result<()> {
    let rights = bus.delete_rights()?;
    let mut lock = bus.lock_file()?;
    loop {
        watcher.wait_until(|| bus.exists())?;
        let guard = lock.acquire()?;
        let chunk = match bus.open_current()? {
            // Taken by another consumer since we looked. On a shared
            // filesystem a cached lookup can go on showing `F` for a while:
            // wait for the next change instead of spinning on the lock.
            Current::Absent => {
                log::info!(
                    "{}: taken by another consumer before us: looking again",
                    bus.path().display()
                );
                drop(guard);
                watcher.wait_for_change()?;
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
        // Unlock before closing: closing the last descriptor of a deleted
        // file frees it, which is slow on ext4, and producers need not wait.
        drop(guard);
        drop(chunk.file);
        if content.len == 0 {
            return Ok(());
        }
    }
}

/// Says that the chunk a consumer opened vanished before it could be read.
fn looking_again(bus: &Bus) {
    log::info!(
        "{}: {}: looking again",
        bus.path().display(),
        Error::ChunkVanished
    );
}

//! The consumer: wake-up → look at (lossy) or take (lossless) the chunk at `F`
//! → standard output.

use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::PoisonError;

use crate::bus::{Bus, Chunk, Current};
use crate::error::{Error, Result};
use crate::sink::Sink;
use crate::stamp::Stamp;
use crate::stats::{self, SharedStats};
use crate::watch::Watcher;
use crate::{Format, Options, replay, stamp, tar};

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
        stamps: false,
        _file: None,
    };
    // Where the bus's sequence stood when we started (see replay): read
    // before the watcher exists, so every chunk it may miss is after it.
    let baseline = replay::bus_counter(&bus);
    // The watcher exists before the first look, so no change is missed.
    let mut watcher = Watcher::new(&bus, options.file_monitoring, options.sleep_interval)?;
    let outcome = if options.lossless {
        take_until_end_of_stream(&bus, &mut watcher, &mut output)
    } else if replay::wanted(&bus, options) {
        replay::run(&bus, &mut watcher, &mut output, options, None, baseline)
    } else {
        look_forever(&bus, &mut watcher, &mut output, options, baseline)
    };
    if let Some(stats) = &stats {
        stats::report(stats);
    }
    outcome
}

/// Standard output, the format of the chunks, and the stats of what went
/// there if asked for.
pub(crate) struct Output {
    sink: Sink<'static>,
    format: Format,
    stats: Option<SharedStats>,
    /// Larger chunks are refused (a huge sparse file put at `F`, say).
    pub(crate) max_chunk_size: u64,
    /// Read every chunk's stamp, not only when counting (history needs them).
    pub(crate) stamps: bool,
    /// The file `sink` writes to, when it is not standard output; declared
    /// after `sink`, so it is closed after it.
    _file: Option<File>,
}

/// What a chunk carries: where its content lies in its file, and its stamp.
pub(crate) struct Content {
    offset: u64,
    pub(crate) len: u64,
    pub(crate) stamp: Option<Stamp>,
}

impl Output {
    /// Output to `file` instead of standard output (a consumer driven
    /// in-process: see [`replay::Session`]).
    pub(crate) fn to_file(
        file: File,
        options: &Options,
        stats: Option<SharedStats>,
    ) -> Result<Output> {
        // SAFETY: the descriptor belongs to `file`, which the Output owns
        // and never gives away, and which is dropped after `sink` (field
        // order), so the borrowed descriptor outlives every use.
        let fd = unsafe { BorrowedFd::borrow_raw(file.as_raw_fd()) };
        Ok(Output {
            sink: Sink::new(fd, options.output_method)?,
            format: options.format,
            stats,
            max_chunk_size: options.max_chunk_size,
            stamps: false,
            _file: Some(file),
        })
    }

    /// How chunks are stored at `F`.
    pub(crate) fn format(&self) -> Format {
        self.format
    }

    /// Where the content of `chunk` lies, or why it is not a chunk of our
    /// format. Reads the stamp only when counting or following history.
    pub(crate) fn content(&self, bus: &Bus, chunk: &Chunk) -> Result<Content> {
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
                stamp: (self.stamps || self.stats.is_some())
                    .then(|| stamp::read(&chunk.file))
                    .flatten(),
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

    /// Tells `--stats` that this consumer counts the stream from chunk
    /// `next`: chunks before its first one that it never got are missed.
    pub(crate) fn expect(&self, next: u64) {
        if let Some(stats) = &self.stats {
            stats
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .expect(next);
        }
    }

    /// Writes the content of a chunk to standard output and counts it.
    pub(crate) fn emit(&mut self, chunk: &Chunk, content: &Content) -> Result<()> {
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
///
/// A history directory appearing beside the bus (a producer started with
/// `--history`) turns this into the history consumer of [`replay`].
fn look_forever(
    bus: &Bus,
    watcher: &mut Watcher,
    output: &mut Output,
    options: &Options,
    baseline: Option<u64>,
) -> Result<()> {
    let mut last: Option<Chunk> = None;
    // The content of the last chunk, where the inode number cannot tell
    // chunks apart (see ContentDigest).
    let mut last_digest: Option<ContentDigest> = None;
    // Whether only the content tells chunks apart here (decided at the
    // first chunk; see ContentDigest).
    let mut compare_content = false;
    let mut warned_unusable = false;
    loop {
        let last_id = last.as_ref().map(|chunk| chunk.id);
        // A stat is cheaper than an open; open only when `F` changed (or
        // always, where only the content tells).
        if compare_content || bus.current_id()?.is_none_or(|id| Some(id) != last_id) {
            if crate::history::exists(bus) {
                return replay::run(bus, watcher, output, options, last, baseline);
            }
            match bus.open_current()? {
                Current::Chunk(chunk)
                    if Some(chunk.id) != last_id
                        || last_digest.is_some_and(|digest| !digest.matches(&chunk)) =>
                {
                    compare_content = compare_content || ContentDigest::needed(bus, &chunk);
                    let digest = if compare_content {
                        match ContentDigest::of(&chunk) {
                            Some(digest) => Some(digest),
                            // Gone before we could read it: look again.
                            None => {
                                looking_again(bus);
                                watcher.wait_for_change()?;
                                continue;
                            }
                        }
                    } else {
                        None
                    };
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
                    last_digest = digest;
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

/// What a lossy consumer keeps of the last chunk it wrote where the inode
/// number cannot tell two chunks apart: a shared filesystem whose server
/// keeps no open state (NFSv3) gives a new chunk the number of one deleted
/// while we still had it open, and without extended attributes there is no
/// stamp to compare. Modification times have a server's granularity (a
/// second on some), and chunks of a burst often have one size: what is left
/// is the content. Reading it costs one more read of each chunk, and of the
/// chunk at `F` at each look while nothing new comes; it is done only there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ContentDigest {
    len: u64,
    hash: u64,
}

impl ContentDigest {
    /// Whether only the content tells chunks apart: the bus is on a shared
    /// filesystem without extended attributes.
    fn needed(bus: &Bus, chunk: &Chunk) -> bool {
        bus.remote_filesystem().is_some() && stamp::unsupported(&chunk.file)
    }

    fn of(chunk: &Chunk) -> Option<ContentDigest> {
        use std::hash::Hasher;
        let mut hasher = std::hash::DefaultHasher::new();
        // On the stack: this runs at every look while nothing new comes.
        let mut buffer = [0u8; 16 * 1024];
        let mut offset = 0u64;
        while offset < chunk.len {
            let want = usize::try_from(chunk.len - offset)
                .unwrap_or(usize::MAX)
                .min(buffer.len());
            match rustix::io::pread(&chunk.file, &mut buffer[..want], offset) {
                Ok(0) => break,
                Ok(read) => {
                    hasher.write(&buffer[..read]);
                    offset += read as u64;
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => return None,
            }
        }
        Some(ContentDigest {
            len: offset,
            hash: hasher.finish(),
        })
    }

    /// Whether `chunk` has this content (a chunk that cannot be read does
    /// not: opening it again tells more).
    fn matches(&self, chunk: &Chunk) -> bool {
        chunk.len == self.len && ContentDigest::of(chunk) == Some(*self)
    }
}

/// Says that the chunk a consumer opened vanished before it could be read.
pub(crate) fn looking_again(bus: &Bus) {
    log::info!(
        "{}: {}: looking again",
        bus.path().display(),
        Error::ChunkVanished
    );
}

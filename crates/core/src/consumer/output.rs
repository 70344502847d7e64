//! The output a consumer writes chunks to, with the format of the chunks
//! and the `--stats` counts of what went there.

use std::sync::PoisonError;

use super::options::ConsumerOptions;
use super::stats::SharedStats;
use crate::bus::format::Format;
use crate::bus::identity::stat_from_server;
use crate::bus::stamp::{self, Stamp};
use crate::bus::verified_read;
use crate::bus::{Bus, Chunk};
use crate::error::{Error, Report, Result};
use crate::sink::Sink;
use crate::tar;

/// Where a consumer writes (standard output, in the command), the format of
/// the chunks, and the stats of what went there if asked for.
pub(crate) struct Output<'fd> {
    sink: Sink<'fd>,
    format: Format,
    stats: Option<SharedStats>,
    /// Larger chunks are refused (a huge sparse file put at `F`, say).
    pub(crate) max_chunk_size: u64,
    /// Read every chunk's stamp, not only when counting (history needs them).
    pub(crate) stamps: bool,
    /// Read each chunk whole into memory and check it before writing it
    /// out, rather than moving it without a copy: the bus is on a network
    /// or FUSE filesystem (see [`crate::bus::verified_read`]).
    read_first: bool,
    /// The chunk being checked, when `read_first` (at most
    /// `max_chunk_size` bytes).
    read_buffer: Vec<u8>,
}

/// What a chunk carries: where its content lies in its file, and its stamp.
pub(crate) struct Content {
    offset: u64,
    pub(crate) len: u64,
    pub(crate) stamp: Option<Stamp>,
}

impl<'fd> Output<'fd> {
    /// Output to `sink`, of chunks in the format `options` give, counted in
    /// their `stats`, read from `bus` (read whole and checked first where
    /// it is on a network or FUSE filesystem).
    pub(crate) fn new(sink: Sink<'fd>, options: &ConsumerOptions, bus: &Bus) -> Output<'fd> {
        Output {
            sink,
            format: options.bus.format,
            stats: options.stats.clone(),
            max_chunk_size: options.max_chunk_size,
            stamps: false,
            read_first: bus.remote_filesystem().is_some(),
            read_buffer: Vec::new(),
        }
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
                stamp: if self.stamps || self.stats.is_some() {
                    // Gone under us: not a chunk without a stamp (see
                    // stamp::try_read).
                    stamp::try_read(&chunk.file).map_err(|_| Error::ChunkVanished)?
                } else {
                    None
                },
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
                        problem: format!("is not a tar chunk: {}", Report(&error)),
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
    ///
    /// On a network or FUSE filesystem the chunk is first read whole and
    /// checked ([`Output::read_checked`]); a chunk that fails the check
    /// is [`Error::ChunkVanished`], with nothing written.
    pub(crate) fn emit(&mut self, chunk: &Chunk, content: &Content) -> Result<()> {
        let written = if self.read_first {
            self.read_checked(chunk, content)?;
            self.sink.write_all(&self.read_buffer)?
        } else {
            self.sink
                .emit_range(&chunk.file, content.offset, content.len)?
        };
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

    /// Reads the content of `chunk` into `read_buffer`, whole, past the
    /// client's page cache, and checks that it is the chunk opened (see
    /// [`crate::bus::verified_read`]).
    ///
    /// A read that stops short of the size the server gave when the chunk
    /// was opened (the client stopped at a size it cached for another file
    /// at the same name) fails the check. Where the filesystem refused
    /// `O_DIRECT`, the pages read may be another file's, of the same size:
    /// the server is asked again after the read, and the file must still be
    /// the one opened (on a path-based FUSE filesystem, which answers for
    /// the name: still the file at `F`), with the same size. That narrows
    /// the window; only `O_DIRECT` closes it.
    fn read_checked(&mut self, chunk: &Chunk, content: &Content) -> Result<()> {
        verified_read::read_whole(
            &chunk.file,
            content.offset,
            content.len,
            &mut self.read_buffer,
        )?;
        if verified_read::is_direct(&chunk.file) {
            return Ok(());
        }
        match stat_from_server(&chunk.file) {
            Ok(after) if after.version.id == chunk.id && after.len == chunk.len => Ok(()),
            _ => {
                log::debug!("the chunk changed while it was read through the cache: looking again");
                Err(Error::ChunkVanished)
            }
        }
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

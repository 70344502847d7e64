//! The output a consumer writes chunks to, with the format of the chunks
//! and the `--stats` counts of what went there.

use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::PoisonError;

use super::stats::SharedStats;
use crate::Options;
use crate::bus::format::Format;
use crate::bus::stamp::{self, Stamp};
use crate::bus::{Bus, Chunk};
use crate::error::{Error, Report, Result};
use crate::sink::Sink;
use crate::tar;

/// Standard output, the format of the chunks, and the stats of what went
/// there if asked for.
pub(crate) struct Output {
    pub(super) sink: Sink<'static>,
    pub(super) format: Format,
    pub(super) stats: Option<SharedStats>,
    /// Larger chunks are refused (a huge sparse file put at `F`, say).
    pub(crate) max_chunk_size: u64,
    /// Read every chunk's stamp, not only when counting (history needs them).
    pub(crate) stamps: bool,
    /// The file `sink` writes to, when it is not standard output; declared
    /// after `sink`, so it is closed after it.
    pub(super) _file: Option<File>,
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

/// Says that the chunk a consumer opened vanished before it could be read.
pub(crate) fn looking_again(bus: &Bus) {
    log::info!(
        "{}: {}: looking again",
        bus.path().display(),
        Error::ChunkVanished
    );
}

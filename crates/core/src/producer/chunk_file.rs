//! Building a chunk in its temporary file, three ways:
//!
//! - [`InputMethod::Splice`] moves data from a standard input that is a pipe
//!   into the file with `splice(2)`, without passing through user space;
//! - [`InputMethod::Write`] reads into a buffer and writes it to the file;
//! - [`InputMethod::Mmap`] reserves `--block-size` bytes with `fallocate`,
//!   maps them, and lets `read(2)` land in the mapping, then truncates the
//!   file to the bytes received.
//!
//! Which is fastest is a measured question (`cargo bench --bench data_path`,
//! figures in `results/README.md`): on ext4, splice from a pipe beats write
//! by 5 to 25% at every block size, and the `fallocate` and page faults of
//! the mapping cost two to four times what the copy they save does. So the
//! default ([`InputMethod::Auto`]) is splice for a pipe and write for
//! anything else (a file, a terminal, a socket).

use std::fs::File;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use memmap2::{MmapMut, MmapOptions};
use rustix::fs::FallocateFlags;
use rustix::io::Errno;
use rustix::pipe::SpliceFlags;

use crate::bus::Bus;
use crate::bus::format::Format;
use crate::bus::temp_file::TempFile;
use crate::error::{Error, Result};
use crate::tar;

/// How a producer moves input into a chunk's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum InputMethod {
    /// The fastest measured method: `Splice` for a pipe, `Write` otherwise.
    #[default]
    Auto,
    /// `read(2)` into an mmap of the reserved file, falling back to `Write`
    /// where the filesystem cannot reserve space.
    Mmap,
    /// `read(2)` into a buffer, then `write(2)` to the file.
    Write,
    /// `splice(2)` from a pipe into the file; `Write` if input is not a pipe.
    Splice,
}

impl InputMethod {
    /// The method's name as given on the command line (`--input-method`).
    pub fn name(self) -> &'static str {
        match self {
            InputMethod::Auto => "auto",
            InputMethod::Mmap => "mmap",
            InputMethod::Write => "write",
            InputMethod::Splice => "splice",
        }
    }

    /// The concrete method for an input of this type (`Auto` resolved,
    /// `Splice` only for pipes).
    pub fn for_input(self, input_is_pipe: bool) -> InputMethod {
        match self {
            InputMethod::Auto | InputMethod::Splice if input_is_pipe => InputMethod::Splice,
            InputMethod::Auto | InputMethod::Splice => InputMethod::Write,
            chosen => chosen,
        }
    }
}

/// The alignment of the bytes read into a buffer.
const PAGE: usize = 4096;

/// A chunk being filled.
#[derive(Debug)]
pub struct ChunkBuilder {
    temp: TempFile,
    store: Store,
    filled: usize,
    capacity: usize,
    format: Format,
}

#[derive(Debug)]
enum Store {
    Mapped(MmapMut),
    /// The bytes received so far, `buffer[start..]`: `start` puts them at a
    /// page boundary (a read into a misaligned buffer measured up to three
    /// times slower); the capacity is reused from chunk to chunk
    /// ([`ChunkBuilder::with_buffer`]).
    Buffered {
        buffer: Vec<u8>,
        start: usize,
    },
    /// Input is spliced straight into the file.
    Spliced,
    /// A chunk of capacity zero: the end-of-stream marker.
    Empty,
}

impl ChunkBuilder {
    /// Creates the temporary file for a chunk of at most `capacity` bytes.
    ///
    /// With `anonymous_temp` false, or where `O_TMPFILE` is unsupported, the
    /// file has a name that other users of the directory could open; it is
    /// then never mapped (a truncation by someone else would raise SIGBUS).
    ///
    /// In [`Format::Tar`] the content starts after room for the archive's
    /// header, which is written when the chunk is published (it carries the
    /// sequence number, known only then).
    pub fn new(
        bus: &Bus,
        capacity: usize,
        method: InputMethod,
        anonymous_temp: bool,
        format: Format,
    ) -> Result<Self> {
        Self::with_buffer(bus, capacity, method, anonymous_temp, format, Vec::new())
    }

    /// Like [`ChunkBuilder::new`], reusing `buffer` (its capacity; its
    /// content is discarded) where the method reads through a buffer, so
    /// that a producer allocates one buffer for all its chunks rather than
    /// one per chunk. [`ChunkBuilder::finish_with_buffer`] hands it back.
    pub fn with_buffer(
        bus: &Bus,
        capacity: usize,
        method: InputMethod,
        anonymous_temp: bool,
        format: Format,
        buffer: Vec<u8>,
    ) -> Result<Self> {
        let temp = bus.create_temp(anonymous_temp)?;
        let base = format.content_offset();
        let buffered = |mut buffer: Vec<u8>| {
            buffer.clear();
            buffer.reserve_exact(capacity.saturating_add(PAGE));
            let start = buffer.as_ptr().align_offset(PAGE).min(PAGE - 1);
            buffer.resize(start, 0);
            Store::Buffered { buffer, start }
        };
        let store = match method {
            _ if capacity == 0 => Store::Empty,
            InputMethod::Splice => Store::Spliced,
            InputMethod::Mmap if temp.is_anonymous() => {
                match map_reserved(&temp.file, base as usize + capacity, bus.dir_path())? {
                    Some(map) => Store::Mapped(map),
                    None => buffered(buffer),
                }
            }
            _ => buffered(buffer),
        };
        Ok(ChunkBuilder {
            temp,
            store,
            filled: 0,
            capacity,
            format,
        })
    }

    /// Moves at most `max` bytes (no more than the room left) from `input`
    /// into the chunk; returns the count, 0 at end of input.
    pub fn read_from(&mut self, input: BorrowedFd<'_>, max: usize) -> rustix::io::Result<usize> {
        let max = max.min(self.capacity - self.filled);
        let base = self.format.content_offset() as usize;
        let count = match &mut self.store {
            Store::Mapped(map) => {
                let start = base + self.filled;
                rustix::io::read(input, &mut map[start..start + max])?
            }
            Store::Buffered { buffer, start } => {
                // Read into the spare capacity: nothing is zeroed first.
                // (Reserved already: this never moves the buffer.)
                buffer.reserve_exact(max);
                let (read, _) = rustix::io::read(input, &mut buffer.spare_capacity_mut()[..max])?;
                let count = read.len();
                // SAFETY: `read` initialized the `count` bytes after the
                // vector's length, which is `start + self.filled`.
                unsafe { buffer.set_len(*start + self.filled + count) };
                count
            }
            Store::Spliced => {
                let mut offset = (base + self.filled) as u64;
                rustix::pipe::splice(
                    input,
                    None,
                    &self.temp.file,
                    Some(&mut offset),
                    max,
                    SpliceFlags::NONBLOCK,
                )?
            }
            Store::Empty => 0,
        };
        self.filled += count;
        Ok(count)
    }

    /// Bytes the chunk can still take.
    pub fn room(&self) -> usize {
        self.capacity - self.filled
    }

    /// Bytes in the chunk so far.
    pub fn len(&self) -> usize {
        self.filled
    }

    /// Whether the chunk has no bytes yet.
    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// Completes the file: exactly the bytes received (in tar format, with
    /// room for the header before them and the archive's end after them),
    /// ready to publish.
    pub fn finish(self, dir_path: &Path) -> Result<TempFile> {
        Ok(self.finish_with_buffer(dir_path)?.0)
    }

    /// Like [`ChunkBuilder::finish`], also handing back the buffer for the
    /// next chunk ([`ChunkBuilder::with_buffer`]); empty if the method used none.
    pub fn finish_with_buffer(self, dir_path: &Path) -> Result<(TempFile, Vec<u8>)> {
        let ChunkBuilder {
            temp,
            store,
            filled,
            format,
            ..
        } = self;
        let base = format.content_offset();
        let buffer = match store {
            Store::Mapped(map) => {
                drop(map);
                rustix::fs::ftruncate(&temp.file, base + filled as u64)
                    .map_err(|errno| Error::file("cannot size a chunk in", dir_path, errno))?;
                Vec::new()
            }
            Store::Buffered { buffer, start } => {
                temp.file
                    .write_all_at(&buffer[start..start + filled], base)
                    .map_err(|error| Error::file("cannot write a chunk in", dir_path, error))?;
                buffer
            }
            Store::Spliced | Store::Empty => Vec::new(),
        };
        Ok((end_archive(temp, filled as u64, format, dir_path)?, buffer))
    }
}

/// In tar format, writes the end of the archive after `content_len` bytes
/// of content and notes the length for the header; in raw format, nothing.
fn end_archive(
    mut temp: TempFile,
    content_len: u64,
    format: Format,
    dir_path: &Path,
) -> Result<TempFile> {
    if format == Format::Tar {
        temp.file
            .write_all_at(
                &tar::trailer(content_len),
                format.content_offset() + content_len,
            )
            .map_err(|error| Error::file("cannot write a chunk in", dir_path, error))?;
        temp.set_tar_content_len(content_len);
    }
    Ok(temp)
}

/// Reserves `capacity` bytes of disk for `file` and maps them writable.
/// Returns `None` when the filesystem cannot reserve space, so the caller uses
/// a buffer instead.
fn map_reserved(file: &File, capacity: usize, dir_path: &Path) -> Result<Option<MmapMut>> {
    // Reserving first turns "disk full" into an error here, instead of a
    // SIGBUS when a page of the mapping is first written.
    match rustix::fs::fallocate(file, FallocateFlags::empty(), 0, capacity as u64) {
        Ok(()) => {}
        Err(Errno::OPNOTSUPP) | Err(Errno::NOSYS) => return Ok(None),
        Err(errno) => {
            return Err(Error::file(
                "cannot reserve space for a chunk in",
                dir_path,
                errno,
            ));
        }
    }
    // SAFETY: the file is an anonymous O_TMPFILE that only this process can
    // reach until it is published, and it is unmapped before that, so nobody
    // can truncate it under the mapping (which would raise SIGBUS). Its space
    // is reserved, so writing a page cannot fail for lack of disk either.
    let map = unsafe { MmapOptions::new().len(capacity).map_mut(file) };
    match map {
        Ok(map) => Ok(Some(map)),
        Err(error) if error.raw_os_error() == Some(libc::ENODEV) => Ok(None),
        Err(error) => Err(Error::file("cannot map a chunk in", dir_path, error)),
    }
}

/// A complete chunk of `bytes` in a new temporary file, ready to publish.
pub fn write_chunk(
    bus: &Bus,
    bytes: &[u8],
    anonymous_temp: bool,
    format: Format,
) -> Result<TempFile> {
    let temp = bus.create_temp(anonymous_temp)?;
    temp.file
        .write_all_at(bytes, format.content_offset())
        .map_err(|error| Error::file("cannot write a chunk in", bus.dir_path(), error))?;
    end_archive(temp, bytes.len() as u64, format, bus.dir_path())
}

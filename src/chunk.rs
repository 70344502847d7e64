//! Building a chunk in its temporary file.
//!
//! The default ([`InputMethod::Mmap`]) reserves `--block-size` bytes with
//! `fallocate`, maps them, and lets `read(2)` from standard input land in the
//! mapping: the bytes go from the input straight into the page cache of the
//! file that will be published, with no buffer in between. Then the mapping is
//! dropped and the file truncated to the bytes received.
//!
//! [`InputMethod::Write`] reads into a buffer and writes it to the file: one
//! more copy, but it works where `fallocate` or `mmap` do not.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use memmap2::{MmapMut, MmapOptions};
use rustix::fs::FallocateFlags;
use rustix::io::Errno;

use crate::bus::{Bus, TempFile};
use crate::error::{Error, Result};

/// How a producer moves input into a chunk's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum InputMethod {
    /// `read(2)` into an mmap of the reserved file, falling back to `Write`
    /// where the filesystem cannot reserve space.
    #[default]
    Mmap,
    /// `read(2)` into a buffer, then `write(2)` to the file.
    Write,
}

/// A chunk being filled.
#[derive(Debug)]
pub struct ChunkBuilder {
    temp: TempFile,
    store: Store,
    filled: usize,
}

#[derive(Debug)]
enum Store {
    Mapped(MmapMut),
    Buffered(Vec<u8>),
    /// A chunk of capacity zero: the end-of-stream marker.
    Empty,
}

impl ChunkBuilder {
    /// Creates the temporary file for a chunk of at most `capacity` bytes.
    ///
    /// With `anonymous_temp` false, or where `O_TMPFILE` is unsupported, the
    /// file has a name that other users of the directory could open; it is
    /// then never mapped (a truncation by someone else would raise SIGBUS).
    pub fn new(
        bus: &Bus,
        capacity: usize,
        method: InputMethod,
        anonymous_temp: bool,
    ) -> Result<Self> {
        let temp = bus.create_temp(anonymous_temp)?;
        let store = if capacity == 0 {
            Store::Empty
        } else if method == InputMethod::Mmap && temp.is_anonymous() {
            match map_reserved(&temp.file, capacity, bus.dir_path())? {
                Some(map) => Store::Mapped(map),
                None => Store::Buffered(Vec::with_capacity(capacity)),
            }
        } else {
            Store::Buffered(Vec::with_capacity(capacity))
        };
        Ok(ChunkBuilder {
            temp,
            store,
            filled: 0,
        })
    }

    /// Whether input lands directly in a mapping of the file.
    pub fn is_mapped(&self) -> bool {
        matches!(self.store, Store::Mapped(_))
    }

    /// The free space of the chunk, for `read(2)` to fill. Call
    /// [`ChunkBuilder::advance`] with the count read.
    pub fn spare(&mut self) -> &mut [u8] {
        match &mut self.store {
            Store::Mapped(map) => &mut map[self.filled..],
            Store::Buffered(buffer) => {
                let capacity = buffer.capacity();
                buffer.resize(capacity, 0);
                &mut buffer[self.filled..]
            }
            Store::Empty => &mut [],
        }
    }

    /// Records that `bytes` more were written into [`ChunkBuilder::spare`].
    pub fn advance(&mut self, bytes: usize) {
        self.filled += bytes;
    }

    /// Bytes in the chunk so far.
    pub fn len(&self) -> usize {
        self.filled
    }

    /// Whether the chunk has no bytes yet.
    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// Completes the file: exactly the bytes received, ready to publish.
    pub fn finish(self, dir_path: &Path) -> Result<TempFile> {
        let ChunkBuilder {
            mut temp,
            store,
            filled,
        } = self;
        match store {
            Store::Mapped(map) => {
                drop(map);
                rustix::fs::ftruncate(&temp.file, filled as u64)
                    .map_err(|errno| Error::file("cannot size a chunk in", dir_path, errno))?;
            }
            Store::Buffered(buffer) => {
                temp.file
                    .write_all(&buffer[..filled])
                    .map_err(|error| Error::file("cannot write a chunk in", dir_path, error))?;
            }
            Store::Empty => {}
        }
        Ok(temp)
    }
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

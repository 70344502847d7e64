//! Moving a chunk's bytes to standard output, without a copy through user
//! space where the kernel allows it.
//!
//! | stdout is      | first choice        | then       | last resort   |
//! |----------------|---------------------|------------|---------------|
//! | a pipe         | `splice`            | `sendfile` | `pread`+`write` |
//! | a regular file | `copy_file_range`   | `sendfile` | `pread`+`write` |
//! | anything else  | `sendfile`          |            | `pread`+`write` |
//!
//! A method the kernel refuses (EINVAL, EOPNOTSUPP, EXDEV, ...) is dropped for
//! the rest of the run and the next one continues from the same offset.
//! None of them maps the chunk, so a chunk truncated in place by a foreign
//! writer yields a short count, never SIGBUS.

use std::fmt;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::event::{PollFd, PollFlags};
use rustix::fs::FileType;
use rustix::io::Errno;
use rustix::pipe::SpliceFlags;

use crate::error::{Error, Result};
use crate::pipe_size::PipeSize;

/// How chunks are written to standard output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OutputMethod {
    /// `splice` to a pipe, `copy-file-range` to a regular file, `sendfile` otherwise.
    #[default]
    Auto,
    /// `splice(2)` from the chunk to a pipe.
    Splice,
    /// `sendfile(2)`.
    Sendfile,
    /// `copy_file_range(2)` to a regular file.
    CopyFileRange,
    /// `pread(2)` into a buffer, then `write(2)`.
    Write,
}

/// The largest count passed to one system call.
const MAX_STEP: u64 = 1 << 30;
/// Buffer size of the `pread`+`write` fallback.
const COPY_BUFFER: usize = 128 * 1024;

/// An output (standard output in the command), with the method chosen for it.
pub struct Sink<'fd> {
    out: Descriptor<'fd>,
    method: OutputMethod,
    buffer: Vec<u8>,
    /// The output pipe's size, grown to the largest chunk written so far
    /// (see [`crate::pipe_size`]).
    pipe: PipeSize,
}

impl fmt::Debug for Sink<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sink")
            .field("method", &self.method)
            .finish()
    }
}

/// The descriptor a sink writes to: the caller's, or its own.
enum Descriptor<'fd> {
    Borrowed(BorrowedFd<'fd>),
    Owned(OwnedFd),
}

impl AsFd for Descriptor<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Descriptor::Borrowed(fd) => fd.as_fd(),
            Descriptor::Owned(fd) => fd.as_fd(),
        }
    }
}

impl Sink<'static> {
    /// Output to `out`, which the sink owns (and closes when dropped),
    /// written as [`Sink::new`] says.
    pub fn owning(out: OwnedFd, requested: OutputMethod) -> Result<Sink<'static>> {
        Sink::to(Descriptor::Owned(out), requested)
    }
}

impl<'fd> Sink<'fd> {
    /// Output to `out` (standard output in the command), written with
    /// `requested`, or the best method for what `out` is.
    pub fn new(out: BorrowedFd<'fd>, requested: OutputMethod) -> Result<Sink<'fd>> {
        Sink::to(Descriptor::Borrowed(out), requested)
    }

    fn to(out: Descriptor<'fd>, requested: OutputMethod) -> Result<Sink<'fd>> {
        let stat = rustix::fs::fstat(&out)
            .map_err(|errno| Error::stream("standard output is not usable", errno))?;
        let method = match requested {
            OutputMethod::Auto => match FileType::from_raw_mode(stat.st_mode) {
                FileType::Fifo => OutputMethod::Splice,
                FileType::RegularFile => OutputMethod::CopyFileRange,
                _ => OutputMethod::Sendfile,
            },
            chosen => chosen,
        };
        log::debug!("output: {}", method.name());
        Ok(Sink {
            pipe: PipeSize::of(out.as_fd()),
            out,
            method,
            buffer: Vec::new(),
        })
    }

    /// The method in use now.
    pub fn method(&self) -> OutputMethod {
        self.method
    }

    /// Writes the first `len` bytes of `file` (fewer if it is shorter now)
    /// to standard output. Returns the count written.
    pub fn emit(&mut self, file: &File, len: u64) -> Result<u64> {
        self.emit_range(file, 0, len)
    }

    /// Writes the `len` bytes of `file` from offset `start` (fewer if it is
    /// shorter now) to the output. Returns the count written.
    pub fn emit_range(&mut self, file: &File, start: u64, len: u64) -> Result<u64> {
        self.pipe.grow(
            self.out.as_fd(),
            usize::try_from(len).unwrap_or(usize::MAX),
            "output",
        );
        let mut offset = start;
        let end = start.saturating_add(len);
        while offset < end {
            let step = (end - offset).min(MAX_STEP) as usize;
            let moved = match self.method {
                OutputMethod::Splice => rustix::pipe::splice(
                    file,
                    Some(&mut offset),
                    &self.out,
                    None,
                    step,
                    SpliceFlags::empty(),
                ),
                OutputMethod::Sendfile | OutputMethod::Auto => {
                    rustix::fs::sendfile(&self.out, file, Some(&mut offset), step)
                }
                OutputMethod::CopyFileRange => {
                    rustix::fs::copy_file_range(file, Some(&mut offset), &self.out, None, step)
                }
                OutputMethod::Write => self.copy_through_buffer(file, &mut offset, step),
            };
            match moved {
                // The file is shorter than it was: emit what is there.
                Ok(0) => break,
                Ok(_) | Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => self.wait_writable()?,
                Err(errno) if self.method != OutputMethod::Write && refuses_method(errno) => {
                    let next = self.method.fallback();
                    log::info!(
                        "output: {} refused ({errno}), falling back to {}",
                        self.method.name(),
                        next.name()
                    );
                    self.method = next;
                }
                Err(errno) => return Err(failure(file, self.out.as_fd(), start, offset, errno)),
            }
        }
        Ok(offset - start)
    }

    /// Writes all of `bytes` (a chunk read into memory and checked, on a
    /// shared filesystem: see `bus::verified_read`) to the output.
    /// Returns the count written.
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<u64> {
        self.pipe.grow(self.out.as_fd(), bytes.len(), "output");
        let mut written = 0;
        while written < bytes.len() {
            match rustix::io::write(&self.out, &bytes[written..]) {
                Ok(count) => written += count,
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => self.wait_writable()?,
                Err(errno) => return Err(Error::stream("cannot write to standard output", errno)),
            }
        }
        Ok(written as u64)
    }

    /// One `pread` and the `write`s to pass it on; advances `offset` by the
    /// bytes written.
    fn copy_through_buffer(
        &mut self,
        file: &File,
        offset: &mut u64,
        step: usize,
    ) -> rustix::io::Result<usize> {
        self.buffer.resize(COPY_BUFFER, 0);
        let want = step.min(COPY_BUFFER);
        let read = rustix::io::pread(file, &mut self.buffer[..want], *offset)?;
        let mut written = 0;
        while written < read {
            match rustix::io::write(&self.out, &self.buffer[written..read]) {
                Ok(count) => written += count,
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => {
                    let mut fds = [PollFd::new(&self.out, PollFlags::OUT)];
                    let _ = rustix::event::poll(&mut fds, None);
                }
                Err(errno) => {
                    *offset += written as u64;
                    return Err(errno);
                }
            }
        }
        *offset += read as u64;
        Ok(read)
    }

    /// Waits until a non-blocking standard output can take more.
    fn wait_writable(&self) -> Result<()> {
        let mut fds = [PollFd::new(&self.out, PollFlags::OUT)];
        match rustix::event::poll(&mut fds, None) {
            Ok(_) | Err(Errno::INTR) => Ok(()),
            Err(errno) => Err(Error::stream("cannot wait for standard output", errno)),
        }
    }
}

impl OutputMethod {
    /// The method's name as given on the command line.
    pub fn name(self) -> &'static str {
        match self {
            OutputMethod::Auto => "auto",
            OutputMethod::Splice => "splice",
            OutputMethod::Sendfile => "sendfile",
            OutputMethod::CopyFileRange => "copy-file-range",
            OutputMethod::Write => "write",
        }
    }

    fn fallback(self) -> OutputMethod {
        match self {
            OutputMethod::Splice | OutputMethod::CopyFileRange => OutputMethod::Sendfile,
            _ => OutputMethod::Write,
        }
    }
}

/// What a failed move of chunk bytes means. `splice` and `sendfile` do not
/// say which side failed, so the chunk is read once more at `offset`: if
/// that fails too, it was the read.
///
/// On a shared filesystem another machine can replace or delete the chunk
/// while we hold it open, and reading it then fails with `ESTALE` (NFS),
/// `ENOENT` (some FUSE filesystems), or `EFAULT` or `EIO` (some FUSE NFS
/// clients, for a file that no longer exists). Before any byte went out
/// that is a chunk missed ([`Error::ChunkVanished`]), not a failure.
///
/// The second read can succeed where the move failed with `ESTALE` (seen
/// on the NFS-like FUSE test filesystem, about once in a hundred bursts), so
/// a "file gone" errno is also put down to the read when the output cannot
/// give it: a pipe, socket or terminal never says `ESTALE`, `ENOENT` or
/// `EFAULT`.
fn failure(file: &File, out: BorrowedFd<'_>, start: u64, offset: u64, errno: Errno) -> Error {
    let read_failed = match rustix::io::pread(file, &mut [0u8; 1], offset) {
        Ok(_) | Err(Errno::INTR) => None,
        Err(read_errno) => Some(read_errno),
    };
    let output_is_stream = rustix::fs::fstat(out).is_ok_and(|stat| {
        rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile
    });
    let read_failed = read_failed.or_else(|| {
        (output_is_stream && matches!(errno, Errno::STALE | Errno::NOENT | Errno::FAULT))
            .then_some(errno)
    });
    let Some(read_errno) = read_failed else {
        return Error::stream("cannot write to standard output", errno);
    };
    let vanished = match read_errno {
        // Our buffers are valid: EFAULT from a read into them is the
        // filesystem's word (some FUSE NFS clients) that the file is gone.
        Errno::STALE | Errno::NOENT | Errno::FAULT => true,
        // Also a local disk's error: only a file that is gone is "vanished".
        Errno::IO => rustix::fs::fstat(file).map_or(true, |stat| stat.st_nlink == 0),
        _ => false,
    };
    match (vanished, offset == start) {
        (true, true) => Error::ChunkVanished,
        (true, false) => Error::stream(
            "cannot read the rest of a chunk that another machine replaced or deleted \
             meanwhile (the output holds part of it)",
            read_errno,
        ),
        (false, _) => Error::stream("cannot read the chunk being written out", read_errno),
    }
}

/// Errors that mean "not with this method", as opposed to a failing output.
fn refuses_method(errno: Errno) -> bool {
    // EBADF: copy_file_range to a file opened with O_APPEND.
    matches!(
        errno,
        Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP | Errno::XDEV | Errno::BADF | Errno::SPIPE
    )
}

//! Reading the producer's input: what kind of file it is, waiting for it
//! to be readable, and growing its pipe ([`crate::pipe_size`]).

use std::os::fd::BorrowedFd;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags};
use rustix::fs::OFlags;
use rustix::io::Errno;

use crate::error::{Error, Result};
use crate::pipe_size::PipeSize;
use crate::stop::StopFlag;
use crate::watch;

/// Standard input, and its pipe's size, grown to the block size once a read
/// finds it full (see [`crate::pipe_size`]).
pub(super) struct Input<'fd> {
    pub(super) fd: BorrowedFd<'fd>,
    pipe: PipeSize,
    block_size: usize,
}

impl<'fd> Input<'fd> {
    pub(super) fn new(fd: BorrowedFd<'fd>, block_size: usize) -> Self {
        Input {
            fd,
            pipe: PipeSize::of(fd),
            block_size,
        }
    }

    /// Notes a read of `count` bytes.
    pub(super) fn read(&mut self, count: usize) {
        if self.pipe.was_full(count) {
            self.pipe.grow(self.fd, self.block_size, "input");
        }
    }
}

/// Waits until standard input has data or an end (`None`: without limit).
/// Returns false if the time ran out first.
pub(super) fn wait_readable(
    stdin: BorrowedFd<'_>,
    wait: Option<Duration>,
    stop: StopFlag,
) -> Result<bool> {
    let timeout = wait.map(watch::timeout);
    let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
    loop {
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(0) => return Ok(false),
            Ok(_) if fds[0].revents().contains(PollFlags::NVAL) => {
                return Err(Error::stream("cannot read standard input", Errno::BADF));
            }
            // Readable, hung up or in error: the read will tell which.
            Ok(_) => return Ok(true),
            // A signal: stop if it asks us to, otherwise wait on (a little
            // longer than asked, which the chunker's clock corrects).
            Err(Errno::INTR) => stop.check()?,
            Err(errno) => return Err(Error::stream("cannot wait for standard input", errno)),
        }
    }
}

/// What standard input is, as far as reading it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum InputKind {
    Pipe,
    /// A regular file: a read never blocks (it returns 0 at the end).
    File,
    /// A terminal, a socket, a device: a read may block.
    Other,
}

/// What `fd` is, as far as reading it goes.
pub(super) fn input_kind(fd: BorrowedFd<'_>) -> InputKind {
    match rustix::fs::fstat(fd).map(|stat| rustix::fs::FileType::from_raw_mode(stat.st_mode)) {
        Ok(rustix::fs::FileType::Fifo) => InputKind::Pipe,
        Ok(rustix::fs::FileType::RegularFile) => InputKind::File,
        _ => InputKind::Other,
    }
}

/// Makes reads of `stdin` block (`--blocking-read`).
pub(super) fn clear_nonblocking(stdin: BorrowedFd<'_>) -> Result<()> {
    let flags = rustix::fs::fcntl_getfl(stdin)
        .map_err(|errno| Error::stream("cannot inspect standard input", errno))?;
    if flags.contains(OFlags::NONBLOCK) {
        rustix::fs::fcntl_setfl(stdin, flags - OFlags::NONBLOCK)
            .map_err(|errno| Error::stream("cannot make standard input blocking", errno))?;
    }
    Ok(())
}

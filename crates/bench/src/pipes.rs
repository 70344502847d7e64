//! Non-blocking pipe ends for the benchmark's side of each run, and a
//! bounded wait on several of them.
//!
//! Only the benchmark's ends are non-blocking: `O_NONBLOCK` belongs to the
//! open file description, and the two ends of a pipe are two descriptions,
//! so the child's end keeps the blocking behaviour a program like `cat`
//! expects.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::OFlags;
use rustix::io::Errno;
use rustix::pipe::PipeFlags;

use super::BenchError;

/// A new pipe, `(read end, write end)`, both close-on-exec.
pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd), BenchError> {
    rustix::pipe::pipe_with(PipeFlags::CLOEXEC)
        .map_err(|errno| BenchError::io("cannot create a pipe", errno))
}

/// Sets `O_NONBLOCK` on our end of a pipe.
pub(crate) fn set_nonblocking(fd: &OwnedFd) -> Result<(), BenchError> {
    let flags = rustix::fs::fcntl_getfl(fd)
        .map_err(|errno| BenchError::io("cannot inspect a pipe", errno))?;
    rustix::fs::fcntl_setfl(fd, flags | OFlags::NONBLOCK)
        .map_err(|errno| BenchError::io("cannot make a pipe non-blocking", errno))
}

/// What a non-blocking write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wrote {
    /// This many bytes went in.
    Bytes(usize),
    /// The pipe is full.
    Full,
    /// The reader is gone.
    Broken,
}

/// Writes what the pipe takes now.
pub(crate) fn write(fd: &OwnedFd, data: &[u8]) -> Result<Wrote, BenchError> {
    loop {
        return match rustix::io::write(fd, data) {
            Ok(count) => Ok(Wrote::Bytes(count)),
            Err(Errno::AGAIN) => Ok(Wrote::Full),
            Err(Errno::INTR) => continue,
            Err(Errno::PIPE) => Ok(Wrote::Broken),
            Err(errno) => Err(BenchError::io("cannot write to a producer's input", errno)),
        };
    }
}

/// What a non-blocking read did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadOutcome {
    /// This many bytes arrived.
    Bytes(usize),
    /// Nothing yet.
    Empty,
    /// The writer is gone and everything was read.
    End,
}

/// Reads what the pipe holds now.
pub(crate) fn read(fd: &OwnedFd, buffer: &mut [u8]) -> Result<ReadOutcome, BenchError> {
    loop {
        return match rustix::io::read(fd, &mut *buffer) {
            Ok(0) => Ok(ReadOutcome::End),
            Ok(count) => Ok(ReadOutcome::Bytes(count)),
            Err(Errno::AGAIN) => Ok(ReadOutcome::Empty),
            Err(Errno::INTR) => continue,
            Err(errno) => Err(BenchError::io("cannot read a consumer's output", errno)),
        };
    }
}

/// One pipe end to wait on, and for what.
pub(crate) struct Interest<'a> {
    /// The descriptor.
    pub fd: &'a OwnedFd,
    /// Wait until it can be written (else: read).
    pub write: bool,
}

/// Waits until one of `interests` is ready or `timeout` passes (at most
/// [`super::interrupt::CHECK_INTERVAL`]); returns which are ready.
/// A signal ends the wait early with nothing ready.
pub(crate) fn wait(interests: &[Interest<'_>], timeout: Duration) -> Result<Vec<bool>, BenchError> {
    let timeout = timeout.min(super::interrupt::CHECK_INTERVAL);
    let mut fds: Vec<PollFd<'_>> = interests
        .iter()
        .map(|interest| {
            let events = if interest.write {
                PollFlags::OUT
            } else {
                PollFlags::IN
            };
            PollFd::from_borrowed_fd(interest.fd.as_fd(), events)
        })
        .collect();
    // At most CHECK_INTERVAL, so the conversion cannot fail; saturate anyway.
    let timeout = Timespec::try_from(timeout).unwrap_or(Timespec {
        tv_sec: i64::MAX,
        tv_nsec: 999_999_999,
    });
    match rustix::event::poll(&mut fds, Some(&timeout)) {
        Ok(_) => Ok(fds.iter().map(|fd| !fd.revents().is_empty()).collect()),
        Err(Errno::INTR) => Ok(vec![false; fds.len()]),
        Err(errno) => Err(BenchError::io("cannot wait on pipes", errno)),
    }
}

//! Bigger pipe buffers on standard input and output, for bulk transfers.
//!
//! A Linux pipe holds 64 KiB by default, so a producer filling a 1 MiB chunk
//! from a pipe, or a consumer writing one out to a pipe, would stop sixteen
//! times per chunk to let the process at the other end run. A pipe grown to
//! the chunk size (at most [`LARGEST`]) lets each side move a chunk per turn:
//! lossless 1 MiB chunks through pipes went from 41–69% to 77–93% of
//! `cat | cat` in the same runs (`results/pipe-size.md`).
//!
//! Pipes grow only when bulk data needs it: the producer's input once a read
//! finds it full, a consumer's output for a chunk larger than it holds. The
//! kernel counts a user's pipe memory (`/proc/sys/fs/pipe-user-pages-soft`),
//! and a trickle of small chunks has no use for more.

use std::os::fd::BorrowedFd;

/// The largest size asked for: the default of `/proc/sys/fs/pipe-max-size`,
/// beyond which an unprivileged process is refused.
pub const LARGEST: usize = 1 << 20;

/// The size of a pipe this process reads or writes, grown on demand.
#[derive(Debug, Clone, Copy)]
pub struct PipeSize {
    /// `None`: not a pipe, or one that could not grow (not asked again).
    size: Option<usize>,
}

impl PipeSize {
    /// The size of `fd` if it is a pipe.
    pub fn of(fd: BorrowedFd<'_>) -> PipeSize {
        PipeSize {
            size: rustix::pipe::fcntl_getpipe_size(fd).ok(),
        }
    }

    /// Whether `moved` bytes (read in one call) filled the whole pipe: then
    /// the writer at the other end is waiting on us, and a bigger pipe would
    /// have held more.
    pub fn was_full(&self, moved: usize) -> bool {
        self.size.is_some_and(|size| moved >= size)
    }

    /// Grows the pipe `fd` to hold `wanted` bytes (at most [`LARGEST`]);
    /// never shrinks it. A refusal (the user's pipe memory limit, a lower
    /// `pipe-max-size`) leaves it as it was and is not retried: the size only
    /// changes how often the two ends take turns, never what goes through.
    pub fn grow(&mut self, fd: BorrowedFd<'_>, wanted: usize, what: &str) {
        let wanted = wanted.min(LARGEST);
        let Some(size) = self.size.filter(|&size| size < wanted) else {
            return;
        };
        self.size = match rustix::pipe::fcntl_setpipe_size(fd, wanted) {
            Ok(grown) => {
                log::debug!("{what}: pipe grown from {size} to {grown} bytes");
                Some(grown)
            }
            Err(errno) => {
                log::debug!("{what}: pipe left at {size} bytes ({errno})");
                None
            }
        };
    }
}

//! When to cut the input into a chunk. Pure logic, no I/O, so that it can be
//! tested and fuzzed with any sequence of reads and pauses.
//!
//! A chunk is published when it is full (`--block-size` bytes), when its
//! oldest byte has waited `--sleep-interval` (so input that trickles in is
//! never held back longer than that, unlike the reference, which waits for a
//! quiet spell), or at end of input. With a sleep interval of zero a chunk is
//! published as soon as no more input is ready.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

/// The rules for cutting input into chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkPolicy {
    /// The most bytes a chunk may hold.
    pub block_size: NonZeroUsize,
    /// The longest a byte may wait in a partly filled chunk.
    pub max_delay: Duration,
}

/// The state of the chunk being filled.
#[derive(Debug, Clone)]
pub struct Chunker {
    policy: ChunkPolicy,
    filled: usize,
    oldest: Option<Instant>,
}

/// What the producer should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Wait for input (forever, or at most this long) and read at most `room` bytes.
    Read {
        /// How long to wait for input before publishing; `None` when the chunk is empty.
        wait: Option<Duration>,
        /// How many bytes the chunk can still take.
        room: usize,
    },
    /// Publish the chunk now.
    Publish,
}

impl Chunker {
    /// An empty chunk under `policy`.
    pub fn new(policy: ChunkPolicy) -> Self {
        Chunker {
            policy,
            filled: 0,
            oldest: None,
        }
    }

    /// The rules in force.
    pub fn policy(&self) -> ChunkPolicy {
        self.policy
    }

    /// Bytes in the current chunk.
    pub fn filled(&self) -> usize {
        self.filled
    }

    /// What to do at time `now`.
    pub fn next(&self, now: Instant) -> Next {
        let room = self.policy.block_size.get() - self.filled;
        if room == 0 {
            return Next::Publish;
        }
        let wait = self
            .oldest
            .map(|oldest| (oldest + self.policy.max_delay).saturating_duration_since(now));
        Next::Read { wait, room }
    }

    /// Records that `bytes` arrived at `now` (at most the room left).
    pub fn record_input(&mut self, bytes: usize, now: Instant) {
        debug_assert!(self.filled + bytes <= self.policy.block_size.get());
        if bytes > 0 && self.oldest.is_none() {
            self.oldest = Some(now);
        }
        self.filled += bytes;
    }

    /// Ends the current chunk, returning its size, and starts an empty one.
    pub fn cut(&mut self) -> usize {
        self.oldest = None;
        std::mem::take(&mut self.filled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(block_size: usize, delay_ms: u64) -> ChunkPolicy {
        ChunkPolicy {
            block_size: NonZeroUsize::new(block_size).expect("test block size is positive"),
            max_delay: Duration::from_millis(delay_ms),
        }
    }

    #[test]
    fn empty_chunk_waits_for_input_without_limit() {
        let chunker = Chunker::new(policy(10, 100));
        assert_eq!(
            chunker.next(Instant::now()),
            Next::Read {
                wait: None,
                room: 10
            }
        );
    }

    #[test]
    fn full_chunk_is_published() {
        let mut chunker = Chunker::new(policy(10, 100));
        let now = Instant::now();
        chunker.record_input(10, now);
        assert_eq!(chunker.next(now), Next::Publish);
        assert_eq!(chunker.cut(), 10);
        assert_eq!(
            chunker.next(now),
            Next::Read {
                wait: None,
                room: 10
            }
        );
    }

    #[test]
    fn oldest_byte_bounds_the_wait_even_when_input_keeps_trickling() {
        let mut chunker = Chunker::new(policy(100, 100));
        let start = Instant::now();
        chunker.record_input(1, start);
        chunker.record_input(1, start + Duration::from_millis(60));
        let at = start + Duration::from_millis(80);
        assert_eq!(
            chunker.next(at),
            Next::Read {
                wait: Some(Duration::from_millis(20)),
                room: 98
            }
        );
        let late = start + Duration::from_millis(150);
        assert_eq!(
            chunker.next(late),
            Next::Read {
                wait: Some(Duration::ZERO),
                room: 98
            }
        );
    }
}

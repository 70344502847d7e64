//! When to cut the input into a chunk. Pure logic, no I/O, so that it can be
//! tested and fuzzed with any sequence of reads and pauses.
//!
//! A chunk is published when it is full (`--block-size` bytes), at end of
//! input, or when waiting longer would not gather more:
//!
//! - input that arrives after a *quiet spell* (no input for a tenth of
//!   `--sleep-interval`, [`QUIET_FRACTION`]) is published as soon as no more
//!   input is ready: a lone record, or the first of a burst, goes out at once;
//! - input that arrives while input keeps coming is gathered into a bigger
//!   chunk, published when the input pauses for a quiet spell or when its
//!   oldest byte has waited `--sleep-interval`, whichever comes first.
//!
//! So no byte waits longer than `--sleep-interval` (the reference instead
//! waits for a quiet spell of the whole interval, however long input
//! trickles), and under sustained input the chunks are no more frequent than
//! one per interval plus the full ones. With a sleep interval of zero every
//! chunk is published as soon as no more input is ready.
//!
//! With a record delimiter ([`RecordChunker`]) chunks end only at record
//! boundaries: a chunk holds as many whole records as fit in the block size,
//! and a record longer than that is a chunk of its own (split only beyond
//! [`MAX_RECORD`]), so a lossy consumer never prints half a line. The same
//! rule applies to complete records.

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

/// A quiet spell is this fraction of the sleep interval (`max_delay /
/// QUIET_FRACTION`): 10 ms by default, short enough that one record every
/// 20 ms is published at once, long enough that a stream of thousands of
/// records a second is gathered.
pub const QUIET_FRACTION: u32 = 10;

impl ChunkPolicy {
    /// How long input must pause to count as a quiet spell.
    pub fn quiet(&self) -> Duration {
        self.max_delay / QUIET_FRACTION
    }
}

/// The state of the chunk being filled.
#[derive(Debug, Clone)]
pub struct Chunker {
    policy: ChunkPolicy,
    filled: usize,
    /// When the chunk's first byte arrived.
    oldest: Option<Instant>,
    /// When input last arrived, in this chunk or an earlier one.
    latest: Option<Instant>,
    /// The chunk began after a quiet spell: publish it as soon as no more
    /// input is ready.
    eager: bool,
}

/// What the producer should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Wait for input (forever, or at most this long) and read at most `room` bytes.
    Read {
        /// How long to wait for input before publishing; `None` when the
        /// chunk is empty; zero to publish unless more input is ready now.
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
            latest: None,
            eager: false,
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
        let wait = match (self.oldest, self.latest) {
            (Some(_), _) if self.eager => Some(Duration::ZERO),
            (Some(oldest), Some(latest)) => {
                let deadline = (oldest + self.policy.max_delay).min(latest + self.policy.quiet());
                Some(deadline.saturating_duration_since(now))
            }
            _ => None,
        };
        Next::Read { wait, room }
    }

    /// Records that `bytes` arrived at `now` (at most the room left).
    pub fn record_input(&mut self, bytes: usize, now: Instant) {
        debug_assert!(self.filled + bytes <= self.policy.block_size.get());
        if bytes == 0 {
            return;
        }
        if self.oldest.is_none() {
            self.oldest = Some(now);
            self.eager = self
                .latest
                .is_none_or(|latest| now.saturating_duration_since(latest) >= self.policy.quiet());
        }
        self.latest = Some(now);
        self.filled += bytes;
    }

    /// Whether the current chunk began after a quiet spell, so that it is
    /// published as soon as no more input is ready.
    pub fn is_eager(&self) -> bool {
        self.eager && self.oldest.is_some()
    }

    /// Ends the current chunk, returning its size, and starts an empty one.
    pub fn cut(&mut self) -> usize {
        self.oldest = None;
        self.eager = false;
        std::mem::take(&mut self.filled)
    }
}

/// The longest record a chunk of whole records may hold, whatever the block
/// size: a longer one is split into pieces of this size (with a warning).
pub const MAX_RECORD: usize = 16 << 20;

/// The rules for cutting input into chunks of whole records
/// (`--delimiter`, `--lines`, `--null`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPolicy {
    /// The most bytes of whole records a chunk holds; a single record longer
    /// than this is a chunk of its own.
    pub block_size: NonZeroUsize,
    /// The longest a complete record may wait before it is published.
    pub max_delay: Duration,
    /// The byte that ends a record.
    pub delimiter: u8,
    /// The longest chunk a single record may make ([`MAX_RECORD`], or the
    /// block size if that is larger); beyond it the record is split.
    pub max_record: usize,
}

/// Cuts input into chunks that end at record boundaries.
///
/// Unlike [`Chunker`], it sees the bytes: the producer keeps the input not
/// yet published in a buffer (`pending`), asks [`RecordChunker::next`] what
/// to do, and publishes `pending[..len]` when told, keeping the rest (the
/// start of an incomplete record) for the next chunk.
#[derive(Debug, Clone)]
pub struct RecordChunker {
    policy: RecordPolicy,
    /// When `pending` first held a complete record.
    ready_since: Option<Instant>,
    /// When input last arrived.
    latest: Option<Instant>,
    /// Whether `pending` is empty (nothing read since the last chunk, or
    /// nothing left over from it).
    empty: bool,
    /// The pending input began after a quiet spell: its complete records
    /// are published at once.
    eager: bool,
}

/// What the producer should do next with its pending input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordNext {
    /// Wait for input (forever, or at most this long) and read at most `room` bytes.
    Read {
        /// How long to wait before publishing; `None` without a complete record.
        wait: Option<Duration>,
        /// How many bytes the pending buffer may still take.
        room: usize,
    },
    /// Publish the first `len` pending bytes.
    Publish {
        /// The chunk's length.
        len: usize,
        /// True if the chunk splits a record longer than `max_record`.
        splits_record: bool,
    },
    /// Nothing left to publish (at end of input).
    Done,
}

impl RecordPolicy {
    /// How long input must pause to count as a quiet spell.
    pub fn quiet(&self) -> Duration {
        self.max_delay / QUIET_FRACTION
    }

    /// The record policy for `delimiter` with the block size and delay of `raw`.
    pub fn new(raw: ChunkPolicy, delimiter: u8) -> Self {
        RecordPolicy {
            block_size: raw.block_size,
            max_delay: raw.max_delay,
            delimiter,
            max_record: MAX_RECORD.max(raw.block_size.get()),
        }
    }
}

impl RecordChunker {
    /// A chunker with nothing pending.
    pub fn new(policy: RecordPolicy) -> Self {
        RecordChunker {
            policy,
            ready_since: None,
            latest: None,
            empty: true,
            eager: false,
        }
    }

    /// How long input must pause to count as a quiet spell.
    fn quiet(&self) -> Duration {
        self.policy.quiet()
    }

    /// The rules in force.
    pub fn policy(&self) -> RecordPolicy {
        self.policy
    }

    /// What to do with `pending` at time `now`; `at_end` once the input has
    /// ended (then incomplete records are published too).
    pub fn next(&self, pending: &[u8], now: Instant, at_end: bool) -> RecordNext {
        let RecordPolicy {
            block_size,
            max_delay,
            delimiter,
            max_record,
        } = self.policy;
        let block_size = block_size.get();
        let publish = |len| RecordNext::Publish {
            len,
            splits_record: false,
        };
        if pending.is_empty() {
            return if at_end {
                RecordNext::Done
            } else {
                RecordNext::Read {
                    wait: None,
                    room: block_size,
                }
            };
        }
        let window = &pending[..pending.len().min(block_size)];
        let whole_records = window
            .iter()
            .rposition(|&byte| byte == delimiter)
            .map(|at| at + 1);
        if pending.len() >= block_size {
            if let Some(len) = whole_records {
                return publish(len);
            }
            // The first record is longer than a block: a chunk of its own.
            let limit = pending.len().min(max_record);
            if let Some(at) = pending[..limit].iter().position(|&byte| byte == delimiter) {
                return publish(at + 1);
            }
            if pending.len() >= max_record {
                return RecordNext::Publish {
                    len: max_record,
                    splits_record: true,
                };
            }
            if at_end {
                return publish(pending.len());
            }
            return RecordNext::Read {
                wait: None,
                room: max_record - pending.len(),
            };
        }
        if at_end {
            return publish(pending.len());
        }
        let room = block_size - pending.len();
        // After a quiet spell complete records go out at once; while input
        // keeps coming they wait for a quiet spell, or `max_delay` at most.
        let deadline = |since: Instant| {
            if self.eager {
                since
            } else {
                let quiet_again = self.latest.map_or(since, |latest| latest + self.quiet());
                (since + max_delay).min(quiet_again.max(since))
            }
        };
        match (whole_records, self.ready_since) {
            // Strictly later: with a zero delay, input that is ready is read first.
            (Some(len), Some(since)) if now > deadline(since) => publish(len),
            (Some(_), Some(since)) => RecordNext::Read {
                wait: Some(deadline(since).saturating_duration_since(now)),
                room,
            },
            // Only the start of a record: nothing may be published yet.
            _ => RecordNext::Read { wait: None, room },
        }
    }

    /// Records that `new` bytes arrived at `now` (already appended to pending).
    pub fn record_input(&mut self, new: &[u8], now: Instant) {
        if new.is_empty() {
            return;
        }
        if self.empty {
            self.eager = self
                .latest
                .is_none_or(|latest| now.saturating_duration_since(latest) >= self.quiet());
            self.empty = false;
        }
        self.latest = Some(now);
        if self.ready_since.is_none() && new.contains(&self.policy.delimiter) {
            self.ready_since = Some(now);
        }
    }

    /// Records that a chunk was published at `now`, leaving `rest` pending.
    pub fn published(&mut self, rest: &[u8], now: Instant) {
        self.ready_since = rest.contains(&self.policy.delimiter).then_some(now);
        // What is left over came while input kept coming.
        self.empty = rest.is_empty();
        self.eager = false;
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
    fn input_after_a_quiet_spell_is_published_as_soon_as_no_more_is_ready() {
        let mut chunker = Chunker::new(policy(100, 100));
        let start = Instant::now();
        // The very first input follows a quiet spell of unknown length.
        chunker.record_input(5, start);
        let eager = Next::Read {
            wait: Some(Duration::ZERO),
            room: 95,
        };
        assert_eq!(chunker.next(start), eager);
        // More that is ready at once joins the chunk; it stays eager.
        chunker.record_input(5, start + Duration::from_micros(50));
        assert_eq!(
            chunker.next(start + Duration::from_micros(60)),
            Next::Read {
                wait: Some(Duration::ZERO),
                room: 90
            }
        );
        assert_eq!(chunker.cut(), 10);
        // 20 ms without input is a quiet spell (a tenth of 100 ms is 10 ms).
        let later = start + Duration::from_millis(20);
        chunker.record_input(5, later);
        assert_eq!(chunker.next(later), eager);
    }

    #[test]
    fn input_that_keeps_coming_waits_for_a_quiet_spell_or_the_delay() {
        let mut chunker = Chunker::new(policy(100, 100));
        let start = Instant::now();
        chunker.record_input(1, start);
        chunker.cut();
        // 1 ms after the last input: not quiet, so gather.
        let first = start + Duration::from_millis(1);
        chunker.record_input(1, first);
        assert_eq!(
            chunker.next(first),
            Next::Read {
                wait: Some(Duration::from_millis(10)),
                room: 99
            }
        );
        // Input every 5 ms keeps it gathering, but the oldest byte bounds
        // the wait: 100 ms after it, whatever comes.
        for step in 1..=19 {
            chunker.record_input(1, first + Duration::from_millis(5 * step));
        }
        let at = first + Duration::from_millis(96);
        assert_eq!(
            chunker.next(at),
            Next::Read {
                wait: Some(Duration::from_millis(4)),
                room: 80
            }
        );
        let late = first + Duration::from_millis(150);
        assert_eq!(
            chunker.next(late),
            Next::Read {
                wait: Some(Duration::ZERO),
                room: 80
            }
        );
    }

    /// Drives a chunker with `count` inputs of `size` bytes `every` apart,
    /// publishing when told (reads and publishes take no time); returns the
    /// sizes of the chunks.
    fn drive_steady(policy: ChunkPolicy, count: u32, size: usize, every: Duration) -> Vec<usize> {
        let mut chunker = Chunker::new(policy);
        let start = Instant::now();
        let mut now = start;
        let mut chunks = Vec::new();
        for index in 0..count {
            let arrival = start + every * index;
            // Until the input arrives, publish whatever falls due.
            loop {
                match chunker.next(now) {
                    Next::Publish => chunks.push(chunker.cut()),
                    Next::Read {
                        wait: Some(wait), ..
                    } if now + wait < arrival => {
                        now += wait;
                        chunks.push(chunker.cut());
                    }
                    Next::Read { .. } => break,
                }
            }
            now = arrival;
            chunker.record_input(size, now);
        }
        chunks.push(chunker.cut());
        chunks
    }

    #[test]
    fn sustained_input_makes_no_more_than_one_chunk_per_interval_besides_full_ones() {
        // 10,000 records of 64 bytes a second for one second, 64 KiB blocks:
        // the chunks are due to the 100 ms bound, so about ten of them.
        let chunks = drive_steady(
            policy(64 << 10, 100),
            10_000,
            64,
            Duration::from_micros(100),
        );
        assert_eq!(chunks.iter().sum::<usize>(), 640_000);
        assert!(
            (10..=12).contains(&chunks.len()),
            "{} chunks: {chunks:?}",
            chunks.len()
        );
        // One record every 20 ms: each one after a quiet spell, each its own chunk.
        let chunks = drive_steady(policy(64 << 10, 100), 50, 32, Duration::from_millis(20));
        assert_eq!(chunks, vec![32; 50]);
    }

    fn records(block_size: usize, max_record: usize) -> RecordChunker {
        RecordChunker::new(RecordPolicy {
            block_size: NonZeroUsize::new(block_size).expect("positive"),
            max_delay: Duration::from_millis(100),
            delimiter: b'\n',
            max_record,
        })
    }

    fn publish(len: usize) -> RecordNext {
        RecordNext::Publish {
            len,
            splits_record: false,
        }
    }

    #[test]
    fn a_full_block_is_cut_after_its_last_whole_record() {
        let chunker = records(10, 100);
        assert_eq!(
            chunker.next(b"abc\ndef\ngh", Instant::now(), false),
            publish(8)
        );
    }

    #[test]
    fn a_record_longer_than_a_block_is_a_chunk_of_its_own() {
        let chunker = records(4, 100);
        let now = Instant::now();
        assert_eq!(
            chunker.next(b"abcdef", now, false),
            RecordNext::Read {
                wait: None,
                room: 94
            }
        );
        assert_eq!(chunker.next(b"abcdefg\nxy\n", now, false), publish(8));
    }

    #[test]
    fn a_record_beyond_the_hard_limit_is_split() {
        let chunker = records(4, 8);
        assert_eq!(
            chunker.next(b"abcdefghij", Instant::now(), false),
            RecordNext::Publish {
                len: 8,
                splits_record: true
            }
        );
    }

    #[test]
    fn complete_records_wait_at_most_the_delay_and_partial_ones_wait_for_their_end() {
        let mut chunker = records(100, 1000);
        let start = Instant::now();
        // Input before: what follows within a quiet spell (10 ms) is gathered.
        chunker.record_input(b"x\n", start);
        chunker.published(b"", start);
        let first = start + Duration::from_millis(1);
        chunker.record_input(b"ab", first);
        assert_eq!(
            chunker.next(b"ab", first + Duration::from_secs(9), false),
            RecordNext::Read {
                wait: None,
                room: 98
            }
        );
        let later = first + Duration::from_millis(1);
        chunker.record_input(b"\ncd", later);
        // Complete: out after a quiet spell of 10 ms...
        assert_eq!(
            chunker.next(b"ab\ncd", later + Duration::from_millis(4), false),
            RecordNext::Read {
                wait: Some(Duration::from_millis(6)),
                room: 95
            }
        );
        assert_eq!(
            chunker.next(b"ab\ncd", later + Duration::from_millis(11), false),
            publish(3)
        );
        // ... or, while input keeps coming, 100 ms after it was complete.
        let mut pending = b"ab\ncd".to_vec();
        for step in 1..=12 {
            chunker.record_input(b"e", later + Duration::from_millis(8 * step));
            pending.push(b'e');
        }
        assert_eq!(
            chunker.next(&pending, later + Duration::from_millis(96), false),
            RecordNext::Read {
                wait: Some(Duration::from_millis(4)),
                room: 100 - pending.len()
            }
        );
        assert_eq!(
            chunker.next(&pending, later + Duration::from_millis(101), false),
            publish(3)
        );
        chunker.published(&pending[3..], later);
        assert_eq!(
            chunker.next(&pending[3..], later + Duration::from_secs(9), false),
            RecordNext::Read {
                wait: None,
                room: 100 - pending.len() + 3
            }
        );
    }

    #[test]
    fn a_record_after_a_quiet_spell_is_published_at_once() {
        let mut chunker = records(100, 1000);
        let start = Instant::now();
        chunker.record_input(b"hello\n", start);
        // Strictly later than its arrival: input ready with it is read first.
        assert_eq!(
            chunker.next(b"hello\n", start, false),
            RecordNext::Read {
                wait: Some(Duration::ZERO),
                room: 94
            }
        );
        assert_eq!(
            chunker.next(b"hello\n", start + Duration::from_micros(1), false),
            publish(6)
        );
        chunker.published(b"", start);
        // 20 ms later (a quiet spell is 10 ms): at once again, even when the
        // record comes in two pieces.
        let later = start + Duration::from_millis(20);
        chunker.record_input(b"wor", later);
        let end = later + Duration::from_millis(5);
        chunker.record_input(b"ld\n", end);
        assert_eq!(
            chunker.next(b"world\n", end + Duration::from_micros(1), false),
            publish(6)
        );
    }

    #[test]
    fn at_end_of_input_the_incomplete_record_is_published_too() {
        let chunker = records(4, 100);
        let now = Instant::now();
        assert_eq!(chunker.next(b"ab", now, true), publish(2));
        assert_eq!(chunker.next(b"a\nbcdef", now, true), publish(2));
        assert_eq!(chunker.next(b"", now, true), RecordNext::Done);
    }
}

//! The properties of `filebus_core::testing::cut`, shared by the `chunker` fuzz target
//! (fuzz/fuzz_targets/chunker.rs) and the corpus replay test
//! (the integration tests' corpus replay).
//!
//! The chunkers are pure: they are driven here the way the producer drives
//! them, by a synthetic clock and a script of input that arrives in pieces
//! with pauses between them, read by reads of any size. For any script:
//!
//! - the published chunks, in order, are the input exactly;
//! - no chunk is empty;
//! - `Chunker`: no chunk exceeds the block size, and no chunk is published
//!   later than `max_delay` after its first byte was read; a chunk whose
//!   first byte came after a quiet spell (no input for `policy.quiet()`, or
//!   no input before) is published the moment no more input is ready (here,
//!   where reads take no time, at the instant of its first byte) or when
//!   full; any other chunk is published when full, at end of input, or once
//!   the input has been quiet for `quiet()` or its first byte has waited
//!   `max_delay`, never earlier (so sustained input makes few chunks);
//! - `RecordChunker`: every chunk ends at a record boundary (except the last
//!   one at end of input and the pieces of a record split at `max_record`),
//!   a chunk longer than the block size is a single record no longer than
//!   `max_record`, and no complete record waits longer than `max_delay` (plus
//!   the instant the producer needs to notice) before it is published; when
//!   the pending input began after a quiet spell, its first complete record
//!   waits no longer than that instant; otherwise a chunk that is not forced
//!   (by a full block or the end of input) waits until the input has been
//!   quiet for `quiet()` or its first complete record for `max_delay`;
//! - the drive ends: every step either moves time or input forward.
//!
//! Script layout: byte 0 picks the chunker (even: `Chunker`, odd:
//! `RecordChunker`); bytes 1-2 the block size (1 to 300); byte 3 the delay in
//! milliseconds; byte 4 how much longer than the block size `max_record` is.
//! Then pieces: a pause in milliseconds before it arrives, its length, the
//! most bytes one read may return while it is the newest (0: no limit), and
//! its bytes (records end at `\n`).

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use filebus_core::testing::cut::{
    ChunkPolicy, Chunker, Next, RecordChunker, RecordNext, RecordPolicy,
};

/// How long the producer takes, at least, to notice that a wait ran out.
const NOTICE: Duration = Duration::from_micros(1);

/// Input arriving at one instant.
struct Piece {
    at: Duration,
    bytes: Vec<u8>,
    /// The most bytes one read returns (0: no limit).
    read_cap: usize,
}

struct Script {
    block_size: usize,
    max_delay: Duration,
    max_record: usize,
    pieces: Vec<Piece>,
}

impl Script {
    fn parse(data: &[u8]) -> Option<(bool, Script)> {
        let (head, mut rest) = (data.get(..5)?, data.get(5..)?);
        let block_size = 1 + usize::from(u16::from_le_bytes([head[1], head[2]])) % 300;
        let mut pieces = Vec::new();
        let mut at = Duration::ZERO;
        while let [pause, len, read_cap, tail @ ..] = rest {
            let len = usize::from(*len).min(tail.len());
            at += Duration::from_millis(u64::from(*pause));
            // An empty piece is a pause only: nothing wakes the producer.
            if len > 0 {
                pieces.push(Piece {
                    at,
                    bytes: tail[..len].to_vec(),
                    read_cap: usize::from(*read_cap),
                });
            }
            rest = &tail[len..];
        }
        let script = Script {
            block_size,
            max_delay: Duration::from_millis(u64::from(head[3])),
            max_record: block_size + usize::from(head[4]),
            pieces,
        };
        Some((head[0] % 2 == 1, script))
    }

    fn input(&self) -> Vec<u8> {
        self.pieces
            .iter()
            .flat_map(|piece| piece.bytes.clone())
            .collect()
    }

    /// A bound on the steps of a drive that makes progress.
    fn step_limit(&self) -> usize {
        100 + 10 * (self.input().len() + self.pieces.len())
    }
}

/// Standard input: the pipe, filled as pieces arrive.
struct Input<'a> {
    pieces: &'a [Piece],
    next: usize,
    pipe: VecDeque<u8>,
    read_cap: usize,
}

impl<'a> Input<'a> {
    /// The script's input, none of it arrived yet.
    fn new(pieces: &'a [Piece]) -> Self {
        Input {
            pieces,
            next: 0,
            pipe: VecDeque::new(),
            read_cap: 0,
        }
    }

    fn arrive(&mut self, now: Duration) {
        while let Some(piece) = self.pieces.get(self.next).filter(|piece| piece.at <= now) {
            self.pipe.extend(&piece.bytes);
            self.read_cap = piece.read_cap;
            self.next += 1;
        }
    }

    /// One read of at most `room` bytes; empty if nothing is ready.
    fn read(&mut self, room: usize) -> Vec<u8> {
        let cap = if self.read_cap == 0 {
            usize::MAX
        } else {
            self.read_cap
        };
        let count = room.min(cap).min(self.pipe.len());
        self.pipe.drain(..count).collect()
    }

    /// When the next piece arrives; `None` at end of input.
    fn next_arrival(&self) -> Option<Duration> {
        self.pieces.get(self.next).map(|piece| piece.at)
    }
}

pub fn check_chunking(data: &[u8]) {
    let Some((records, script)) = Script::parse(data) else {
        return;
    };
    let output = if records {
        drive_record_chunker(&script)
    } else {
        drive_chunker(&script)
    };
    assert!(
        output == script.input(),
        "the chunks are not the input: {} bytes out of {}",
        output.len(),
        script.input().len()
    );
}

/// Drives `Chunker` as `producer::fill` does; returns the chunks, joined.
fn drive_chunker(script: &Script) -> Vec<u8> {
    let block_size = script.block_size;
    let policy = ChunkPolicy {
        block_size: NonZeroUsize::new(block_size).unwrap_or(NonZeroUsize::MIN),
        max_delay: script.max_delay,
    };
    let mut chunker = Chunker::new(policy);
    let base = Instant::now();
    let mut now = Duration::ZERO;
    let mut input = Input::new(&script.pieces);
    let mut chunk: Vec<u8> = Vec::new();
    let mut first_byte_at = None;
    let mut output = Vec::new();
    // When input was last read, and whether the chunk began after a quiet spell.
    let mut last_read_at: Option<Duration> = None;
    let mut eager = false;
    for _ in 0..script.step_limit() {
        input.arrive(now);
        let (wait, room) = match chunker.next(base + now) {
            Next::Publish => {
                assert_eq!(chunker.cut(), chunk.len(), "the chunker lost count");
                assert_eq!(chunk.len(), block_size, "published before full");
                publish_chunk(&mut output, &mut chunk, first_byte_at.take(), now, script);
                continue;
            }
            Next::Read { wait, room } => (wait, room),
        };
        assert_eq!(room, block_size - chunk.len(), "wrong room");
        assert_eq!(wait.is_some(), !chunk.is_empty(), "wait without bytes");
        let read = input.read(room);
        if !read.is_empty() {
            if first_byte_at.is_none() {
                eager = last_read_at.is_none_or(|at| now - at >= policy.quiet());
            }
            chunker.record_input(read.len(), base + now);
            first_byte_at.get_or_insert(now);
            last_read_at = Some(now);
            chunk.extend(read);
            continue;
        }
        match (input.next_arrival(), wait) {
            // End of input: what is left is the last chunk.
            (None, _) => {
                assert_eq!(chunker.cut(), chunk.len(), "the chunker lost count");
                if !chunk.is_empty() {
                    publish_chunk(&mut output, &mut chunk, first_byte_at.take(), now, script);
                }
                return output;
            }
            // The wait runs out before more input: publish.
            (Some(at), Some(wait)) if at > now + wait => {
                now += wait;
                let first = first_byte_at.unwrap_or(now);
                if eager {
                    assert_eq!(
                        now, first,
                        "a chunk after a quiet spell waited while no input was ready"
                    );
                } else {
                    let quiet_for = now - last_read_at.unwrap_or(now);
                    assert!(
                        quiet_for >= policy.quiet() || now - first >= script.max_delay,
                        "a chunk of input that kept coming was published early: \
                         quiet for {quiet_for:?}, held {:?}",
                        now - first
                    );
                }
                assert_eq!(chunker.cut(), chunk.len(), "the chunker lost count");
                publish_chunk(&mut output, &mut chunk, first_byte_at.take(), now, script);
            }
            (Some(at), _) => now = at,
        }
    }
    panic!("the chunker made no progress");
}

/// Checks a chunk of `Chunker` and appends it to `output`.
fn publish_chunk(
    output: &mut Vec<u8>,
    chunk: &mut Vec<u8>,
    first_byte_at: Option<Duration>,
    now: Duration,
    script: &Script,
) {
    assert!(!chunk.is_empty(), "an empty chunk was published");
    assert!(
        chunk.len() <= script.block_size,
        "a chunk of {} bytes",
        chunk.len()
    );
    let held = now - first_byte_at.unwrap_or(now);
    assert!(
        held <= script.max_delay,
        "a chunk was held {held:?}, longer than {:?}",
        script.max_delay
    );
    output.append(chunk);
}

/// Drives `RecordChunker` as `producer::publish_records` does; returns the
/// chunks, joined.
fn drive_record_chunker(script: &Script) -> Vec<u8> {
    let policy = RecordPolicy {
        block_size: NonZeroUsize::new(script.block_size).unwrap_or(NonZeroUsize::MIN),
        max_delay: script.max_delay,
        delimiter: b'\n',
        max_record: script.max_record,
    };
    let mut chunker = RecordChunker::new(policy);
    let base = Instant::now();
    let mut now = Duration::ZERO;
    let mut input = Input::new(&script.pieces);
    let mut pending: Vec<u8> = Vec::new();
    // When each pending byte was read.
    let mut read_at: VecDeque<Duration> = VecDeque::new();
    let mut at_end = false;
    let mut output = Vec::new();
    // When input was last read, and whether the pending input began after a quiet spell.
    let mut last_read_at: Option<Duration> = None;
    let mut eager = false;
    for _ in 0..script.step_limit() {
        input.arrive(now);
        match chunker.next(&pending, base + now, at_end) {
            RecordNext::Done => {
                assert!(at_end && pending.is_empty(), "done with input left");
                return output;
            }
            RecordNext::Publish { len, splits_record } => {
                assert!(
                    len > 0 && len <= pending.len(),
                    "publish {len} of {}",
                    pending.len()
                );
                let chunk = &pending[..len];
                let ends_record = chunk.last() == Some(&b'\n');
                let last = at_end && len == pending.len();
                let split = splits_record && len == script.max_record && !chunk.contains(&b'\n');
                assert_eq!(
                    splits_record, split,
                    "splits_record on a chunk of {len} bytes"
                );
                assert!(ends_record || last || split, "a chunk ends inside a record");
                if len > script.block_size {
                    assert!(
                        !chunk[..len - 1].contains(&b'\n') && len <= script.max_record,
                        "a chunk of {len} bytes holds more than one record"
                    );
                }
                for (byte, at) in chunk.iter().zip(&read_at) {
                    let waited = now - *at;
                    assert!(
                        *byte != b'\n' || waited <= script.max_delay + NOTICE,
                        "a complete record waited {waited:?}, longer than {:?}",
                        script.max_delay
                    );
                }
                let complete_at = chunk
                    .iter()
                    .position(|&byte| byte == b'\n')
                    .map(|at| read_at[at]);
                let forced = at_end || pending.len() >= script.block_size;
                if let (Some(complete_at), false) = (complete_at, forced) {
                    let waited = now - complete_at;
                    if eager {
                        assert!(
                            waited <= NOTICE,
                            "a record after a quiet spell waited {waited:?}"
                        );
                    } else {
                        let quiet_for = now - last_read_at.unwrap_or(now);
                        assert!(
                            quiet_for >= policy.quiet() || waited >= script.max_delay,
                            "records that kept coming were published early: \
                             quiet for {quiet_for:?}, complete for {waited:?}"
                        );
                    }
                }
                eager = false;
                output.extend_from_slice(chunk);
                pending.drain(..len);
                read_at.drain(..len);
                chunker.published(&pending, base + now);
            }
            RecordNext::Read { wait, room } => {
                assert!(!at_end, "asked to read after the end of input");
                assert!(room > 0, "asked to read nothing");
                let read = input.read(room);
                if !read.is_empty() {
                    if pending.is_empty() {
                        eager = last_read_at.is_none_or(|at| now - at >= policy.quiet());
                    }
                    last_read_at = Some(now);
                    let start = pending.len();
                    pending.extend(&read);
                    read_at.extend(std::iter::repeat_n(now, read.len()));
                    chunker.record_input(&pending[start..], base + now);
                    continue;
                }
                match (input.next_arrival(), wait) {
                    (None, _) => at_end = true,
                    // The wait runs out first; the producer asks again a
                    // moment later.
                    (Some(at), Some(wait)) if at > now + wait + NOTICE => now += wait + NOTICE,
                    (Some(at), _) => now = at,
                }
            }
        }
    }
    panic!("the record chunker made no progress");
}

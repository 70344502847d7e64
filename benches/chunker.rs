//! Criterion benchmarks of the chunker's cut decisions: pure logic, no I/O.
//!
//! Each iteration feeds 64 KiB of input in 64-byte reads to a chunker, as
//! the producer does (ask what to do next, read at most the room it gives,
//! record the input, cut when told) on a simulated clock: one read arrives
//! every 10 µs, a stream that keeps coming, so after the first read (alone
//! in its chunk: it follows a quiet spell) chunks are cut when full.
//!
//! - `chunker/raw/<block>`: [`Chunker`], which counts bytes;
//! - `chunker/records/<block>`: [`RecordChunker`], which cuts after the last
//!   whole record (48-byte lines here) and keeps the rest pending, moving the
//!   bytes through a pending buffer as the producer does.
//!
//! Run with `cargo bench --bench chunker`.

use std::hint::black_box;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use filebus_core::DEFAULT_SLEEP_INTERVAL;
use filebus_core::testing::cut::{
    ChunkPolicy, Chunker, Next, RecordChunker, RecordNext, RecordPolicy,
};

/// The input fed per iteration.
const INPUT_LEN: usize = 64 << 10;
/// The most one read returns.
const READ_LEN: usize = 64;
/// The time between two reads' arrivals.
const EVERY: Duration = Duration::from_micros(10);
/// How late a wait that times out returns (`poll` returns after its
/// deadline, never at it).
const TIMER_SLACK: Duration = Duration::from_micros(1);
/// The default block size, and a small one that makes many cuts.
const BLOCK_SIZES: [usize; 2] = [4 << 10, 1 << 20];

fn policy(block_size: usize) -> ChunkPolicy {
    ChunkPolicy {
        block_size: NonZeroUsize::new(block_size).expect("block size is positive"),
        max_delay: DEFAULT_SLEEP_INTERVAL,
    }
}

/// Feeds `INPUT_LEN` bytes to a [`Chunker`] from `start`; returns the
/// number of chunks cut.
fn cut_raw(policy: ChunkPolicy, start: Instant) -> usize {
    let mut chunker = Chunker::new(policy);
    let (mut now, mut offered, mut reads, mut chunks) = (start, 0, 0u32, 0);
    while offered < INPUT_LEN {
        match chunker.next(now) {
            Next::Publish => {
                chunker.cut();
                chunks += 1;
            }
            Next::Read { wait, room } => {
                let arrival = start + EVERY * reads;
                // The wait ends before the input comes: publish.
                if let Some(wait) = wait
                    && now + wait < arrival
                {
                    now += wait;
                    chunker.cut();
                    chunks += 1;
                    continue;
                }
                now = now.max(arrival);
                let count = READ_LEN.min(room).min(INPUT_LEN - offered);
                chunker.record_input(count, now);
                offered += count;
                reads += 1;
            }
        }
    }
    if chunker.cut() > 0 {
        chunks += 1;
    }
    chunks
}

/// Feeds `input` to a [`RecordChunker`] from `start`, through a pending
/// buffer; returns the number of chunks cut.
fn cut_records(policy: RecordPolicy, input: &[u8], start: Instant) -> usize {
    let mut chunker = RecordChunker::new(policy);
    let mut pending: Vec<u8> = Vec::new();
    let (mut now, mut offered, mut reads, mut chunks) = (start, 0, 0u32, 0);
    loop {
        match chunker.next(&pending, now, offered == input.len()) {
            RecordNext::Done => return chunks,
            RecordNext::Publish { len, .. } => {
                pending.drain(..len);
                chunker.published(&pending, now);
                chunks += 1;
            }
            RecordNext::Read { wait, room } => {
                let arrival = start + EVERY * reads;
                // The wait ends before the input comes: ask again.
                if let Some(wait) = wait
                    && now + wait < arrival
                {
                    now += wait + TIMER_SLACK;
                    continue;
                }
                now = now.max(arrival);
                let count = READ_LEN.min(room).min(input.len() - offered);
                pending.extend_from_slice(&input[offered..offered + count]);
                offered += count;
                reads += 1;
                chunker.record_input(&pending[pending.len() - count..], now);
            }
        }
    }
}

/// `chunker/raw/<block>`: the raw chunker's decisions for 64 KiB of input.
fn raw(c: &mut Criterion) {
    let mut group = c.benchmark_group("chunker");
    group.throughput(Throughput::Bytes(INPUT_LEN as u64));
    let start = Instant::now();
    for block in BLOCK_SIZES {
        let policy = policy(block);
        // The first read alone, then full chunks.
        assert_eq!(
            cut_raw(policy, start),
            1 + (INPUT_LEN - READ_LEN).div_ceil(block)
        );
        group.bench_function(BenchmarkId::new("raw", block), |b| {
            b.iter(|| cut_raw(black_box(policy), start))
        });
    }
    group.finish();
}

/// `chunker/records/<block>`: the record chunker's decisions for 64 KiB of
/// 48-byte lines.
fn records(c: &mut Criterion) {
    let mut group = c.benchmark_group("chunker");
    group.throughput(Throughput::Bytes(INPUT_LEN as u64));
    let line = [b"x".repeat(47), b"\n".to_vec()].concat();
    let input: Vec<u8> = line.iter().copied().cycle().take(INPUT_LEN).collect();
    let start = Instant::now();
    for block in BLOCK_SIZES {
        let policy = RecordPolicy::new(policy(block), b'\n');
        let chunks = cut_records(policy, &input, start);
        assert!(
            chunks > INPUT_LEN / block,
            "{chunks} chunks of at most {block} bytes for {INPUT_LEN} bytes"
        );
        group.bench_function(BenchmarkId::new("records", block), |b| {
            b.iter(|| cut_records(black_box(policy), black_box(&input), start))
        });
    }
    group.finish();
}

criterion_group!(benches, raw, records);
criterion_main!(benches);

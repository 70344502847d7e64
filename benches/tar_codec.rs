//! Criterion benchmarks of the tar codec (`--format tar`), stamped as a
//! producer stamps its chunks (a PAX header with `FILEBUS.seq` and
//! `FILEBUS.time`):
//!
//! - `tar/encode_header`: the headers written at each publish;
//! - `tar/parse_bytes/<content>`: parsing a chunk archive in memory;
//! - `tar/parse_file/<content>`: parsing it from a file, with `pread` as a
//!   consumer does (the file in the page cache).
//!
//! The parser reads headers, never the content, so 4 KiB and 1 MiB should
//! cost about the same. Run with `cargo bench --bench tar_codec`.

use std::hint::black_box;
use std::io::Write;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use filebus_core::tar::{self, ChunkStamp};

/// A stamp as a producer writes it.
const STAMP: ChunkStamp = ChunkStamp {
    sequence: Some(123_456),
    published_ns: Some(1_796_300_000_123_456_789),
};
const MTIME_SECS: u64 = 1_796_300_000;

/// `tar/encode_header`: the headers of a stamped 4 KiB chunk.
fn encode_header(c: &mut Criterion) {
    let mut group = c.benchmark_group("tar");
    group.bench_function("encode_header", |b| {
        b.iter(|| tar::encode_header(black_box(4096), black_box(&STAMP), MTIME_SECS))
    });
    group.finish();
}

/// `tar/parse_bytes/<content>` and `tar/parse_file/<content>`: finding the
/// content and the stamp of a chunk archive of 4 KiB or 1 MiB of content.
fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("tar");
    for len in [4usize << 10, 1 << 20] {
        let archive = tar::encode(&vec![0x5Au8; len], &STAMP, MTIME_SECS);
        let parsed = tar::parse_bytes(&archive).expect("parse");
        assert_eq!((parsed.content_len, parsed.stamp), (len as u64, STAMP));
        group.bench_function(BenchmarkId::new("parse_bytes", len), |b| {
            b.iter(|| tar::parse_bytes(black_box(&archive)).expect("parse"))
        });
        let mut file = tempfile::tempfile().expect("cannot create a temporary file");
        file.write_all(&archive).expect("cannot write the archive");
        let file_len = archive.len() as u64;
        group.bench_function(BenchmarkId::new("parse_file", len), |b| {
            b.iter(|| tar::parse(black_box(&file), file_len).expect("parse"))
        });
    }
    group.finish();
}

criterion_group!(benches, encode_header, parse);
criterion_main!(benches);

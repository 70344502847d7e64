//! What the tests feed producers, and the checks of what comes out:
//! numbered fixed-width records (so that a lost, duplicated, reordered or
//! torn one shows), chunks of them, binary data, input files, and a small
//! seeded random generator.

use std::fs::File;
use std::io::Write;
use std::ops::Range;
use std::path::Path;

/// `count` fixed-width numbered records ("00000042\n"), so that a lost,
/// duplicated, reordered or torn record is visible.
pub fn numbered_records(count: usize) -> Vec<u8> {
    records(0..count)
}

/// Fixed-width numbered records, as [`numbered_records`], for the numbers in
/// `numbers`.
pub fn records(numbers: Range<usize>) -> Vec<u8> {
    let mut data = Vec::with_capacity(numbers.len() * RECORD_LEN);
    for number in numbers {
        writeln!(data, "{number:0width$}", width = RECORD_LEN - 1)
            .expect("writing to a Vec cannot fail");
    }
    data
}

/// Bytes per record of [`numbered_records`].
pub const RECORD_LEN: usize = 9;

/// Parses output made of whole numbered records; panics on a torn record.
pub fn parse_records(output: &[u8]) -> Vec<usize> {
    assert_eq!(
        output.len() % RECORD_LEN,
        0,
        "output of {} bytes is not whole records",
        output.len()
    );
    output
        .chunks(RECORD_LEN)
        .map(|record| {
            let text = std::str::from_utf8(record).expect("record is not text: torn");
            assert!(text.ends_with('\n'), "record {text:?} is torn");
            text.trim_end()
                .parse()
                .unwrap_or_else(|_| panic!("record {text:?} is torn"))
        })
        .collect()
}

/// Pseudo-random binary data with many NUL bytes (deterministic).
pub fn binary_data(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let byte = (state >> 24) as u8;
            if byte < 64 { 0 } else { byte }
        })
        .collect()
}

/// Records per chunk in the tests that cut input into identifiable chunks.
pub const RECORDS_PER_CHUNK: usize = 100;
/// Bytes per such chunk: `--block-size` for those tests. A regular file as
/// standard input always fills a chunk completely (but the last), so every
/// chunk is exactly this many aligned, whole records.
pub const CHUNK: usize = RECORDS_PER_CHUNK * RECORD_LEN;
/// `CHUNK` as a command-line argument.
pub const CHUNK_ARG: &str = "900";
/// Record numbers of producer `p` in the multi-producer tests start at
/// `p * PRODUCER_STRIDE`, so a record tells which producer sent it.
pub const PRODUCER_STRIDE: usize = 10_000_000;

/// A small deterministic random generator (xorshift64*), seeded from the
/// clock; the seed is printed so a failing run can be told apart.
pub struct Rng(u64);

impl Rng {
    pub fn from_clock(what: &str) -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock before 1970")
            .as_nanos() as u64
            | 1;
        eprintln!("{what}: random seed {seed}");
        Rng(seed)
    }

    /// A number in `0..bound`.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound
    }
}

/// Writes `bytes` to a new file `name` in `dir` and opens it for reading (to
/// use as standard input: a regular file always fills a chunk completely).
pub fn input_in(dir: &Path, name: &str, bytes: &[u8]) -> File {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("cannot write input file");
    File::open(&path).expect("cannot open input file")
}

/// Checks that `bytes` is one whole chunk cut from a producer's numbered
/// records by `--block-size CHUNK` from a regular file: consecutive records
/// of one producer, starting at a multiple of [`RECORDS_PER_CHUNK`], and a
/// full chunk unless it ends at record `last_of_stream` (exclusive end of
/// that producer's numbers). Returns the first record's number.
pub fn check_chunk(bytes: &[u8], end_of_stream: Option<usize>, what: &str) -> usize {
    assert!(!bytes.is_empty(), "{what}: an empty chunk");
    let numbers = parse_records(bytes);
    let first = numbers[0];
    let base = first / PRODUCER_STRIDE * PRODUCER_STRIDE;
    assert_eq!(
        (first - base) % RECORDS_PER_CHUNK,
        0,
        "{what}: a chunk starting at record {first} is not aligned: torn"
    );
    for (offset, number) in numbers.iter().enumerate() {
        assert_eq!(
            *number,
            first + offset,
            "{what}: records of the chunk starting at {first} are not consecutive"
        );
    }
    let end = first + numbers.len();
    assert!(
        numbers.len() == RECORDS_PER_CHUNK || Some(end) == end_of_stream,
        "{what}: the chunk of records {first}..{end} is neither full nor the last one"
    );
    first
}

/// Splits output made of full chunks ([`CHUNK`] bytes each) and checks each.
/// Returns the first record of every chunk, in order.
pub fn check_full_chunks(output: &[u8], what: &str) -> Vec<usize> {
    assert_eq!(
        output.len() % CHUNK,
        0,
        "{what}: {} bytes of output are not whole chunks",
        output.len()
    );
    output
        .chunks(CHUNK)
        .map(|chunk| check_chunk(chunk, None, what))
        .collect()
}

//! Numbered, self-checking records for the latency and loss sections.
//!
//! A record of `size` bytes (a multiple of 8, at least 32) is a run of
//! little-endian 64-bit words:
//!
//! ```text
//! [MAGIC] [sequence number] [payload ...] [checksum]
//! ```
//!
//! The payload words derive from the sequence number and the checksum covers
//! every other word, so a record made of pieces of two records, or cut
//! short, fails the check. The parser reads a consumer's output as a stream:
//! it accepts whole valid records and, on anything else, counts one torn
//! record and skips to the next `MAGIC`.

/// The first word of every record.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"fbREC\x01\xfe\x7f");
/// Sequence numbers with this bit set mark warm-up records, which tell that a
/// consumer is up and are not counted.
pub(crate) const WARM_UP: u64 = 1 << 63;
/// The smallest record: magic, number, one payload word, checksum.
pub(crate) const MIN_SIZE: usize = 32;

/// Appends record `seq` of `size` bytes to `out`.
pub(crate) fn encode(seq: u64, size: usize, out: &mut Vec<u8>) {
    debug_assert!(size >= MIN_SIZE && size.is_multiple_of(8));
    let start = out.len();
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    let seed = seq.wrapping_add(1).wrapping_mul(0xD1B5_4A32_D192_ED03);
    for index in 2..size / 8 - 1 {
        let word = seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        out.extend_from_slice(&word.to_le_bytes());
    }
    let sum = checksum(&out[start..]);
    out.extend_from_slice(&sum.to_le_bytes());
}

/// A hash of whole words; every bit of every word reaches every bit of the result.
fn checksum(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xCBF2_9CE4_8422_2325;
    for word in bytes.chunks_exact(8) {
        hash = (hash.rotate_left(23) ^ word_at(word)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    hash ^ (hash >> 31)
}

fn word_at(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(word)
}

/// What the parser found in a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// A whole, valid record with this sequence number.
    Record(u64),
    /// Bytes that are not a whole record (counted once per damaged stretch).
    Torn,
}

/// Splits a stream into records.
#[derive(Debug)]
pub(crate) struct Parser {
    size: usize,
    pending: Vec<u8>,
    /// Inside a damaged stretch (already counted).
    skipping: bool,
}

impl Parser {
    /// A parser for records of `size` bytes.
    pub(crate) fn new(size: usize) -> Parser {
        Parser {
            size,
            pending: Vec::new(),
            skipping: false,
        }
    }

    /// Parses `data`, the next bytes of the stream.
    pub(crate) fn feed(&mut self, data: &[u8], mut on_event: impl FnMut(Event)) {
        if self.pending.is_empty() {
            let used = self.parse(data, &mut on_event);
            self.pending.extend_from_slice(&data[used..]);
        } else {
            let mut pending = std::mem::take(&mut self.pending);
            pending.extend_from_slice(data);
            let used = self.parse(&pending, &mut on_event);
            pending.drain(..used);
            self.pending = pending;
        }
    }

    /// Ends the stream: leftover bytes are a torn record.
    pub(crate) fn finish(&mut self, mut on_event: impl FnMut(Event)) {
        if !self.pending.is_empty() && !self.skipping {
            on_event(Event::Torn);
        }
        self.pending.clear();
        self.skipping = false;
    }

    /// Parses what it can of `data`; returns how many bytes it is done with.
    fn parse(&mut self, data: &[u8], on_event: &mut impl FnMut(Event)) -> usize {
        let mut at = 0;
        while data.len() - at >= 8 {
            if word_at(&data[at..]) == MAGIC {
                if data.len() - at < self.size {
                    break;
                }
                let record = &data[at..at + self.size];
                let (body, sum) = record.split_at(self.size - 8);
                if checksum(body) == word_at(sum) {
                    on_event(Event::Record(word_at(&record[8..])));
                    self.skipping = false;
                    at += self.size;
                    continue;
                }
            }
            if !self.skipping {
                on_event(Event::Torn);
                self.skipping = true;
            }
            match find_magic(&data[at + 1..]) {
                Some(next) => at += 1 + next,
                // Keep the last 7 bytes: they may be the start of a MAGIC.
                None => return data.len() - 7,
            }
        }
        at
    }
}

/// The position of the first `MAGIC` in `data`.
fn find_magic(data: &[u8]) -> Option<usize> {
    let first = MAGIC.to_le_bytes()[0];
    let mut from = 0;
    while let Some(offset) = data[from..].iter().position(|&byte| byte == first) {
        let at = from + offset;
        if data.len() - at < 8 {
            return None;
        }
        if word_at(&data[at..]) == MAGIC {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(size: usize, pieces: &[&[u8]]) -> Vec<Event> {
        let mut parser = Parser::new(size);
        let mut events = Vec::new();
        for piece in pieces {
            parser.feed(piece, |event| events.push(event));
        }
        parser.finish(|event| events.push(event));
        events
    }

    #[test]
    fn records_split_anywhere_are_reassembled() {
        let mut stream = Vec::new();
        for seq in 0..3 {
            encode(seq, 64, &mut stream);
        }
        let (a, rest) = stream.split_at(5);
        let (b, c) = rest.split_at(100);
        assert_eq!(
            parse_all(64, &[a, b, c]),
            vec![Event::Record(0), Event::Record(1), Event::Record(2)]
        );
    }

    #[test]
    fn a_record_cut_short_is_torn_and_the_next_one_is_found() {
        let mut stream = Vec::new();
        encode(7, 4096, &mut stream);
        stream.truncate(1000);
        encode(8, 4096, &mut stream);
        assert_eq!(
            parse_all(4096, &[&stream]),
            vec![Event::Torn, Event::Record(8)]
        );
    }

    #[test]
    fn a_record_mixing_two_records_is_torn() {
        let mut first = Vec::new();
        encode(1, 256, &mut first);
        let mut second = Vec::new();
        encode(2, 256, &mut second);
        first[128..].copy_from_slice(&second[128..]);
        assert_eq!(parse_all(256, &[&first]), vec![Event::Torn]);
    }

    #[test]
    fn garbage_and_a_trailing_piece_are_torn() {
        let mut stream = b"garbage!garbage!".to_vec();
        encode(3, 64, &mut stream);
        encode(4, 64, &mut stream);
        stream.truncate(stream.len() - 10);
        assert_eq!(
            parse_all(64, &[&stream]),
            vec![Event::Torn, Event::Record(3), Event::Torn]
        );
    }
}

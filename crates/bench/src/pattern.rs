//! The byte stream of the throughput and idle sections, and its checker.
//!
//! Byte `i` of the stream is `PATTERN[i % PERIOD]`, where the pattern is
//! pseudo-random and its period is a prime number of bytes. Writing and
//! checking are slices and `memcmp`s, cheap enough not to steal the CPU the
//! measured programs need, and still every byte is checked: a lost,
//! duplicated or reordered chunk of any block size shifts the stream by a
//! number of bytes that is not a multiple of the period, which no stretch of
//! random bytes survives.

/// The period of the stream: a prime a little over 1 MiB.
pub(crate) const PERIOD: usize = 1_048_583;

/// The repeating pseudo-random bytes.
#[derive(Debug)]
pub(crate) struct Pattern {
    bytes: Vec<u8>,
}

impl Pattern {
    /// The fixed pattern (the same in every run).
    pub(crate) fn new() -> Pattern {
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut bytes = Vec::with_capacity(PERIOD + 8);
        while bytes.len() < PERIOD {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            bytes.extend_from_slice(&state.to_le_bytes());
        }
        bytes.truncate(PERIOD);
        Pattern { bytes }
    }

    /// The stream from `offset`, at most `max` bytes (fewer at the end of a period).
    pub(crate) fn slice_from(&self, offset: u64, max: usize) -> &[u8] {
        let start = (offset % PERIOD as u64) as usize;
        let end = start + max.min(PERIOD - start);
        &self.bytes[start..end]
    }

    /// The position of the first byte of `data` that differs from the
    /// stream at `offset`, if any.
    pub(crate) fn first_difference(&self, offset: u64, data: &[u8]) -> Option<u64> {
        let mut checked = 0;
        while checked < data.len() {
            let expected = self.slice_from(offset + checked as u64, data.len() - checked);
            let got = &data[checked..checked + expected.len()];
            if got != expected {
                let at = got
                    .iter()
                    .zip(expected)
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                return Some(offset + (checked + at) as u64);
            }
            checked += expected.len();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_wraps_around_the_period() {
        let pattern = Pattern::new();
        let end = pattern.slice_from(PERIOD as u64 - 3, 10);
        assert_eq!(end.len(), 3);
        let mut stream = end.to_vec();
        stream.extend_from_slice(pattern.slice_from(PERIOD as u64, 5));
        assert_eq!(pattern.first_difference(PERIOD as u64 - 3, &stream), None);
    }

    #[test]
    fn a_repeated_block_is_detected() {
        let pattern = Pattern::new();
        let block = 4096u64;
        let mut stream = pattern.slice_from(0, 3 * block as usize).to_vec();
        // The second block delivered twice: the third position holds block 2 again.
        let second = pattern.slice_from(block, block as usize).to_vec();
        stream.splice(2 * block as usize.., second);
        assert_eq!(
            pattern.first_difference(0, &stream).map(|at| at / block),
            Some(2)
        );
    }
}

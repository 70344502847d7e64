//! `consumer --stats`: what a consumer emitted and what it missed.
//!
//! For every chunk it writes, the consumer reads the chunk's stamp
//! ([`crate::bus::stamp`]). A gap in the sequence numbers counts the chunks
//! missed since the previous one it saw (the chunks before the first one it
//! saw are not counted; in lossless mode with several consumers, the chunks
//! the others took count as missed). A chunk without a stamp (from a foreign
//! producer, or a filesystem without extended attributes) counts as unknown.
//! Latency is from the stamp's publish time to the moment the chunk was
//! written, both on the realtime clock of this machine.
//!
//! The summary is one line ([`Stats::summary`]), which the library never
//! prints itself: the `filebus` command prints it on stderr when the consumer
//! ends, on SIGUSR1, and before it dies of SIGINT, SIGTERM or SIGHUP (the
//! library installs no signal handler).

use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;

use crate::bus::stamp::Stamp;

/// The longest latency recorded exactly: an hour, in microseconds.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Counts of one consumer's chunks.
#[derive(Debug, Clone)]
pub struct Stats {
    chunks: u64,
    bytes: u64,
    missed: u64,
    unknown: u64,
    last_sequence: Option<u64>,
    latency_us: Option<Histogram<u64>>,
    /// Whether the consumer got as far as looking at its bus.
    began: bool,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Nothing counted yet.
    pub fn new() -> Self {
        Stats {
            chunks: 0,
            bytes: 0,
            missed: 0,
            unknown: 0,
            last_sequence: None,
            // Three significant digits up to an hour; None if the histogram
            // cannot be made (it always can with these constants).
            latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).ok(),
            began: false,
        }
    }

    /// Notes that the consumer got as far as looking at its bus (the bus
    /// opened, the output and the wake-ups set up).
    pub(crate) fn begin(&mut self) {
        self.began = true;
    }

    /// Whether the consumer got as far as looking at its bus: the summary
    /// of one that did not (a bus that cannot be opened, say) says nothing,
    /// and the `filebus` command prints none at its end.
    pub fn began(&self) -> bool {
        self.began
    }

    /// Counts a chunk of `bytes` written at `emitted_ns` (realtime clock).
    pub(crate) fn record(&mut self, stamp: Option<Stamp>, bytes: u64, emitted_ns: u64) {
        self.chunks += 1;
        self.bytes += bytes;
        let Some(stamp) = stamp else {
            self.unknown += 1;
            return;
        };
        if let Some(last) = self.last_sequence {
            // A smaller number means the bus's counter was reset (its lock
            // file recreated): a new sequence, nothing missed.
            self.missed += stamp.sequence.saturating_sub(last.saturating_add(1));
        }
        self.last_sequence = Some(stamp.sequence);
        if let Some(histogram) = &mut self.latency_us {
            histogram.saturating_record(emitted_ns.saturating_sub(stamp.published_ns) / 1000);
        }
    }

    /// Counts from chunk `next` on: a gap before the first chunk written
    /// (chunks that left a history before this consumer reached them) is
    /// missed too. Does nothing once a chunk was counted.
    pub(crate) fn expect(&mut self, next: u64) {
        if self.last_sequence.is_none() && self.chunks == 0 {
            self.last_sequence = Some(next.saturating_sub(1));
        }
    }

    /// Chunks written.
    pub fn chunks(&self) -> u64 {
        self.chunks
    }

    /// Chunks missed, from gaps in the sequence.
    pub fn missed(&self) -> u64 {
        self.missed
    }

    /// Chunks without a stamp.
    pub fn unknown(&self) -> u64 {
        self.unknown
    }

    /// The one-line summary.
    pub fn summary(&self) -> String {
        let latency = match &self.latency_us {
            Some(histogram) if !histogram.is_empty() => format!(
                "latency p50 {}us p99 {}us max {}us",
                histogram.value_at_quantile(0.5),
                histogram.value_at_quantile(0.99),
                histogram.max()
            ),
            _ => "latency unknown".to_owned(),
        };
        format!(
            "stats: {} chunks, {} bytes emitted; {} missed, {} unknown; {latency}",
            self.chunks, self.bytes, self.missed, self.unknown
        )
    }
}

/// Stats shared between the consumer and the thread that reports them.
pub type SharedStats = Arc<Mutex<Stats>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(sequence: u64, published_ns: u64) -> Option<Stamp> {
        Some(Stamp {
            sequence,
            published_ns,
        })
    }

    #[test]
    fn gaps_in_the_sequence_count_as_missed_and_unstamped_chunks_as_unknown() {
        let mut stats = Stats::new();
        stats.record(stamp(5, 0), 10, 1_000);
        stats.record(stamp(6, 0), 10, 1_000);
        stats.record(stamp(9, 0), 10, 1_000);
        stats.record(None, 10, 1_000);
        stats.record(stamp(10, 0), 10, 1_000);
        assert_eq!((stats.chunks(), stats.missed(), stats.unknown()), (5, 2, 1));
    }

    #[test]
    fn a_reset_sequence_is_not_counted_as_missed() {
        let mut stats = Stats::new();
        stats.record(stamp(50, 0), 1, 0);
        stats.record(stamp(1, 0), 1, 0);
        stats.record(stamp(2, 0), 1, 0);
        assert_eq!(stats.missed(), 0);
    }

    #[test]
    fn summary_reports_latency_in_microseconds() {
        let mut stats = Stats::new();
        stats.record(stamp(1, 1_000_000), 4096, 1_250_000);
        let summary = stats.summary();
        assert!(summary.contains("1 chunks, 4096 bytes"), "{summary}");
        assert!(summary.contains("p50 250us"), "{summary}");
    }
}

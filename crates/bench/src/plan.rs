//! How much each section measures: the full plan (about a quarter of an
//! hour on two CPUs, more with the Python reference) and the quick one
//! (about a minute).

use std::time::Duration;

use super::{Implementation, Section, fanout, loss};

/// The sizes and durations of one benchmark run.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Repetitions of each throughput, loss and fan-out point.
    pub repeat: usize,
    /// Block sizes of the throughput sweep.
    pub block_sizes: Vec<usize>,
    /// Bytes written per throughput run, at most.
    pub throughput_bytes: u64,
    /// Time spent writing per throughput run, at most.
    pub throughput_time: Duration,
    /// The latency section's points, the first one plotted.
    pub latency_points: Vec<LatencyPoint>,
    /// Bytes per latency record.
    pub latency_record_size: usize,
    /// Offered rates of the loss sweep, records per second.
    pub loss_rates: Vec<u64>,
    /// Consumer counts of the loss sweep.
    pub loss_consumers: Vec<usize>,
    /// Time spent writing per loss run.
    pub loss_duration: Duration,
    /// Bytes per loss record (and the block size).
    pub loss_record_size: usize,
    /// `--history N` of the history and named modes (loss and fan-out).
    pub history_depth: u64,
    /// Consumer counts of the fan-out sweep.
    pub fanout_consumers: Vec<usize>,
    /// Records per second in the fan-out section.
    pub fanout_rate: u64,
    /// Bytes per fan-out record.
    pub fanout_record_size: usize,
    /// Time spent writing per fan-out run.
    pub fanout_duration: Duration,
    /// The idle window.
    pub idle_window: Duration,
    /// Block size in the idle section.
    pub idle_block_size: usize,
    /// Chunks passed through before the idle window.
    pub idle_warm_up_chunks: usize,
}

/// One point of the latency section: one record every `1 / rate` s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LatencyPoint {
    /// Records per second.
    pub rate: u64,
    /// Records written.
    pub records: u64,
    /// Programs run with their default `--sleep-interval` (as users run
    /// them) rather than their low-latency one.
    pub default_options: bool,
}

impl LatencyPoint {
    const fn low_latency(rate: u64, records: u64) -> LatencyPoint {
        LatencyPoint {
            rate,
            records,
            default_options: false,
        }
    }

    const fn with_defaults(rate: u64, records: u64) -> LatencyPoint {
        LatencyPoint {
            rate,
            records,
            default_options: true,
        }
    }

    /// How the programs were run, for tables and rows.
    pub(crate) fn options_name(&self) -> &'static str {
        if self.default_options {
            "default options"
        } else {
            "low-latency --sleep-interval"
        }
    }
}

const KIB: usize = 1024;
/// The history depth of the history and named modes: 64 chunks, as in the
/// README's example; with one 4 KiB record per chunk, 256 KiB held, and
/// 64 ms of slack at 1,000 chunks/s for a consumer descheduled.
const HISTORY_DEPTH: u64 = 64;
const MIB: usize = 1024 * 1024;

impl Plan {
    /// The plan for a quick or full run, with `repeat` runs per point if given.
    pub(crate) fn new(quick: bool, repeat: Option<u32>) -> Plan {
        let default_repeat = if quick { 3 } else { 5 };
        let repeat = repeat.map_or(default_repeat, |n| n.max(1) as usize);
        if quick {
            Plan {
                repeat,
                block_sizes: vec![4 * KIB, 64 * KIB, MIB],
                throughput_bytes: 32 * MIB as u64,
                throughput_time: Duration::from_millis(500),
                // 100 records/s with each program's low-latency interval;
                // one every 20 ms and every 200 ms as users run them.
                latency_points: vec![
                    LatencyPoint::low_latency(100, 200),
                    LatencyPoint::with_defaults(50, 40),
                    LatencyPoint::with_defaults(5, 10),
                ],
                latency_record_size: 64,
                loss_rates: vec![1_000, 10_000, 100_000],
                loss_consumers: vec![1, 4],
                loss_duration: Duration::from_millis(300),
                loss_record_size: 4 * KIB,
                history_depth: HISTORY_DEPTH,
                fanout_consumers: vec![1, 4, 16],
                fanout_rate: 10_000,
                fanout_record_size: 64,
                fanout_duration: Duration::from_millis(500),
                idle_window: Duration::from_secs(2),
                idle_block_size: MIB,
                idle_warm_up_chunks: 4,
            }
        } else {
            Plan {
                repeat,
                block_sizes: vec![4 * KIB, 16 * KIB, 64 * KIB, 256 * KIB, MIB],
                throughput_bytes: 256 * MIB as u64,
                throughput_time: Duration::from_secs(2),
                latency_points: vec![
                    LatencyPoint::low_latency(100, 2_000),
                    LatencyPoint::with_defaults(50, 500),
                    LatencyPoint::with_defaults(5, 100),
                ],
                latency_record_size: 64,
                loss_rates: vec![100, 300, 1_000, 3_000, 10_000, 30_000, 100_000],
                loss_consumers: vec![1, 4],
                loss_duration: Duration::from_secs(1),
                loss_record_size: 4 * KIB,
                history_depth: HISTORY_DEPTH,
                fanout_consumers: vec![1, 4, 16, 64],
                fanout_rate: 10_000,
                fanout_record_size: 64,
                fanout_duration: Duration::from_secs(2),
                idle_window: Duration::from_secs(10),
                idle_block_size: MIB,
                idle_warm_up_chunks: 8,
            }
        }
    }
}

/// How many runs a section will make (for the progress line).
pub(crate) fn planned_runs(
    section: Section,
    plan: &Plan,
    measured: &[Implementation],
    baselines: bool,
) -> usize {
    let baseline = usize::from(baselines);
    let implementations = measured.len();
    let modes: usize = measured
        .iter()
        .map(|implementation| loss::modes(implementation, plan).len())
        .sum();
    match section {
        Section::Throughput => plan.block_sizes.len() * plan.repeat * (implementations + baseline),
        Section::Latency => plan.latency_points.len() * (2 * implementations + baseline),
        Section::Loss => {
            plan.loss_rates.len() * plan.loss_consumers.len() * plan.repeat * (modes + baseline)
        }
        Section::FanOut => {
            let modes: usize = measured
                .iter()
                .map(|implementation| fanout::modes(implementation, plan).len())
                .sum();
            plan.fanout_consumers.len() * plan.repeat * (modes + baseline)
        }
        Section::Idle => 2 * implementations + 1,
    }
}

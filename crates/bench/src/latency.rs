//! Section 2: latency from the producer's standard input to the consumer's
//! standard output, at low rates ([`Plan::latency_points`]).
//!
//! Small numbered records ([`Plan::latency_record_size`] bytes) go through a
//! paced run ([`super::paced`]) with one consumer; the benchmark notes on the
//! monotonic clock when it writes each record and when it reads it back, and
//! the differences go into an HDR histogram (3 significant digits).
//!
//! At the first point (100 records/s) filebus programs run with their
//! [`Implementation::low_latency_interval`] as `--sleep-interval` (0 for
//! ours: a chunk is published as soon as the input pauses); at the others
//! (one record every 20 ms and every 200 ms) with their default options, as
//! users run them. Both modes; `cat | cat` is the baseline.
//!
//! [`Implementation::low_latency_interval`]: super::Implementation::low_latency_interval

use std::time::Duration;

use hdrhistogram::Histogram;

use super::paced::{self, Schedule};
use super::plan::LatencyPoint;
use super::system::{BusSetup, Mode, System};
use super::{BenchError, Context, Plan, Results, Section};

/// The block size of the latency runs (the reference's default).
const BLOCK_SIZE: usize = 4096;

/// The latency distribution of one system in one mode.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub system: String,
    /// `None` for a baseline.
    pub mode: Option<Mode>,
    /// The point measured.
    pub point: LatencyPoint,
    /// The `--sleep-interval` given, if any.
    pub sleep_interval: Option<Duration>,
    /// Records written.
    pub sent: u64,
    /// Records delivered (the histogram's count).
    pub delivered: u64,
    /// Nanoseconds.
    pub histogram: Histogram<u64>,
}

/// Measures every filebus program in both modes, then `cat | cat`, at each
/// point of the plan.
pub(crate) fn run(context: &mut Context<'_>, results: &mut Results) -> Result<(), BenchError> {
    let plan: &Plan = context.plan;
    for point in &plan.latency_points {
        run_point(context, results, *point)?;
    }
    Ok(())
}

fn run_point(
    context: &mut Context<'_>,
    results: &mut Results,
    point: LatencyPoint,
) -> Result<(), BenchError> {
    let plan: &Plan = context.plan;
    let mut systems: Vec<(System<'_>, Option<Mode>, Option<Duration>)> = Vec::new();
    for implementation in context.implementations {
        for mode in [Mode::Lossy, Mode::Lossless] {
            let interval = (!point.default_options).then_some(implementation.low_latency_interval);
            let system = System::Bus(BusSetup {
                implementation,
                mode,
                block_size: Some(BLOCK_SIZE),
                sleep_interval: interval,
                consumers: 1,
            });
            systems.push((system, Some(mode), interval));
        }
    }
    if context.baselines {
        systems.push((System::CatPipe, None, None));
    }
    let rate = point.rate as f64;
    let planned = Duration::from_secs_f64(point.records as f64 / rate);
    let schedule = Schedule {
        record_size: plan.latency_record_size,
        rate,
        records: point.records,
        time_cap: planned.mul_f64(1.5) + Duration::from_secs(1),
        measure_latency: true,
        drain_timeout: Duration::from_secs(5),
    };
    for (system, mode, sleep_interval) in &systems {
        let mode_name = mode.map_or("pipe", Mode::name);
        let label = format!(
            "latency {} {mode_name}, {} records at {}/s, {}",
            system.name(),
            point.records,
            point.rate,
            point.options_name()
        );
        context.progress.run(&label, 1, 1);
        let outcome = paced::run(context, system, &schedule);
        let settled = results.settle(outcome, Section::Latency, system.name(), || {
            format!("{mode_name} at {}/s", point.rate)
        })?;
        let Some(outcome) = settled else { continue };
        let Some(histogram) = outcome.latency else {
            continue;
        };
        results.latency.push(Outcome {
            system: system.name().to_owned(),
            mode: *mode,
            point,
            sleep_interval: *sleep_interval,
            sent: outcome.written,
            delivered: histogram.len(),
            histogram,
        });
    }
    Ok(())
}

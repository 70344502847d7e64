//! Section 3: loss versus data rate in lossy mode.
//!
//! Numbered records of [`Plan::loss_record_size`] bytes (4 KiB, also the
//! block size, so each record is one chunk) are written at a sweep of rates
//! to one producer with 1 or 4 consumers ([`super::paced`]). For each
//! consumer the records delivered, missing, duplicated, torn and out of order
//! are counted exactly. The baseline is `tee` into one named FIFO per
//! consumer: lossless, so it shows instead how far a blocking multicast keeps
//! up (the rate achieved).
//!
//! Filebus programs run with their low-latency `--sleep-interval` (0 for
//! ours), as in the latency section.

use std::time::Duration;

use super::paced::{self, Schedule, Tally};
use super::system::{BusSetup, Mode, System};
use super::{BenchError, Context, Plan, Results, Section};

/// One point of the sweep for one system.
#[derive(Debug, Clone)]
pub(crate) struct Point {
    pub system: String,
    pub consumers: usize,
    /// Records per second asked for.
    pub rate: u64,
    pub runs: Vec<Run>,
}

/// One run of a point.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    /// Records written.
    pub written: u64,
    /// Records per second achieved.
    pub achieved_rate: f64,
    /// One per consumer.
    pub tallies: Vec<Tally>,
}

impl Run {
    /// Distinct records delivered over records written, over all consumers.
    pub(crate) fn delivered_fraction(&self) -> f64 {
        let offered = self.written * self.tallies.len() as u64;
        if offered == 0 {
            return 0.0;
        }
        let delivered: u64 = self.tallies.iter().map(|tally| tally.delivered).sum();
        delivered as f64 / offered as f64
    }

    /// The fraction delivered to the consumer that got the least.
    pub(crate) fn worst_consumer_fraction(&self) -> f64 {
        if self.written == 0 {
            return 0.0;
        }
        self.tallies
            .iter()
            .map(|tally| tally.delivered as f64 / self.written as f64)
            .fold(1.0, f64::min)
    }

    /// Sums of the counts over the consumers.
    pub(crate) fn total(&self) -> Tally {
        self.tallies
            .iter()
            .fold(Tally::default(), |sum, tally| sum + *tally)
    }
}

/// Sweeps rates and consumer counts, `repeat` interleaved rounds per point.
pub(crate) fn run(context: &mut Context<'_>, results: &mut Results) -> Result<(), BenchError> {
    let plan: &Plan = context.plan;
    for &consumers in &plan.loss_consumers {
        let systems = context.systems(
            |implementation| BusSetup {
                implementation,
                mode: Mode::Lossy,
                block_size: plan.loss_record_size,
                sleep_interval: Some(implementation.low_latency_interval),
                consumers,
            },
            System::TeeFifos { consumers },
        );
        for &rate in &plan.loss_rates {
            let schedule = Schedule {
                record_size: plan.loss_record_size,
                rate: rate as f64,
                records: (rate as f64 * plan.loss_duration.as_secs_f64()).ceil() as u64,
                time_cap: plan.loss_duration.mul_f64(1.5),
                measure_latency: false,
                drain_timeout: Duration::from_secs(5),
            };
            let mut points: Vec<Point> = systems
                .iter()
                .map(|system| Point {
                    system: system.name().to_owned(),
                    consumers,
                    rate,
                    runs: Vec::new(),
                })
                .collect();
            let mut failed = vec![false; systems.len()];
            for repetition in 1..=plan.repeat {
                for (index, system) in systems.iter().enumerate() {
                    let label = format!("loss {} x{consumers}, {rate} records/s", system.name());
                    context.progress.run(&label, repetition, plan.repeat);
                    if failed[index] {
                        continue;
                    }
                    let outcome = paced::run(context, system, &schedule);
                    match results.settle(outcome, Section::Loss, system.name(), || {
                        format!("{rate} records/s, {consumers} consumers")
                    })? {
                        Some(outcome) => points[index].runs.push(Run {
                            written: outcome.written,
                            achieved_rate: outcome.achieved_rate(),
                            tallies: outcome.tallies,
                        }),
                        None => failed[index] = true,
                    }
                }
            }
            results.loss.extend(points);
        }
    }
    Ok(())
}

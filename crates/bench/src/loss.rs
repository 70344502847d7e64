//! Section 3: loss versus data rate, in every multicast mode.
//!
//! Numbered records of [`Plan::loss_record_size`] bytes (4 KiB, also the
//! block size, so each record is one chunk) are written at a sweep of rates
//! to one producer with 1 or 4 consumers ([`super::paced`]). For each
//! consumer the records delivered, missing, duplicated, torn and out of order
//! are counted exactly, with the rate achieved and the CPU time of every
//! process of the system.
//!
//! Each filebus program runs plain lossy; ours (any program that is not a
//! `--reference`) also with `producer --history N` and unnamed consumers,
//! which catch up from the history, and with named consumers on that bus,
//! which hold the producer back instead of missing chunks ([`modes`]). The
//! baseline is `tee` into one named FIFO per consumer: lossless too, so it
//! and the named consumers show how far a multicast that blocks keeps up
//! (the rate achieved).
//!
//! Filebus programs run with their low-latency `--sleep-interval` (0 for
//! ours), as in the latency section.

use std::time::Duration;

use super::paced::{self, Cost, Schedule, Tally};
use super::system::{BusSetup, Mode, Role, System};
use super::{BenchError, Context, Implementation, Plan, Results, Section};

/// One point of the sweep for one system.
#[derive(Debug, Clone)]
pub(crate) struct Point {
    pub system: String,
    /// The bus's mode; `None` for `tee` into FIFOs.
    pub mode: Option<Mode>,
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
    /// CPU time and memory of the system's processes.
    pub cost: Cost,
}

impl Run {
    /// CPU time of all the system's processes per record delivered (to
    /// any consumer), in nanoseconds.
    pub(crate) fn cpu_ns_per_record(&self) -> Option<f64> {
        let delivered = self.total().delivered;
        let cpu = self.cost.total_cpu_ns()?;
        (delivered > 0).then(|| cpu as f64 / delivered as f64)
    }

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

    /// CPU time as a share of one CPU over the run, in percent: of the
    /// processes in `role`, or of all of them.
    pub(crate) fn cpu_percent(&self, role: Option<Role>) -> Option<f64> {
        let cpu = match role {
            Some(Role::Producer) => self.cost.producer_cpu_ns,
            Some(Role::Consumer) => self.cost.consumers_cpu_ns,
            None => self.cost.total_cpu_ns(),
        };
        self.cost.percent_of_a_cpu(cpu)
    }

    /// Sums of the counts over the consumers.
    pub(crate) fn total(&self) -> Tally {
        self.tallies
            .iter()
            .fold(Tally::default(), |sum, tally| sum + *tally)
    }
}

/// The modes `implementation` is measured in: plain lossy for all, and
/// with history and named consumers for all but references (the Python
/// reference has neither).
pub(crate) fn modes(implementation: &Implementation, plan: &Plan) -> Vec<Mode> {
    if implementation.is_reference {
        vec![Mode::Lossy]
    } else {
        vec![
            Mode::Lossy,
            Mode::History(plan.history_depth),
            Mode::Named(plan.history_depth),
        ]
    }
}

/// Sweeps rates and consumer counts, `repeat` interleaved rounds per point.
pub(crate) fn run(context: &mut Context<'_>, results: &mut Results) -> Result<(), BenchError> {
    let plan: &Plan = context.plan;
    for &consumers in &plan.loss_consumers {
        let systems = context.systems_in_modes(
            |implementation| modes(implementation, plan),
            |implementation, mode| BusSetup {
                implementation,
                mode,
                block_size: Some(plan.loss_record_size),
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
                    mode: system.mode(),
                    consumers,
                    rate,
                    runs: Vec::new(),
                })
                .collect();
            let mut failed = vec![false; systems.len()];
            for repetition in 1..=plan.repeat {
                for (index, system) in systems.iter().enumerate() {
                    let label = format!("loss {} x{consumers}, {rate} records/s", system.label());
                    context.progress.run(&label, repetition, plan.repeat);
                    if failed[index] {
                        continue;
                    }
                    let outcome = paced::run(context, system, &schedule);
                    match results.settle(outcome, Section::Loss, &system.label(), || {
                        format!("{rate} records/s, {consumers} consumers")
                    })? {
                        Some(outcome) => points[index].runs.push(Run {
                            written: outcome.written,
                            achieved_rate: outcome.achieved_rate(),
                            tallies: outcome.tallies,
                            cost: outcome.cost,
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

//! Section 4: what fan-out costs. One producer, a sweep of consumer counts
//! ([`Plan::fanout_consumers`], up to 64), at one fixed rate of small
//! records ([`Plan::fanout_rate`] records of [`Plan::fanout_record_size`]
//! bytes per second): the delivered share, the rate achieved, the CPU time
//! of the producer and of all the consumers, and peak memory.
//!
//! Filebus programs run with their default `--block-size` and
//! `--sleep-interval`, as a user would run them: records that keep coming
//! are gathered into chunks, each written once to the bus and copied by every
//! consumer from the file (ours with `splice` or `sendfile`). `tee` into one
//! named FIFO per consumer, the baseline, writes a copy of every read to
//! every FIFO. Ours runs plain lossy and with named consumers on a bus with
//! history (lossless multicast); references plain lossy only.

use std::time::Duration;

use super::loss::{Point, Run};
use super::paced::{self, Schedule};
use super::system::{BusSetup, Mode, System};
use super::{BenchError, Context, Implementation, Plan, Results, Section};

/// The modes `implementation` is measured in: plain lossy, and named
/// consumers for all but references.
pub(crate) fn modes(implementation: &Implementation, plan: &Plan) -> Vec<Mode> {
    if implementation.is_reference {
        vec![Mode::Lossy]
    } else {
        vec![Mode::Lossy, Mode::Named(plan.history_depth)]
    }
}

/// Sweeps the consumer counts, `repeat` interleaved rounds per point.
pub(crate) fn run(context: &mut Context<'_>, results: &mut Results) -> Result<(), BenchError> {
    let plan: &Plan = context.plan;
    let rate = plan.fanout_rate;
    let schedule = Schedule {
        record_size: plan.fanout_record_size,
        rate: rate as f64,
        records: (rate as f64 * plan.fanout_duration.as_secs_f64()).ceil() as u64,
        time_cap: plan.fanout_duration.mul_f64(1.5),
        measure_latency: false,
        drain_timeout: Duration::from_secs(10),
    };
    for &consumers in &plan.fanout_consumers {
        let systems = context.systems_in_modes(
            |implementation| modes(implementation, plan),
            |implementation, mode| BusSetup {
                implementation,
                mode,
                block_size: None,
                sleep_interval: None,
                consumers,
            },
            System::TeeFifos { consumers },
        );
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
                let label = format!("fan-out {} x{consumers}, {rate} records/s", system.label());
                context.progress.run(&label, repetition, plan.repeat);
                if failed[index] {
                    continue;
                }
                let outcome = paced::run(context, system, &schedule);
                match results.settle(outcome, Section::FanOut, &system.label(), || {
                    format!("{consumers} consumers, {rate} records/s")
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
        results.fanout.extend(points);
    }
    Ok(())
}

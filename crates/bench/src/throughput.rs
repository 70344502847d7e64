//! Section 1: lossless throughput for a sweep of block sizes.
//!
//! One run: start a lossless producer and one lossless consumer (or `cat |
//! cat`), write the pattern stream ([`super::pattern`]) into the producer's
//! input as fast as the pipe takes it, read the consumer's output and check
//! every byte. The first block is a warm-up: the clock starts when it comes
//! out, so that start-up time (a Python interpreter's, notably) is not
//! counted. Writing stops after [`Plan::throughput_bytes`] or
//! [`Plan::throughput_time`], whichever comes first; then the input is closed
//! and the run ends when the consumer's output ends, which with filebus
//! means the end-of-stream marker made it through. Throughput is the bytes
//! after the warm-up divided by the time from the warm-up's arrival to the
//! last byte's.
//!
//! Every program runs with its default `--sleep-interval`: input arrives
//! faster than any interval, so chunks are full.

use std::time::{Duration, Instant};

use super::pattern::Pattern;
use super::pump::Pump;
use super::system::{BusSetup, Mode, Role, System};
use super::{BenchError, Context, Plan, Results, Section};

/// One point of the sweep for one system.
#[derive(Debug, Clone)]
pub(crate) struct Point {
    pub system: String,
    pub block_size: usize,
    pub runs: Vec<Run>,
}

/// One measured run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Run {
    /// Bytes timed (after the warm-up block).
    pub bytes: u64,
    pub seconds: f64,
    /// Peak RSS of the producer (or first stage), KiB.
    pub producer_rss_kib: Option<u64>,
    /// Peak RSS of the consumer (or last stage), KiB.
    pub consumer_rss_kib: Option<u64>,
    /// CPU time (user and system) of the producer and the consumer (or both
    /// stages) over the whole run, start-up and warm-up included, per chunk
    /// of the block size; nanoseconds.
    pub cpu_ns_per_chunk: Option<f64>,
}

impl Run {
    /// Megabytes (10^6 bytes) per second.
    pub(crate) fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / self.seconds / 1e6
    }
}

/// Runs the sweep: for each block size, `repeat` rounds over every system
/// (interleaved, so that a noisy moment does not hit one system only).
pub(crate) fn run(context: &mut Context<'_>, results: &mut Results) -> Result<(), BenchError> {
    let pattern = Pattern::new();
    let plan = context.plan;
    for &block_size in &plan.block_sizes {
        let systems = context.systems(
            |implementation| BusSetup {
                implementation,
                mode: Mode::Lossless,
                block_size: Some(block_size),
                sleep_interval: None,
                consumers: 1,
            },
            System::CatPipe,
        );
        let mut points: Vec<Point> = systems
            .iter()
            .map(|system| Point {
                system: system.name().to_owned(),
                block_size,
                runs: Vec::new(),
            })
            .collect();
        let mut failed = vec![false; systems.len()];
        for repetition in 1..=plan.repeat {
            for (index, system) in systems.iter().enumerate() {
                let mode = match system {
                    System::Bus(_) => "lossless",
                    _ => "pipe",
                };
                let label = format!(
                    "throughput {} {mode}, block size {}",
                    system.name(),
                    super::report::bytes_label(block_size as u64)
                );
                context.progress.run(&label, repetition, plan.repeat);
                if failed[index] {
                    continue;
                }
                let outcome = run_once(context, system, block_size, &pattern);
                match results.settle(outcome, Section::Throughput, system.name(), || {
                    format!("block size {block_size}")
                })? {
                    Some(run) => points[index].runs.push(run),
                    None => failed[index] = true,
                }
            }
        }
        results.throughput.extend(points);
    }
    Ok(())
}

/// One run of `system`.
fn run_once(
    context: &Context<'_>,
    system: &System<'_>,
    block_size: usize,
    pattern: &Pattern,
) -> Result<Run, BenchError> {
    let plan: &Plan = context.plan;
    let mut running = system.start(context.scratch)?;
    let mut pump = Pump::new(pattern, system.name());
    let warm_up = block_size as u64;

    // Warm-up: one block through, so that the clock starts with everyone up.
    pump.run_until(&mut running, warm_up, |pump| pump.read >= warm_up)?;
    let start = Instant::now();
    let stop_writing = start + plan.throughput_time;
    let limit = warm_up + plan.throughput_bytes;
    pump.run_until(&mut running, limit, |pump| {
        pump.written >= limit || Instant::now() >= stop_writing
    })?;
    // End of input: the rest comes out, then the output ends.
    running.close_input();
    pump.run_until(&mut running, pump.written, |pump| pump.ended)?;
    if pump.read != pump.written {
        return Err(BenchError::Failed(format!(
            "{}: {} of {} bytes came out in lossless mode",
            system.name(),
            pump.read,
            pump.written
        )));
    }
    running.finish(true, Duration::from_secs(10))?;
    let cpu_ns = running
        .cpu_ns_at_exit(Role::Producer)
        .zip(running.cpu_ns_at_exit(Role::Consumer))
        .map(|(producer, consumer)| producer + consumer);
    let chunks = pump.read.div_ceil(block_size as u64).max(1);
    let end = pump.last_read_at.unwrap_or(start);
    Ok(Run {
        bytes: pump.read - warm_up,
        seconds: end.duration_since(start).as_secs_f64().max(1e-9),
        producer_rss_kib: running.peak_rss_kib(Role::Producer),
        consumer_rss_kib: running.peak_rss_kib(Role::Consumer),
        cpu_ns_per_chunk: cpu_ns.map(|cpu_ns| cpu_ns as f64 / chunks as f64),
    })
}

//! The project's performance targets, checked against the results of the
//! first implementation ("ours"). Reported, never asserted: a missed target
//! is a finding, not a failure of the benchmark.

use super::Results;
use super::loss::Point as LossPoint;
use super::system::{CAT_PIPE, Mode, Role, TEE_FIFOS};

/// Whether a target was met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Met,
    Missed,
    /// Nothing to judge by (section not run, or the run failed).
    NotMeasured,
    /// Informational: nothing to meet.
    Info,
}

impl Verdict {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "MISSED",
            Verdict::NotMeasured => "not measured",
            Verdict::Info => "info",
        }
    }
}

/// One target and how the results compare.
#[derive(Debug, Clone)]
pub(crate) struct Check {
    /// A stable identifier, for CSV and JSON.
    pub id: &'static str,
    /// What the target says.
    pub target: String,
    /// What was measured, in words.
    pub measured: String,
    /// The measured number, in `unit`.
    pub value: Option<f64>,
    pub unit: &'static str,
    pub verdict: Verdict,
    /// By how much it was met or missed.
    pub margin: String,
}

const MIB: usize = 1024 * 1024;
const KIB4: usize = 4096;

/// Checks every target.
pub(crate) fn evaluate(results: &Results) -> Vec<Check> {
    let Some(ours) = results.meta.implementations.first() else {
        return Vec::new();
    };
    let ours = ours.name.as_str();
    let reference = results
        .meta
        .implementations
        .iter()
        .find(|implementation| implementation.is_reference)
        .map(|implementation| implementation.name.as_str());
    let mut checks = Vec::new();
    let mb = |system: &str, block: usize| throughput_mb(results, system, block);

    // 1. Lossless throughput.
    let ratio_check = |id,
                       target: String,
                       ours_mb: Option<f64>,
                       other: Option<f64>,
                       other_name: &str,
                       goal: f64| {
        match (ours_mb, other) {
            (Some(ours_mb), Some(other_mb)) if other_mb > 0.0 => {
                let ratio = ours_mb / other_mb;
                Check {
                    id,
                    target,
                    measured: format!(
                        "{} MB/s vs {} MB/s ({other_name}): {}",
                        sig(ours_mb),
                        sig(other_mb),
                        ratio_text(ratio)
                    ),
                    value: Some(ratio),
                    unit: "ratio",
                    verdict: verdict(ratio >= goal),
                    margin: margin_at_least(ratio, goal),
                }
            }
            _ => not_measured(id, target, "ratio"),
        }
    };
    checks.push(ratio_check(
        "throughput_1mib_vs_pipe",
        "lossless, 1 MiB blocks: >= 50% of cat|cat".into(),
        mb(ours, MIB),
        mb(CAT_PIPE, MIB),
        CAT_PIPE,
        0.5,
    ));
    match reference {
        Some(reference) => checks.push(ratio_check(
            "throughput_1mib_vs_reference",
            format!("lossless, 1 MiB blocks: >= 100x {reference}"),
            mb(ours, MIB),
            mb(reference, MIB),
            reference,
            100.0,
        )),
        None => checks.push(not_measured(
            "throughput_1mib_vs_reference",
            "lossless, 1 MiB blocks: >= 100x the reference (run with --reference)".into(),
            "ratio",
        )),
    }
    let chunks = mb(ours, KIB4).map(|mb| mb * 1e6 / KIB4 as f64);
    checks.push(at_least(
        "throughput_4kib_chunks",
        "lossless, 4 KiB blocks: >= 50,000 chunks/s".into(),
        chunks,
        50_000.0,
        "chunks/s",
    ));

    // 2. Latency, lossy mode.
    let latency = results
        .latency
        .iter()
        .find(|outcome| outcome.system == ours && outcome.mode == Some(Mode::Lossy));
    let rate = results.meta.plan.latency_rate;
    for (id, quantile, name, goal) in [
        ("latency_p50", 0.5, "p50", 50.0),
        ("latency_p99", 0.99, "p99", 250.0),
    ] {
        let value =
            latency.map(|outcome| outcome.histogram.value_at_quantile(quantile) as f64 / 1e3);
        checks.push(at_most(
            id,
            format!("latency at {rate} records/s, lossy: {name} < {goal} us"),
            value,
            goal,
            "us",
        ));
    }

    // 3. Loss, 4 consumers, 4 KiB records.
    let points: Vec<&LossPoint> = results
        .loss
        .iter()
        .filter(|point| point.system == ours && point.consumers == 4 && !point.runs.is_empty())
        .collect();
    let at_10k = points.iter().find(|point| point.rate == 10_000);
    let target = "lossy, 4 consumers, 4 KiB records: 100% delivered at 10,000 records/s".to_owned();
    checks.push(match at_10k {
        Some(point) => {
            let worst = point
                .runs
                .iter()
                .map(|run| run.worst_consumer_fraction())
                .fold(1.0, f64::min);
            Check {
                id: "loss_10k_4_consumers",
                target,
                measured: format!(
                    "{}% to the worst consumer in the worst of {} runs",
                    percent(worst),
                    point.runs.len()
                ),
                value: Some(worst * 100.0),
                unit: "%",
                verdict: verdict(worst >= 1.0),
                margin: if worst >= 1.0 {
                    "no record lost".into()
                } else {
                    format!("{}% lost", percent(1.0 - worst))
                },
            }
        }
        None => not_measured("loss_10k_4_consumers", target, "%"),
    });
    let onset = loss_onset(&points);
    checks.push(Check {
        id: "loss_onset_4_consumers",
        target: "lossy, 4 consumers: the rate where loss begins".into(),
        measured: onset.clone().unwrap_or_else(|| "not measured".into()),
        value: None,
        unit: "records/s",
        verdict: if onset.is_some() {
            Verdict::Info
        } else {
            Verdict::NotMeasured
        },
        margin: String::new(),
    });

    // 4. Idle cost and memory.
    let idle: Vec<_> = results.idle.iter().filter(|m| m.system == ours).collect();
    let worst_cpu = idle
        .iter()
        .map(|m| m.cpu_ms_per_10s())
        .fold(None, |worst: Option<f64>, cpu| {
            Some(worst.map_or(cpu, |w| w.max(cpu)))
        });
    checks.push(at_most(
        "idle_cpu",
        "idle: CPU time over 10 s < 10 ms per process (worst process)".into(),
        worst_cpu,
        10.0,
        "ms",
    ));
    let throughput_rss = results
        .throughput
        .iter()
        .filter(|point| point.system == ours && point.block_size == MIB)
        .flat_map(|point| point.runs.iter())
        .flat_map(|run| [run.producer_rss_kib, run.consumer_rss_kib])
        .flatten();
    let idle_rss = idle
        .iter()
        .filter(|m| matches!(m.role, Role::Producer | Role::Consumer))
        .map(|m| m.peak_rss_kib);
    let worst_rss = throughput_rss
        .chain(idle_rss)
        .max()
        .map(|kib| kib as f64 / 1024.0);
    checks.push(at_most(
        "peak_rss_1mib",
        "peak RSS < 8 MiB with 1 MiB blocks (worst process, throughput and idle runs)".into(),
        worst_rss,
        8.0,
        "MiB",
    ));
    checks
}

/// The median throughput of `system` at `block` bytes, MB/s.
pub(crate) fn throughput_mb(results: &Results, system: &str, block: usize) -> Option<f64> {
    results
        .throughput
        .iter()
        .find(|point| point.system == system && point.block_size == block)
        .and_then(|point| super::stats::Summary::of(point.runs.iter().map(|run| run.mb_per_s())))
        .map(|summary| summary.median)
}

/// "loss begins between 20,000 and 50,000 records/s (100% up to 20,000)",
/// from points of one system and consumer count. A point is lossless when
/// every consumer got every record in every run.
pub(crate) fn loss_onset(points: &[&LossPoint]) -> Option<String> {
    let mut points: Vec<&&LossPoint> = points
        .iter()
        .filter(|point| !point.runs.is_empty())
        .collect();
    if points.is_empty() {
        return None;
    }
    points.sort_by_key(|point| point.rate);
    let lossless = |point: &LossPoint| {
        point
            .runs
            .iter()
            .all(|run| run.worst_consumer_fraction() >= 1.0)
    };
    let first_loss = points.iter().position(|point| !lossless(point));
    let system = if points[0].system == TEE_FIFOS {
        " (tee blocks instead of dropping)"
    } else {
        ""
    };
    Some(match first_loss {
        None => format!(
            "no loss up to {} records/s, the highest rate tried{system}",
            group(points[points.len() - 1].rate)
        ),
        Some(0) => format!(
            "loss already at {} records/s, the lowest rate tried",
            group(points[0].rate)
        ),
        Some(index) => format!(
            "loss begins between {} and {} records/s",
            group(points[index - 1].rate),
            group(points[index].rate)
        ),
    })
}

fn verdict(met: bool) -> Verdict {
    if met { Verdict::Met } else { Verdict::Missed }
}

fn not_measured(id: &'static str, target: String, unit: &'static str) -> Check {
    Check {
        id,
        target,
        measured: "not measured".into(),
        value: None,
        unit,
        verdict: Verdict::NotMeasured,
        margin: String::new(),
    }
}

fn at_least(
    id: &'static str,
    target: String,
    value: Option<f64>,
    goal: f64,
    unit: &'static str,
) -> Check {
    match value {
        Some(value) => Check {
            id,
            target,
            measured: format!("{} {unit}", sig(value)),
            value: Some(value),
            unit,
            verdict: verdict(value >= goal),
            margin: margin_at_least(value, goal),
        },
        None => not_measured(id, target, unit),
    }
}

fn at_most(
    id: &'static str,
    target: String,
    value: Option<f64>,
    goal: f64,
    unit: &'static str,
) -> Check {
    match value {
        Some(value) => Check {
            id,
            target,
            measured: format!("{} {unit}", sig(value)),
            value: Some(value),
            unit,
            verdict: verdict(value < goal),
            margin: if value < goal {
                if value > 0.0 {
                    format!("{}x under the limit", sig(goal / value))
                } else {
                    "zero".into()
                }
            } else {
                format!("{}x over the limit", sig(value / goal))
            },
        },
        None => not_measured(id, target, unit),
    }
}

fn margin_at_least(value: f64, goal: f64) -> String {
    if value >= goal {
        format!("{}x the target", sig(value / goal))
    } else {
        format!("{}% of the target", sig(value / goal * 100.0))
    }
}

fn ratio_text(ratio: f64) -> String {
    if ratio >= 2.0 {
        format!("{}x", sig(ratio))
    } else {
        format!("{}%", sig(ratio * 100.0))
    }
}

fn percent(fraction: f64) -> String {
    super::report::percent_text(fraction)
}

fn sig(value: f64) -> String {
    super::report::sig(value)
}

fn group(value: u64) -> String {
    super::report::group_digits(value)
}

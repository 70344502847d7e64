//! Every number of the results as a flat [`Row`], the common ground of the
//! CSV and JSON files.

use std::collections::HashMap;

use serde::Serialize;

use super::format::{mode_name, role_name, sig};
use super::{QUANTILES, is_pipe};
use crate::Results;
use crate::latency::Outcome as Latency;
use crate::loss::Point as LossPoint;
use crate::paced::Tally;
use crate::stats::Summary;
use crate::system::{Mode, Role, format_seconds};

/// One number of the results. In JSON, empty texts and missing numbers are
/// left out, except `value`, which is `null` when there is none.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Row {
    pub section: &'static str,
    pub system: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u64>,
    /// Records per second asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumers: Option<u64>,
    /// "producer" or "consumer", where it matters.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub role: &'static str,
    pub metric: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub unit: &'static str,
    /// The median, for repeated measurements.
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// How many runs the value summarises.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs: Option<usize>,
    /// `value` over the protocol floor's value for the same point and
    /// metric (section, mode, block size, rate, consumers, role), when the
    /// floor measured that point and its value is not zero: above 1 is more
    /// than the floor (better for rates and shares delivered, worse for
    /// times and CPU). Not given in the idle section, where the floor's
    /// figures are at or near zero, nor on the floor's own rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fraction_of_floor: Option<f64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// Every number as a flat row.
pub(crate) fn rows(results: &Results) -> Vec<Row> {
    let mut rows = Vec::new();
    for point in &results.throughput {
        let base = Row {
            section: "throughput",
            system: point.system.clone(),
            mode: if is_pipe(&point.system) {
                "pipe"
            } else {
                "lossless"
            },
            block_size: Some(point.block_size as u64),
            ..Row::default()
        };
        let mb = Summary::of(point.runs.iter().map(|run| run.mb_per_s()));
        let chunks = Summary::of(
            point
                .runs
                .iter()
                .map(|run| run.mb_per_s() * 1e6 / point.block_size as f64),
        );
        rows.push(summary_row(&base, "throughput", "MB/s", mb));
        rows.push(summary_row(&base, "chunks_per_second", "chunks/s", chunks));
        let bytes = Summary::of(point.runs.iter().map(|run| run.bytes as f64));
        rows.push(summary_row(&base, "bytes_timed", "bytes", bytes));
        let cpu = Summary::of(
            point
                .runs
                .iter()
                .filter_map(|run| run.cpu_ns_per_chunk)
                .map(|nanos| nanos / 1e3),
        );
        if cpu.is_some() {
            rows.push(summary_row(&base, "cpu_per_chunk", "us", cpu));
        }
        for (role, rss) in [
            (
                "producer",
                point
                    .runs
                    .iter()
                    .filter_map(|run| run.producer_rss_kib)
                    .max(),
            ),
            (
                "consumer",
                point
                    .runs
                    .iter()
                    .filter_map(|run| run.consumer_rss_kib)
                    .max(),
            ),
        ] {
            if let Some(kib) = rss {
                rows.push(Row {
                    role,
                    metric: "peak_rss_max",
                    unit: "KiB",
                    value: Some(kib as f64),
                    runs: Some(point.runs.len()),
                    ..base.clone()
                });
            }
        }
    }
    for outcome in &results.latency {
        latency_rows(outcome, &mut rows);
    }
    let plan = &results.meta.plan;
    for point in &results.loss {
        let base = Row {
            section: "loss",
            block_size: Some(plan.loss_record_size as u64),
            ..Row::default()
        };
        point_rows(point, base, &mut rows);
    }
    for point in &results.fanout {
        let base = Row {
            section: "fan-out",
            note: if is_pipe(&point.system) {
                String::new()
            } else {
                "default --block-size and --sleep-interval".into()
            },
            ..Row::default()
        };
        point_rows(point, base, &mut rows);
    }
    for m in &results.idle {
        let base = Row {
            section: "idle",
            system: m.system.clone(),
            mode: m.mode.name(),
            block_size: Some(results.meta.plan.idle_block_size as u64),
            role: role_name(m.role),
            note: format!(
                "window {} s; CPU from {}; directory {}",
                sig(m.window_seconds),
                if m.cpu_exact {
                    "schedstat"
                } else {
                    "clock ticks"
                },
                m.busy_directory.map_or("quiet".to_owned(), |files| format!(
                    "busy: {} files of another program/s",
                    sig(files)
                ))
            ),
            ..Row::default()
        };
        for (metric, unit, value) in [
            ("cpu_time", "ms", m.cpu_ns as f64 / 1e6),
            ("cpu_time_per_10s", "ms", m.cpu_ms_per_10s()),
            ("wakeups_per_second", "1/s", m.wakeups_per_s()),
            (
                "preemptions_per_second",
                "1/s",
                m.involuntary as f64 / m.window_seconds,
            ),
            ("peak_rss", "KiB", m.peak_rss_kib as f64),
        ] {
            rows.push(Row {
                metric,
                unit,
                value: Some(value),
                ..base.clone()
            });
        }
    }
    if let Some(floor) = results.meta.floor() {
        add_floor_fractions(&mut rows, &floor.name);
    }
    for failure in &results.failures {
        rows.push(Row {
            section: failure.section.name(),
            system: failure.system.clone(),
            metric: "failure",
            note: format!("{}: {}", failure.point, failure.message),
            ..Row::default()
        });
    }
    rows
}

/// Sets [`Row::fraction_of_floor`] on every row but the floor's own whose
/// point and metric the floor has a row for, with a value that is not zero.
fn add_floor_fractions(rows: &mut [Row], floor: &str) {
    type Key = (
        &'static str,
        &'static str,
        Option<u64>,
        Option<u64>,
        Option<u64>,
        &'static str,
        &'static str,
    );
    let key = |row: &Row| -> Key {
        (
            row.section,
            row.mode,
            row.block_size,
            row.rate,
            row.consumers,
            row.role,
            row.metric,
        )
    };
    let floors: HashMap<Key, f64> = rows
        .iter()
        .filter(|row| row.system == floor && row.section != "idle")
        .filter_map(|row| Some((key(row), row.value?)))
        .collect();
    for row in rows.iter_mut().filter(|row| row.system != floor) {
        row.fraction_of_floor = floors
            .get(&key(row))
            .and_then(|floor| fraction(row.value?, *floor));
    }
}

/// `value / floor`, if both are finite and the floor is not zero.
pub(crate) fn fraction(value: f64, floor: f64) -> Option<f64> {
    (value.is_finite() && floor.is_finite() && floor != 0.0).then(|| value / floor)
}

fn summary_row(
    base: &Row,
    metric: &'static str,
    unit: &'static str,
    summary: Option<Summary>,
) -> Row {
    Row {
        metric,
        unit,
        value: summary.map(|s| s.median),
        min: summary.map(|s| s.min),
        max: summary.map(|s| s.max),
        runs: Some(summary.map_or(0, |s| s.runs)),
        ..base.clone()
    }
}

fn latency_rows(outcome: &Latency, rows: &mut Vec<Row>) {
    let base = Row {
        section: "latency",
        system: outcome.system.clone(),
        mode: mode_name(outcome.mode),
        block_size: Some(4096),
        rate: Some(outcome.point.rate),
        consumers: Some(1),
        note: match (outcome.sleep_interval, outcome.mode) {
            (Some(interval), _) => format!("--sleep-interval {}", format_seconds(interval)),
            (None, Some(_)) => "default options".to_owned(),
            (None, None) => String::new(),
        },
        ..Row::default()
    };
    rows.push(Row {
        metric: "records_sent",
        unit: "records",
        value: Some(outcome.sent as f64),
        ..base.clone()
    });
    rows.push(Row {
        metric: "records_delivered",
        unit: "records",
        value: Some(outcome.delivered as f64),
        ..base.clone()
    });
    if outcome.delivered == 0 {
        return;
    }
    for (quantile, name) in QUANTILES {
        rows.push(Row {
            metric: name,
            unit: "us",
            value: Some(outcome.histogram.value_at_quantile(quantile) as f64 / 1e3),
            ..base.clone()
        });
    }
    for (metric, nanos) in [
        ("min", outcome.histogram.min() as f64),
        ("mean", outcome.histogram.mean()),
        ("max", outcome.histogram.max() as f64),
    ] {
        rows.push(Row {
            metric,
            unit: "us",
            value: Some(nanos / 1e3),
            ..base.clone()
        });
    }
}

/// The rows of a point of the loss or fan-out section: `base` gives the
/// section, block size and note.
fn point_rows(point: &LossPoint, base: Row, rows: &mut Vec<Row>) {
    let base = Row {
        system: point.system.clone(),
        mode: point.mode.map_or("fifo", Mode::name),
        rate: Some(point.rate),
        consumers: Some(point.consumers as u64),
        note: match point.mode.and_then(Mode::history_depth) {
            Some(depth) if base.note.is_empty() => format!("--history {depth}"),
            Some(depth) => format!("{}; --history {depth}", base.note),
            None => base.note.clone(),
        },
        ..base
    };
    let runs = &point.runs;
    rows.push(summary_row(
        &base,
        "delivered_percent",
        "%",
        Summary::of(runs.iter().map(|run| run.delivered_fraction() * 100.0)),
    ));
    rows.push(summary_row(
        &base,
        "worst_consumer_delivered_percent",
        "%",
        Summary::of(runs.iter().map(|run| run.worst_consumer_fraction() * 100.0)),
    ));
    rows.push(summary_row(
        &base,
        "achieved_rate",
        "records/s",
        Summary::of(runs.iter().map(|run| run.achieved_rate)),
    ));
    rows.push(summary_row(
        &base,
        "cpu_per_record",
        "us",
        Summary::of(
            runs.iter()
                .filter_map(|run| run.cpu_ns_per_record().map(|ns| ns / 1e3)),
        ),
    ));
    // CPU time over the run as a share of one CPU: of the producer, of all
    // the consumers, and of every process.
    for (role, name, metric) in [
        (Some(Role::Producer), "producer", "cpu_percent"),
        (Some(Role::Consumer), "consumer", "cpu_percent"),
        (None, "", "cpu_percent_total"),
    ] {
        rows.push(Row {
            role: name,
            note: if role == Some(Role::Consumer) {
                join_note(&base.note, "all consumers")
            } else {
                base.note.clone()
            },
            ..summary_row(
                &base,
                metric,
                "%",
                Summary::of(runs.iter().filter_map(|run| run.cpu_percent(role))),
            )
        });
    }
    for (role, metric, kib) in [
        (
            "producer",
            "peak_rss",
            runs.iter().map(|run| run.cost.producer_rss_kib).max(),
        ),
        (
            "consumer",
            "peak_rss_sum",
            runs.iter().map(|run| run.cost.consumers_rss_kib).max(),
        ),
    ] {
        if let Some(kib) = kib {
            rows.push(Row {
                role,
                metric,
                unit: "KiB",
                value: Some(kib as f64),
                runs: Some(runs.len()),
                note: join_note(&base.note, "the largest of the runs"),
                ..base.clone()
            });
        }
    }
    let written: u64 = runs.iter().map(|run| run.written).sum();
    let total = runs
        .iter()
        .map(|run| run.total())
        .fold(Tally::default(), |sum, tally| sum + tally);
    let consumers = point.consumers as u64;
    for (metric, value) in [
        ("records_written_total", written),
        ("records_delivered_total", total.delivered),
        (
            "records_missing_total",
            (written * consumers).saturating_sub(total.delivered),
        ),
        ("duplicates_total", total.duplicates),
        ("torn_total", total.torn),
        ("out_of_order_total", total.out_of_order),
    ] {
        rows.push(Row {
            metric,
            unit: "records",
            value: Some(value as f64),
            runs: Some(runs.len()),
            note: if metric == "records_written_total" {
                base.note.clone()
            } else {
                join_note(&base.note, "summed over consumers and runs")
            },
            ..base.clone()
        });
    }
}

/// Two notes as one: "a; b".
fn join_note(first: &str, second: &str) -> String {
    if first.is_empty() {
        second.to_owned()
    } else {
        format!("{first}; {second}")
    }
}

/// Points (percentile, microseconds) of a latency distribution, evenly
/// spaced on the scale of the "nines" (x = -log10(1 - q)), up to the max.
pub(crate) fn distribution(outcome: &Latency) -> Vec<(f64, f64)> {
    let histogram = &outcome.histogram;
    let count = histogram.len().max(1) as f64;
    let last_x = count.log10();
    let mut points = Vec::new();
    let mut x: f64 = 0.0;
    while x < last_x {
        let quantile = 1.0 - 10f64.powf(-x);
        points.push((
            quantile * 100.0,
            histogram.value_at_quantile(quantile) as f64 / 1e3,
        ));
        x += 0.05;
    }
    points.push((100.0, histogram.max() as f64 / 1e3));
    points
}

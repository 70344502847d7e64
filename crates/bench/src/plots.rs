//! The plots of a benchmark, as SVG files drawn by plotters ([`super::chart`]):
//! - `throughput.svg`: lossless MB/s versus block size, both axes logarithmic,
//!   with the range of the runs as a bar at each point;
//! - `latency.svg`: the latency distribution of each system, latency
//!   (log scale) versus percentile on the scale of the "nines" (90%, 99%,
//!   99.9%... equally spaced), as HdrHistogram plots it;
//! - `loss.svg`: % of records delivered versus the rate asked (log scale),
//!   a color per system and mode, solid for one consumer, dashed for several;
//! - `loss-cpu.svg`: CPU time per record delivered versus the rate asked,
//!   the same lines;
//! - `loss-rate.svg`: the rate achieved versus the rate asked, the same
//!   lines: where a mode holds the producer back;
//! - `fan-out.svg`: CPU time of all processes (solid) and of the producer
//!   alone (dashed) versus the number of consumers, a color per system and
//!   mode.

use std::path::Path;

use super::chart::{Chart, Scale, Series, color};
use super::loss::{Point, Run};
use super::report::{self, bytes_label, distribution, sig};
use super::stats::Summary;
use super::system::{Mode, Role, label};
use super::{BenchError, Results};

/// Writes the plots of the sections that ran into `dir`, creating it if
/// needed.
pub(crate) fn write_plots(results: &Results, dir: &Path) -> Result<(), BenchError> {
    std::fs::create_dir_all(dir)
        .map_err(|error| BenchError::io(format!("cannot create {}", dir.display()), error))?;
    let charts = [
        ("throughput.svg", throughput_chart(results)),
        ("latency.svg", latency_chart(results)),
        ("loss.svg", loss_chart(results, LossMetric::Delivered)),
        (
            "loss-cpu.svg",
            loss_chart(results, LossMetric::CpuPerRecord),
        ),
        ("loss-rate.svg", loss_chart(results, LossMetric::Achieved)),
        ("fan-out.svg", fanout_chart(results)),
    ];
    for (name, chart) in charts {
        let Some(chart) = chart else { continue };
        let path = dir.join(name);
        let svg = chart.render().map_err(|error| {
            BenchError::io(
                format!("cannot draw {}", path.display()),
                std::io::Error::other(error),
            )
        })?;
        std::fs::write(&path, svg)
            .map_err(|error| BenchError::io(format!("cannot write {}", path.display()), error))?;
    }
    Ok(())
}

fn systems_in_order<'a>(names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut systems = Vec::new();
    for name in names {
        if !systems.contains(&name) {
            systems.push(name);
        }
    }
    systems
}

fn throughput_chart(results: &Results) -> Option<Chart> {
    if results.throughput.is_empty() {
        return None;
    }
    let plan = &results.meta.plan;
    let systems = systems_in_order(results.throughput.iter().map(|p| p.system.as_str()));
    let mut series = Vec::new();
    for (index, system) in systems.iter().enumerate() {
        let mut points = Vec::new();
        let mut ranges = Vec::new();
        for point in results.throughput.iter().filter(|p| p.system == *system) {
            if let Some(summary) = Summary::of(point.runs.iter().map(|run| run.mb_per_s())) {
                points.push((point.block_size as f64, summary.median));
                ranges.push(Some((summary.min, summary.max)));
            }
        }
        series.push(Series {
            name: (*system).to_owned(),
            color: color(index),
            dashed: false,
            points,
            ranges,
            markers: true,
        });
    }
    let y_scale = Scale::log_covering(
        series.iter().flat_map(|s| {
            s.ranges
                .iter()
                .flatten()
                .flat_map(|(low, high)| [*low, *high])
        }),
        10.0,
    );
    let x_scale = Scale::Log {
        min: *plan.block_sizes.first()? as f64 / 1.5,
        max: *plan.block_sizes.last()? as f64 * 1.5,
    };
    Some(Chart {
        title: "Lossless throughput versus block size".into(),
        subtitle: format!(
            "median of {} runs (bar: min to max); every byte checked; {}",
            plan.repeat, results.meta.started
        ),
        x_label: "block size".into(),
        y_label: "MB/s (10^6 bytes/s)".into(),
        x_scale,
        y_scale,
        x_ticks: plan
            .block_sizes
            .iter()
            .map(|&size| (size as f64, bytes_label(size as u64)))
            .collect(),
        y_ticks: y_scale.ticks(tick_label),
        series,
    })
}

/// A tick label: whole numbers without decimals ("10", "1,000"), others
/// to three significant digits.
fn tick_label(value: f64) -> String {
    if value >= 1.0 && value.fract() == 0.0 {
        report::group_digits(value as u64)
    } else {
        trim_zeros(&sig(value)).to_owned()
    }
}

fn latency_chart(results: &Results) -> Option<Chart> {
    // The plan's first point (the one with a distribution long enough to
    // draw); the table has the others.
    let plotted = *results.meta.plan.latency_points.first()?;
    let outcomes: Vec<_> = results
        .latency
        .iter()
        .filter(|outcome| outcome.delivered > 0 && outcome.point == plotted)
        .collect();
    if outcomes.is_empty() {
        return None;
    }
    // x: the number of nines, -log10(1 - q).
    let nines = |percentile: f64| {
        let rest = 1.0 - percentile / 100.0;
        if rest <= 0.0 { f64::NAN } else { -rest.log10() }
    };
    let mut series = Vec::new();
    let mut max_x: f64 = 1.0;
    for (index, outcome) in outcomes.iter().enumerate() {
        let points = distribution(outcome);
        let count = outcome.histogram.len().max(1) as f64;
        let last_x = count.log10();
        max_x = max_x.max(last_x);
        let points: Vec<(f64, f64)> = points
            .iter()
            .map(|(percentile, micros)| {
                let x = nines(*percentile);
                (if x.is_nan() { last_x } else { x }, micros.max(0.001))
            })
            .collect();
        series.push(Series {
            name: format!(
                "{} {}",
                outcome.system,
                outcome.mode.map_or("", super::system::Mode::name)
            )
            .trim_end()
            .to_owned(),
            color: color(index),
            dashed: outcome.mode == Some(super::system::Mode::Lossless),
            ranges: vec![None; points.len()],
            points,
            markers: false,
        });
    }
    let max_x = max_x.ceil();
    let y_scale = Scale::log_covering(
        series.iter().flat_map(|s| s.points.iter().map(|p| p.1)),
        10.0,
    );
    let x_ticks = (0..=max_x as u32)
        .map(|nines| {
            let label = match nines {
                0 => "0%".to_owned(),
                n => {
                    let percent = 100.0 - 100.0 * 10f64.powi(-(n as i32));
                    format!("{}%", trim_zeros(&format!("{percent:.4}")))
                }
            };
            (f64::from(nines), label)
        })
        .collect();
    let plan = &results.meta.plan;
    Some(Chart {
        title: "Latency distribution, producer stdin to consumer stdout".into(),
        subtitle: format!(
            "{} records of {} bytes at {}/s ({}), one consumer; solid: lossy or pipe, \
             dashed: lossless",
            plotted.records,
            plan.latency_record_size,
            plotted.rate,
            plotted.options_name()
        ),
        x_label: "percentile".into(),
        y_label: "latency (microseconds)".into(),
        x_scale: Scale::Linear {
            min: 0.0,
            max: max_x,
        },
        y_scale,
        x_ticks,
        y_ticks: y_scale.ticks(tick_label),
        series,
    })
}

fn trim_zeros(text: &str) -> &str {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    }
}

/// What a chart of the loss section shows against the rate asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LossMetric {
    /// % of records delivered, over all consumers.
    Delivered,
    /// CPU time of every process per record delivered, microseconds.
    CpuPerRecord,
    /// Records per second taken by the producer.
    Achieved,
}

impl LossMetric {
    fn value(self, run: &Run) -> Option<f64> {
        match self {
            LossMetric::Delivered => Some(run.delivered_fraction() * 100.0),
            LossMetric::CpuPerRecord => run.cpu_ns_per_record().map(|ns| ns / 1e3),
            LossMetric::Achieved => Some(run.achieved_rate),
        }
    }
}

/// The (system, mode) pairs of `points` in order of first appearance.
fn labels_in_order(points: &[Point]) -> Vec<(&str, Option<Mode>)> {
    let mut labels = Vec::new();
    for point in points {
        let pair = (point.system.as_str(), point.mode);
        if !labels.contains(&pair) {
            labels.push(pair);
        }
    }
    labels
}

fn loss_chart(results: &Results, metric: LossMetric) -> Option<Chart> {
    if results.loss.is_empty() {
        return None;
    }
    let plan = &results.meta.plan;
    let labels = labels_in_order(&results.loss);
    let mut series = Vec::new();
    for (index, (system, mode)) in labels.iter().enumerate() {
        for &consumers in &plan.loss_consumers {
            let mut points = Vec::new();
            let mut ranges = Vec::new();
            for point in results
                .loss
                .iter()
                .filter(|p| p.system == *system && p.mode == *mode && p.consumers == consumers)
            {
                if let Some(summary) =
                    Summary::of(point.runs.iter().filter_map(|run| metric.value(run)))
                {
                    points.push((point.rate as f64, summary.median));
                    ranges.push(Some((summary.min, summary.max)));
                }
            }
            series.push(Series {
                name: format!("{} x{consumers}", label(system, *mode)),
                color: color(index),
                dashed: consumers > 1,
                points,
                ranges,
                markers: true,
            });
        }
    }
    let x_scale = Scale::log_covering(plan.loss_rates.iter().map(|r| *r as f64), 10.0);
    let x_ticks = x_scale.ticks(|value| report::group_digits(value as u64));
    let range_values = || {
        series
            .iter()
            .flat_map(|s| {
                s.ranges
                    .iter()
                    .flatten()
                    .flat_map(|(low, high)| [*low, *high])
            })
            .collect::<Vec<f64>>()
    };
    let runs = format!(
        "{}-byte records, median of {} runs (bar: min to max); solid: 1 consumer, dashed: more",
        plan.loss_record_size, plan.repeat
    );
    let short_runs = format!(
        "median of {} runs (bar: min to max); solid: 1 consumer, dashed: more",
        plan.repeat
    );
    let (title, subtitle, y_label, y_scale, y_ticks) = match metric {
        LossMetric::Delivered => {
            let lowest = range_values().into_iter().fold(100.0, f64::min);
            let y_min = if lowest >= 90.0 {
                90.0
            } else {
                (lowest / 10.0).floor() * 10.0
            };
            let y_scale = Scale::Linear {
                min: y_min,
                max: 100.0,
            };
            (
                "Records delivered versus rate, every multicast mode",
                runs,
                "% of records delivered",
                y_scale,
                y_scale.ticks(|value| format!("{}%", tick_label(value))),
            )
        }
        LossMetric::CpuPerRecord => {
            let y_scale = Scale::log_covering(range_values().into_iter(), 10.0);
            (
                "CPU time per record delivered versus rate",
                format!("all processes; {short_runs}"),
                "CPU microseconds per record delivered",
                y_scale,
                y_scale.ticks(tick_label),
            )
        }
        LossMetric::Achieved => {
            let y_scale = Scale::log_covering(
                range_values()
                    .into_iter()
                    .chain(plan.loss_rates.iter().map(|r| *r as f64)),
                10.0,
            );
            (
                "Rate achieved versus rate asked",
                format!("taken by the producer; {short_runs}"),
                "records per second achieved",
                y_scale,
                y_scale.ticks(|value| report::group_digits(value as u64)),
            )
        }
    };
    Some(Chart {
        title: title.into(),
        subtitle,
        x_label: "records per second asked".into(),
        y_label: y_label.into(),
        x_scale,
        y_scale,
        x_ticks,
        y_ticks,
        series,
    })
}

fn fanout_chart(results: &Results) -> Option<Chart> {
    if results.fanout.is_empty() {
        return None;
    }
    let plan = &results.meta.plan;
    let labels = labels_in_order(&results.fanout);
    let mut series = Vec::new();
    for (index, (system, mode)) in labels.iter().enumerate() {
        for (role, suffix) in [(None, ""), (Some(Role::Producer), " producer")] {
            let mut points = Vec::new();
            let mut ranges = Vec::new();
            for point in results
                .fanout
                .iter()
                .filter(|p| p.system == *system && p.mode == *mode)
            {
                if let Some(summary) =
                    Summary::of(point.runs.iter().filter_map(|run| run.cpu_percent(role)))
                {
                    points.push((point.consumers as f64, summary.median));
                    ranges.push(Some((summary.min, summary.max)));
                }
            }
            series.push(Series {
                name: format!("{}{suffix}", label(system, *mode)),
                color: color(index),
                dashed: role.is_some(),
                points,
                ranges,
                markers: true,
            });
        }
    }
    let x_scale = Scale::Log {
        min: *plan.fanout_consumers.iter().min()? as f64 / 1.5,
        max: *plan.fanout_consumers.iter().max()? as f64 * 1.5,
    };
    let y_scale = Scale::log_covering(
        series.iter().flat_map(|s| {
            s.ranges
                .iter()
                .flatten()
                .flat_map(|(low, high)| [*low, *high])
        }),
        10.0,
    );
    Some(Chart {
        title: "CPU time versus consumers, one rate".into(),
        subtitle: format!(
            "{}/s of {} B; median of {} runs (bar: min to max); dashed: producer only",
            report::group_digits(plan.fanout_rate),
            plan.fanout_record_size,
            plan.repeat
        ),
        x_label: "consumers".into(),
        y_label: "CPU, % of one CPU".into(),
        x_scale,
        y_scale,
        x_ticks: plan
            .fanout_consumers
            .iter()
            .map(|&consumers| (consumers as f64, consumers.to_string()))
            .collect(),
        y_ticks: y_scale.ticks(|value| format!("{}%", tick_label(value))),
        series,
    })
}

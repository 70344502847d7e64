//! The JSON file, written by serde from the report structs below: the run's
//! settings, every number as a [`Row`] (the rows of the CSV file), the
//! latency distributions and the failed runs.
//!
//! These structs are the file's format, kept apart from the types the
//! benchmark measures with, so that a change inside the benchmark does not
//! silently rename a key. Durations are written as seconds. A number that is
//! not finite (an unknown load average) is written as `null`.

use serde::Serialize;

use super::format::mode_name;
use super::rows::{Row, distribution, rows};
use crate::{BenchError, Implementation, Meta, Results};

/// The whole file.
#[derive(Debug, Serialize)]
struct Report<'a> {
    /// Always "filebus bench".
    tool: &'static str,
    /// The version of the benchmark.
    version: &'static str,
    /// When the run started, ISO 8601 UTC.
    started: &'a str,
    /// How long the run took.
    seconds: f64,
    quick: bool,
    machine: Machine<'a>,
    implementations: Vec<ImplementationEntry<'a>>,
    /// Whether the baselines (`cat|cat`, `tee` into FIFOs) were measured.
    baselines: bool,
    /// The sections that ran, in order.
    sections: Vec<&'static str>,
    plan: PlanEntry,
    /// Every number.
    results: Vec<Row>,
    latency_distributions: Vec<Distribution<'a>>,
    failures: Vec<FailureEntry<'a>>,
}

#[derive(Debug, Serialize)]
struct Machine<'a> {
    cpus: usize,
    kernel: &'a str,
    /// The directory the scratch directory was created in.
    scratch: String,
    /// The filesystem of the scratch directory.
    filesystem: &'a str,
    load_average_start: f64,
    load_average_end: f64,
}

#[derive(Debug, Serialize)]
struct ImplementationEntry<'a> {
    name: &'a str,
    program: String,
    reference: bool,
    /// Whether it is the protocol floor, which the rows' `fraction_of_floor`
    /// divide by.
    floor: bool,
    /// Its `--sleep-interval` in the latency and loss sections, seconds.
    low_latency_sleep_interval: f64,
}

#[derive(Debug, Serialize)]
struct PlanEntry {
    repeat: usize,
    block_sizes: Vec<usize>,
    throughput_max_bytes: u64,
    throughput_max_seconds: f64,
    latency_points: Vec<LatencyPointEntry>,
    latency_record_size: usize,
    loss_rates: Vec<u64>,
    loss_consumers: Vec<usize>,
    loss_seconds: f64,
    loss_record_size: usize,
    /// `--history N` of the history and named modes.
    history_depth: u64,
    fanout_consumers: Vec<usize>,
    fanout_rate: u64,
    fanout_record_size: usize,
    fanout_seconds: f64,
    idle_seconds: f64,
    idle_block_size: usize,
    idle_warm_up_chunks: usize,
}

/// One latency distribution: (percentile, microseconds) points.
#[derive(Debug, Serialize)]
struct Distribution<'a> {
    system: &'a str,
    mode: &'static str,
    /// Records per second.
    rate: u64,
    /// Always "us".
    unit: &'static str,
    points: Vec<(f64, f64)>,
}

/// One point of the latency section.
#[derive(Debug, Serialize)]
struct LatencyPointEntry {
    /// Records per second.
    rate: u64,
    records: u64,
    /// "default options" or "low-latency --sleep-interval".
    options: &'static str,
}

#[derive(Debug, Serialize)]
struct FailureEntry<'a> {
    section: &'static str,
    system: &'a str,
    point: &'a str,
    message: &'a str,
}

/// The results as one pretty-printed JSON document.
pub(crate) fn json(results: &Results) -> Result<String, BenchError> {
    let mut text = serde_json::to_string_pretty(&report(results))
        .map_err(|error| BenchError::io("cannot write the results as JSON", error))?;
    text.push('\n');
    Ok(text)
}

fn report(results: &Results) -> Report<'_> {
    let meta = &results.meta;
    Report {
        tool: "filebus bench",
        version: env!("CARGO_PKG_VERSION"),
        started: &meta.started,
        seconds: meta.seconds,
        quick: meta.quick,
        machine: Machine {
            cpus: meta.cpus,
            kernel: &meta.kernel,
            scratch: meta.scratch_parent.to_string_lossy().into_owned(),
            filesystem: &meta.filesystem,
            load_average_start: meta.load.0,
            load_average_end: meta.load.1,
        },
        implementations: meta.implementations.iter().map(implementation).collect(),
        baselines: meta.baselines,
        sections: meta.sections.iter().map(|section| section.name()).collect(),
        plan: plan(meta),
        results: rows(results),
        latency_distributions: results
            .latency
            .iter()
            .filter(|outcome| outcome.delivered > 0)
            .map(|outcome| Distribution {
                system: &outcome.system,
                mode: mode_name(outcome.mode),
                rate: outcome.point.rate,
                unit: "us",
                points: distribution(outcome),
            })
            .collect(),
        failures: results
            .failures
            .iter()
            .map(|failure| FailureEntry {
                section: failure.section.name(),
                system: &failure.system,
                point: &failure.point,
                message: &failure.message,
            })
            .collect(),
    }
}

fn implementation(implementation: &Implementation) -> ImplementationEntry<'_> {
    ImplementationEntry {
        name: &implementation.name,
        program: implementation.program.to_string_lossy().into_owned(),
        reference: implementation.is_reference,
        floor: implementation.is_floor,
        low_latency_sleep_interval: implementation.low_latency_interval.as_secs_f64(),
    }
}

fn plan(meta: &Meta) -> PlanEntry {
    let plan = &meta.plan;
    PlanEntry {
        repeat: plan.repeat,
        block_sizes: plan.block_sizes.clone(),
        throughput_max_bytes: plan.throughput_bytes,
        throughput_max_seconds: plan.throughput_time.as_secs_f64(),
        latency_points: plan
            .latency_points
            .iter()
            .map(|point| LatencyPointEntry {
                rate: point.rate,
                records: point.records,
                options: point.options_name(),
            })
            .collect(),
        latency_record_size: plan.latency_record_size,
        loss_rates: plan.loss_rates.clone(),
        loss_consumers: plan.loss_consumers.clone(),
        loss_seconds: plan.loss_duration.as_secs_f64(),
        loss_record_size: plan.loss_record_size,
        history_depth: plan.history_depth,
        fanout_consumers: plan.fanout_consumers.clone(),
        fanout_rate: plan.fanout_rate,
        fanout_record_size: plan.fanout_record_size,
        fanout_seconds: plan.fanout_duration.as_secs_f64(),
        idle_seconds: plan.idle_window.as_secs_f64(),
        idle_block_size: plan.idle_block_size,
        idle_warm_up_chunks: plan.idle_warm_up_chunks,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::plan::Plan;
    use crate::{Failure, Section};

    fn results() -> Results {
        Results {
            meta: Meta {
                started: "2026-01-02T03:04:05Z".into(),
                cpus: 2,
                kernel: "6.1 \"test\"".into(),
                filesystem: "ext4".into(),
                scratch_parent: PathBuf::from("/tmp/a\\b"),
                quick: true,
                plan: Plan::new(true, None),
                implementations: vec![Implementation {
                    name: "ours".into(),
                    program: PathBuf::from("/bin/filebus"),
                    arguments: Vec::new(),
                    low_latency_interval: Duration::ZERO,
                    is_reference: false,
                    is_floor: false,
                }],
                baselines: false,
                sections: vec![Section::Idle],
                seconds: 1.5,
                load: (0.25, f64::NAN),
            },
            throughput: Vec::new(),
            latency: Vec::new(),
            loss: Vec::new(),
            fanout: Vec::new(),
            idle: Vec::new(),
            failures: vec![Failure {
                section: Section::Idle,
                system: "ours".into(),
                point: "lossy".into(),
                message: "exited with status 1\nand said \"no\"".into(),
            }],
        }
    }

    #[test]
    fn the_report_is_json_with_the_settings_and_failures() {
        let text = json(&results()).expect("serializable");
        let value: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(value["tool"], "filebus bench");
        assert_eq!(value["machine"]["kernel"], "6.1 \"test\"");
        assert_eq!(value["machine"]["scratch"], "/tmp/a\\b");
        assert_eq!(value["machine"]["load_average_start"], 0.25);
        // Unknown is null, not a NaN that no parser accepts.
        assert!(value["machine"]["load_average_end"].is_null());
        assert_eq!(
            value["plan"]["block_sizes"],
            serde_json::json!([4096, 65536, 1048576])
        );
        assert_eq!(value["plan"]["loss_seconds"], 0.3);
        assert_eq!(value["sections"], serde_json::json!(["idle"]));
        assert_eq!(
            value["implementations"][0]["low_latency_sleep_interval"],
            0.0
        );
        assert_eq!(
            value["failures"][0]["message"],
            "exited with status 1\nand said \"no\""
        );
        // The failure is a row as well, with only the fields it has.
        let row = value["results"][0].as_object().expect("a row object");
        let mut keys: Vec<&str> = row.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["metric", "note", "section", "system", "value"]);
        assert!(row["value"].is_null());
    }
}

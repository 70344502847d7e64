//! The CSV and JSON files, written by hand (no serde): the same rows in
//! both, and in JSON the settings, latency distributions, failures and
//! targets as well.

use std::fmt::Write as _;

use super::format::{csv_field, format_number, json_number, json_string, mode_name};
use super::rows::{Row, distribution, rows};
use crate::Results;
use crate::targets::Check;

const CSV_COLUMNS: [&str; 14] = [
    "section",
    "system",
    "mode",
    "block_size",
    "rate",
    "consumers",
    "role",
    "metric",
    "unit",
    "value",
    "min",
    "max",
    "runs",
    "note",
];

/// The rows as CSV (RFC 4180), with a header line.
pub(crate) fn csv(results: &Results, checks: &[Check]) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push('\n');
    for row in rows(results, checks) {
        let fields = [
            csv_field(row.section),
            csv_field(&row.system),
            csv_field(row.mode),
            optional(row.block_size),
            optional(row.rate),
            optional(row.consumers),
            csv_field(row.role),
            csv_field(row.metric),
            csv_field(row.unit),
            number(row.value),
            number(row.min),
            number(row.max),
            optional(row.runs),
            csv_field(&row.note),
        ];
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

fn optional<T: ToString>(value: Option<T>) -> String {
    value.map(|value| value.to_string()).unwrap_or_default()
}

fn number(value: Option<f64>) -> String {
    match value {
        Some(value) if value.is_finite() => format_number(value),
        _ => String::new(),
    }
}

/// Settings, rows, latency distributions, failures and targets as one JSON object.
pub(crate) fn json(results: &Results, checks: &[Check]) -> String {
    let meta = &results.meta;
    let plan = &meta.plan;
    let mut out = String::from("{\n");
    let _ = writeln!(out, "  \"tool\": {},", json_string("filebus bench"));
    let _ = writeln!(
        out,
        "  \"version\": {},",
        json_string(env!("CARGO_PKG_VERSION"))
    );
    let _ = writeln!(out, "  \"started\": {},", json_string(&meta.started));
    let _ = writeln!(out, "  \"seconds\": {},", json_number(Some(meta.seconds)));
    let _ = writeln!(out, "  \"quick\": {},", meta.quick);
    let _ = writeln!(
        out,
        "  \"machine\": {{\"cpus\": {}, \"kernel\": {}, \"scratch\": {}, \"filesystem\": {}, \
         \"load_average_start\": {}, \"load_average_end\": {}}},",
        meta.cpus,
        json_string(&meta.kernel),
        json_string(&meta.scratch_parent.to_string_lossy()),
        json_string(&meta.filesystem),
        json_number(Some(meta.load.0)),
        json_number(Some(meta.load.1))
    );
    let implementations: Vec<String> = meta
        .implementations
        .iter()
        .map(|implementation| {
            format!(
                "{{\"name\": {}, \"program\": {}, \"reference\": {}, \"low_latency_sleep_interval\": {}}}",
                json_string(&implementation.name),
                json_string(&implementation.program.to_string_lossy()),
                implementation.is_reference,
                json_number(Some(implementation.low_latency_interval.as_secs_f64()))
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "  \"implementations\": [{}],",
        implementations.join(", ")
    );
    let _ = writeln!(out, "  \"baselines\": {},", meta.baselines);
    let sections: Vec<String> = meta
        .sections
        .iter()
        .map(|s| json_string(s.name()))
        .collect();
    let _ = writeln!(out, "  \"sections\": [{}],", sections.join(", "));
    let block_sizes: Vec<String> = plan.block_sizes.iter().map(usize::to_string).collect();
    let rates: Vec<String> = plan.loss_rates.iter().map(u64::to_string).collect();
    let consumers: Vec<String> = plan.loss_consumers.iter().map(usize::to_string).collect();
    let _ = writeln!(
        out,
        "  \"plan\": {{\"repeat\": {}, \"block_sizes\": [{}], \"throughput_max_bytes\": {}, \
         \"throughput_max_seconds\": {}, \"latency_records\": {}, \"latency_rate\": {}, \
         \"latency_record_size\": {}, \"loss_rates\": [{}], \"loss_consumers\": [{}], \
         \"loss_seconds\": {}, \"loss_record_size\": {}, \"idle_seconds\": {}, \
         \"idle_block_size\": {}, \"idle_warm_up_chunks\": {}}},",
        plan.repeat,
        block_sizes.join(", "),
        plan.throughput_bytes,
        json_number(Some(plan.throughput_time.as_secs_f64())),
        plan.latency_records,
        json_number(Some(plan.latency_rate)),
        plan.latency_record_size,
        rates.join(", "),
        consumers.join(", "),
        json_number(Some(plan.loss_duration.as_secs_f64())),
        plan.loss_record_size,
        json_number(Some(plan.idle_window.as_secs_f64())),
        plan.idle_block_size,
        plan.idle_warm_up_chunks
    );
    let rows: Vec<String> = rows(results, checks).iter().map(row_json).collect();
    let _ = writeln!(out, "  \"results\": [\n    {}\n  ],", rows.join(",\n    "));
    let distributions: Vec<String> = results
        .latency
        .iter()
        .filter(|outcome| outcome.delivered > 0)
        .map(|outcome| {
            let points: Vec<String> = distribution(outcome)
                .iter()
                .map(|(percentile, micros)| {
                    format!(
                        "[{}, {}]",
                        json_number(Some(*percentile)),
                        json_number(Some(*micros))
                    )
                })
                .collect();
            format!(
                "{{\"system\": {}, \"mode\": {}, \"unit\": \"us\", \"points\": [{}]}}",
                json_string(&outcome.system),
                json_string(mode_name(outcome.mode)),
                points.join(", ")
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "  \"latency_distributions\": [\n    {}\n  ],",
        distributions.join(",\n    ")
    );
    let failures: Vec<String> = results
        .failures
        .iter()
        .map(|failure| {
            format!(
                "{{\"section\": {}, \"system\": {}, \"point\": {}, \"message\": {}}}",
                json_string(failure.section.name()),
                json_string(&failure.system),
                json_string(&failure.point),
                json_string(&failure.message)
            )
        })
        .collect();
    let _ = writeln!(out, "  \"failures\": [{}],", failures.join(", "));
    let targets: Vec<String> = checks
        .iter()
        .map(|check| {
            format!(
                "{{\"id\": {}, \"target\": {}, \"measured\": {}, \"value\": {}, \"unit\": {}, \
                 \"verdict\": {}, \"margin\": {}}}",
                json_string(check.id),
                json_string(&check.target),
                json_string(&check.measured),
                json_number(check.value),
                json_string(check.unit),
                json_string(check.verdict.name()),
                json_string(&check.margin)
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "  \"targets\": [\n    {}\n  ]",
        targets.join(",\n    ")
    );
    out.push_str("}\n");
    out
}

fn row_json(row: &Row) -> String {
    let mut fields = vec![
        format!("\"section\": {}", json_string(row.section)),
        format!("\"system\": {}", json_string(&row.system)),
    ];
    let mut text = |name: &str, value: &str| {
        if !value.is_empty() {
            fields.push(format!("\"{name}\": {}", json_string(value)));
        }
    };
    text("mode", row.mode);
    text("role", row.role);
    text("metric", row.metric);
    text("unit", row.unit);
    for (name, value) in [
        ("block_size", row.block_size),
        ("rate", row.rate),
        ("consumers", row.consumers),
        ("runs", row.runs.map(|runs| runs as u64)),
    ] {
        if let Some(value) = value {
            fields.push(format!("\"{name}\": {value}"));
        }
    }
    fields.push(format!("\"value\": {}", json_number(row.value)));
    if row.min.is_some() {
        fields.push(format!("\"min\": {}", json_number(row.min)));
        fields.push(format!("\"max\": {}", json_number(row.max)));
    }
    if !row.note.is_empty() {
        fields.push(format!("\"note\": {}", json_string(&row.note)));
    }
    format!("{{{}}}", fields.join(", "))
}

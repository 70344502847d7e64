//! The CSV file: one [`Row`] per line under a header (RFC 4180). Written by
//! the small writer below rather than the `csv` crate: the only thing to get
//! right is quoting ([`csv_field`]), and every field is already text or a
//! number.

use super::format::format_number;
use super::rows::{Row, rows};
use crate::Results;

const COLUMNS: [&str; 15] = [
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
    "fraction_of_floor",
    "note",
];

/// The rows as CSV, with a header line.
pub(crate) fn csv(results: &Results) -> String {
    let mut out = COLUMNS.join(",");
    out.push('\n');
    for row in rows(results) {
        out.push_str(&line(&row).join(","));
        out.push('\n');
    }
    out
}

/// The fields of `row`, in the order of [`COLUMNS`].
fn line(row: &Row) -> [String; COLUMNS.len()] {
    [
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
        number(row.fraction_of_floor),
        csv_field(&row.note),
    ]
}

fn optional<T: ToString>(value: Option<T>) -> String {
    value.map(|value| value.to_string()).unwrap_or_default()
}

/// A number, or an empty field for a missing or non-finite one.
fn number(value: Option<f64>) -> String {
    match value {
        Some(value) if value.is_finite() => format_number(value),
        _ => String::new(),
    }
}

/// A CSV field, quoted when it holds a comma, quote, line break or
/// surrounding space.
fn csv_field(text: &str) -> String {
    let needs_quotes =
        text.contains([',', '"', '\n', '\r']) || text.starts_with(' ') || text.ends_with(' ');
    if needs_quotes {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field(" padded"), "\" padded\"");
    }

    #[test]
    fn a_row_fills_every_column() {
        let row = Row {
            section: "loss",
            system: "ours".into(),
            mode: "lossy",
            rate: Some(1000),
            metric: "delivered_percent",
            unit: "%",
            value: Some(99.5),
            min: Some(f64::NAN),
            fraction_of_floor: Some(0.75),
            note: "a, b".into(),
            ..Row::default()
        };
        assert_eq!(
            line(&row).join(","),
            "loss,ours,lossy,,1000,,,delivered_percent,%,99.5,,,,0.75,\"a, b\""
        );
    }
}

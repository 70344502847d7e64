//! The results as text tables (standard output), CSV and JSON.
//!
//! CSV and JSON carry the same flat rows ([`rows::Row`]): one number per row,
//! with the point it belongs to (section, system, mode, block size, rate,
//! consumers, role) and, for repeated measurements, the median as `value`
//! with `min`, `max` and `runs`. The protocol floor is a system of its own
//! (`floor`); every other row whose point and metric it measured too carries
//! `fraction_of_floor`, its value over the floor's (not in the idle
//! section, where the floor's figures are at or near zero). The tables put
//! each mode's floor row after the others' and give the same fractions:
//! MB/s and delivered shares as percentages of the floor's, latency and CPU
//! per record as multiples of it. JSON adds the run's settings, the latency
//! distributions and the failures.
//!
//! | module | what |
//! |---|---|
//! | [`format`] | how numbers are written |
//! | [`text`] | the tables on standard output |
//! | [`rows`] | every number as a row |
//! | [`csv`](mod@csv) | the CSV file |
//! | [`json`](mod@json) | the JSON file (serde) |

mod csv;
mod format;
mod json;
mod rows;
mod text;

pub(crate) use csv::csv;
pub(crate) use format::{bytes_label, group_digits, sig};
pub(crate) use json::json;
pub(crate) use rows::distribution;
pub(crate) use text::table;

/// Quantiles shown for latency, with their names.
pub(crate) const QUANTILES: [(f64, &str); 4] =
    [(0.5, "p50"), (0.9, "p90"), (0.99, "p99"), (0.999, "p99.9")];

/// Whether `system` is a baseline (a pipe), not a filebus program.
pub(crate) fn is_pipe(system: &str) -> bool {
    system == super::system::CAT_PIPE || system == super::system::TEE_FIFOS
}

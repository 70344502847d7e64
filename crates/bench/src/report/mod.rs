//! The results as text tables (standard output), CSV and JSON.
//!
//! CSV and JSON carry the same flat rows ([`rows::Row`]): one number per row,
//! with the point it belongs to (section, system, mode, block size, rate,
//! consumers, role) and, for repeated measurements, the median as `value`
//! with `min`, `max` and `runs`. JSON adds the run's settings, the latency
//! distributions, the failures and the targets.
//!
//! | module | what |
//! |---|---|
//! | [`format`] | numbers and escaping |
//! | [`text`] | the tables on standard output |
//! | [`rows`] | every number as a row |
//! | [`files`] | CSV and JSON |

mod files;
mod format;
mod rows;
mod text;

pub(crate) use files::{csv, json};
pub(crate) use format::{bytes_label, group_digits, percent_text, sig};
pub(crate) use rows::distribution;
pub(crate) use text::table;

/// Quantiles shown for latency, with their names.
pub(crate) const QUANTILES: [(f64, &str); 4] =
    [(0.5, "p50"), (0.9, "p90"), (0.99, "p99"), (0.999, "p99.9")];

/// Whether `system` is a baseline (a pipe), not a filebus program.
pub(crate) fn is_pipe(system: &str) -> bool {
    system == super::system::CAT_PIPE || system == super::system::TEE_FIFOS
}

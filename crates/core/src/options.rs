//! What producers and consumers of a bus share: where the bus is, how its
//! chunks are delivered and stored, and how to wait on it.

use std::path::PathBuf;
use std::time::Duration;

use crate::bus::format::Format;
use crate::stop::StopFlag;

/// The reference implementation's default `--sleep-interval`.
pub const DEFAULT_SLEEP_INTERVAL: Duration = Duration::from_millis(100);

/// The settings a producer and a consumer of a bus share; both sides of a
/// bus must agree on `lossless` and `format`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BusOptions {
    /// The bus file `F`.
    pub path: PathBuf,
    /// Lossless unicast (`--back-pressure`) instead of lossy multicast.
    pub lossless: bool,
    /// How chunks are stored at `F` (`--format`).
    pub format: Format,
    /// The polling interval where file events are unavailable; for a
    /// producer also the longest time input waits before it is published
    /// (`--sleep-interval`).
    pub sleep_interval: Duration,
    /// Wake up on inotify events rather than by polling (off with
    /// `--no-file-monitoring`).
    pub file_monitoring: bool,
    /// Where the program's signal handler records a termination signal
    /// (see [`StopFlag`]); never, by default.
    pub stop: StopFlag,
}

impl BusOptions {
    /// The reference defaults for the bus at `path`: lossy, raw chunks,
    /// file events, a 0.1 s interval.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        BusOptions {
            path: path.into(),
            lossless: false,
            format: Format::default(),
            sleep_interval: DEFAULT_SLEEP_INTERVAL,
            file_monitoring: true,
            stop: StopFlag::NEVER,
        }
    }
}

//! The consumer: wake-up → look at (lossy) or take (lossless) the chunk at
//! `F`, or follow the history → the output.
//!
//! | module        | what it holds                                         |
//! |---------------|-------------------------------------------------------|
//! | [`output`]    | the output a consumer writes to, shared by all three  |
//! | [`lossy`]     | lossy multicast: each new chunk seen at `F`           |
//! | [`lossless`]  | lossless unicast: take each chunk at `F`              |
//! | [`history`]   | a consumer on a bus with history                      |
//! | [`stats`]     | `--stats`: what was written and missed                |

pub mod history;
pub mod lossless;
pub mod lossy;
pub mod options;
pub mod output;
pub mod stats;

use std::os::fd::AsFd;
use std::sync::PoisonError;

use crate::bus::Bus;
use crate::error::Result;
use crate::sink::Sink;
use crate::watch::{Change, Watcher};
use options::ConsumerOptions;
use output::Output;

/// Writes the bus's chunks to `output` (standard output, in the command):
/// every new chunk it sees (lossy; returns only on an error, or at an
/// end-of-stream chunk on a bus with history), or each chunk it takes until
/// the end-of-stream marker (lossless). What it wrote and missed is counted
/// in `options.stats`, if given, for the caller to report.
///
/// Fails at once, without touching the bus, if the options do not pass
/// [`ConsumerOptions::validate`].
pub fn run(options: &ConsumerOptions, output: impl AsFd) -> Result<()> {
    options.validate()?;
    let bus = Bus::open(&options.bus.path)?.stopped_by(options.bus.stop);
    let mut output = Output::new(
        Sink::new(output.as_fd(), options.output_method)?,
        options,
        &bus,
    );
    // Where the bus's sequence stood when we started (see history): read
    // before the watcher exists, so every chunk it may miss is after it.
    let baseline = history::bus_counter(&bus);
    // The watcher exists before the first look, so no change is missed.
    let (file_monitoring, sleep_interval) =
        (options.bus.file_monitoring, options.bus.sleep_interval);
    let mut watcher = if options.bus.lossless {
        Watcher::new_for(&bus, Change::Arrival, file_monitoring, sleep_interval)?
    } else {
        Watcher::new(&bus, file_monitoring, sleep_interval)?
    };
    if let Some(stats) = &options.stats {
        stats.lock().unwrap_or_else(PoisonError::into_inner).begin();
    }
    if options.bus.lossless {
        lossless::take_until_end_of_stream(&bus, &mut watcher, &mut output)
    } else if history::wanted(&bus, options) {
        history::run(&bus, &mut watcher, &mut output, options, None, baseline)
    } else {
        lossy::look_forever(&bus, &mut watcher, &mut output, options, baseline)
    }
}

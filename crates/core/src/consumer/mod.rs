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
pub mod output;
pub mod stats;

use crate::Options;
use crate::bus::Bus;
use crate::error::Result;
use crate::sink::Sink;
use crate::watch::Watcher;
use output::Output;

/// Writes the bus's chunks to standard output: every new chunk it sees
/// (lossy; never returns), or each chunk it takes until the end-of-stream
/// marker (lossless).
pub fn run(options: &Options) -> Result<()> {
    let bus = Bus::open(&options.path)?.stopped_by(options.stop);
    let stats = options.stats.clone();
    let mut output = Output {
        sink: Sink::stdout(options.output_method)?,
        format: options.format,
        stats: stats.clone(),
        max_chunk_size: options.max_chunk_size,
        stamps: false,
        _file: None,
    };
    // Where the bus's sequence stood when we started (see replay): read
    // before the watcher exists, so every chunk it may miss is after it.
    let baseline = history::bus_counter(&bus);
    // The watcher exists before the first look, so no change is missed.
    let mut watcher = Watcher::new(&bus, options.file_monitoring, options.sleep_interval)?;
    let outcome = if options.lossless {
        lossless::take_until_end_of_stream(&bus, &mut watcher, &mut output)
    } else if history::wanted(&bus, options) {
        history::run(&bus, &mut watcher, &mut output, options, None, baseline)
    } else {
        lossy::look_forever(&bus, &mut watcher, &mut output, options, baseline)
    };
    if let Some(stats) = &stats {
        stats::report(stats);
    }
    outcome
}

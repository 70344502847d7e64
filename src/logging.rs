//! Messages on stderr, one line each: errors and warnings by default, fewer
//! with `-q`, more with each `-v`.

use log::{Level, LevelFilter, Log, Metadata, Record};

struct StderrLogger;

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            // A consumer's loss report is shown whatever the verbosity, as
            // a line of its own kind.
            if record.target() == filebus_core::LOSS_LOG_TARGET {
                eprintln!("filebus: {}", record.args());
                return;
            }
            let level = match record.level() {
                Level::Error => "error",
                Level::Warn => "warning",
                Level::Info => "info",
                Level::Debug | Level::Trace => "debug",
            };
            eprintln!("filebus: {level}: {}", record.args());
        }
    }

    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

/// Sends log messages to stderr: errors and warnings by default (errors
/// only when `quiet`), then information and debugging for each `-v`.
pub fn init(verbosity: u8, quiet: bool) {
    let level = match (quiet, verbosity) {
        (true, _) => LevelFilter::Error,
        (false, 0) => LevelFilter::Warn,
        (false, 1) => LevelFilter::Info,
        (false, _) => LevelFilter::Debug,
    };
    // Fails only if a logger is already set, which cannot happen here.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

//! The progress line on standard error.
//!
//! On a terminal one line is rewritten in place for every run; otherwise
//! (a log file, a test) a line is printed when a new point starts, so that
//! the log shows where time went without a line per repetition.

use std::io::{IsTerminal, Write};
use std::time::Instant;

/// Counts runs done out of the runs planned.
#[derive(Debug)]
pub(crate) struct Progress {
    total: usize,
    done: usize,
    started: Instant,
    terminal: bool,
    shown: bool,
}

impl Progress {
    /// A progress line for `total` planned runs.
    pub(crate) fn new(total: usize) -> Progress {
        Progress {
            total,
            done: 0,
            started: Instant::now(),
            terminal: std::io::stderr().is_terminal(),
            shown: false,
        }
    }

    /// Announces run `repetition` of `repetitions` of `point`.
    pub(crate) fn run(&mut self, point: &str, repetition: usize, repetitions: usize) {
        self.done += 1;
        let elapsed = self.started.elapsed().as_secs();
        let line = format!(
            "[{done:>3}/{total} {minutes}:{seconds:02}] {point}",
            done = self.done.min(self.total),
            total = self.total,
            minutes = elapsed / 60,
            seconds = elapsed % 60,
        );
        let mut stderr = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(stderr, "\r\x1b[K{line} (run {repetition}/{repetitions})");
            let _ = stderr.flush();
            self.shown = true;
        } else if repetition == 1 {
            let _ = writeln!(stderr, "{line}");
        }
    }

    /// Clears the line (on a terminal) before the results are printed.
    pub(crate) fn finish(&mut self) {
        if self.terminal && self.shown {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
            self.shown = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

//! Stopping on request: how a producer or consumer learns that it was asked
//! to end (by SIGINT, SIGTERM or SIGHUP, in the `filebus` command).
//!
//! The library installs no signal handler. A program that wants its
//! producers and consumers to stop cleanly installs one that stores the
//! signal's number in a static atomic, without `SA_RESTART` so that a blocked
//! system call returns `EINTR`, and passes that atomic, as a [`StopFlag`],
//! in the `stop` field of the producer's or consumer's `BusOptions`. The
//! library looks at it whenever a blocking call
//! was interrupted and between chunks, and then unwinds with
//! [`crate::Error::Terminated`]: temporary files are removed as the stack
//! unwinds, and the program ends by the same signal.

use std::sync::atomic::{AtomicI32, Ordering};

use crate::error::{Error, Result};

/// Where a program's signal handler records a termination signal (0: none).
#[derive(Debug, Clone, Copy, Default)]
pub struct StopFlag(Option<&'static AtomicI32>);

impl StopFlag {
    /// A flag that never asks to stop (a signal then acts as it would anyway).
    pub const NEVER: StopFlag = StopFlag(None);

    /// The flag that `handler_flag` holds: the number of the signal received,
    /// or 0 while none has been.
    pub fn new(handler_flag: &'static AtomicI32) -> Self {
        StopFlag(Some(handler_flag))
    }

    /// The termination signal recorded so far, if any.
    pub fn signal(self) -> Option<i32> {
        match self.0.map_or(0, |flag| flag.load(Ordering::SeqCst)) {
            0 => None,
            signal => Some(signal),
        }
    }

    /// `Err(Error::Terminated)` once a termination signal has been recorded.
    pub fn check(self) -> Result<()> {
        match self.signal() {
            None => Ok(()),
            Some(signal) => Err(Error::Terminated { signal }),
        }
    }
}

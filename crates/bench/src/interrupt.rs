//! Interruption: SIGINT, SIGTERM and SIGHUP set a flag (the program's
//! handler, see [`stop_on`]) instead of ending the benchmark at once, so that
//! it can stop its children and remove its files on the way out.
//!
//! The handler is installed without `SA_RESTART`, so a blocking call returns
//! `EINTR` when a signal arrives; and every wait in the benchmark is bounded
//! by [`CHECK_INTERVAL`] and followed by [`check`]. An interruption is thus
//! acted on within that time.

use std::sync::OnceLock;
use std::time::Duration;

use filebus_core::StopFlag;

use super::BenchError;

/// The longest the benchmark waits before looking at the flag again.
pub(crate) const CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// Where the program's signal handler records a stop signal.
static STOP: OnceLock<StopFlag> = OnceLock::new();

/// Makes the benchmark stop when `stop` records a signal. The program
/// installs the handler (without `SA_RESTART`) and ignores SIGPIPE, so that a
/// child closing its end of a pipe shows up as `EPIPE` rather than ending the
/// benchmark without cleanup. (Children get the default SIGPIPE back before
/// they start: see [`super::process`].)
pub(crate) fn stop_on(stop: StopFlag) {
    // A second run in the same process keeps the first flag, which is the
    // same handler's.
    let _ = STOP.set(stop);
}

/// The signal received so far, if any.
pub(crate) fn received() -> Option<i32> {
    STOP.get().and_then(|stop| stop.signal())
}

/// Fails with [`BenchError::Interrupted`] once a stop signal has arrived.
pub(crate) fn check() -> Result<(), BenchError> {
    match received() {
        Some(signal) => Err(BenchError::Interrupted(signal)),
        None => Ok(()),
    }
}

/// Sleeps for `duration`, waking every [`CHECK_INTERVAL`] to honour an
/// interruption.
pub(crate) fn sleep(duration: Duration) -> Result<(), BenchError> {
    let deadline = std::time::Instant::now() + duration;
    loop {
        check()?;
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(CHECK_INTERVAL));
    }
}

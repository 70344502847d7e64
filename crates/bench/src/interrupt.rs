//! Interruption: SIGINT, SIGTERM and SIGHUP set a flag instead of ending the
//! benchmark at once, so that it can stop its children and remove its files
//! on the way out.
//!
//! The handler is installed without `SA_RESTART`, so a blocking call returns
//! `EINTR` when a signal arrives; and every wait in the benchmark is bounded
//! by [`CHECK_INTERVAL`] and followed by [`check`]. An interruption is thus
//! acted on within that time.

use std::io;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use super::BenchError;

/// The longest the benchmark waits before looking at the flag again.
pub(crate) const CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// The signal that asked us to stop, or 0.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

extern "C" fn record(signal: libc::c_int) {
    RECEIVED.store(signal, Ordering::SeqCst);
}

/// Installs the flag-setting handler for SIGINT, SIGTERM and SIGHUP, and
/// ignores SIGPIPE so that a child closing its end of a pipe shows up as
/// `EPIPE` rather than ending the benchmark without cleanup. (Children get
/// the default SIGPIPE back before they start: see [`super::process`].)
pub(crate) fn install() -> io::Result<()> {
    let handler = record as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for (signal, action) in [
        (libc::SIGINT, handler),
        (libc::SIGTERM, handler),
        (libc::SIGHUP, handler),
        (libc::SIGPIPE, libc::SIG_IGN),
    ] {
        // SAFETY: `sigaction` is plain data that we zero and then fill; the
        // handler only stores into an atomic, which is async-signal-safe.
        let status = unsafe {
            let mut new: libc::sigaction = std::mem::zeroed();
            new.sa_sigaction = action;
            libc::sigemptyset(&mut new.sa_mask);
            new.sa_flags = 0;
            libc::sigaction(signal, &new, std::ptr::null_mut())
        };
        if status != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The signal received so far, if any.
pub(crate) fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
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

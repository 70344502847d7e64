//! Signal dispositions filebus relies on.
//!
//! A producer catches SIGINT, SIGTERM and SIGHUP ([`catch_termination`]): the
//! handler only records the signal, and interrupts the system call the
//! producer is blocked in (the handler is installed without `SA_RESTART`).
//! The producer then stops where it is, its temporary file is removed as the
//! stack unwinds (an anonymous `O_TMPFILE` needs nothing; a named one is
//! deleted), and `main` ends the process by the same signal, so the shell
//! sees the status it expects (130 for SIGINT, 143 for SIGTERM). Input read
//! but not yet published is discarded; what was published stays.
//!
//! The lock needs no care: the kernel releases a `flock` with the process.

use std::sync::atomic::{AtomicI32, Ordering};

use crate::error::{Error, Result};

/// The termination signal received, or 0.
static TERMINATION: AtomicI32 = AtomicI32::new(0);

extern "C" fn record_termination(signal: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    TERMINATION.store(signal, Ordering::SeqCst);
}

/// Makes SIGINT, SIGTERM and SIGHUP interrupt blocking calls and be reported
/// by [`check_termination`] instead of ending the process at once.
pub fn catch_termination() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction with a handler that only stores an
        // atomic; no SA_RESTART, so blocking calls fail with EINTR.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = record_termination as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// `Err(Error::Terminated)` once a caught termination signal has arrived.
pub fn check_termination() -> Result<()> {
    match TERMINATION.load(Ordering::SeqCst) {
        0 => Ok(()),
        signal => Err(Error::Terminated { signal }),
    }
}

/// Ends the process by `signal` with its default action, so that the parent
/// sees the process killed by it. Returns only if the signal does not kill.
pub fn die_by(signal: i32) {
    // SAFETY: restoring the default disposition, unblocking and raising.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(signal);
    }
}

/// Lets writes to a closed pipe end the process with SIGPIPE, as they end
/// `cat`: the shell sees status 141 and nothing is printed. (Rust programs
/// start with SIGPIPE ignored.)
pub fn die_quietly_on_broken_pipe() {
    // SAFETY: setting a standard disposition, no handler code involved.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Makes writes to a closed pipe fail with EPIPE instead of ending the
/// process, for callers that have something to say before they end.
pub fn report_broken_pipe_as_error() {
    // SAFETY: setting a standard disposition, no handler code involved.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// Turns "file too large" (RLIMIT_FSIZE) into an EFBIG error we can report,
/// instead of a SIGXFSZ that would kill the producer without a word.
pub fn report_file_size_limit_as_error() {
    // SAFETY: setting a standard disposition, no handler code involved.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

//! The signal dispositions of the `filebus` command, set up by `main` before
//! it calls the library (which installs none itself).
//!
//! Producers and `bench` catch SIGINT, SIGTERM and SIGHUP
//! ([`catch_termination`]): the handler only records the signal in a
//! [`StopFlag`], and interrupts the system call the process is blocked in
//! (it is installed without `SA_RESTART`). The library then stops where it
//! is, its temporary file is removed as the stack unwinds (an anonymous
//! `O_TMPFILE` needs nothing; a named one is deleted), and `main` ends the
//! process by the same signal ([`die_by`]), so the shell sees the status it
//! expects (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP). Input read but
//! not yet published is discarded; what was published stays.
//!
//! `consumer --stats` instead hands those signals and SIGUSR1 to a thread
//! that prints the summary ([`report_stats_on_signals`]).
//!
//! The lock needs no care: the kernel releases a `flock` with the process.

use std::io;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicI32, Ordering};

use filebus_core::{SharedStats, StopFlag};

/// The termination signal received, or 0.
static TERMINATION: AtomicI32 = AtomicI32::new(0);

/// The signals that ask filebus to end.
const TERMINATION_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

extern "C" fn record_termination(signal: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    TERMINATION.store(signal, Ordering::SeqCst);
}

/// Makes SIGINT, SIGTERM and SIGHUP interrupt blocking calls and be recorded
/// in the returned flag instead of ending the process at once.
pub fn catch_termination() -> io::Result<StopFlag> {
    let handler = record_termination as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for signal in TERMINATION_SIGNALS {
        set_disposition(signal, handler)?;
    }
    Ok(StopFlag::new(&TERMINATION))
}

/// Sets the action of `signal` to `handler` (a function, `SIG_DFL` or
/// `SIG_IGN`), with no flags: no `SA_RESTART`, so blocking calls fail with
/// `EINTR` when a handled signal arrives.
fn set_disposition(signal: libc::c_int, handler: libc::sighandler_t) -> io::Result<()> {
    // SAFETY: `sigaction` is plain data that we zero and then fill; the only
    // handler ever installed stores into an atomic, which is
    // async-signal-safe.
    let status = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(signal, &action, std::ptr::null_mut())
    };
    if status == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
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
pub fn die_quietly_on_broken_pipe() -> io::Result<()> {
    set_disposition(libc::SIGPIPE, libc::SIG_DFL)
}

/// Makes writes to a closed pipe fail with EPIPE instead of ending the
/// process, for callers that have something to say before they end (they
/// then end by SIGPIPE through [`die_by`]).
pub fn report_broken_pipe_as_error() -> io::Result<()> {
    set_disposition(libc::SIGPIPE, libc::SIG_IGN)
}

/// Turns "file too large" (RLIMIT_FSIZE) into an EFBIG error we can report,
/// instead of a SIGXFSZ that would kill the producer without a word.
pub fn report_file_size_limit_as_error() -> io::Result<()> {
    set_disposition(libc::SIGXFSZ, libc::SIG_IGN)
}

/// Prints the summary of `stats` on stderr.
pub fn print_stats(stats: &SharedStats) {
    let stats = stats.lock().unwrap_or_else(PoisonError::into_inner);
    eprintln!("filebus: {}", stats.summary());
}

/// Starts the thread that prints the summary of `stats` on SIGUSR1, and
/// prints it and ends the process on SIGINT, SIGTERM and SIGHUP. Call before
/// any other thread exists: it blocks those signals in the calling thread,
/// which all later threads inherit, so that only the reporter receives them.
pub fn report_stats_on_signals(stats: SharedStats) -> io::Result<()> {
    // SAFETY: sigset_t is plain data initialised by sigemptyset/sigaddset;
    // pthread_sigmask only reads it.
    let (set, status) = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGUSR1].into_iter().chain(TERMINATION_SIGNALS) {
            libc::sigaddset(&mut set, signal);
        }
        let status = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        (set, status)
    };
    if status != 0 {
        return Err(io::Error::from_raw_os_error(status));
    }
    std::thread::Builder::new()
        .name("stats-reporter".into())
        .spawn(move || {
            loop {
                let mut signal: libc::c_int = 0;
                // SAFETY: waits for one of the blocked signals in `set`.
                if unsafe { libc::sigwait(&set, &mut signal) } != 0 {
                    continue;
                }
                print_stats(&stats);
                if signal != libc::SIGUSR1 {
                    die_by(signal);
                }
            }
        })?;
    Ok(())
}

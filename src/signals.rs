//! Signal dispositions filebus relies on.
//!
//! filebus installs no signal handlers. SIGINT and SIGTERM keep their default
//! action (the process ends at once), which is safe because a chunk being
//! built lives in an anonymous `O_TMPFILE` that the kernel frees, and the lock
//! is released by the kernel with the process. The one window where dying
//! would leave a name behind, between linking a chunk as `F.__new__` and
//! renaming it onto `F`, is covered by [`DeferTermination`].

/// Blocks the termination signals while alive; a signal that arrives meanwhile
/// is delivered (and ends the process) when this is dropped.
#[must_use = "signals are deferred only while the guard lives"]
pub struct DeferTermination {
    previous: libc::sigset_t,
}

impl DeferTermination {
    /// Starts deferring SIGINT, SIGTERM, SIGHUP and SIGQUIT for this thread.
    pub fn new() -> Self {
        // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it,
        // and pthread_sigmask only reads `set` and writes `previous`.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
                libc::sigaddset(&mut set, signal);
            }
            let mut previous: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut previous);
            DeferTermination { previous }
        }
    }
}

impl Default for DeferTermination {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for DeferTermination {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved by `new`.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.previous, std::ptr::null_mut());
        }
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

/// Turns "file too large" (RLIMIT_FSIZE) into an EFBIG error we can report,
/// instead of a SIGXFSZ that would kill the producer without a word.
pub fn report_file_size_limit_as_error() {
    // SAFETY: setting a standard disposition, no handler code involved.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

//! Waiting for facts, never for time: a condition polled until it holds,
//! and a process's state read from /proc.

use std::time::{Duration, Instant};

/// How long any single wait in a test may take before it fails. Generous:
/// the machine running CI is small and shared.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Polls `condition` until it holds; panics after [`PATIENCE`], naming `what`.
pub fn wait_until(what: &str, condition: impl FnMut() -> bool) {
    wait_until_showing(what, condition, String::new);
}

/// Polls `condition` until it holds; panics after [`PATIENCE`], naming
/// `what` and showing what `context` says then (such as a child's stderr).
pub fn wait_until_showing(
    what: &str,
    mut condition: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        if Instant::now() >= deadline {
            let context = context();
            let separator = if context.is_empty() { "" } else { "; " };
            panic!("timed out after {PATIENCE:?} waiting for {what}{separator}{context}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The state letter of a process from /proc (R, S, D, Z, ...), if it exists.
pub fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: the state follows
    // the last closing parenthesis.
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

/// Waits until the process sleeps in a system call (state S): blocked on
/// input, on a lock, or on an event.
pub fn wait_until_sleeping(pid: i32) {
    crate::util::wait_until(&format!("process {pid} to block"), || {
        process_state(pid) == Some('S')
    });
}

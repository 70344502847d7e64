//! The benchmark's child processes: started so that none can outlive the
//! benchmark, and reaped with `wait4(2)` for their peak memory.
//!
//! Each child
//! - leads its own process group, so a Ctrl-C at the terminal reaches only the
//!   benchmark, which then stops its children in order and removes its files
//!   (and so that stopping a child also stops anything it started, such as
//!   the reference's bash variant);
//! - gets `PR_SET_PDEATHSIG = SIGKILL`, so that even a benchmark killed with
//!   SIGKILL leaves nothing running. The kernel sends it when the *thread*
//!   that forked the child ends, so children are only started from the main
//!   thread (the benchmark has no other);
//! - gets the default SIGPIPE disposition back (the benchmark ignores it);
//! - writes its standard error to a log file, whose tail is quoted when it
//!   fails.
//!
//! A [`Child`] not yet reaped is killed and reaped when dropped.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{BenchError, interrupt};

/// A running (or reaped) child process.
#[derive(Debug)]
pub(crate) struct Child {
    label: String,
    pid: libc::pid_t,
    stderr_log: PathBuf,
    exit: Option<Exit>,
}

/// How a child ended, with its resource usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exit {
    /// The raw status from `wait4`.
    status: libc::c_int,
    /// Peak resident set size (`ru_maxrss`), in KiB.
    pub max_rss_kib: u64,
    /// CPU time over the child's whole life, all threads (`ru_utime` +
    /// `ru_stime`, whose sum the kernel keeps to the microsecond), in
    /// nanoseconds.
    pub cpu_ns: u64,
}

impl Exit {
    /// Whether the child exited on its own with status 0.
    pub(crate) fn success(&self) -> bool {
        libc::WIFEXITED(self.status) && libc::WEXITSTATUS(self.status) == 0
    }

    /// The signal that killed the child, if one did.
    pub(crate) fn signal(&self) -> Option<i32> {
        libc::WIFSIGNALED(self.status).then(|| libc::WTERMSIG(self.status))
    }

    /// "exited with status 1", "was killed by signal 9".
    pub(crate) fn describe(&self) -> String {
        match self.signal() {
            Some(signal) => format!("was killed by signal {signal}"),
            None => format!("exited with status {}", libc::WEXITSTATUS(self.status)),
        }
    }
}

impl Child {
    /// Starts `command` (program and arguments set) with the given standard
    /// input and output; standard error goes to `stderr_log`. `label` names
    /// the child in messages ("ours consumer 2").
    pub(crate) fn spawn(
        label: impl Into<String>,
        mut command: Command,
        stdin: Stdio,
        stdout: Stdio,
        stderr_log: PathBuf,
    ) -> Result<Child, BenchError> {
        let label = label.into();
        let log = std::fs::File::create(&stderr_log).map_err(|error| {
            BenchError::io(
                format!("cannot create log file {}", stderr_log.display()),
                error,
            )
        })?;
        let parent = std::process::id() as libc::pid_t;
        command
            .stdin(stdin)
            .stdout(stdout)
            .stderr(log)
            .process_group(0);
        // SAFETY: between fork and exec the closure calls only prctl, getppid
        // and signal, which are async-signal-safe, and allocates nothing.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent died before prctl took effect: do not run orphaned.
                if libc::getppid() != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                Ok(())
            });
        }
        let child = command.spawn().map_err(|error| {
            BenchError::io(
                format!(
                    "cannot start {label} ({})",
                    command.get_program().to_string_lossy()
                ),
                error,
            )
        })?;
        // `command` is dropped here, closing our copies of the child's ends
        // of its pipes: the child holds the only ones now.
        drop(command);
        Ok(Child {
            label,
            pid: child.id() as libc::pid_t,
            stderr_log,
            exit: None,
        })
    }

    /// The name used in messages.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// The process id (meaningful while [`Child::exit`] is `None`).
    pub(crate) fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// How the child ended, if it was reaped.
    pub(crate) fn exit(&self) -> Option<Exit> {
        self.exit
    }

    /// Reaps the child if it has ended, without waiting.
    pub(crate) fn try_wait(&mut self) -> Result<Option<Exit>, BenchError> {
        self.reap(libc::WNOHANG)
    }

    /// Waits up to `timeout` for the child to end on its own.
    pub(crate) fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<Exit>, BenchError> {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_micros(200);
        loop {
            if let Some(exit) = self.try_wait()? {
                return Ok(Some(exit));
            }
            interrupt::check()?;
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// Ends the child: SIGTERM to its process group, then SIGKILL if it is
    /// still there after `grace`. Not interruptible: this is the cleanup path.
    pub(crate) fn terminate(&mut self, grace: Duration) -> Exit {
        if let Some(exit) = self.exit {
            return exit;
        }
        self.signal_group(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(exit)) = self.reap(libc::WNOHANG) {
                return exit;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.kill()
    }

    /// Ends the child at once with SIGKILL and reaps it.
    pub(crate) fn kill(&mut self) -> Exit {
        if let Some(exit) = self.exit {
            return exit;
        }
        self.signal_group(libc::SIGKILL);
        loop {
            match self.reap(0) {
                Ok(Some(exit)) => return exit,
                // EINTR, or a child somebody else reaped: nothing more to do
                // than to stop waiting once it is gone.
                Ok(None) => continue,
                Err(_) => {
                    let gone = Exit {
                        status: libc::SIGKILL,
                        max_rss_kib: 0,
                        cpu_ns: 0,
                    };
                    self.exit = Some(gone);
                    return gone;
                }
            }
        }
    }

    /// The last lines the child wrote to standard error.
    pub(crate) fn stderr_tail(&self) -> String {
        const TAIL: u64 = 2048;
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&self.stderr_log) {
            let len = file.metadata().map(|meta| meta.len()).unwrap_or(0);
            let _ = file.seek(SeekFrom::Start(len.saturating_sub(TAIL)));
            let mut bytes = Vec::new();
            let _ = file.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        let lines: Vec<&str> = text
            .lines()
            .filter(|line| !line.trim().is_empty())
            .collect();
        lines[lines.len().saturating_sub(4)..].join(" | ")
    }

    /// "ours consumer exited with status 1 (stderr: ...)".
    pub(crate) fn describe_exit(&self, exit: &Exit) -> String {
        let tail = self.stderr_tail();
        if tail.is_empty() {
            format!("{} {}", self.label, exit.describe())
        } else {
            format!("{} {} (stderr: {tail})", self.label, exit.describe())
        }
    }

    /// Sends `signal` to the child's process group while the child is not
    /// reaped (an unreaped child's pid cannot name another process).
    fn signal_group(&self, signal: i32) {
        if self.exit.is_none() {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe {
                libc::kill(-self.pid, signal);
            }
        }
    }

    /// `wait4` with `flags`; records and returns the exit if the child ended.
    fn reap(&mut self, flags: libc::c_int) -> Result<Option<Exit>, BenchError> {
        if let Some(exit) = self.exit {
            return Ok(Some(exit));
        }
        let mut status: libc::c_int = 0;
        // SAFETY: rusage is plain data, filled in by wait4.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are valid for writes for the call's duration.
        let reaped = unsafe { libc::wait4(self.pid, &mut status, flags, &mut usage) };
        match reaped {
            0 => Ok(None),
            pid if pid == self.pid => {
                let exit = Exit {
                    status,
                    max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
                    cpu_ns: nanos(usage.ru_utime) + nanos(usage.ru_stime),
                };
                self.exit = Some(exit);
                Ok(Some(exit))
            }
            _ => {
                let error = std::io::Error::last_os_error();
                if error.raw_os_error() == Some(libc::EINTR) {
                    Ok(None)
                } else {
                    Err(BenchError::io(
                        format!("cannot wait for {}", self.label),
                        error,
                    ))
                }
            }
        }
    }
}

/// A `timeval` in nanoseconds (0 if negative).
fn nanos(time: libc::timeval) -> u64 {
    let seconds = u64::try_from(time.tv_sec).unwrap_or(0);
    let micros = u64::try_from(time.tv_usec).unwrap_or(0);
    seconds * 1_000_000_000 + micros * 1_000
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

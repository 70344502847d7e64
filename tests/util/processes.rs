//! The program under test as a child process: our binary or any
//! filebus-compatible one, with stdin fed and stdout and stderr collected by
//! threads so that nothing deadlocks, or with the standard input and output
//! the test chooses; run to completion with a deadline; how it ended.

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{PATIENCE, input_in, wait_until};

/// Our binary.
pub fn filebus_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_filebus"))
}

/// `filebus --filename BUS ARGS...` with our binary.
pub fn filebus(bus: &Path, args: &[&str]) -> Command {
    command_for(&filebus_bin(), bus, args)
}

/// The same command line for any filebus-compatible program.
pub fn command_for(program: &Path, bus: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(program);
    command.arg("--filename").arg(bus).args(args);
    command
}

/// A child process of the test: its stderr (and, unless the test took its
/// standard output for itself, its stdout) collected in the background, its
/// stdin fed from a thread so that nothing deadlocks; waited for with a
/// deadline, and killed if dropped while running.
pub struct Running {
    pub child: Child,
    /// The command line, for messages.
    what: String,
    /// `None` when the test chose where stdout goes ([`Running::with_stdio`]).
    output: Option<Arc<Mutex<Vec<u8>>>>,
    reader: Option<JoinHandle<()>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_reader: Option<JoinHandle<()>>,
    feeder: Option<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl Running {
    /// Starts `command` with `input` written to its stdin (then closed), or
    /// with stdin null if `input` is `None`.
    pub fn start(mut command: Command, input: Option<Vec<u8>>) -> Running {
        command.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        command.stdout(Stdio::piped());
        Running::spawn(command, input, true)
    }

    /// Starts `command` with the stdin it was given (e.g. a file).
    pub fn with_own_stdin(mut command: Command) -> Running {
        command.stdout(Stdio::piped());
        Running::spawn(command, None, true)
    }

    /// Starts `command` with the standard input and output the test chooses
    /// (`Stdio::piped()` leaves the stdout pipe in `child.stdout` for the
    /// test). The command is consumed, so that no copy of a pipe end given as
    /// `stdin` stays open in this process.
    pub fn with_stdio(
        mut command: Command,
        stdin: impl Into<Stdio>,
        stdout: impl Into<Stdio>,
    ) -> Running {
        command.stdin(stdin).stdout(stdout);
        Running::spawn(command, None, false)
    }

    /// Spawns `command` (stdin and stdout already set), feeding `input`,
    /// collecting stderr, and stdout too if `collect_stdout`.
    fn spawn(mut command: Command, input: Option<Vec<u8>>, collect_stdout: bool) -> Running {
        command.stderr(Stdio::piped());
        let what = format!("{command:?}");
        let mut child = command
            .spawn()
            .expect("cannot start the program under test");
        let feeder = input.map(|bytes| {
            let mut stdin = child.stdin.take().expect("stdin was piped");
            std::thread::spawn(move || {
                // The child may exit before reading everything (a test of
                // failure); a broken pipe here is not the test's concern.
                let _ = stdin.write_all(&bytes);
            })
        });
        let stdout = if collect_stdout {
            child.stdout.take()
        } else {
            None
        };
        let (output, reader) = match stdout {
            Some(stdout) => {
                let (output, reader) = collect(stdout);
                (Some(output), Some(reader))
            }
            None => (None, None),
        };
        let (stderr, stderr_reader) = collect(child.stderr.take().expect("stderr was piped"));
        Running {
            child,
            what,
            output,
            reader,
            stderr,
            stderr_reader: Some(stderr_reader),
            feeder,
            status: None,
        }
    }

    /// Starts a consumer of `bus` with our binary.
    pub fn consumer(bus: &Path, args: &[&str]) -> Running {
        let mut all = args.to_vec();
        all.push("consumer");
        Running::start(filebus(bus, &all), None)
    }

    /// What the child wrote to stdout so far.
    pub fn output(&self) -> Vec<u8> {
        self.collected_output()
            .lock()
            .expect("output lock poisoned")
            .clone()
    }

    fn collected_output(&self) -> &Arc<Mutex<Vec<u8>>> {
        self.output
            .as_ref()
            .expect("the test chose where this child's stdout goes: read it there")
    }

    /// What the child wrote to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().expect("stderr lock poisoned")).into_owned()
    }

    /// Waits until stdout holds at least `len` bytes; panics after [`PATIENCE`].
    pub fn wait_for_output(&self, len: usize) -> Vec<u8> {
        let what = format!("{len} bytes of output");
        let output = self.collected_output();
        wait_until(&what, || output.lock().expect("poisoned").len() >= len);
        self.output()
    }

    /// Waits until the output ends with `suffix`; panics after [`PATIENCE`].
    pub fn wait_for_suffix(&self, suffix: &[u8]) -> Vec<u8> {
        let output = self.collected_output();
        wait_until("the expected end of output", || {
            output.lock().expect("poisoned").ends_with(suffix)
        });
        self.output()
    }

    /// The child's process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `signal` to the child (unless it was already reaped).
    pub fn send(&self, signal: i32) {
        if self.status.is_none() {
            // SAFETY: kill(2) on our own child, which has not been reaped, so
            // its pid cannot belong to another process.
            unsafe {
                libc::kill(self.pid(), signal);
            }
        }
    }

    /// The exit status if the child has ended (then all it wrote to the
    /// pipes this collects has been collected).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("cannot wait for child");
            if self.status.is_some() {
                // The pipes' write ends closed with the child: the readers
                // are at their end.
                for reader in [self.reader.take(), self.stderr_reader.take()]
                    .into_iter()
                    .flatten()
                {
                    reader.join().expect("output reader panicked");
                }
            }
        }
        self.status
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// Waits for the child to end; kills it and panics after `limit`.
    pub fn wait_within(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_status() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{} did not end within {limit:?}; stderr: {}",
                    self.what,
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits for the child to end within [`PATIENCE`], keeping it (and its
    /// output) for later looks.
    pub fn wait_status(&mut self) -> ExitStatus {
        self.wait_within(PATIENCE)
    }

    /// Waits for the child to exit on its own within [`PATIENCE`], and
    /// collects what it left.
    pub fn wait(mut self) -> Finished {
        let status = self.wait_status();
        self.finish(status)
    }

    /// Sends `signal` (such as `libc::SIGKILL`) and collects what it left.
    pub fn signal(mut self, signal: i32) -> Finished {
        self.send(signal);
        let status = self.wait_status();
        self.finish(status)
    }

    /// Ends the child with SIGKILL.
    pub fn kill(self) -> Finished {
        self.signal(libc::SIGKILL)
    }

    fn finish(mut self, status: ExitStatus) -> Finished {
        if let Some(reader) = self.reader.take() {
            reader.join().expect("stdout reader panicked");
        }
        if let Some(reader) = self.stderr_reader.take() {
            reader.join().expect("stderr reader panicked");
        }
        if let Some(feeder) = self.feeder.take() {
            let _ = feeder.join();
        }
        Finished {
            status,
            stdout: self
                .output
                .as_ref()
                .map_or_else(Vec::new, |_| self.output()),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What a finished child left.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Finished {
    /// Panics with the child's stderr unless it exited with status 0.
    pub fn assert_success(&self) -> &Self {
        assert!(
            self.status.success(),
            "expected success, got {:?}; stderr:\n{}",
            self.status,
            self.stderr
        );
        self
    }
}

/// Collects everything `stream` yields in the background.
pub fn collect(mut stream: impl Read + Send + 'static) -> (Arc<Mutex<Vec<u8>>>, JoinHandle<()>) {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&buffer);
    let handle = std::thread::spawn(move || {
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(count) => sink
                    .lock()
                    .expect("poisoned")
                    .extend_from_slice(&chunk[..count]),
            }
        }
    });
    (buffer, handle)
}

/// Runs `command` to completion with `input` on stdin.
pub fn run(command: Command, input: &[u8]) -> Finished {
    Running::start(command, Some(input.to_vec())).wait()
}

/// Runs `command` to completion (within [`PATIENCE`]) with `input` as its
/// standard input, given as a regular file written in `aux` (a directory
/// other than the bus's). Returns the status and stderr.
pub fn run_with_input(command: Command, input: &[u8], aux: &Path) -> (ExitStatus, String) {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let number = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let stdin = input_in(aux, &format!("input-{number}"), input);
    let mut child = Running::with_stdio(command, stdin, Stdio::null());
    let status = child.wait_status();
    (status, child.stderr())
}

/// Runs `filebus --filename BUS producer ARGS...` to completion with `input`
/// from a regular file in `aux`, and asserts that it succeeded. `ARGS` may
/// hold the global options too: they are accepted after the subcommand.
pub fn produce(bus: &Path, args: &[&str], input: &[u8], aux: &Path) {
    let mut all = vec!["producer"];
    all.extend_from_slice(args);
    let (status, stderr) = run_with_input(filebus(bus, &all), input, aux);
    assert!(
        status.success(),
        "producer {all:?} failed: {status:?}; stderr:\n{stderr}"
    );
}

/// Whether `status` says the process was ended by `signal` (directly, or by
/// exiting with 128 + signal as shells do).
pub fn ended_by(status: ExitStatus, signal: i32) -> bool {
    status.signal() == Some(signal) || status.code() == Some(128 + signal)
}

/// Asserts a clean failure: the exit status `expected_code` (any non-zero
/// status, not a signal, if `None`), exactly one line on stderr, no panic,
/// and every one of `needles` in it.
/// `what` names the case in failure messages.
#[track_caller]
pub fn assert_one_line_error(
    status: ExitStatus,
    stderr: &str,
    expected_code: Option<i32>,
    needles: &[&str],
    what: &str,
) {
    match expected_code {
        Some(expected) => assert_eq!(
            status.code(),
            Some(expected),
            "{what}: wrong exit status; stderr:\n{stderr}"
        ),
        None => assert!(
            matches!(status.code(), Some(code) if code != 0),
            "{what}: expected a non-zero exit status, got {status:?}; stderr:\n{stderr}"
        ),
    }
    assert!(
        !stderr.contains("panicked"),
        "{what}: the program panicked:\n{stderr}"
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "{what}: expected exactly one line on stderr, got:\n{stderr}"
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{what}: stderr {stderr:?} does not mention {needle:?}"
        );
    }
}

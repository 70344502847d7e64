//! Test helpers: a scratch directory holding a bus, and the real `filebus`
//! binary (ours or the Python reference) run as child processes, with stdin
//! fed and stdout collected by threads so that nothing deadlocks.
#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long any single wait in a test may take before it fails. Generous:
/// the machine running CI is small and shared.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Our binary.
pub fn filebus_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_filebus"))
}

/// A temporary directory with a bus in it.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("filebus-test-")
            .tempdir_in("/tmp")
            .expect("cannot create a scratch directory in /tmp");
        Scratch { dir }
    }

    /// The path of the bus file `F`.
    pub fn bus(&self) -> PathBuf {
        self.dir.path().join("bus")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The names in the scratch directory, sorted.
    pub fn names(&self) -> Vec<String> {
        names_in(self.dir.path())
    }
}

/// The names in `dir`, sorted.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()))
        .map(|entry| {
            entry
                .expect("bad directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
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

/// A child whose stdout is collected in the background.
pub struct Running {
    pub child: Child,
    output: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_reader: Option<JoinHandle<()>>,
    feeder: Option<JoinHandle<()>>,
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
        Running::spawn(command, input)
    }

    /// Starts `command` with the stdin it was given (e.g. a file), feeding
    /// `input` if it is `Some` and stdin was set to piped.
    pub fn with_own_stdin(command: Command) -> Running {
        Running::spawn(command, None)
    }

    fn spawn(mut command: Command, input: Option<Vec<u8>>) -> Running {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
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
        let (output, reader) = collect(child.stdout.take().expect("stdout was piped"));
        let (stderr, stderr_reader) = collect(child.stderr.take().expect("stderr was piped"));
        Running {
            child,
            output,
            reader: Some(reader),
            stderr,
            stderr_reader: Some(stderr_reader),
            feeder,
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
        self.output.lock().expect("output lock poisoned").clone()
    }

    /// What the child wrote to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().expect("stderr lock poisoned")).into_owned()
    }

    /// Waits until stdout holds at least `len` bytes; panics after [`PATIENCE`].
    pub fn wait_for_output(&self, len: usize) -> Vec<u8> {
        let what = format!("{len} bytes of output");
        wait_until(&what, || self.output.lock().expect("poisoned").len() >= len);
        self.output()
    }

    /// Waits until the output ends with `suffix`; panics after [`PATIENCE`].
    pub fn wait_for_suffix(&self, suffix: &[u8]) -> Vec<u8> {
        wait_until("the expected end of output", || {
            self.output.lock().expect("poisoned").ends_with(suffix)
        });
        self.output()
    }

    /// Waits for the child to exit on its own; panics after [`PATIENCE`].
    pub fn wait(mut self) -> Finished {
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("cannot wait for child") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "the program did not exit within {PATIENCE:?}; stderr: {}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        self.finish(status)
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .try_wait()
            .expect("cannot wait for child")
            .is_none()
    }

    /// Sends `signal` (such as `libc::SIGKILL`) and collects what it left.
    pub fn signal(mut self, signal: i32) -> Finished {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
        let status = self.child.wait().expect("cannot wait for child");
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
            stdout: self.output(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.reader.is_some() {
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

/// Polls `condition` until it holds; panics after [`PATIENCE`], naming `what`.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {PATIENCE:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `count` fixed-width numbered records ("00000042\n"), so that a lost,
/// duplicated, reordered or torn record is visible.
pub fn numbered_records(count: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(count * RECORD_LEN);
    for number in 0..count {
        writeln!(data, "{number:0width$}", width = RECORD_LEN - 1)
            .expect("writing to a Vec cannot fail");
    }
    data
}

/// Bytes per record of [`numbered_records`].
pub const RECORD_LEN: usize = 9;

/// Parses output made of whole numbered records; panics on a torn record.
pub fn parse_records(output: &[u8]) -> Vec<usize> {
    assert_eq!(
        output.len() % RECORD_LEN,
        0,
        "output of {} bytes is not whole records",
        output.len()
    );
    output
        .chunks(RECORD_LEN)
        .map(|record| {
            let text = std::str::from_utf8(record).expect("record is not text: torn");
            assert!(text.ends_with('\n'), "record {text:?} is torn");
            text.trim_end()
                .parse()
                .unwrap_or_else(|_| panic!("record {text:?} is torn"))
        })
        .collect()
}

/// Pseudo-random binary data with many NUL bytes (deterministic).
pub fn binary_data(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let byte = (state >> 24) as u8;
            if byte < 64 { 0 } else { byte }
        })
        .collect()
}

/// Writes `bytes` to a new file in the scratch directory (to use as stdin).
pub fn input_file(scratch: &Scratch, name: &str, bytes: &[u8]) -> File {
    let path = scratch.path(name);
    std::fs::write(&path, bytes).expect("cannot write input file");
    File::open(&path).expect("cannot open input file")
}

/// The Python reference implementation, `filebus==0.3.5`, installed from PyPI
/// into a virtual environment under the cargo target directory the first time
/// it is needed. Panics with a clear message when that cannot be done: these
/// tests are never skipped silently.
pub fn reference_filebus() -> PathBuf {
    reference_filebus_version("0.3.5")
}

/// The Python reference implementation at `version` (see [`reference_filebus`]).
pub fn reference_filebus_version(version: &str) -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("reference-filebus-{version}"));
    let program = venv.join("bin").join("filebus");
    let lock_path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("reference-filebus.lock");
    let lock = File::create(&lock_path).expect("cannot create the reference install lock");
    lock.lock().expect("cannot lock the reference install lock");
    let ready = venv.join("installed");
    if !ready.exists() {
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let status = Command::new(&python)
            .args(["-m", "venv", "--clear"])
            .arg(&venv)
            .status()
            .unwrap_or_else(|error| {
                panic!("cannot run {python} to create a virtual environment: {error}")
            });
        assert!(
            status.success(),
            "`{python} -m venv {}` failed: {status}",
            venv.display()
        );
        let output = Command::new(venv.join("bin").join("pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                &format!("filebus=={version}"),
            ])
            .output()
            .expect("cannot run pip from the virtual environment");
        assert!(
            output.status.success(),
            "cannot install the reference implementation (pip install filebus=={version}), which the \
             interoperability tests need; is PyPI reachable?\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        File::create(&ready).expect("cannot mark the reference as installed");
    }
    assert!(
        program.exists(),
        "{} is missing after installation",
        program.display()
    );
    program
}

//! The integration tests' helpers, in one place: a scratch directory
//! holding a bus; the real `filebus` binary (ours or the Python reference)
//! run as a child process, with stdin fed and stdout collected by threads so
//! that nothing deadlocks, or with explicit standard input and a deadline;
//! signals, pipes and process states; numbered records and the checks that
//! find a lost, duplicated, reordered or torn one; a trap that stops a child
//! at an exact system call.
#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
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
    records(0..count)
}

/// Fixed-width numbered records, as [`numbered_records`], for the numbers in
/// `numbers`.
pub fn records(numbers: Range<usize>) -> Vec<u8> {
    let mut data = Vec::with_capacity(numbers.len() * RECORD_LEN);
    for number in numbers {
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

// Children with explicit standard input and a deadline, signals, pipes,
// process states, and checks of chunks made of numbered records.
/// Records per chunk in the tests that cut input into identifiable chunks.
pub const RECORDS_PER_CHUNK: usize = 100;
/// Bytes per such chunk: `--block-size` for those tests. A regular file as
/// standard input always fills a chunk completely (but the last), so every
/// chunk is exactly this many aligned, whole records.
pub const CHUNK: usize = RECORDS_PER_CHUNK * RECORD_LEN;
/// `CHUNK` as a command-line argument.
pub const CHUNK_ARG: &str = "900";
/// Record numbers of producer `p` in the multi-producer tests start at
/// `p * PRODUCER_STRIDE`, so a record tells which producer sent it.
pub const PRODUCER_STRIDE: usize = 10_000_000;

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

/// Bytes waiting in a pipe (FIONREAD works on either end).
pub fn pipe_queued(pipe: &impl AsRawFd) -> usize {
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int to the pointer we pass.
    let result = unsafe { libc::ioctl(pipe.as_raw_fd(), libc::FIONREAD, &mut queued) };
    assert_eq!(
        result,
        0,
        "FIONREAD failed: {}",
        std::io::Error::last_os_error()
    );
    queued as usize
}

/// The capacity of a pipe in bytes.
pub fn pipe_capacity(pipe: &impl AsRawFd) -> usize {
    // SAFETY: F_GETPIPE_SZ takes no argument and returns the size.
    let size = unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_GETPIPE_SZ) };
    assert!(
        size > 0,
        "F_GETPIPE_SZ failed: {}",
        std::io::Error::last_os_error()
    );
    size as usize
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

/// A small deterministic random generator (xorshift64*), seeded from the
/// clock; the seed is printed so a failing run can be told apart.
pub struct Rng(u64);

impl Rng {
    pub fn from_clock(what: &str) -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock before 1970")
            .as_nanos() as u64
            | 1;
        eprintln!("{what}: random seed {seed}");
        Rng(seed)
    }

    /// A number in `0..bound`.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound
    }
}

/// Writes `bytes` to a new file `name` in `dir` and opens it for reading (to
/// use as standard input: a regular file always fills a chunk completely).
pub fn input_in(dir: &Path, name: &str, bytes: &[u8]) -> File {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("cannot write input file");
    File::open(&path).expect("cannot open input file")
}

/// Checks that `bytes` is one whole chunk cut from a producer's numbered
/// records by `--block-size CHUNK` from a regular file: consecutive records
/// of one producer, starting at a multiple of [`RECORDS_PER_CHUNK`], and a
/// full chunk unless it ends at record `last_of_stream` (exclusive end of
/// that producer's numbers). Returns the first record's number.
pub fn check_chunk(bytes: &[u8], end_of_stream: Option<usize>, what: &str) -> usize {
    assert!(!bytes.is_empty(), "{what}: an empty chunk");
    let numbers = parse_records(bytes);
    let first = numbers[0];
    let base = first / PRODUCER_STRIDE * PRODUCER_STRIDE;
    assert_eq!(
        (first - base) % RECORDS_PER_CHUNK,
        0,
        "{what}: a chunk starting at record {first} is not aligned: torn"
    );
    for (offset, number) in numbers.iter().enumerate() {
        assert_eq!(
            *number,
            first + offset,
            "{what}: records of the chunk starting at {first} are not consecutive"
        );
    }
    let end = first + numbers.len();
    assert!(
        numbers.len() == RECORDS_PER_CHUNK || Some(end) == end_of_stream,
        "{what}: the chunk of records {first}..{end} is neither full nor the last one"
    );
    first
}

/// Splits output made of full chunks ([`CHUNK`] bytes each) and checks each.
/// Returns the first record of every chunk, in order.
pub fn check_full_chunks(output: &[u8], what: &str) -> Vec<usize> {
    assert_eq!(
        output.len() % CHUNK,
        0,
        "{what}: {} bytes of output are not whole chunks",
        output.len()
    );
    output
        .chunks(CHUNK)
        .map(|chunk| check_chunk(chunk, None, what))
        .collect()
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

/// Runs `filebus --filename BUS ARGS... producer` to completion with `input`
/// and asserts that it succeeded.
pub fn produce(bus: &Path, args: &[&str], input: &[u8], aux: &Path) {
    let mut all = args.to_vec();
    all.push("producer");
    let (status, stderr) = run_with_input(crate::util::filebus(bus, &all), input, aux);
    assert!(
        status.success(),
        "producer {all:?} failed: {status:?}; stderr:\n{stderr}"
    );
}

/// The descriptor number at which a trapped child keeps its seccomp
/// listener, for the test to fetch with `pidfd_getfd`.
const TRAP_FD: i32 = 900;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

/// The system calls that can stage, publish or remove a chunk: link,
/// rename (`renameat` where it exists, and `renameat2`), unlink.
#[cfg(target_arch = "x86_64")]
pub const PUBLISH_SYSCALLS: &[libc::c_long] = &[
    libc::SYS_linkat,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_unlinkat,
];
#[cfg(not(target_arch = "x86_64"))]
pub const PUBLISH_SYSCALLS: &[libc::c_long] =
    &[libc::SYS_linkat, libc::SYS_renameat2, libc::SYS_unlinkat];
/// The system call that deletes a name.
pub const UNLINK_SYSCALLS: &[libc::c_long] = &[libc::SYS_unlinkat];

/// A seccomp user-notification filter on some system calls of a child: each
/// time the child makes one of them it stops inside the kernel, before the
/// call does anything, until the test lets it go on ([`SyscallTrap::resume`])
/// or kills it. That turns "kill -9 at the worst moment" into a test that
/// hits the moment every time.
pub struct SyscallTrap {
    listener: std::os::fd::OwnedFd,
}

impl SyscallTrap {
    /// Arranges for the child of `command` to be trapped at `syscalls`.
    pub fn install(command: &mut Command, syscalls: &[libc::c_long]) {
        let filter = trap_filter(syscalls);
        // SAFETY: the closure runs between fork and exec and makes only
        // async-signal-safe system calls on memory prepared before the fork.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let program = libc::sock_fprog {
                    len: filter.len() as u16,
                    filter: filter.as_ptr() as *mut libc::sock_filter,
                };
                let listener = libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
                    &program as *const libc::sock_fprog,
                );
                if listener < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // dup2 clears close-on-exec: the listener survives the exec.
                if libc::dup2(listener as i32, TRAP_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    /// Takes the listener of a child started from a command prepared with
    /// [`SyscallTrap::install`] (spawn returns after the exec, so it is there).
    pub fn attach(child: &Running) -> SyscallTrap {
        use std::os::fd::FromRawFd;
        // SAFETY: plain system calls; the returned descriptors are new and ours.
        unsafe {
            let pidfd = libc::syscall(libc::SYS_pidfd_open, child.pid(), 0);
            assert!(
                pidfd >= 0,
                "pidfd_open: {}",
                std::io::Error::last_os_error()
            );
            let pidfd = std::os::fd::OwnedFd::from_raw_fd(pidfd as i32);
            let listener = libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), TRAP_FD, 0);
            assert!(
                listener >= 0,
                "pidfd_getfd: {}",
                std::io::Error::last_os_error()
            );
            SyscallTrap {
                listener: std::os::fd::OwnedFd::from_raw_fd(listener as i32),
            }
        }
    }

    /// Waits until the child is stopped in a trapped call; returns its id.
    pub fn wait(&self) -> u64 {
        let mut poll = libc::pollfd {
            fd: self.listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll reads and writes the one pollfd we pass.
        let ready = unsafe { libc::poll(&mut poll, 1, PATIENCE.as_millis() as i32) };
        assert!(ready >= 0, "poll: {}", std::io::Error::last_os_error());
        assert!(
            ready > 0,
            "the child made no trapped system call within {PATIENCE:?}"
        );
        assert!(
            poll.revents & libc::POLLIN != 0,
            "the child ended before its trapped system call"
        );
        // SAFETY: the kernel fills the zeroed seccomp_notif we pass.
        unsafe {
            let mut notification: libc::seccomp_notif = std::mem::zeroed();
            let result = libc::ioctl(
                self.listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_RECV,
                &mut notification,
            );
            assert_eq!(
                result,
                0,
                "SECCOMP_IOCTL_NOTIF_RECV: {}",
                std::io::Error::last_os_error()
            );
            notification.id
        }
    }

    /// Lets the trapped call `id` go on as if nothing had happened.
    pub fn resume(&self, id: u64) {
        let response = libc::seccomp_notif_resp {
            id,
            val: 0,
            error: 0,
            flags: libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
        };
        // SAFETY: the kernel reads the seccomp_notif_resp we pass.
        let result = unsafe {
            libc::ioctl(
                self.listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_SEND,
                &response,
            )
        };
        assert_eq!(
            result,
            0,
            "SECCOMP_IOCTL_NOTIF_SEND: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// A BPF program: user notification for `syscalls`, everything else allowed.
fn trap_filter(syscalls: &[libc::c_long]) -> Vec<libc::sock_filter> {
    let statement = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |k: u32, jt: usize, jf: usize| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt: jt as u8,
        jf: jf as u8,
        k,
    };
    let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let count = syscalls.len();
    // seccomp_data: nr at offset 0, arch at offset 4.
    let mut program = vec![
        statement(load, 4),
        jump(AUDIT_ARCH, 0, count + 1),
        statement(load, 0),
    ];
    for (index, syscall) in syscalls.iter().enumerate() {
        program.push(jump(*syscall as u32, count - index, 0));
    }
    program.push(statement(
        libc::BPF_RET | libc::BPF_K,
        libc::SECCOMP_RET_ALLOW,
    ));
    program.push(statement(
        libc::BPF_RET | libc::BPF_K,
        libc::SECCOMP_RET_USER_NOTIF,
    ));
    program
}

/// `filebus stat ARGS...`, which must succeed: its standard output.
pub fn stat<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[S]) -> String {
    let output = Command::new(filebus_bin())
        .arg("stat")
        .args(args)
        .output()
        .expect("cannot run filebus stat");
    assert!(
        output.status.success(),
        "filebus stat {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("stat prints text")
}

/// The last `consumer --stats` summary line in `stderr`.
pub fn last_stats_line(stderr: &str) -> &str {
    stderr
        .lines()
        .rev()
        .find(|line| line.contains("stats:"))
        .unwrap_or_else(|| panic!("no stats summary in {stderr:?}"))
}

/// The counts of the last summary line in `stderr`: chunks, bytes, missed,
/// unknown.
pub fn stats_counts(stderr: &str) -> [u64; 4] {
    let line = last_stats_line(stderr);
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|word| !word.is_empty())
        .take(4)
        .map(|word| word.parse().expect("a number"))
        .collect();
    numbers
        .try_into()
        .unwrap_or_else(|_| panic!("not four numbers: {line}"))
}

/// Publishes `content` at `bus` by hand, as a foreign producer would: written
/// beside it under another name, then renamed onto it (an unstamped chunk).
pub fn put_chunk_by_hand(bus: &Path, content: &[u8]) {
    let aside = bus.with_extension("by-hand");
    std::fs::write(&aside, content).expect("cannot write a chunk by hand");
    std::fs::rename(&aside, bus).expect("cannot rename a chunk onto the bus");
}

/// Takes chunks from the bus the way the protocol describes, independently of
/// our consumer: lock `F.lock`, read and delete `F`, unlock; until an empty chunk.
pub fn take_chunks_by_hand(bus: &Path) -> Vec<Vec<u8>> {
    let lock_path = bus.with_file_name("bus.lock");
    let mut chunks = Vec::new();
    loop {
        wait_until("a chunk to take", || bus.exists());
        let lock = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .expect("cannot open lock");
        // SAFETY: flock on a descriptor we own.
        assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
        let Ok(chunk) = std::fs::read(bus) else {
            continue;
        };
        std::fs::remove_file(bus).expect("cannot delete chunk");
        drop(lock);
        if chunk.is_empty() {
            return chunks;
        }
        chunks.push(chunk);
    }
}

/// Sets the extended attribute `name` of `path` to `value`.
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("a path without NUL");
    let name = std::ffi::CString::new(name).expect("a name without NUL");
    // SAFETY: both strings are NUL-terminated and outlive the call; the value
    // is a valid slice of its length.
    let status = unsafe {
        libc::setxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(status, 0, "setxattr: {}", std::io::Error::last_os_error());
}

/// The extended attribute `name` of `path`, as text.
pub fn get_xattr(path: &Path, name: &str) -> Option<String> {
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("a path without NUL");
    let name = std::ffi::CString::new(name).expect("a name without NUL");
    let mut value = [0u8; 64];
    // SAFETY: both strings are NUL-terminated; the buffer is writable for its
    // whole length.
    let len = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    usize::try_from(len)
        .ok()
        .map(|len| String::from_utf8_lossy(&value[..len]).into_owned())
}

/// A tmpfs mounted on a temporary directory for the life of the value, so
/// that a test can fill a filesystem (its size, or its inodes). Unmounted on
/// drop, also when the test fails. The tests run as root.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a new tmpfs with mount `options` (such as `size=64k,mode=0755`).
    pub fn mount(options: &str) -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix("filebus-tmpfs-")
            .tempdir_in("/tmp")
            .expect("cannot create a mount point");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("cannot run mount");
        assert!(
            output.status.success(),
            "cannot mount a tmpfs (these tests run as root): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Tmpfs { dir }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let path =
            std::ffi::CString::new(self.dir.path().as_os_str().as_bytes()).expect("NUL in path");
        // SAFETY: umount2 reads a NUL-terminated path. A lazy unmount works
        // even if a killed child's files are still open; the TempDir then
        // removes the empty mount point.
        unsafe {
            libc::umount2(path.as_ptr(), libc::MNT_DETACH);
        }
    }
}

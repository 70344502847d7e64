//! Helpers shared by the fault-injection and security tests (`faults.rs`,
//! `security.rs`): children with explicit standard input and a deadline,
//! signals, pipes, process states, and checks of chunks made of numbered
//! records.
#![allow(dead_code)]

use std::fs::File;
use std::io::Write;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::common::{PATIENCE, RECORD_LEN, parse_records};

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

/// A child started with the standard input and output the test chooses, its
/// stderr kept in a file, waited for with a deadline, killed if dropped.
pub struct Spawned {
    pub child: Child,
    /// The command line, for messages.
    what: String,
    status: Option<ExitStatus>,
    stderr_path: PathBuf,
    _stderr_dir: tempfile::TempDir,
}

impl Spawned {
    /// Starts `command`. The command is consumed, so that no copy of a pipe
    /// end given as `stdin` stays open in this process.
    pub fn start(mut command: Command, stdin: impl Into<Stdio>, stdout: impl Into<Stdio>) -> Self {
        let stderr_dir = tempfile::Builder::new()
            .prefix("filebus-stderr-")
            .tempdir_in("/tmp")
            .expect("cannot create a directory for stderr");
        let stderr_path = stderr_dir.path().join("stderr");
        let stderr = File::create(&stderr_path).expect("cannot create the stderr file");
        let what = format!("{command:?}");
        let child = command
            .stdin(stdin)
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("cannot start the program under test");
        Spawned {
            child,
            what,
            status: None,
            stderr_path,
            _stderr_dir: stderr_dir,
        }
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

    /// The exit status if the child has ended.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("cannot wait for child");
        }
        self.status
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

    /// Waits for the child to end within [`PATIENCE`].
    pub fn wait(&mut self) -> ExitStatus {
        self.wait_within(PATIENCE)
    }

    /// Everything the child wrote to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.stderr_path).unwrap_or_default()).into_owned()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Whether `status` says the process was ended by `signal` (directly, or by
/// exiting with 128 + signal as shells do).
pub fn ended_by(status: ExitStatus, signal: i32) -> bool {
    status.signal() == Some(signal) || status.code() == Some(128 + signal)
}

/// Asserts a clean runtime failure: a non-zero exit status (not a signal),
/// exactly one line on stderr, no panic, and every one of `needles` in it.
/// `what` names the case in failure messages.
#[track_caller]
pub fn assert_one_line_error(status: ExitStatus, stderr: &str, needles: &[&str], what: &str) {
    assert!(
        matches!(status.code(), Some(code) if code != 0),
        "{what}: expected a non-zero exit status, got {status:?}; stderr:\n{stderr}"
    );
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
    crate::common::wait_until(&format!("process {pid} to block"), || {
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

/// Fixed-width numbered records (as `common::numbered_records`) for the
/// numbers in `numbers`.
pub fn records(numbers: Range<usize>) -> Vec<u8> {
    let mut data = Vec::with_capacity(numbers.len() * RECORD_LEN);
    for number in numbers {
        writeln!(data, "{number:0width$}", width = RECORD_LEN - 1)
            .expect("writing to a Vec cannot fail");
    }
    data
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
    let mut child = Spawned::start(command, stdin, Stdio::null());
    let status = child.wait();
    (status, child.stderr())
}

/// Runs `filebus --filename BUS ARGS... producer` to completion with `input`
/// and asserts that it succeeded.
pub fn produce(bus: &Path, args: &[&str], input: &[u8], aux: &Path) {
    let mut all = args.to_vec();
    all.push("producer");
    let (status, stderr) = run_with_input(crate::common::filebus(bus, &all), input, aux);
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
    pub fn attach(child: &Spawned) -> SyscallTrap {
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

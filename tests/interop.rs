//! Interoperability with the reference implementation, `filebus==0.3.5` from
//! PyPI, and its bash variant (`filebus --impl bash`), through real processes:
//! our producer with their consumers and their producers with our consumer,
//! lossy and lossless, plus a mixed fleet of producers on one lossless bus.
//!
//! Every program runs in its own process group, so that the bash reference's
//! subshells and `sleep`s end with it (an orphaned subshell would otherwise
//! keep the stdout pipe open). Waits are on observable facts (output, exit),
//! never on sleeps.

use std::ffi::OsString;
use std::fs::File;
use std::io::{ErrorKind, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::util::{
    Finished, PATIENCE, RECORD_LEN, Scratch, binary_data, collect, command_for, filebus, input_in,
    numbered_records, parse_records, reference_filebus, wait_until,
};
use inotify::{EventMask, Inotify, WatchMask};

/// `--sleep-interval` for every side: the reference polls at this pace, so a
/// short one keeps the tests fast.
const SLEEP_INTERVAL: &str = "0.02";

/// The implementations that can take a side of a bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// Our `filebus` binary.
    Ours,
    /// The Python reference, `filebus` 0.3.5.
    Python,
    /// The bash variant of the reference, `filebus --impl bash`
    /// (newline-delimited; it does `cd /`, so paths must be absolute).
    Bash,
}

/// The command line `filebus --filename BUS --sleep-interval 0.02 ARGS...`
/// for `side`. `args` must end with the subcommand (the reference parses the
/// global options before it only).
fn command(side: Side, bus: &Path, args: &[&str]) -> Command {
    assert!(
        bus.is_absolute(),
        "the bash reference needs an absolute bus path"
    );
    let mut all = vec!["--sleep-interval", SLEEP_INTERVAL];
    all.extend_from_slice(args);
    match side {
        Side::Ours => filebus(bus, &all),
        Side::Python => command_for(&reference_filebus(), bus, &all),
        Side::Bash => {
            let mut command = Command::new(reference_filebus());
            command
                .args(["--impl", "bash", "--filename"])
                .arg(bus)
                .args(&all);
            command
        }
    }
}

/// What a program under test reads on standard input.
enum Input {
    Null,
    /// A pipe the test writes with [`Proc::feed`] and closes with [`Proc::close_stdin`].
    Pipe,
    /// A regular file: the reference then reads synchronously and cuts
    /// chunks at exact block boundaries.
    File(File),
}

/// A program under test in its own process group, with stdout and stderr
/// collected by threads.
struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    /// Reaped: the process group id may no longer be ours.
    reaped: bool,
}

impl Proc {
    fn start(side: Side, bus: &Path, args: &[&str], input: Input) -> Proc {
        let name = format!("{side:?} `{}`", args.join(" "));
        let mut command = command(side, bus, args);
        command
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match input {
            Input::Null => command.stdin(Stdio::null()),
            Input::Pipe => command.stdin(Stdio::piped()),
            Input::File(file) => command.stdin(Stdio::from(file)),
        };
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {name}: {error}"));
        let stdin = child.stdin.take();
        let (stdout, stdout_reader) = collect(child.stdout.take().expect("stdout is piped"));
        let (stderr, stderr_reader) = collect(child.stderr.take().expect("stderr is piped"));
        Proc {
            name,
            child,
            stdin,
            stdout,
            stderr,
            readers: vec![stdout_reader, stderr_reader],
            reaped: false,
        }
    }

    /// Starts a consumer of `bus`.
    fn consumer(side: Side, bus: &Path, options: &[&str]) -> Proc {
        let mut args = options.to_vec();
        args.push("consumer");
        Proc::start(side, bus, &args, Input::Null)
    }

    /// Starts a producer on `bus` reading `input`.
    fn producer(side: Side, bus: &Path, options: &[&str], input: Input) -> Proc {
        let mut args = options.to_vec();
        args.push("producer");
        Proc::start(side, bus, &args, input)
    }

    /// Writes `bytes` to the program's stdin pipe.
    fn feed(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin is an open pipe");
        if let Err(error) = stdin.write_all(bytes).and_then(|()| stdin.flush()) {
            panic!(
                "cannot feed {}: {error}; stderr:\n{}",
                self.name,
                self.stderr()
            );
        }
    }

    /// Closes the stdin pipe: end of input.
    fn close_stdin(&mut self) {
        drop(self.stdin.take());
    }

    fn output(&self) -> Vec<u8> {
        self.stdout.lock().expect("stdout poisoned").clone()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().expect("stderr poisoned")).into_owned()
    }

    /// Whether the program has exited, without reaping it (so that its
    /// process group id stays ours).
    fn has_exited(&self) -> bool {
        // SAFETY: an all-zero siginfo_t is valid; waitid fills it in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid on our own unreaped child, with a valid out pointer.
        let result = unsafe {
            libc::waitid(
                libc::P_PID,
                self.child.id(),
                &mut info,
                libc::WEXITED | libc::WNOWAIT | libc::WNOHANG,
            )
        };
        assert_eq!(result, 0, "waitid: {}", std::io::Error::last_os_error());
        // SAFETY: waitid filled in a child-exit siginfo, or left it zeroed.
        unsafe { info.si_pid() != 0 }
    }

    /// Waits until `done(stdout)` holds; fails at once if the program exits
    /// first, or after [`PATIENCE`].
    fn wait_for_output(&self, what: &str, mut done: impl FnMut(&[u8]) -> bool) {
        wait_until(&format!("{what} from {}", self.name), || {
            if done(&self.output()) {
                return true;
            }
            assert!(
                !self.has_exited(),
                "{} exited while the test waited for {what}; output {:?}, stderr:\n{}",
                self.name,
                String::from_utf8_lossy(&self.output()),
                self.stderr()
            );
            false
        });
    }

    /// Waits for the program to exit on its own; panics after [`PATIENCE`].
    fn wait(mut self) -> Finished {
        self.close_stdin();
        let deadline = Instant::now() + PATIENCE;
        while !self.has_exited() {
            if Instant::now() > deadline {
                let name = self.name.clone();
                let finished = self.finish();
                panic!(
                    "{name} did not exit within {PATIENCE:?}; stderr:\n{}",
                    finished.stderr
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.finish()
    }

    /// Kills the program (and anything it started) and collects what it left.
    fn kill(self) -> Finished {
        self.finish()
    }

    /// SIGKILLs the whole process group (a no-op for an exited program that
    /// left nothing behind), reaps the program and collects its output.
    fn finish(mut self) -> Finished {
        self.close_stdin();
        self.kill_group();
        let status = self.child.wait().expect("cannot reap the program");
        self.reaped = true;
        for reader in self.readers.drain(..) {
            reader.join().expect("output reader panicked");
        }
        Finished {
            status,
            stdout: self.output(),
            stderr: self.stderr(),
        }
    }

    fn kill_group(&self) {
        assert!(!self.reaped, "the process group id is no longer ours");
        let group = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) on the process group our unreaped child leads.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill_group();
            let _ = self.child.wait();
        }
    }
}

/// Counts the chunks published at the bus, whoever publishes them: every
/// publish, ours or the reference's, renames a file onto `F`.
///
/// The kernel merges an inotify event into an identical one at the tail of
/// the queue, so a run of bare `MOVED_TO bus` events would count as one; the
/// `MOVED_FROM` half of each rename (from another name) keeps them apart.
struct Publications {
    inotify: Inotify,
    name: OsString,
}

impl Publications {
    fn watch(scratch: &Scratch) -> Publications {
        let inotify = Inotify::init().expect("cannot create an inotify instance");
        inotify
            .watches()
            .add(
                scratch.dir.path(),
                // DELETE too, only so that consecutive CREATEs are not merged.
                WatchMask::MOVED_FROM | WatchMask::MOVED_TO | WatchMask::CREATE | WatchMask::DELETE,
            )
            .expect("cannot watch the scratch directory");
        let name = scratch
            .bus()
            .file_name()
            .expect("the bus has a name")
            .to_owned();
        Publications { inotify, name }
    }

    /// The publications at `F` so far: renames onto it, or (ours, where `F`
    /// is absent) links of a complete chunk as `F`.
    fn count(mut self) -> usize {
        let mut buffer = vec![0u8; 1 << 16];
        let mut count = 0;
        loop {
            let events = match self.inotify.read_events(&mut buffer) {
                Ok(events) => events,
                Err(error) if error.kind() == ErrorKind::WouldBlock => return count,
                Err(error) => panic!("cannot read inotify events: {error}"),
            };
            for event in events {
                assert!(
                    !event.mask.contains(EventMask::Q_OVERFLOW),
                    "inotify queue overflow: cannot count chunks"
                );
                if event
                    .mask
                    .intersects(EventMask::MOVED_TO | EventMask::CREATE)
                    && event.name == Some(self.name.as_os_str())
                {
                    count += 1;
                }
            }
        }
    }
}

/// Panics with lengths and the first differing offset (not kilobytes of
/// bytes) unless `observed == expected`.
fn assert_same_bytes(observed: &[u8], expected: &[u8], what: &str) {
    if observed != expected {
        let first = observed
            .iter()
            .zip(expected)
            .position(|(a, b)| a != b)
            .unwrap_or(observed.len().min(expected.len()));
        panic!(
            "{what}: {} bytes observed, {} expected; first difference at byte {first}",
            observed.len(),
            expected.len()
        );
    }
}

/// Chunk `index` of the lossy tests: three distinct lines (the bash variant
/// is line-oriented).
fn lossy_chunk(index: usize) -> Vec<u8> {
    (0..3)
        .map(|line| format!("chunk {index:02} line {line}: interoperability\n"))
        .collect::<String>()
        .into_bytes()
}

/// How far `output` has got through `chunks`, which it must reproduce whole
/// and in order, each once, or (with `allow_repeats`) possibly several times
/// in a row.
#[derive(Debug, PartialEq, Eq)]
struct Progress {
    /// Chunks seen whole, in order.
    seen: usize,
    /// Whether the output ends at a chunk boundary (it may end inside the
    /// next chunk while a consumer is still writing it).
    at_boundary: bool,
}

/// Matches `output` against `chunks`; panics on anything but whole chunks in
/// order (a torn, skipped, reordered, foreign or, unless allowed, repeated
/// chunk).
fn progress(output: &[u8], chunks: &[Vec<u8>], allow_repeats: bool) -> Progress {
    let mut seen = 0;
    let mut rest = output;
    while !rest.is_empty() {
        let next = chunks.get(seen);
        let previous = seen.checked_sub(1).map(|index| &chunks[index]);
        if let Some(chunk) = next.filter(|chunk| rest.starts_with(chunk)) {
            rest = &rest[chunk.len()..];
            seen += 1;
        } else if let Some(chunk) =
            previous.filter(|chunk| allow_repeats && rest.starts_with(chunk))
        {
            rest = &rest[chunk.len()..];
        } else if next.is_some_and(|chunk| chunk.starts_with(rest))
            || previous.is_some_and(|chunk| allow_repeats && chunk.starts_with(rest))
        {
            return Progress {
                seen,
                at_boundary: false,
            };
        } else {
            panic!(
                "after {seen} whole chunks the consumer wrote {:?}, which is not the next chunk{}; \
                 whole output: {:?}",
                String::from_utf8_lossy(rest),
                if allow_repeats {
                    " nor a repeat of the last"
                } else {
                    ""
                },
                String::from_utf8_lossy(output)
            );
        }
    }
    Progress {
        seen,
        at_boundary: true,
    }
}

/// Lossy multicast from `producer` to `consumer`: five chunks, each fed only
/// after the consumer has written the one before (so none may be skipped),
/// must come out whole and in order; with `allow_repeats` false, each once.
fn lossy_chunks_arrive(producer: Side, consumer: Side, allow_repeats: bool) {
    let scratch = Scratch::new();
    let bus = scratch.bus();
    let chunks: Vec<Vec<u8>> = (0..5).map(lossy_chunk).collect();
    let consumer = Proc::consumer(consumer, &bus, &[]);
    let mut producer = Proc::producer(producer, &bus, &[], Input::Pipe);
    for (index, chunk) in chunks.iter().enumerate() {
        producer.feed(chunk);
        consumer.wait_for_output(&format!("chunk {index}"), |output| {
            progress(output, &chunks, allow_repeats).seen > index
        });
    }
    producer.wait().assert_success();
    assert_eq!(
        std::fs::read(&bus).expect("the bus file is missing"),
        chunks[chunks.len() - 1],
        "the bus file should hold the most recent chunk"
    );
    let finished = consumer.kill();
    assert_eq!(
        progress(&finished.stdout, &chunks, allow_repeats),
        Progress {
            seen: chunks.len(),
            at_boundary: true
        },
        "stderr of the consumer:\n{}",
        finished.stderr
    );
}

/// Lossless unicast of `data` from `producer` (reading it from a regular
/// file, in chunks of `block_size`) to `consumer`: byte for byte, the
/// consumer exits 0 on the end-of-stream marker and deletes it, and the
/// stream took at least ten chunks.
fn lossless_stream_arrives(producer: Side, consumer: Side, data: &[u8], block_size: usize) {
    assert!(
        data.len() >= 20 * block_size,
        "too little data for ten chunks even if a producer merged two blocks"
    );
    let scratch = Scratch::new();
    let bus = scratch.bus();
    let publications = Publications::watch(&scratch);
    let block_size = block_size.to_string();
    let options = ["--back-pressure", "--block-size", &block_size];
    let consumer = Proc::consumer(consumer, &bus, &options);
    let stdin = input_in(scratch.dir.path(), "input", data);
    let producer = Proc::producer(producer, &bus, &options, Input::File(stdin));
    producer.wait().assert_success();
    let finished = consumer.wait();
    finished.assert_success();
    assert_same_bytes(&finished.stdout, data, "the stream through the bus");
    assert!(
        !bus.exists(),
        "the consumer should have deleted the end-of-stream marker"
    );
    let chunks = publications.count() - 1;
    assert!(chunks >= 10, "the stream took only {chunks} chunks");
}

#[test]
fn python_consumer_sees_each_chunk_of_our_lossy_producer() {
    lossy_chunks_arrive(Side::Ours, Side::Python, false);
}

#[test]
fn our_consumer_sees_each_chunk_of_python_lossy_producer() {
    lossy_chunks_arrive(Side::Python, Side::Ours, false);
}

#[test]
fn python_consumer_receives_our_lossless_stream_byte_for_byte() {
    lossless_stream_arrives(Side::Ours, Side::Python, &binary_data(6 * 1024), 256);
}

#[test]
fn our_consumer_receives_python_lossless_stream_byte_for_byte() {
    lossless_stream_arrives(Side::Python, Side::Ours, &binary_data(6 * 1024), 256);
}

/// The bash consumer re-reads `F` whenever it is replaced; repeats of the
/// last chunk are tolerated, skips, tears and reordering are not.
#[test]
fn bash_consumer_sees_each_chunk_of_our_lossy_producer() {
    lossy_chunks_arrive(Side::Ours, Side::Bash, true);
}

#[test]
fn our_consumer_sees_each_chunk_of_bash_lossy_producer() {
    lossy_chunks_arrive(Side::Bash, Side::Ours, false);
}

#[test]
fn bash_consumer_receives_our_lossless_stream_byte_for_byte() {
    lossless_stream_arrives(Side::Ours, Side::Bash, &numbered_records(400), 180);
}

#[test]
fn our_consumer_receives_bash_lossless_stream_byte_for_byte() {
    lossless_stream_arrives(Side::Bash, Side::Ours, &numbered_records(400), 180);
}

/// One of our producers and one Python producer share a lossless bus, read
/// by our consumer. Each producer ends with its own end-of-stream marker, and
/// a lossless consumer exits at the first one it takes, so: the Python
/// producer's input stays open until ours has finished; our first consumer
/// takes everything up to our end-of-stream marker (and, by construction, at
/// least one Python chunk in between ours); a second consumer of ours takes
/// the rest up to the Python marker. Together they must hold every record of
/// both producers exactly once, each producer's in its order.
#[test]
fn mixed_fleet_of_our_and_python_producers_delivers_every_record_exactly_once() {
    const PER_PRODUCER: usize = 240;
    // Whole records per chunk, so that chunks of the two producers can
    // interleave without tearing a record.
    const BLOCK_SIZE: usize = 10 * RECORD_LEN;
    let records = numbered_records(2 * PER_PRODUCER);
    let (ours, theirs) = records.split_at(PER_PRODUCER * RECORD_LEN);
    let (our_first_half, our_second_half) = ours.split_at(ours.len() / 2);
    assert_eq!(our_first_half.len() % BLOCK_SIZE, 0);
    // Each feed is one write of at most PIPE_BUF bytes, so it lands in the
    // pipe at once and the producers cut whole blocks out of it.
    assert!(theirs.len() <= 4096 && our_first_half.len() <= 4096);

    let scratch = Scratch::new();
    let bus = scratch.bus();
    let block_size = BLOCK_SIZE.to_string();
    let options = ["--back-pressure", "--block-size", &block_size];
    let first_consumer = Proc::consumer(Side::Ours, &bus, &options);
    let mut python = Proc::producer(Side::Python, &bus, &options, Input::Pipe);
    python.feed(theirs);
    let mut our_producer = Proc::producer(Side::Ours, &bus, &options, Input::Pipe);
    our_producer.feed(our_first_half);
    let whole_records =
        |output: &[u8]| parse_records(&output[..output.len() / RECORD_LEN * RECORD_LEN]);
    first_consumer.wait_for_output("our first half and a Python record", |output| {
        let seen = whole_records(output);
        let ours_seen = seen.iter().filter(|&&record| record < PER_PRODUCER).count();
        ours_seen == PER_PRODUCER / 2 && seen.iter().any(|&record| record >= PER_PRODUCER)
    });
    our_producer.feed(our_second_half);
    our_producer.wait().assert_success();
    let first = first_consumer.wait();
    first.assert_success();

    let second_consumer = Proc::consumer(Side::Ours, &bus, &options);
    python.close_stdin();
    python.wait().assert_success();
    let second = second_consumer.wait();
    second.assert_success();
    assert!(
        !bus.exists(),
        "the second consumer should have deleted the end-of-stream marker"
    );

    let first_records = parse_records(&first.stdout);
    let second_records = parse_records(&second.stdout);
    assert!(
        (0..PER_PRODUCER).all(|record| first_records.contains(&record)),
        "our end-of-stream marker came after all our records, so the first consumer \
         should have taken them all: {first_records:?}"
    );
    let first_python = first_records
        .iter()
        .position(|&record| record >= PER_PRODUCER);
    let our_second_half = first_records
        .iter()
        .position(|&record| record == PER_PRODUCER / 2);
    assert!(
        matches!((first_python, our_second_half), (Some(python), Some(ours)) if python < ours),
        "the test fed our second half only after a Python record had arrived, so the \
         first consumer should have one in between ours: {first_records:?}"
    );
    let all: Vec<usize> = first_records
        .iter()
        .chain(&second_records)
        .copied()
        .collect();
    let mut sorted = all.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (0..2 * PER_PRODUCER).collect::<Vec<_>>(),
        "every record exactly once; first consumer {first_records:?}, second {second_records:?}"
    );
    let our_order: Vec<usize> = all
        .iter()
        .copied()
        .filter(|&record| record < PER_PRODUCER)
        .collect();
    let python_order: Vec<usize> = all
        .iter()
        .copied()
        .filter(|&record| record >= PER_PRODUCER)
        .collect();
    assert!(
        our_order.is_sorted(),
        "our records out of order: {our_order:?}"
    );
    assert!(
        python_order.is_sorted(),
        "Python records out of order: {python_order:?}"
    );
}

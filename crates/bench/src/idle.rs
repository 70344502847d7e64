//! Section 4: what an idle producer and consumer cost.
//!
//! For every filebus program and both modes, a producer and a consumer are
//! started with 1 MiB blocks and the program's default `--sleep-interval`
//! (what a user gets), a few full chunks are passed through (so that buffers
//! are allocated and peak memory means something), and then nothing: the
//! producer's input stays open and empty. All pairs idle at the same time,
//! during one window ([`Plan::idle_window`]), at whose ends `/proc` is read
//! ([`super::procfs`]): CPU time, voluntary context switches (wake-ups) and
//! involuntary ones, and the peak resident set size (`VmHWM`, or `ru_maxrss`
//! from `wait4` if larger).
//!
//! Then a second window of the same length in a busy directory: a thread of
//! the benchmark creates, writes, renames and deletes files of other names in
//! every bus's directory, in turn, as fast as it goes (another program
//! writing beside the bus), and the same counters are read again.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::pattern::Pattern;
use super::procfs::{self, Sample};
use super::pump::Pump;
use super::system::{BusSetup, Mode, Role, Running, System};
use super::{BenchError, Context, Plan, Results, Section, interrupt};

/// How long a lossy consumer may stay silent before a chunk counts as
/// skipped during the warm-up.
const LOSSY_QUIET: Duration = Duration::from_secs(2);

/// The cost of one idle process.
#[derive(Debug, Clone)]
pub(crate) struct Measurement {
    pub system: String,
    pub mode: Mode,
    pub role: Role,
    /// The window, measured.
    pub window_seconds: f64,
    /// CPU time used in the window, nanoseconds.
    pub cpu_ns: u64,
    /// Whether `cpu_ns` is exact (schedstat) rather than whole clock ticks.
    pub cpu_exact: bool,
    /// Voluntary context switches (wake-ups) in the window.
    pub voluntary: u64,
    /// Involuntary context switches in the window.
    pub involuntary: u64,
    /// Peak RSS over the whole life of the process, KiB.
    pub peak_rss_kib: u64,
    /// Files of another program made per second in the bus's directory
    /// during the window (`None`: a quiet directory).
    pub busy_directory: Option<f64>,
}

impl Measurement {
    /// Wake-ups per second.
    pub(crate) fn wakeups_per_s(&self) -> f64 {
        self.voluntary as f64 / self.window_seconds
    }

    /// CPU time over the window scaled to 10 s, in milliseconds: a figure
    /// that does not depend on the length of the window.
    pub(crate) fn cpu_ms_per_10s(&self) -> f64 {
        self.cpu_ns as f64 / 1e6 * 10.0 / self.window_seconds
    }
}

struct Pair {
    system: String,
    mode: Mode,
    running: Running,
}

/// Starts and warms up every pair, then measures them all over one window.
pub(crate) fn run(context: &mut Context<'_>, results: &mut Results) -> Result<(), BenchError> {
    let plan: &Plan = context.plan;
    let pattern = Pattern::new();
    let mut pairs = Vec::new();
    for implementation in context.implementations {
        for mode in [Mode::Lossy, Mode::Lossless] {
            let system = System::Bus(BusSetup {
                implementation,
                mode,
                block_size: Some(plan.idle_block_size),
                sleep_interval: None,
                consumers: 1,
            });
            let label = format!(
                "idle {} {}: {} chunks of {} through",
                implementation.name,
                mode.name(),
                plan.idle_warm_up_chunks,
                super::report::bytes_label(plan.idle_block_size as u64)
            );
            context.progress.run(&label, 1, 1);
            let started = system.start(context.scratch).and_then(|mut running| {
                warm_up(&mut running, &pattern, &implementation.name, mode, plan)?;
                Ok(running)
            });
            let settled = results.settle(started, Section::Idle, &implementation.name, || {
                mode.name().to_owned()
            })?;
            if let Some(running) = settled {
                pairs.push(Pair {
                    system: implementation.name.clone(),
                    mode,
                    running,
                });
            }
        }
    }
    let window = format!(
        "idle window of {:?} for {} pairs",
        plan.idle_window,
        pairs.len()
    );
    context.progress.run(&window, 1, 1);
    let quiet = measure(&pairs, plan.idle_window, None)?;
    context
        .progress
        .run(&format!("{window} in busy directories"), 1, 1);
    let dirs = pairs.iter().map(|pair| pair.running.dir().to_owned());
    let busy = measure(&pairs, plan.idle_window, Some(Churn::start(dirs.collect())))?;
    for (index, mut pair) in pairs.into_iter().enumerate() {
        let point = || pair.mode.name().to_owned();
        let alive = pair
            .running
            .check_alive()
            .map_err(|error| noted(error, "during the idle window"));
        if results
            .settle(alive, Section::Idle, &pair.system, point)?
            .is_none()
        {
            continue;
        }
        let finished = pair
            .running
            .finish(pair.mode == Mode::Lossless, Duration::from_secs(10));
        for window in [&quiet, &busy] {
            let (Some(before), Some(after)) = (&window.before[index], &window.after[index]) else {
                continue;
            };
            for ((role, earlier), (_, last)) in before.iter().zip(after) {
                let rss_at_exit = pair.running.peak_rss_kib(*role).unwrap_or(0);
                results.idle.push(Measurement {
                    system: pair.system.clone(),
                    mode: pair.mode,
                    role: *role,
                    window_seconds: window.seconds,
                    cpu_ns: last.cpu_ns.saturating_sub(earlier.cpu_ns),
                    cpu_exact: last.cpu_exact && earlier.cpu_exact,
                    voluntary: last.voluntary.saturating_sub(earlier.voluntary),
                    involuntary: last.involuntary.saturating_sub(earlier.involuntary),
                    peak_rss_kib: last.peak_rss_kib.max(rss_at_exit),
                    busy_directory: window.busy_directory,
                });
            }
        }
        let finished = finished.map_err(|error| noted(error, "after the idle window"));
        results.settle(finished, Section::Idle, &pair.system, || {
            pair.mode.name().to_owned()
        })?;
    }
    Ok(())
}

/// The counters of every pair at both ends of one window.
struct Window {
    before: Vec<Option<Vec<(Role, Sample)>>>,
    after: Vec<Option<Vec<(Role, Sample)>>>,
    seconds: f64,
    /// Files made per second in each bus directory, if it was busy.
    busy_directory: Option<f64>,
}

/// Samples every pair at both ends of `length`, with `churn` (stopped at
/// the end) making the directories busy meanwhile.
fn measure(pairs: &[Pair], length: Duration, churn: Option<Churn>) -> Result<Window, BenchError> {
    let before = sample_all(pairs);
    let start = Instant::now();
    interrupt::sleep(length)?;
    let after = sample_all(pairs);
    let seconds = start.elapsed().as_secs_f64();
    Ok(Window {
        before,
        after,
        seconds,
        busy_directory: churn.map(|mut churn| churn.finish() as f64 / seconds),
    })
}

/// Another program writing beside the buses: a thread that creates, writes,
/// renames and deletes a file of another name in each directory in turn,
/// until finished or dropped.
struct Churn {
    stop: Arc<AtomicBool>,
    /// Files made in each directory so far.
    files: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Churn {
    fn start(dirs: Vec<PathBuf>) -> Churn {
        let stop = Arc::new(AtomicBool::new(false));
        let files = Arc::new(AtomicU64::new(0));
        let thread = std::thread::spawn({
            let (stop, files) = (stop.clone(), files.clone());
            move || {
                let names: Vec<_> = dirs
                    .iter()
                    .map(|dir| (dir.join("other.part"), dir.join("other")))
                    .collect();
                while !stop.load(Ordering::Relaxed) {
                    for (staged, named) in &names {
                        // A directory already removed makes no file; the
                        // window's checks report why.
                        let _ = std::fs::write(staged, b"another program's file")
                            .and_then(|()| std::fs::rename(staged, named))
                            .and_then(|()| std::fs::remove_file(named));
                    }
                    files.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Churn {
            stop,
            files,
            thread: Some(thread),
        }
    }

    /// Stops the thread; how many files it made in each directory.
    fn finish(&mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.files.load(Ordering::Relaxed)
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A failed run's message with `note` on when it failed; other errors as they are.
fn noted(error: BenchError, note: &str) -> BenchError {
    match error {
        BenchError::Failed(message) => BenchError::Failed(format!("{message} ({note})")),
        other => other,
    }
}

/// Passes `plan.idle_warm_up_chunks` full chunks through, one at a time.
/// Lossless output is checked byte for byte; a lossy consumer may skip a
/// chunk, so there the benchmark waits for the bytes or for a quiet spell.
fn warm_up(
    running: &mut Running,
    pattern: &Pattern,
    name: &str,
    mode: Mode,
    plan: &Plan,
) -> Result<(), BenchError> {
    let mut pump = Pump::new(pattern, name);
    pump.verify = mode == Mode::Lossless;
    let block = plan.idle_block_size as u64;
    for chunk in 1..=plan.idle_warm_up_chunks as u64 {
        let limit = chunk * block;
        let mut all_written_at: Option<Instant> = None;
        pump.run_until(running, limit, |pump| {
            if pump.written < limit {
                return false;
            }
            let since = *all_written_at.get_or_insert_with(Instant::now);
            pump.read >= limit
                || (mode == Mode::Lossy
                    && pump.last_read_at.unwrap_or(since).max(since).elapsed() > LOSSY_QUIET)
        })?;
    }
    running.check_alive()
}

/// The counters of every process of every pair, in the pair's order of
/// children; `None` for a pair with a process that is gone (the check that
/// follows the window reports it).
fn sample_all(pairs: &[Pair]) -> Vec<Option<Vec<(Role, Sample)>>> {
    pairs
        .iter()
        .map(|pair| {
            pair.running
                .children()
                .map(|(role, child)| {
                    procfs::sample(child.pid())
                        .ok()
                        .map(|sample| (role, sample))
                })
                .collect()
        })
        .collect()
}

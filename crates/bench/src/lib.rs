//! `filebus bench`: measures filebus-compatible programs side by side, and
//! against plain pipes, by driving real processes.
//!
//! Five sections ([`Section`]), each run on fresh processes and a fresh bus
//! directory per run:
//!
//! | section | what | module |
//! |---|---|---|
//! | throughput | lossless MB/s and chunks/s for a sweep of block sizes, every byte checked | `throughput` |
//! | latency | producer stdin → consumer stdout at a low rate, as an HDR histogram | `latency` |
//! | loss | delivered, missing, duplicated, torn and reordered records, rate achieved and CPU per record versus rate, 1 and 4 consumers, in every multicast mode | `loss` |
//! | fan-out | delivered share, rate achieved, CPU and memory versus the number of consumers (up to 64) at one rate | `fanout` |
//! | idle | CPU time, wake-ups and peak RSS of an idle producer and consumer, in a quiet and in a busy directory | `idle` |
//!
//! How a run goes: `plan` says how much to measure; `system` starts the
//! processes (a filebus bus with any compatible program, `cat | cat`, or
//! `tee` into FIFOs) with `process`, in a directory of `scratch`; the
//! benchmark writes the producer's standard input and reads every consumer's
//! standard output through pipes, on one thread with `poll(2)` (`pipes`),
//! either as a checked byte stream (`pump`, `pattern`) or as paced, numbered
//! records (`paced`, `records`); `procfs` reads the idle costs. Repeated
//! runs are summarised by their median (`stats`), printed as tables and
//! written as CSV or JSON (`report`), and drawn as SVG (`plots`, `chart`). The
//! project's own performance targets are judged in `results/targets.md`,
//! not here: the benchmark reports what it measured, for any program.
//!
//! Children cannot outlive the benchmark (`process`); SIGINT, SIGTERM and
//! SIGHUP make it stop them and remove its files before it exits
//! (`interrupt`).
//!
//! **The floor.** Beside the programs it is asked to measure, the benchmark
//! runs one of its own by default ([`floor`], left out with `--no-floor`): a
//! minimal filebus that makes only the protocol's system calls per chunk,
//! run as a process like the others (the `filebus` binary's hidden
//! subcommand `bench-floor`), in every sweep and mode but tee's, its bytes
//! and records checked like theirs. Every table then gives each program's
//! figure beside the floor's at the same point, with the fraction
//! (`report`), so that what is the filesystem's and what is the program's
//! can be told apart: "ours reaches 75% of the floor with 4 KiB chunks".
//!
//! The benchmark measures programs from the outside, as a user would run
//! them; only the floor speaks the bus protocol, and on its own code, not
//! the product's. The benchmark uses the product library (`filebus_core`)
//! only for helpers it shares with the product, so that both behave and say
//! things the same way: `stop::StopFlag`, where the program's signal handler
//! records a stop; `describe_io` for error messages; and
//! `filesystem::name_of` for the filesystem of the scratch directory.

mod chart;
mod fanout;
pub mod floor;
mod idle;
mod interrupt;
mod latency;
mod loss;
mod machine;
mod paced;
mod pattern;
mod pipes;
mod plan;
mod plots;
mod process;
mod procfs;
mod progress;
mod pump;
mod records;
mod report;
mod scratch;
mod stats;
mod system;
mod throughput;

use filebus_core::StopFlag;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use filebus_core::describe_io;
use machine::{find_program, iso8601_utc, load_average};
use plan::{Plan, planned_runs};
use progress::Progress;
use scratch::Scratch;

/// A part of the benchmark, selectable with `--sections`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    /// Lossless throughput for a sweep of block sizes.
    Throughput,
    /// Latency from the producer's input to the consumer's output.
    Latency,
    /// Loss versus data rate in every multicast mode.
    Loss,
    /// Cost versus the number of consumers at one rate.
    FanOut,
    /// CPU time, wake-ups and memory of idle processes.
    Idle,
}

impl Section {
    /// Every section, in the order they run.
    pub const ALL: [Section; 5] = [
        Section::Throughput,
        Section::Latency,
        Section::Loss,
        Section::FanOut,
        Section::Idle,
    ];

    /// The section's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Section::Throughput => "throughput",
            Section::Latency => "latency",
            Section::Loss => "loss",
            Section::FanOut => "fan-out",
            Section::Idle => "idle",
        }
    }
}

/// A filebus-compatible program to measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Implementation {
    /// The name in reports ("ours", "python-0.3.5").
    pub name: String,
    /// The program, run as `PROGRAM --filename F [--back-pressure]
    /// --block-size N [--sleep-interval S] producer|consumer`.
    pub program: PathBuf,
    /// The `--sleep-interval` it gets where latency matters (the latency and
    /// loss sections): 0 for ours (publish as soon as input pauses), the
    /// lowest a polling implementation tolerates otherwise. The throughput
    /// and idle sections leave every program its default.
    pub low_latency_interval: Duration,
    /// A reference to compare against (`--reference`), such as the Python
    /// filebus 0.3.5; marked as such in the report.
    pub is_reference: bool,
    /// Arguments given before the bus options (the floor's subcommand).
    pub arguments: Vec<std::ffi::OsString>,
    /// The protocol floor ([`floor`]): every other implementation's figures
    /// are also given as fractions of its figures at the same point.
    pub is_floor: bool,
}

impl Implementation {
    /// The name of the protocol floor in reports.
    pub const FLOOR: &'static str = "floor";

    /// The protocol floor, run as `PROGRAM bench-floor ...`: `program` is
    /// the `filebus` binary, whose hidden subcommand runs [`floor::run`].
    pub fn floor(program: PathBuf) -> Implementation {
        Implementation {
            name: Implementation::FLOOR.to_owned(),
            program,
            arguments: vec![floor::SUBCOMMAND.into()],
            low_latency_interval: Duration::ZERO,
            is_reference: false,
            is_floor: true,
        }
    }

    /// Parses `[NAME=]PROGRAM`; `default_name` is used without `NAME=`.
    /// (A `=` after a `/` belongs to the program path.)
    pub fn parse(
        spec: &str,
        default_name: &str,
        low_latency_interval: Duration,
    ) -> Result<Implementation, String> {
        let (name, program) = match spec.split_once('=') {
            Some((name, program)) if !name.contains('/') => (name, program),
            _ => (default_name, spec),
        };
        if name.trim().is_empty() {
            return Err(format!("{spec:?}: the implementation name is empty"));
        }
        if program.trim().is_empty() {
            return Err(format!("{spec:?}: the program is empty"));
        }
        Ok(Implementation {
            name: name.to_owned(),
            program: PathBuf::from(program),
            arguments: Vec::new(),
            low_latency_interval,
            is_reference: false,
            is_floor: false,
        })
    }
}

/// Everything `filebus bench` was asked to do.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The programs to measure, in the order of the report.
    pub implementations: Vec<Implementation>,
    /// Also measure `cat | cat` and `tee` into named FIFOs.
    pub baselines: bool,
    /// Fewer points, smaller data, shorter windows (about a minute).
    pub quick: bool,
    /// The sections to run, in this order.
    pub sections: Vec<Section>,
    /// Repetitions of each throughput, loss and fan-out point (default 5, quick 3).
    pub repeat: Option<u32>,
    /// Write the results to these files, each as CSV or JSON according to
    /// its extension.
    pub outputs: Vec<PathBuf>,
    /// Write SVG plots into this directory (created if missing).
    pub plots: Option<PathBuf>,
    /// Where to create the scratch directory (default: the system's temporary directory).
    pub scratch_parent: Option<PathBuf>,
}

/// What can stop the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A signal asked the benchmark to stop; it cleaned up first.
    #[error("interrupted by signal {0}; stopped every child and removed the scratch directory")]
    Interrupted(i32),
    /// A system call the benchmark needs failed.
    #[error("{context}: {}", describe_io(source))]
    Io {
        /// What the benchmark was doing.
        context: String,
        /// What the kernel said.
        #[source]
        source: std::io::Error,
    },
    /// A measured program misbehaved: lost or changed bytes in lossless
    /// mode, failed, or stalled. Recorded against its run; the benchmark
    /// goes on with the next point.
    #[error("{0}")]
    Failed(String),
    /// The options cannot work.
    #[error("{0}")]
    Usage(String),
}

impl BenchError {
    /// An I/O error with what the benchmark was doing.
    pub fn io(context: impl Into<String>, source: impl Into<std::io::Error>) -> BenchError {
        BenchError::Io {
            context: context.into(),
            source: source.into(),
        }
    }

    /// The exit status for this error: 128 + the signal for an interruption.
    pub fn exit_code(&self) -> u8 {
        match self {
            BenchError::Interrupted(signal) => u8::try_from(128 + signal).unwrap_or(130),
            BenchError::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// A run that failed, recorded instead of a measurement.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub section: Section,
    pub system: String,
    /// Which point ("block size 4096", "10000 records/s x4").
    pub point: String,
    pub message: String,
}

/// Facts about the machine and the run, printed with the results.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    /// When the benchmark started, ISO 8601 UTC.
    pub started: String,
    pub cpus: usize,
    pub kernel: String,
    /// The filesystem type of the scratch directory.
    pub filesystem: String,
    pub scratch_parent: PathBuf,
    pub quick: bool,
    pub plan: Plan,
    pub implementations: Vec<Implementation>,
    pub baselines: bool,
    pub sections: Vec<Section>,
    /// How long the whole benchmark took, in seconds.
    pub seconds: f64,
    /// The 1-minute load average when the benchmark started and ended: how
    /// busy the machine was with other work.
    pub load: (f64, f64),
}

impl Meta {
    /// The protocol floor, if it was measured.
    pub(crate) fn floor(&self) -> Option<&Implementation> {
        self.implementations
            .iter()
            .find(|implementation| implementation.is_floor)
    }
}

/// Everything measured.
#[derive(Debug)]
pub(crate) struct Results {
    pub meta: Meta,
    pub throughput: Vec<throughput::Point>,
    pub latency: Vec<latency::Outcome>,
    pub loss: Vec<loss::Point>,
    /// The fan-out section's points: one rate, a consumer count each.
    pub fanout: Vec<loss::Point>,
    pub idle: Vec<idle::Measurement>,
    pub failures: Vec<Failure>,
}

impl Results {
    /// Sorts out the outcome of one run: its value, or `None` after recording
    /// a failed run (the benchmark goes on with the next point), or the error
    /// that stops the benchmark (an interruption, for one).
    pub fn settle<T>(
        &mut self,
        outcome: Result<T, BenchError>,
        section: Section,
        system: &str,
        point: impl FnOnce() -> String,
    ) -> Result<Option<T>, BenchError> {
        match outcome {
            Ok(value) => Ok(Some(value)),
            Err(BenchError::Failed(message)) => {
                self.failures.push(Failure {
                    section,
                    system: system.to_owned(),
                    point: point(),
                    message,
                });
                Ok(None)
            }
            Err(other) => Err(other),
        }
    }
}

/// What every section needs.
pub(crate) struct Context<'a> {
    pub scratch: &'a Scratch,
    pub plan: &'a Plan,
    pub implementations: &'a [Implementation],
    pub baselines: bool,
    pub progress: Progress,
}

impl<'a> Context<'a> {
    /// The systems of one point of a sweep: a bus set up by `setup` for each
    /// implementation, then `baseline` unless baselines are left out.
    pub(crate) fn systems(
        &self,
        setup: impl Fn(&'a Implementation) -> system::BusSetup<'a>,
        baseline: system::System<'a>,
    ) -> Vec<system::System<'a>> {
        let mut systems: Vec<system::System<'a>> = self
            .implementations
            .iter()
            .map(|implementation| system::System::Bus(setup(implementation)))
            .collect();
        if self.baselines {
            systems.push(baseline);
        }
        systems
    }

    /// The systems of one point of a sweep in several modes: a bus set up
    /// by `setup` for each implementation and each of its `modes`, then
    /// `baseline` unless baselines are left out.
    pub(crate) fn systems_in_modes(
        &self,
        modes: impl Fn(&'a Implementation) -> Vec<system::Mode>,
        setup: impl Fn(&'a Implementation, system::Mode) -> system::BusSetup<'a>,
        baseline: system::System<'a>,
    ) -> Vec<system::System<'a>> {
        let mut systems: Vec<system::System<'a>> = self
            .implementations
            .iter()
            .flat_map(|implementation| {
                modes(implementation)
                    .into_iter()
                    .map(|mode| system::System::Bus(setup(implementation, mode)))
                    .collect::<Vec<_>>()
            })
            .collect();
        if self.baselines {
            systems.push(baseline);
        }
        systems
    }
}

/// Runs the benchmark: measures, prints the tables on standard output, and
/// writes the requested CSV/JSON file and SVG plots.
///
/// On SIGINT, SIGTERM or SIGHUP it stops every child, removes its scratch
/// directory and returns [`BenchError::Interrupted`].
/// `stop` is where the program's handler of SIGINT, SIGTERM and SIGHUP
/// records them; SIGPIPE must be ignored.
pub fn run(options: &BenchOptions, stop: StopFlag) -> Result<(), BenchError> {
    validate(options)?;
    interrupt::stop_on(stop);
    let results = measure(options)?;
    publish(options, &results)
}

/// Runs the sections; every child is stopped and the scratch directory
/// removed when this returns, whether it succeeds or not.
fn measure(options: &BenchOptions) -> Result<Results, BenchError> {
    let started_at = std::time::Instant::now();
    let plan = Plan::new(options.quick, options.repeat);
    let scratch_parent = options
        .scratch_parent
        .clone()
        .unwrap_or_else(std::env::temp_dir);
    let scratch = Scratch::create(&scratch_parent)?;
    let baselines = options.baselines && baselines_available();
    let mut sections: Vec<Section> = Vec::new();
    for section in &options.sections {
        if !sections.contains(section) {
            sections.push(*section);
        }
    }
    let mut results = Results {
        meta: Meta {
            started: iso8601_utc(SystemTime::now()),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|text| text.trim().to_owned())
                .unwrap_or_else(|_| "unknown".into()),
            filesystem: filebus_core::filesystem_name(scratch.root()),
            scratch_parent,
            quick: options.quick,
            plan: plan.clone(),
            implementations: options.implementations.clone(),
            baselines,
            sections: sections.clone(),
            seconds: 0.0,
            load: (load_average(), 0.0),
        },
        throughput: Vec::new(),
        latency: Vec::new(),
        loss: Vec::new(),
        fanout: Vec::new(),
        idle: Vec::new(),
        failures: Vec::new(),
    };
    let total_runs = sections
        .iter()
        .map(|section| planned_runs(*section, &plan, &options.implementations, baselines))
        .sum();
    let mut context = Context {
        scratch: &scratch,
        plan: &plan,
        implementations: &options.implementations,
        baselines,
        progress: Progress::new(total_runs),
    };
    for section in &sections {
        match section {
            Section::Throughput => throughput::run(&mut context, &mut results)?,
            Section::Latency => latency::run(&mut context, &mut results)?,
            Section::Loss => loss::run(&mut context, &mut results)?,
            Section::FanOut => fanout::run(&mut context, &mut results)?,
            Section::Idle => idle::run(&mut context, &mut results)?,
        }
    }
    context.progress.finish();
    results.meta.seconds = started_at.elapsed().as_secs_f64();
    results.meta.load.1 = load_average();
    Ok(results)
}

/// Prints the tables and writes the requested files.
fn publish(options: &BenchOptions, results: &Results) -> Result<(), BenchError> {
    let table = report::table(results);
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(table.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|error| BenchError::io("cannot write the results to standard output", error))?;
    for path in &options.outputs {
        let text = match output_format(path)? {
            OutputFormat::Csv => report::csv(results),
            OutputFormat::Json => report::json(results)?,
        };
        std::fs::write(path, text)
            .map_err(|error| BenchError::io(format!("cannot write {}", path.display()), error))?;
    }
    if let Some(dir) = &options.plots {
        plots::write_plots(results, dir)?;
    }
    Ok(())
}

/// Checks the options before anything is started.
fn validate(options: &BenchOptions) -> Result<(), BenchError> {
    if options.implementations.is_empty() {
        return Err(BenchError::Usage("no implementation to measure".into()));
    }
    let mut names: Vec<&str> = options
        .implementations
        .iter()
        .map(|implementation| implementation.name.as_str())
        .collect();
    names.sort_unstable();
    if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(BenchError::Usage(format!(
            "two implementations are named {:?}: name them with NAME=PROGRAM",
            pair[0]
        )));
    }
    if names
        .iter()
        .any(|name| *name == system::CAT_PIPE || *name == system::TEE_FIFOS)
    {
        return Err(BenchError::Usage(format!(
            "the names {:?} and {:?} are taken by the baselines",
            system::CAT_PIPE,
            system::TEE_FIFOS
        )));
    }
    for implementation in &options.implementations {
        if find_program(&implementation.program).is_none() {
            return Err(BenchError::Usage(format!(
                "{}: program {} not found or not executable",
                implementation.name,
                implementation.program.display()
            )));
        }
    }
    if options.sections.is_empty() {
        return Err(BenchError::Usage("no section to run".into()));
    }
    // Fail now rather than after ten minutes of measuring.
    for path in &options.outputs {
        output_format(path)?;
        let parent = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty());
        if parent.is_some_and(|parent| !parent.is_dir()) {
            return Err(BenchError::Usage(format!(
                "--output {}: the directory does not exist",
                path.display()
            )));
        }
    }
    if let Some(dir) = &options.plots {
        std::fs::create_dir_all(dir)
            .map_err(|error| BenchError::io(format!("cannot create {}", dir.display()), error))?;
    }
    Ok(())
}

enum OutputFormat {
    Csv,
    Json,
}

fn output_format(path: &Path) -> Result<OutputFormat, BenchError> {
    match path.extension().and_then(|ext| ext.to_str()) {
        Some(ext) if ext.eq_ignore_ascii_case("csv") => Ok(OutputFormat::Csv),
        Some(ext) if ext.eq_ignore_ascii_case("json") => Ok(OutputFormat::Json),
        _ => Err(BenchError::Usage(format!(
            "--output {}: the file name must end in .csv or .json",
            path.display()
        ))),
    }
}

/// Whether `cat` and `tee` can be found; a warning if not.
fn baselines_available() -> bool {
    let missing: Vec<&str> = ["cat", "tee"]
        .into_iter()
        .filter(|name| find_program(Path::new(name)).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    eprintln!(
        "filebus: warning: {} not found in PATH: no baselines",
        missing.join(" and ")
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implementation_specs_parse_with_and_without_a_name() {
        let zero = Duration::ZERO;
        let named = Implementation::parse("py=/opt/bin/filebus", "x", zero).expect("valid");
        assert_eq!(
            (named.name.as_str(), named.program.as_path()),
            ("py", Path::new("/opt/bin/filebus"))
        );
        let plain = Implementation::parse("/opt/a=b/filebus", "ours", zero).expect("valid");
        assert_eq!(
            (plain.name.as_str(), plain.program.as_path()),
            ("ours", Path::new("/opt/a=b/filebus"))
        );
        assert!(Implementation::parse("=prog", "x", zero).is_err());
        assert!(Implementation::parse("name=", "x", zero).is_err());
    }
}

//! The systems under test, each a way to move bytes from one writer to one
//! or more readers:
//!
//! - a filebus bus: `PROGRAM --filename F ... consumer` (one or more) and
//!   `PROGRAM --filename F ... producer`, for any filebus-compatible program,
//!   in one of its delivery modes ([`Mode`]);
//! - `cat | cat`: the plain pipe, the bound for throughput and latency;
//! - `tee FIFO...` with one `cat FIFO` per consumer: multicast through named
//!   pipes (lossless, so a slow reader slows everyone down).
//!
//! The benchmark writes to the first process's standard input through a pipe
//! and reads every consumer's standard output through its own pipe.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::process::{Child, Exit};
use super::scratch::{self, Scratch};
use super::{BenchError, Implementation};
use super::{pipes, procfs};

/// How a bus delivers chunks: lossy multicast (the default), with or
/// without a history and named consumers, or lossless unicast
/// (`--back-pressure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The default: consumers may miss chunks.
    Lossy,
    /// `--back-pressure`: every chunk is taken by exactly one consumer.
    Lossless,
    /// `producer --history N` with unnamed consumers: lossy, but a consumer
    /// that falls behind catches up from the last N chunks.
    History(u64),
    /// `producer --history N` with `consumer --name`: lossless multicast,
    /// the producer held back by the slowest consumer.
    Named(u64),
}

impl Mode {
    /// "lossy", "lossless", "history" or "named".
    pub fn name(self) -> &'static str {
        match self {
            Mode::Lossy => "lossy",
            Mode::Lossless => "lossless",
            Mode::History(_) => "history",
            Mode::Named(_) => "named",
        }
    }

    /// The history depth the producer keeps, if any.
    pub fn history_depth(self) -> Option<u64> {
        match self {
            Mode::History(depth) | Mode::Named(depth) => Some(depth),
            Mode::Lossy | Mode::Lossless => None,
        }
    }

    /// Whether the producer waits for consumers instead of letting them
    /// miss chunks.
    pub fn holds_producer_back(self) -> bool {
        matches!(self, Mode::Lossless | Mode::Named(_))
    }
}

/// How a filebus bus is run.
#[derive(Debug, Clone)]
pub(crate) struct BusSetup<'a> {
    pub implementation: &'a Implementation,
    pub mode: Mode,
    /// `--block-size`; `None` leaves the program's default.
    pub block_size: Option<usize>,
    /// `--sleep-interval`; `None` leaves the program's default.
    pub sleep_interval: Option<Duration>,
    pub consumers: usize,
}

/// A system under test.
#[derive(Debug, Clone)]
pub(crate) enum System<'a> {
    /// A filebus producer and its consumers.
    Bus(BusSetup<'a>),
    /// `cat | cat`.
    CatPipe,
    /// `tee FIFO_1 ... FIFO_n` and `cat FIFO_i` for each consumer.
    TeeFifos { consumers: usize },
}

/// "ours lossy", "ours named", "tee+fifos": a system's name with its mode.
pub(crate) fn label(system: &str, mode: Option<Mode>) -> String {
    match mode {
        Some(mode) => format!("{system} {}", mode.name()),
        None => system.to_owned(),
    }
}

/// What a child does in its system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Reads the benchmark's input.
    Producer,
    /// Writes one of the outputs the benchmark reads.
    Consumer,
}

/// Name of the plain pipe baseline.
pub(crate) const CAT_PIPE: &str = "cat|cat";
/// Name of the named-pipe multicast baseline.
pub(crate) const TEE_FIFOS: &str = "tee+fifos";

impl System<'_> {
    /// The name under which results are reported.
    pub(crate) fn name(&self) -> &str {
        match self {
            System::Bus(setup) => &setup.implementation.name,
            System::CatPipe => CAT_PIPE,
            System::TeeFifos { .. } => TEE_FIFOS,
        }
    }

    /// The delivery mode of a bus; `None` for the pipe baselines.
    pub(crate) fn mode(&self) -> Option<Mode> {
        match self {
            System::Bus(setup) => Some(setup.mode),
            System::CatPipe | System::TeeFifos { .. } => None,
        }
    }

    /// The name and mode, as in tables and legends: "ours lossy",
    /// "ours named", "tee+fifos".
    pub(crate) fn label(&self) -> String {
        label(self.name(), self.mode())
    }

    /// Whether the consumers end by themselves once the input ends (not so
    /// for plain lossy filebus consumers, which never exit on their own; on
    /// a bus with history they end at the end-of-stream chunk).
    pub(crate) fn consumers_exit_on_their_own(&self) -> bool {
        !matches!(self, System::Bus(setup) if setup.mode == Mode::Lossy)
    }

    /// Starts the system in a fresh directory of `scratch`.
    pub(crate) fn start(&self, scratch: &Scratch) -> Result<Running, BenchError> {
        let dir = scratch.run_dir()?;
        let mut running = Running {
            input: None,
            outputs: Vec::new(),
            children: Vec::new(),
            dir,
        };
        match self {
            System::Bus(setup) => running.start_bus(scratch, setup)?,
            System::CatPipe => running.start_cat_pipe(scratch)?,
            System::TeeFifos { consumers } => running.start_tee(scratch, *consumers)?,
        }
        if let Some(input) = &running.input {
            pipes::set_nonblocking(input)?;
        }
        for output in &running.outputs {
            pipes::set_nonblocking(output)?;
        }
        Ok(running)
    }
}

/// A started system: our ends of its pipes and its children. Dropping it
/// kills the children and removes the run directory.
#[derive(Debug)]
pub(crate) struct Running {
    input: Option<OwnedFd>,
    /// One output per consumer, in order.
    pub outputs: Vec<OwnedFd>,
    children: Vec<(Role, Child)>,
    dir: PathBuf,
}

impl Running {
    /// Our end of the producer's standard input, until [`Running::close_input`].
    pub(crate) fn input(&self) -> Option<&OwnedFd> {
        self.input.as_ref()
    }

    /// Closes the producer's standard input: end of input.
    pub(crate) fn close_input(&mut self) {
        self.input = None;
    }

    /// The run's directory: the bus's, for a bus.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The children with their roles.
    pub(crate) fn children(&self) -> impl Iterator<Item = (Role, &Child)> {
        self.children.iter().map(|(role, child)| (*role, child))
    }

    /// Fails if any child has ended already.
    pub(crate) fn check_alive(&mut self) -> Result<(), BenchError> {
        for (_, child) in &mut self.children {
            if let Some(exit) = child.try_wait()? {
                return Err(BenchError::Failed(format!(
                    "{} too early",
                    child.describe_exit(&exit)
                )));
            }
        }
        Ok(())
    }

    /// ": ours producer exited with status 1 (stderr: ...)" for the first
    /// child that has ended, to complete a failure message; or nothing.
    pub(crate) fn exit_details(&mut self) -> String {
        match self.check_alive() {
            Err(BenchError::Failed(message)) => format!(": {message}"),
            _ => String::new(),
        }
    }

    /// Ends the run after the input was closed: waits up to `timeout` for
    /// every child that should end by itself and checks that it succeeded;
    /// then stops the others (lossy consumers).
    pub(crate) fn finish(
        &mut self,
        consumers_exit: bool,
        timeout: Duration,
    ) -> Result<(), BenchError> {
        self.close_input();
        let mut failure = None;
        for (role, child) in &mut self.children {
            if *role == Role::Consumer && !consumers_exit {
                continue;
            }
            match child.wait_timeout(timeout)? {
                Some(exit) if exit.success() => {}
                Some(exit) => {
                    failure.get_or_insert_with(|| child.describe_exit(&exit));
                }
                None => {
                    failure.get_or_insert_with(|| {
                        format!("{} did not exit within {timeout:?}", child.label())
                    });
                }
            }
        }
        for (_, child) in &mut self.children {
            child.terminate(Duration::from_secs(1));
        }
        match failure {
            Some(message) => Err(BenchError::Failed(message)),
            None => Ok(()),
        }
    }

    /// The CPU time (ns) the children in `role` have used so far, summed
    /// over them and their threads, as `/proc` tells; `None` if a child
    /// cannot be read (it ended). See [`Running::cpu_ns_at_exit`].
    pub(crate) fn cpu_ns_now(&self, role: Role) -> Option<u64> {
        self.children
            .iter()
            .filter(|(child_role, _)| *child_role == role)
            .map(|(_, child)| procfs::sample(child.pid()).ok().map(|sample| sample.cpu_ns))
            .sum()
    }

    /// The CPU time (ns) of the children in `role` over their whole lives,
    /// once every one of them is reaped.
    pub(crate) fn cpu_ns_at_exit(&self, role: Role) -> Option<u64> {
        self.children
            .iter()
            .filter(|(child_role, _)| *child_role == role)
            .map(|(_, child)| child.exit().map(|exit| exit.cpu_ns))
            .sum()
    }

    /// The peak RSS (KiB) of the reaped children in `role`, added up: what
    /// they held at most, if their peaks coincided.
    pub(crate) fn peak_rss_sum_kib(&self, role: Role) -> u64 {
        self.children
            .iter()
            .filter(|(child_role, _)| *child_role == role)
            .filter_map(|(_, child)| child.exit().map(|exit| exit.max_rss_kib))
            .sum()
    }

    /// The largest peak RSS (KiB) among the reaped children in `role`.
    pub(crate) fn peak_rss_kib(&self, role: Role) -> Option<u64> {
        self.children
            .iter()
            .filter(|(child_role, _)| *child_role == role)
            .filter_map(|(_, child)| child.exit().map(|exit: Exit| exit.max_rss_kib))
            .max()
    }

    fn spawn(
        &mut self,
        scratch: &Scratch,
        role: Role,
        label: String,
        command: Command,
        stdin: Stdio,
        stdout: Stdio,
    ) -> Result<(), BenchError> {
        let log = scratch.log_path(&self.dir, &label);
        let child = Child::spawn(label, command, stdin, stdout, log)?;
        self.children.push((role, child));
        Ok(())
    }

    fn start_bus(&mut self, scratch: &Scratch, setup: &BusSetup<'_>) -> Result<(), BenchError> {
        let bus = self.dir.join("bus");
        let name = &setup.implementation.name;
        for number in 1..=setup.consumers {
            let (read, write) = pipes::pipe()?;
            self.outputs.push(read);
            self.spawn(
                scratch,
                Role::Consumer,
                format!("{name} consumer {number}"),
                bus_command(setup, &bus, Side::Consumer(number)),
                Stdio::null(),
                Stdio::from(write),
            )?;
        }
        let (read, write) = pipes::pipe()?;
        self.input = Some(write);
        self.spawn(
            scratch,
            Role::Producer,
            format!("{name} producer"),
            bus_command(setup, &bus, Side::Producer),
            Stdio::from(read),
            Stdio::null(),
        )
    }

    fn start_cat_pipe(&mut self, scratch: &Scratch) -> Result<(), BenchError> {
        let (input_read, input_write) = pipes::pipe()?;
        let (middle_read, middle_write) = pipes::pipe()?;
        let (output_read, output_write) = pipes::pipe()?;
        self.input = Some(input_write);
        self.outputs.push(output_read);
        self.spawn(
            scratch,
            Role::Producer,
            "first cat".into(),
            Command::new("cat"),
            Stdio::from(input_read),
            Stdio::from(middle_write),
        )?;
        self.spawn(
            scratch,
            Role::Consumer,
            "second cat".into(),
            Command::new("cat"),
            Stdio::from(middle_read),
            Stdio::from(output_write),
        )
    }

    fn start_tee(&mut self, scratch: &Scratch, consumers: usize) -> Result<(), BenchError> {
        let mut fifos = Vec::new();
        for number in 1..=consumers {
            let fifo = self.dir.join(format!("fifo-{number}"));
            make_fifo(&fifo)?;
            let (read, write) = pipes::pipe()?;
            self.outputs.push(read);
            let mut cat = Command::new("cat");
            cat.arg(&fifo);
            self.spawn(
                scratch,
                Role::Consumer,
                format!("cat of fifo {number}"),
                cat,
                Stdio::null(),
                Stdio::from(write),
            )?;
            fifos.push(fifo);
        }
        let (read, write) = pipes::pipe()?;
        self.input = Some(write);
        let mut tee = Command::new("tee");
        tee.args(&fifos);
        self.spawn(
            scratch,
            Role::Producer,
            "tee".into(),
            tee,
            Stdio::from(read),
            Stdio::null(),
        )
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.input = None;
        for (_, child) in &mut self.children {
            child.kill();
        }
        self.children.clear();
        scratch::remove_run_dir(&self.dir);
    }
}

/// Which side of a bus a command runs.
#[derive(Debug, Clone, Copy)]
enum Side {
    Producer,
    /// The consumer with this number, from 1.
    Consumer(usize),
}

/// `PROGRAM --filename BUS [--back-pressure] [--block-size N] [--sleep-interval S] SIDE`,
/// with `--history N` for the producer of a bus with history and `--name
/// consumer-I` for named consumers.
fn bus_command(setup: &BusSetup<'_>, bus: &Path, side: Side) -> Command {
    let mut command = Command::new(&setup.implementation.program);
    command.args(&setup.implementation.arguments);
    command.arg("--filename").arg(bus);
    if setup.mode == Mode::Lossless {
        command.arg("--back-pressure");
    }
    if let Some(block_size) = setup.block_size {
        command.arg("--block-size").arg(block_size.to_string());
    }
    if let Some(interval) = setup.sleep_interval {
        command
            .arg("--sleep-interval")
            .arg(format_seconds(interval));
    }
    match side {
        Side::Producer => {
            command.arg("producer");
            if let Some(depth) = setup.mode.history_depth() {
                command.arg("--history").arg(depth.to_string());
            }
        }
        Side::Consumer(number) => {
            command.arg("consumer");
            if let Mode::Named(_) = setup.mode {
                command.arg("--name").arg(format!("consumer-{number}"));
            }
        }
    }
    command
}

/// Seconds as both our parser and the reference's accept them ("0", "0.001").
pub(crate) fn format_seconds(duration: Duration) -> String {
    if duration.is_zero() {
        "0".into()
    } else {
        format!("{}", duration.as_secs_f64())
    }
}

fn make_fifo(path: &Path) -> Result<(), BenchError> {
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        path,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .map_err(|errno| BenchError::io(format!("cannot create FIFO {}", path.display()), errno))
}

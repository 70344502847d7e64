//! The `filebus` command: parse the command line, run, map errors to exit codes.

mod cli;
mod logging;
mod signals;

use std::process::ExitCode;
use std::sync::PoisonError;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, Parser};

use cli::{BenchArgs, Cli, Command, FloorCli};
use filebus_bench::BenchError;
use filebus_core::{ConsumerOptions, Error, ProducerOptions, RateMeter, Report, SharedStats};

/// Exit status for a runtime failure.
const EXIT_FAILURE: u8 = 1;
/// Exit status for a bad command line.
const EXIT_USAGE: u8 = 2;

pub(crate) fn main() -> ExitCode {
    if let Err(error) = signals::die_quietly_on_broken_pipe() {
        return report(Err(Error::stream("cannot set up signals", error)));
    }
    // The benchmark's protocol floor is a command of its own, hidden from
    // the command line's help, manual page and completions.
    if std::env::args_os().nth(1).as_deref() == Some(filebus_bench::floor::SUBCOMMAND.as_ref()) {
        return match FloorCli::try_parse_from(std::env::args_os().skip(1)) {
            Ok(floor) => run_floor(&floor.options()),
            Err(error) => report_usage_error(error),
        };
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return report_usage_error(error),
    };
    logging::init(cli.verbose, cli.quiet);
    match &cli.command {
        Command::Bench(args) => run_bench(args),
        Command::Stat {
            file,
            watch,
            count,
            json,
        } => match file.as_ref().or(cli.filename.as_ref()) {
            Some(path) => report(run_stat(path, *watch, *count, *json)),
            None => usage_error("stat needs a bus FILE (or --filename FILE)"),
        },
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "filebus",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Man => report(
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .map_err(|error| Error::stream("cannot write the manual page", error)),
        ),
        Command::Producer { .. } => match cli.producer_options() {
            Ok(options) => report(run_producer(options)),
            Err(message) => usage_error(&message),
        },
        Command::Consumer { stats, .. } => match cli.consumer_options() {
            Ok(options) => report(run_consumer(options, *stats)),
            Err(message) => usage_error(&message),
        },
    }
}

/// Runs a producer of standard input that stops cleanly on SIGINT, SIGTERM
/// and SIGHUP.
fn run_producer(mut options: ProducerOptions) -> Result<(), Error> {
    let setup = |error| Error::stream("cannot set up signals", error);
    signals::report_file_size_limit_as_error().map_err(setup)?;
    options.bus.stop = signals::catch_termination().map_err(setup)?;
    filebus_core::produce(&options, std::io::stdin())
}

/// Runs a consumer onto standard output; with `--stats`, one that reports
/// on SIGUSR1 and before it ends.
fn run_consumer(mut options: ConsumerOptions, stats: bool) -> Result<(), Error> {
    if stats {
        let setup = |error| Error::stream("cannot set up signals", error);
        let shared = SharedStats::default();
        // Before any other thread exists (see report_stats_on_signals).
        signals::report_stats_on_signals(shared.clone()).map_err(setup)?;
        // A closed output then ends the run through an error, after which
        // the summary is printed, before the process dies of SIGPIPE.
        signals::report_broken_pipe_as_error().map_err(setup)?;
        options.stats = Some(shared);
    }
    let outcome = filebus_core::consume(&options, std::io::stdout());
    // A consumer that never got to its bus (one that cannot be opened, say)
    // has nothing to sum up: its error is the one line it prints.
    if let Some(stats) = &options.stats
        && stats.lock().unwrap_or_else(PoisonError::into_inner).began()
    {
        signals::print_stats(stats);
    }
    outcome
}

/// The exit status for `outcome`, with the error printed as one line.
fn report(outcome: Result<(), Error>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::BrokenPipe) => {
            // The reader went away: end as `cat` does, by SIGPIPE (141).
            signals::die_by(libc::SIGPIPE);
            ExitCode::from(128u8 + libc::SIGPIPE as u8)
        }
        Err(Error::Terminated { signal }) => {
            // Temporary files are gone (dropped on the way here); end the
            // way the signal would have, for the shell's sake.
            signals::die_by(signal);
            ExitCode::from(128u8.saturating_add(signal as u8))
        }
        Err(error) => {
            eprintln!("filebus: error: {}", Report(&error));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("filebus: error: {message}");
    ExitCode::from(EXIT_USAGE)
}

/// Runs `filebus stat`.
fn run_stat(
    path: &std::path::Path,
    watch: bool,
    count: Option<u64>,
    json: bool,
) -> Result<(), Error> {
    if watch {
        let mut meter = RateMeter::new(path)?;
        loop {
            let rate = meter.next_second()?;
            match json {
                true => println!("{}", rate.to_json()),
                false => println!("{}", rate.to_text()),
            }
            if count.is_some_and(|count| rate.second >= count) {
                return Ok(());
            }
        }
    }
    let status = filebus_core::bus_status(path)?;
    if json {
        println!("{}", status.to_json(path));
    } else {
        print!("{}", status.to_text(path));
    }
    Ok(())
}

/// Runs `filebus bench`: 0 on success, 2 for bad options, 128 + the signal
/// when interrupted, 1 otherwise.
fn run_bench(args: &BenchArgs) -> ExitCode {
    let outcome = args
        .options()
        .map_err(BenchError::Usage)
        .and_then(|options| {
            let setup = |error| BenchError::io("cannot install signal handlers", error);
            let stop = signals::catch_termination().map_err(setup)?;
            signals::report_broken_pipe_as_error().map_err(setup)?;
            filebus_bench::run(&options, stop)
        });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("filebus: error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

/// Runs the benchmark's protocol floor (`filebus bench-floor`), a process
/// the benchmark starts and stops: no signal handlers, nothing to clean up
/// (its chunks are anonymous files until published).
fn run_floor(options: &filebus_bench::floor::FloorOptions) -> ExitCode {
    match filebus_bench::floor::run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("filebus: error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

/// Prints help or version in full, and any other parse error as one line.
fn report_usage_error(error: clap::Error) -> ExitCode {
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        let _ = error.print();
        return ExitCode::SUCCESS;
    }
    let rendered = error.render().to_string();
    let first_line = rendered.lines().next().unwrap_or("invalid command line");
    let message = first_line.strip_prefix("error: ").unwrap_or(first_line);
    let hint = match (error.kind(), error.get(ContextKind::InvalidArg)) {
        (ErrorKind::UnknownArgument, Some(ContextValue::String(argument))) => {
            where_option_belongs(argument)
        }
        _ => None,
    };
    match hint {
        Some(hint) => eprintln!("filebus: error: {message}: {hint}"),
        None => eprintln!("filebus: error: {message} (see filebus --help)"),
    }
    ExitCode::from(EXIT_USAGE)
}

/// Where the option `argument` (`--lines`, `-z`, `--lines=x`) belongs, if it
/// is one of ours: said when it was given on the wrong side of the
/// subcommand.
fn where_option_belongs(argument: &str) -> Option<String> {
    let name = argument.split('=').next().unwrap_or(argument);
    let is_named = |arg: &clap::Arg| {
        let long = name.strip_prefix("--").is_some_and(|long| {
            arg.get_long() == Some(long)
                || arg
                    .get_all_aliases()
                    .is_some_and(|aliases| aliases.contains(&long))
        });
        let short = name.strip_prefix('-').is_some_and(|short| {
            let mut chars = short.chars();
            chars.next().is_some_and(|c| arg.get_short() == Some(c)) && chars.next().is_none()
        });
        long || short
    };
    let command = Cli::command();
    if command
        .get_arguments()
        .any(|arg| !arg.is_global_set() && is_named(arg))
    {
        return Some(format!(
            "{argument} is an option of `filebus` itself: put it before the subcommand"
        ));
    }
    command
        .get_subcommands()
        .find(|subcommand| subcommand.get_arguments().any(is_named))
        .map(|subcommand| {
            let subcommand = subcommand.get_name();
            format!(
                "{argument} is an option of `filebus {subcommand}`: put it after `{subcommand}`"
            )
        })
}

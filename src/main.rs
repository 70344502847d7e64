//! The `filebus` command: parse the command line, run, map errors to exit codes.

mod cli;
mod logging;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

use cli::{BenchArgs, Cli, Command};
use filebus_bench::BenchError;
use filebus_core::{Error, signals};

/// Exit status for a runtime failure.
const EXIT_FAILURE: u8 = 1;
/// Exit status for a bad command line.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    signals::die_quietly_on_broken_pipe();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return report_usage_error(error),
    };
    logging::init(cli.verbose);
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
        Command::Producer { blocking_read, .. } => match cli.options() {
            Ok(options) => report(filebus_core::producer::run(&options, *blocking_read)),
            Err(message) => usage_error(message),
        },
        Command::Consumer { .. } => match cli.options() {
            Ok(options) => report(filebus_core::consumer::run(&options)),
            Err(message) => usage_error(message),
        },
    }
}

/// The exit status for `outcome`, with the error printed as one line.
fn report(outcome: Result<(), Error>) -> ExitCode {
    match outcome {
        Ok(()) | Err(Error::BrokenPipe) => ExitCode::SUCCESS,
        Err(Error::Terminated { signal }) => {
            // Temporary files are gone (dropped on the way here); end the
            // way the signal would have, for the shell's sake.
            signals::die_by(signal);
            ExitCode::from(128u8.saturating_add(signal as u8))
        }
        Err(error) => {
            eprintln!("filebus: error: {error}");
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
        return filebus_core::inspect::watch(path, json, count);
    }
    let status = filebus_core::inspect::status(path)?;
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
        .and_then(|options| filebus_bench::run(&options));
    match outcome {
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
    eprintln!("filebus: error: {message} (see filebus --help)");
    ExitCode::from(EXIT_USAGE)
}

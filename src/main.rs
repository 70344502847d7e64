//! The `filebus` command: parse the command line, run, map errors to exit codes.

mod cli;
mod logging;

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

use cli::{Cli, Command};
use filebus::{Error, signals};

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
    let options = match cli.options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("filebus: error: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let outcome = match cli.command {
        Command::Producer { blocking_read, .. } => filebus::producer::run(&options, blocking_read),
        Command::Consumer => filebus::consumer::run(&options),
    };
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

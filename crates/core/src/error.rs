//! The library's error type.
//!
//! Every error carries the context a user needs to act on it ("cannot create
//! lock file /tmp/bus.lock: Permission denied") and is printed once, on one
//! line, by `main`. An error's own message says what filebus was doing; what
//! the kernel said is its [`source`](std::error::Error::source), never
//! repeated in the message: [`Report`] puts the two on one line.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Everything that can stop a producer or a consumer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call on a named file failed.
    #[error("{action} {}", path.display())]
    File {
        /// What filebus was doing, phrased to precede the path ("cannot open lock file").
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// A system call on standard input or output failed.
    #[error("{action}")]
    Stream {
        /// What filebus was doing ("cannot read standard input").
        action: &'static str,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// The path given with `--filename` cannot be a bus.
    #[error("{}: {problem}", path.display())]
    BadBusPath {
        /// The path as the user gave it.
        path: PathBuf,
        /// Why it cannot be used ("is a directory, not a bus file").
        problem: String,
    },
    /// The reader of standard output went away: the caller ends quietly, like `cat`.
    #[error("standard output was closed by its reader")]
    BrokenPipe,
    /// A caught termination signal arrived: the caller ends by that signal.
    #[error("terminated by signal {signal}")]
    Terminated {
        /// The signal number.
        signal: i32,
    },
    /// The chunk being written out was replaced or deleted by another
    /// machine before any of its bytes went out (on a shared filesystem,
    /// reading it failed with `ESTALE` or `ENOENT`): a consumer looks again.
    #[error("the chunk was replaced or taken by another machine before it could be read")]
    ChunkVanished,
    /// Producer or consumer options that do not go together, or a value
    /// out of bounds (see `ProducerOptions::validate` and
    /// `ConsumerOptions::validate`).
    #[error("{problem}")]
    BadOptions {
        /// What is wrong, naming the command-line options concerned.
        problem: String,
    },
}

/// The result type of the filebus library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error about a system call on the file at `path`.
    pub fn file(action: &'static str, path: &Path, source: impl Into<io::Error>) -> Self {
        Error::File {
            action,
            path: path.to_owned(),
            source: source.into(),
        }
    }

    /// An error about a system call on standard input or output; a broken pipe
    /// becomes [`Error::BrokenPipe`].
    pub fn stream(action: &'static str, source: impl Into<io::Error>) -> Self {
        let source = source.into();
        if source.kind() == io::ErrorKind::BrokenPipe {
            Error::BrokenPipe
        } else {
            Error::Stream { action, source }
        }
    }
}

/// An error and the errors that caused it, on one line, each after a colon
/// (`cannot open lock file /x/bus.lock: Permission denied`): how filebus
/// prints an error, and how a program embedding the library can.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(error) = cause {
            match error.downcast_ref::<io::Error>() {
                Some(io_error) => write!(f, ": {}", describe_io(io_error))?,
                None => write!(f, ": {error}")?,
            }
            cause = error.source();
        }
        Ok(())
    }
}

/// The kernel's message without Rust's " (os error N)" suffix, which means
/// nothing to a shell user.
pub fn describe_io(error: &io::Error) -> String {
    let text = error.to_string();
    match text.find(" (os error ") {
        Some(cut) => text[..cut].to_owned(),
        None => text,
    }
}

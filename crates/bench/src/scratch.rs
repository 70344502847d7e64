//! The scratch directory: everything the benchmark creates on disk lives in
//! one fresh directory, removed when the benchmark ends, however it ends
//! (short of SIGKILL).
//!
//! ```text
//! <parent>/filebus-bench-<pid>-<n>/
//!     run-0001/      one directory per run: the bus F, F.lock, FIFOs
//!     run-0002/      (removed as soon as the run is over)
//!     logs/          standard error of every child, quoted when one fails
//! ```
//!
//! A fresh bus directory per run means no run sees another's chunks, and
//! inotify watchers of one run never wake for another's files.

use std::cell::Cell;
use std::path::{Path, PathBuf};

use super::BenchError;

/// The benchmark's private directory.
#[derive(Debug)]
pub(crate) struct Scratch {
    root: PathBuf,
    logs: PathBuf,
    runs: Cell<u32>,
}

impl Scratch {
    /// Creates a new, empty directory (mode 0700) inside `parent`.
    pub(crate) fn create(parent: &Path) -> Result<Scratch, BenchError> {
        use std::os::unix::fs::DirBuilderExt;
        let mut builder = std::fs::DirBuilder::new();
        builder.mode(0o700);
        for attempt in 0u32..1000 {
            let root = parent.join(format!("filebus-bench-{}-{attempt}", std::process::id()));
            match builder.create(&root) {
                Ok(()) => {
                    let scratch = Scratch {
                        logs: root.join("logs"),
                        root,
                        runs: Cell::new(0),
                    };
                    builder.create(&scratch.logs).map_err(|error| {
                        BenchError::io(format!("cannot create {}", scratch.logs.display()), error)
                    })?;
                    return Ok(scratch);
                }
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(error) => {
                    return Err(BenchError::io(
                        format!("cannot create a scratch directory in {}", parent.display()),
                        error,
                    ));
                }
            }
        }
        Err(BenchError::Usage(format!(
            "cannot find a free scratch directory name in {}",
            parent.display()
        )))
    }

    /// The scratch directory itself.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// A new, empty directory for one run.
    pub(crate) fn run_dir(&self) -> Result<PathBuf, BenchError> {
        let number = self.runs.get() + 1;
        self.runs.set(number);
        let dir = self.root.join(format!("run-{number:04}"));
        std::fs::create_dir(&dir)
            .map_err(|error| BenchError::io(format!("cannot create {}", dir.display()), error))?;
        Ok(dir)
    }

    /// Where the child labelled `label` in run directory `run` writes its
    /// standard error.
    pub(crate) fn log_path(&self, run: &Path, label: &str) -> PathBuf {
        let run_name = run
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let label: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        self.logs.join(format!("{run_name}-{label}.stderr"))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.root) {
            eprintln!(
                "filebus: warning: cannot remove scratch directory {}: {error}",
                self.root.display()
            );
        }
    }
}

/// Removes a run directory; a failure is only worth a warning.
pub(crate) fn remove_run_dir(dir: &Path) {
    if let Err(error) = std::fs::remove_dir_all(dir)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        eprintln!("filebus: warning: cannot remove {}: {error}", dir.display());
    }
}

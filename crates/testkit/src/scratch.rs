//! A scratch directory for one run of a property, on tmpfs where there is
//! one (fuzzing makes many runs), removed when dropped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A fresh directory holding an empty `bus-dir/`, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// Creates `filebus-<what>-<pid>-<n>` under `/dev/shm` (or the
    /// temporary directory), with `bus-dir/` inside.
    pub fn new(what: &str) -> Scratch {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let path = base.join(format!(
            "filebus-{what}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(path.join("bus-dir")).expect("cannot create the scratch directory");
        Scratch(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

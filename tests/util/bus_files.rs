//! The bus's directory and its files: a scratch directory holding a bus,
//! what is in it, and chunks published or taken by hand, the way the
//! protocol describes, independently of our binary.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::wait_until;

/// A temporary directory with a bus in it.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("filebus-test-")
            .tempdir_in("/tmp")
            .expect("cannot create a scratch directory in /tmp");
        Scratch { dir }
    }

    /// The path of the bus file `F`.
    pub fn bus(&self) -> PathBuf {
        self.dir.path().join("bus")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The names in the scratch directory, sorted.
    pub fn names(&self) -> Vec<String> {
        names_in(self.dir.path())
    }
}

/// The names in `dir`, sorted.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()))
        .map(|entry| {
            entry
                .expect("bad directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// Publishes `content` at `bus` by hand, as a foreign producer would: written
/// beside it under another name, then renamed onto it (an unstamped chunk).
pub fn put_chunk_by_hand(bus: &Path, content: &[u8]) {
    let aside = bus.with_extension("by-hand");
    std::fs::write(&aside, content).expect("cannot write a chunk by hand");
    std::fs::rename(&aside, bus).expect("cannot rename a chunk onto the bus");
}

/// Takes chunks from the bus the way the protocol describes, independently of
/// our consumer: lock `F.lock`, read and delete `F`, unlock; until an empty chunk.
pub fn take_chunks_by_hand(bus: &Path) -> Vec<Vec<u8>> {
    let lock_path = bus.with_file_name("bus.lock");
    let mut chunks = Vec::new();
    loop {
        wait_until("a chunk to take", || bus.exists());
        let lock = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .expect("cannot open lock");
        // SAFETY: flock on a descriptor we own.
        assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
        let Ok(chunk) = std::fs::read(bus) else {
            continue;
        };
        std::fs::remove_file(bus).expect("cannot delete chunk");
        drop(lock);
        if chunk.is_empty() {
            return chunks;
        }
        chunks.push(chunk);
    }
}

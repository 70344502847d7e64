//! The names a bus at `F` gives files in its directory, and the check that
//! they fit the filesystem's limit.

use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::path::Path;

use crate::error::{Error, Result};

/// Suffix of the lock file's name.
pub const LOCK_SUFFIX: &str = ".lock";
/// Suffix of the history directory's name ([`crate::history`]).
pub const HISTORY_SUFFIX: &str = ".history";
/// Suffix of the directory holding named consumers' cursors
/// ([`crate::cursor`]).
pub const CONSUMERS_SUFFIX: &str = ".consumers";
/// Suffix of the name a chunk has between being linked and renamed onto `F`.
/// The reference implementation writes its chunks under this name too, always
/// while holding the lock, so the name is never contended.
pub const NEW_SUFFIX: &str = ".__new__";

/// The suffixes of the names derived from `F` in its directory.
const DERIVED_SUFFIXES: &[&str] = &[NEW_SUFFIX, LOCK_SUFFIX, HISTORY_SUFFIX, CONSUMERS_SUFFIX];

/// The longest file name on Linux filesystems, where `statvfs` cannot say.
const DEFAULT_NAME_MAX: u64 = 255;

/// Refuses a bus name too long for the names derived from it (`F.__new__`,
/// `F.consumers`)
/// on its filesystem, before anything is published: otherwise the first
/// publish (linked straight at `F`) works and every later one fails.
pub(crate) fn check_name_room(dir: &OwnedFd, name: &OsStr, path: &Path) -> Result<()> {
    let name_max = rustix::fs::fstatvfs(dir)
        .map(|stats| stats.f_namemax)
        .ok()
        .filter(|&max| max > 0)
        .unwrap_or(DEFAULT_NAME_MAX);
    let longest = DERIVED_SUFFIXES
        .iter()
        .map(|suffix| suffix.len())
        .max()
        .unwrap_or(0);
    let room = name_max.saturating_sub(longest as u64);
    if name.len() as u64 > room {
        return Err(Error::BadBusPath {
            path: path.to_owned(),
            problem: format!(
                "the bus file name is {} bytes long; at most {room} fit here (filebus adds up to {longest} bytes for its own files, in a {name_max}-byte limit)",
                name.len()
            ),
        });
    }
    Ok(())
}

/// `name` followed by `suffix`.
pub fn with_suffix(name: &OsStr, suffix: &str) -> OsString {
    let mut joined = name.to_owned();
    joined.push(suffix);
    joined
}

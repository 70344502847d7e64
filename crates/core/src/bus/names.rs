//! The names a bus at `F` gives files in its directory, and the check that
//! they fit the filesystem's limit.

use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
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

/// The start of the suffix of a named temporary file, `F.filebus-tmp.PID.N`
/// (where `O_TMPFILE` is refused).
pub(crate) const TEMP_SUFFIX_START: &str = ".filebus-tmp.";

/// Whether `name`, in the bus directory, is one of the names of the bus whose
/// file is named `bus_name`: `F` itself, a name derived from it, or one of
/// our named temporary files. Any other name is another program's.
pub fn is_bus_name(bus_name: &OsStr, name: &OsStr) -> bool {
    let Some(rest) = name.as_bytes().strip_prefix(bus_name.as_bytes()) else {
        return false;
    };
    rest.is_empty()
        || DERIVED_SUFFIXES
            .iter()
            .any(|suffix| rest == suffix.as_bytes())
        || rest.starts_with(TEMP_SUFFIX_START.as_bytes())
}

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

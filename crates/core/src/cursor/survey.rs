//! Named consumers as seen from outside: which ones there are, whether
//! each is alive (its lock, or its heartbeat), and its cursor.

use std::os::fd::OwnedFd;
use std::time::Duration;

use rustix::fs::{FileType, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use super::{HEARTBEAT_LEASE, directory_name, open_directory, read_position, validate_name};
use crate::bus::identity::stat_from_server;
use crate::bus::{Bus, stamp};
use crate::error::{Error, Result};

/// The most cursor files looked at in one survey.
const MAX_SURVEYED: usize = 4096;

/// A named consumer as seen from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedConsumer {
    /// Its name.
    pub name: String,
    /// Whether a process holds its cursor's lock right now.
    pub alive: bool,
    /// Whether its cursor file was touched within the heartbeat's lease
    /// (5 s): a consumer whose lock this machine cannot see (locks not
    /// shared between machines) is alive by this.
    pub heartbeat: bool,
    /// The last sequence it wrote out, if recorded.
    pub cursor: Option<u64>,
}

/// The named consumers of `bus`, sorted by name: every regular file with a
/// valid name in `F.consumers` (at most 4096 of them).
pub fn survey(bus: &Bus) -> Result<Vec<NamedConsumer>> {
    let Some(dir) = open_directory(bus, OFlags::RDONLY)? else {
        return Ok(Vec::new());
    };
    let dir_path = bus.dir_path().join(directory_name(bus.name()));
    let mut names = Vec::new();
    let mut listing = rustix::fs::Dir::read_from(&dir)
        .map_err(|errno| Error::file("cannot list", &dir_path, errno))?;
    for _ in 0..MAX_SURVEYED {
        let entry = match listing.read() {
            None => break,
            Some(Ok(entry)) => entry,
            Some(Err(errno)) => return Err(Error::file("cannot list", &dir_path, errno)),
        };
        if !matches!(entry.file_type(), FileType::RegularFile | FileType::Unknown) {
            continue;
        }
        if let Ok(name) = entry.file_name().to_str()
            && validate_name(name).is_ok()
        {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names
        .into_iter()
        .filter_map(|name| probe(&dir, name))
        .collect())
}

/// Looks at one cursor file: alive or not, and its position.
fn probe(dir: &OwnedFd, name: String) -> Option<NamedConsumer> {
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    let fd = rustix::fs::openat(dir, name.as_str(), flags, Mode::empty()).ok()?;
    let stat = rustix::fs::fstat(&fd).ok()?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return None;
    }
    // A shared lock is granted unless someone holds the exclusive one; it is
    // released when `fd` is closed, at the end of this function.
    let alive = matches!(
        rustix::fs::flock(&fd, FlockOperation::NonBlockingLockShared),
        Err(Errno::WOULDBLOCK)
    );
    Some(NamedConsumer {
        name,
        alive,
        heartbeat: heartbeat_recent(&fd),
        cursor: read_position(&fd),
    })
}

/// Whether the cursor file `fd` was touched within [`HEARTBEAT_LEASE`], by
/// the server's modification time against this machine's clock (machines
/// sharing a bus keep their clocks in step, as `--stats` latency needs).
fn heartbeat_recent(fd: &OwnedFd) -> bool {
    let Ok(stat) = stat_from_server(fd) else {
        return false;
    };
    let now = Duration::from_nanos(stamp::now_ns());
    now.saturating_sub(stat.version.modified()) < HEARTBEAT_LEASE
}

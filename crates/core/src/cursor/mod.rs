//! Named consumers: a cursor per name, which holds the producers back.
//!
//! For a bus at `F`, `consumer --name NAME` owns the file `F.consumers/NAME`:
//!
//! - it holds an exclusive `flock(2)` on it while it runs, so a second
//!   consumer of the same name is refused, and the lock vanishes with the
//!   process however it dies (kill -9 included);
//! - after writing out each chunk it records the chunk's sequence number in
//!   the file's extended attribute `user.filebus.cursor` (decimal ASCII), an
//!   atomic update that readers never see half done.
//!
//! A producer keeping a history ([`crate::history`]) never drops an entry
//! that a *live* named consumer (one whose cursor file is locked) has not
//! written out: it waits, woken by the inotify events that a cursor's
//! advance or its owner's exit cause on the directory, with a poll every
//! `--sleep-interval` as the safety net (and as the only means where events
//! are unavailable). A dead consumer's file stays, so that it resumes where
//! it was when started again, but it holds nobody back.
//!
//! Liveness is probed with a non-blocking shared lock, released at once. A
//! consumer claiming its name retries for a moment when it finds the lock
//! held, so such a probe is never mistaken for a consumer already running.

pub mod survey;
pub mod wait;

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustix::fs::{AtFlags, FileType, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use crate::bus::Bus;
use crate::bus::identity::stat_from_server;
pub use crate::bus::names::CONSUMERS_SUFFIX;
use crate::error::{Error, Result};
use crate::stop::StopFlag;
pub use survey::{NamedConsumer, survey};

/// The extended attribute holding a cursor: the last sequence written out.
pub const CURSOR_ATTRIBUTE: &str = "user.filebus.cursor";
/// The longest consumer name, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// How often a named consumer touches its cursor file (its modification
/// time), to say it is alive where the filesystem does not share locks
/// between machines (see [`HEARTBEAT_LEASE`]).
const HEARTBEAT: Duration = Duration::from_millis(500);
/// How long after its cursor file was last touched a named consumer still
/// holds producers back although its lock cannot be seen. Where locks are
/// shared (one machine, NFSv4, NFSv3 with lockd, CephFS) the lock says it
/// all; where they are not (bindfs without lock forwarding, NFSv3 mounted
/// `nolock`), a producer on another machine sees a live consumer only by
/// this heartbeat. A consumer killed without its lock being seen then holds
/// producers back this long; one stopped (SIGSTOP) longer is outrun.
pub const HEARTBEAT_LEASE: Duration = Duration::from_secs(5);
/// How long a starting consumer retries a held lock (a probe holds it for
/// microseconds; a running consumer for ever).
const CLAIM_RETRIES: u32 = 100;
const CLAIM_RETRY_PAUSE: Duration = Duration::from_millis(2);

/// Checks a consumer name: not empty, at most [`MAX_NAME_LEN`] bytes, no
/// `/`, no NUL or other control character, not `.` or `..`.
pub fn validate_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("a consumer name cannot be empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("a consumer name has at most {MAX_NAME_LEN} bytes"));
    }
    if name == "." || name == ".." {
        return Err("a consumer name cannot be . or ..".into());
    }
    if name.chars().any(|c| c == '/' || c.is_control()) {
        return Err("a consumer name cannot contain '/' or control characters".into());
    }
    Ok(())
}

/// The name of the cursor directory of the bus file named `bus_name`.
pub fn directory_name(bus_name: &std::ffi::OsStr) -> std::ffi::OsString {
    let mut name = bus_name.to_owned();
    name.push(CONSUMERS_SUFFIX);
    name
}

/// A named consumer's claimed cursor.
#[derive(Debug)]
pub struct Cursor {
    file: File,
    path: PathBuf,
    name: String,
    position: Option<u64>,
    /// Tells the heartbeat thread to stop when the cursor is dropped.
    heartbeat: Option<Arc<Mutex<bool>>>,
}

impl Drop for Cursor {
    /// Stops the heartbeat and sets the file's modification time to the
    /// epoch: a consumer that ends (rather than dies) holds nobody back for
    /// the rest of its lease. Under the heartbeat's mutex, so that no beat
    /// comes after.
    fn drop(&mut self) {
        let Some(stopped) = &self.heartbeat else {
            return;
        };
        let mut stopped = stopped.lock().unwrap_or_else(PoisonError::into_inner);
        *stopped = true;
        let epoch = rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let _ = rustix::fs::futimens(
            &self.file,
            &rustix::fs::Timestamps {
                last_access: epoch,
                last_modification: epoch,
            },
        );
    }
}

impl Cursor {
    /// Claims the cursor `name` of `bus`, creating it (and `F.consumers`)
    /// if needed; fails with one line if a consumer of that name runs.
    pub fn claim(bus: &Bus, name: &str) -> Result<Cursor> {
        validate_name(name).map_err(|problem| Error::BadBusPath {
            path: bus.path().to_owned(),
            problem,
        })?;
        let dir_name = directory_name(bus.name());
        let dir_path = bus.dir_path().join(&dir_name);
        match rustix::fs::mkdirat(bus.dir(), dir_name.as_os_str(), Mode::from_raw_mode(0o777)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(errno) => return Err(Error::file("cannot create", &dir_path, errno)),
        }
        let dir = open_directory(bus, OFlags::PATH)?.ok_or_else(|| Error::BadBusPath {
            path: dir_path.clone(),
            problem: "disappeared right after it was created".into(),
        })?;
        let path = dir_path.join(name);
        let flags = OFlags::RDWR
            | OFlags::CREATE
            | OFlags::NOFOLLOW
            | OFlags::NONBLOCK
            | OFlags::CLOEXEC
            | OFlags::NOCTTY;
        let fd =
            rustix::fs::openat(&dir, name, flags, Mode::from_raw_mode(0o666)).map_err(|errno| {
                match errno {
                    Errno::LOOP => Error::BadBusPath {
                        path: path.clone(),
                        problem: "is a symbolic link; filebus never follows links at a cursor"
                            .into(),
                    },
                    errno => Error::file("cannot open cursor", &path, errno),
                }
            })?;
        let stat =
            rustix::fs::fstat(&fd).map_err(|errno| Error::file("cannot inspect", &path, errno))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(Error::BadBusPath {
                path,
                problem: "is not a regular file, so it cannot be a cursor".into(),
            });
        }
        lock_exclusively(&fd, &path, name, bus.stop_flag())?;
        // Locked: now make sure it is still the file of that name.
        match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(now) if now.st_dev == stat.st_dev && now.st_ino == stat.st_ino => {}
            _ => {
                return Err(Error::BadBusPath {
                    path,
                    problem: "was replaced or removed while this consumer started".into(),
                });
            }
        }
        let position = read_position(&fd);
        let heartbeat = start_heartbeat(&dir, name, &stat);
        Ok(Cursor {
            file: File::from(fd),
            path,
            name: name.to_owned(),
            position,
            heartbeat,
        })
    }

    /// The consumer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cursor file's path, for messages.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The sequence of the last chunk written out under this name, if any.
    pub fn position(&self) -> Option<u64> {
        self.position
    }

    /// Records that chunk `sequence` was written out.
    pub fn advance(&mut self, sequence: u64) -> Result<()> {
        if self.position == Some(sequence) {
            return Ok(());
        }
        let recorded = match rustix::fs::fsetxattr(
            &self.file,
            CURSOR_ATTRIBUTE,
            sequence.to_string().as_bytes(),
            rustix::fs::XattrFlags::empty(),
        ) {
            // No user extended attributes (NFSv3, many FUSE filesystems):
            // the cursor is the file's size minus one, set in one call that
            // readers never see half done.
            Err(Errno::OPNOTSUPP) => {
                size_for(sequence).and_then(|size| rustix::fs::ftruncate(&self.file, size))
            }
            other => other,
        };
        recorded.map_err(|errno| Error::file("cannot record the cursor in", &self.path, errno))?;
        self.position = Some(sequence);
        Ok(())
    }
}

fn lock_exclusively(
    fd: &OwnedFd,
    path: &std::path::Path,
    name: &str,
    stop: StopFlag,
) -> Result<()> {
    for _ in 0..CLAIM_RETRIES {
        match rustix::fs::flock(fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(()),
            Err(Errno::WOULDBLOCK) | Err(Errno::INTR) => {
                stop.check()?;
                std::thread::sleep(CLAIM_RETRY_PAUSE);
            }
            Err(errno) => return Err(Error::file("cannot lock", path, errno)),
        }
    }
    Err(Error::BadBusPath {
        path: path.to_owned(),
        problem: format!("is locked: a consumer named {name} is already running on this bus"),
    })
}

/// Touches the cursor file every [`HEARTBEAT`] until the returned flag is
/// set, from a thread of its own, so that a consumer blocked on its output
/// still says it is alive. The thread has a descriptor of its own of the
/// very file claimed (`name` in `dir`, opened again and checked to be the
/// inode `claimed`): a separate open file, so it never holds the cursor's
/// lock, and it touches that file, never whatever is put at the name later.
/// `None` if the thread cannot be started: the lock alone then says the
/// consumer is alive.
fn start_heartbeat(
    dir: &OwnedFd,
    name: &str,
    claimed: &rustix::fs::Stat,
) -> Option<Arc<Mutex<bool>>> {
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    let file = rustix::fs::openat(dir, name, flags, Mode::empty()).ok()?;
    let stat = rustix::fs::fstat(&file).ok()?;
    if (stat.st_dev, stat.st_ino) != (claimed.st_dev, claimed.st_ino) {
        return None;
    }
    let stop = Arc::new(Mutex::new(false));
    let stopped = Arc::clone(&stop);
    std::thread::Builder::new()
        .name("filebus-heartbeat".into())
        .spawn(move || {
            let now = rustix::fs::Timestamps {
                last_access: rustix::fs::Timespec {
                    tv_sec: 0,
                    tv_nsec: rustix::fs::UTIME_NOW,
                },
                last_modification: rustix::fs::Timespec {
                    tv_sec: 0,
                    tv_nsec: rustix::fs::UTIME_NOW,
                },
            };
            loop {
                std::thread::sleep(HEARTBEAT);
                let stopped = stopped.lock().unwrap_or_else(PoisonError::into_inner);
                if *stopped {
                    break;
                }
                // A failure (the file went away) is the lock's business.
                let _ = rustix::fs::futimens(&file, &now);
            }
        })
        .ok()?;
    Some(stop)
}

/// The largest cursor kept in a file's size (see [`Cursor::advance`]): far
/// beyond any sequence a bus reaches, within every filesystem's file size.
const MAX_SIZE_CURSOR: u64 = 1 << 40;

/// The file size that records cursor `sequence` where there are no extended
/// attributes.
fn size_for(sequence: u64) -> rustix::io::Result<u64> {
    if sequence >= MAX_SIZE_CURSOR {
        return Err(Errno::FBIG);
    }
    Ok(sequence + 1)
}

/// The cursor recorded in a cursor file: its extended attribute, or, on a
/// filesystem without them, its size minus one (0: none recorded yet).
pub(crate) fn read_position(fd: &OwnedFd) -> Option<u64> {
    let mut value = [0u8; 24];
    match rustix::fs::fgetxattr(fd, CURSOR_ATTRIBUTE, &mut value) {
        Ok(len) => std::str::from_utf8(&value[..len]).ok()?.trim().parse().ok(),
        Err(Errno::OPNOTSUPP) => {
            let size = stat_from_server(fd).ok()?.len;
            (1..=MAX_SIZE_CURSOR).contains(&size).then(|| size - 1)
        }
        Err(_) => None,
    }
}

/// Opens `F.consumers` with `mode` (`O_PATH`, or `O_RDONLY` to list it);
/// `None` if there is none. A symlink or non-directory is an error.
pub(crate) fn open_directory(bus: &Bus, mode: OFlags) -> Result<Option<OwnedFd>> {
    let name = directory_name(bus.name());
    let flags = mode | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat(bus.dir(), name.as_os_str(), flags, Mode::empty()) {
        Ok(dir) => Ok(Some(dir)),
        Err(Errno::NOENT) => Ok(None),
        Err(Errno::NOTDIR) | Err(Errno::LOOP) => Err(Error::BadBusPath {
            path: bus.dir_path().join(&name),
            problem: "is not a directory, so it cannot hold consumer cursors".into(),
        }),
        Err(errno) => Err(Error::file(
            "cannot open",
            &bus.dir_path().join(&name),
            errno,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        for good in [
            "backup",
            "mirror-2",
            "a.b",
            "x".repeat(MAX_NAME_LEN).as_str(),
        ] {
            assert_eq!(validate_name(good), Ok(()), "{good:?}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "/",
            "tab\there",
            "x".repeat(MAX_NAME_LEN + 1).as_str(),
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}

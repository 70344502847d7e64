//! The bus lock: an exclusive `flock(2)` on `F.lock`.
//!
//! The lock file is created when missing and never deleted (deleting it would
//! let two processes lock two different files of the same name). It is opened
//! with `O_NOFOLLOW`, so a symlink planted at `F.lock` cannot make filebus
//! create or open a file elsewhere. After locking, the holder checks that the
//! descriptor it locked is still the file at `F.lock`; if someone replaced or
//! removed it meanwhile, it opens the new one and locks again, as the bash
//! reference does.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use rustix::fs::{AtFlags, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};
use crate::stop::StopFlag;

/// An open lock file, ready to be locked any number of times.
#[derive(Debug)]
pub struct LockFile {
    dir: OwnedFd,
    name: OsString,
    path: PathBuf,
    fd: OwnedFd,
    /// Checked when a wait for the lock is interrupted.
    stop: StopFlag,
    /// The device and inode of `fd`, which never change while it is open:
    /// known once, so that each acquisition checks the path with one call.
    identity: (u64, u64),
}

/// Proof that the bus lock is held; dropping it releases the lock.
#[derive(Debug)]
pub struct LockGuard<'a> {
    lock: &'a LockFile,
}

impl LockFile {
    /// Opens (creating if needed) the lock file `name` in `dir`.
    ///
    /// `dir` is a duplicate of the bus's directory descriptor; `path` is only
    /// for messages; `stop` is checked when a wait for the lock is interrupted.
    pub fn open(dir: OwnedFd, name: OsString, path: PathBuf, stop: StopFlag) -> Result<Self> {
        let (fd, identity) = open_lock_file(&dir, &name, &path)?;
        Ok(LockFile {
            dir,
            name,
            path,
            fd,
            stop,
            identity,
        })
    }

    /// Blocks until this process holds the bus lock.
    pub fn acquire(&mut self) -> Result<LockGuard<'_>> {
        loop {
            self.stop.check()?;
            match rustix::fs::flock(&self.fd, FlockOperation::LockExclusive) {
                Ok(()) => {}
                // A signal: stop if it asks us to, otherwise wait on.
                Err(Errno::INTR) => {
                    self.stop.check()?;
                    continue;
                }
                Err(errno) => return Err(Error::file("cannot lock", &self.path, errno)),
            }
            if self.still_at_path()? {
                return Ok(LockGuard { lock: self });
            }
            log::info!(
                "{} was replaced while we waited for it; locking the new one",
                self.path.display()
            );
            (self.fd, self.identity) = open_lock_file(&self.dir, &self.name, &self.path)?;
        }
    }

    /// Whether the locked descriptor is still the file named `F.lock`.
    fn still_at_path(&self) -> Result<bool> {
        match rustix::fs::statat(&self.dir, self.name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(now) => Ok((now.st_dev, now.st_ino) == self.identity),
            Err(Errno::NOENT) => Ok(false),
            Err(errno) => Err(Error::file("cannot inspect", &self.path, errno)),
        }
    }
}

impl LockGuard<'_> {
    /// The locked lock file (it also holds the bus's last sequence number).
    pub fn lock_file(&self) -> BorrowedFd<'_> {
        self.lock.fd.as_fd()
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        // Closing would release it too; unlocking keeps the descriptor for the
        // next publish. A failure here cannot be acted on: the kernel releases
        // the lock when the process exits at the latest.
        let _ = rustix::fs::flock(&self.lock.fd, FlockOperation::Unlock);
    }
}

/// Opens the lock file without following symlinks, read-write when we may,
/// read-only when the file belongs to someone else (`flock` works on either).
/// Returns it with its device and inode.
fn open_lock_file(
    dir: &OwnedFd,
    name: &OsStr,
    path: &std::path::Path,
) -> Result<(OwnedFd, (u64, u64))> {
    let flags = OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::NONBLOCK;
    let mode = Mode::from_raw_mode(0o666);
    let opened = match rustix::fs::openat(dir, name, flags | OFlags::RDWR | OFlags::CREATE, mode) {
        // Someone else's lock file: read-only is enough to lock it. If it
        // does not exist, the reason we could not create it is the error.
        Err(denied @ (Errno::ACCESS | Errno::PERM | Errno::ROFS)) => {
            match rustix::fs::openat(dir, name, flags | OFlags::RDONLY, mode) {
                Err(Errno::NOENT) => Err(denied),
                other => other,
            }
        }
        other => other,
    };
    let fd = opened.map_err(|errno| match errno {
        Errno::LOOP => Error::BadBusPath {
            path: path.to_owned(),
            problem: "is a symbolic link; filebus never follows links at its lock file".into(),
        },
        errno => Error::file("cannot open lock file", path, errno),
    })?;
    let stat =
        rustix::fs::fstat(&fd).map_err(|errno| Error::file("cannot inspect", path, errno))?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(Error::BadBusPath {
            path: path.to_owned(),
            problem: "is not a regular file, so it cannot serve as the bus lock".into(),
        });
    }
    Ok((fd, (stat.st_dev, stat.st_ino)))
}

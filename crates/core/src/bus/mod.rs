//! The protocol primitive: one chunk at `F`. The names of a bus, what a
//! chunk is, and the two operations that change a bus, [`Bus::publish`] and
//! [`Bus::remove_current`]; history and named consumers stand above it
//! ([`crate::history`], [`crate::cursor`]) and use it.
//!
//! For a bus at path `F`:
//!
//! | path        | what it is                                                  |
//! |-------------|-------------------------------------------------------------|
//! | `F`         | the most recent published chunk                             |
//! | `F.lock`    | the lock file ([`lock`])                                    |
//! | `F.__new__` | the name a chunk has for an instant, between link and rename |
//!
//! A chunk is identified by the file at `F` (device and inode), never by its
//! content or time stamps: every publish renames a new file onto `F`. Inode
//! numbers are recycled, so a consumer that compares identities keeps the last
//! emitted file open (see [`crate::consumer`]).
//!
//! Every name in the directory is reached through a directory descriptor with
//! `*at` calls and `O_NOFOLLOW`, so a symlink planted at `F`, `F.__new__` or
//! `F.lock` can never redirect a write.
//!
//! | module        | what it holds                                             |
//! |---------------|-----------------------------------------------------------|
//! | [`names`]     | the names derived from `F`, and the room they need        |
//! | [`format`](mod@format) | how a chunk's content is stored at `F` (raw or tar)       |
//! | [`identity`]  | which file a name leads to, asked of the server           |
//! | [`temp_file`] | the file a chunk is built in, before it is published      |
//! | [`stamp`]     | sequence and time stamps                                  |
//! | [`lock`]      | the bus lock                                              |
//! | [`publish`]   | putting a chunk at `F`                                    |
//! | [`take`]      | deleting the chunk at `F` (lossless consumers)            |
//! | [`verified_read`] | reading a chunk whole on a shared filesystem, past its cache |

pub mod format;
pub mod identity;
pub mod lock;
pub mod names;
pub mod publish;
pub mod stamp;
pub mod take;
pub mod temp_file;
pub(crate) mod verified_read;

use std::cell::Cell;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};
use crate::stop::StopFlag;
use identity::{ChunkId, SYMLINK, Version, stat_at_from_server, stat_from_server, unusable_kind};
use lock::LockFile;
use names::{LOCK_SUFFIX, NEW_SUFFIX, check_name_room, with_suffix};

/// A bus: the directory that holds it and the name of its data file.
#[derive(Debug)]
pub struct Bus {
    path: PathBuf,
    dir_path: PathBuf,
    dir: OwnedFd,
    name: OsString,
    new_name: OsString,
    lock_name: OsString,
    /// Whether `F` existed at our last publish: then the next publish goes
    /// straight to the exchange, without a link that would fail.
    f_was_present: Cell<bool>,
    /// What this bus's filesystem refused so far, so it is not tried again.
    refused: Refusals,
    /// Checked by its lock and its watchers when a wait is interrupted.
    stop: StopFlag,
    /// The network or FUSE filesystem the bus directory is on, if it is on
    /// one (looked up once, when the bus is opened).
    remote: Option<&'static str>,
}

/// What a filesystem refused, remembered per bus (two buses of one process
/// may live on filesystems that differ).
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    /// `O_TMPFILE` was refused (NFS, CephFS, FUSE): later chunks go straight
    /// to named temporary files.
    tmpfile: Cell<bool>,
    /// `RENAME_EXCHANGE` was refused: later publishes rename directly.
    exchange: Cell<bool>,
    /// Stamps proved impossible (no extended attributes on this filesystem,
    /// or a lock file we may not write): no more are attempted.
    stamps: Cell<bool>,
    /// `linkat(AT_EMPTY_PATH)` was refused: later links go straight to
    /// `/proc/self/fd`.
    empty_path: Cell<bool>,
    /// Unit tests: the error `RENAME_EXCHANGE` is made to fail with, as a
    /// filesystem without it would (none at hand refuses it).
    #[cfg(test)]
    exchange_fails_with: Cell<Option<Errno>>,
}

/// A published chunk, open for reading.
#[derive(Debug)]
pub struct Chunk {
    /// The chunk's file, opened read-only. While it is open its inode number
    /// cannot be given to another file.
    pub file: File,
    /// Which file it is.
    pub id: ChunkId,
    /// Its size when it was opened.
    pub len: u64,
    /// The user that owns it.
    pub owner: u32,
}

/// What is at `F` right now.
#[derive(Debug)]
pub enum Current {
    /// No file: nothing was published yet, or a lossless consumer took it
    /// (or, on a shared filesystem, another machine replaced or took the
    /// chunk just as we opened it: look again).
    Absent,
    /// A regular file: a chunk.
    Chunk(Chunk),
    /// Something that is not a regular file (a directory, FIFO, device, or a
    /// symlink, which filebus never follows).
    Unusable(&'static str),
}

impl Bus {
    /// Opens the bus at `path`, checking that the path can be one: its
    /// directory exists, and `F`, if it exists, is not a directory, FIFO,
    /// device or socket. Creates nothing.
    pub fn open(path: &Path) -> Result<Bus> {
        let bad = |problem: &str| Error::BadBusPath {
            path: path.to_owned(),
            problem: problem.to_owned(),
        };
        if path.as_os_str().is_empty() {
            return Err(bad("the bus file name is empty"));
        }
        if path.as_os_str().as_bytes().ends_with(b"/") {
            return Err(bad("names a directory, not a bus file"));
        }
        let name = match path.file_name() {
            Some(name) => name.to_owned(),
            None => return Err(bad("names a directory, not a bus file")),
        };
        let dir_path = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        };
        let dir = rustix::fs::open(
            &dir_path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| match errno {
            Errno::NOENT => Error::BadBusPath {
                path: dir_path.clone(),
                problem: "directory does not exist (filebus does not create directories)".into(),
            },
            Errno::NOTDIR => Error::BadBusPath {
                path: dir_path.clone(),
                problem: "is not a directory".into(),
            },
            errno => Error::file("cannot open directory", &dir_path, errno),
        })?;
        check_name_room(&dir, &name, path)?;
        let remote = match crate::filesystem::kind_of(&dir) {
            Ok(Some(kind)) if kind.remote => Some(kind.name),
            _ => None,
        };
        let bus = Bus {
            remote,
            new_name: with_suffix(&name, NEW_SUFFIX),
            lock_name: with_suffix(&name, LOCK_SUFFIX),
            f_was_present: Cell::new(false),
            refused: Refusals::default(),
            stop: StopFlag::NEVER,
            path: path.to_owned(),
            dir_path,
            dir,
            name,
        };
        match rustix::fs::statat(&bus.dir, bus.name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => match unusable_kind(FileType::from_raw_mode(stat.st_mode)) {
                Some(kind) if kind != SYMLINK => Err(bad(&format!("is {kind}, not a bus file"))),
                _ => Ok(bus),
            },
            Err(Errno::NOENT) => Ok(bus),
            Err(errno) => Err(Error::file("cannot inspect", path, errno)),
        }
    }

    /// The bus, its lock and its watchers stopping their waits with
    /// [`crate::Error::Terminated`] once `stop` records a signal.
    pub fn stopped_by(mut self, stop: StopFlag) -> Self {
        self.stop = stop;
        self
    }

    /// The kind of network or FUSE filesystem the bus is on, if it is on
    /// one: other machines may change it, unseen by inotify.
    pub fn remote_filesystem(&self) -> Option<&'static str> {
        self.remote
    }

    /// What this bus's filesystem refused so far.
    pub(crate) fn refusals(&self) -> &Refusals {
        &self.refused
    }

    /// What stops this bus's waits.
    pub fn stop_flag(&self) -> StopFlag {
        self.stop
    }

    /// The bus path as the user gave it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory holding the bus.
    pub fn dir_path(&self) -> &Path {
        &self.dir_path
    }

    /// The file name of `F` within its directory.
    pub fn name(&self) -> &OsStr {
        &self.name
    }

    /// The file name of the lock file `F.lock` within the bus directory.
    pub fn lock_name(&self) -> &OsStr {
        &self.lock_name
    }

    /// A descriptor (`O_PATH`) of the directory holding the bus.
    pub fn dir(&self) -> &OwnedFd {
        &self.dir
    }

    /// Opens (creating if needed) the lock file `F.lock`.
    pub fn lock_file(&self) -> Result<LockFile> {
        let dir = self.dir.try_clone().map_err(|error| {
            Error::file("cannot duplicate descriptor of", &self.dir_path, error)
        })?;
        LockFile::open(
            dir,
            self.lock_name.clone(),
            self.dir_path.join(&self.lock_name),
            self.stop,
        )
    }

    /// Whether some file (of any kind) is at `F`. On a shared filesystem a
    /// stale answer (`ESTALE`: the file was replaced or deleted by another
    /// machine) counts as "not yet": the caller looks again after its next
    /// wait.
    pub fn exists(&self) -> Result<bool> {
        match rustix::fs::statat(&self.dir, self.name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => Ok(true),
            Err(Errno::NOENT | Errno::STALE) => Ok(false),
            Err(errno) => Err(Error::file("cannot inspect", &self.path, errno)),
        }
    }

    /// The identity of the file at `F` without opening it, if it is a
    /// regular file. `None` also when the answer was stale (`ESTALE`, on a
    /// shared filesystem), which makes a consumer open `F` and see.
    pub fn current_id(&self) -> Result<Option<ChunkId>> {
        match rustix::fs::statat(&self.dir, self.name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile => {
                Ok(Some(ChunkId::of(&stat)))
            }
            Ok(_) | Err(Errno::NOENT | Errno::STALE) => Ok(None),
            Err(errno) => Err(Error::file("cannot inspect", &self.path, errno)),
        }
    }

    /// Which file is at `F`, asked of the server (see [`stat_from_server`]);
    /// `None` if nothing is there.
    fn version_from_server(&self) -> rustix::io::Result<Option<Version>> {
        match stat_at_from_server(&self.dir, self.name.as_os_str()) {
            Ok(stat) => Ok(Some(stat.version)),
            Err(Errno::NOENT | Errno::STALE) => Ok(None),
            Err(errno) => Err(errno),
        }
    }

    /// Whether `chunk`, opened from `F`, is still the file there, as the
    /// server says; always true on a local filesystem.
    ///
    /// A path-based FUSE filesystem (bindfs) answers an extended attribute
    /// asked of an open file for whatever is at its name *now*: a stamp read
    /// from a chunk opened at `F` may be that of the chunk another machine
    /// published since. Asked after the stamp was read, "still there" means
    /// the stamp was the chunk's own.
    pub fn still_current(&self, chunk: &Chunk) -> bool {
        if self.remote.is_none() {
            return true;
        }
        matches!(self.version_from_server(), Ok(Some(version)) if version.id == chunk.id)
    }

    /// Opens whatever is at `F` for reading, without following a symlink and
    /// without blocking on a FIFO.
    ///
    /// On a shared filesystem the chunk seen by a previous look (or by the
    /// lookup inside this open) can be replaced or deleted by another machine
    /// before it is opened or inspected: `ENOENT` or `ESTALE` then. Both
    /// mean [`Current::Absent`], "look again".
    pub fn open_current(&self) -> Result<Current> {
        let before = match self.remote {
            Some(_) => match self.version_from_server() {
                Ok(id) => id,
                Err(errno) => return Err(Error::file("cannot inspect", &self.path, errno)),
            },
            None => None,
        };
        let flags =
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
        let fd = match rustix::fs::openat(&self.dir, self.name.as_os_str(), flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::STALE) => return Ok(Current::Absent),
            Err(Errno::LOOP) => return Ok(Current::Unusable(SYMLINK)),
            Err(errno) => return Err(Error::file("cannot open", &self.path, errno)),
        };
        let stat = match stat_from_server(&fd) {
            Ok(stat) => stat,
            Err(Errno::NOENT | Errno::STALE) => return Ok(Current::Absent),
            Err(errno) => return Err(Error::file("cannot inspect", &self.path, errno)),
        };
        // On a path-based FUSE filesystem (bindfs) or NFS, what the server
        // says of an open file is what is at the name *now*, which another
        // machine may have replaced since we opened it: the identity and
        // size would then be a newer chunk's, and a lossy consumer taking it
        // for read would never write that newer chunk out. Looked at before
        // and after the open, the same file means the open got it. The
        // modification time is compared too: ext4 gives a freed inode number
        // to the next file, so the chunk before and the chunk after the one
        // we opened can share it.
        if self.remote.is_some() && before != Some(stat.version) {
            log::debug!(
                "{}: replaced while we opened it: looking again",
                self.path.display()
            );
            return Ok(Current::Absent);
        }
        if let Some(kind) = unusable_kind(FileType::from_raw_mode(stat.mode)) {
            return Ok(Current::Unusable(kind));
        }
        // The client's page cache for the name `F` is shared by every chunk
        // published there in turn: read past it (see verified_read).
        Ok(Current::Chunk(Chunk::opened(
            fd,
            &stat,
            self.remote.is_some(),
        )))
    }
}

impl Chunk {
    /// The chunk opened as `fd`, as the server described it (`stat`). On a
    /// network or FUSE filesystem (`remote`) it is read past the client's
    /// page cache, which a name shares among the files it names in turn
    /// (see [`verified_read`]).
    pub(crate) fn opened(fd: OwnedFd, stat: &identity::OpenStat, remote: bool) -> Chunk {
        if remote {
            verified_read::bypass_page_cache(&fd);
        }
        Chunk {
            file: File::from(fd),
            id: stat.version.id,
            len: stat.len,
            owner: stat.owner,
        }
    }
}

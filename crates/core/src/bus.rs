//! The on-disk protocol: the names of a bus, what a chunk is, and the two
//! operations that change a bus, [`Bus::publish`] and [`Bus::remove_current`].
//!
//! For a bus at path `F`:
//!
//! | path        | what it is                                                  |
//! |-------------|-------------------------------------------------------------|
//! | `F`         | the most recent published chunk                             |
//! | `F.lock`    | the lock file ([`crate::lock`])                             |
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

use std::cell::Cell;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Access, AtFlags, FileType, Mode, OFlags, RenameFlags, StatxFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};
use crate::history::Keeper;
use crate::lock::{LockFile, LockGuard};
use crate::stamp::{self, Stamp};
use crate::stop::StopFlag;
use crate::tar;

/// Suffix of the lock file's name.
pub const LOCK_SUFFIX: &str = ".lock";
/// Suffix of the name a chunk has between being linked and renamed onto `F`.
/// The reference implementation writes its chunks under this name too, always
/// while holding the lock, so the name is never contended.
pub const NEW_SUFFIX: &str = ".__new__";

/// How a chunk's content is stored at `F`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// The content's bytes, nothing else (reference 0.1 and later).
    #[default]
    Raw,
    /// A tar archive with one member, `from_server` (reference 0.0.x); our
    /// producers add PAX records with the sequence number and time.
    Tar,
}

impl Format {
    /// Where a chunk's content starts in the files our producers write: in
    /// tar format, after the PAX extended header (two blocks, always present
    /// because it always carries the publish time) and the member's header.
    pub fn content_offset(self) -> u64 {
        match self {
            Format::Raw => 0,
            Format::Tar => TAR_HEADER_LEN,
        }
    }
}

/// The length of the header our producers write in tar format.
const TAR_HEADER_LEN: u64 = 3 * 512;

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
    /// The producer's side of the bus's history (`F.history`).
    history: Keeper,
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
}

/// The identity of a chunk: the device and inode of the file at `F`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkId {
    dev: u64,
    ino: u64,
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

/// Whether this process may delete chunks in the bus directory
/// ([`Bus::delete_rights`]).
#[derive(Debug, Clone, Copy)]
pub struct DeleteRights {
    me: u32,
    /// Only files we own may be deleted (a sticky directory not ours).
    restricted: bool,
}

impl DeleteRights {
    /// Fails, naming the reason, if this process could not delete `chunk`:
    /// a lossless consumer checks before it emits a chunk, so that a chunk it
    /// cannot take is never emitted (and then emitted again by another).
    pub fn check(&self, bus: &Bus, chunk: &Chunk) -> Result<()> {
        if self.restricted && chunk.owner != self.me {
            return Err(bus.cannot_take(Errno::PERM));
        }
        Ok(())
    }
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

/// A chunk's file before it is published: complete, but not yet at `F`.
#[derive(Debug)]
pub struct TempFile {
    /// The open file the chunk is written to.
    pub file: File,
    /// `None` for an anonymous `O_TMPFILE` (nothing to clean up if we die);
    /// otherwise the unique name it was created under, removed on drop unless
    /// published.
    name: Option<OsString>,
    dir: Option<OwnedFd>,
    /// In tar format, the content's length (the header is written at publish).
    tar_content_len: Option<u64>,
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
            history: Keeper::default(),
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

    /// The producer's side of the bus's history ([`crate::history`]).
    pub fn history(&self) -> &Keeper {
        &self.history
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
        Ok(Current::Chunk(Chunk {
            file: File::from(fd),
            id: stat.version.id,
            len: stat.len,
            owner: stat.owner,
        }))
    }

    /// Creates the file a new chunk is written to: an anonymous `O_TMPFILE`
    /// in the bus directory when the filesystem supports it (nothing is left
    /// behind if the process dies), otherwise a file with a unique name
    /// created with `O_EXCL | O_NOFOLLOW`.
    pub fn create_temp(&self, anonymous: bool) -> Result<TempFile> {
        let mode = Mode::from_raw_mode(0o666);
        if anonymous && !self.refused.tmpfile.get() {
            let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
            match rustix::fs::openat(&self.dir, ".", flags, mode) {
                Ok(fd) => {
                    return Ok(TempFile {
                        file: File::from(fd),
                        name: None,
                        dir: None,
                        tar_content_len: None,
                    });
                }
                // Filesystems without O_TMPFILE say one of these.
                Err(Errno::OPNOTSUPP)
                | Err(Errno::ISDIR)
                | Err(Errno::INVAL)
                | Err(Errno::NOSYS) => {
                    // Said once, and not asked again: on NFS or FUSE every
                    // refused call is a round trip.
                    self.refused.tmpfile.set(true);
                    log::info!(
                        "{}: no O_TMPFILE support, using named temporary files",
                        self.dir_path.display()
                    );
                }
                Err(errno) => {
                    return Err(Error::file(
                        "cannot create a temporary file in",
                        &self.dir_path,
                        errno,
                    ));
                }
            }
        }
        self.create_named_temp(mode)
    }

    fn create_named_temp(&self, mode: Mode) -> Result<TempFile> {
        let flags =
            OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::RDWR | OFlags::CLOEXEC;
        let pid = rustix::process::getpid().as_raw_nonzero().get();
        for attempt in 0u32.. {
            let name = with_suffix(&self.name, &format!(".filebus-tmp.{pid}.{attempt}"));
            match rustix::fs::openat(&self.dir, name.as_os_str(), flags, mode) {
                Ok(fd) => {
                    let dir = self.dir.try_clone().map_err(|error| {
                        Error::file("cannot duplicate descriptor of", &self.dir_path, error)
                    })?;
                    return Ok(TempFile {
                        file: File::from(fd),
                        name: Some(name),
                        dir: Some(dir),
                        tar_content_len: None,
                    });
                }
                Err(Errno::EXIST) if attempt < 1000 => continue,
                Err(errno) => {
                    return Err(Error::file(
                        "cannot create a temporary file in",
                        &self.dir_path,
                        errno,
                    ));
                }
            }
        }
        unreachable!("the loop returns by its last attempt")
    }

    /// Stamps `temp` with the bus's next sequence number (see
    /// [`stamp_chunk`]); fails only where a tar header cannot be written.
    fn stamp(&self, temp: &TempFile, lock: &LockGuard<'_>) -> Result<Option<u64>> {
        stamp_chunk(temp, lock, &self.refused).map_err(|error| {
            Error::file(
                "cannot write a chunk's tar header in",
                &self.dir_path,
                error,
            )
        })
    }

    /// Makes `temp` the current chunk at `F`, atomically: readers see the
    /// previous chunk or this one, whole. The caller holds the bus lock.
    pub fn publish(&self, temp: TempFile, lock: &LockGuard<'_>) -> Result<()> {
        let sequence = self.stamp(&temp, lock)?;
        // Into history first: a consumer that sees the chunk at `F` finds
        // every earlier one there. A failure leaves the bus as it was.
        let linked = self
            .history
            .link(self, &temp.file, temp.name.as_deref(), sequence, lock)?;
        // Recorded before the chunk appears, so that a consumer woken by its
        // appearance finds the lock released at once instead of sleeping on it.
        record_sequence(lock, sequence, &self.refused);
        let staged = match &temp.name {
            Some(name) => name.clone(),
            None => {
                // Where `F` is absent (always, in lossless mode), linking the
                // complete anonymous file as `F` publishes it in one call.
                if !self.f_was_present.get() {
                    match link_anonymous(&temp.file, &self.dir, &self.name, &self.refused) {
                        Ok(()) => {
                            linked.published();
                            return Ok(());
                        }
                        Err(Errno::EXIST) => self.f_was_present.set(true),
                        Err(errno) => {
                            return Err(Error::file(
                                "cannot link a new chunk as",
                                &self.path,
                                errno,
                            ));
                        }
                    }
                }
                self.link_as_new(&temp.file)?;
                self.new_name.clone()
            }
        };
        let renamed = self.exchange_or_rename(&staged);
        temp.published();
        renamed.map(|()| linked.published())
    }

    /// Makes `temp` the current chunk only if there is none (lossless
    /// mode), or hands it back. The caller holds the bus lock.
    ///
    /// An anonymous file is linked as `F`, which fails if `F` exists: the
    /// link is the check, with no `stat` before it. A named one is renamed
    /// onto `F` after a check (which the lock keeps true among producers).
    pub fn publish_if_absent(
        &self,
        temp: TempFile,
        lock: &LockGuard<'_>,
    ) -> Result<Option<TempFile>> {
        if temp.name.is_some() {
            if self.exists()? {
                return Ok(Some(temp));
            }
            return self.publish(temp, lock).map(|()| None);
        }
        let sequence = self.stamp(&temp, lock)?;
        // Before the chunk appears, as in `publish`.
        record_sequence(lock, sequence, &self.refused);
        match link_anonymous(&temp.file, &self.dir, &self.name, &self.refused) {
            Ok(()) => Ok(None),
            Err(Errno::EXIST) => {
                // Not published after all: give the number back.
                record_sequence(lock, sequence.map(|given| given - 1), &self.refused);
                Ok(Some(temp))
            }
            Err(errno) => Err(Error::file("cannot link a new chunk as", &self.path, errno)),
        }
    }

    /// Puts the file named `staged` at `F`.
    ///
    /// When `F` exists, it is swapped with `staged` (`RENAME_EXCHANGE`) and
    /// the old chunk, now at `staged`, is deleted. The result is the same as
    /// renaming over `F`, atomically for readers, but on ext4 a rename that
    /// replaces a file first flushes the new file's data to disk
    /// (`auto_da_alloc`), which quadruples the cost of a lossy publish. A
    /// live stream has no use for that durability.
    fn exchange_or_rename(&self, staged: &OsStr) -> Result<()> {
        let rename_failed =
            |errno| Error::file("cannot rename a new chunk onto", &self.path, errno);
        let exchange = || {
            rustix::fs::renameat_with(
                &self.dir,
                staged,
                &self.dir,
                self.name.as_os_str(),
                RenameFlags::EXCHANGE,
            )
        };
        if !self.refused.exchange.get() {
            match exchange() {
                Ok(()) => return self.delete_replaced(staged, exchange),
                Err(Errno::NOENT) => self.f_was_present.set(false),
                Err(Errno::INVAL) | Err(Errno::NOSYS) | Err(Errno::OPNOTSUPP) => {
                    self.refused.exchange.set(true);
                }
                Err(errno) => return Err(rename_failed(errno)),
            }
        }
        rustix::fs::renameat(&self.dir, staged, &self.dir, self.name.as_os_str())
            .map_err(rename_failed)
    }

    /// Deletes what an exchange moved out of `F` to `staged`: the previous
    /// chunk, or a symlink. Anything else (a directory, a FIFO, a device:
    /// a rename would have refused to replace a directory, and would have
    /// deleted the others) is swapped back with `exchange` and reported.
    fn delete_replaced(
        &self,
        staged: &OsStr,
        exchange: impl Fn() -> rustix::io::Result<()>,
    ) -> Result<()> {
        let staged_path = self.dir_path.join(staged);
        let replaced = rustix::fs::statat(&self.dir, staged, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|errno| Error::file("cannot inspect", &staged_path, errno))?;
        if let Some(kind) =
            unusable_kind(FileType::from_raw_mode(replaced.st_mode)).filter(|&kind| kind != SYMLINK)
        {
            exchange()
                .map_err(|errno| Error::file("cannot put back what was at", &self.path, errno))?;
            // Our chunk is back under its temporary name: not wanted now.
            let _ = rustix::fs::unlinkat(&self.dir, staged, AtFlags::empty());
            return Err(Error::BadBusPath {
                path: self.path.clone(),
                problem: format!("is {kind}, not a bus file (left as it was)"),
            });
        }
        rustix::fs::unlinkat(&self.dir, staged, AtFlags::empty()).map_err(|errno| {
            Error::file("cannot delete the previous chunk at", &staged_path, errno)
        })
    }

    /// Links an anonymous chunk file as `F.__new__`. A stale `F.__new__` (left
    /// by a producer killed between link and rename, or planted) makes the
    /// link fail; it is then removed (unlinkat removes a symlink itself,
    /// never its target) and the link retried.
    fn link_as_new(&self, file: &File) -> Result<()> {
        let new_path = || self.dir_path.join(&self.new_name);
        match link_anonymous(file, &self.dir, &self.new_name, &self.refused) {
            Err(Errno::EXIST) => {}
            other => {
                return other.map_err(|errno| {
                    Error::file("cannot link a new chunk as", &new_path(), errno)
                });
            }
        }
        rustix::fs::unlinkat(&self.dir, self.new_name.as_os_str(), AtFlags::empty())
            .map_err(|errno| Error::file("cannot remove stale", &new_path(), errno))?;
        link_anonymous(file, &self.dir, &self.new_name, &self.refused)
            .map_err(|errno| Error::file("cannot link a new chunk as", &new_path(), errno))
    }

    /// What this process may delete in the bus directory, as a lossless
    /// consumer must; fails, naming the reason, if it may delete nothing.
    /// Checked once: [`DeleteRights::check`] then costs no system call.
    pub fn delete_rights(&self) -> Result<DeleteRights> {
        let access = Access::WRITE_OK | Access::EXEC_OK;
        rustix::fs::accessat(&self.dir, ".", access, AtFlags::EACCESS)
            .map_err(|errno| self.cannot_take(errno))?;
        let dir = rustix::fs::fstat(&self.dir)
            .map_err(|errno| Error::file("cannot inspect", &self.dir_path, errno))?;
        let me = rustix::process::geteuid().as_raw();
        let sticky = Mode::from_raw_mode(dir.st_mode).contains(Mode::SVTX);
        Ok(DeleteRights {
            me,
            // In a sticky directory (such as /tmp) only the owner of a file
            // or of the directory (or root) may delete it.
            restricted: sticky && me != 0 && me != dir.st_uid,
        })
    }

    fn cannot_take(&self, errno: Errno) -> Error {
        Error::file(
            "cannot take chunks (which means deleting them) from",
            &self.path,
            errno,
        )
    }

    /// Deletes the chunk at `F` (a lossless consumer took it). The caller
    /// holds the bus lock.
    pub fn remove_current(&self, _lock: &LockGuard<'_>) -> Result<()> {
        match rustix::fs::unlinkat(&self.dir, self.name.as_os_str(), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(errno) => Err(Error::file("cannot delete", &self.path, errno)),
        }
    }
}

/// Which file a name led to: its identity, and when its content was last
/// written (which tells apart two files given the same inode number in turn).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Version {
    pub(crate) id: ChunkId,
    modified: (i64, u32),
}

impl Version {
    fn of(stat: &rustix::fs::Stat) -> Version {
        Version {
            id: ChunkId::of(stat),
            modified: (stat.st_mtime, stat.st_mtime_nsec as u32),
        }
    }

    /// When the file's content was last written, as a time since the epoch
    /// (zero for a time before it).
    pub(crate) fn modified(&self) -> std::time::Duration {
        std::time::Duration::new(
            u64::try_from(self.modified.0).unwrap_or(0),
            self.modified.1.min(999_999_999),
        )
    }

    fn of_statx(statx: &rustix::fs::Statx) -> Version {
        Version {
            id: ChunkId::of_statx(statx),
            modified: (statx.stx_mtime.tv_sec, statx.stx_mtime.tv_nsec),
        }
    }
}

/// What [`stat_from_server`] tells of an open file.
pub(crate) struct OpenStat {
    pub(crate) version: Version,
    pub(crate) mode: u32,
    pub(crate) len: u64,
    pub(crate) owner: u32,
}

/// The identity, type, size and owner of the open file `fd`, asked of the
/// server on a network or FUSE filesystem rather than taken from the client's
/// attribute cache (`AT_STATX_FORCE_SYNC`; local filesystems ignore it).
///
/// On such a mount a lookup cached before another machine replaced `F` opens
/// the new file but reports the old one's size: a lossless consumer trusting
/// it would cut a longer chunk short, or take an end-of-stream marker for a
/// chunk that came out empty. The fresh size also lets reads reach the end
/// of the file (the client does not read past the size it knows).
pub(crate) fn stat_from_server(fd: &OwnedFd) -> rustix::io::Result<OpenStat> {
    let wanted = StatxFlags::TYPE
        | StatxFlags::MODE
        | StatxFlags::INO
        | StatxFlags::SIZE
        | StatxFlags::UID
        | StatxFlags::MTIME;
    match rustix::fs::statx(
        fd,
        c"",
        AtFlags::EMPTY_PATH | AtFlags::STATX_FORCE_SYNC,
        wanted,
    ) {
        Ok(statx) => Ok(OpenStat {
            version: Version::of_statx(&statx),
            mode: u32::from(statx.stx_mode),
            len: statx.stx_size,
            owner: statx.stx_uid,
        }),
        // Kernels before 4.11, and sandboxes that refuse statx (rustix
        // reports both as ENOSYS).
        Err(Errno::NOSYS) => rustix::fs::fstat(fd).map(|stat| OpenStat {
            version: Version::of(&stat),
            mode: stat.st_mode,
            len: stat.st_size as u64,
            owner: stat.st_uid,
        }),
        Err(errno) => Err(errno),
    }
}

/// Which file is at `name` in `dir` (a symlink is not followed) and of what
/// type, asked of the server as [`stat_from_server`] does: on a FUSE or
/// network mount a cached lookup can go on showing a file that another
/// machine replaced or removed.
pub(crate) fn stat_at_from_server(dir: &OwnedFd, name: &OsStr) -> rustix::io::Result<NameStat> {
    let flags = AtFlags::SYMLINK_NOFOLLOW | AtFlags::STATX_FORCE_SYNC;
    let wanted = StatxFlags::TYPE | StatxFlags::INO | StatxFlags::MTIME;
    match rustix::fs::statx(dir, name, flags, wanted) {
        Ok(statx) => Ok(NameStat {
            version: Version::of_statx(&statx),
            mode: u32::from(statx.stx_mode),
        }),
        // Kernels before 4.11: the client's view is all there is.
        Err(Errno::NOSYS) => {
            rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map(|stat| NameStat {
                version: Version::of(&stat),
                mode: stat.st_mode,
            })
        }
        Err(errno) => Err(errno),
    }
}

/// What [`stat_at_from_server`] tells of a name.
pub(crate) struct NameStat {
    pub(crate) version: Version,
    pub(crate) mode: u32,
}

impl ChunkId {
    /// The identity of the file `stat` describes.
    pub(crate) fn of(stat: &rustix::fs::Stat) -> ChunkId {
        ChunkId {
            dev: stat.st_dev,
            ino: stat.st_ino,
        }
    }

    /// The identity of the file `statx` describes (the same numbers as
    /// [`ChunkId::of`] gives).
    fn of_statx(statx: &rustix::fs::Statx) -> ChunkId {
        ChunkId {
            dev: rustix::fs::makedev(statx.stx_dev_major, statx.stx_dev_minor),
            ino: statx.stx_ino,
        }
    }
}

impl TempFile {
    /// Marks the file as a tar archive with `len` bytes of content, whose
    /// header is to be written when it is published.
    pub fn set_tar_content_len(&mut self, len: u64) {
        self.tar_content_len = Some(len);
    }

    /// Whether the file is an anonymous `O_TMPFILE`, reachable by no name.
    pub fn is_anonymous(&self) -> bool {
        self.name.is_none()
    }

    /// Forget the name: it now belongs to `F`.
    fn published(mut self) {
        self.name = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let (Some(name), Some(dir)) = (&self.name, &self.dir) {
            let _ = rustix::fs::unlinkat(dir, name.as_os_str(), AtFlags::empty());
        }
    }
}

const SYMLINK: &str = "a symbolic link";

/// Why a file of this type cannot be a chunk, or `None` if it can.
fn unusable_kind(file_type: FileType) -> Option<&'static str> {
    match file_type {
        FileType::RegularFile => None,
        FileType::Directory => Some("a directory"),
        FileType::Fifo => Some("a FIFO (named pipe)"),
        FileType::CharacterDevice | FileType::BlockDevice => Some("a device"),
        FileType::Socket => Some("a socket"),
        FileType::Symlink => Some(SYMLINK),
        FileType::Unknown => Some("a file of unknown type"),
    }
}

/// The suffixes of the names derived from `F` in its directory.
const DERIVED_SUFFIXES: &[&str] = &[
    NEW_SUFFIX,
    LOCK_SUFFIX,
    crate::history::HISTORY_SUFFIX,
    crate::cursor::CONSUMERS_SUFFIX,
];

/// The longest file name on Linux filesystems, where `statvfs` cannot say.
const DEFAULT_NAME_MAX: u64 = 255;

/// Refuses a bus name too long for the names derived from it (`F.__new__`,
/// `F.consumers`)
/// on its filesystem, before anything is published: otherwise the first
/// publish (linked straight at `F`) works and every later one fails.
fn check_name_room(dir: &OwnedFd, name: &OsStr, path: &Path) -> Result<()> {
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

fn with_suffix(name: &OsStr, suffix: &str) -> OsString {
    let mut joined = name.to_owned();
    joined.push(suffix);
    joined
}

/// Stamps a chunk about to be published with the bus's next sequence number
/// and the time (extended attributes in raw format, the PAX header in tar
/// format); returns the number, to be recorded once published.
fn stamp_chunk(
    temp: &TempFile,
    lock: &LockGuard<'_>,
    refused: &Refusals,
) -> std::io::Result<Option<u64>> {
    let sequence = (!refused.stamps.get())
        .then(|| stamp::next_sequence(stamp::last_sequence(lock.lock_file())));
    let published_ns = stamp::now_ns();
    if let Some(content_len) = temp.tar_content_len {
        let header_stamp = tar::ChunkStamp {
            sequence,
            published_ns: Some(published_ns),
        };
        let header = tar::encode_header(content_len, &header_stamp, published_ns / 1_000_000_000);
        debug_assert_eq!(header.len() as u64, TAR_HEADER_LEN);
        if header.len() as u64 != TAR_HEADER_LEN {
            return Err(std::io::Error::other(
                "the tar header does not fit the room left for it",
            ));
        }
        temp.file.write_all_at(&header, 0)?;
        return Ok(sequence);
    }
    let Some(sequence) = sequence else {
        return Ok(None);
    };
    match stamp::write(
        &temp.file,
        Stamp {
            sequence,
            published_ns,
        },
    ) {
        Ok(()) => Ok(Some(sequence)),
        Err(errno) => {
            log::info!("chunks are not stamped: cannot set extended attributes ({errno})");
            refused.stamps.set(true);
            Ok(None)
        }
    }
}

/// Records a published chunk's sequence number on the lock file.
fn record_sequence(lock: &LockGuard<'_>, sequence: Option<u64>, refused: &Refusals) {
    let Some(sequence) = sequence else { return };
    if let Err(errno) = stamp::set_last_sequence(lock.lock_file(), sequence) {
        // Without the counter every chunk would get the same number.
        log::info!("chunks are not stamped: cannot record the sequence on the lock file ({errno})");
        refused.stamps.set(true);
    }
}

/// Gives an anonymous `O_TMPFILE` a name in `dir`. `AT_EMPTY_PATH` needs
/// `CAP_DAC_READ_SEARCH` on older kernels; `/proc/self/fd` works for anyone.
pub(crate) fn link_anonymous(
    file: &File,
    dir: &OwnedFd,
    name: &OsStr,
    refused: &Refusals,
) -> rustix::io::Result<()> {
    if !refused.empty_path.get() {
        match rustix::fs::linkat(file.as_fd(), "", dir, name, AtFlags::EMPTY_PATH) {
            Err(Errno::NOENT) | Err(Errno::PERM) | Err(Errno::INVAL) => {
                refused.empty_path.set(true);
            }
            other => return other,
        }
    }
    let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
    rustix::fs::linkat(
        rustix::fs::CWD,
        proc_path.as_str(),
        dir,
        name,
        AtFlags::SYMLINK_FOLLOW,
    )
}

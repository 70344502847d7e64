//! Reading a history directory, as consumers and `filebus stat` do, and as
//! producers do to find what to drop: everything in it treated as hostile.

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::{DEPTH_NAME, MAX_DEPTH, directory_name, entry_name, parse_entry_name};
use crate::bus::identity::{stat_at_from_server, stat_from_server};
use crate::bus::{Bus, Chunk};
use crate::error::{Error, Result};

/// The most names examined in one listing of the directory, so that a
/// directory stuffed with foreign names cannot make a scan endless.
const MAX_SCANNED: usize = 4 * MAX_DEPTH as usize;
/// The largest `depth` file read.
const MAX_DEPTH_FILE: u64 = 64;

/// An open history directory.
#[derive(Debug)]
pub struct HistoryDir {
    /// An `O_PATH` descriptor of the directory.
    pub(super) dir: OwnedFd,
    pub(super) path: PathBuf,
    /// Whether it is on a network or FUSE filesystem (see
    /// [`crate::bus::verified_read`]).
    remote: bool,
}

/// What is at an entry's name.
#[derive(Debug)]
pub enum Entry {
    /// Nothing: never linked, or dropped out of the window.
    Missing,
    /// A regular file no larger than the limit given, open for reading.
    Chunk(Chunk),
    /// Something else, which is never read: a symlink, directory, FIFO...
    Foreign(&'static str),
}

/// A summary of the entries held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Holdings {
    /// Entries held (regular files under an entry name).
    pub chunks: u64,
    /// The smallest sequence held.
    pub oldest: Option<u64>,
    /// The largest sequence held.
    pub newest: Option<u64>,
    /// Their sizes added up (shared with `F` for the newest).
    pub bytes: u64,
}

impl HistoryDir {
    /// Opens the bus's history directory; `None` if there is none. Anything
    /// but a directory at `F.history` (a symlink included) is an error.
    pub fn open(bus: &Bus) -> Result<Option<HistoryDir>> {
        let name = directory_name(bus.name());
        let path = bus.dir_path().join(&name);
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rustix::fs::openat(bus.dir(), name.as_os_str(), flags, Mode::empty()) {
            Ok(dir) => Ok(Some(HistoryDir {
                dir,
                path,
                remote: bus.remote_filesystem().is_some(),
            })),
            Err(Errno::NOENT) => Ok(None),
            Err(Errno::NOTDIR) | Err(Errno::LOOP) => Err(Error::BadBusPath {
                path,
                problem: "is not a directory, so it cannot hold the bus's history".into(),
            }),
            Err(errno) => Err(Error::file("cannot open", &path, errno)),
        }
    }

    /// The directory's path, for messages.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The depth recorded in the directory, if it is there and sane.
    pub fn depth(&self) -> Option<u64> {
        let flags =
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
        let fd = rustix::fs::openat(&self.dir, DEPTH_NAME, flags, Mode::empty()).ok()?;
        let stat = rustix::fs::fstat(&fd).ok()?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile
            || stat.st_size as u64 > MAX_DEPTH_FILE
        {
            return None;
        }
        let mut text = [0u8; MAX_DEPTH_FILE as usize];
        let len = rustix::io::pread(&fd, &mut text, 0).ok()?;
        let depth: u64 = std::str::from_utf8(&text[..len])
            .ok()?
            .trim()
            .parse()
            .ok()?;
        (1..=MAX_DEPTH).contains(&depth).then_some(depth)
    }

    /// Opens entry `sequence` for reading, refusing anything but a regular
    /// file of at most `max_size` bytes.
    pub fn open_entry(&self, sequence: u64, max_size: u64) -> Result<Entry> {
        let name = entry_name(sequence);
        let flags =
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
        let fd = match rustix::fs::openat(&self.dir, name.as_str(), flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::STALE) => return Ok(Entry::Missing),
            Err(Errno::LOOP) => return Ok(Entry::Foreign("a symbolic link")),
            // A socket, or a device without a driver.
            Err(Errno::NXIO) | Err(Errno::NODEV) => return Ok(Entry::Foreign("a special file")),
            Err(errno) => return Err(Error::file("cannot open", &self.path.join(&name), errno)),
        };
        // The size from the server: an entry name comes back when a bus's
        // sequence starts again, and a mount may still cache the old one's.
        let stat = match stat_from_server(&fd) {
            Ok(stat) => stat,
            // Dropped from the window between our open and our look (on a
            // shared filesystem the open does not keep it).
            Err(Errno::NOENT | Errno::STALE) => return Ok(Entry::Missing),
            Err(errno) => return Err(Error::file("cannot inspect", &self.path.join(&name), errno)),
        };
        match FileType::from_raw_mode(stat.mode) {
            FileType::RegularFile => {}
            FileType::Directory => return Ok(Entry::Foreign("a directory")),
            FileType::Fifo => return Ok(Entry::Foreign("a FIFO")),
            _ => return Ok(Entry::Foreign("a special file")),
        }
        if stat.len > max_size {
            return Ok(Entry::Foreign("larger than --max-chunk-size"));
        }
        // An entry's name belongs to one chunk, but a client's cached size
        // can still be another's (an entry name comes back when the
        // sequence starts again): read past the cache, as at `F`.
        Ok(Entry::Chunk(Chunk::opened(fd, &stat, self.remote)))
    }

    /// Whether entry `sequence` is a regular file (a chunk) right now, as
    /// the server says: on a FUSE or network mount a cached lookup goes on
    /// showing an entry that another machine dropped, which would make a
    /// loss look like a hole.
    pub fn holds(&self, sequence: u64) -> bool {
        stat_at_from_server(&self.dir, OsStr::new(&entry_name(sequence)))
            .is_ok_and(|stat| FileType::from_raw_mode(stat.mode) == FileType::RegularFile)
    }

    /// Calls `each` with the sequence and file type of every entry name in
    /// the directory (at most [`MAX_SCANNED`] names are looked at).
    pub(super) fn for_each_entry(&self, mut each: impl FnMut(u64, FileType)) -> Result<()> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.dir, ".", flags, Mode::empty())
            .map_err(|errno| Error::file("cannot list", &self.path, errno))?;
        let mut dir = rustix::fs::Dir::new(fd)
            .map_err(|errno| Error::file("cannot list", &self.path, errno))?;
        for _ in 0..MAX_SCANNED {
            let entry = match dir.read() {
                None => break,
                Some(Ok(entry)) => entry,
                Some(Err(errno)) => return Err(Error::file("cannot list", &self.path, errno)),
            };
            if let Some(sequence) = parse_entry_name(entry.file_name().to_bytes()) {
                each(sequence, entry.file_type());
            }
        }
        Ok(())
    }

    /// The smallest sequence at or after `from` whose entry is present, if any.
    pub fn first_from(&self, from: u64) -> Result<Option<u64>> {
        let mut first: Option<u64> = None;
        self.for_each_entry(|sequence, kind| {
            if sequence >= from && kind != FileType::Directory {
                first = Some(first.map_or(sequence, |first| first.min(sequence)));
            }
        })?;
        Ok(first)
    }

    /// The largest sequence whose entry is present (a regular file, or a
    /// name whose type the listing does not give), if any. On a filesystem
    /// without extended attributes this is the bus's counter.
    pub fn newest(&self) -> Result<Option<u64>> {
        let mut newest: Option<u64> = None;
        self.for_each_entry(|sequence, kind| {
            if matches!(kind, FileType::RegularFile | FileType::Unknown) {
                newest = Some(newest.map_or(sequence, |newest| newest.max(sequence)));
            }
        })?;
        Ok(newest)
    }

    /// What the directory holds: its chunk entries (regular files), their
    /// range and total size.
    pub fn holdings(&self) -> Result<Holdings> {
        let mut names = Vec::new();
        self.for_each_entry(|sequence, kind| {
            if matches!(kind, FileType::RegularFile | FileType::Unknown) {
                names.push(sequence);
            }
        })?;
        let mut holdings = Holdings::default();
        for sequence in names {
            let Ok(stat) = rustix::fs::statat(
                &self.dir,
                entry_name(sequence).as_str(),
                AtFlags::SYMLINK_NOFOLLOW,
            ) else {
                continue;
            };
            if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
                continue;
            }
            holdings.chunks += 1;
            holdings.bytes = holdings.bytes.saturating_add(stat.st_size as u64);
            holdings.oldest = Some(holdings.oldest.map_or(sequence, |old| old.min(sequence)));
            holdings.newest = Some(holdings.newest.map_or(sequence, |new| new.max(sequence)));
        }
        Ok(holdings)
    }

    /// Unlinks entry `sequence` if it is a regular file (a chunk); leaves
    /// anything else alone. The caller holds the bus lock.
    pub(super) fn drop_entry(&self, sequence: u64) {
        let name = entry_name(sequence);
        match rustix::fs::statat(&self.dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile => {}
            _ => return,
        }
        if let Err(errno) = rustix::fs::unlinkat(&self.dir, name.as_str(), AtFlags::empty())
            && errno != Errno::NOENT
        {
            log::warn!(
                "cannot drop {} from history: {errno}",
                self.path.join(&name).display()
            );
        }
    }
}

//! Which file a name leads to: a chunk's identity (device and inode), and
//! what the server says of a file, past a network or FUSE client's cache.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{AtFlags, FileType, StatxFlags};
use rustix::io::Errno;

/// The identity of a chunk: the device and inode of the file at `F`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkId {
    dev: u64,
    ino: u64,
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
pub(crate) fn stat_from_server(fd: impl AsFd) -> rustix::io::Result<OpenStat> {
    let fd = fd.as_fd();
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

/// What a symbolic link at `F` is called in messages.
pub(crate) const SYMLINK: &str = "a symbolic link";

/// Why a file of this type cannot be a chunk, or `None` if it can.
pub(crate) fn unusable_kind(file_type: FileType) -> Option<&'static str> {
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

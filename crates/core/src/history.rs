//! The history of a bus: the last N published chunks, kept readable by
//! sequence number, so that consumers can catch up and replay.
//!
//! For a bus at `F`, the history is the directory `F.history/`:
//!
//! | name in `F.history/`        | what it is                                          |
//! |-----------------------------|-----------------------------------------------------|
//! | `depth`                     | N, the number of chunks kept, in decimal ASCII      |
//! | `00000000000000000042`      | chunk 42: another hard link to the file published at `F` |
//!
//! Entry names are the chunk's sequence number ([`crate::stamp`]) written
//! with [`ENTRY_DIGITS`] digits, so `ls` sorts them. Every entry is a hard
//! link to the very file that was renamed onto `F`: no byte is copied.
//!
//! Producers ([`Keeper`]) link each chunk into the history and unlink the
//! entry that falls out of the window, both under the bus lock, with the
//! publish. The depth belongs to the bus: it is written once, when the
//! directory is created, and every one of our producers keeps that depth,
//! whatever its own options; a producer asking for another depth is refused.
//! Before unlinking an entry a producer waits until every live named
//! consumer ([`crate::cursor`]) has written it out.
//!
//! Everything in the directory is treated as hostile: it is reached through a
//! directory descriptor with `O_NOFOLLOW`, foreign names are ignored, entries
//! that are not regular files or are larger than `--max-chunk-size` are
//! refused, and nothing is ever deleted but regular files under an entry name
//! whose sequence fell out of the window.

use std::cell::RefCell;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::bus::{Bus, Chunk};
use crate::cursor::{self, CursorWait};
use crate::error::{Error, Result};
use crate::lock::LockGuard;

/// Suffix of the history directory's name.
pub const HISTORY_SUFFIX: &str = ".history";
/// The file in the history directory that holds its depth.
pub const DEPTH_NAME: &str = "depth";
/// Digits in an entry's name: enough for any `u64`.
pub const ENTRY_DIGITS: usize = 20;
/// The deepest history a bus may keep (a bound on what is read from `depth`).
pub const MAX_DEPTH: u64 = 1 << 20;
/// The most names examined in one listing of the directory, so that a
/// directory stuffed with foreign names cannot make a scan endless.
const MAX_SCANNED: usize = 4 * MAX_DEPTH as usize;
/// The largest `depth` file read.
const MAX_DEPTH_FILE: u64 = 64;

/// The name of history entry `sequence`.
pub fn entry_name(sequence: u64) -> String {
    format!("{sequence:0ENTRY_DIGITS$}")
}

/// The sequence number an entry name stands for, or `None` for any other name.
pub fn parse_entry_name(name: &[u8]) -> Option<u64> {
    if name.len() != ENTRY_DIGITS || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // 20 digits may exceed u64::MAX: parse refuses those.
    std::str::from_utf8(name).ok()?.parse().ok()
}

/// The name of the history directory of the bus file named `bus_name`.
pub fn directory_name(bus_name: &OsStr) -> OsString {
    let mut name = bus_name.to_owned();
    name.push(HISTORY_SUFFIX);
    name
}

/// Whether the bus has something at `F.history` (checked without following
/// a symlink; what it is is checked when it is opened).
pub fn exists(bus: &Bus) -> bool {
    rustix::fs::statat(
        bus.dir(),
        directory_name(bus.name()).as_os_str(),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .is_ok()
}

/// An open history directory.
#[derive(Debug)]
pub struct HistoryDir {
    /// An `O_PATH` descriptor of the directory.
    dir: OwnedFd,
    path: PathBuf,
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
            Ok(dir) => Ok(Some(HistoryDir { dir, path })),
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
        let stat = match crate::bus::stat_from_server(&fd) {
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
        Ok(Entry::Chunk(Chunk {
            file: File::from(fd),
            id: stat.version.id,
            len: stat.len,
            owner: stat.owner,
        }))
    }

    /// Whether entry `sequence` is a regular file (a chunk) right now, as
    /// the server says: on a FUSE or network mount a cached lookup goes on
    /// showing an entry that another machine dropped, which would make a
    /// loss look like a hole.
    pub fn holds(&self, sequence: u64) -> bool {
        crate::bus::stat_at_from_server(&self.dir, OsStr::new(&entry_name(sequence)))
            .is_ok_and(|stat| FileType::from_raw_mode(stat.mode) == FileType::RegularFile)
    }

    /// Calls `each` with the sequence and file type of every entry name in
    /// the directory (at most [`MAX_SCANNED`] names are looked at).
    fn for_each_entry(&self, mut each: impl FnMut(u64, FileType)) -> Result<()> {
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
    fn drop_entry(&self, sequence: u64) {
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

/// A producer's side of the history: configured once, then called by
/// [`Bus::publish`] under the bus lock.
#[derive(Debug, Default)]
pub struct Keeper {
    state: RefCell<KeeperState>,
}

#[derive(Debug, Default)]
struct KeeperState {
    /// `--history N`, if given.
    requested: Option<u64>,
    /// Lossless producers leave history alone.
    disabled: bool,
    sleep_interval: Duration,
    file_monitoring: bool,
    /// The history directory once found or made.
    held: Option<Held>,
    /// Waits for named consumers, once there were any to wait for.
    waiter: Option<CursorWait>,
    /// A history directory without a depth was reported once.
    warned: bool,
}

impl Held {
    /// Drops every chunk entry outside the window that `sequence` is about
    /// to end: left by a producer killed mid-publish, or from before the
    /// bus's counter was reset (numbers above `sequence`).
    fn sweep(&mut self, sequence: u64) {
        self.swept = true;
        // The entry leaving the window with this publish stays until the
        // publish succeeds (see Keeper::trim).
        let leaving = sequence.saturating_sub(self.depth);
        let mut stale = Vec::new();
        let listed = self.dir.for_each_entry(|entry, kind| {
            if (entry < leaving || entry >= sequence) && kind != FileType::Directory {
                stale.push(entry);
            }
        });
        if let Err(error) = listed {
            log::warn!("{error}");
        }
        for entry in stale {
            self.dir.drop_entry(entry);
        }
    }
}

#[derive(Debug)]
struct Held {
    dir: HistoryDir,
    depth: u64,
    /// Whether this producer swept stale entries (left by a killed producer,
    /// or from before the bus's counter was reset) yet.
    swept: bool,
}

impl Keeper {
    /// Sets what this producer asks for: `--history` (`requested`), whether
    /// it is lossless (then it never touches history), and how to wait for
    /// named consumers.
    pub fn configure(
        &self,
        requested: Option<u64>,
        lossless: bool,
        sleep_interval: Duration,
        file_monitoring: bool,
    ) {
        let mut state = self.state.borrow_mut();
        state.requested = requested;
        state.disabled = lossless;
        state.sleep_interval = sleep_interval;
        state.file_monitoring = file_monitoring;
    }

    /// Whether this producer keeps a history (it found or made one).
    pub fn is_active(&self) -> bool {
        self.state.borrow().held.is_some()
    }

    /// The depth kept, once active.
    pub fn depth(&self) -> Option<u64> {
        self.state.borrow().held.as_ref().map(|held| held.depth)
    }

    /// Finds the history directory, or makes it if `--history` was given;
    /// checks that its depth is the one asked for. The caller holds the bus
    /// lock, so that producers never race to create it.
    pub fn prepare(&self, bus: &Bus, _lock: &LockGuard<'_>) -> Result<()> {
        let mut state = self.state.borrow_mut();
        if state.disabled || state.held.is_some() {
            return Ok(());
        }
        let requested = state.requested;
        let dir = match HistoryDir::open(bus) {
            Ok(Some(dir)) => dir,
            Ok(None) => {
                let Some(depth) = requested else {
                    return Ok(());
                };
                create_directory(bus)?;
                let Some(dir) = HistoryDir::open(bus)? else {
                    return Err(Error::BadBusPath {
                        path: bus.dir_path().join(directory_name(bus.name())),
                        problem: "disappeared right after it was created".into(),
                    });
                };
                write_depth(&dir, depth)?;
                state.held = Some(Held {
                    dir,
                    depth,
                    swept: false,
                });
                return Ok(());
            }
            // A producer that did not ask for history goes on without it.
            Err(error) if requested.is_none() => {
                if !state.warned {
                    log::warn!("{error}: publishing without history");
                    state.warned = true;
                }
                return Ok(());
            }
            Err(error) => return Err(error),
        };
        let depth = match (dir.depth(), requested) {
            (Some(depth), Some(asked)) if depth != asked => {
                return Err(Error::BadBusPath {
                    path: dir.path().to_owned(),
                    problem: format!(
                        "keeps the last {depth} chunks, but this producer asks for --history {asked} \
                         (give the same depth, or leave --history out to keep the bus's)"
                    ),
                });
            }
            (Some(depth), _) => depth,
            (None, Some(asked)) => {
                write_depth(&dir, asked)?;
                asked
            }
            (None, None) => {
                if !state.warned {
                    log::warn!(
                        "{} has no readable depth file: publishing without history",
                        dir.path().display()
                    );
                    state.warned = true;
                }
                return Ok(());
            }
        };
        state.held = Some(Held {
            dir,
            depth,
            swept: false,
        });
        Ok(())
    }

    /// Links the chunk about to be published (`file`, named `temp_name` in
    /// the bus directory unless it is anonymous) into the history as entry
    /// `sequence`, after waiting until every live named consumer wrote out
    /// the entry that will fall out of the window. Called by
    /// [`Bus::publish`] under the bus lock, before the chunk goes to `F`.
    ///
    /// Unless [`Linked::published`] is called, dropping the result unlinks
    /// the entry again: a publish that fails leaves the history as it was.
    pub(crate) fn link(
        &self,
        bus: &Bus,
        file: &File,
        temp_name: Option<&OsStr>,
        sequence: Option<u64>,
        lock: &LockGuard<'_>,
    ) -> Result<Linked<'_>> {
        let unlinked = Linked {
            keeper: self,
            sequence,
            armed: false,
        };
        self.prepare(bus, lock)?;
        let mut state = self.state.borrow_mut();
        let KeeperState {
            held: Some(held),
            waiter,
            sleep_interval,
            file_monitoring,
            ..
        } = &mut *state
        else {
            return Ok(unlinked);
        };
        // Where chunks cannot be stamped (no user extended attributes, as
        // on NFSv3), the newest entry's name is the bus's counter: every
        // producer links under the lock, and the newest entry never leaves.
        let sequence = match sequence {
            Some(sequence) => sequence,
            None => crate::stamp::next_sequence(held.dir.newest()?),
        };
        if let Some(leaving) = sequence
            .checked_sub(held.depth)
            .filter(|&leaving| leaving > 0)
        {
            cursor::wait_until_written(bus, leaving, waiter, *sleep_interval, *file_monitoring)?;
        }
        if !held.swept {
            // Before linking, so that what a killed producer left and the
            // new entry never add up to more than the depth plus one.
            held.sweep(sequence);
        }
        let name = entry_name(sequence);
        let link = || match temp_name {
            Some(temp_name) => rustix::fs::linkat(
                bus.dir(),
                temp_name,
                &held.dir.dir,
                name.as_str(),
                AtFlags::empty(),
            ),
            None => {
                crate::bus::link_anonymous(file, &held.dir.dir, OsStr::new(&name), bus.refusals())
            }
        };
        let failed =
            |errno| Error::file("cannot keep a chunk in", &held.dir.path.join(&name), errno);
        match link() {
            Ok(()) => {}
            // A stale entry of this number: from before the bus's counter
            // was reset, or left by a producer killed mid-publish.
            Err(Errno::EXIST) => {
                held.dir.drop_entry(sequence);
                link().map_err(failed)?;
            }
            Err(errno) => return Err(failed(errno)),
        }
        Ok(Linked {
            armed: true,
            sequence: Some(sequence),
            ..unlinked
        })
    }

    /// Drops the entry that fell out of the window now that `sequence` is
    /// published. The first time, also sweeps entries left out of the window
    /// by earlier producers. Called by [`Bus::publish`] under the bus lock.
    fn trim(&self, sequence: Option<u64>) {
        let mut state = self.state.borrow_mut();
        let (Some(held), Some(sequence)) = (&mut state.held, sequence) else {
            return;
        };
        let window_start = sequence.saturating_sub(held.depth - 1);
        if let Some(leaving) = window_start.checked_sub(1).filter(|&leaving| leaving > 0) {
            held.dir.drop_entry(leaving);
        }
    }
}

/// A chunk linked into history whose publish is under way.
#[derive(Debug)]
pub(crate) struct Linked<'a> {
    keeper: &'a Keeper,
    sequence: Option<u64>,
    /// Whether dropping this unlinks the entry (the publish failed).
    armed: bool,
}

impl Linked<'_> {
    /// The chunk is at `F`: keep its entry, and drop the one that fell out
    /// of the window.
    pub(crate) fn published(mut self) {
        self.armed = false;
        self.keeper.trim(self.sequence);
    }
}

impl Drop for Linked<'_> {
    fn drop(&mut self) {
        if let (true, Some(sequence)) = (self.armed, self.sequence)
            && let Some(held) = &self.keeper.state.borrow().held
        {
            held.dir.drop_entry(sequence);
        }
    }
}

/// Creates `F.history` (an existing one is fine: another producer made it).
fn create_directory(bus: &Bus) -> Result<()> {
    let name = directory_name(bus.name());
    match rustix::fs::mkdirat(bus.dir(), name.as_os_str(), Mode::from_raw_mode(0o777)) {
        Ok(()) | Err(Errno::EXIST) => Ok(()),
        Err(errno) => Err(Error::file(
            "cannot create",
            &bus.dir_path().join(&name),
            errno,
        )),
    }
}

/// Records the depth in a new `depth` file. An existing one (unreadable,
/// since its depth was not found) is left alone and reported.
fn write_depth(dir: &HistoryDir, depth: u64) -> Result<()> {
    let path = dir.path.join(DEPTH_NAME);
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(&dir.dir, DEPTH_NAME, flags, Mode::from_raw_mode(0o666)) {
        Ok(fd) => fd,
        Err(Errno::EXIST) => {
            return Err(Error::BadBusPath {
                path,
                problem: "is not a depth this program can read (remove the history directory \
                          while no producer runs to start afresh)"
                    .into(),
            });
        }
        Err(errno) => return Err(Error::file("cannot create", &path, errno)),
    };
    let text = format!("{depth}\n");
    match rustix::io::write(&fd, text.as_bytes()) {
        Ok(written) if written == text.len() => Ok(()),
        Ok(_) => Err(Error::file("cannot write", &path, Errno::NOSPC)),
        Err(errno) => Err(Error::file("cannot write", &path, errno)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_are_zero_padded_and_parse_back() {
        assert_eq!(entry_name(42), "00000000000000000042");
        assert_eq!(parse_entry_name(entry_name(42).as_bytes()), Some(42));
        assert_eq!(
            parse_entry_name(entry_name(u64::MAX).as_bytes()),
            Some(u64::MAX)
        );
    }

    #[test]
    fn foreign_names_are_not_entries() {
        for name in [
            "depth",
            "42",
            "0000000000000000004x",
            "99999999999999999999",
            "000000000000000000042",
            "+0000000000000000042",
            "",
        ] {
            assert_eq!(parse_entry_name(name.as_bytes()), None, "{name:?}");
        }
    }
}

//! A producer's side of the history: it links each chunk it publishes into
//! `F.history/` and drops the entry that leaves the window, waiting first
//! for live named consumers ([`crate::cursor`]) to write that entry out.

use std::cell::RefCell;
use std::ffi::OsStr;
use std::time::Duration;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::reader::HistoryDir;
use super::{DEPTH_NAME, directory_name, entry_name};
use crate::bus::lock::LockGuard;
use crate::bus::publish::Stamped;
use crate::bus::temp_file::{TempFile, link_anonymous};
use crate::bus::{Bus, stamp};
use crate::cursor::wait::{CursorWait, wait_until_written};
use crate::error::{Error, Report, Result};

/// A lossy producer's side of the history: it publishes each chunk
/// ([`HistoryWriter::publish`]) into the history and at `F`. (Lossless
/// producers leave history alone, and have none.)
#[derive(Debug)]
pub struct HistoryWriter {
    state: RefCell<WriterState>,
}

#[derive(Debug)]
struct WriterState {
    /// `--history N`, if given.
    requested: Option<u64>,
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
        // publish succeeds (see HistoryWriter::trim).
        let leaving = sequence.saturating_sub(self.depth);
        let mut stale = Vec::new();
        let listed = self.dir.for_each_entry(|entry, kind| {
            if (entry < leaving || entry >= sequence) && kind != FileType::Directory {
                stale.push(entry);
            }
        });
        if let Err(error) = listed {
            log::warn!("{}", Report(&error));
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

impl HistoryWriter {
    /// The history side of a producer that asks for `--history` `requested`
    /// (`None`: keep the bus's history if it has one), waiting for named
    /// consumers by events (`file_monitoring`) or every `sleep_interval`.
    pub fn new(requested: Option<u64>, sleep_interval: Duration, file_monitoring: bool) -> Self {
        HistoryWriter {
            state: RefCell::new(WriterState {
                requested,
                sleep_interval,
                file_monitoring,
                held: None,
                waiter: None,
                warned: false,
            }),
        }
    }

    /// Makes `temp` the current chunk at `F`, as [`Bus::publish`] does, and
    /// keeps it in the history (if the bus has one): linked into it before
    /// it reaches `F`, so that a consumer that sees it at `F` finds every
    /// earlier one there, and the entry leaving the window dropped after.
    /// A failure leaves the bus and its history as they were. The caller
    /// holds the bus lock.
    pub fn publish(&self, bus: &Bus, temp: TempFile, lock: &LockGuard<'_>) -> Result<()> {
        let stamped = bus.stamp(temp, lock)?;
        let linked = self.link(bus, &stamped, lock)?;
        bus.publish_stamped(stamped, lock)?;
        linked.published();
        Ok(())
    }

    /// Whether this producer keeps a history (it found or made one).
    pub fn is_active(&self) -> bool {
        self.state.borrow().held.is_some()
    }

    /// Finds the history directory, or makes it if `--history` was given;
    /// checks that its depth is the one asked for. The caller holds the bus
    /// lock, so that producers never race to create it.
    pub fn prepare(&self, bus: &Bus, _lock: &LockGuard<'_>) -> Result<()> {
        let mut state = self.state.borrow_mut();
        if state.held.is_some() {
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
                    log::warn!("{}: publishing without history", Report(&error));
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

    /// Links the chunk about to be published into the history as the entry
    /// of its sequence number, after waiting until every live named
    /// consumer wrote out the entry that will fall out of the window. Called
    /// under the bus lock, before the chunk goes to `F`.
    ///
    /// Unless [`Linked::published`] is called, dropping the result unlinks
    /// the entry again: a publish that fails leaves the history as it was.
    fn link(&self, bus: &Bus, stamped: &Stamped, lock: &LockGuard<'_>) -> Result<Linked<'_>> {
        let (file, temp_name, sequence) = (
            &stamped.temp().file,
            stamped.temp().name(),
            stamped.sequence(),
        );
        let unlinked = Linked {
            writer: self,
            sequence,
            armed: false,
        };
        self.prepare(bus, lock)?;
        let mut state = self.state.borrow_mut();
        let WriterState {
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
            None => stamp::next_sequence(held.dir.newest()?),
        };
        if let Some(leaving) = sequence
            .checked_sub(held.depth)
            .filter(|&leaving| leaving > 0)
        {
            wait_until_written(bus, leaving, waiter, *sleep_interval, *file_monitoring)?;
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
            None => link_anonymous(file, &held.dir.dir, OsStr::new(&name), bus.refusals()),
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
    /// by earlier producers. Called under the bus lock.
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
struct Linked<'a> {
    writer: &'a HistoryWriter,
    sequence: Option<u64>,
    /// Whether dropping this unlinks the entry (the publish failed).
    armed: bool,
}

impl Linked<'_> {
    /// The chunk is at `F`: keep its entry, and drop the one that fell out
    /// of the window.
    fn published(mut self) {
        self.armed = false;
        self.writer.trim(self.sequence);
    }
}

impl Drop for Linked<'_> {
    fn drop(&mut self) {
        if let (true, Some(sequence)) = (self.armed, self.sequence)
            && let Some(held) = &self.writer.state.borrow().held
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

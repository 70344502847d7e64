//! Putting a chunk at `F`: stamped, then linked or renamed there under the
//! bus lock, atomically for readers.

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::fs::FileExt;

use rustix::fs::{AtFlags, FileType, RenameFlags};
use rustix::io::Errno;

use super::format::TAR_HEADER_LEN;
use super::identity::{SYMLINK, unusable_kind};
use super::lock::LockGuard;
use super::stamp::{self, Stamp};
use super::temp_file::{TempFile, link_anonymous};
use super::{Bus, Refusals};
use crate::error::{Error, Result};
use crate::tar;

/// A chunk about to be published, stamped with the number it is given
/// ([`Bus::stamp`]): what a layer above the bus (history) needs to act on
/// before [`Bus::publish_stamped`] puts it at `F`.
#[derive(Debug)]
pub struct Stamped {
    temp: TempFile,
    sequence: Option<u64>,
}

impl Stamped {
    /// The chunk's file.
    pub fn temp(&self) -> &TempFile {
        &self.temp
    }

    /// The sequence number it was stamped with (`None`: unstamped).
    pub fn sequence(&self) -> Option<u64> {
        self.sequence
    }
}

impl Bus {
    /// Stamps `temp` with the bus's next sequence number and the time
    /// (extended attributes in raw format, the PAX header in tar format):
    /// the first step of a publish. Fails only where a tar
    /// header cannot be written. The caller holds the bus lock.
    pub fn stamp(&self, temp: TempFile, lock: &LockGuard<'_>) -> Result<Stamped> {
        let sequence = stamp_chunk(&temp, lock, &self.refused).map_err(|error| {
            Error::file(
                "cannot write a chunk's tar header in",
                &self.dir_path,
                error,
            )
        })?;
        Ok(Stamped { temp, sequence })
    }

    /// Makes `temp` the current chunk at `F`, atomically: readers see the
    /// previous chunk or this one, whole. The caller holds the bus lock.
    pub fn publish(&self, temp: TempFile, lock: &LockGuard<'_>) -> Result<()> {
        let stamped = self.stamp(temp, lock)?;
        self.publish_stamped(stamped, lock)
    }

    /// Makes a stamped chunk the current chunk at `F` (the rest of
    /// [`Bus::publish`]). The caller holds the bus lock.
    pub fn publish_stamped(&self, stamped: Stamped, lock: &LockGuard<'_>) -> Result<()> {
        let Stamped { temp, sequence } = stamped;
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
                        Ok(()) => return Ok(()),
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
        renamed
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
        let Stamped { temp, sequence } = self.stamp(temp, lock)?;
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
            #[cfg(test)]
            if let Some(errno) = self.refused.exchange_fails_with.get() {
                return Err(errno);
            }
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// A bus `bus` in a new temporary directory.
    fn scratch_bus() -> (tempfile::TempDir, Bus) {
        let dir = tempfile::tempdir().expect("cannot make a temporary directory");
        let bus = Bus::open(&dir.path().join("bus")).expect("cannot open the bus");
        (dir, bus)
    }

    /// Publishes `bytes` in an anonymous temporary file, as producers do.
    fn publish(bus: &Bus, bytes: &[u8]) -> Result<()> {
        let temp = bus.create_temp(true)?;
        temp.file
            .write_all_at(bytes, 0)
            .expect("cannot write a chunk");
        let mut lock = bus.lock_file()?;
        let guard = lock.acquire()?;
        bus.publish(temp, &guard)
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("cannot list")
            .map(|entry| {
                let entry = entry.expect("cannot list");
                entry.file_name().to_string_lossy().into_owned()
            })
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_refused_exchange_falls_back_to_a_rename_for_good() {
        let (dir, bus) = scratch_bus();
        publish(&bus, b"first").expect("first publish");
        bus.refused.exchange_fails_with.set(Some(Errno::INVAL));
        publish(&bus, b"second").expect("a publish whose exchange is refused");
        assert!(bus.refused.exchange.get(), "the refusal was not remembered");
        assert_eq!(std::fs::read(dir.path().join("bus")).expect("F"), b"second");
        // Later publishes rename at once, without asking again.
        bus.refused.exchange_fails_with.set(Some(Errno::IO));
        publish(&bus, b"third").expect("a publish after the refusal");
        assert_eq!(std::fs::read(dir.path().join("bus")).expect("F"), b"third");
        assert_eq!(names_in(dir.path()), ["bus", "bus.lock"]);
    }

    #[test]
    fn an_exchange_that_finds_f_gone_renames_instead() {
        let (dir, bus) = scratch_bus();
        publish(&bus, b"first").expect("first publish");
        publish(&bus, b"second").expect("second publish");
        // Taken by a lossless consumer, or removed by another machine.
        std::fs::remove_file(dir.path().join("bus")).expect("cannot remove F");
        publish(&bus, b"third").expect("a publish onto a vanished F");
        assert_eq!(std::fs::read(dir.path().join("bus")).expect("F"), b"third");
        assert_eq!(names_in(dir.path()), ["bus", "bus.lock"]);
    }

    #[test]
    fn a_stale_new_name_is_replaced_and_a_symlink_there_never_followed() {
        let (dir, bus) = scratch_bus();
        publish(&bus, b"first").expect("first publish");
        // Left by a producer killed between link and rename.
        std::fs::write(dir.path().join("bus.__new__"), b"stale").expect("stale F.__new__");
        publish(&bus, b"second").expect("a publish over a stale F.__new__");
        assert_eq!(std::fs::read(dir.path().join("bus")).expect("F"), b"second");
        assert_eq!(names_in(dir.path()), ["bus", "bus.lock"]);
        // Planted: a symlink to a file of someone else's.
        let victim = tempfile::NamedTempFile::new().expect("victim");
        std::fs::write(victim.path(), b"victim").expect("victim");
        std::os::unix::fs::symlink(victim.path(), dir.path().join("bus.__new__"))
            .expect("cannot plant a symlink");
        publish(&bus, b"third").expect("a publish over a symlink at F.__new__");
        assert_eq!(std::fs::read(dir.path().join("bus")).expect("F"), b"third");
        assert_eq!(std::fs::read(victim.path()).expect("victim"), b"victim");
        assert_eq!(names_in(dir.path()), ["bus", "bus.lock"]);
    }

    #[test]
    fn a_directory_planted_at_f_is_left_as_it_was_and_the_publish_fails() {
        let (dir, bus) = scratch_bus();
        // Planted after the bus was opened (the open itself refuses one).
        std::fs::create_dir(dir.path().join("bus")).expect("cannot plant a directory");
        std::fs::write(dir.path().join("bus").join("kept"), b"kept").expect("kept");
        let error = publish(&bus, b"chunk").expect_err("a publish onto a directory");
        assert!(
            error.to_string().contains("is a directory, not a bus file"),
            "{error}"
        );
        assert!(dir.path().join("bus").is_dir(), "the directory was moved");
        assert_eq!(
            std::fs::read(dir.path().join("bus").join("kept")).expect("kept"),
            b"kept"
        );
        assert_eq!(names_in(dir.path()), ["bus", "bus.lock"]);
    }
}

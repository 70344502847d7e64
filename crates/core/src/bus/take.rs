//! Taking the chunk at `F`, as a lossless consumer does: the right to
//! delete it, and its deletion under the bus lock.

use rustix::fs::{Access, AtFlags, Mode};
use rustix::io::Errno;

use super::lock::LockGuard;
use super::{Bus, Chunk};
use crate::error::{Error, Result};

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

impl Bus {
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

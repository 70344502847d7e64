//! The file a chunk is built in before it is published: an anonymous
//! `O_TMPFILE` where the filesystem allows, otherwise a uniquely named file.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::names::{TEMP_SUFFIX_START, with_suffix};
use super::{Bus, Refusals};
use crate::error::{Error, Result};

/// A chunk's file before it is published: complete, but not yet at `F`.
#[derive(Debug)]
pub struct TempFile {
    /// The open file the chunk is written to.
    pub file: File,
    /// `None` for an anonymous `O_TMPFILE` (nothing to clean up if we die);
    /// otherwise the unique name it was created under, removed on drop unless
    /// published.
    pub(super) name: Option<OsString>,
    dir: Option<OwnedFd>,
    /// In tar format, the content's length (the header is written at publish).
    pub(super) tar_content_len: Option<u64>,
}

impl Bus {
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
            let name = with_suffix(&self.name, &format!("{TEMP_SUFFIX_START}{pid}.{attempt}"));
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

    /// The name it was created under in the bus directory, unless it is
    /// anonymous.
    pub(crate) fn name(&self) -> Option<&OsStr> {
        self.name.as_deref()
    }

    /// Forget the name: it now belongs to `F`.
    pub(super) fn published(mut self) {
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

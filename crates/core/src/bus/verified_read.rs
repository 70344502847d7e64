//! Reading a chunk on a network or FUSE filesystem: past the client's page
//! cache, whole, into memory, before a byte of it is written out.
//!
//! On a path-based FUSE filesystem (bindfs) the kernel keeps one inode, and
//! so one page cache and one size, per *name*: every chunk published at `F`
//! in turn is read through the same cache. A consumer that opened chunk X
//! at `F` and reads it after another process on the same client opened
//! what is at `F` now (chunk Y) reads Y's pages (a chunk written twice, or
//! in another's place), and stops at Y's size (a chunk cut short), with no
//! error: measured with bindfs 1.14.7 on Linux 6.18, and behind every
//! wrong chunk the soak of `results/2026-12-03-soak/` found on the mount.
//! NFS clients cache pages per file handle, but their size can be as stale.
//!
//! So on such a filesystem a consumer
//!
//! 1. reads through `O_DIRECT` ([`bypass_page_cache`]): each read goes to
//!    the filesystem with the open file's own handle, which holds X whatever
//!    is at the name now;
//! 2. reads the whole chunk into memory and checks that it got as many
//!    bytes as the server said the chunk has ([`read_whole`]): the client
//!    still stops a read at the size it believes, even with `O_DIRECT` (a
//!    read of X stops at 0 bytes once the client took an empty end-of-stream
//!    marker at `F` for X's size);
//! 3. where the filesystem refuses `O_DIRECT`, also asks the server after
//!    the read that the file is still the one opened, with the size it had
//!    (see `Output::emit`): weaker, since another process's read can fill
//!    the cache between, which is why `O_DIRECT` comes first.
//!
//! Only a chunk read whole and so checked is written out; anything else is
//! a chunk to look at again ([`Error::ChunkVanished`]). Local filesystems
//! keep the zero-copy path of [`crate::sink`]: none of this runs there.

use std::fs::File;
use std::os::fd::AsFd;

use rustix::fs::OFlags;
use rustix::io::Errno;

use crate::error::{Error, Result};

/// Makes reads of `fd` bypass the client's page cache (`O_DIRECT`, set with
/// `fcntl`, so the filesystem itself is not asked to open anything with
/// it); `false` if the filesystem refuses.
pub(crate) fn bypass_page_cache(fd: impl AsFd) -> bool {
    let fd = fd.as_fd();
    rustix::fs::fcntl_getfl(fd)
        .and_then(|flags| rustix::fs::fcntl_setfl(fd, flags | OFlags::DIRECT))
        .is_ok()
}

/// Reads the `len` bytes of `file` from `offset` into `buffer` (replacing
/// its content). Fails with [`Error::ChunkVanished`] if the file gives
/// fewer (its size as the client saw it was not the chunk's) or if it is
/// gone (`ESTALE`, `ENOENT`, `EFAULT`, `EIO`: see `sink::failure`).
///
/// `len` is at most `--max-chunk-size`, checked by the caller, so the
/// buffer is bounded.
pub(crate) fn read_whole(file: &File, offset: u64, len: u64, buffer: &mut Vec<u8>) -> Result<()> {
    let len = usize::try_from(len).map_err(|_| Error::ChunkVanished)?;
    buffer.clear();
    buffer.resize(len, 0);
    let mut done = 0;
    let mut direct_refused = false;
    while done < len {
        match rustix::io::pread(file, &mut buffer[done..], offset + done as u64) {
            Ok(0) => {
                log::debug!(
                    "read {done} of the chunk's {len} bytes: the client's idea of its size \
                     was another file's; looking again"
                );
                return Err(Error::ChunkVanished);
            }
            Ok(read) => done += read,
            Err(Errno::INTR) => {}
            // Some filesystems accept O_DIRECT but refuse reads that are
            // not aligned: read through the cache then (the caller checks
            // with the server afterwards).
            Err(Errno::INVAL) if !direct_refused && is_direct(file) => {
                direct_refused = true;
                let flags = rustix::fs::fcntl_getfl(file).map_err(|errno| {
                    Error::stream("cannot read the chunk being written out", errno)
                })?;
                rustix::fs::fcntl_setfl(file, flags - OFlags::DIRECT).map_err(|errno| {
                    Error::stream("cannot read the chunk being written out", errno)
                })?;
            }
            Err(Errno::STALE | Errno::NOENT | Errno::FAULT) => return Err(Error::ChunkVanished),
            // Also a disk's error: only a file that is gone is "vanished".
            Err(Errno::IO) if rustix::fs::fstat(file).map_or(true, |stat| stat.st_nlink == 0) => {
                return Err(Error::ChunkVanished);
            }
            Err(errno) => {
                return Err(Error::stream(
                    "cannot read the chunk being written out",
                    errno,
                ));
            }
        }
    }
    Ok(())
}

/// Whether reads of `file` bypass the page cache.
pub(crate) fn is_direct(file: &File) -> bool {
    rustix::fs::fcntl_getfl(file).is_ok_and(|flags| flags.contains(OFlags::DIRECT))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_the_whole_range() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"0123456789").unwrap();
        let mut buffer = Vec::new();
        read_whole(&file, 2, 5, &mut buffer).unwrap();
        assert_eq!(buffer, b"23456");
    }

    #[test]
    fn a_file_shorter_than_said_is_a_chunk_to_look_at_again() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"0123").unwrap();
        let mut buffer = Vec::new();
        assert!(matches!(
            read_whole(&file, 0, 16, &mut buffer),
            Err(Error::ChunkVanished)
        ));
    }
}

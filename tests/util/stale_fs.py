"""A pass-through FUSE filesystem whose open files go stale like NFS's.

    python3 stale_fs.py UNDERNEATH MOUNTPOINT

Everything under MOUNTPOINT is the directory UNDERNEATH, with one NFS
behaviour the local kernel never shows: a file that was deleted or replaced
(renamed over) in UNDERNEATH while open through the mount cannot be read or
inspected any more, and says so with ESTALE, as an NFS client does when
another client removed the file behind its file handle.

To make the window before a reader's first read wide enough to hit
reliably, the first read of a file named `bus` waits a little (READ_DELAY
seconds) before it looks at the file, like a slow server round trip. (The
wait is in the read, after the reader's last look at the file's attributes,
so that it is the read that goes stale.) Used by
tests/shared_fs.rs; runs in the foreground until unmounted.
"""

import errno
import os
import sys
import time

from fusepy import FUSE, FuseOSError, Operations

READ_DELAY = 0.02


class StaleAfterReplace(Operations):
    def __init__(self, root):
        self.root = root

    def _real(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    @staticmethod
    def _check_fresh(fh):
        # nlink 0: the file was unlinked or replaced underneath.
        if os.fstat(fh).st_nlink == 0:
            raise FuseOSError(errno.ESTALE)

    def getattr(self, path, fh=None):
        try:
            if fh is not None:
                self._check_fresh(fh)
                st = os.fstat(fh)
            else:
                st = os.lstat(self._real(path))
        except OSError as error:
            raise FuseOSError(error.errno)
        keys = ("st_mode", "st_ino", "st_dev", "st_nlink", "st_uid", "st_gid",
                "st_size", "st_atime", "st_mtime", "st_ctime")
        return {key: getattr(st, key) for key in keys}

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._real(path))

    def open(self, path, flags):
        try:
            fh = os.open(self._real(path), flags)
        except OSError as error:
            raise FuseOSError(error.errno)
        return fh

    def create(self, path, mode, fi=None):
        try:
            return os.open(self._real(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        except OSError as error:
            raise FuseOSError(error.errno)

    def read(self, path, size, offset, fh):
        if offset == 0 and os.path.basename(path) == "bus":
            time.sleep(READ_DELAY)
        try:
            self._check_fresh(fh)
            return os.pread(fh, size, offset)
        except OSError as error:
            raise FuseOSError(error.errno)

    def write(self, path, data, offset, fh):
        try:
            return os.pwrite(fh, data, offset)
        except OSError as error:
            raise FuseOSError(error.errno)

    def truncate(self, path, length, fh=None):
        with open(self._real(path), "r+b") as file:
            file.truncate(length)

    def release(self, path, fh):
        os.close(fh)

    def unlink(self, path):
        try:
            os.unlink(self._real(path))
        except OSError as error:
            raise FuseOSError(error.errno)

    def rename(self, old, new):
        try:
            os.rename(self._real(old), self._real(new))
        except OSError as error:
            raise FuseOSError(error.errno)

    def flush(self, path, fh):
        return 0


if __name__ == "__main__":
    underneath, mountpoint = sys.argv[1], sys.argv[2]
    # Attribute and lookup caches off, like NFS with actimeo=0: each look
    # at the bus reaches this process, as each one reaches the NFS server.
    FUSE(
        StaleAfterReplace(underneath),
        mountpoint,
        foreground=True,
        nothreads=False,
        attr_timeout=0,
        entry_timeout=0,
        negative_timeout=0,
        use_ino=True,
    )

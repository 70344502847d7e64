"""A pass-through FUSE filesystem that behaves like an NFSv3 client.

    python3 nfs_fs.py --state STATE [options] UNDERNEATH MOUNTPOINT

Everything under MOUNTPOINT is the directory UNDERNEATH. It is meant to be
mounted twice over the same UNDERNEATH, with the same STATE: two client
machines of one file server (UNDERNEATH is the server's disk; processes
working there directly are the server itself). Each mount is its own
daemon, as each client is its own kernel. Runs in the foreground until
unmounted; used by `SharedDir::nfs_like` in tests/util/fuse.rs.

What it shows, as NFSv3 clients of a server without open state do:

1. Inode numbers are the server's, and a number is reused. The mounts report
   their own small numbers (1 for the root), one per underlying file, shared
   by both mounts. A number is bound to an underlying file the first time
   either mount sees the file (lookup, create, getattr); a file seen for the
   first time takes the number of a deleted file (no link left underneath),
   the most recently deleted one, even while that file is still open through
   a mount: the server keeps no open state, so an open file does not keep its
   number. A file that still has another link (a history entry) keeps its
   number. So when the server (a process underneath) replaces `F` by rename,
   the new `F` reports the old `F`'s number; a replacement created through a
   mount was seen at its creation, when the old `F` still lived, so it takes
   an older freed number, and the file created after it takes the old `F`'s.
   Times are reported in whole seconds (`--coarse-times`, the default;
   `--fine-times` passes the nanoseconds through; `--frozen-times` reports
   every time as the epoch, for tests that must not depend on a second
   boundary), so that the inode number and the modification time together
   cannot tell two chunks apart.

   How the mounts agree: STATE/links/N is a hard link to the file numbered N
   (STATE must be on UNDERNEATH's filesystem), and STATE/dirs/N a symlink
   whose target is the directory's underlying inode number. A file whose
   only link is STATE/links/N is deleted, and N is free; binding a number
   replaces that link under an flock on STATE/lock. The extra link keeps the
   underlying inode (and so its underlying number) alive while it is mapped;
   the mounts report st_nlink without it, but processes underneath see one
   link more than there are names.

2. No extended attributes: getxattr, setxattr, listxattr and removexattr are
   not implemented, so the kernel answers EOPNOTSUPP (after one ENOSYS from
   this daemon, which it remembers).

3. No O_TMPFILE and no renameat2 flags: libfuse 2 does not know the kernel's
   TMPFILE request (the kernel answers EOPNOTSUPP) and speaks a protocol
   older than RENAME2 (the kernel answers EINVAL for RENAME_EXCHANGE and
   RENAME_NOREPLACE), as on NFSv3.

4. A read, write, truncate or getattr by handle of a file that was deleted
   (its last name removed or renamed over) through the other mount or
   underneath fails with ESTALE, or with the errno `--stale-errno` names
   (EFAULT and EIO are what real clients have returned). A file deleted
   through the same mount while open there is renamed to `.fuse_hidden...`
   by libfuse until closed, as an NFS client renames it to `.nfs...`
   (`--hard-remove` turns that off). `fstat` of an open descriptor is not a
   getattr by handle: libfuse 2's path-based API answers it for the file at
   the name now, as bindfs does. Reads bypass the page cache (direct_io), so
   each read reaches this daemon and each descriptor reads its own file.

5. Locks: by default `flock` is not forwarded: the kernel keeps each mount's
   locks to itself, so each mount excludes its own processes but the two
   mounts both get an "exclusive" lock, like NFSv3 without lockd (`nolock`).
   `--forward-locks` forwards `flock` to the underlying file, so both mounts
   and processes underneath share one lock (NFSv3 with lockd, NFSv4).
   fusepy 3.0.1 has no flock operation; this script appends libfuse 2.9's
   `poll`, `write_buf`, `read_buf`, `flock` and `fallocate` slots to fusepy's
   copy of `struct fuse_operations` to provide it. POSIX (fcntl) locks are
   never forwarded.

6. No attribute or lookup caching (attr_timeout=0, entry_timeout=0,
   negative_timeout=0, like `actimeo=0,lookupcache=none`): every look reaches
   this daemon. inotify on a mount sees only what went through that mount.
"""

import argparse
import contextlib
import ctypes
import errno
import fcntl
import logging
import os
import stat
import sys
import threading
import time

import fusepy
from fusepy import FUSE, FuseOSError, Operations, fuse_get_context

STALE_ERRNOS = {"ESTALE": errno.ESTALE, "EFAULT": errno.EFAULT, "EIO": errno.EIO}

# How often a blocking lock is tried again when locks are forwarded.
LOCK_POLL = 0.002


class Replaced(Exception):
    """The name was replaced while a number was being bound to its file."""


class Numbers:
    """The inode numbers both mounts report, kept in a state directory."""

    def __init__(self, state, underneath):
        self.links = os.path.join(state, "links")
        self.dirs = os.path.join(state, "dirs")
        os.makedirs(self.links, exist_ok=True)
        os.makedirs(self.dirs, exist_ok=True)
        if os.stat(state).st_dev != os.stat(underneath).st_dev:
            sys.exit(f"nfs_fs.py: the state directory {state} must be on the same "
                     f"filesystem as {underneath} (it holds hard links to its files)")
        self.links_fd = os.open(self.links, os.O_RDONLY | os.O_DIRECTORY)
        self.lock_fd = os.open(os.path.join(state, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
        self.mutex = threading.Lock()
        # Underlying inode number -> our number, for files this daemon has
        # seen; each use is checked against STATE/links.
        self.files = {}
        # Underlying inode number -> our number for directories (never
        # freed, so never stale).
        self.dir_numbers = {}
        with self.locked():
            self._dir_number(os.lstat(underneath))

    @contextlib.contextmanager
    def locked(self):
        with self.mutex:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self.lock_fd, fcntl.LOCK_UN)

    def _linked(self, number):
        """The underlying inode number of the file numbered `number`."""
        try:
            return os.lstat(os.path.join(self.links, str(number))).st_ino
        except FileNotFoundError:
            return None

    def _ours(self, st):
        """Whether STATE/links holds a link to the file `st` describes."""
        number = self.files.get(st.st_ino)
        if number is not None and self._linked(number) == st.st_ino:
            return True
        # Bound by the other mount, or never bound.
        return self._scan_for(st.st_ino) is not None

    def _scan_for(self, ino):
        for name in os.listdir(self.links):
            if name.isdigit() and self._linked(int(name)) == ino:
                self.files[ino] = int(name)
                return int(name)
        return None

    def names(self, st):
        """st_nlink without our own link."""
        if stat.S_ISDIR(st.st_mode) or st.st_nlink == 0:
            return st.st_nlink
        return st.st_nlink - 1 if self._ours(st) else st.st_nlink

    def number(self, st, path=None, fh=None):
        """Our number for the file `st` describes, found by `path` (not
        followed) or open as `fh`."""
        if stat.S_ISDIR(st.st_mode):
            number = self.dir_numbers.get(st.st_ino)
            if number is not None:
                return number
            with self.locked():
                return self._dir_number(st)
        number = self.files.get(st.st_ino)
        if number is not None and self._linked(number) == st.st_ino:
            return number
        with self.locked():
            return self._file_number(st, path, fh)

    def _all_numbers(self):
        return [int(name) for directory in (self.links, self.dirs)
                for name in os.listdir(directory) if name.isdigit()]

    def _dir_number(self, st):
        for name in os.listdir(self.dirs):
            if name.isdigit():
                self.dir_numbers[int(os.readlink(os.path.join(self.dirs, name)))] = int(name)
        number = self.dir_numbers.get(st.st_ino)
        if number is None:
            number = max(self._all_numbers(), default=0) + 1
            os.symlink(str(st.st_ino), os.path.join(self.dirs, str(number)))
            self.dir_numbers[st.st_ino] = number
        return number

    def _file_number(self, st, path, fh):
        freed = []
        for name in os.listdir(self.links):
            if not name.isdigit():
                continue
            try:
                linked = os.lstat(os.path.join(self.links, name))
            except FileNotFoundError:
                continue
            self.files[linked.st_ino] = int(name)
            if linked.st_ino == st.st_ino:
                return int(name)
            if linked.st_nlink == 1:
                # Only our link left: the file was deleted.
                freed.append((linked.st_ctime_ns, -int(name)))
        if freed:
            # The most recently deleted file's number (its link count
            # changed last), the lowest number if two tie.
            number = -max(freed)[1]
        else:
            number = max(self._all_numbers(), default=0) + 1
        new = os.path.join(self.links, f".new.{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(new)
        try:
            if fh is not None:
                # linkat(AT_SYMLINK_FOLLOW) through /proc: os.link uses
                # linkat (and follows) only when given a directory fd.
                os.link(f"/proc/self/fd/{fh}", os.path.basename(new),
                        dst_dir_fd=self.links_fd)
            else:
                os.link(path, new, follow_symlinks=False)
        except FileNotFoundError:
            # Deleted since it was looked at (a descriptor's file with no
            # name left cannot be linked).
            raise Replaced()
        if os.lstat(new).st_ino != st.st_ino:
            os.unlink(new)
            raise Replaced()
        os.rename(new, os.path.join(self.links, str(number)))
        self.files[st.st_ino] = number
        return number


class NfsLike(Operations):
    use_ns = True
    # Not implemented: the kernel answers EOPNOTSUPP (see the module's doc).
    getxattr = None
    setxattr = None
    listxattr = None
    removexattr = None
    # POSIX locks stay local to the mount.
    lock = None

    def __init__(self, root, numbers, stale_errno, coarse_times, forward_locks, read_delay=0.0):
        self.root = root
        self.numbers = numbers
        self.stale_errno = stale_errno
        self.coarse_times = coarse_times
        self.read_delay = read_delay
        # Without an flock operation the kernel keeps flock locks itself.
        self.flock = self._forward_flock if forward_locks else None

    def _real(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    def _check_fresh(self, fh):
        """fstat of `fh`, or the stale errno if its file was deleted."""
        st = os.fstat(fh)
        if self.numbers.names(st) == 0:
            raise FuseOSError(self.stale_errno)
        return st

    @staticmethod
    def _give_to_caller(path):
        uid, gid, _ = fuse_get_context()
        if (uid, gid) != (os.geteuid(), os.getegid()):
            os.chown(path, uid, gid, follow_symlinks=False)

    def _time(self, ns):
        if self.coarse_times == "frozen":
            return 0
        return ns // 1_000_000_000 * 1_000_000_000 if self.coarse_times else ns

    def getattr(self, path, fh=None):
        for _ in range(100):
            try:
                if fh is not None:
                    st = self._check_fresh(fh)
                    number = self.numbers.number(st, fh=fh)
                    # Binding the number may have added our link.
                    st = os.fstat(fh)
                else:
                    real = self._real(path)
                    st = os.lstat(real)
                    number = self.numbers.number(st, path=real)
                    before, st = st, os.lstat(real)
                    if (st.st_ino, st.st_mode) != (before.st_ino, before.st_mode):
                        continue
                names = self.numbers.names(st)
            except Replaced:
                if fh is not None:
                    raise FuseOSError(self.stale_errno)
                continue
            except OSError as error:
                raise FuseOSError(error.errno)
            return {
                "st_mode": st.st_mode,
                "st_ino": number,
                "st_nlink": names,
                "st_uid": st.st_uid,
                "st_gid": st.st_gid,
                "st_rdev": st.st_rdev,
                "st_size": st.st_size,
                "st_blocks": st.st_blocks,
                "st_blksize": st.st_blksize,
                "st_atime": self._time(st.st_atime_ns),
                "st_mtime": self._time(st.st_mtime_ns),
                "st_ctime": self._time(st.st_ctime_ns),
            }
        raise FuseOSError(errno.EIO)

    def readdir(self, path, fh):
        try:
            return [".", ".."] + os.listdir(self._real(path))
        except OSError as error:
            raise FuseOSError(error.errno)

    def readlink(self, path):
        try:
            return os.readlink(self._real(path))
        except OSError as error:
            raise FuseOSError(error.errno)

    def open(self, path, flags):
        try:
            return os.open(self._real(path), flags)
        except OSError as error:
            raise FuseOSError(error.errno)

    def create(self, path, mode, flags=os.O_WRONLY | os.O_TRUNC):
        real = self._real(path)
        try:
            fh = os.open(real, flags | os.O_CREAT, mode)
            self._give_to_caller(real)
            return fh
        except OSError as error:
            raise FuseOSError(error.errno)

    def read(self, path, size, offset, fh):
        name = os.path.basename(path)
        if self.read_delay and offset == 0 and (
                name == "bus" or (len(name) == 20 and name.isdigit())):
            # A slow server round trip before the first read of a chunk at
            # F or in its history, so that another client can replace or
            # drop it meanwhile.
            time.sleep(self.read_delay)
        try:
            self._check_fresh(fh)
            return os.pread(fh, size, offset)
        except OSError as error:
            raise FuseOSError(error.errno)

    def write(self, path, data, offset, fh):
        try:
            self._check_fresh(fh)
            return os.pwrite(fh, data, offset)
        except OSError as error:
            raise FuseOSError(error.errno)

    def truncate(self, path, length, fh=None):
        try:
            if fh is not None:
                self._check_fresh(fh)
                os.ftruncate(fh, length)
            else:
                os.truncate(self._real(path), length)
        except OSError as error:
            raise FuseOSError(error.errno)

    def flush(self, path, fh):
        return 0

    def fsync(self, path, datasync, fh):
        try:
            (os.fdatasync if datasync else os.fsync)(fh)
        except OSError as error:
            raise FuseOSError(error.errno)

    def release(self, path, fh):
        os.close(fh)

    def _forward_flock(self, path, fh, operation):
        try:
            if operation & (fcntl.LOCK_NB | fcntl.LOCK_UN):
                fcntl.flock(fh, operation)
                return 0
            # A blocking lock, tried again until it is taken or the caller
            # is interrupted (a signal, a kill), which a blocked flock(2)
            # here would not notice.
            while True:
                try:
                    fcntl.flock(fh, operation | fcntl.LOCK_NB)
                    return 0
                except BlockingIOError:
                    if fusepy._libfuse.fuse_interrupted():
                        raise FuseOSError(errno.EINTR)
                    time.sleep(LOCK_POLL)
        except OSError as error:
            raise FuseOSError(error.errno)

    @staticmethod
    def _pass(call, *args, **kwargs):
        try:
            call(*args, **kwargs)
        except OSError as error:
            raise FuseOSError(error.errno)

    def mkdir(self, path, mode):
        real = self._real(path)
        self._pass(os.mkdir, real, mode)
        self._pass(self._give_to_caller, real)

    def mknod(self, path, mode, dev):
        real = self._real(path)
        self._pass(os.mknod, real, mode, dev)
        self._pass(self._give_to_caller, real)

    def symlink(self, target, source):
        real = self._real(target)
        self._pass(os.symlink, source, real)
        self._pass(self._give_to_caller, real)

    def link(self, target, source):
        self._pass(os.link, self._real(source), self._real(target), follow_symlinks=False)

    def unlink(self, path):
        self._pass(os.unlink, self._real(path))

    def rmdir(self, path):
        self._pass(os.rmdir, self._real(path))

    def rename(self, old, new):
        self._pass(os.rename, self._real(old), self._real(new))

    def chmod(self, path, mode):
        self._pass(os.chmod, self._real(path), mode)

    def chown(self, path, uid, gid):
        self._pass(os.chown, self._real(path), uid, gid, follow_symlinks=False)

    def utimens(self, path, times=None):
        real = self._real(path)
        if times is None:
            self._pass(lambda: os.utime(real, follow_symlinks=False))
        else:
            self._pass(lambda: os.utime(real, ns=times, follow_symlinks=False))

    def statfs(self, path):
        try:
            st = os.statvfs(self._real(path))
        except OSError as error:
            raise FuseOSError(error.errno)
        keys = ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files",
                "f_ffree", "f_favail", "f_flag", "f_namemax")
        return {key: getattr(st, key) for key in keys}


def add_flock_to_fusepy():
    """Extends fusepy's `struct fuse_operations` (which ends at `ioctl`) to
    libfuse 2.9's, whose next slots are poll, write_buf, read_buf, flock and
    fallocate; only flock is filled in."""
    fields = list(fusepy.fuse_operations._fields_)
    assert fields[-1][0] == "ioctl", "unexpected fusepy struct fuse_operations"
    fields += [
        ("poll", ctypes.c_void_p),
        ("write_buf", ctypes.c_void_p),
        ("read_buf", ctypes.c_void_p),
        ("flock", ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p,
                                   ctypes.POINTER(fusepy.fuse_file_info), ctypes.c_int)),
        ("fallocate", ctypes.c_void_p),
    ]
    fusepy.fuse_operations = type("fuse_operations_2_9", (ctypes.Structure,),
                                  {"_fields_": fields})


class NfsFUSE(FUSE):
    """fusepy's glue, with the open flags passed to `create` (for O_EXCL)
    and an flock operation."""

    def create(self, path, mode, fip):
        fi = fip.contents
        fi.fh = self.operations("create", path.decode(self.encoding), mode, fi.flags)
        return 0

    def flock(self, path, fip, operation):
        return self.operations("flock", self._decode_optional_path(path),
                               fip.contents.fh, operation)


def main():
    parser = argparse.ArgumentParser(description="An NFSv3-like pass-through FUSE filesystem.")
    parser.add_argument("--state", required=True,
                        help="directory shared by the mounts of one UNDERNEATH, on its filesystem")
    parser.add_argument("--stale-errno", default="ESTALE", choices=sorted(STALE_ERRNOS),
                        help="what a read of a file deleted elsewhere fails with")
    parser.add_argument("--coarse-times", dest="coarse_times", action="store_true",
                        default=True, help="times in whole seconds (the default)")
    parser.add_argument("--fine-times", dest="coarse_times", action="store_false",
                        help="times with the nanoseconds underneath")
    parser.add_argument("--frozen-times", dest="coarse_times", action="store_const",
                        const="frozen",
                        help="every time reported as the epoch: only size and content "
                             "tell two files given the same number apart")
    parser.add_argument("--read-delay", type=float, default=0.0,
                        help="seconds the first read of a file named bus, or of a history "
                             "entry, waits")
    parser.add_argument("--forward-locks", action="store_true",
                        help="forward flock to the file underneath")
    parser.add_argument("--hard-remove", action="store_true",
                        help="delete an open file at once instead of hiding it until closed")
    parser.add_argument("underneath")
    parser.add_argument("mountpoint")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    underneath = os.path.abspath(args.underneath)
    numbers = Numbers(os.path.abspath(args.state), underneath)
    if args.forward_locks:
        add_flock_to_fusepy()
    operations = NfsLike(underneath, numbers, STALE_ERRNOS[args.stale_errno],
                         args.coarse_times, args.forward_locks, args.read_delay)
    NfsFUSE(
        operations,
        args.mountpoint,
        foreground=True,
        nothreads=False,
        fsname="nfs_fs",
        attr_timeout=0,
        entry_timeout=0,
        negative_timeout=0,
        use_ino=True,
        direct_io=True,
        hard_remove=args.hard_remove,
    )


if __name__ == "__main__":
    main()

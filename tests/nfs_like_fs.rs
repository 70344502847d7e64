//! The NFS-like test filesystem (`tests/util/nfs_fs.py`, mounted twice
//! by [`SharedDir::nfs_like`]) does what an NFSv3 client does, through the
//! real mounts: each test asserts one behaviour that other tests rely on.
//!
//! `here` and `there` are the two mounts (two client machines), `under` the
//! directory underneath (the server's disk).

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

use rustix::fs::{FlockOperation, Mode, OFlags, RenameFlags, XattrFlags};
use rustix::io::Errno;

use crate::util::fuse::{NFS_FINE_TIMES, NFS_FORWARD_LOCKS, NFS_STALE_EFAULT, SharedDir};
use crate::util::put_chunk_by_hand;

/// The inode number `path` reports (following nothing: our files are
/// regular).
fn ino(path: &Path) -> u64 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|error| panic!("cannot stat {}: {error}", path.display()))
        .ino()
}

fn write(path: &Path, content: &[u8]) {
    std::fs::write(path, content)
        .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
}

fn open(path: &Path) -> File {
    File::open(path).unwrap_or_else(|error| panic!("cannot open {}: {error}", path.display()))
}

fn open_rw(path: &Path) -> File {
    File::options()
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|error| panic!("cannot open {}: {error}", path.display()))
}

/// What reading `file` from its start gives: its bytes, or the errno.
fn read_all(file: &File) -> Result<Vec<u8>, i32> {
    let mut buf = vec![0; 4096];
    match file.read_at(&mut buf, 0) {
        Ok(len) => {
            buf.truncate(len);
            Ok(buf)
        }
        Err(error) => Err(error.raw_os_error().expect("an OS error")),
    }
}

/// Replaces `path` by rename with a new file holding `content`, made beside
/// it (so through the same mount, or underneath).
fn replace(path: &Path, content: &[u8]) {
    let aside = path.with_extension("new");
    write(&aside, content);
    std::fs::rename(&aside, path).unwrap_or_else(|error| {
        panic!(
            "cannot rename {} onto {}: {error}",
            aside.display(),
            path.display()
        )
    });
}

#[test]
fn a_file_replaced_underneath_takes_the_number_of_the_old_one_still_open() {
    let nfs = SharedDir::nfs_like(&[]);
    let (here, there, under) = (nfs.here().join("F"), nfs.there().join("F"), nfs.under());
    write(&here, b"old");
    let number = ino(&here);
    assert_eq!(
        ino(&there),
        number,
        "the two mounts disagree on F's number; {}",
        nfs.nfs_logs()
    );
    let old = open(&here);
    assert_eq!(read_all(&old), Ok(b"old".to_vec()));
    // The server replaces F: the old file is deleted (no other link) while
    // it is still open through the first mount.
    put_chunk_by_hand(&under.join("F"), b"new");
    assert_eq!(
        std::fs::read(&there).expect("cannot read the new F"),
        b"new"
    );
    assert_eq!(
        (ino(&there), ino(&here)),
        (number, number),
        "the new F does not report the number of the old F, deleted but open; {}",
        nfs.nfs_logs()
    );
    drop(old);
}

#[test]
fn a_file_created_through_a_mount_takes_the_number_deleted_last() {
    // A producer on the second machine publishes by rename: each new chunk
    // was created while the previous one still lived, so it takes the
    // number of the one before, and the next takes the number of the
    // chunk a reader on the first machine still has open.
    let nfs = SharedDir::nfs_like(&[]);
    let (here, there) = (nfs.here().join("F"), nfs.there().join("F"));
    write(&there, b"chunk 1");
    let first = ino(&here);
    let reading = open(&here);
    let second_temp = there.with_extension("new");
    write(&second_temp, b"chunk 2");
    let second = ino(&second_temp);
    assert_ne!(
        second,
        first,
        "a file got the number of a file that still exists; {}",
        nfs.nfs_logs()
    );
    std::fs::rename(&second_temp, &there).expect("cannot publish chunk 2");
    replace(&there, b"chunk 3");
    assert_eq!(std::fs::read(&here).expect("cannot read F"), b"chunk 3");
    assert_eq!(
        ino(&here),
        first,
        "chunk 3 does not report the number of chunk 1 (deleted, open through the other \
         mount); chunk 2 had {second}; {}",
        nfs.nfs_logs()
    );
    drop(reading);
}

#[test]
fn a_file_that_keeps_another_link_keeps_its_number() {
    let nfs = SharedDir::nfs_like(&[]);
    let (here, there, under) = (nfs.here().join("F"), nfs.there().join("F"), nfs.under());
    write(&here, b"chunk 42");
    let number = ino(&here);
    std::fs::create_dir(nfs.there().join("F.history")).expect("cannot create F.history");
    let entry = "F.history/00000000000000000042";
    std::fs::hard_link(&there, nfs.there().join(entry)).expect("cannot link a history entry");
    let reading = open(&here);
    put_chunk_by_hand(&under.join("F"), b"chunk 43");
    let new = ino(&there);
    assert_ne!(
        new,
        number,
        "the new F took the number of the old one, which still has a name ({entry}); {}",
        nfs.nfs_logs()
    );
    assert_eq!(ino(&nfs.here().join(entry)), number);
    assert_eq!(ino(&here), new, "the mounts disagree on the new F's number");
    let history = std::fs::symlink_metadata(nfs.here().join(entry)).expect("cannot stat entry");
    assert_eq!(
        history.nlink(),
        1,
        "the mount counts its own bookkeeping link"
    );
    assert_eq!(
        read_all(&reading),
        Ok(b"chunk 42".to_vec()),
        "a replaced file that still has a name must stay readable"
    );
}

#[test]
fn no_user_extended_attributes() {
    let nfs = SharedDir::nfs_like(&[]);
    let (here, under) = (nfs.here().join("F"), nfs.under().join("F"));
    write(&here, b"x");
    // Underneath (ext4) they work: the mount is what refuses.
    rustix::fs::setxattr(&under, "user.filebus.test", b"1", XattrFlags::empty())
        .expect("user xattrs underneath");
    let mut buf = [0u8; 256];
    assert_eq!(
        rustix::fs::setxattr(&here, "user.filebus.test", b"2", XattrFlags::empty()),
        Err(Errno::OPNOTSUPP),
        "setxattr"
    );
    assert_eq!(
        rustix::fs::getxattr(&here, "user.filebus.test", &mut buf[..]),
        Err(Errno::OPNOTSUPP),
        "getxattr"
    );
    assert_eq!(
        rustix::fs::listxattr(&here, &mut buf[..]),
        Err(Errno::OPNOTSUPP),
        "listxattr"
    );
    assert_eq!(
        rustix::fs::removexattr(&here, "user.filebus.test"),
        Err(Errno::OPNOTSUPP),
        "removexattr"
    );
}

#[test]
fn no_o_tmpfile() {
    let nfs = SharedDir::nfs_like(&[]);
    let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
    let mode = Mode::from_raw_mode(0o600);
    rustix::fs::open(nfs.under(), flags, mode).expect("O_TMPFILE underneath (ext4)");
    assert_eq!(
        rustix::fs::open(nfs.here(), flags, mode).map(drop),
        Err(Errno::OPNOTSUPP),
        "O_TMPFILE through the mount"
    );
}

#[test]
fn no_rename_exchange() {
    let nfs = SharedDir::nfs_like(&[]);
    let (a, b) = (nfs.here().join("a"), nfs.here().join("b"));
    write(&a, b"a");
    write(&b, b"b");
    let exchange = |dir: &Path| {
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            dir.join("a"),
            rustix::fs::CWD,
            dir.join("b"),
            RenameFlags::EXCHANGE,
        )
    };
    assert_eq!(exchange(nfs.here()), Err(Errno::INVAL), "RENAME_EXCHANGE");
    assert_eq!(
        (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap()),
        (b"a".to_vec(), b"b".to_vec())
    );
    exchange(nfs.under()).expect("RENAME_EXCHANGE underneath (ext4)");
}

/// Asserts that a file open through the first mount reads `errno` once it
/// is replaced, or deleted, through the second mount.
fn deleted_through_the_other_mount_reads(nfs: &SharedDir, errno: i32) {
    let (here, there) = (nfs.here().join("F"), nfs.there().join("F"));
    write(&here, b"old");
    let old = open(&here);
    replace(&there, b"new");
    assert_eq!(
        read_all(&old),
        Err(errno),
        "a read of a file replaced through the other mount; {}",
        nfs.nfs_logs()
    );
    assert_eq!(read_all(&open(&here)), Ok(b"new".to_vec()));

    let (here, there) = (nfs.here().join("G"), nfs.there().join("G"));
    write(&here, b"old");
    let old = open_rw(&here);
    std::fs::remove_file(&there).expect("cannot delete G");
    assert_eq!(read_all(&old), Err(errno), "a read of a deleted file");
    let written = old
        .write_at(b"more", 3)
        .map_err(|error| error.raw_os_error());
    assert_eq!(written, Err(Some(errno)), "a write to a deleted file");
}

#[test]
fn a_read_of_a_file_deleted_through_the_other_mount_is_stale() {
    let nfs = SharedDir::nfs_like(&[]);
    deleted_through_the_other_mount_reads(&nfs, libc::ESTALE);
}

#[test]
fn a_read_of_a_file_deleted_through_the_other_mount_faults_with_the_option() {
    let nfs = SharedDir::nfs_like(NFS_STALE_EFAULT);
    deleted_through_the_other_mount_reads(&nfs, libc::EFAULT);
}

#[test]
fn a_file_replaced_through_its_own_mount_stays_readable_while_open() {
    // As an NFS client renames a file it deletes while open to `.nfs…`,
    // libfuse renames it to `.fuse_hidden…` until it is closed.
    let nfs = SharedDir::nfs_like(&[]);
    let here = nfs.here().join("F");
    write(&here, b"old");
    let old = open(&here);
    replace(&here, b"new");
    assert_eq!(read_all(&old), Ok(b"old".to_vec()));
    let hidden = |dir: &Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.starts_with(".fuse_hidden"))
            .count()
    };
    assert_eq!(hidden(nfs.under()), 1, "no .fuse_hidden file underneath");
    drop(old);
    crate::util::wait_until_showing(
        "the hidden file to go when closed",
        || hidden(nfs.under()) == 0,
        || nfs.nfs_logs(),
    );
}

/// `LOCK_EX | LOCK_NB` on `file`: whether it was granted.
fn try_lock(file: &File) -> bool {
    match rustix::fs::flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => true,
        Err(Errno::WOULDBLOCK) => false,
        Err(errno) => panic!("flock failed: {errno}"),
    }
}

#[test]
fn flock_is_not_shared_between_the_mounts() {
    let nfs = SharedDir::nfs_like(&[]);
    write(&nfs.here().join("F.lock"), b"");
    let here = open(&nfs.here().join("F.lock"));
    assert!(try_lock(&here));
    // Each mount's locks are its own: the other client and the server both
    // get an "exclusive" lock too.
    let there = open(&nfs.there().join("F.lock"));
    assert!(
        try_lock(&there),
        "the second mount saw the first mount's lock"
    );
    let under = open(&nfs.under().join("F.lock"));
    assert!(try_lock(&under), "the lock reached the file underneath");
    // Within one mount, locks exclude as usual.
    let here_again = open(&nfs.here().join("F.lock"));
    assert!(
        !try_lock(&here_again),
        "two exclusive locks through one mount"
    );
}

#[test]
fn flock_is_shared_with_forward_locks() {
    let nfs = SharedDir::nfs_like(NFS_FORWARD_LOCKS);
    write(&nfs.here().join("F.lock"), b"");
    let here = open(&nfs.here().join("F.lock"));
    assert!(try_lock(&here), "{}", nfs.nfs_logs());
    let there = open(&nfs.there().join("F.lock"));
    assert!(
        !try_lock(&there),
        "the second mount did not see the first's lock"
    );
    let under = open(&nfs.under().join("F.lock"));
    assert!(
        !try_lock(&under),
        "the lock did not reach the file underneath"
    );
    // A blocking lock through the second mount waits for the first's.
    let waiter = std::thread::spawn(move || {
        rustix::fs::flock(&there, FlockOperation::LockExclusive).map(|()| there)
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(!waiter.is_finished(), "a blocking flock did not wait");
    rustix::fs::flock(&here, FlockOperation::Unlock).expect("unlock");
    let there = waiter
        .join()
        .expect("the waiter panicked")
        .expect("the blocking flock failed");
    assert!(
        !try_lock(&under),
        "the waiter's lock did not reach underneath"
    );
    // The kernel sends FUSE's release after close returns: the lock goes
    // a moment later.
    drop(there);
    crate::util::wait_until_showing(
        "closing through the second mount to release the lock underneath",
        || try_lock(&under),
        || nfs.nfs_logs(),
    );
}

/// Sets `path`'s modification time to 1.7e9 s plus 123456789 ns.
fn set_fine_mtime(path: &Path) -> SystemTime {
    let time = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
    open_rw(path)
        .set_modified(time)
        .unwrap_or_else(|error| panic!("cannot set the mtime of {}: {error}", path.display()));
    time
}

#[test]
fn times_are_whole_seconds() {
    let nfs = SharedDir::nfs_like(&[]);
    write(&nfs.under().join("F"), b"x");
    set_fine_mtime(&nfs.under().join("F"));
    for side in [nfs.here(), nfs.there()] {
        let meta = std::fs::metadata(side.join("F")).expect("cannot stat F");
        assert_eq!(
            (meta.mtime(), meta.mtime_nsec()),
            (1_700_000_000, 0),
            "mtime through {}",
            side.display()
        );
        assert_eq!(meta.ctime_nsec(), 0, "ctime");
        assert_eq!(meta.atime_nsec(), 0, "atime");
    }
}

#[test]
fn times_have_nanoseconds_with_the_option() {
    let nfs = SharedDir::nfs_like(NFS_FINE_TIMES);
    write(&nfs.under().join("F"), b"x");
    let time = set_fine_mtime(&nfs.under().join("F"));
    let meta = std::fs::metadata(nfs.here().join("F")).expect("cannot stat F");
    assert_eq!(meta.modified().unwrap(), time);
}

#[test]
fn changes_elsewhere_are_seen_at_once() {
    // No attribute or lookup cache: what the other side did is seen on the
    // next look, including a name that did not exist at the last look.
    let nfs = SharedDir::nfs_like(&[]);
    let (here, there) = (nfs.here().join("F"), nfs.there().join("F"));
    assert_eq!(
        std::fs::metadata(&here).map_err(|error| error.kind()).err(),
        Some(ErrorKind::NotFound)
    );
    write(&there, b"abc");
    assert_eq!(std::fs::metadata(&here).expect("F not seen").len(), 3);
    write(&nfs.under().join("F"), b"abcdefghij");
    assert_eq!(std::fs::metadata(&here).expect("F not seen").len(), 10);
    std::fs::remove_file(&there).expect("cannot delete F");
    assert!(!here.exists(), "a deleted F is still seen");
}

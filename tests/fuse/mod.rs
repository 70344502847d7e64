//! A bus directory shared by "two machines" on one: the same directory seen
//! through a real FUSE mount (`bindfs`) and directly underneath.
//!
//! A process using the mount ([`SharedDir::here`]) is on a FUSE filesystem:
//! the kernel's inotify never sees what a process writing underneath
//! ([`SharedDir::there`]) does, attributes are cached by the FUSE client
//! (for one second with bindfs's defaults, like an NFS client's `actimeo`),
//! `O_TMPFILE` is refused, and `flock` reaches the directory underneath only
//! because the mount forwards locks, as an NFS or CephFS server coordinates
//! them. That is what a second machine on NFS or CephFS looks like from
//! filebus's side.
//!
//! Tests of any feature on a shared filesystem (lossy, lossless, and later
//! the history and named consumers) take a [`SharedDir`], start one side of
//! the bus at `here`'s path and the other at `there`'s, and check the stream
//! with the numbered-record helpers of `common` and `support`.
//!
//! `bindfs` is installed from Debian's packages when missing (CI runs as
//! root). Where it cannot be installed or FUSE cannot be mounted, the test
//! fails with a message saying so: it is never skipped silently.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::common::PATIENCE;

/// Options of every mount: lock forwarding (so that `flock` on the mount and
/// underneath is one lock, as on NFS), which bindfs requires to be
/// multithreaded.
const BASE_OPTIONS: &[&str] = &["--multithreaded", "--enable-lock-forwarding"];

/// `-o` options that turn the FUSE client's attribute and lookup caches off,
/// like NFS's `actimeo=0` and `lookupcache=none`.
pub const NO_ATTRIBUTE_CACHE: &[&str] = &["-o", "attr_timeout=0,entry_timeout=0"];

/// bindfs option that refuses every extended attribute (`EOPNOTSUPP`), as
/// NFS before 4.2 does: chunks published through such a mount are unstamped.
pub const NO_XATTRS: &[&str] = &["--xattr-none"];

/// One FUSE test at a time in this process: a mount's FUSE daemon, a
/// producer and a consumer are already more than the two cores of the test
/// machine, and tests that overlap would make each other's timing noisy.
static SERIAL: Mutex<()> = Mutex::new(());

/// A directory underneath and its bindfs mount, unmounted when dropped (also
/// when the test panics), so that no test leaves a mount behind.
pub struct SharedDir {
    mount: PathBuf,
    under: PathBuf,
    /// Holds `under/` and `mnt/`, both unique to this test.
    root: Option<tempfile::TempDir>,
    _serial: MutexGuard<'static, ()>,
}

impl SharedDir {
    /// Mounts a new empty directory with bindfs's default caches (one second
    /// of attribute caching on the mount's side).
    pub fn new() -> SharedDir {
        SharedDir::with_options(&[])
    }

    /// Mounts a new empty directory, passing `options` to bindfs too (such as
    /// [`NO_ATTRIBUTE_CACHE`] or [`NO_XATTRS`]).
    pub fn with_options(options: &[&str]) -> SharedDir {
        let serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
        let bindfs = bindfs();
        assert!(
            Path::new("/dev/fuse").exists(),
            "/dev/fuse is missing: the shared-filesystem tests need FUSE (load the fuse module, \
             or give the container --device /dev/fuse)"
        );
        let root = tempfile::Builder::new()
            .prefix("filebus-fuse-")
            .tempdir_in("/tmp")
            .expect("cannot create a scratch directory in /tmp");
        let under = root.path().join("under");
        let mount = root.path().join("mnt");
        for dir in [&under, &mount] {
            std::fs::create_dir(dir)
                .unwrap_or_else(|error| panic!("cannot create {}: {error}", dir.display()));
        }
        let output = Command::new(&bindfs)
            .args(BASE_OPTIONS)
            .args(options)
            .arg(&under)
            .arg(&mount)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", bindfs.display()));
        assert!(
            output.status.success(),
            "cannot mount {} on {} with bindfs {options:?} ({}): the shared-filesystem tests \
             need a working FUSE mount; stderr: {}",
            under.display(),
            mount.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        let shared = SharedDir {
            mount,
            under,
            root: Some(root),
            _serial: serial,
        };
        assert_eq!(
            filesystem_magic(&shared.mount),
            FUSE_SUPER_MAGIC,
            "{} is not a FUSE mount after bindfs returned",
            shared.mount.display()
        );
        shared
    }

    /// The directory as this machine sees it: through the FUSE mount.
    pub fn here(&self) -> &Path {
        &self.mount
    }

    /// The same directory as another machine (or the file server) sees it:
    /// the directory underneath, whose changes the mount's inotify misses.
    pub fn there(&self) -> &Path {
        &self.under
    }

    /// The bus file `F` seen through the mount.
    pub fn bus_here(&self) -> PathBuf {
        self.mount.join("bus")
    }

    /// The bus file `F` seen from underneath.
    pub fn bus_there(&self) -> PathBuf {
        self.under.join("bus")
    }

    /// A directory for test files (input files, logs) on neither side.
    pub fn aux(&self) -> &Path {
        self.root
            .as_ref()
            .expect("the root exists until drop")
            .path()
    }
}

impl Drop for SharedDir {
    fn drop(&mut self) {
        unmount(&self.mount);
        // Only an unmounted directory may be removed: removing through a
        // live mount would delete the files underneath twice over, and a
        // busy mount would make the removal fail half-way.
        if filesystem_magic(&self.mount) == FUSE_SUPER_MAGIC {
            eprintln!(
                "warning: {} is still mounted; leaving its directory",
                self.mount.display()
            );
            if let Some(root) = self.root.take() {
                let _ = root.keep();
            }
        }
    }
}

/// Unmounts `mount`: `fusermount -u`, and if the mount is busy (a process of
/// a failed test still in it), a lazy `umount -l`, which detaches it now and
/// finishes when the last user goes.
fn unmount(mount: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let unmounted = Command::new("fusermount")
            .arg("-u")
            .arg(mount)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if unmounted || filesystem_magic(mount) != FUSE_SUPER_MAGIC {
            return;
        }
        if Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Command::new("umount").arg("-l").arg(mount).status();
}

/// `statfs.f_type` of a FUSE filesystem.
pub const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;

/// `statfs.f_type` of the filesystem holding `path` (0 if it cannot be
/// read).
pub fn filesystem_magic(path: &Path) -> i64 {
    rustix::fs::statfs(path).map_or(0, |stats| stats.f_type as i64)
}

/// The bindfs program, installed with apt-get the first time it is needed
/// if it is not on the PATH. Panics, saying what to do, if that fails.
pub fn bindfs() -> PathBuf {
    static BINDFS: OnceLock<PathBuf> = OnceLock::new();
    BINDFS
        .get_or_init(|| {
            if let Some(found) = find_in_path("bindfs") {
                return found;
            }
            // Several test binaries may get here at once; apt serializes
            // them with its own lock, which a second installer waits for.
            let install = |args: &[&str]| {
                Command::new("apt-get")
                    .args(args)
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .args(["-o", "DPkg::Lock::Timeout=300"])
                    .stdin(Stdio::null())
                    .output()
            };
            let installed = install(&["install", "-y", "-q", "bindfs"]);
            if !installed.as_ref().is_ok_and(|out| out.status.success()) {
                // The package lists may be missing or stale on a fresh machine.
                let updated = install(&["update", "-q"]);
                let installed = install(&["install", "-y", "-q", "bindfs"]);
                let ok = installed.as_ref().is_ok_and(|out| out.status.success());
                assert!(
                    ok,
                    "bindfs is missing and `apt-get install bindfs` failed, and the \
                     shared-filesystem tests need it (a FUSE mount that behaves like a network \
                     filesystem); install it (Debian package bindfs) and run the tests again.\n\
                     apt-get update: {}\napt-get install: {}",
                    describe(&updated),
                    describe(&installed)
                );
            }
            find_in_path("bindfs").expect("bindfs is not on the PATH after apt-get installed it")
        })
        .clone()
}

fn describe(output: &std::io::Result<std::process::Output>) -> String {
    match output {
        Ok(output) => format!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(error) => format!("cannot run apt-get: {error}"),
    }
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Waits until `condition` holds, polling; panics after [`PATIENCE`] with
/// `what` and the result of `context` (such as a child's stderr).
pub fn wait_for(what: &str, mut condition: impl FnMut() -> bool, context: impl Fn() -> String) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {PATIENCE:?} waiting for {what}; {}",
            context()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

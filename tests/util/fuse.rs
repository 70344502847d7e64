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
//! with the numbered-record helpers of `crate::util` (`records`,
//! `check_full_chunks`).
//!
//! [`SharedDir::stale`] mounts `stale_fs.py` instead, a pass-through FUSE
//! filesystem where a file replaced underneath goes stale (`ESTALE`) for
//! whoever had it open through the mount, as on NFS.
//!
//! [`SharedDir::nfs_like`] mounts `nfs_fs.py` twice over one directory: two
//! NFSv3 clients of one server. Through either mount a new file takes the
//! inode number of a deleted one (even one still open), times are whole
//! seconds, there are no extended attributes, no `O_TMPFILE`, no
//! `RENAME_EXCHANGE`, a read of a file deleted elsewhere fails with
//! `ESTALE`, and `flock` is local to each mount unless
//! [`NFS_FORWARD_LOCKS`] is given. [`SharedDir::here`] is the first mount,
//! [`SharedDir::there`] the second, [`SharedDir::under`] the server's disk.
//!
//! `bindfs` and `python3-fusepy` are installed from Debian's packages when
//! missing (CI runs as root). Where they cannot be installed or FUSE cannot
//! be mounted, the test fails with a message saying so: it is never skipped
//! silently.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::util::PATIENCE;

/// Options of every mount: lock forwarding (so that `flock` on the mount and
/// underneath is one lock, as on NFS), which bindfs requires to be
/// multithreaded.
const BASE_OPTIONS: &[&str] = &["--multithreaded", "--enable-lock-forwarding"];

/// `-o` options that turn the FUSE client's attribute and lookup caches off,
/// like NFS's `actimeo=0` and `lookupcache=none`.
pub const NO_ATTRIBUTE_CACHE: &[&str] = &["-o", "attr_timeout=0,entry_timeout=0"];

/// `-o` options that make the FUSE client trust its lookups and attributes
/// for ten minutes, like NFS's `actimeo=600`: a name looked up before another
/// machine replaced the file behind it goes on showing the old file's size.
pub const LONG_ATTRIBUTE_CACHE: &[&str] = &["-o", "attr_timeout=600,entry_timeout=600"];

/// bindfs option that refuses every extended attribute (`EOPNOTSUPP`), as
/// NFS before 4.2 does: chunks published through such a mount are unstamped.
pub const NO_XATTRS: &[&str] = &["--xattr-none"];

/// One FUSE test at a time in this process: a mount's FUSE daemon, a
/// producer and a consumer are already more than the two cores of the test
/// machine, and tests that overlap would make each other's timing noisy.
static SERIAL: Mutex<()> = Mutex::new(());

/// Keeps every FUSE test waiting while the guard lives: for a test that
/// loads the machine (a nested build), whose noise the FUSE tests' timing
/// should not have to bear.
pub fn no_fuse_test_meanwhile() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A directory underneath and its FUSE mount (bindfs, or `stale_fs.py`),
/// unmounted when dropped (also when the test panics), so that no test
/// leaves a mount behind.
pub struct SharedDir {
    mount: PathBuf,
    under: PathBuf,
    /// Holds `under/` and `mnt/`, both unique to this test.
    root: Option<tempfile::TempDir>,
    /// The FUSE daemon when it runs in the foreground ([`SharedDir::stale`]).
    daemon: Option<Child>,
    /// The second mount of [`SharedDir::nfs_like`], which `there` names.
    second: Option<SecondMount>,
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
        SharedDir::bindfs(BASE_OPTIONS, options)
    }

    /// Mounts a new empty directory with bindfs as it comes (no lock
    /// forwarding: `flock` on the mount and underneath are two locks, as
    /// between two clients of NFSv3 mounted `nolock`), and its default caches.
    pub fn without_lock_forwarding() -> SharedDir {
        SharedDir::bindfs(&[], &[])
    }

    fn bindfs(base: &[&str], options: &[&str]) -> SharedDir {
        let shared = SharedDir::unmounted();
        let (under, mount) = (&shared.under, &shared.mount);
        let bindfs = bindfs();
        let output = Command::new(&bindfs)
            .args(base)
            .args(options)
            .arg(under)
            .arg(mount)
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
        assert_eq!(
            filesystem_magic(mount),
            FUSE_SUPER_MAGIC,
            "{} is not a FUSE mount after bindfs returned",
            mount.display()
        );
        shared
    }

    /// Mounts a new empty directory with `stale_fs.py` (beside this file): a
    /// pass-through FUSE filesystem with no attribute caches where, as on
    /// NFS, a file opened through the mount and then deleted or replaced
    /// underneath can no longer be read: `ESTALE`. Its locks are local to
    /// the mount (not forwarded underneath).
    pub fn stale() -> SharedDir {
        let mut shared = SharedDir::unmounted();
        let python = fusepy_python();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/util/stale_fs.py");
        let log = std::fs::File::create(shared.aux().join("stale_fs.log"))
            .expect("cannot create the FUSE daemon's log");
        let daemon = Command::new(&python)
            .arg(&script)
            .arg(&shared.under)
            .arg(&shared.mount)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", python.display()));
        shared.daemon = Some(daemon);
        let deadline = Instant::now() + PATIENCE;
        while filesystem_magic(&shared.mount) != FUSE_SUPER_MAGIC {
            let exited = shared
                .daemon
                .as_mut()
                .and_then(|daemon| daemon.try_wait().ok().flatten());
            let log =
                || std::fs::read_to_string(shared.aux().join("stale_fs.log")).unwrap_or_default();
            assert!(
                exited.is_none(),
                "{} {} exited ({exited:?}) without mounting; the shared-filesystem tests need a \
                 working FUSE mount; its stderr: {}",
                python.display(),
                script.display(),
                log()
            );
            assert!(
                Instant::now() < deadline,
                "{} did not mount within {PATIENCE:?}; its stderr: {}",
                script.display(),
                log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        shared
    }

    /// Two new empty directories, `under/` and `mnt/`, not yet mounted; the
    /// serializing lock taken.
    fn unmounted() -> SharedDir {
        let serial = no_fuse_test_meanwhile();
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
        SharedDir {
            mount,
            under,
            root: Some(root),
            daemon: None,
            second: None,
            _serial: serial,
        }
    }

    /// The directory as this machine sees it: through the FUSE mount.
    pub fn here(&self) -> &Path {
        &self.mount
    }

    /// The same directory as another machine (or the file server) sees it:
    /// the directory underneath, whose changes the mount's inotify misses;
    /// for [`SharedDir::nfs_like`], the second mount.
    pub fn there(&self) -> &Path {
        self.second
            .as_ref()
            .map_or(&self.under, |second| &second.mount)
    }

    /// The directory underneath the mounts: the file server's own disk.
    pub fn under(&self) -> &Path {
        &self.under
    }

    /// The bus file `F` in the directory underneath.
    pub fn bus_under(&self) -> PathBuf {
        self.under.join("bus")
    }

    /// The bus file `F` seen through the mount.
    pub fn bus_here(&self) -> PathBuf {
        self.mount.join("bus")
    }

    /// The bus file `F` seen from underneath (from the second mount for
    /// [`SharedDir::nfs_like`]).
    pub fn bus_there(&self) -> PathBuf {
        self.there().join("bus")
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
        if let Some(mut second) = self.second.take() {
            unmount(&second.mount);
            stop_daemon(&mut second.daemon);
            if filesystem_magic(&second.mount) == FUSE_SUPER_MAGIC {
                eprintln!(
                    "warning: {} is still mounted; leaving its directory",
                    second.mount.display()
                );
                if let Some(root) = self.root.take() {
                    let _ = root.keep();
                }
            }
        }
        // Also after a failed mount: unmount does nothing where nothing
        // is mounted.
        unmount(&self.mount);
        if let Some(mut daemon) = self.daemon.take() {
            // Unmounted, the daemon exits by itself; if it hangs, it goes.
            let deadline = Instant::now() + Duration::from_secs(10);
            while daemon.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
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

/// Unmounts `mount`: `fusermount -u` (or `fusermount3 -u`, or `umount`, as
/// root may), and if the mount stays busy (a process of a failed test still
/// in it), a lazy `umount -l`, which detaches it now and finishes when the
/// last user goes.
fn unmount(mount: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let attempts: [(&str, &[&str]); 3] = [
        ("fusermount", &["-u"]),
        ("fusermount3", &["-u"]),
        ("umount", &[]),
    ];
    while filesystem_magic(mount) == FUSE_SUPER_MAGIC && Instant::now() < deadline {
        for (program, args) in attempts {
            let unmounted = Command::new(program)
                .args(args)
                .arg(mount)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success());
            if unmounted {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if filesystem_magic(mount) == FUSE_SUPER_MAGIC {
        let _ = Command::new("umount").arg("-l").arg(mount).status();
    }
}

/// `statfs.f_type` of a FUSE filesystem.
pub const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;

/// `statfs.f_type` of the filesystem holding `path` (0 if it cannot be
/// read).
// `f_type` is i64 on x86_64 but narrower on some other architectures.
#[allow(clippy::unnecessary_cast)]
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
            apt_install(
                "bindfs",
                "bindfs (a FUSE mount that behaves like a network filesystem)",
            );
            find_in_path("bindfs").expect("bindfs is not on the PATH after apt-get installed it")
        })
        .clone()
}

/// Debian's own Python with the `fusepy` module (package python3-fusepy,
/// which brings libfuse2), installed with apt-get the first time it is
/// needed. Debian's interpreter is named explicitly: a `python3` earlier on
/// the PATH (pyenv, a virtual environment) would not see Debian's modules.
pub fn fusepy_python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let python = PathBuf::from("/usr/bin/python3");
            let has_fusepy = || {
                Command::new(&python)
                    .args(["-c", "import fusepy"])
                    .stdin(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|status| status.success())
            };
            if !has_fusepy() {
                apt_install(
                    "python3-fusepy",
                    "fusepy, for a FUSE filesystem that acts like NFS",
                );
                assert!(
                    has_fusepy(),
                    "{} cannot import fusepy after apt-get installed python3-fusepy",
                    python.display()
                );
            }
            python
        })
        .clone()
}

/// Installs the Debian package `package` (needed for `why`), updating the
/// package lists first if the install fails; panics, saying what to do, if
/// it cannot.
fn apt_install(package: &str, why: &str) {
    // Several test binaries may get here at once; apt serializes them with
    // its own lock, which a second installer waits for.
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .args(["-o", "DPkg::Lock::Timeout=300"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
    };
    let installed = apt(&["install", "-y", "-q", package]);
    if installed.as_ref().is_ok_and(|out| out.status.success()) {
        return;
    }
    // The package lists may be missing or stale on a fresh machine.
    let updated = apt(&["update", "-q"]);
    let installed = apt(&["install", "-y", "-q", package]);
    assert!(
        installed.as_ref().is_ok_and(|out| out.status.success()),
        "the shared-filesystem tests need {why}, and `apt-get install {package}` failed; \
         install the Debian package {package} and run the tests again.\n\
         apt-get update: {}\napt-get install: {}",
        describe(&updated),
        describe(&installed)
    );
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

/// `nfs_fs.py` option: a read of a file deleted through the other mount or
/// underneath fails with `EFAULT` (as some real clients say) instead of
/// `ESTALE`. `["--stale-errno", "EIO"]` is the third choice.
pub const NFS_STALE_EFAULT: &[&str] = &["--stale-errno", "EFAULT"];

/// `nfs_fs.py` option: `flock` is forwarded to the file underneath, so both
/// mounts and processes underneath share one lock (NFSv3 with lockd, NFSv4).
pub const NFS_FORWARD_LOCKS: &[&str] = &["--forward-locks"];

/// `nfs_fs.py` option: times with the nanoseconds of the file underneath
/// instead of whole seconds.
pub const NFS_FINE_TIMES: &[&str] = &["--fine-times"];

/// `nfs_fs.py` option: every time reported as the epoch, so that only size
/// and content tell apart two files given the same inode number in turn.
pub const NFS_FROZEN_TIMES: &[&str] = &["--frozen-times"];

/// `nfs_fs.py` option: a file deleted through a mount while open there is
/// deleted at once (its readers go stale) instead of being renamed to
/// `.fuse_hidden…` until closed (as an NFS client renames it to `.nfs…`).
pub const NFS_HARD_REMOVE: &[&str] = &["--hard-remove"];

/// The second mount of [`SharedDir::nfs_like`] and its daemon.
struct SecondMount {
    mount: PathBuf,
    daemon: Child,
}

impl SharedDir {
    /// Mounts a new empty directory twice with `nfs_fs.py` (beside this
    /// file), a pass-through FUSE filesystem that behaves like an NFSv3
    /// client: [`SharedDir::here`] is one client machine, [`SharedDir::there`]
    /// another, [`SharedDir::under`] the server's own disk. Both daemons get
    /// `options` (such as [`NFS_STALE_EFAULT`], [`NFS_FORWARD_LOCKS`],
    /// [`NFS_FINE_TIMES`], concatenated as needed).
    ///
    /// Inode numbers are shared by the two mounts, small, and reused: a file
    /// first seen (through either mount) after another was deleted takes
    /// the deleted file's number, even while that one is open, so a file
    /// replaced underneath by rename keeps its number at `F`. Times are
    /// whole seconds; no extended attributes (`EOPNOTSUPP`), no `O_TMPFILE`
    /// (`EOPNOTSUPP`), no `RENAME_EXCHANGE` (`EINVAL`); reading a file deleted
    /// through the other mount or underneath fails with `ESTALE`; `flock` is
    /// local to each mount; no attribute or lookup caching. The files
    /// underneath show one link more than they have names (the daemons'
    /// record of which number is whose, in `aux()/nfs_state`).
    pub fn nfs_like(options: &[&str]) -> SharedDir {
        let mut shared = SharedDir::unmounted();
        let python = fusepy_python();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/util/nfs_fs.py");
        let state = shared.aux().join("nfs_state");
        let second = shared.aux().join("mnt2");
        for dir in [&state, &second] {
            std::fs::create_dir(dir)
                .unwrap_or_else(|error| panic!("cannot create {}: {error}", dir.display()));
        }
        let start = |mount: &Path, log: &Path| {
            let log = std::fs::File::create(log).unwrap_or_else(|error| {
                panic!(
                    "cannot create the FUSE daemon's log {}: {error}",
                    log.display()
                )
            });
            Command::new(&python)
                .arg(&script)
                .arg("--state")
                .arg(&state)
                .args(options)
                .arg(&shared.under)
                .arg(mount)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|error| panic!("cannot run {}: {error}", python.display()))
        };
        let first = start(&shared.mount, &shared.aux().join("nfs_fs.1.log"));
        shared.daemon = Some(first);
        let daemon = start(&second, &shared.aux().join("nfs_fs.2.log"));
        shared.second = Some(SecondMount {
            mount: second,
            daemon,
        });
        let deadline = Instant::now() + PATIENCE;
        for which in [1, 2] {
            loop {
                let (mount, daemon) = match which {
                    1 => (&shared.mount, shared.daemon.as_mut()),
                    _ => {
                        let second = shared.second.as_mut().expect("set above");
                        (&second.mount, Some(&mut second.daemon))
                    }
                };
                if filesystem_magic(mount) == FUSE_SUPER_MAGIC {
                    break;
                }
                let mount = mount.clone();
                let exited = daemon.and_then(|daemon| daemon.try_wait().ok().flatten());
                assert!(
                    exited.is_none(),
                    "{} {} (mount {which}, {options:?}) exited ({exited:?}) without mounting \
                     {}; the NFS-like tests need a working FUSE mount; the daemons' stderr: {}",
                    python.display(),
                    script.display(),
                    mount.display(),
                    shared.nfs_logs()
                );
                assert!(
                    Instant::now() < deadline,
                    "{} did not mount {} within {PATIENCE:?}; the daemons' stderr: {}",
                    script.display(),
                    mount.display(),
                    shared.nfs_logs()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        shared
    }

    /// What the `nfs_fs.py` daemons of [`SharedDir::nfs_like`] wrote to
    /// stderr (errors they hit), for failure messages.
    pub fn nfs_logs(&self) -> String {
        [1, 2]
            .map(|which| {
                let log = self.aux().join(format!("nfs_fs.{which}.log"));
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                format!("mount {which}: {:?}", text.trim())
            })
            .join("; ")
    }
}

/// Waits up to ten seconds for an unmounted FUSE daemon to exit by itself,
/// then kills it.
fn stop_daemon(daemon: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while daemon.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
}

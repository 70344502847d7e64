//! A tmpfs of its own for a test that fills a filesystem.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

/// A tmpfs mounted on a temporary directory for the life of the value, so
/// that a test can fill a filesystem (its size, or its inodes). Unmounted on
/// drop, also when the test fails. The tests run as root.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a new tmpfs with mount `options` (such as `size=64k,mode=0755`).
    pub fn mount(options: &str) -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix("filebus-tmpfs-")
            .tempdir_in("/tmp")
            .expect("cannot create a mount point");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("cannot run mount");
        assert!(
            output.status.success(),
            "cannot mount a tmpfs (these tests run as root): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Tmpfs { dir }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let path =
            std::ffi::CString::new(self.dir.path().as_os_str().as_bytes()).expect("NUL in path");
        // SAFETY: umount2 reads a NUL-terminated path. A lazy unmount works
        // even if a killed child's files are still open; the TempDir then
        // removes the empty mount point.
        unsafe {
            libc::umount2(path.as_ptr(), libc::MNT_DETACH);
        }
    }
}

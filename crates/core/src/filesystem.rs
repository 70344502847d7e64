//! What kind of filesystem holds a bus, from `statfs`'s magic number: its
//! name for people, and whether changes to it can come from other machines
//! (where inotify reports nothing and a waiter must poll).

use std::os::fd::AsFd;
use std::path::Path;

/// A filesystem type known by its `statfs.f_type` magic number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilesystemKind {
    /// The magic number (`statfs.f_type`).
    pub magic: i64,
    /// Its usual name (`ext4`, `tmpfs`, `NFS`, `FUSE`, ...).
    pub name: &'static str,
    /// Whether other machines (or another kernel, for FUSE) can change it,
    /// so that inotify cannot be trusted to see every change.
    pub remote: bool,
}

/// The filesystems filebus knows by name. Those marked remote are the ones
/// where a waiter polls instead of trusting inotify.
const KNOWN: &[FilesystemKind] = &[
    local(0xEF53, "ext4"),
    local(0x0102_1994, "tmpfs"),
    local(0x5846_5342, "xfs"),
    local(0x9123_683E, "btrfs"),
    local(0x794C_7630, "overlayfs"),
    local(0x2FC1_2FC1, "zfs"),
    local(0xF2F5_2010, "f2fs"),
    remote(0x6969, "NFS"),
    remote(0xFF53_4D42, "CIFS"),
    remote(0xFE53_4D42, "SMB2"),
    remote(0x517B, "SMB"),
    remote(0x6573_5546, "FUSE"),
    remote(0x0102_1997, "9P"),
    remote(0x00C3_6400, "Ceph"),
    remote(0x5346_414F, "AFS"),
    remote(0x0BD0_0BD0, "Lustre"),
];

const fn local(magic: i64, name: &'static str) -> FilesystemKind {
    FilesystemKind {
        magic,
        name,
        remote: false,
    }
}

const fn remote(magic: i64, name: &'static str) -> FilesystemKind {
    FilesystemKind {
        magic,
        name,
        remote: true,
    }
}

/// The kind of the filesystem holding the open file or directory `fd`, if
/// it is one filebus knows (`Err` only if `fstatfs` fails).
pub fn kind_of(fd: impl AsFd) -> std::io::Result<Option<FilesystemKind>> {
    let stats = rustix::fs::fstatfs(fd)?;
    Ok(lookup(magic_of(&stats)))
}

/// The name of the filesystem holding `path`: a known name, the magic
/// number in hex for an unknown one, or "unknown" if `statfs` fails.
pub fn name_of(path: &Path) -> String {
    match rustix::fs::statfs(path) {
        Ok(stats) => {
            let magic = magic_of(&stats);
            lookup(magic).map_or_else(|| format!("0x{magic:x}"), |kind| kind.name.to_owned())
        }
        Err(_) => "unknown".into(),
    }
}

fn lookup(magic: i64) -> Option<FilesystemKind> {
    KNOWN.iter().copied().find(|kind| kind.magic == magic)
}

fn magic_of(stats: &rustix::fs::StatFs) -> i64 {
    // `f_type`'s integer type differs between architectures.
    #[allow(clippy::useless_conversion)]
    i64::from(stats.f_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_temporary_directory_has_a_name() {
        let name = name_of(&std::env::temp_dir());
        assert!(!name.is_empty() && name != "unknown", "{name}");
    }

    #[test]
    fn fuse_and_nfs_are_remote_and_ext4_is_not() {
        assert!(lookup(0x6573_5546).is_some_and(|kind| kind.remote));
        assert!(lookup(0x6969).is_some_and(|kind| kind.remote));
        assert!(lookup(0xEF53).is_some_and(|kind| !kind.remote));
    }
}

//! Chunk stamps: a bus-wide sequence number and the publish time, so that
//! consumers can count the chunks they missed and measure latency.
//!
//! In raw format a stamp is two user extended attributes set on the chunk's
//! temporary file before it is published (so it is never visible unstamped):
//!
//! | attribute           | value (decimal ASCII)                                  |
//! |---------------------|--------------------------------------------------------|
//! | `user.filebus.seq`  | the chunk's sequence number on this bus, from 1        |
//! | `user.filebus.time` | when it was published: nanoseconds since the Unix epoch (`CLOCK_REALTIME`) |
//!
//! The sequence is bus-wide: the last number given is kept in the same
//! attribute on `F.lock`, read and advanced under the lock, so several
//! producers share one sequence. The time is taken from the realtime clock
//! while holding the lock, just before the rename; a consumer on the same
//! machine compares it with its own realtime clock after writing the chunk.
//!
//! A stamp is best effort: where a filesystem refuses extended attributes, or
//! the lock file cannot be written, or a chunk comes from a foreign producer,
//! it is simply absent.

use std::os::fd::AsFd;

/// The attribute holding a chunk's sequence number (and, on `F.lock`, the last one given).
pub const SEQUENCE_ATTRIBUTE: &str = "user.filebus.seq";
/// The attribute holding a chunk's publish time in nanoseconds since the epoch.
pub const TIME_ATTRIBUTE: &str = "user.filebus.time";

/// The largest sequence number a stamp may carry: far beyond any bus's life
/// (2^63 chunks), far enough below `u64::MAX` that counting from it cannot
/// overflow. Anyone with write access can set a stamp, so a number outside
/// `1..=MAX_SEQUENCE` is treated as no stamp at all.
pub const MAX_SEQUENCE: u64 = i64::MAX as u64;

/// `number` as a sequence number, if it is one (`1..=MAX_SEQUENCE`).
pub fn valid_sequence(number: u64) -> Option<u64> {
    (1..=MAX_SEQUENCE).contains(&number).then_some(number)
}

/// The stamp of one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The chunk's sequence number on its bus.
    pub sequence: u64,
    /// When it was published, in nanoseconds since the Unix epoch.
    pub published_ns: u64,
}

/// Reads the stamp of the chunk open as `file`, if it has one.
pub fn read(file: impl AsFd) -> Option<Stamp> {
    Some(Stamp {
        sequence: valid_sequence(read_number(file.as_fd(), SEQUENCE_ATTRIBUTE)?)?,
        published_ns: read_number(file.as_fd(), TIME_ATTRIBUTE)?,
    })
}

/// Reads the stamp of the chunk open as `file`: `Ok(None)` if it has none
/// (no attribute, an attribute that is not a stamp, or a filesystem without
/// extended attributes), the error if the filesystem could not say.
///
/// A network or FUSE filesystem answers `ENOENT` or `ESTALE` for a file
/// that was replaced or deleted meanwhile (bindfs asks by the name the
/// file had, which a rename through the mount takes away): that is a chunk
/// to look at again, not a chunk without a stamp, which would be written
/// out as a foreign one, outside the sequence.
pub fn try_read(file: impl AsFd) -> rustix::io::Result<Option<Stamp>> {
    let fd = file.as_fd();
    let Some(sequence) = try_read_number(fd, SEQUENCE_ATTRIBUTE)? else {
        return Ok(None);
    };
    let Some(published_ns) = try_read_number(fd, TIME_ATTRIBUTE)? else {
        return Ok(None);
    };
    Ok(valid_sequence(sequence).map(|sequence| Stamp {
        sequence,
        published_ns,
    }))
}

/// Stamps the chunk open as `file`.
pub fn write(file: impl AsFd, stamp: Stamp) -> rustix::io::Result<()> {
    write_number(file.as_fd(), SEQUENCE_ATTRIBUTE, stamp.sequence)?;
    write_number(file.as_fd(), TIME_ATTRIBUTE, stamp.published_ns)
}

/// Whether the filesystem of `file` refuses user extended attributes
/// (`EOPNOTSUPP`), so that no chunk on it can carry a stamp. A file that
/// merely has no stamp (the reference's chunks) is on a filesystem that
/// supports them.
pub fn unsupported(file: impl AsFd) -> bool {
    let mut value = [0u8; 24];
    matches!(
        rustix::fs::fgetxattr(file.as_fd(), SEQUENCE_ATTRIBUTE, &mut value),
        Err(rustix::io::Errno::OPNOTSUPP)
    )
}

/// The last sequence number given on the bus whose lock file is `lock`
/// (`None` if there is none, or it is out of range).
pub fn last_sequence(lock: impl AsFd) -> Option<u64> {
    valid_sequence(read_number(lock.as_fd(), SEQUENCE_ATTRIBUTE)?)
}

/// The number to give the chunk after `last` (1 for the first, and again 1
/// after [`MAX_SEQUENCE`]).
pub fn next_sequence(last: Option<u64>) -> u64 {
    match last {
        Some(last) if last < MAX_SEQUENCE => last + 1,
        _ => 1,
    }
}

/// Records `sequence` as the last given on the bus whose lock file is `lock`.
pub fn set_last_sequence(lock: impl AsFd, sequence: u64) -> rustix::io::Result<()> {
    write_number(lock.as_fd(), SEQUENCE_ATTRIBUTE, sequence)
}

/// The realtime clock in nanoseconds since the epoch.
pub fn now_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    (now.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec as u64)
}

fn read_number(fd: std::os::fd::BorrowedFd<'_>, name: &str) -> Option<u64> {
    let mut value = [0u8; 24];
    let len = rustix::fs::fgetxattr(fd, name, &mut value).ok()?;
    std::str::from_utf8(&value[..len]).ok()?.trim().parse().ok()
}

/// The number in attribute `name` of `fd`; `Ok(None)` where there is none
/// (or it is not a number), an error only for `ENOENT` and `ESTALE` (see
/// [`try_read`]).
fn try_read_number(fd: std::os::fd::BorrowedFd<'_>, name: &str) -> rustix::io::Result<Option<u64>> {
    let mut value = [0u8; 24];
    match rustix::fs::fgetxattr(fd, name, &mut value) {
        Ok(len) => Ok(std::str::from_utf8(&value[..len])
            .ok()
            .and_then(|text| text.trim().parse().ok())),
        Err(errno @ (rustix::io::Errno::NOENT | rustix::io::Errno::STALE)) => Err(errno),
        Err(_) => Ok(None),
    }
}

fn write_number(
    fd: std::os::fd::BorrowedFd<'_>,
    name: &str,
    number: u64,
) -> rustix::io::Result<()> {
    rustix::fs::fsetxattr(
        fd,
        name,
        number.to_string().as_bytes(),
        rustix::fs::XattrFlags::empty(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_numbers_are_no_sequence() {
        assert_eq!(valid_sequence(0), None);
        assert_eq!(valid_sequence(u64::MAX), None);
        assert_eq!(valid_sequence(MAX_SEQUENCE + 1), None);
        assert_eq!(valid_sequence(MAX_SEQUENCE), Some(MAX_SEQUENCE));
        assert_eq!(next_sequence(None), 1);
        assert_eq!(next_sequence(Some(41)), 42);
        assert_eq!(next_sequence(Some(MAX_SEQUENCE)), 1);
    }
}

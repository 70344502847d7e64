//! The history of a bus: the last N published chunks, kept readable by
//! sequence number, so that consumers can catch up and replay.
//!
//! For a bus at `F`, the history is the directory `F.history/`:
//!
//! | name in `F.history/`        | what it is                                          |
//! |-----------------------------|-----------------------------------------------------|
//! | `depth`                     | N, the number of chunks kept, in decimal ASCII      |
//! | `00000000000000000042`      | chunk 42: another hard link to the file published at `F` |
//!
//! Entry names are the chunk's sequence number ([`crate::bus::stamp`]) written
//! with [`ENTRY_DIGITS`] digits, so `ls` sorts them. Every entry is a hard
//! link to the very file that was renamed onto `F`: no byte is copied.
//!
//! Producers ([`HistoryWriter`]) link each chunk into the history and unlink the
//! entry that falls out of the window, both under the bus lock, with the
//! publish. The depth belongs to the bus: it is written once, when the
//! directory is created, and every one of our producers keeps that depth,
//! whatever its own options; a producer asking for another depth is refused.
//! Before unlinking an entry a producer waits until every live named
//! consumer ([`crate::cursor`]) has written it out.
//!
//! Everything in the directory is treated as hostile: it is reached through a
//! directory descriptor with `O_NOFOLLOW`, foreign names are ignored, entries
//! that are not regular files or are larger than `--max-chunk-size` are
//! refused, and nothing is ever deleted but regular files under an entry name
//! whose sequence fell out of the window.

pub mod reader;
pub mod writer;

use std::ffi::{OsStr, OsString};

use rustix::fs::AtFlags;

use crate::bus::Bus;
pub use crate::bus::names::HISTORY_SUFFIX;
pub use reader::{Entry, HistoryDir, Holdings};
pub use writer::HistoryWriter;

/// The file in the history directory that holds its depth.
pub const DEPTH_NAME: &str = "depth";
/// Digits in an entry's name: enough for any `u64`.
pub const ENTRY_DIGITS: usize = 20;
/// The deepest history a bus may keep (a bound on what is read from `depth`).
pub const MAX_DEPTH: u64 = 1 << 20;

/// The name of history entry `sequence`.
pub fn entry_name(sequence: u64) -> String {
    format!("{sequence:0ENTRY_DIGITS$}")
}

/// The sequence number an entry name stands for, or `None` for any other name.
pub fn parse_entry_name(name: &[u8]) -> Option<u64> {
    if name.len() != ENTRY_DIGITS || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // 20 digits may exceed u64::MAX: parse refuses those.
    std::str::from_utf8(name).ok()?.parse().ok()
}

/// The name of the history directory of the bus file named `bus_name`.
pub fn directory_name(bus_name: &OsStr) -> OsString {
    let mut name = bus_name.to_owned();
    name.push(HISTORY_SUFFIX);
    name
}

/// Whether the bus has something at `F.history` (checked without following
/// a symlink; what it is is checked when it is opened).
pub fn exists(bus: &Bus) -> bool {
    rustix::fs::statat(
        bus.dir(),
        directory_name(bus.name()).as_os_str(),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_are_zero_padded_and_parse_back() {
        assert_eq!(entry_name(42), "00000000000000000042");
        assert_eq!(parse_entry_name(entry_name(42).as_bytes()), Some(42));
        assert_eq!(
            parse_entry_name(entry_name(u64::MAX).as_bytes()),
            Some(u64::MAX)
        );
    }

    #[test]
    fn foreign_names_are_not_entries() {
        for name in [
            "depth",
            "42",
            "0000000000000000004x",
            "99999999999999999999",
            "000000000000000000042",
            "+0000000000000000042",
            "",
        ] {
            assert_eq!(parse_entry_name(name.as_bytes()), None, "{name:?}");
        }
    }
}

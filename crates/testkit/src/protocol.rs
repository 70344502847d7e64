//! The protocol, driven through the library against a real directory: any
//! sequence of publishes, lossless takes, lossy looks, crashes between two
//! steps, and interference by others (a foreign writer truncating or
//! replacing `F`, a symlink planted at `F.__new__` or `F.lock`, the lock file
//! deleted). After every step:
//!
//! - a lossless take returns each chunk of each producer exactly once and in
//!   order (a take interrupted after emitting and before deleting may be
//!   repeated once, by the next take);
//! - each lossy consumer sees, per producer, a strictly increasing
//!   subsequence: no duplicate, nothing reordered;
//! - every chunk seen is whole: exactly what a producer published, or (only
//!   where the test truncated or replaced `F` itself) the foreign content;
//! - nothing outside the bus directory is ever written (the symlinks' victim
//!   keeps its content).
//!
//! Input: byte 0 picks the mode (bit 0: lossless); then pairs of bytes, an
//! operation and its argument.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::scratch::Scratch;
use filebus_core::Format;
use filebus_core::testing::{Bus, Chunk, Current, write_chunk};

/// What a consumer may read at `F`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// Chunk `number` of producer `producer`.
    Ours { producer: u8, number: u32 },
    /// Something the test itself put there (truncation, replacement).
    Foreign,
}

fn chunk_bytes(producer: u8, number: u32) -> Vec<u8> {
    format!("producer {producer} chunk {number}\n").into_bytes()
}

/// Reads a chunk and says what it is; panics on anything torn.
fn classify(bytes: &[u8], foreign: &[Vec<u8>]) -> Seen {
    if foreign.iter().any(|known| known == bytes) {
        return Seen::Foreign;
    }
    let text = std::str::from_utf8(bytes).unwrap_or_else(|_| panic!("torn chunk {bytes:?}"));
    let rest = text
        .strip_prefix("producer ")
        .unwrap_or_else(|| panic!("torn chunk {text:?}"));
    let (producer, rest) = rest
        .split_once(" chunk ")
        .unwrap_or_else(|| panic!("torn chunk {text:?}"));
    let number = rest
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("torn chunk {text:?}"));
    let seen = Seen::Ours {
        producer: producer
            .parse()
            .unwrap_or_else(|_| panic!("torn chunk {text:?}")),
        number: number
            .parse()
            .unwrap_or_else(|_| panic!("torn chunk {text:?}")),
    };
    assert_eq!(bytes, chunk_bytes_of(&seen), "torn chunk {text:?}");
    seen
}

fn chunk_bytes_of(seen: &Seen) -> Vec<u8> {
    match seen {
        Seen::Ours { producer, number } => chunk_bytes(*producer, *number),
        Seen::Foreign => Vec::new(),
    }
}

fn read_chunk(chunk: &Chunk) -> Vec<u8> {
    let mut bytes = vec![0u8; chunk.len as usize];
    let mut filled = 0;
    while filled < bytes.len() {
        match chunk.file.read_at(&mut bytes[filled..], filled as u64) {
            Ok(0) => break,
            Ok(count) => filled += count,
            Err(error) => panic!("cannot read a chunk: {error}"),
        }
    }
    bytes.truncate(filled);
    bytes
}

/// Runs the operations in `data` and checks the invariants after each.
pub fn check_protocol(data: &[u8]) {
    let Some((&mode, operations)) = data.split_first() else {
        return;
    };
    let lossless = mode & 1 == 1;
    let scratch = Scratch::new("protocol");
    let dir = scratch.0.join("bus-dir");
    let bus_path = dir.join("bus");
    let victim = scratch.0.join("victim");
    std::fs::write(&victim, b"victim").expect("cannot write the victim");
    let bus = Bus::open(&bus_path).expect("cannot open the bus");
    let mut next_number = [0u32; 2];
    // Lossless: what was taken, per producer, in order.
    let mut taken: HashMap<u8, Vec<u32>> = HashMap::new();
    // A take interrupted after emitting: the chunk it emitted.
    let mut interrupted_take: Option<Seen> = None;
    // Lossy: each consumer's last chunk (kept open) and what it saw.
    let mut lookers: [(Option<Chunk>, HashMap<u8, u32>); 2] = Default::default();
    let mut foreign: Vec<Vec<u8>> = Vec::new();
    // Lossless chunks the test itself destroyed (truncated or replaced).
    let mut destroyed: HashSet<(u8, u32)> = HashSet::new();
    let mut lock_planted = false;

    for pair in operations.chunks(2) {
        // Checked before every step, and once more after the last.
        assert_contained(&dir, &victim);
        let (operation, argument) = (pair[0] % 10, pair.get(1).copied().unwrap_or(0));
        match operation {
            // Publish the next chunk of producer 0 or 1.
            0 | 1 => {
                let producer = operation;
                let mut lock = match bus.lock_file() {
                    Ok(lock) => lock,
                    Err(error) => {
                        assert!(lock_planted, "cannot open the lock file: {error}");
                        continue;
                    }
                };
                let guard = lock.acquire().expect("cannot lock");
                if lossless && bus.exists().expect("cannot look at the bus") {
                    continue; // the producer would wait
                }
                let number = next_number[producer as usize];
                let temp = write_chunk(&bus, &chunk_bytes(producer, number), true, Format::Raw)
                    .expect("cannot write a chunk");
                bus.publish(temp, &guard).expect("cannot publish");
                next_number[producer as usize] += 1;
            }
            // A lossless take; with an odd argument, interrupted after
            // emitting and before deleting.
            2 => {
                let Ok(mut lock) = bus.lock_file() else {
                    assert!(lock_planted);
                    continue;
                };
                let guard = lock.acquire().expect("cannot lock");
                let Current::Chunk(chunk) = bus.open_current().expect("cannot open the bus") else {
                    continue;
                };
                let seen = classify(&read_chunk(&chunk), &foreign);
                if let Seen::Ours { producer, number } = seen {
                    let list = taken.entry(producer).or_default();
                    let repeat =
                        interrupted_take.as_ref() == Some(&seen) && list.last() == Some(&number);
                    if lossless && !repeat {
                        let mut expected = list.last().map_or(0, |last| last + 1);
                        while destroyed.contains(&(producer, expected)) {
                            expected += 1;
                        }
                        assert_eq!(
                            number, expected,
                            "producer {producer}: chunk {number} taken out of order"
                        );
                        list.push(number);
                    }
                }
                if argument & 1 == 1 {
                    interrupted_take = Some(seen);
                } else {
                    interrupted_take = None;
                    bus.remove_current(&guard).expect("cannot delete");
                }
            }
            // A lossy look by consumer 0 or 1, without the lock.
            3 => {
                let (last, seen_by) = &mut lookers[(argument & 1) as usize];
                let last_id = last.as_ref().map(|chunk| chunk.id);
                let current = bus.open_current().expect("cannot open the bus");
                let Current::Chunk(chunk) = current else {
                    continue;
                };
                if Some(chunk.id) == last_id {
                    continue;
                }
                if let Seen::Ours { producer, number } = classify(&read_chunk(&chunk), &foreign) {
                    if let Some(&previous) = seen_by.get(&producer) {
                        assert!(
                            number > previous,
                            "producer {producer}: chunk {number} after {previous}"
                        );
                    }
                    seen_by.insert(producer, number);
                }
                *last = Some(chunk);
            }
            // A producer killed between link and rename: a stale F.__new__.
            4 => {
                let _ = std::fs::remove_file(dir.join("bus.__new__"));
                std::fs::write(dir.join("bus.__new__"), b"stale, never published\n")
                    .expect("cannot write");
            }
            // A foreign writer truncates F in place (not under our lock), or
            // replaces it: the chunk that was there is destroyed.
            5 | 6 => {
                let before = std::fs::read(&bus_path).ok();
                if operation == 5 {
                    let Some(content) = &before else { continue };
                    let cut = usize::from(argument) % (content.len() + 1);
                    if cut == content.len() {
                        continue;
                    }
                    let file = std::fs::OpenOptions::new()
                        .write(true)
                        .open(&bus_path)
                        .expect("cannot open");
                    foreign.push(content[..cut].to_vec());
                    file.set_len(cut as u64).expect("cannot truncate");
                } else {
                    let content = format!("foreign {argument}\n").into_bytes();
                    std::fs::write(dir.join("foreign"), &content).expect("cannot write");
                    std::fs::rename(dir.join("foreign"), &bus_path).expect("cannot rename");
                    foreign.push(content);
                }
                if let Some(Seen::Ours { producer, number }) =
                    before.map(|bytes| classify(&bytes, &foreign))
                {
                    destroyed.insert((producer, number));
                }
            }
            // A symlink planted at F.__new__.
            7 => {
                let _ = std::fs::remove_file(dir.join("bus.__new__"));
                std::os::unix::fs::symlink(&victim, dir.join("bus.__new__")).expect("cannot plant");
            }
            // The lock file deleted (and a planted symlink with it).
            8 => {
                let _ = std::fs::remove_file(dir.join("bus.lock"));
                lock_planted = false;
            }
            // A symlink planted at F.lock.
            _ => {
                let _ = std::fs::remove_file(dir.join("bus.lock"));
                std::os::unix::fs::symlink(&victim, dir.join("bus.lock")).expect("cannot plant");
                lock_planted = true;
            }
        }
    }
    assert_contained(&dir, &victim);
}

/// Nothing outside the bus's names was written: the victim is intact and the
/// directory holds no stray files.
fn assert_contained(dir: &Path, victim: &Path) {
    assert_eq!(
        std::fs::read(victim).expect("victim"),
        b"victim",
        "the victim was written"
    );
    let names: Vec<OsString> = std::fs::read_dir(dir)
        .expect("cannot list")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    for name in &names {
        assert!(
            ["bus", "bus.lock", "bus.__new__"]
                .iter()
                .any(|known| name == known),
            "stray file {name:?}"
        );
    }
}

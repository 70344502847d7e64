//! Reliable multicast driven through the library against a real directory:
//! two producers keeping a history (`Bus::publish` with `--history`), the
//! real history consumer (`filebus_core::replay::Session`: catch-up from history,
//! gaps, `--last`, end of stream, `--follow`, named cursors), consumers
//! started and dropped at any point (a named consumer's death: its cursor
//! stays, its lock goes), end-of-stream chunks, and foreign files planted in
//! the history and cursor directories. After every step:
//!
//! - the history holds at most its depth of chunk entries, and every one is
//!   the very chunk published under its number;
//! - nothing planted is ever deleted;
//! - every consumer's output is whole chunks in strictly increasing order;
//! - a named consumer started again never starts before the last chunk its
//!   previous incarnation wrote (at most that one chunk is repeated).
//!
//! At the end one more chunk is published and every consumer still running
//! looks once more: the last chunk it wrote is that one, unless an
//! end-of-stream chunk published after it started ended it.
//!
//! Input: byte 0 picks the depth (1 to 8); then pairs of bytes, an operation
//! and its argument.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::time::Duration;

use crate::scratch::Scratch;
use filebus_core::bus::{Bus, Current};
use filebus_core::chunk::write_chunk;
use filebus_core::lock::LockFile;
use filebus_core::replay::Session;
use filebus_core::{Format, Options, stamp};

/// Bytes of each chunk: `chunk NNNNNN\n`.
const CHUNK_LEN: usize = 13;

fn numbered_chunk(number: u32) -> Vec<u8> {
    format!("chunk {number:06}\n").into_bytes()
}

/// The numbers of the chunks in a consumer's output; panics on anything torn.
fn written_numbers(output: &[u8]) -> Vec<u32> {
    assert_eq!(output.len() % CHUNK_LEN, 0, "torn output {output:?}");
    output
        .chunks(CHUNK_LEN)
        .map(|chunk| {
            let text =
                std::str::from_utf8(chunk).unwrap_or_else(|_| panic!("torn chunk {chunk:?}"));
            let number = text
                .strip_prefix("chunk ")
                .and_then(|rest| rest.strip_suffix('\n'))
                .and_then(|digits| digits.parse().ok())
                .unwrap_or_else(|| panic!("torn chunk {text:?}"));
            assert_eq!(chunk, numbered_chunk(number), "torn chunk {text:?}");
            number
        })
        .collect()
}

/// A running consumer.
struct Slot {
    session: Session,
    out: PathBuf,
    name: Option<String>,
}

struct World {
    bus_path: PathBuf,
    history: PathBuf,
    consumers: PathBuf,
    depth: u64,
    producers: Vec<(Bus, LockFile)>,
    slots: Vec<Option<Slot>>,
    /// What each sequence number was published with.
    published: HashMap<u64, Vec<u8>>,
    next_number: u32,
    /// The last chunk each name's previous incarnation wrote.
    last_by_name: HashMap<String, u32>,
    planted: Vec<PathBuf>,
    outputs: u64,
    scratch: PathBuf,
}

impl World {
    /// Publishes `bytes` (an empty chunk: end of stream) by `producer`.
    /// Live named consumers write out what they have first: in one thread,
    /// that is what the producer would wait for.
    fn publish(&mut self, producer: usize, bytes: &[u8]) {
        for index in 0..self.slots.len() {
            if self.slots[index]
                .as_ref()
                .is_some_and(|slot| slot.name.is_some())
            {
                self.look(index);
            }
        }
        let (bus, lock) = &mut self.producers[producer];
        let guard = lock.acquire().expect("cannot lock");
        let temp = write_chunk(bus, bytes, true, Format::Raw).expect("cannot write a chunk");
        bus.publish(temp, &guard).expect("cannot publish");
        drop(guard);
        let Current::Chunk(chunk) = bus.open_current().expect("cannot open F") else {
            panic!("nothing at F after a publish");
        };
        let sequence = stamp::read(&chunk.file)
            .expect("an unstamped chunk")
            .sequence;
        self.published.insert(sequence, bytes.to_vec());
    }

    fn start(&mut self, index: usize, argument: u8) {
        if self.slots[index].is_some() {
            return;
        }
        let mut options = Options::new(&self.bus_path);
        options.name = (index < 2).then(|| format!("n{index}"));
        options.last = (argument & 0x10 != 0).then_some(u64::from(argument >> 5));
        options.follow = argument & 0x08 != 0;
        options.stats = Some(Default::default());
        self.outputs += 1;
        let out = self.scratch.join(format!("out-{}", self.outputs));
        let file = File::create(&out).expect("cannot create an output file");
        let session = Session::start(&options, file).expect("cannot start a consumer");
        self.slots[index] = Some(Slot {
            session,
            out,
            name: options.name,
        });
    }

    fn look(&mut self, index: usize) {
        let Some(slot) = &mut self.slots[index] else {
            return;
        };
        if slot.session.look().expect("a consumer failed") {
            self.stop(index);
        }
    }

    /// Ends consumer `index` (as kill -9 would: its lock goes, its cursor stays).
    fn stop(&mut self, index: usize) {
        let Some(slot) = self.slots[index].take() else {
            return;
        };
        let numbers = self.check_output(&slot);
        drop(slot.session);
        if let (Some(name), Some(&last)) = (slot.name, numbers.last()) {
            self.last_by_name.insert(name, last);
        }
    }

    fn check_output(&self, slot: &Slot) -> Vec<u32> {
        check_output(&self.last_by_name, slot)
    }
}

/// Checks a consumer's output so far; returns the chunk numbers in it.
fn check_output(last_by_name: &HashMap<String, u32>, slot: &Slot) -> Vec<u32> {
    {
        let numbers = written_numbers(&std::fs::read(&slot.out).expect("cannot read an output"));
        assert!(
            numbers.windows(2).all(|pair| pair[0] < pair[1]),
            "repeated or reordered: {numbers:?}"
        );
        if let (Some(name), Some(&first)) = (&slot.name, numbers.first())
            && let Some(&before) = last_by_name.get(name)
        {
            assert!(first >= before, "{name} went back from {before} to {first}");
        }
        numbers
    }
}

impl World {
    /// Something that is not a chunk, where a careless implementation might
    /// follow, read or delete it.
    fn plant(&mut self, argument: u8) {
        let path = match argument % 4 {
            // A directory under an entry name the window left long ago.
            0 => {
                let Some(old) = self.published.keys().max().and_then(|newest| {
                    newest.checked_sub(self.depth + 1 + u64::from(argument >> 2) % 4)
                }) else {
                    return;
                };
                self.history.join(format!("{old:020}"))
            }
            1 => self.history.join(format!("junk{argument}")),
            2 => self.consumers.join(format!("plain{argument}")),
            _ => self.consumers.join(format!("dir{argument}")),
        };
        let parent = path.parent().expect("a parent");
        if !parent.is_dir() || std::fs::symlink_metadata(&path).is_ok() {
            return;
        }
        match argument % 4 {
            0 | 3 => std::fs::create_dir(&path).expect("cannot plant a directory"),
            1 => std::os::unix::fs::symlink(&self.bus_path, &path).expect("cannot plant a symlink"),
            _ => std::fs::write(&path, b"not a cursor").expect("cannot plant a file"),
        }
        self.planted.push(path);
    }

    fn check(&self) {
        if let Ok(entries) = std::fs::read_dir(&self.history) {
            let mut held = 0;
            for entry in entries {
                let entry = entry.expect("a directory entry");
                let name = entry.file_name().to_string_lossy().into_owned();
                let is_entry = name.len() == 20 && name.bytes().all(|byte| byte.is_ascii_digit());
                if !is_entry || !entry.file_type().expect("a file type").is_file() {
                    continue;
                }
                held += 1;
                let sequence: u64 = name.parse().expect("digits");
                let content = std::fs::read(entry.path()).expect("cannot read an entry");
                assert_eq!(
                    Some(&content),
                    self.published.get(&sequence),
                    "entry {sequence} is not what was published under that number"
                );
            }
            assert!(
                held as u64 <= self.depth,
                "{held} entries held, depth {}",
                self.depth
            );
        }
        for path in &self.planted {
            assert!(
                std::fs::symlink_metadata(path).is_ok(),
                "{} was deleted",
                path.display()
            );
        }
        for slot in self.slots.iter().flatten() {
            self.check_output(slot);
        }
    }
}

pub fn check_history(data: &[u8]) {
    let Some((&first, operations)) = data.split_first() else {
        return;
    };
    let scratch = Scratch::new("history");
    let bus_path = scratch.0.join("bus-dir").join("bus");
    let depth = u64::from(first % 8) + 1;
    let producers = (0..2)
        .map(|_| {
            let bus = Bus::open(&bus_path).expect("cannot open the bus");
            bus.history()
                .configure(Some(depth), false, Duration::from_millis(1), false);
            let lock = bus.lock_file().expect("cannot open the lock");
            (bus, lock)
        })
        .collect();
    let mut world = World {
        history: scratch.0.join("bus-dir").join("bus.history"),
        consumers: scratch.0.join("bus-dir").join("bus.consumers"),
        bus_path,
        depth,
        producers,
        slots: (0..3).map(|_| None).collect(),
        published: HashMap::new(),
        next_number: 0,
        last_by_name: HashMap::new(),
        planted: Vec::new(),
        outputs: 0,
        scratch: scratch.0.clone(),
    };
    for pair in operations.chunks(2).take(200) {
        let (operation, argument) = (pair[0], pair.get(1).copied().unwrap_or(0));
        let slot = usize::from(argument) % 3;
        match operation % 6 {
            0 | 1 => {
                let bytes = numbered_chunk(world.next_number);
                world.next_number += 1;
                world.publish(usize::from(argument & 1), &bytes);
            }
            2 => world.look(slot),
            3 => world.start(slot, argument),
            4 => world.stop(slot),
            _ if argument & 0x80 != 0 => world.publish(usize::from(argument & 1), b""),
            _ => world.plant(argument),
        }
        world.check();
    }
    // The end check: the last chunk published reaches every consumer.
    if world.slots.iter().any(Option::is_some) {
        let number = world.next_number;
        world.publish(0, &numbered_chunk(number));
        for index in 0..world.slots.len() {
            let Some(slot) = &mut world.slots[index] else {
                continue;
            };
            if slot.session.look().expect("a consumer failed") {
                continue;
            }
            let numbers = check_output(&world.last_by_name, slot);
            assert_eq!(
                numbers.last(),
                Some(&number),
                "the last chunk was not delivered"
            );
        }
    }
}

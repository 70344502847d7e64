//! Reliable multicast driven through the library against a real directory:
//! two producers keeping a history (`Bus::publish` with `--history`), the
//! real history consumer (`filebus_core::testing::Session`: catch-up from history,
//! gaps, `--last`, end of stream, `--follow`, named cursors), consumers
//! started and dropped at any point (a named consumer's death: its cursor
//! stays, its lock goes, and it is taken for dead long ago), end-of-stream
//! chunks, and foreign files planted in the history and cursor directories.
//!
//! Start orders and stalls: a producer touches the bus (its lock file, the
//! history) only at its first publish, so a consumer started before that
//! finds no bus at all; a consumer is looked at only when the input says so
//! (stalled meanwhile across any number of chunks, end-of-stream chunks and
//! streams), except that a live named consumer is looked at when a publish
//! would otherwise wait for it (in one thread, that is what the producer
//! waits for); several streams follow one another.
//!
//! After every step:
//!
//! - the history holds at most its depth of chunk entries, and every one is
//!   the very chunk published under its number; the bus's sequence numbers
//!   are 1, 2, 3, … in the order of the publishes;
//! - nothing planted is ever deleted;
//! - every consumer's output is whole chunks in strictly increasing order;
//! - a named consumer started again never starts before the last chunk its
//!   previous incarnation wrote (at most that one chunk is repeated).
//!
//! After every look, the consumer is checked against a model of what it
//! must do (docs/PROTOCOL.md, "When a consumer starts, and when it ends"):
//! where it starts (after its cursor; from chunk 1 before any publish; at
//! the chunk at `F` or `--last K` back, an end-of-stream chunk at `F` not
//! counted), which chunks it writes (every one from there that the history
//! still holds when it looks), whether it ended (at the first end-of-stream
//! chunk it writes numbered above where it started, `--follow` never), and
//! its missed count (`--stats`): exactly the chunks from its start that it
//! did not write. Only where `--last K` reaches back further than the
//! history held when it started, and the ended stream a consumer finds at
//! `F`, may chunks be skipped without counting them.
//!
//! At the end one more chunk is published and every consumer still running
//! looks once more: the last chunk it wrote is that one, unless an
//! end-of-stream chunk published after it started ended it. Then the stream
//! ends (an end-of-stream chunk) and every consumer looks again: each one
//! not following has ended, and missed exactly the chunks from its start to
//! that end that it did not write.
//!
//! Input: byte 0 picks the depth (1 to 8); then pairs of bytes, an operation
//! and its argument.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::PathBuf;
use std::time::Duration;

use crate::scratch::Scratch;
use filebus_core::testing::{
    Bus, Current, HistoryWriter, LockFile, Session, stamp, survey, write_chunk,
};
use filebus_core::{ConsumerOptions, Format, SharedStats};

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

/// What a consumer must have done so far.
#[derive(Debug)]
struct Model {
    /// The sequence of the next chunk it considers.
    next: u64,
    /// End-of-stream chunks up to this one end nothing.
    end_after: u64,
    follow: bool,
    /// Chunks from this one on that it does not write are missed.
    counts_from: u64,
    /// Chunks it must have counted as missed.
    missed: u64,
    /// The chunks it must have written (end-of-stream chunks included).
    written: Vec<u64>,
    /// Whether an end-of-stream chunk ended it.
    ended: bool,
}

impl Model {
    /// One look at the bus whose counter (the chunk at `F`) is `counter`,
    /// with a history of `depth`; `markers` are the end-of-stream chunks.
    fn look(&mut self, counter: u64, depth: u64, markers: &BTreeSet<u64>) {
        if self.ended || counter < self.next {
            return;
        }
        for sequence in self.next..=counter {
            if sequence + depth > counter {
                self.written.push(sequence);
                self.next = sequence + 1;
                if markers.contains(&sequence) && !self.follow && sequence > self.end_after {
                    self.ended = true;
                    return;
                }
            } else if sequence >= self.counts_from {
                self.missed += 1;
            }
        }
        self.next = counter + 1;
    }
}

/// A running consumer.
struct Slot {
    session: Session,
    stats: SharedStats,
    out: PathBuf,
    name: Option<String>,
    model: Model,
}

struct World {
    bus_path: PathBuf,
    history: PathBuf,
    consumers: PathBuf,
    depth: u64,
    /// Made at their first publish: until then there is no bus at all.
    producers: Vec<Option<(Bus, LockFile, HistoryWriter)>>,
    slots: Vec<Option<Slot>>,
    /// What each sequence number was published with.
    published: HashMap<u64, Vec<u8>>,
    /// The sequence each numbered chunk was published under.
    sequence_of: HashMap<u32, u64>,
    /// The end-of-stream chunks published.
    markers: BTreeSet<u64>,
    /// The last sequence number given (the chunk at `F`).
    counter: u64,
    next_number: u32,
    /// The last chunk each name's previous incarnation wrote.
    last_by_name: HashMap<String, u32>,
    /// Each name's cursor, as the model has it.
    cursors: HashMap<String, u64>,
    planted: Vec<PathBuf>,
    outputs: u64,
    scratch: PathBuf,
}

impl World {
    /// The producer `index`, made now if it has not published yet.
    fn producer(&mut self, index: usize) -> &mut (Bus, LockFile, HistoryWriter) {
        let depth = self.depth;
        let bus_path = &self.bus_path;
        self.producers[index].get_or_insert_with(|| {
            let bus = Bus::open(bus_path).expect("cannot open the bus");
            let history = HistoryWriter::new(Some(depth), Duration::from_millis(1), false);
            let lock = bus.lock_file().expect("cannot open the lock");
            (bus, lock, history)
        })
    }

    /// Publishes `bytes` (an empty chunk: end of stream) by `producer`.
    /// A live named consumer that has not written the chunk about to leave
    /// the window looks first: in one thread, that is what the producer
    /// would wait for.
    fn publish(&mut self, producer: usize, bytes: &[u8]) {
        let sequence = self.counter + 1;
        if let Some(leaving) = sequence
            .checked_sub(self.depth)
            .filter(|&leaving| leaving > 0)
        {
            for index in 0..self.slots.len() {
                if self.slots[index]
                    .as_ref()
                    .is_some_and(|slot| slot.name.is_some() && slot.model.next <= leaving)
                {
                    self.look(index);
                }
            }
            self.dead_long_ago();
            // Rather a failure than a producer waiting for ever.
            let running: Vec<String> = self
                .slots
                .iter()
                .flatten()
                .filter_map(|slot| slot.name.clone())
                .collect();
            let (bus, _, _) = self.producer(producer);
            let mut consumers = survey(bus).expect("cannot survey the named consumers");
            // A consumer this world stopped can still look locked for an
            // instant when the property runs among other tests: a child
            // they fork holds a copy of every descriptor until its exec,
            // and a flock belongs to the open file, not to the descriptor.
            for _ in 0..500 {
                let lingering = consumers
                    .iter()
                    .any(|consumer| consumer.alive && !running.contains(&consumer.name));
                if !lingering {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
                consumers = survey(bus).expect("cannot survey the named consumers");
            }
            for consumer in consumers {
                assert!(
                    !consumer.alive || consumer.cursor.is_some_and(|cursor| cursor >= leaving),
                    "named consumer {} (cursor {:?}) would hold back the publish of chunk \
                     {sequence}, depth {}, after it looked",
                    consumer.name,
                    consumer.cursor,
                    self.depth
                );
            }
        }
        let (bus, lock, history) = self.producer(producer);
        let guard = lock.acquire().expect("cannot lock");
        let temp = write_chunk(bus, bytes, true, Format::Raw).expect("cannot write a chunk");
        history.publish(bus, temp, &guard).expect("cannot publish");
        drop(guard);
        let Current::Chunk(chunk) = bus.open_current().expect("cannot open F") else {
            panic!("nothing at F after a publish");
        };
        let stamped = stamp::read(&chunk.file)
            .expect("an unstamped chunk")
            .sequence;
        assert_eq!(stamped, sequence, "the bus's sequence is not 1, 2, 3, …");
        self.counter = sequence;
        self.published.insert(sequence, bytes.to_vec());
        if bytes.is_empty() {
            self.markers.insert(sequence);
        } else {
            let number = written_numbers(bytes)[0];
            self.sequence_of.insert(number, sequence);
        }
    }

    /// Makes every named consumer not running dead for long: its cursor
    /// file last touched at the epoch, so that no producer takes a recent
    /// touch (a heartbeat) for a sign of life and waits for it on the clock.
    fn dead_long_ago(&self) {
        for index in 0..2 {
            if self.slots[index].is_some() {
                continue;
            }
            if let Ok(file) = File::open(self.consumers.join(format!("n{index}"))) {
                file.set_modified(std::time::UNIX_EPOCH)
                    .expect("cannot set a cursor file's modification time");
            }
        }
    }

    /// Where a consumer started now with `last` and `follow` (and the
    /// cursor of `name`) must start, and what it counts.
    fn model(&mut self, name: Option<&str>, last: Option<u64>, follow: bool) -> Model {
        let counter = self.counter;
        let starting = |next: u64, end_after: u64, counts_from: u64| Model {
            next,
            end_after,
            follow,
            counts_from,
            missed: 0,
            written: Vec::new(),
            ended: false,
        };
        if let Some(&position) = name.and_then(|name| self.cursors.get(name)) {
            // After the cursor, every chunk counted.
            return starting(position + 1, position, position + 1);
        }
        let model = if counter == 0 {
            // Before the first publish: from chunk 1.
            starting(1, 0, 1)
        } else {
            let at_end = self.markers.contains(&counter);
            let newest = if at_end { counter - 1 } else { counter };
            let back = last.unwrap_or(1).min(newest);
            let from_f = newest - back + 1;
            let end_after = if at_end && last.is_some_and(|k| k > 0) {
                counter - 1
            } else {
                counter
            };
            // Reaching back further than the history holds now is not a
            // loss, nor is missing the ended stream at `F`; anything else
            // leaving the history before it is written is.
            let oldest_held = (counter + 1).saturating_sub(self.depth).max(1);
            let counts_from = if at_end {
                counter + 1
            } else {
                from_f.max(oldest_held)
            };
            starting(from_f, end_after, counts_from)
        };
        if let Some(name) = name {
            self.cursors.insert(name.to_owned(), model.next - 1);
        }
        model
    }

    fn start(&mut self, index: usize, argument: u8) {
        if self.slots[index].is_some() {
            return;
        }
        let mut options = ConsumerOptions::new(&self.bus_path);
        options.name = (index < 2).then(|| format!("n{index}"));
        options.last = (argument & 0x10 != 0).then_some(u64::from(argument >> 5));
        options.follow = argument & 0x08 != 0;
        let stats = SharedStats::default();
        options.stats = Some(stats.clone());
        self.outputs += 1;
        let out = self.scratch.join(format!("out-{}", self.outputs));
        let file = File::create(&out).expect("cannot create an output file");
        let session = Session::start(&options, file).expect("cannot start a consumer");
        let model = self.model(options.name.as_deref(), options.last, options.follow);
        self.slots[index] = Some(Slot {
            session,
            stats,
            out,
            name: options.name,
            model,
        });
    }

    /// Consumer `index` looks once; true if it ended (and was stopped).
    fn look(&mut self, index: usize) -> bool {
        let Some(slot) = &mut self.slots[index] else {
            return false;
        };
        let ended = slot.session.look().expect("a consumer failed");
        slot.model.look(self.counter, self.depth, &self.markers);
        if let (Some(name), Some(&last)) = (&slot.name, slot.model.written.last()) {
            self.cursors.insert(name.clone(), last);
        }
        self.compare(index, ended);
        if ended {
            self.stop(index);
        }
        ended
    }

    /// Checks consumer `index`, which just looked (and `ended` or not),
    /// against its model.
    fn compare(&self, index: usize, ended: bool) {
        let Some(slot) = &self.slots[index] else {
            return;
        };
        let model = &slot.model;
        let who = slot.name.as_deref().unwrap_or("unnamed");
        let written: Vec<u64> = self
            .check_output(slot)
            .iter()
            .map(|number| self.sequence_of[number])
            .collect();
        let expected: Vec<u64> = model
            .written
            .iter()
            .copied()
            .filter(|sequence| !self.markers.contains(sequence))
            .collect();
        assert_eq!(
            written, expected,
            "consumer {who} wrote chunks {written:?}, not {expected:?} ({model:?}, \
             counter {}, depth {})",
            self.counter, self.depth
        );
        let (chunks, missed) = {
            let stats = slot.stats.lock().expect("stats");
            (stats.chunks(), stats.missed())
        };
        assert_eq!(
            chunks,
            model.written.len() as u64,
            "consumer {who} counted {chunks} chunks written ({model:?})"
        );
        assert_eq!(
            ended, model.ended,
            "consumer {who} ended: {ended}, not {} ({model:?}, counter {}, markers {:?})",
            model.ended, self.counter, self.markers
        );
        assert_eq!(
            slot.session.missed(),
            Some(missed),
            "Session::missed is not the stats' count"
        );
        assert_eq!(
            missed, model.missed,
            "consumer {who} counted {missed} chunks missed, not {} ({model:?}, counter {}, \
             depth {})",
            model.missed, self.counter, self.depth
        );
        if ended {
            // No silent gap: everything from its start to the end that it
            // did not write is missed.
            let end = *model.written.last().expect("the end-of-stream chunk");
            let unwritten = (model.counts_from..=end)
                .filter(|sequence| model.written.binary_search(sequence).is_err())
                .count() as u64;
            assert_eq!(
                missed, unwritten,
                "consumer {who} ended at {end} having missed {missed} chunks, not the \
                 {unwritten} it did not write ({model:?})"
            );
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
    let mut world = World {
        history: scratch.0.join("bus-dir").join("bus.history"),
        consumers: scratch.0.join("bus-dir").join("bus.consumers"),
        bus_path,
        depth,
        producers: vec![None, None],
        slots: (0..3).map(|_| None).collect(),
        published: HashMap::new(),
        sequence_of: HashMap::new(),
        markers: BTreeSet::new(),
        counter: 0,
        next_number: 0,
        last_by_name: HashMap::new(),
        cursors: HashMap::new(),
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
            2 => {
                world.look(slot);
            }
            3 => world.start(slot, argument),
            4 => world.stop(slot),
            _ if argument & 0x80 != 0 => world.publish(usize::from(argument & 1), b""),
            _ => world.plant(argument),
        }
        world.check();
    }
    if world.slots.iter().all(Option::is_none) {
        return;
    }
    // The last chunk published reaches every consumer.
    let number = world.next_number;
    world.publish(0, &numbered_chunk(number));
    for index in 0..world.slots.len() {
        if world.slots[index].is_none() || world.look(index) {
            continue;
        }
        let slot = world.slots[index].as_ref().expect("a consumer");
        let numbers = world.check_output(slot);
        assert_eq!(
            numbers.last(),
            Some(&number),
            "the last chunk was not delivered"
        );
    }
    // The stream ends: every consumer not following ends with it, having
    // missed exactly what it did not write (checked by `look`).
    world.publish(1, b"");
    for index in 0..world.slots.len() {
        let Some(slot) = &world.slots[index] else {
            continue;
        };
        let follow = slot.model.follow;
        let who = slot.name.clone().unwrap_or_else(|| "unnamed".to_owned());
        let ended = world.look(index);
        assert!(
            ended || follow,
            "consumer {who} did not end at the end of the stream"
        );
    }
    world.check();
}

//! The producer: standard input → chunks ([`cut`]) → temporary files
//! ([`chunk_file`]) → published at `F` (with the history, when the bus keeps
//! one).
//!
//! | module         | what it holds                                        |
//! |----------------|------------------------------------------------------|
//! | [`cut`]        | when to cut input into chunks (pure)                 |
//! | [`chunk_file`] | building a chunk in its temporary file               |
//! | [`input`]      | reading the input: its kind, waits, pipe size        |

pub mod chunk_file;
pub mod cut;
pub mod input;
pub mod options;

use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use rustix::io::Errno;

use crate::bus::Bus;
use crate::bus::lock::LockFile;
use crate::bus::temp_file::TempFile;
use crate::error::{Error, Result};
use crate::history::HistoryWriter;
use crate::stop::StopFlag;
use crate::watch::{Change, Watcher};
use chunk_file::{ChunkBuilder, InputMethod};
use cut::{Chunker, Next, RecordChunker, RecordNext, RecordPolicy};
use input::{Input, InputKind, clear_nonblocking, input_kind, wait_readable};
use options::ProducerOptions;

/// How a call to [`fill`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filled {
    /// The chunk is full, or its oldest byte has waited long enough.
    Ready,
    /// Standard input is at its end.
    EndOfInput,
}

/// Reads `input` (standard input, in the command) and publishes it on the
/// bus until the input ends; then, in lossless mode or on a bus with
/// history, publishes an end-of-stream chunk.
///
/// Fails at once, without touching the bus, if the options do not pass
/// [`ProducerOptions::validate`].
pub fn run(options: &ProducerOptions, input: impl AsFd) -> Result<()> {
    options.validate()?;
    let bus = Bus::open(&options.bus.path)?.stopped_by(options.bus.stop);
    let stdin = input.as_fd();
    if options.blocking_read {
        clear_nonblocking(stdin)?;
    }
    let mut lock = bus.lock_file()?;
    let delivery = if options.bus.lossless {
        Delivery::Lossless(Watcher::new_for(
            &bus,
            Change::Departure,
            options.bus.file_monitoring,
            options.bus.sleep_interval,
        )?)
    } else {
        Delivery::Lossy(prepare_history(&bus, options, &mut lock)?)
    };
    let mut publisher = Publisher {
        bus: &bus,
        lock: &mut lock,
        delivery,
        room: true,
    };
    match options.delimiter {
        None => publish_blocks(&bus, options, stdin, &mut publisher)?,
        Some(delimiter) => publish_records(&bus, options, stdin, &mut publisher, delimiter)?,
    }
    if publisher.ends_with_marker() {
        log::debug!("end of input: publishing the end-of-stream marker");
        publisher.publish(chunk_file::write_chunk(
            &bus,
            b"",
            options.anonymous_temp,
            options.bus.format,
        )?)?;
    }
    Ok(())
}

/// Sets up the bus's history ([`crate::history`]) before any input is read:
/// made or checked with `--history` (a wrong depth is reported at once),
/// otherwise found if the bus has one, so that even a producer with no
/// input ends its stream with an end-of-stream chunk.
fn prepare_history(
    bus: &Bus,
    options: &ProducerOptions,
    lock: &mut LockFile,
) -> Result<HistoryWriter> {
    let writer = HistoryWriter::new(
        options.history,
        options.bus.sleep_interval,
        options.bus.file_monitoring,
    );
    let guard = lock.acquire()?;
    writer.prepare(bus, &guard)?;
    Ok(writer)
}

/// Publishes standard input in chunks of up to a block, built in place in
/// their temporary files.
fn publish_blocks(
    bus: &Bus,
    options: &ProducerOptions,
    stdin: BorrowedFd<'_>,
    publisher: &mut Publisher<'_>,
) -> Result<()> {
    let mut chunker = Chunker::new(options.chunk_policy());
    let kind = input_kind(stdin);
    let input_method = options.input_method.for_input(kind == InputKind::Pipe);
    // A non-blocking splice, or a read of a regular file, says itself that
    // nothing is ready: no poll is needed before it.
    let never_blocks = input_method == InputMethod::Splice || kind == InputKind::File;
    log::debug!("input: {input_method:?}");
    // One buffer for every chunk (where the method reads through one).
    let mut buffer = Vec::new();
    let mut input = Input::new(stdin, options.block_size.get());
    loop {
        let mut chunk = ChunkBuilder::with_buffer(
            bus,
            options.block_size.get(),
            input_method,
            options.anonymous_temp,
            options.bus.format,
            std::mem::take(&mut buffer),
        )?;
        let filled = fill(
            &mut chunk,
            &mut chunker,
            &mut input,
            never_blocks,
            options.bus.stop,
        )?;
        if !chunk.is_empty() {
            log::debug!("publishing {} bytes", chunk.len());
            let (temp, reused) = chunk.finish_with_buffer(bus.dir_path())?;
            buffer = reused;
            publisher.publish(temp)?;
        }
        if filled == Filled::EndOfInput {
            return Ok(());
        }
    }
}

/// The most bytes read at once while a long record accumulates.
const RECORD_READ_STEP: usize = 1 << 20;

/// Publishes standard input in chunks of whole records. The input not yet
/// published stays in a buffer, so records are always read with `read(2)`.
fn publish_records(
    bus: &Bus,
    options: &ProducerOptions,
    stdin: BorrowedFd<'_>,
    publisher: &mut Publisher<'_>,
    delimiter: u8,
) -> Result<()> {
    let mut chunker = RecordChunker::new(RecordPolicy::new(options.chunk_policy(), delimiter));
    let mut input = Input::new(stdin, options.block_size.get());
    // Grows with the input: a large --block-size costs nothing until used.
    let mut pending: Vec<u8> = Vec::new();
    let mut at_end = false;
    loop {
        options.bus.stop.check()?;
        match chunker.next(&pending, Instant::now(), at_end) {
            RecordNext::Done => return Ok(()),
            RecordNext::Publish { len, splits_record } => {
                if splits_record {
                    log::warn!(
                        "a record longer than {} bytes was split across chunks",
                        chunker.policy().max_record
                    );
                }
                log::debug!("publishing {len} bytes of records");
                publisher.publish(chunk_file::write_chunk(
                    bus,
                    &pending[..len],
                    options.anonymous_temp,
                    options.bus.format,
                )?)?;
                pending.drain(..len);
                chunker.published(&pending, Instant::now());
            }
            RecordNext::Read { wait, room } => {
                // A timeout means the chunker's delay ran out: ask it again.
                if !wait_readable(stdin, wait, options.bus.stop)? {
                    continue;
                }
                let start = pending.len();
                pending.resize(start + room.min(RECORD_READ_STEP), 0);
                let read = rustix::io::read(stdin, &mut pending[start..]);
                pending.truncate(start + *read.as_ref().unwrap_or(&0));
                match read {
                    Ok(0) => at_end = true,
                    Ok(count) => {
                        input.read(count);
                        chunker.record_input(&pending[start..], Instant::now());
                    }
                    Err(Errno::INTR) => options.bus.stop.check()?,
                    Err(Errno::AGAIN) => {}
                    Err(errno) => return Err(Error::stream("cannot read standard input", errno)),
                }
            }
        }
    }
}

/// Publishes chunks, waiting for the bus to be empty first in lossless mode.
struct Publisher<'a> {
    bus: &'a Bus,
    lock: &'a mut LockFile,
    delivery: Delivery,
    /// Lossless mode: whether `F` may be absent, as far as the watcher's
    /// events tell. Set when a consumer takes a chunk, cleared when our
    /// publish (or a failed one) finds `F` there.
    room: bool,
}

/// How a producer delivers its chunks.
enum Delivery {
    /// Lossy multicast: each chunk replaces the last, kept in the bus's
    /// history if it has one.
    Lossy(HistoryWriter),
    /// Lossless unicast: each chunk waits for `F` to be empty, woken by
    /// this watcher (of departures from `F`).
    Lossless(Watcher),
}

impl Publisher<'_> {
    /// Whether the stream ends with an end-of-stream chunk: in lossless
    /// mode, and on a bus with history.
    fn ends_with_marker(&self) -> bool {
        match &self.delivery {
            Delivery::Lossy(history) => history.is_active(),
            Delivery::Lossless(_) => true,
        }
    }

    fn publish(&mut self, temp: TempFile) -> Result<()> {
        let watcher = match &mut self.delivery {
            Delivery::Lossy(history) => {
                let guard = self.lock.acquire()?;
                return history.publish(self.bus, temp, &guard);
            }
            Delivery::Lossless(watcher) => watcher,
        };
        let mut temp = temp;
        loop {
            if watcher.uses_events() {
                // The link under the lock is the check that `F` is absent:
                // no `stat` of `F` per chunk (see Watcher::wait_for).
                if !self.room {
                    watcher.wait_for(Change::Departure)?;
                }
            } else {
                watcher.wait_until(|| Ok(!self.bus.exists()?))?;
            }
            let guard = self.lock.acquire()?;
            // Another producer may have published since we looked; either
            // way `F` is there now, and the next room is a departure.
            self.room = false;
            match self.bus.publish_if_absent(temp, &guard)? {
                None => return Ok(()),
                Some(unpublished) => temp = unpublished,
            }
        }
    }
}

/// Reads standard input into `chunk` until the chunker says to publish or the
/// input ends.
///
/// Where a read cannot block (`never_blocks`: a non-blocking splice from a
/// pipe, or a regular file) it reads first and waits only when told that
/// nothing is ready, which saves a `poll` per read while input keeps
/// coming; otherwise it waits for input before every read.
fn fill(
    chunk: &mut ChunkBuilder,
    chunker: &mut Chunker,
    input: &mut Input<'_>,
    never_blocks: bool,
    stop: StopFlag,
) -> Result<Filled> {
    let stdin = input.fd;
    let filled = loop {
        // A signal that arrived outside a blocking call is seen here.
        stop.check()?;
        let (wait, room) = match chunker.next(Instant::now()) {
            Next::Publish => break Filled::Ready,
            Next::Read { wait, room } => (wait, room),
        };
        if !never_blocks && !wait_readable(stdin, wait, stop)? {
            break Filled::Ready;
        }
        match chunk.read_from(stdin, room) {
            Ok(0) => break Filled::EndOfInput,
            // A short count does not mean that the input is drained: a
            // splice also stops short at a full disk or the file size limit
            // (and the next one then fails, as it must).
            Ok(count) => {
                input.read(count);
                chunker.record_input(count, Instant::now());
            }
            Err(Errno::INTR) => stop.check()?,
            // Nothing ready now: publish if the chunker says not to wait,
            // otherwise wait (a timeout means its delay ran out).
            Err(Errno::AGAIN) if never_blocks => {
                if wait == Some(Duration::ZERO) || !wait_readable(stdin, wait, stop)? {
                    break Filled::Ready;
                }
            }
            Err(Errno::AGAIN) => {}
            Err(errno) => return Err(Error::stream("cannot read standard input", errno)),
        }
    };
    let cut = chunker.cut();
    debug_assert_eq!(cut, chunk.len());
    Ok(filled)
}

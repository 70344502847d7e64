//! The producer: standard input → chunks → temporary files → rename onto `F`.

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::fs::OFlags;
use rustix::io::Errno;

use crate::Options;
use crate::bus::{Bus, TempFile};
use crate::chunk::{self, ChunkBuilder, InputMethod};
use crate::chunker::{Chunker, Next, RecordChunker, RecordNext, RecordPolicy};
use crate::error::{Error, Result};
use crate::lock::LockFile;
use crate::pipe::PipeSize;
use crate::stop::StopFlag;
use crate::watch::Watcher;

/// How a call to [`fill`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filled {
    /// The chunk is full, or its oldest byte has waited long enough.
    Ready,
    /// Standard input is at its end.
    EndOfInput,
}

/// Reads standard input and publishes it on the bus until the input ends.
///
/// `blocking_read` clears `O_NONBLOCK` on standard input first (the reference
/// option of the same name); without it a non-blocking input works as well.
pub fn run(options: &Options, blocking_read: bool) -> Result<()> {
    let bus = Bus::open(&options.path)?.stopped_by(options.stop);
    let stdin = rustix::stdio::stdin();
    if blocking_read {
        clear_nonblocking(stdin)?;
    }
    let mut lock = bus.lock_file()?;
    prepare_history(&bus, options, &mut lock)?;
    let mut publisher = Publisher {
        watcher: if options.lossless {
            Some(Watcher::new(
                &bus,
                options.file_monitoring,
                options.sleep_interval,
            )?)
        } else {
            None
        },
        bus: &bus,
        lock: &mut lock,
    };
    match options.delimiter {
        None => publish_blocks(&bus, options, stdin, &mut publisher)?,
        Some(delimiter) => publish_records(&bus, options, stdin, &mut publisher, delimiter)?,
    }
    if options.lossless || bus.history().is_active() {
        log::debug!("end of input: publishing the end-of-stream marker");
        publisher.publish(chunk::write_chunk(
            &bus,
            b"",
            options.anonymous_temp,
            options.format,
        )?)?;
    }
    Ok(())
}

/// Sets up the bus's history ([`crate::history`]) before any input is read:
/// made or checked with `--history` (a wrong depth is reported at once),
/// otherwise found if the bus has one, so that even a producer with no
/// input ends its stream with an end-of-stream chunk.
fn prepare_history(bus: &Bus, options: &Options, lock: &mut LockFile) -> Result<()> {
    bus.history().configure(
        options.history,
        options.lossless,
        options.sleep_interval,
        options.file_monitoring,
    );
    if !options.lossless {
        let guard = lock.acquire()?;
        bus.history().prepare(bus, &guard)?;
    }
    Ok(())
}

/// Publishes standard input in chunks of up to a block, built in place in
/// their temporary files.
fn publish_blocks(
    bus: &Bus,
    options: &Options,
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
            options.format,
            std::mem::take(&mut buffer),
        )?;
        let filled = fill(
            &mut chunk,
            &mut chunker,
            &mut input,
            never_blocks,
            options.stop,
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
    options: &Options,
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
        options.stop.check()?;
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
                publisher.publish(chunk::write_chunk(
                    bus,
                    &pending[..len],
                    options.anonymous_temp,
                    options.format,
                )?)?;
                pending.drain(..len);
                chunker.published(&pending, Instant::now());
            }
            RecordNext::Read { wait, room } => {
                // A timeout means the chunker's delay ran out: ask it again.
                if !wait_readable(stdin, wait, options.stop)? {
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
                    Err(Errno::INTR) => options.stop.check()?,
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
    /// Present in lossless mode.
    watcher: Option<Watcher>,
}

impl Publisher<'_> {
    fn publish(&mut self, temp: TempFile) -> Result<()> {
        let Some(watcher) = &mut self.watcher else {
            let guard = self.lock.acquire()?;
            return self.bus.publish(temp, &guard);
        };
        let mut temp = temp;
        loop {
            watcher.wait_until(|| Ok(!self.bus.exists()?))?;
            let guard = self.lock.acquire()?;
            // Another producer may have published since we looked.
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

/// Standard input, and its pipe's size, grown to the block size once a read
/// finds it full (see [`crate::pipe`]).
struct Input<'fd> {
    fd: BorrowedFd<'fd>,
    pipe: PipeSize,
    block_size: usize,
}

impl<'fd> Input<'fd> {
    fn new(fd: BorrowedFd<'fd>, block_size: usize) -> Self {
        Input {
            fd,
            pipe: PipeSize::of(fd),
            block_size,
        }
    }

    /// Notes a read of `count` bytes.
    fn read(&mut self, count: usize) {
        if self.pipe.was_full(count) {
            self.pipe.grow(self.fd, self.block_size, "input");
        }
    }
}

/// Waits until standard input has data or an end (`None`: without limit).
/// Returns false if the time ran out first.
fn wait_readable(stdin: BorrowedFd<'_>, wait: Option<Duration>, stop: StopFlag) -> Result<bool> {
    let timeout = wait.map(crate::watch::timeout);
    let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
    loop {
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(0) => return Ok(false),
            Ok(_) if fds[0].revents().contains(PollFlags::NVAL) => {
                return Err(Error::stream("cannot read standard input", Errno::BADF));
            }
            // Readable, hung up or in error: the read will tell which.
            Ok(_) => return Ok(true),
            // A signal: stop if it asks us to, otherwise wait on (a little
            // longer than asked, which the chunker's clock corrects).
            Err(Errno::INTR) => stop.check()?,
            Err(errno) => return Err(Error::stream("cannot wait for standard input", errno)),
        }
    }
}

/// What standard input is, as far as reading it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InputKind {
    Pipe,
    /// A regular file: a read never blocks (it returns 0 at the end).
    File,
    /// A terminal, a socket, a device: a read may block.
    Other,
}

fn input_kind(fd: BorrowedFd<'_>) -> InputKind {
    match rustix::fs::fstat(fd).map(|stat| rustix::fs::FileType::from_raw_mode(stat.st_mode)) {
        Ok(rustix::fs::FileType::Fifo) => InputKind::Pipe,
        Ok(rustix::fs::FileType::RegularFile) => InputKind::File,
        _ => InputKind::Other,
    }
}

fn clear_nonblocking(stdin: BorrowedFd<'_>) -> Result<()> {
    let flags = rustix::fs::fcntl_getfl(stdin)
        .map_err(|errno| Error::stream("cannot inspect standard input", errno))?;
    if flags.contains(OFlags::NONBLOCK) {
        rustix::fs::fcntl_setfl(stdin, flags - OFlags::NONBLOCK)
            .map_err(|errno| Error::stream("cannot make standard input blocking", errno))?;
    }
    Ok(())
}

//! The floor's producer: standard input cut into chunks ([`Gatherer`]),
//! each published at once, lossless or lossy (with history if asked).

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::inotify::WatchFlags;
use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use super::cursors::Cursors;
use super::{
    Bus, FloorOptions, SEQUENCE, TIME, entry_name, failed, grow_pipe, link_as, make_dir,
    write_number,
};
use crate::BenchError;

/// The history of a bus: its directory and depth.
struct History {
    dir: OwnedFd,
    depth: u64,
}

/// Publishes standard input until it ends: lossy, lossless (then an empty
/// chunk marks the end of the stream), or lossy with `history` (an empty
/// chunk too, as our producers keeping history do).
pub(super) fn run(options: &FloorOptions, history: Option<u64>) -> Result<(), BenchError> {
    // A lossless producer waits for the chunk at F to be taken.
    let watch = options
        .lossless
        .then_some(WatchFlags::DELETE | WatchFlags::MOVED_FROM);
    let bus = Bus::open(&options.bus, watch)?;
    let history = history.map(|depth| open_history(&bus, depth)).transpose()?;
    let mut cursors = history.as_ref().map(|_| Cursors::new(&bus));
    let stdin = rustix::stdio::stdin();
    grow_pipe(stdin, options.block_size);
    let mut buffer = vec![0u8; options.block_size];
    let mut input = Gatherer {
        interval: options.sleep_interval,
        latest: None,
    };
    let mut sequence = bus.counter()?;
    loop {
        let count = input.next(&mut buffer)?;
        if count == 0 && !options.lossless && history.is_none() {
            // A plain lossy producer writes no end marker.
            return Ok(());
        }
        sequence += 1;
        let chunk = make_chunk(&bus, &buffer[..count], sequence)?;
        if options.lossless {
            hand_over(&bus, &chunk, sequence)?;
        } else {
            bus.lock(true)?;
            let published = publish(&bus, &chunk, sequence, history.as_ref(), &mut cursors);
            bus.lock(false)?;
            published?;
        }
        if count == 0 {
            return Ok(());
        }
    }
}

/// How input is cut into chunks.
///
/// With a zero interval, one `read` is one chunk (as in the C floor).
/// Otherwise input that keeps coming is gathered as ours gathers it, so
/// that the floor publishes as many chunks as ours where records trickle
/// in: input after a quiet spell (no input for a tenth of the interval)
/// goes out at once; input that keeps coming goes out when the buffer is
/// full, at the next quiet spell, or once its first byte has waited the
/// interval.
struct Gatherer {
    interval: Duration,
    /// When input last arrived.
    latest: Option<Instant>,
}

impl Gatherer {
    /// Reads the next chunk into `buffer`: 0 bytes at the end of the input.
    fn next(&mut self, buffer: &mut [u8]) -> Result<usize, BenchError> {
        let mut count = read_input(buffer)?;
        let first = Instant::now();
        let quiet = self.interval / 10;
        let after_quiet = self
            .latest
            .is_none_or(|latest| first.duration_since(latest) >= quiet);
        self.latest = Some(first);
        if self.interval.is_zero() || count == 0 || after_quiet {
            return Ok(count);
        }
        let deadline = first + self.interval;
        while count < buffer.len() {
            let now = Instant::now();
            if now >= deadline || !input_within(quiet.min(deadline - now))? {
                break;
            }
            let more = read_input(&mut buffer[count..])?;
            self.latest = Some(Instant::now());
            if more == 0 {
                // The end of the input: this chunk, then the end.
                break;
            }
            count += more;
        }
        Ok(count)
    }
}

/// Whether standard input has something (or its end) within `timeout`.
fn input_within(timeout: Duration) -> Result<bool, BenchError> {
    let stdin = rustix::stdio::stdin();
    let timeout = Timespec {
        tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
    match rustix::event::poll(&mut fds, Some(&timeout)) {
        Ok(ready) => Ok(ready > 0),
        Err(Errno::INTR) => Ok(true),
        Err(errno) => Err(failed("cannot wait for standard input", errno)),
    }
}

/// Reads what standard input has, up to the buffer's size; 0 at its end.
fn read_input(buffer: &mut [u8]) -> Result<usize, BenchError> {
    let stdin = rustix::stdio::stdin();
    loop {
        match rustix::io::read(stdin, &mut *buffer) {
            Ok(count) => return Ok(count),
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => {
                // A non-blocking input: wait until it has something.
                let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
                match rustix::event::poll(&mut fds, None) {
                    Ok(_) | Err(Errno::INTR) => continue,
                    Err(errno) => return Err(failed("cannot wait for standard input", errno)),
                }
            }
            Err(errno) => return Err(failed("cannot read standard input", errno)),
        }
    }
}

/// An anonymous file in the bus's directory with `content`, stamped with
/// `sequence` and the time now. Where the filesystem has no extended
/// attributes, the chunk goes unstamped (as the C floor's do).
fn make_chunk(bus: &Bus, content: &[u8], sequence: u64) -> Result<OwnedFd, BenchError> {
    let chunk = rustix::fs::openat(
        &bus.dir,
        c".",
        OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .map_err(|errno| {
        failed(
            &format!("cannot create an O_TMPFILE beside {}", bus.display("")),
            errno,
        )
    })?;
    let mut written = 0;
    while written < content.len() {
        match rustix::io::write(&chunk, &content[written..]) {
            Ok(count) => written += count,
            Err(Errno::INTR) => {}
            Err(errno) => {
                return Err(failed(
                    &format!("cannot write a chunk of {}", bus.display("")),
                    errno,
                ));
            }
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        });
    for (name, value) in [(SEQUENCE, sequence), (TIME, now)] {
        match write_number(chunk.as_fd(), name, value) {
            Ok(()) | Err(Errno::NOTSUP) => {}
            Err(errno) => {
                return Err(failed(
                    &format!("cannot stamp a chunk of {}", bus.display("")),
                    errno,
                ));
            }
        }
    }
    Ok(chunk)
}

/// Lossless: links `chunk` as `F` once `F` is gone, holding the lock for
/// each attempt and waiting for a deletion between them.
fn hand_over(bus: &Bus, chunk: &OwnedFd, sequence: u64) -> Result<(), BenchError> {
    loop {
        bus.lock(true)?;
        let counted = write_number(bus.lock.as_fd(), SEQUENCE, sequence);
        let linked = link_as(chunk.as_fd(), bus.dir.as_fd(), &bus.name);
        bus.lock(false)?;
        counted.map_err(|errno| {
            failed(
                &format!("cannot set the counter on {}", bus.display(".lock")),
                errno,
            )
        })?;
        match linked {
            Ok(()) => return Ok(()),
            Err(Errno::EXIST) => bus.wait(|_| {})?,
            Err(errno) => {
                return Err(failed(
                    &format!("cannot link a chunk as {}", bus.display("")),
                    errno,
                ));
            }
        }
    }
}

/// Lossy, holding the lock: sets the counter; with history, waits for the
/// named consumers and links `chunk` into the history; links `chunk` as
/// `F` (or exchanges it with the chunk there, which it then unlinks); with
/// history, unlinks the entry that left the window.
fn publish(
    bus: &Bus,
    chunk: &OwnedFd,
    sequence: u64,
    history: Option<&History>,
    cursors: &mut Option<Cursors>,
) -> Result<(), BenchError> {
    write_number(bus.lock.as_fd(), SEQUENCE, sequence).map_err(|errno| {
        failed(
            &format!("cannot set the counter on {}", bus.display(".lock")),
            errno,
        )
    })?;
    let leaving = history.and_then(|history| sequence.checked_sub(history.depth));
    if let Some(history) = history {
        if let (Some(cursors), Some(leaving)) = (cursors.as_mut(), leaving.filter(|&n| n > 0)) {
            cursors.wait_until_written(bus, leaving)?;
        }
        link_as(chunk.as_fd(), history.dir.as_fd(), &entry_name(sequence)).map_err(|errno| {
            failed(
                &format!("cannot link a chunk into {}", bus.display(".history")),
                errno,
            )
        })?;
    }
    replace_chunk(bus, chunk)?;
    if let (Some(history), Some(leaving)) = (history, leaving.filter(|&n| n > 0)) {
        match rustix::fs::unlinkat(&history.dir, entry_name(leaving), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(errno) => {
                return Err(failed(
                    &format!("cannot unlink an entry of {}", bus.display(".history")),
                    errno,
                ));
            }
        }
    }
    Ok(())
}

/// Links `chunk` as `F`, or where a chunk is there, as `F.__new__`,
/// exchanged with `F`, and unlinks the chunk it replaced.
fn replace_chunk(bus: &Bus, chunk: &OwnedFd) -> Result<(), BenchError> {
    match link_as(chunk.as_fd(), bus.dir.as_fd(), &bus.name) {
        Ok(()) => return Ok(()),
        Err(Errno::EXIST) => {}
        Err(errno) => {
            return Err(failed(
                &format!("cannot link a chunk as {}", bus.display("")),
                errno,
            ));
        }
    }
    let new_name = bus.sibling(".__new__");
    link_as(chunk.as_fd(), bus.dir.as_fd(), &new_name).map_err(|errno| {
        failed(
            &format!("cannot link a chunk as {}", bus.display(".__new__")),
            errno,
        )
    })?;
    rustix::fs::renameat_with(
        &bus.dir,
        &new_name,
        &bus.dir,
        &bus.name,
        RenameFlags::EXCHANGE,
    )
    .map_err(|errno| {
        failed(
            &format!(
                "cannot exchange {} and {}",
                bus.display(".__new__"),
                bus.display("")
            ),
            errno,
        )
    })?;
    rustix::fs::unlinkat(&bus.dir, &new_name, AtFlags::empty())
        .map_err(|errno| failed(&format!("cannot unlink {}", bus.display(".__new__")), errno))
}

/// Creates `F.history` if missing, with its `depth` file when it is new.
fn open_history(bus: &Bus, depth: u64) -> Result<History, BenchError> {
    let dir = make_dir(bus.dir.as_fd(), &bus.sibling(".history"))
        .map_err(|errno| failed(&format!("cannot create {}", bus.display(".history")), errno))?;
    match rustix::fs::openat(
        &dir,
        c"depth",
        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    ) {
        Ok(file) => {
            let text = format!("{depth}\n");
            rustix::io::write(&file, text.as_bytes()).map_err(|errno| {
                failed(
                    &format!("cannot write {}", bus.display(".history/depth")),
                    errno,
                )
            })?;
        }
        Err(Errno::EXIST) => {}
        Err(errno) => {
            return Err(failed(
                &format!("cannot create {}", bus.display(".history/depth")),
                errno,
            ));
        }
    }
    Ok(History { dir, depth })
}

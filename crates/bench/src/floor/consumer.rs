//! The floor's consumer: wakes on the directory's events, and writes each
//! new chunk at `F` to standard output with `sendfile`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::event::{PollFd, PollFlags};
use rustix::fs::AtFlags;
use rustix::fs::inotify::WatchFlags;
use rustix::io::Errno;

use super::cursors::Cursor;
use super::{
    Bus, FloorOptions, SEQUENCE, entry_name, failed, grow_pipe, open_dir_if_there, open_if_there,
    read_number,
};
use crate::BenchError;

/// Runs a consumer: lossless (takes each chunk, ends at the empty one) or
/// lossy (writes each new chunk it sees; on a bus with history, also the
/// entries it missed, and ends at an end-of-stream chunk), named if `name`
/// is given.
pub(super) fn run(options: &FloorOptions, name: Option<&str>) -> Result<(), BenchError> {
    let bus = Bus::open(
        &options.bus,
        Some(WatchFlags::CREATE | WatchFlags::MOVED_TO),
    )?;
    let mut output = Output::new();
    if options.lossless {
        return take_each(&bus, &mut output);
    }
    // A named consumer claims its cursor before it looks at the bus.
    let cursor = name.map(|name| Cursor::claim(&bus, name)).transpose()?;
    let start = bus.counter()?;
    if let Some(cursor) = &cursor {
        cursor.record(start)?;
    }
    Watcher {
        bus: &bus,
        history_name: bus.sibling(".history"),
        history: None,
        next: start + 1,
        start,
        last: None,
        cursor,
        output,
    }
    .run()
}

/// Lossless: under the lock, takes the chunk at `F` (opens, then unlinks
/// it), and writes it out after releasing the lock; an empty chunk ends
/// the stream.
fn take_each(bus: &Bus, output: &mut Output) -> Result<(), BenchError> {
    loop {
        bus.lock(true)?;
        let taken = match open_if_there(bus.dir.as_fd(), &bus.name) {
            Ok(Some(chunk)) => rustix::fs::fstat(&chunk).and_then(|stat| {
                rustix::fs::unlinkat(&bus.dir, &bus.name, AtFlags::empty())?;
                Ok(Some((chunk, stat.st_size as u64)))
            }),
            Ok(None) => Ok(None),
            Err(errno) => Err(errno),
        };
        bus.lock(false)?;
        match taken.map_err(|errno| failed(&format!("cannot take {}", bus.display("")), errno))? {
            Some((_, 0)) => return Ok(()),
            Some((chunk, size)) => output.send(chunk.as_fd(), size)?,
            None => bus.wait(|_| {})?,
        }
    }
}

/// A lossy consumer's state.
struct Watcher<'a> {
    bus: &'a Bus,
    /// `F.history`'s name in the directory.
    history_name: std::ffi::CString,
    /// `F.history`, once it exists.
    history: Option<OwnedFd>,
    /// The sequence of the next chunk to write out (with history).
    next: u64,
    /// The bus's counter when the consumer started: an end-of-stream chunk
    /// numbered above it ends the consumer.
    start: u64,
    /// The last chunk written out without history, kept open so that its
    /// inode number cannot be given to the next chunk.
    last: Option<(OwnedFd, u64, u64)>,
    cursor: Option<Cursor>,
    output: Output,
}

impl Watcher<'_> {
    fn run(mut self) -> Result<(), BenchError> {
        self.look_for_history()?;
        loop {
            if self.look()? {
                return Ok(());
            }
            let mut history_created = false;
            let history_name = self.history_name.as_c_str();
            self.bus
                .wait(|name| history_created |= name == Some(history_name))?;
            if history_created && self.history.is_none() {
                self.look_for_history()?;
            }
        }
    }

    /// Opens `F.history` if it is there. Chunks written out before it was
    /// seen are not replayed: the next is the one after the last written.
    fn look_for_history(&mut self) -> Result<(), BenchError> {
        self.history =
            open_dir_if_there(self.bus.dir.as_fd(), &self.history_name).map_err(|errno| {
                failed(
                    &format!("cannot open {}", self.bus.display(".history")),
                    errno,
                )
            })?;
        if self.history.is_some()
            && let Some((last, _, _)) = &self.last
            && let Ok(Some(sequence)) = read_number(last.as_fd(), SEQUENCE)
        {
            self.next = self.next.max(sequence + 1);
        }
        Ok(())
    }

    /// Writes out what is new at `F` (and before it in the history);
    /// `true` when an end-of-stream chunk ended the stream.
    fn look(&mut self) -> Result<bool, BenchError> {
        let what = || self.bus.display("");
        let Some(chunk) = open_if_there(self.bus.dir.as_fd(), &self.bus.name)
            .map_err(|errno| failed(&format!("cannot open {}", what()), errno))?
        else {
            return Ok(false);
        };
        let stat = rustix::fs::fstat(&chunk)
            .map_err(|errno| failed(&format!("cannot stat {}", what()), errno))?;
        let size = stat.st_size as u64;
        if self.history.is_some() {
            let stamp = read_number(chunk.as_fd(), SEQUENCE)
                .map_err(|errno| failed(&format!("cannot read the stamp of {}", what()), errno))?;
            if let Some(sequence) = stamp {
                if sequence < self.next {
                    return Ok(false);
                }
                if self.replay(sequence)? {
                    return Ok(true);
                }
                return self.write_out(chunk.as_fd(), size, sequence);
            }
        }
        let identity = (stat.st_dev, stat.st_ino);
        if self
            .last
            .as_ref()
            .is_some_and(|(_, dev, ino)| (*dev, *ino) == identity)
        {
            return Ok(false);
        }
        self.output.send(chunk.as_fd(), size)?;
        self.last = Some((chunk, identity.0, identity.1));
        Ok(false)
    }

    /// Writes out the entries from `next` up to before `sequence` that the
    /// history holds (the others were lost); `true` at an end of stream.
    fn replay(&mut self, sequence: u64) -> Result<bool, BenchError> {
        while self.next < sequence {
            let number = self.next;
            let entry = match &self.history {
                Some(history) => {
                    open_if_there(history.as_fd(), &entry_name(number)).map_err(|errno| {
                        failed(
                            &format!("cannot open {}", self.bus.display(".history")),
                            errno,
                        )
                    })?
                }
                None => None,
            };
            match entry {
                Some(entry) => {
                    let size = rustix::fs::fstat(&entry)
                        .map_err(|errno| failed("cannot stat a history entry", errno))?
                        .st_size as u64;
                    if self.write_out(entry.as_fd(), size, number)? {
                        return Ok(true);
                    }
                }
                // Left the window before we got to it: lost.
                None => self.next = number + 1,
            }
        }
        Ok(false)
    }

    /// Writes out chunk `sequence` and records it; `true` if it is an end of
    /// stream that ends this consumer.
    fn write_out(
        &mut self,
        chunk: BorrowedFd<'_>,
        size: u64,
        sequence: u64,
    ) -> Result<bool, BenchError> {
        self.output.send(chunk, size)?;
        if let Some(cursor) = &self.cursor {
            cursor.record(sequence)?;
        }
        self.next = sequence + 1;
        Ok(size == 0 && sequence > self.start)
    }
}

/// Standard output, grown to the largest chunk (at most 1 MiB).
struct Output {
    /// The pipe's size; `None` if it is not a pipe.
    pipe_size: Option<usize>,
}

impl Output {
    fn new() -> Output {
        Output {
            pipe_size: grow_pipe(rustix::stdio::stdout(), 0),
        }
    }

    /// Writes the first `size` bytes of `chunk` with `sendfile`.
    fn send(&mut self, chunk: BorrowedFd<'_>, size: u64) -> Result<(), BenchError> {
        let stdout = rustix::stdio::stdout();
        if self.pipe_size.is_some_and(|pipe| (pipe as u64) < size) {
            self.pipe_size = grow_pipe(stdout, usize::try_from(size).unwrap_or(usize::MAX));
        }
        let mut offset = 0u64;
        while offset < size {
            let count = usize::try_from(size - offset).unwrap_or(usize::MAX);
            match rustix::fs::sendfile(stdout, chunk, Some(&mut offset), count) {
                // A chunk is never shortened once published.
                Ok(0) => return Ok(()),
                Ok(_) | Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => {
                    let mut fds = [PollFd::new(&stdout, PollFlags::OUT)];
                    match rustix::event::poll(&mut fds, None) {
                        Ok(_) | Err(Errno::INTR) => {}
                        Err(errno) => {
                            return Err(failed("cannot wait for standard output", errno));
                        }
                    }
                }
                Err(errno) => return Err(failed("cannot write to standard output", errno)),
            }
        }
        Ok(())
    }
}

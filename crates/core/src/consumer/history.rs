//! The lossy consumer on a bus with history ([`crate::history`]): chunks
//! written out in sequence order, catching up from history, replaying the
//! last K chunks, ending at an end-of-stream chunk, and keeping a named
//! cursor ([`crate::cursor`]).
//!
//! Each time `F` changes, the consumer reads the sequence number of the
//! chunk there (its stamp), writes out from history every chunk after the
//! last one it wrote, then the chunk at `F`. A chunk no longer held (the
//! consumer fell more than the history's depth behind) is reported on
//! stderr, once per gap, and counted as missed by `--stats`; the consumer
//! goes on from the oldest chunk still held.
//!
//! Chunks without a stamp (from the reference implementation, say) are not
//! in history; they are written out when seen at `F`, as without history.
//!
//! End of stream: an empty chunk with a stamp, which our producers publish
//! at the end of their input on a history bus (reference consumers see an
//! empty chunk and write nothing). The consumer exits after it, unless it
//! was there before the consumer started or `--follow` was given.

use std::borrow::{Borrow, BorrowMut};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::PoisonError;

use super::options::ConsumerOptions;
use super::output::{Content, Output, looking_again};
use super::stats::SharedStats;
use crate::bus::format::Format;
use crate::bus::names::LOCK_SUFFIX;
use crate::bus::stamp;
use crate::bus::{Bus, Chunk, Current};
use crate::cursor::Cursor;
use crate::error::{Error, Report, Result};
use crate::history::{self, Entry, HistoryDir};
use crate::sink::Sink;
use crate::watch::Watcher;

/// The `log` target of a consumer's report of the chunks it lost (they left
/// the history before it wrote them), logged at level error so that it is
/// shown whatever the verbosity. The `filebus` command prints these lines as
/// `filebus: lost N chunks: ...`, without a level.
pub const LOSS_LOG_TARGET: &str = "filebus::lost";

/// Whether a new consumer should run as a history consumer from the start:
/// the bus has a history, or an option asks for one of its features.
pub(crate) fn wanted(bus: &Bus, options: &ConsumerOptions) -> bool {
    options.wants_history() || history::exists(bus)
}

/// The last sequence number given on the bus (kept on `F.lock`), read
/// without locking; `None` if there is no readable counter.
pub fn bus_counter(bus: &Bus) -> Option<u64> {
    use rustix::fs::{FileType, Mode, OFlags};
    let mut name = bus.name().to_owned();
    name.push(LOCK_SUFFIX);
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    let fd = rustix::fs::openat(bus.dir(), name.as_os_str(), flags, Mode::empty()).ok()?;
    let stat = rustix::fs::fstat(&fd).ok()?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return None;
    }
    if stamp::unsupported(&fd) {
        // No extended attributes: the newest history entry is the counter.
        return HistoryDir::open(bus).ok()??.newest().ok()?;
    }
    stamp::last_sequence(&fd)
}

/// How many times a history entry still held is read again after a read
/// that did not get it whole, before it is counted as lost.
const MAX_REREADS: u32 = 3;

/// Whether to go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Go,
    /// An end-of-stream chunk was written out: exit 0.
    End,
    /// The chunk could not be read, because another machine deleted it
    /// (see [`Error::ChunkVanished`]): nothing was written out.
    Vanished,
}

/// Runs the history consumer until an end of stream (or for ever).
///
/// `last` is the chunk a plain consumer already wrote out before it found
/// the history; `baseline` the bus's counter when the consumer started.
pub(crate) fn run(
    bus: &Bus,
    watcher: &mut Watcher,
    output: &mut Output<'_>,
    options: &ConsumerOptions,
    last: Option<Chunk>,
    baseline: Option<u64>,
) -> Result<()> {
    output.stamps = true;
    let mut replay = Replay::start(bus, output, options, last, baseline)?;
    loop {
        if replay.look()? == Flow::End {
            return Ok(());
        }
        watcher.wait_for_change()?;
    }
}

/// The consumer's state; `B` is a [`Bus`] or a reference to one, `O` an
/// [`Output`] or a mutable reference to one.
struct Replay<B, O> {
    bus: B,
    output: O,
    history: Option<HistoryDir>,
    warned_history: bool,
    cursor: Option<Cursor>,
    /// The sequence of the next chunk to write out, once known.
    next: Option<u64>,
    /// End-of-stream chunks up to this sequence were there before we
    /// started: they end nothing.
    end_after: u64,
    follow: bool,
    /// The last chunk written out, kept open so that its inode number is
    /// not recycled (see `lossy::look_forever`).
    last: Option<Chunk>,
    warned_unusable: bool,
    /// A gap being skipped, not reported yet.
    pending_loss: Option<(u64, u64)>,
    /// Chunks numbered below this one that are not held are not a loss:
    /// `--last K` reaching further back than the history held when the
    /// consumer started, or the stream that had ended at `F` by then. From
    /// here on, every chunk not written is reported.
    counts_from: u64,
    /// The filesystem has no extended attributes, so chunks carry no stamp:
    /// history entries are written by their names, and the chunk at `F`
    /// only says that something new was published.
    unstamped: bool,
}

/// A history consumer driven one look at a time, writing to a file: the
/// real consumer logic (catch-up, gaps, end of stream, cursor, stats)
/// without the wait for changes. For tests and fuzzing.
pub struct Session {
    replay: Replay<Bus, Output<'static>>,
    stats: Option<SharedStats>,
}

impl Session {
    /// Starts a consumer of the bus at `options.bus.path` (with its `name`,
    /// `last`, `follow` and `stats`) writing to `out`.
    pub fn start(options: &ConsumerOptions, out: File) -> Result<Session> {
        let bus = Bus::open(&options.bus.path)?;
        let stats = options.stats.clone();
        let sink = Sink::owning(OwnedFd::from(out), options.output_method)?;
        let mut output = Output::new(sink, options, &bus);
        output.stamps = true;
        let baseline = bus_counter(&bus);
        Ok(Session {
            replay: Replay::start(bus, output, options, None, baseline)?,
            stats,
        })
    }

    /// Looks at the bus once, writing out everything new; `true` once it
    /// wrote an end-of-stream chunk that ends it.
    pub fn look(&mut self) -> Result<bool> {
        Ok(self.replay.look()? == Flow::End)
    }

    /// Chunks missed so far, from gaps in the sequence (with `stats`).
    pub fn missed(&self) -> Option<u64> {
        let stats = self.stats.as_ref()?;
        Some(
            stats
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .missed(),
        )
    }
}

impl<'fd, B: Borrow<Bus>, O: BorrowMut<Output<'fd>>> Replay<B, O> {
    /// Claims the cursor of a named consumer, finds the history and decides
    /// where to start (see [`Replay::position`]).
    fn start(
        bus: B,
        output: O,
        options: &ConsumerOptions,
        last: Option<Chunk>,
        baseline: Option<u64>,
    ) -> Result<Self> {
        let cursor = match &options.name {
            Some(name) => Some(Cursor::claim(bus.borrow(), name)?),
            None => None,
        };
        // A new named consumer holds producers back from its claim on (its
        // cursor, claimed but empty, holds everything): it starts after the
        // counter as it stands now, not as it stood before it could hold
        // anything, which would make chunks published in between a loss.
        let baseline = match &cursor {
            Some(cursor) if cursor.position().is_none() => bus_counter(bus.borrow()),
            _ => baseline,
        };
        let mut replay = Replay {
            bus,
            output,
            history: None,
            warned_history: false,
            cursor,
            next: None,
            end_after: baseline.unwrap_or(0),
            follow: options.follow,
            last: None,
            warned_unusable: false,
            pending_loss: None,
            counts_from: 0,
            unstamped: false,
        };
        replay.open_history();
        replay.position(options.last, last, baseline)?;
        Ok(replay)
    }

    /// Decides where to start: after the cursor of a named consumer that
    /// has one; after the chunk a plain consumer already wrote; otherwise
    /// at the chunk at `F` (`--last K`: K chunks back), or, if there is
    /// none yet, after the bus's counter when we started.
    fn position(
        &mut self,
        last_k: Option<u64>,
        last: Option<Chunk>,
        baseline: Option<u64>,
    ) -> Result<()> {
        if let Some(position) = self.cursor.as_ref().and_then(Cursor::position) {
            self.next = Some(position.saturating_add(1));
            self.end_after = position;
            self.output.borrow().expect(position.saturating_add(1));
            log::debug!(
                "history consumer: starting at chunk {:?} (after the cursor)",
                self.next
            );
            return Ok(());
        }
        let after_baseline = baseline.map_or(1, |baseline| baseline.saturating_add(1));
        // An end-of-stream chunk the plain consumer saw wrote nothing: it
        // starts as one that saw nothing (on a FUSE or network filesystem
        // it can see a stream's end at `F` before the history, its earlier
        // look for it answered from the client's cache; it then counts the
        // stream and ends at that end, instead of waiting for the next).
        if let Some(chunk) = last.filter(|chunk| chunk.len > 0) {
            let sequence = self.sequence_of(
                &chunk,
                self.output.borrow().content(self.bus.borrow(), &chunk).ok(),
            );
            self.next =
                Some(sequence.map_or(after_baseline, |sequence| sequence.saturating_add(1)));
            self.last = Some(chunk);
        } else if let Current::Chunk(chunk) = self.bus.borrow().open_current()?
            && let content = self.output.borrow().content(self.bus.borrow(), &chunk).ok()
            && let at_end = content.as_ref().is_some_and(|content| content.len == 0)
            && let Some(sequence) = self.sequence_of(&chunk, content)
        {
            // Like a plain consumer, a late joiner starts with the chunk
            // at `F`; --last K reaches K - 1 further back, not counting an
            // end-of-stream chunk at `F`. Never after a chunk published
            // since we started, though.
            let newest = if at_end {
                sequence.saturating_sub(1)
            } else {
                sequence
            };
            let back = last_k.unwrap_or(1).min(newest);
            let from_f = (newest - back).saturating_add(1);
            if after_baseline < from_f {
                // Present before these chunks were published (started
                // before the stream, then stalled, say): it counts the
                // stream from where it stood, so what left the history
                // meanwhile is a loss, and the stream's end ends it.
                self.next = Some(after_baseline);
                self.end_after = baseline.unwrap_or(0);
            } else {
                self.next = Some(from_f);
                // An end-of-stream chunk at `F` that --last K replays (K
                // at least 1) ends the replay, as `tail -n K` ends; a plain
                // late joiner waits for the next stream.
                self.end_after = if at_end && last_k.is_some_and(|k| k > 0) {
                    sequence.saturating_sub(1)
                } else {
                    sequence
                };
                // Reaching back further than the history holds now is
                // where this consumer starts, not a loss, nor is missing a
                // stream that had ended at `F`; any other chunk leaving the
                // history before it is written is a loss.
                self.counts_from = if at_end {
                    sequence.saturating_add(1)
                } else {
                    let oldest_held = self
                        .history
                        .as_ref()
                        .and_then(|history| history.first_from(from_f).ok().flatten())
                        .unwrap_or(from_f);
                    from_f.max(oldest_held.min(sequence))
                };
            }
        } else {
            self.next = Some(after_baseline);
        }
        if let Some(next) = self.next {
            self.counts_from = self.counts_from.max(next);
            self.output.borrow().expect(self.counts_from);
        }
        // A new named consumer holds producers back from here on.
        if let (Some(cursor), Some(next)) = (&mut self.cursor, self.next) {
            cursor.advance(next.saturating_sub(1))?;
        }
        log::debug!("history consumer: starting at chunk {:?}", self.next);
        Ok(())
    }

    /// Opens the history directory if there is one now; a bad one is
    /// reported once and ignored.
    fn open_history(&mut self) {
        if self.history.is_some() {
            return;
        }
        match HistoryDir::open(self.bus.borrow()) {
            Ok(history) => self.history = history,
            Err(error) if !self.warned_history => {
                log::warn!("{}: ignoring it", Report(&error));
                self.warned_history = true;
            }
            Err(_) => {}
        }
    }

    /// The sequence number of `chunk`, from its stamp.
    ///
    /// Where the filesystem has no extended attributes, the newest history
    /// entry: our producers link a chunk into history before it reaches `F`.
    fn sequence_of(&mut self, chunk: &Chunk, content: Option<Content>) -> Option<u64> {
        let stamped = match (content, self.output_format()) {
            (Some(content), _) => content.stamp.map(|stamp| stamp.sequence),
            (None, Format::Raw) => stamp::read(&chunk.file).map(|stamp| stamp.sequence),
            (None, Format::Tar) => None,
        };
        match stamped {
            None => self.newest_if_unstamped(chunk).ok().flatten(),
            stamped => stamped,
        }
    }

    /// Where the filesystem of `chunk` (unstamped) has no extended
    /// attributes, so that no chunk can carry a stamp: notes it, and gives
    /// the newest history entry, the number of the newest chunk published
    /// (our producers link a chunk into history before it reaches `F`).
    /// `None` where chunks could be stamped (`chunk` is a foreign one), or
    /// without a history.
    fn newest_if_unstamped(&mut self, chunk: &Chunk) -> Result<Option<u64>> {
        if self.output_format() != Format::Raw || !stamp::unsupported(&chunk.file) {
            return Ok(None);
        }
        self.unstamped = true;
        match &self.history {
            Some(history) => history.newest(),
            None => Ok(None),
        }
    }

    fn output_format(&self) -> Format {
        self.output.borrow().format()
    }

    /// Looks at `F`; writes out what is new.
    fn look(&mut self) -> Result<Flow> {
        let last_id = self.last.as_ref().map(|chunk| chunk.id);
        // A stat is cheaper than an open; open only when `F` changed. Not
        // without stamps: there (NFSv3) a new chunk can be given the inode
        // number of one already written, so every look lists the history.
        if !self.unstamped
            && self
                .bus
                .borrow()
                .current_id()?
                .is_some_and(|id| Some(id) == last_id)
        {
            return Ok(Flow::Go);
        }
        let chunk = match self.bus.borrow().open_current()? {
            Current::Absent => return Ok(Flow::Go),
            Current::Unusable(kind) => {
                if !self.warned_unusable {
                    log::warn!(
                        "{} is {kind}, not a chunk: waiting for the next one",
                        self.bus.borrow().path().display()
                    );
                    self.warned_unusable = true;
                }
                return Ok(Flow::Go);
            }
            Current::Chunk(chunk) if !self.unstamped && Some(chunk.id) == last_id => {
                return Ok(Flow::Go);
            }
            Current::Chunk(chunk) => chunk,
        };
        self.warned_unusable = false;
        self.open_history();
        let content = self.output.borrow().content(self.bus.borrow(), &chunk);
        let sequence = match &content {
            Ok(content) => content.stamp.map(|stamp| stamp.sequence),
            // Replaced or deleted under us: look again.
            Err(Error::ChunkVanished) => return Ok(Flow::Go),
            Err(_) if self.output_format() == Format::Raw => {
                stamp::read(&chunk.file).map(|stamp| stamp.sequence)
            }
            Err(_) => None,
        };
        if sequence.is_none()
            && let Some(newest) = self.newest_if_unstamped(&chunk)?
        {
            // No stamps on this filesystem: write out the entries up to
            // the newest, by their names; `F` only woke us up.
            self.last = Some(chunk);
            return self.catch_up(None, newest.saturating_add(1));
        }
        if sequence.is_some() && !self.bus.borrow().still_current(&chunk) {
            // The stamp may be the newer chunk's (see Bus::still_current):
            // `F` changed, so the next look sees the newer one.
            log::debug!(
                "{}: replaced while we read its stamp: looking again",
                self.bus.borrow().path().display()
            );
            return Ok(Flow::Go);
        }
        match sequence {
            Some(sequence) if self.history.is_some() => {
                self.catch_up(Some((chunk, content)), sequence)
            }
            _ => self.write(chunk, content, sequence),
        }
    }

    /// Writes out every chunk from `next` to `sequence`: the earlier ones
    /// from history, then chunk `sequence` itself, the one at `F` (open as
    /// `at_f`), or, with `at_f` `None`, up to `sequence - 1` only.
    fn catch_up(&mut self, at_f: Option<(Chunk, Result<Content>)>, sequence: u64) -> Result<Flow> {
        let mut next = self.next.unwrap_or(sequence);
        if next == sequence.saturating_add(1) {
            // Written out already (a named consumer restarted after it).
            if let Some((chunk, _)) = at_f {
                self.last = Some(chunk);
            }
            return Ok(Flow::Go);
        }
        if next > sequence.saturating_add(1) {
            log::info!(
                "the bus's sequence went back from {} to {sequence} (its lock file was recreated): \
                 following the new sequence",
                next - 1
            );
            next = sequence;
        }
        let mut rereads = 0;
        while next < sequence {
            let Some(history) = &self.history else { break };
            let entry = history.open_entry(next, self.output.borrow().max_chunk_size)?;
            let held = match entry {
                Entry::Chunk(held) => held,
                Entry::Missing => {
                    let resume = history
                        .first_from(next)?
                        .filter(|&held| held < sequence)
                        .unwrap_or(sequence);
                    // Entries leave the window oldest first: if the one
                    // before is still held, this number was never published
                    // (a publish that failed after taking it), not lost.
                    // Unless the number is below the window: a producer
                    // killed between its rename and its drop leaves the
                    // entry that was leaving (until the next producer's
                    // sweep), and every number after that one is gone.
                    let newest = if at_f.is_some() {
                        sequence
                    } else {
                        sequence.saturating_sub(1)
                    };
                    let in_window = history
                        .depth()
                        .is_none_or(|depth| next.saturating_add(depth) > newest);
                    let hole = in_window
                        && next
                            .checked_sub(1)
                            .is_some_and(|before| history.holds(before));
                    let from = next.max(self.counts_from);
                    if !hole && from < resume {
                        self.lost(from, resume);
                    }
                    next = resume;
                    continue;
                }
                Entry::Foreign(kind) => {
                    log::warn!(
                        "history entry {} is {kind}, not a chunk: skipped",
                        history::entry_name(next)
                    );
                    self.lost(next, next + 1);
                    next += 1;
                    continue;
                }
            };
            let held_content = self.output.borrow().content(self.bus.borrow(), &held);
            if matches!(held_content, Err(Error::ChunkVanished)) {
                // Its stamp could not be read: gone from the window, or
                // (on a shared filesystem) not answered this time.
                if rereads < MAX_REREADS && history.holds(next) {
                    rereads += 1;
                } else {
                    self.lost(next, next + 1);
                    rereads = 0;
                    next += 1;
                }
                continue;
            }
            let held_sequence = held_content
                .as_ref()
                .ok()
                .and_then(|content| content.stamp)
                .map(|stamp| stamp.sequence);
            if held_sequence != Some(next) && !(self.unstamped && held_sequence.is_none()) {
                log::warn!(
                    "history entry {} does not hold chunk {next} of this bus: skipped",
                    history::entry_name(next)
                );
                self.lost(next, next + 1);
                next += 1;
                continue;
            }
            match self.write(held, held_content, Some(next))? {
                Flow::End => return Ok(Flow::End),
                // Not read whole, but still held: read it again (on a
                // shared filesystem a read can stop at a size the client
                // cached for another file: see bus::verified_read).
                Flow::Vanished
                    if rereads < MAX_REREADS
                        && self
                            .history
                            .as_ref()
                            .is_some_and(|history| history.holds(next)) =>
                {
                    rereads += 1;
                    continue;
                }
                // Dropped from the window while we read it.
                Flow::Vanished => self.lost(next, next + 1),
                Flow::Go => {}
            }
            rereads = 0;
            next += 1;
        }
        match at_f {
            Some((chunk, content)) => self.write(chunk, content, Some(sequence)),
            None => {
                // Entries up to `sequence - 1` written: stop before the
                // number after the newest, and go on from there. A gap
                // skipped at the end stays pending: the next look may find
                // it longer, and it is one loss, reported once it is over.
                self.next = Some(next);
                Ok(Flow::Go)
            }
        }
    }

    /// Records in the cursor (of a named consumer) that chunk `sequence`
    /// was written out. A cursor file that another machine deleted (its
    /// descriptor gone stale) is claimed afresh, so that producers go on
    /// seeing this consumer.
    fn advance_cursor(&mut self, sequence: u64) -> Result<()> {
        let Some(cursor) = &mut self.cursor else {
            return Ok(());
        };
        match cursor.advance(sequence) {
            Err(Error::File { source, .. })
                if matches!(
                    source.raw_os_error(),
                    Some(libc::ESTALE) | Some(libc::ENOENT)
                ) =>
            {
                let name = cursor.name().to_owned();
                log::warn!(
                    "{}: the cursor file went away: claiming it again",
                    cursor.path().display()
                );
                let mut fresh = Cursor::claim(self.bus.borrow(), &name)?;
                fresh.advance(sequence)?;
                self.cursor = Some(fresh);
                Ok(())
            }
            other => other,
        }
    }

    /// Notes that chunks `from` to `to - 1` were lost; reported once the
    /// gap is over, so that a gap that grows while it is skipped (the
    /// producer dropping entries meanwhile) is one report. A gap found
    /// again from within the one pending (the chunk at `F` vanished before
    /// it was written, so the next look starts from the same place) is the
    /// same gap, grown.
    fn lost(&mut self, from: u64, to: u64) {
        match &mut self.pending_loss {
            Some((start, end)) if (*start..=*end).contains(&from) => *end = (*end).max(to),
            pending => {
                if let Some((start, end)) = pending.take() {
                    report_lost(start, end);
                }
                *pending = Some((from, to));
            }
        }
    }

    /// Writes out one chunk (an end-of-stream chunk writes nothing) and
    /// advances the cursor past it.
    fn write(
        &mut self,
        chunk: Chunk,
        content: Result<Content>,
        sequence: Option<u64>,
    ) -> Result<Flow> {
        let mut flow = Flow::Go;
        match content {
            Err(Error::ChunkVanished) => return Ok(Flow::Vanished),
            // A chunk that is not of our format is skipped, once.
            Err(error) => log::warn!("{}: skipped", Report(&error)),
            Ok(content) => {
                match self.output.borrow_mut().emit(&chunk, &content) {
                    Err(Error::ChunkVanished) => {
                        looking_again(self.bus.borrow());
                        return Ok(Flow::Vanished);
                    }
                    other => other?,
                }
                let end_of_stream =
                    content.len == 0 && sequence.is_some() && self.history.is_some();
                if end_of_stream
                    && !self.follow
                    && sequence.is_some_and(|sequence| sequence > self.end_after)
                {
                    log::debug!(
                        "history consumer: chunk {sequence:?} ends the stream (after {}): ending",
                        self.end_after
                    );
                    flow = Flow::End;
                }
            }
        }
        // A gap before this chunk is over: say so (after the chunk, so that
        // a chunk that vanished does not split one gap into two reports).
        if let Some((start, end)) = self.pending_loss.take() {
            report_lost(start, end);
        }
        if let Some(sequence) = sequence {
            self.advance_cursor(sequence)?;
            self.next = Some(sequence.saturating_add(1));
        }
        self.last = Some(chunk);
        Ok(flow)
    }
}

/// Says, whatever the verbosity ([`LOSS_LOG_TARGET`]), that chunks `from`
/// to `to - 1` were lost.
fn report_lost(from: u64, to: u64) {
    let count = to.saturating_sub(from);
    if count == 0 {
        return;
    }
    let range = if count == 1 {
        format!("chunk {from}")
    } else {
        format!("chunks {from} to {}", to - 1)
    };
    log::error!(
        target: LOSS_LOG_TARGET,
        "lost {count} chunk{}: {range} left the history before this consumer wrote {}",
        if count == 1 { "" } else { "s" },
        if count == 1 { "it" } else { "them" }
    );
}

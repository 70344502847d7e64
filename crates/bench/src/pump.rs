//! Moving the pattern stream ([`super::pattern`]) through a running system:
//! write it into the input as fast as the pipe takes it, read the (first)
//! output and check every byte. Used by the throughput section and by the
//! idle section's warm-up.

use std::time::{Duration, Instant};

use super::BenchError;
use super::pattern::Pattern;
use super::pipes::{self, Interest, ReadOutcome, Wrote};
use super::system::Running;

/// Bytes offered to the producer's input per write.
const WRITE_SIZE: usize = 128 * 1024;
/// A run in which no byte moves for this long has stalled.
const STALL: Duration = Duration::from_secs(30);

/// Moves the pattern stream into a running system's input and checks what
/// comes out of its (first) output.
pub(crate) struct Pump<'a> {
    pattern: &'a Pattern,
    name: String,
    /// Bytes written so far.
    pub written: u64,
    /// Bytes read (and checked) so far.
    pub read: u64,
    /// When the last bytes were read.
    pub last_read_at: Option<Instant>,
    /// The output ended.
    pub ended: bool,
    /// Check the bytes read (lossless); lossy outputs are only counted.
    pub verify: bool,
    buffer: Vec<u8>,
    last_progress: Instant,
}

impl<'a> Pump<'a> {
    /// A pump for the system named `name`.
    pub(crate) fn new(pattern: &'a Pattern, name: &str) -> Pump<'a> {
        Pump {
            pattern,
            name: name.to_owned(),
            written: 0,
            read: 0,
            last_read_at: None,
            ended: false,
            verify: true,
            buffer: vec![0; 1 << 20],
            last_progress: Instant::now(),
        }
    }

    /// Writes up to `write_limit` bytes in total and reads, until `done`.
    /// Fails if the output ends early, a byte is wrong, or nothing moves
    /// for [`STALL`].
    pub(crate) fn run_until(
        &mut self,
        running: &mut Running,
        write_limit: u64,
        mut done: impl FnMut(&Pump<'_>) -> bool,
    ) -> Result<(), BenchError> {
        self.last_progress = Instant::now();
        while !done(self) {
            super::interrupt::check()?;
            if self.ended {
                return Err(BenchError::Failed(format!(
                    "{}: the output ended after {} of {} bytes{}",
                    self.name,
                    self.read,
                    self.written,
                    running.exit_details()
                )));
            }
            if self.last_progress.elapsed() > STALL {
                return Err(BenchError::Failed(format!(
                    "{}: no progress for {STALL:?} ({} bytes written, {} read)",
                    self.name, self.written, self.read
                )));
            }
            self.step(running, write_limit)?;
        }
        Ok(())
    }

    /// One wait, then whatever writing and reading is possible.
    fn step(&mut self, running: &mut Running, write_limit: u64) -> Result<(), BenchError> {
        let want_write = self.written < write_limit;
        let ready = {
            let mut interests = vec![Interest {
                fd: &running.outputs[0],
                write: false,
            }];
            if want_write && let Some(input) = running.input() {
                interests.push(Interest {
                    fd: input,
                    write: true,
                });
            }
            pipes::wait(&interests, super::interrupt::CHECK_INTERVAL)?
        };
        if ready.get(1).copied().unwrap_or(false)
            && self.write(running, write_limit)? == Wrote::Broken
        {
            return Err(BenchError::Failed(format!(
                "{}: the producer closed its input{}",
                self.name,
                running.exit_details()
            )));
        }
        if ready[0] {
            self.read_available(running)?;
        }
        Ok(())
    }

    /// Writes the next piece of the stream, as much as the pipe takes.
    fn write(&mut self, running: &Running, write_limit: u64) -> Result<Wrote, BenchError> {
        let Some(input) = running.input() else {
            return Ok(Wrote::Full);
        };
        let room = (write_limit - self.written).min(WRITE_SIZE as u64) as usize;
        let wrote = pipes::write(input, self.pattern.slice_from(self.written, room))?;
        if let Wrote::Bytes(count) = wrote {
            self.written += count as u64;
            self.last_progress = Instant::now();
        }
        Ok(wrote)
    }

    /// Reads and checks everything the output holds now.
    fn read_available(&mut self, running: &Running) -> Result<(), BenchError> {
        let output = &running.outputs[0];
        loop {
            let count = match pipes::read(output, &mut self.buffer)? {
                ReadOutcome::Bytes(count) => count,
                ReadOutcome::Empty => return Ok(()),
                ReadOutcome::End => {
                    self.ended = true;
                    return Ok(());
                }
            };
            let now = Instant::now();
            if self.verify {
                if let Some(at) = self
                    .pattern
                    .first_difference(self.read, &self.buffer[..count])
                {
                    return Err(BenchError::Failed(format!(
                        "{}: byte {at} of the output differs from the input",
                        self.name
                    )));
                }
                if self.read + count as u64 > self.written {
                    return Err(BenchError::Failed(format!(
                        "{}: more bytes came out ({}) than went in ({})",
                        self.name,
                        self.read + count as u64,
                        self.written
                    )));
                }
            }
            self.read += count as u64;
            self.last_read_at = Some(now);
            self.last_progress = now;
            if count < self.buffer.len() {
                return Ok(());
            }
        }
    }
}

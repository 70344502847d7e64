//! Paced runs of numbered records ([`super::records`]), shared by the latency
//! and loss sections.
//!
//! A run has three phases:
//!
//! 1. **Warm-up.** Warm-up records go in, one at a time, a new one every
//!    100 ms, until every consumer has put out the latest. Then every
//!    process is up, and (in lossless mode) nothing is queued anywhere.
//! 2. **Measure.** Record `i` is due at `start + i / rate`; the benchmark
//!    writes every due record as soon as the pipe takes it (several at once
//!    when it is behind) and notes when it wrote it. It stops writing when
//!    all records are written, or after a time cap (a producer slower than
//!    the rate fills its pipe and holds the writer back: the rate achieved
//!    is reported next to the rate asked).
//! 3. **Drain.** The input is closed; the run ends when every consumer has
//!    put out the last record (lossy) or ended its output (lossless), or
//!    after a timeout.
//!
//! The CPU time of the producer and of the consumers is taken over the
//! measure and drain phases (from `/proc` when measuring starts, and from
//! `wait4` when each child is reaped), with their peak memory.
//!
//! All along, every consumer's output is read as soon as it is readable and
//! split into records, noting the time of each read: for each consumer, the
//! distinct records delivered, duplicates, torn records and records that
//! came after a higher-numbered one are counted exactly, and the latency of
//! each record's first delivery goes into a histogram.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::pipes::{self, Interest, ReadOutcome, Wrote};
use super::records::{self, Event, Parser, WARM_UP};
use super::system::{Role, Running, System};
use super::{BenchError, Context, interrupt};

/// How long consumers may take to show up.
const WARM_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a new warm-up record goes in.
const WARM_UP_EVERY: Duration = Duration::from_millis(100);
/// How long after the time cap a write may still wait for room.
const STUCK: Duration = Duration::from_secs(10);
/// The most bytes written at once when behind schedule.
const MAX_BATCH_BYTES: usize = 64 * 1024;
/// Highest latency the histogram holds (one hour), in nanoseconds.
const MAX_LATENCY_NS: u64 = 3_600_000_000_000;

/// What to send, and how fast.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    /// Bytes per record.
    pub record_size: usize,
    /// Records per second.
    pub rate: f64,
    /// Records to send.
    pub records: u64,
    /// Stop writing after this long even if records are left.
    pub time_cap: Duration,
    /// Record the latency of each first delivery.
    pub measure_latency: bool,
    /// How long to wait for the last record once the input is closed.
    pub drain_timeout: Duration,
}

/// Counts for one consumer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Distinct records delivered.
    pub delivered: u64,
    /// Deliveries of a record already delivered.
    pub duplicates: u64,
    /// Stretches of output that were not whole, valid records.
    pub torn: u64,
    /// Records delivered after a higher-numbered one (not counting duplicates).
    pub out_of_order: u64,
}

impl std::ops::Add for Tally {
    type Output = Tally;

    fn add(self, other: Tally) -> Tally {
        Tally {
            delivered: self.delivered + other.delivered,
            duplicates: self.duplicates + other.duplicates,
            torn: self.torn + other.torn,
            out_of_order: self.out_of_order + other.out_of_order,
        }
    }
}

/// The result of one paced run.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    /// Records written.
    pub written: u64,
    /// From the first write to the last.
    pub write_seconds: f64,
    /// One per consumer.
    pub tallies: Vec<Tally>,
    /// Latencies of first deliveries, in nanoseconds (when measured).
    pub latency: Option<Histogram<u64>>,
    /// What the run cost the system's processes.
    pub cost: Cost,
}

/// What a run cost: CPU time from the start of the measure phase to the
/// end of the run, and peak memory.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Cost {
    /// The producer's CPU time, ns (`None` if `/proc` could not be read).
    pub producer_cpu_ns: Option<u64>,
    /// All the consumers' CPU time, ns.
    pub consumers_cpu_ns: Option<u64>,
    /// From the start of the measure phase to the end of the drain.
    pub window_seconds: f64,
    /// The producer's peak RSS, KiB.
    pub producer_rss_kib: u64,
    /// The consumers' peak RSS added up, KiB.
    pub consumers_rss_kib: u64,
}

impl Cost {
    /// Producer and consumers together, ns.
    pub(crate) fn total_cpu_ns(&self) -> Option<u64> {
        Some(self.producer_cpu_ns? + self.consumers_cpu_ns?)
    }

    /// CPU time as a share of one CPU over the window, in percent.
    pub(crate) fn percent_of_a_cpu(&self, cpu_ns: Option<u64>) -> Option<f64> {
        let cpu_ns = cpu_ns?;
        (self.window_seconds > 0.0).then(|| cpu_ns as f64 / 1e9 / self.window_seconds * 100.0)
    }
}

impl Outcome {
    /// Records written per second: `n` evenly spaced writes span `n - 1`
    /// intervals.
    pub(crate) fn achieved_rate(&self) -> f64 {
        if self.written > 1 && self.write_seconds > 0.0 {
            (self.written - 1) as f64 / self.write_seconds
        } else {
            0.0
        }
    }
}

/// Runs `schedule` through `system`.
pub(crate) fn run(
    context: &Context<'_>,
    system: &System<'_>,
    schedule: &Schedule,
) -> Result<Outcome, BenchError> {
    let mut running = system.start(context.scratch)?;
    let mut engine = Engine::new(system.name(), schedule, running.outputs.len())?;
    engine.warm_up(&mut running)?;
    let cpu_before = [Role::Producer, Role::Consumer].map(|role| running.cpu_ns_now(role));
    let started = Instant::now();
    engine.measure(&mut running)?;
    running.close_input();
    let exit_by_themselves = system.consumers_exit_on_their_own();
    engine.drain(&mut running, exit_by_themselves)?;
    let window_seconds = started.elapsed().as_secs_f64();
    running.finish(exit_by_themselves, Duration::from_secs(10))?;
    // What the consumers wrote before they ended.
    engine.read_ready(&running, &vec![true; running.outputs.len()])?;
    let cpu_since_start = |role: Role, before: Option<u64>| {
        Some(running.cpu_ns_at_exit(role)?.saturating_sub(before?))
    };
    let cost = Cost {
        producer_cpu_ns: cpu_since_start(Role::Producer, cpu_before[0]),
        consumers_cpu_ns: cpu_since_start(Role::Consumer, cpu_before[1]),
        window_seconds,
        producer_rss_kib: running.peak_rss_sum_kib(Role::Producer),
        consumers_rss_kib: running.peak_rss_sum_kib(Role::Consumer),
    };
    Ok(engine.outcome(exit_by_themselves, cost))
}

/// One consumer's output.
struct Reader {
    parser: Parser,
    /// Bit `i` is set once record `i` was delivered.
    seen: Vec<u64>,
    highest: Option<u64>,
    tally: Tally,
    latest_warm_up: Option<u64>,
    ended: bool,
}

impl Reader {
    fn has_seen(&self, seq: u64) -> bool {
        self.seen
            .get((seq / 64) as usize)
            .is_some_and(|word| word & (1 << (seq % 64)) != 0)
    }
}

struct Engine<'a> {
    name: String,
    schedule: &'a Schedule,
    readers: Vec<Reader>,
    /// Bytes encoded but not yet written, from `pending_at`.
    pending: Vec<u8>,
    pending_at: usize,
    /// When each measured record was written, by number.
    sent_at: Vec<Instant>,
    written: u64,
    first_write: Option<Instant>,
    last_write: Option<Instant>,
    latency: Option<Histogram<u64>>,
    buffer: Vec<u8>,
}

impl<'a> Engine<'a> {
    fn new(name: &str, schedule: &'a Schedule, consumers: usize) -> Result<Engine<'a>, BenchError> {
        let latency = if schedule.measure_latency {
            Some(
                Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).map_err(|error| {
                    BenchError::io(
                        "cannot create a latency histogram",
                        std::io::Error::other(error.to_string()),
                    )
                })?,
            )
        } else {
            None
        };
        let words = schedule.records.div_ceil(64) as usize;
        Ok(Engine {
            name: name.to_owned(),
            schedule,
            readers: (0..consumers)
                .map(|_| Reader {
                    parser: Parser::new(schedule.record_size),
                    seen: vec![0; words],
                    highest: None,
                    tally: Tally::default(),
                    latest_warm_up: None,
                    ended: false,
                })
                .collect(),
            pending: Vec::new(),
            pending_at: 0,
            sent_at: Vec::new(),
            written: 0,
            first_write: None,
            last_write: None,
            latency,
            buffer: vec![0; 1 << 20],
        })
    }

    fn warm_up(&mut self, running: &mut Running) -> Result<(), BenchError> {
        let deadline = Instant::now() + WARM_UP_TIMEOUT;
        let mut number: Option<u64> = None;
        let mut sent: Option<Instant> = None;
        loop {
            interrupt::check()?;
            let idle = self.pending_at >= self.pending.len();
            if idle
                && let Some(latest) = number
                && self
                    .readers
                    .iter()
                    .all(|reader| reader.latest_warm_up == Some(latest))
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(BenchError::Failed(format!(
                    "{}: the consumers did not all show up within {WARM_UP_TIMEOUT:?}{}",
                    self.name,
                    running.exit_details()
                )));
            }
            if idle && sent.is_none_or(|at| at.elapsed() >= WARM_UP_EVERY) {
                let next = number.map_or(0, |n| n + 1);
                self.pending.clear();
                self.pending_at = 0;
                records::encode(WARM_UP | next, self.schedule.record_size, &mut self.pending);
                number = Some(next);
                sent = Some(Instant::now());
            }
            self.write_pending(running)?;
            self.wait_and_read(running, Duration::from_millis(10))?;
            self.check_outputs(running)?;
        }
    }

    fn measure(&mut self, running: &mut Running) -> Result<(), BenchError> {
        let schedule = self.schedule;
        let start = Instant::now();
        let stop = start + schedule.time_cap;
        let batch = (MAX_BATCH_BYTES / schedule.record_size).max(1) as u64;
        let interval = Duration::from_secs_f64(1.0 / schedule.rate);
        let mut next: u64 = 0;
        // The achieved rate counts measured records only, not the warm-up.
        self.first_write = None;
        self.last_write = None;
        loop {
            interrupt::check()?;
            let now = Instant::now();
            if now > stop + STUCK {
                return Err(BenchError::Failed(format!(
                    "{}: the producer stopped reading its input{}",
                    self.name,
                    running.exit_details()
                )));
            }
            if self.pending_at >= self.pending.len() {
                if next >= schedule.records || now >= stop {
                    return Ok(());
                }
                let due = ((now - start).as_secs_f64() * schedule.rate) as u64 + 1;
                let until = due.min(schedule.records).min(next + batch);
                if next < until {
                    self.pending.clear();
                    self.pending_at = 0;
                    for seq in next..until {
                        records::encode(seq, schedule.record_size, &mut self.pending);
                    }
                    if schedule.measure_latency {
                        self.sent_at.resize(until as usize, Instant::now());
                    }
                    next = until;
                    self.written = until;
                }
            }
            self.write_pending(running)?;
            let timeout = if self.pending_at < self.pending.len() {
                interrupt::CHECK_INTERVAL
            } else {
                (start + interval.mul_f64(next as f64)).saturating_duration_since(Instant::now())
            };
            self.wait_and_read(running, timeout)?;
            self.check_outputs(running)?;
        }
    }

    fn drain(&mut self, running: &mut Running, until_end: bool) -> Result<(), BenchError> {
        let deadline = Instant::now() + self.schedule.drain_timeout;
        let last = self.written.checked_sub(1);
        loop {
            interrupt::check()?;
            let done = self.readers.iter().all(|reader| {
                reader.ended || (!until_end && last.is_none_or(|last| reader.has_seen(last)))
            });
            if done || Instant::now() > deadline {
                return Ok(());
            }
            self.wait_and_read(running, interrupt::CHECK_INTERVAL)?;
        }
    }

    fn outcome(mut self, count_tail_as_torn: bool, cost: Cost) -> Outcome {
        for reader in &mut self.readers {
            let mut torn = 0;
            if count_tail_as_torn {
                reader.parser.finish(|event| {
                    if event == Event::Torn {
                        torn += 1;
                    }
                });
            }
            reader.tally.torn += torn;
        }
        let write_seconds = match (self.first_write, self.last_write) {
            (Some(first), Some(last)) => last.duration_since(first).as_secs_f64(),
            _ => 0.0,
        };
        Outcome {
            written: self.written,
            write_seconds,
            tallies: self.readers.iter().map(|reader| reader.tally).collect(),
            latency: self.latency,
            cost,
        }
    }

    /// Writes as much of the pending bytes as the pipe takes now.
    fn write_pending(&mut self, running: &mut Running) -> Result<(), BenchError> {
        while self.pending_at < self.pending.len() {
            let Some(input) = running.input() else {
                return Ok(());
            };
            match pipes::write(input, &self.pending[self.pending_at..])? {
                Wrote::Bytes(count) => {
                    let now = Instant::now();
                    self.first_write.get_or_insert(now);
                    self.last_write = Some(now);
                    self.pending_at += count;
                }
                Wrote::Full => return Ok(()),
                Wrote::Broken => {
                    return Err(BenchError::Failed(format!(
                        "{}: the producer closed its input{}",
                        self.name,
                        running.exit_details()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Waits up to `timeout` for output (or room in the input while bytes
    /// are pending), then reads what came.
    fn wait_and_read(&mut self, running: &Running, timeout: Duration) -> Result<(), BenchError> {
        let want_write = self.pending_at < self.pending.len();
        let mut interests: Vec<Interest<'_>> = running
            .outputs
            .iter()
            .map(|fd| Interest { fd, write: false })
            .collect();
        if want_write && let Some(input) = running.input() {
            interests.push(Interest {
                fd: input,
                write: true,
            });
        }
        let mut ready = if timeout.is_zero() {
            vec![true; interests.len()]
        } else {
            pipes::wait(&interests, timeout)?
        };
        ready.truncate(running.outputs.len());
        self.read_ready(running, &ready)
    }

    /// Reads every output marked ready until it is empty.
    fn read_ready(&mut self, running: &Running, ready: &[bool]) -> Result<(), BenchError> {
        for (index, output) in running.outputs.iter().enumerate() {
            if !ready[index] || self.readers[index].ended {
                continue;
            }
            loop {
                let count = match pipes::read(output, &mut self.buffer)? {
                    ReadOutcome::Bytes(count) => count,
                    ReadOutcome::Empty => break,
                    ReadOutcome::End => {
                        self.readers[index].ended = true;
                        break;
                    }
                };
                let now = Instant::now();
                let reader = &mut self.readers[index];
                let sent_at = &self.sent_at;
                let latency = &mut self.latency;
                reader
                    .parser
                    .feed(&self.buffer[..count], |event| match event {
                        Event::Torn => reader.tally.torn += 1,
                        Event::Record(seq) if seq & WARM_UP != 0 => {
                            let number = seq & !WARM_UP;
                            if reader.latest_warm_up.is_none_or(|latest| number > latest) {
                                reader.latest_warm_up = Some(number);
                            }
                        }
                        Event::Record(seq) => {
                            let Some(word) = reader.seen.get_mut((seq / 64) as usize) else {
                                // A number never sent: damage the checksum missed.
                                reader.tally.torn += 1;
                                return;
                            };
                            let bit = 1 << (seq % 64);
                            if *word & bit != 0 {
                                reader.tally.duplicates += 1;
                                return;
                            }
                            *word |= bit;
                            reader.tally.delivered += 1;
                            if reader.highest.is_some_and(|highest| highest > seq) {
                                reader.tally.out_of_order += 1;
                            }
                            reader.highest = reader.highest.max(Some(seq));
                            if let (Some(histogram), Some(sent)) =
                                (latency.as_mut(), sent_at.get(seq as usize))
                            {
                                let nanos = now.saturating_duration_since(*sent).as_nanos();
                                histogram
                                    .saturating_record(u64::try_from(nanos).unwrap_or(u64::MAX));
                            }
                        }
                    });
                if count < self.buffer.len() {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Fails if a consumer's output ended while it should still be running.
    fn check_outputs(&self, running: &mut Running) -> Result<(), BenchError> {
        if self.readers.iter().any(|reader| reader.ended) {
            return Err(BenchError::Failed(format!(
                "{}: a consumer's output ended before its input did{}",
                self.name,
                running.exit_details()
            )));
        }
        Ok(())
    }
}

//! filebus: a user-space multicast named pipe backed by a regular file.
//!
//! A bus is one file, `F`, holding the most recent chunk of a byte stream.
//! A producer ([`produce`]) cuts its input into chunks, builds each in a
//! temporary file in the bus directory and puts it at `F` under the bus lock;
//! consumers ([`consume`]) wake up when `F` changes and write each new chunk
//! to their output. Lossy multicast by default (a consumer that falls behind
//! misses chunks, and with a history, `F.history/`, catches up from it);
//! lossless unicast with [`BusOptions::lossless`] on both sides (each chunk
//! is taken, that is deleted, by one consumer, and the producer waits for
//! it).
//!
//! The data path, with the modules that hold each step:
//!
//! 1. input → when to cut a chunk (`producer/cut.rs`, pure) → the chunk's
//!    file (`producer/chunk_file.rs`): an anonymous `O_TMPFILE` where the
//!    filesystem allows, filled by `splice(2)` from a pipe or by
//!    `read`/`write` otherwise;
//! 2. publish (`bus/`, the protocol primitive: one chunk at `F`): stamped
//!    with a sequence number and time, then, under `flock` on `F.lock`,
//!    linked as `F` where `F` is absent, or linked as `F.__new__` and swapped
//!    onto `F` with `RENAME_EXCHANGE` (the previous chunk then deleted); with
//!    a history (`history/`) also linked into `F.history/`, after waiting
//!    for named consumers (`cursor/`) to write out the entry that leaves;
//! 3. wake-up (`watch.rs`): inotify on the bus directory (on the file at
//!    `F` itself once other programs' files change there), polling where
//!    events cannot be trusted;
//! 4. consumer (`consumer/`): look at `F` (lossy), take it (lossless), or
//!    follow the history → the output (`sink.rs`), by `splice`,
//!    `copy_file_range` or `sendfile`, with `pread`/`write` as the last
//!    resort.
//!
//! The library writes nothing to the process's standard streams: its
//! entry points read and write the descriptors they are given, warnings go
//! through the [`log`](https://docs.rs/log) crate (a consumer's report of
//! chunks it lost to target [`LOSS_LOG_TARGET`] at level error, whatever the
//! verbosity), and reports ([`bus_status`], [`RateMeter`], [`Stats`]) are
//! values for the caller to render.
//!
//! The on-disk protocol is that of the Python reference implementation
//! (`pip install filebus==0.3.5`), with which it interoperates; it is
//! described in `docs/PROTOCOL.md`.
//!
//! # Example
//!
//! A producer and a lossless consumer in one process, over a bus in a
//! temporary directory: the producer reads a file, the consumer writes
//! another, and ends at the end-of-stream chunk the producer publishes at the
//! end of its input.
//!
//! ```
//! use std::fs::File;
//!
//! use filebus_core::{ConsumerOptions, ProducerOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let bus = dir.path().join("bus");
//! std::fs::write(dir.path().join("input"), "one\ntwo\nthree\n")?;
//!
//! let mut producer = ProducerOptions::new(&bus);
//! producer.bus.lossless = true;
//! let input = File::open(dir.path().join("input"))?;
//! let producing = std::thread::spawn(move || filebus_core::produce(&producer, &input));
//!
//! let mut consumer = ConsumerOptions::new(&bus);
//! consumer.bus.lossless = true;
//! let output = File::create(dir.path().join("output"))?;
//! filebus_core::consume(&consumer, &output)?;
//!
//! producing.join().expect("the producer panicked")?;
//! assert_eq!(std::fs::read_to_string(dir.path().join("output"))?, "one\ntwo\nthree\n");
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod bus;
mod consumer;
mod cursor;
mod error;
mod filesystem;
mod history;
mod options;
mod pipe_size;
mod producer;
mod sink;
mod status;
mod stop;
pub mod tar;
#[doc(hidden)]
pub mod testing;
mod watch;

pub use bus::format::Format;
pub use consumer::history::LOSS_LOG_TARGET;
pub use consumer::options::{ConsumerOptions, DEFAULT_MAX_CHUNK_SIZE};
pub use consumer::run as consume;
pub use consumer::stats::{SharedStats, Stats};
pub use cursor::survey::NamedConsumer;
pub use cursor::{MAX_NAME_LEN as MAX_CONSUMER_NAME_LEN, validate_name as validate_consumer_name};
pub use error::{Error, Report, Result, describe_io};
pub use filesystem::name_of as filesystem_name;
pub use history::{Holdings, MAX_DEPTH as MAX_HISTORY_DEPTH};
pub use options::{BusOptions, DEFAULT_SLEEP_INTERVAL};
pub use producer::chunk_file::InputMethod;
pub use producer::options::{
    DEFAULT_BLOCK_SIZE, MAX_BLOCK_SIZE, ProducerOptions, check_block_size,
};
pub use producer::run as produce;
pub use sink::OutputMethod;
pub use status::{
    BUSY_ARRIVALS_PER_SECOND, BUSY_WINDOW, BusStatus, ChunkStatus, ConsumerStatus, HistoryStatus,
    LockState, Rate, RateMeter, status as bus_status,
};
pub use stop::StopFlag;
pub use watch::WakeUp;

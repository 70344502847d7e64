//! filebus: a user-space multicast named pipe backed by a regular file.
//!
//! A producer cuts its standard input into chunks ([`producer::cut`]), builds each
//! in a temporary file in the bus directory ([`producer::chunk_file`]), and renames it onto
//! the bus file under a lock ([`bus`], [`bus::lock`]). Consumers wake up when the
//! bus file changes ([`watch`]) and move each new chunk to standard output
//! ([`sink`]).
//!
//! Data path: stdin → [`producer::cut`] → [`producer::chunk_file`] (mmap'd temporary file) →
//! [`bus::Bus::publish`] (rename under [`bus::lock`]) → [`watch`] wake-up →
//! [`consumer`] → [`sink`] (splice/sendfile) → stdout.
//!
//! The on-disk protocol is that of the Python reference implementation
//! (`pip install filebus==0.3.5`), with which it interoperates.

pub mod bus;
pub mod consumer;
pub mod cursor;
pub mod error;
pub mod filesystem;
pub mod history;
pub mod pipe_size;
pub mod producer;
pub mod sink;
pub mod status;
pub mod stop;
pub mod tar;
pub mod watch;

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

pub use bus::Format;
pub use error::{Error, Report, Result};
pub use producer::chunk_file::InputMethod;
pub use sink::OutputMethod;

/// The default `--block-size`: 1 MiB. Every chunk costs a new file, whose
/// creation and deletion dominate the cost of a chunk on ext4, so bulk input
/// needs big chunks to move at a pipe's pace (measured in
/// `results/fast-by-default.md`: through pipes 64 KiB reached 20 to 36% of
/// `cat | cat`, 1 MiB 52 to 67%); input that trickles is cut by time long
/// before. The reference's
/// default is 4096; its consumers read chunks of any size.
pub const DEFAULT_BLOCK_SIZE: NonZeroUsize = NonZeroUsize::new(1 << 20).unwrap();
/// The default `--max-chunk-size`: far above any chunk a producer makes with
/// a sane block size, far below a huge sparse file planted at `F`.
pub const DEFAULT_MAX_CHUNK_SIZE: u64 = 1 << 30;
/// The reference implementation's default `--sleep-interval`.
pub const DEFAULT_SLEEP_INTERVAL: Duration = Duration::from_millis(100);

/// Everything a producer or consumer needs to know about its bus.
#[derive(Debug, Clone)]
pub struct Options {
    /// The bus file `F`.
    pub path: PathBuf,
    /// Lossless unicast (`--back-pressure`) instead of lossy multicast.
    pub lossless: bool,
    /// The most bytes in one chunk.
    pub block_size: NonZeroUsize,
    /// How long input may wait before it is published (see
    /// [`producer::cut`]); the polling interval where file events are unavailable.
    pub sleep_interval: Duration,
    /// Wake up on inotify events rather than by polling.
    pub file_monitoring: bool,
    /// How producers fill chunk files.
    pub input_method: InputMethod,
    /// How consumers write chunks to standard output.
    pub output_method: OutputMethod,
    /// Build chunks in anonymous `O_TMPFILE`s where the filesystem allows.
    pub anonymous_temp: bool,
    /// End chunks only after this byte (whole records), if set.
    pub delimiter: Option<u8>,
    /// Consumers count what they emit and miss here, and report it on
    /// stderr at the end (`--stats`).
    pub stats: Option<consumer::stats::SharedStats>,
    /// Where the program's signal handler records a termination signal.
    pub stop: stop::StopFlag,
    /// How chunks are stored at `F`.
    pub format: Format,
    /// The largest chunk a consumer emits; a larger file at `F` is refused.
    pub max_chunk_size: u64,
    /// Producers: keep the last N chunks in `F.history` (`--history N`).
    pub history: Option<u64>,
    /// Consumers: the name whose cursor this consumer keeps (`--name`).
    pub name: Option<String>,
    /// Consumers: start this many chunks back in history (`--last K`).
    pub last: Option<u64>,
    /// Consumers: go on after an end-of-stream chunk (`--follow`).
    pub follow: bool,
}

impl Options {
    /// Options with the reference defaults for the bus at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Options {
            path: path.into(),
            lossless: false,
            block_size: DEFAULT_BLOCK_SIZE,
            sleep_interval: DEFAULT_SLEEP_INTERVAL,
            file_monitoring: true,
            input_method: InputMethod::default(),
            output_method: OutputMethod::default(),
            anonymous_temp: true,
            delimiter: None,
            stats: None,
            stop: stop::StopFlag::NEVER,
            format: Format::Raw,
            max_chunk_size: DEFAULT_MAX_CHUNK_SIZE,
            history: None,
            name: None,
            last: None,
            follow: false,
        }
    }

    /// The chunking rules these options imply.
    pub fn chunk_policy(&self) -> producer::cut::ChunkPolicy {
        producer::cut::ChunkPolicy {
            block_size: self.block_size,
            max_delay: self.sleep_interval,
        }
    }
}

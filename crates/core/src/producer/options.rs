//! What a producer is asked to do: [`ProducerOptions`], their defaults and
//! bounds, checked here rather than only by the command line.

use std::num::NonZeroUsize;
use std::path::PathBuf;

use super::chunk_file::InputMethod;
use super::cut::ChunkPolicy;
use crate::options::BusOptions;

/// The default `--block-size`: 1 MiB. Every chunk costs a new file, whose
/// creation and deletion dominate the cost of a chunk on ext4, so bulk input
/// needs big chunks to move at a pipe's pace (measured in
/// `results/fast-by-default.md`: through pipes 64 KiB reached 20 to 36% of
/// `cat | cat`, 1 MiB 52 to 67%); input that trickles is cut by time long
/// before. The reference's default is 4096; its consumers read chunks of any
/// size.
pub const DEFAULT_BLOCK_SIZE: NonZeroUsize = NonZeroUsize::new(1 << 20).unwrap();

/// Everything a producer needs to know: its bus, and how to cut and
/// publish its input.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProducerOptions {
    /// The bus, and what producers and consumers share.
    pub bus: BusOptions,
    /// The most bytes in one chunk (`--block-size`).
    pub block_size: NonZeroUsize,
    /// How chunk files are filled (`--input-method`).
    pub input_method: InputMethod,
    /// Build chunks in anonymous `O_TMPFILE`s where the filesystem allows
    /// (off with `--named-temp-files`).
    pub anonymous_temp: bool,
    /// End chunks only after this byte, so that no record is split
    /// (`--delimiter`, `--lines`, `-z`).
    pub delimiter: Option<u8>,
    /// Keep the last N chunks in `F.history` (`--history N`); lossy mode
    /// only.
    pub history: Option<u64>,
    /// Clear `O_NONBLOCK` on the input first (`--blocking-read`); without it
    /// a non-blocking input works as well.
    pub blocking_read: bool,
}

impl ProducerOptions {
    /// The reference defaults for a producer on the bus at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ProducerOptions {
            bus: BusOptions::new(path),
            block_size: DEFAULT_BLOCK_SIZE,
            input_method: InputMethod::default(),
            anonymous_temp: true,
            delimiter: None,
            history: None,
            blocking_read: false,
        }
    }

    /// The chunking rules these options imply.
    pub(crate) fn chunk_policy(&self) -> ChunkPolicy {
        ChunkPolicy {
            block_size: self.block_size,
            max_delay: self.bus.sleep_interval,
        }
    }
}

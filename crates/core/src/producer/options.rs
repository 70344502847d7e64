//! What a producer is asked to do: [`ProducerOptions`], their defaults and
//! bounds, checked here rather than only by the command line.

use std::num::NonZeroUsize;
use std::path::PathBuf;

use super::chunk_file::InputMethod;
use super::cut::ChunkPolicy;
use crate::error::{Error, Result};
use crate::history::MAX_DEPTH;
use crate::options::BusOptions;

/// The default `--block-size`: 1 MiB. Every chunk costs a new file, whose
/// creation and deletion dominate the cost of a chunk on ext4, so bulk input
/// needs big chunks to move at a pipe's pace (measured in
/// `results/fast-by-default.md`: through pipes 64 KiB reached 20 to 36% of
/// `cat | cat`, 1 MiB 52 to 67%); input that trickles is cut by time long
/// before. The reference's default is 4096; its consumers read chunks of any
/// size.
pub const DEFAULT_BLOCK_SIZE: NonZeroUsize = NonZeroUsize::new(1 << 20).unwrap();

/// The largest `--block-size`: a chunk is a file that consumers copy whole,
/// and the default `--max-chunk-size` refuses anything larger.
pub const MAX_BLOCK_SIZE: u64 = 1 << 30;

/// `bytes` as a block size, or why it cannot be one (zero, or more than
/// [`MAX_BLOCK_SIZE`]).
pub fn check_block_size(bytes: u64) -> std::result::Result<NonZeroUsize, String> {
    match bytes {
        0 => Err("the block size must be at least 1 byte".into()),
        bytes if bytes > MAX_BLOCK_SIZE => Err(format!(
            "the block size must be at most {MAX_BLOCK_SIZE} bytes ({} GiB)",
            MAX_BLOCK_SIZE >> 30
        )),
        bytes => usize::try_from(bytes)
            .ok()
            .and_then(NonZeroUsize::new)
            .ok_or_else(|| "the block size is too large for this machine".into()),
    }
}

/// Everything a producer needs to know: its bus, and how to cut and
/// publish its input.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProducerOptions {
    /// The bus, and what producers and consumers share.
    pub bus: BusOptions,
    /// The most bytes in one chunk (`--block-size`), at most
    /// [`MAX_BLOCK_SIZE`].
    pub block_size: NonZeroUsize,
    /// How chunk files are filled (`--input-method`).
    pub input_method: InputMethod,
    /// Build chunks in anonymous `O_TMPFILE`s where the filesystem allows
    /// (off with `--named-temp-files`).
    pub anonymous_temp: bool,
    /// End chunks only after this byte, so that no record is split
    /// (`--delimiter`, `--lines`, `-z`).
    pub delimiter: Option<u8>,
    /// Keep the last N chunks in `F.history` (`--history N`, 1 to
    /// [`MAX_DEPTH`]); lossy mode only.
    pub history: Option<u64>,
    /// Clear `O_NONBLOCK` on the input first (`--blocking-read`); without it
    /// a non-blocking input works as well.
    pub blocking_read: bool,
}

impl ProducerOptions {
    /// The reference defaults for a producer on the bus at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ProducerOptions::on(BusOptions::new(path))
    }

    /// The reference defaults for a producer on `bus`.
    pub fn on(bus: BusOptions) -> Self {
        ProducerOptions {
            bus,
            block_size: DEFAULT_BLOCK_SIZE,
            input_method: InputMethod::default(),
            anonymous_temp: true,
            delimiter: None,
            history: None,
            blocking_read: false,
        }
    }

    /// Fails, saying why, if the options do not go together or a value is
    /// out of bounds: a history with lossless delivery (history keeps
    /// chunks for lossy multicast), a block size above [`MAX_BLOCK_SIZE`],
    /// a history depth outside 1 to [`MAX_DEPTH`].
    pub fn validate(&self) -> Result<()> {
        let bad = |problem: String| Err(Error::BadOptions { problem });
        if self.bus.lossless && self.history.is_some() {
            return bad(
                "--history keeps chunks for lossy multicast; it cannot be used with --back-pressure"
                    .into(),
            );
        }
        if let Err(problem) = check_block_size(self.block_size.get() as u64) {
            return bad(problem);
        }
        if let Some(depth) = self.history
            && !(1..=MAX_DEPTH).contains(&depth)
        {
            return bad(format!("--history must be from 1 to {MAX_DEPTH}"));
        }
        Ok(())
    }

    /// The chunking rules these options imply.
    pub(crate) fn chunk_policy(&self) -> ChunkPolicy {
        ChunkPolicy {
            block_size: self.block_size,
            max_delay: self.bus.sleep_interval,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_with_lossless_delivery_is_refused() {
        let mut options = ProducerOptions::new("bus");
        options.history = Some(4);
        assert!(options.validate().is_ok());
        options.bus.lossless = true;
        let error = options
            .validate()
            .expect_err("history with back pressure accepted");
        assert!(error.to_string().contains("--history"), "{error}");
    }

    #[test]
    fn block_sizes_and_depths_out_of_bounds_are_refused() {
        assert!(check_block_size(0).is_err());
        assert!(check_block_size(MAX_BLOCK_SIZE + 1).is_err());
        assert_eq!(
            check_block_size(MAX_BLOCK_SIZE).map(NonZeroUsize::get),
            Ok(MAX_BLOCK_SIZE as usize)
        );
        let mut options = ProducerOptions::new("bus");
        options.block_size = NonZeroUsize::new(MAX_BLOCK_SIZE as usize + 1).expect("not zero");
        assert!(options.validate().is_err(), "a block size above the bound");
        for depth in [0, MAX_DEPTH + 1] {
            let mut options = ProducerOptions::new("bus");
            options.history = Some(depth);
            assert!(options.validate().is_err(), "--history {depth} accepted");
        }
    }
}

//! What a consumer is asked to do: [`ConsumerOptions`], their defaults and
//! bounds, checked here rather than only by the command line.

use std::path::PathBuf;

use super::stats::SharedStats;
use crate::cursor::validate_name;
use crate::error::{Error, Result};
use crate::options::BusOptions;
use crate::sink::OutputMethod;

/// The default `--max-chunk-size`: far above any chunk a producer makes with
/// a sane block size, far below a huge sparse file planted at `F`.
pub const DEFAULT_MAX_CHUNK_SIZE: u64 = 1 << 30;

/// Everything a consumer needs to know: its bus, and how to write what it
/// finds there.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConsumerOptions {
    /// The bus, and what producers and consumers share.
    pub bus: BusOptions,
    /// How chunks are written to the output (`--output-method`).
    pub output_method: OutputMethod,
    /// The largest chunk written out; a larger file at `F` is refused
    /// (`--max-chunk-size`).
    pub max_chunk_size: u64,
    /// Where to count what is written and missed (`--stats`); the caller
    /// reads the counts, during the run or after it.
    pub stats: Option<SharedStats>,
    /// The name whose cursor this consumer keeps (`--name`).
    pub name: Option<String>,
    /// Start this many chunks back in the history (`--last K`).
    pub last: Option<u64>,
    /// Go on after an end-of-stream chunk (`--follow`).
    pub follow: bool,
}

impl ConsumerOptions {
    /// The reference defaults for a consumer of the bus at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ConsumerOptions::on(BusOptions::new(path))
    }

    /// The reference defaults for a consumer of `bus`.
    pub fn on(bus: BusOptions) -> Self {
        ConsumerOptions {
            bus,
            output_method: OutputMethod::default(),
            max_chunk_size: DEFAULT_MAX_CHUNK_SIZE,
            stats: None,
            name: None,
            last: None,
            follow: false,
        }
    }

    /// Fails, saying why, if the consumer's name breaks the rules of
    /// [`validate_name`].
    pub fn validate(&self) -> Result<()> {
        match self.name.as_deref().map(validate_name) {
            Some(Err(problem)) => Err(Error::BadOptions { problem }),
            _ => Ok(()),
        }
    }

    /// Whether the consumer runs as a history consumer from the start,
    /// whatever the bus: an option asks for one of its features.
    pub(crate) fn wants_history(&self) -> bool {
        self.name.is_some() || self.last.is_some() || self.follow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_against_the_rules_is_refused() {
        let mut options = ConsumerOptions::new("bus");
        options.name = Some("backup".into());
        assert!(options.validate().is_ok());
        options.name = Some("a/b".into());
        assert!(options.validate().is_err(), "a name with a slash accepted");
    }
}

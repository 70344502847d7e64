//! Internals for this project's own tests, benchmarks and fuzz targets
//! (`crates/testkit`, `benches/`, `tests/`), which drive the protocol below
//! the entry points: publishing and taking chunks one by one, a history
//! consumer looked at one step at a time, the chunkers' cut decisions.
//!
//! Not part of the library's API: hidden from its documentation, and free to
//! change at any time.

pub use crate::bus::lock::LockFile;
pub use crate::bus::stamp;
pub use crate::bus::{Bus, Chunk, Current};
pub use crate::consumer::history::Session;
pub use crate::cursor::survey::survey;
pub use crate::history::HistoryWriter;
pub use crate::pipe_size::LARGEST as LARGEST_PIPE;
pub use crate::producer::chunk_file::{ChunkBuilder, write_chunk};
pub use crate::producer::cut;
pub use crate::sink::Sink;

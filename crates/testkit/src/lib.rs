//! What the filebus fuzz targets check, shared by `fuzz/` (which runs the
//! properties under libFuzzer) and the integration tests (which replay the
//! saved corpora on stable Rust), so that both check exactly the same thing.

pub mod chunking;
pub mod history;
pub mod protocol;
pub mod scratch;
pub mod tar_agreement;

pub use chunking::check_chunking;
pub use history::check_history;
pub use protocol::check_protocol;
pub use tar_agreement::check_tar_agreement;

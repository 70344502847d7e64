//! The integration tests: one binary, one module per behaviour, all through
//! the real `filebus` binary (or, for the fuzz corpora and the tar format,
//! through the library), with the helpers in `util`.

mod util;

mod bench;
mod busy_directory;
mod command_line;
mod faults;
mod fuzz_corpora;
mod history;
mod interop;
mod lossless;
mod lossy;
mod nfs_like_fs;
mod output;
mod pipe_sizes;
mod records;
mod replaced_bus;
mod security;
mod shared_fs;
mod start_order;
mod stat_and_install;
mod stats;
mod tar_chunks;
mod tar_format;

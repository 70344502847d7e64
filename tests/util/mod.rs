//! The integration tests' helpers, one module per concern. Everything but
//! the FUSE mounts is re-exported here, so that a test says
//! `crate::util::Running` without caring which file holds it.
#![allow(dead_code)]

mod bus_files;
pub mod fuse;
mod history;
mod inputs;
mod lone_records;
mod pipes;
mod processes;
mod reference;
mod reports;
mod tmpfs;
mod trap;
mod waiting;
mod xattrs;

pub use bus_files::*;
pub use history::*;
pub use inputs::*;
pub use lone_records::*;
pub use pipes::*;
pub use processes::*;
pub use reference::*;
pub use reports::*;
pub use tmpfs::*;
pub use trap::*;
pub use waiting::*;
pub use xattrs::*;

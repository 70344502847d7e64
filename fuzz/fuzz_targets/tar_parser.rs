//! `filebus_core::tar::parse_bytes` against the `tar` crate: both read the same
//! content of the member `from_server` or both reject the archive, except
//! where the property file documents a deliberate difference.
#![no_main]

use libfuzzer_sys::fuzz_target;

use filebus_testkit::check_tar_agreement;

fuzz_target!(|data: &[u8]| check_tar_agreement(data));

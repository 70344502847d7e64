//! `filebus_core::testing::cut` driven by a synthetic clock through any sequence of
//! reads and pauses: see the property file for what must hold.
#![no_main]

use libfuzzer_sys::fuzz_target;

use filebus_testkit::check_chunking;

fuzz_target!(|data: &[u8]| check_chunking(data));

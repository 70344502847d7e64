//! Reliable multicast (history, catch-up, named cursors) driven through the
//! library and the real history consumer against a real directory: see the
//! property file for the operations and what must hold.
#![no_main]

use libfuzzer_sys::fuzz_target;

use filebus_testkit::check_history;

fuzz_target!(|data: &[u8]| check_history(data));

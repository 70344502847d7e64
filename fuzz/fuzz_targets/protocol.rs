//! The bus protocol driven through the library against a real directory:
//! see the property file for the operations and what must hold.
#![no_main]

use libfuzzer_sys::fuzz_target;

use filebus_testkit::check_protocol;

fuzz_target!(|data: &[u8]| check_protocol(data));

//! The bus protocol driven through the library against a real directory:
//! see the property file for the operations and what must hold.
#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../properties/protocol.rs");

fuzz_target!(|data: &[u8]| check_protocol(data));

//! Reliable multicast (history, catch-up, named cursors, consumers started
//! before the bus exists or stalled across the ends of streams) driven
//! through the library and the real history consumer against a real
//! directory, each consumer checked against a model of where it starts,
//! what it writes, when it ends and what it counts as missed: see the
//! property file for the operations and what must hold.
#![no_main]

use libfuzzer_sys::fuzz_target;

use filebus_testkit::check_history;

fuzz_target!(|data: &[u8]| check_history(data));

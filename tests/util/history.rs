//! A bus with a history (`--history N`): made by a producer with no input,
//! its entries, and consumers on it once they are ready.

use std::path::{Path, PathBuf};

use super::{Running, filebus, names_in, produce, wait_until_showing};

/// What a history consumer says on stderr (with `-vvv`) once it has decided
/// where to start (named: its cursor registered): from then on it receives
/// every chunk published.
pub const HISTORY_CONSUMER_READY: &str = "history consumer: starting";

/// Makes `bus` a bus with a history of `depth` chunks (a producer with no
/// input: it publishes only its end-of-stream chunk, number 1).
pub fn history_bus(bus: &Path, depth: &str, aux: &Path) {
    produce(bus, &["--history", depth], b"", aux);
}

/// A consumer of `bus` (`-vvv consumer ARGS...`) whose stdout is collected
/// all along, once it is ready ([`HISTORY_CONSUMER_READY`]).
pub fn ready_consumer(bus: &Path, args: &[&str]) -> Running {
    let mut all = vec!["-vvv", "consumer"];
    all.extend_from_slice(args);
    let consumer = Running::start(filebus(bus, &all), None);
    wait_until_ready(&consumer);
    consumer
}

/// Waits until the history consumer `consumer` is ready.
pub fn wait_until_ready(consumer: &Running) {
    wait_until_showing(
        "the history consumer to be ready",
        || consumer.stderr().contains(HISTORY_CONSUMER_READY),
        || consumer.stderr(),
    );
}

/// The history directory of `bus`.
pub fn history_dir(bus: &Path) -> PathBuf {
    bus.with_file_name("bus.history")
}

/// The sequence numbers of the entries in `BUS.history`, sorted; other names
/// are left out.
pub fn history_entries(bus: &Path) -> Vec<u64> {
    let dir = history_dir(bus);
    let mut entries: Vec<u64> = names_in(&dir)
        .iter()
        .filter(|name| name.len() == 20 && name.bytes().all(|byte| byte.is_ascii_digit()))
        .map(|name| name.parse().expect("20 digits"))
        .collect();
    entries.sort_unstable();
    entries
}

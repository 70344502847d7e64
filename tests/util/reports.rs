//! What filebus reports about a bus: `filebus stat` and `consumer --stats`.

use std::process::Command;

use super::filebus_bin;

/// `filebus stat ARGS...`, which must succeed: its standard output.
pub fn stat<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[S]) -> String {
    let output = Command::new(filebus_bin())
        .arg("stat")
        .args(args)
        .output()
        .expect("cannot run filebus stat");
    assert!(
        output.status.success(),
        "filebus stat {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("stat prints text")
}

/// The last `consumer --stats` summary line in `stderr`.
pub fn last_stats_line(stderr: &str) -> &str {
    stderr
        .lines()
        .rev()
        .find(|line| line.contains("stats:"))
        .unwrap_or_else(|| panic!("no stats summary in {stderr:?}"))
}

/// The counts of the last summary line in `stderr`: chunks, bytes, missed,
/// unknown.
pub fn stats_counts(stderr: &str) -> [u64; 4] {
    let line = last_stats_line(stderr);
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|word| !word.is_empty())
        .take(4)
        .map(|word| word.parse().expect("a number"))
        .collect();
    numbers
        .try_into()
        .unwrap_or_else(|_| panic!("not four numbers: {line}"))
}

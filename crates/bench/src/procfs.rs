//! What `/proc` says about a running process: CPU time, context switches and
//! peak memory, summed over all its threads.
//!
//! CPU time comes from `/proc/PID/task/TID/schedstat` (nanoseconds) where the
//! kernel provides it: `utime` and `stime` in `/proc/PID/stat` count whole
//! clock ticks (10 ms on most systems), too coarse for a process that should
//! use less than a tick in ten seconds. Context switches are per thread in
//! `/proc/PID/task/TID/status`; a voluntary switch is a sleep, so the number
//! of voluntary switches is the number of wake-ups.

use std::path::Path;

use super::BenchError;

/// Cumulative counters of one process at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Sample {
    /// CPU time in nanoseconds (schedstat if available, else ticks).
    pub cpu_ns: u64,
    /// Whether `cpu_ns` is exact (schedstat) or tick-based.
    pub cpu_exact: bool,
    /// Voluntary context switches (sleeps, hence wake-ups).
    pub voluntary: u64,
    /// Involuntary context switches (preemptions).
    pub involuntary: u64,
    /// Peak resident set size so far (`VmHWM`), in KiB.
    pub peak_rss_kib: u64,
}

/// Reads the counters of process `pid`.
pub(crate) fn sample(pid: libc::pid_t) -> Result<Sample, BenchError> {
    let proc_dir = Path::new("/proc").join(pid.to_string());
    let status = read(&proc_dir.join("status"))?;
    let mut sample = Sample {
        peak_rss_kib: field(&status, "VmHWM:").unwrap_or(0),
        ..Sample::default()
    };
    let tasks = std::fs::read_dir(proc_dir.join("task"))
        .map_err(|error| BenchError::io(format!("cannot list threads of process {pid}"), error))?;
    let mut exact = true;
    let mut schedstat_ns = 0;
    for task in tasks {
        let task = task.map_err(|error| {
            BenchError::io(format!("cannot list threads of process {pid}"), error)
        })?;
        // A thread may end between the listing and the reading: skip it.
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        sample.voluntary += field(&status, "voluntary_ctxt_switches:").unwrap_or(0);
        sample.involuntary += field(&status, "nonvoluntary_ctxt_switches:").unwrap_or(0);
        match std::fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|text| text.split_whitespace().next()?.parse::<u64>().ok())
        {
            Some(ns) => schedstat_ns += ns,
            None => exact = false,
        }
    }
    if exact {
        sample.cpu_ns = schedstat_ns;
        sample.cpu_exact = true;
    } else {
        sample.cpu_ns = cpu_from_ticks(&read(&proc_dir.join("stat"))?);
    }
    Ok(sample)
}

fn read(path: &Path) -> Result<String, BenchError> {
    std::fs::read_to_string(path)
        .map_err(|error| BenchError::io(format!("cannot read {}", path.display()), error))
}

/// The number after `name` on its line of a `status` file.
fn field(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
}

/// utime + stime from `/proc/PID/stat`, in nanoseconds.
fn cpu_from_ticks(stat: &str) -> u64 {
    // The command name (field 2) may contain spaces: count from its ')'.
    let Some(after_name) = stat.rfind(')').map(|at| &stat[at + 1..]) else {
        return 0;
    };
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of the file are 12 and 13 after the name.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&index| fields.get(index)?.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second).unwrap_or(100).max(1);
    ticks * 1_000_000_000 / per_second
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_read_after_a_name_with_spaces() {
        let stat = "42 (a b) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0";
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        assert_eq!(cpu_from_ticks(stat), 10 * 1_000_000_000 / hz);
    }

    #[test]
    fn own_process_can_be_sampled() {
        let sample = sample(std::process::id() as libc::pid_t).expect("sample self");
        assert!(sample.cpu_ns > 0);
        assert!(sample.peak_rss_kib > 0);
    }
}

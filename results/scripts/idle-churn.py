#!/usr/bin/env python3
"""CPU of an idle filebus consumer while another program churns files of
other names in the bus's directory.

For each repeat, for each consumer kind, for each binary (interleaved): a
fresh directory, a bus in it (a chunk at F, or a history bus), the consumer
started with stdout to /dev/null, 0.5 s to settle, then `churn DIR SECONDS`
beside it; the consumer's utime+stime (clock ticks, /proc/PID/stat, all
threads) and voluntary context switches (wake-ups, all threads) are read
before and after.

Usage: idle-churn.py CHURN WORKDIR REPEATS SECONDS NAME=FILEBUS...
(CHURN: results/scripts/idle-churn.c, built with cc -O2)
"""
import os
import shutil
import statistics
import subprocess
import sys
import time

KINDS = {
    # kind: (producer options that set the bus up, consumer options)
    "lossy": (["producer"], ["consumer"]),
    "lossless": (None, ["--back-pressure", "consumer"]),
    "history": (["producer", "--history", "8"], ["consumer", "--follow"]),
    "named": (["producer", "--history", "8"], ["consumer", "--name", "reader", "--follow"]),
}


def counters(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    wakeups = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/status") as status:
            wakeups += next(int(line.split()[1]) for line in status
                            if line.startswith("voluntary_ctxt_switches"))
    return ticks, wakeups


def measure(filebus, kind, directory, churn, seconds):
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    bus = os.path.join(directory, "bus")
    setup, consumer_options = KINDS[kind]
    if setup:
        subprocess.run([filebus, "--filename", bus] + setup, input=b"a chunk\n", check=True)
    consumer = subprocess.Popen([filebus, "--filename", bus] + consumer_options,
                                stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        ticks, wakeups = counters(consumer.pid)
        files = int(subprocess.run([churn, directory, str(seconds)], capture_output=True,
                                   check=True).stdout)
        ticks_after, wakeups_after = counters(consumer.pid)
        assert consumer.poll() is None, f"{kind} consumer exited"
    finally:
        consumer.terminate()
        consumer.wait()
    shutil.rmtree(directory, ignore_errors=True)
    return ticks_after - ticks, wakeups_after - wakeups, files / seconds


def main():
    churn, workdir, repeats, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    binaries = [argument.split("=", 1) for argument in sys.argv[5:]]
    hz = os.sysconf("SC_CLK_TCK")
    print(f"load average at start: {os.getloadavg()}")
    runs = {}
    for repeat in range(repeats):
        for kind in KINDS:
            for name, filebus in binaries:
                ticks, wakeups, rate = measure(filebus, kind, os.path.join(workdir, "bus-dir"),
                                               churn, seconds)
                runs.setdefault((kind, name), []).append((ticks, wakeups, rate))
                print(f"run {repeat + 1} {kind:8} {name:7} {ticks:3} ticks "
                      f"{wakeups / seconds:8.0f} wake-ups/s  churn {rate:6.0f} files/s",
                      flush=True)
    print(f"load average at end: {os.getloadavg()}")
    print(f"\nmedians over {repeats} runs of {seconds} s of churn ({hz} ticks a second):")
    print("| consumer | binary | CPU ticks | % of a CPU | wake-ups/s | churn files/s "
          "| CPU µs per file | ticks of each run |")
    print("|---|---|---|---|---|---|---|---|")
    for (kind, name), values in runs.items():
        ticks = statistics.median(v[0] for v in values)
        wakeups = statistics.median(v[1] for v in values) / seconds
        rate = statistics.median(v[2] for v in values)
        # The churn's pace varies with the load: the cost of each file
        # varies less.
        per_file = statistics.median(v[0] / hz * 1e6 / (v[2] * seconds) for v in values)
        print(f"| {kind} | {name} | {ticks:g} | {100 * ticks / hz / seconds:.1f}% | {wakeups:,.0f} "
              f"| {rate:,.0f} | {per_file:.2f} | {' '.join(str(v[0]) for v in values)} |")


if __name__ == "__main__":
    main()

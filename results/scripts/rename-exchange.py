#!/usr/bin/env python3
"""Publishing a chunk over an existing one: rename(2) over it, against
renameat2(RENAME_EXCHANGE) followed by deleting the old chunk (what lossy
producers do). On ext4, a rename that replaces a file first flushes the new
file's data (auto_da_alloc); the exchange does not.

Usage, from the repository root:
    python3 results/scripts/rename-exchange.py [DIR] > results/2026-12-02-rename-exchange/rename-exchange.txt
DIR (default /tmp) is where the bus lives. Each publish writes a new 4 KiB
file (as a producer does), then replaces F; the two methods alternate in
rounds so that load from other processes falls on both alike.
"""

import ctypes
import os
import statistics
import subprocess
import sys
import tempfile
import time

RENAME_EXCHANGE = 2
AT_FDCWD = -100
ROUNDS = 20
PER_ROUND = 100
CHUNK = os.urandom(4096)

libc = ctypes.CDLL(None, use_errno=True)
libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]


def write_new(path):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, CHUNK)
    os.close(fd)


def publish_rename(bus, new):
    write_new(new)
    start = time.perf_counter_ns()
    os.rename(new, bus)
    return time.perf_counter_ns() - start


def publish_exchange(bus, new):
    write_new(new)
    start = time.perf_counter_ns()
    if libc.renameat2(AT_FDCWD, new.encode(), AT_FDCWD, bus.encode(), RENAME_EXCHANGE) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    os.unlink(new)
    return time.perf_counter_ns() - start


def main():
    where = sys.argv[1] if len(sys.argv) > 1 else "/tmp"
    fstype = subprocess.run(["df", "-T", where], capture_output=True, text=True).stdout.split("\n")[1].split()[1]
    times = {"rename": [], "exchange": []}
    with tempfile.TemporaryDirectory(dir=where, prefix="rename-exchange-") as scratch:
        bus = os.path.join(scratch, "bus")
        new = os.path.join(scratch, "bus.__new__")
        write_new(bus)
        for _ in range(ROUNDS):
            for name, publish in (("rename", publish_rename), ("exchange", publish_exchange)):
                times[name].extend(publish(bus, new) for _ in range(PER_ROUND))
    print(f"# {time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())}, {os.uname().sysname} {os.uname().release}, "
          f"{os.cpu_count()} CPUs, bus in {where} ({fstype})")
    print(f"# load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"# {ROUNDS * PER_ROUND} publishes of a new 4096-byte file over the previous one per method, "
          f"alternating in rounds of {PER_ROUND}; time of the replacing calls only, in microseconds")
    print(f"{'method':<34} {'p10':>8} {'median':>8} {'p90':>8}")
    for name, label in (("rename", "rename over F"), ("exchange", "RENAME_EXCHANGE, then unlink old")):
        values = sorted(times[name])
        pick = lambda q: values[int(q * (len(values) - 1))] / 1000
        print(f"{label:<34} {pick(0.1):8.1f} {statistics.median(values) / 1000:8.1f} {pick(0.9):8.1f}")


main()

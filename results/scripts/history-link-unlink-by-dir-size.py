#!/usr/bin/env python3
"""Cost of one link plus one unlink in a directory that holds DEPTH other
entries, as the history does for every chunk (link the new chunk in, unlink
the one leaving the window), against an empty directory.

usage: python3 results/scripts/history-link-unlink-by-dir-size.py [DIR] [ROUNDS]   (default /tmp, 3)

Prints, per round, microseconds per link+unlink pair (Python's own overhead
of about 1 us per call included) for each (entries, name length, fan-out)."""
import os
import shutil
import sys
import tempfile
import time

PAIRS = 20000


def pair_cost(root, depth, name_len, fan_out):
    d = tempfile.mkdtemp(dir=root, prefix="linkcost.")
    try:
        for sub in range(fan_out):
            os.mkdir(f"{d}/{sub}")
        src = f"{d}/chunk"
        open(src, "w").close()

        def name(i):
            return f"{d}/{i % fan_out}/{i:0{name_len}d}"

        for i in range(depth):
            os.link(src, name(i))
        start = time.perf_counter()
        for i in range(depth, depth + PAIRS):
            os.link(src, name(i))
            os.unlink(name(i - depth))
        return (time.perf_counter() - start) / PAIRS * 1e6
    finally:
        shutil.rmtree(d)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "/tmp"
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    cases = [(0, 20, 1), (8, 20, 1), (64, 20, 1), (64, 8, 1), (64, 20, 8), (256, 20, 1)]
    print("entries name_len fan_out: us per link+unlink, one column per round")
    results = {case: [] for case in cases}
    for _ in range(rounds):
        for case in cases:
            results[case].append(pair_cost(root, *case))
    for case, costs in results.items():
        print(*case, ":", " ".join(f"{cost:.1f}" for cost in costs))


if __name__ == "__main__":
    main()

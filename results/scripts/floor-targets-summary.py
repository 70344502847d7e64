#!/usr/bin/env python3
"""Summarises the runs of floor-targets.sh: ours as a fraction of the floor
measured in the same run, per run, and the median of the runs.

usage: results/scripts/floor-targets-summary.py OUT_DIR"""
import glob, json, os, statistics, sys

out = sys.argv[1]


def value(report, section, system, metric, **point):
    for row in report["results"]:
        if (row["section"], row["system"], row["metric"]) == (section, system, metric) and all(
            row.get(key) == wanted for key, wanted in point.items()
        ):
            return row.get("value")
    return None


def ratio(report, section, metric, **point):
    ours = value(report, section, "ours", metric, **point)
    floor = value(report, section, "floor", metric, **point)
    return ours / floor if ours and floor else None


lines = {}
for path in sorted(glob.glob(os.path.join(out, "run*-*.json"))):
    run, place = os.path.basename(path)[:-5].split("-")
    report = json.load(open(path))
    load = report["machine"]["load_average_start"], report["machine"]["load_average_end"]
    figures = {}
    if place in ("tmp", "shm"):
        fs = "ext4" if place == "tmp" else "tmpfs"
        figures[f"lossless 4 KiB throughput, {fs}"] = ratio(report, "throughput", "throughput", block_size=4096)
        figures[f"lossless 4 KiB CPU per chunk, {fs}"] = ratio(report, "throughput", "cpu_per_chunk", block_size=4096)
        figures[f"lossless 1 MiB throughput, {fs}"] = ratio(report, "throughput", "throughput", block_size=1 << 20)
        for mode in ("lossless", "lossy"):
            for rate, every in ((50, "20 ms"), (5, "200 ms")):
                figures[f"latency p50 {mode}, one per {every}, default options, {fs}"] = ratio(
                    report, "latency", "p50", mode=mode, rate=rate)
            figures[f"latency p50 {mode}, 100/s, --sleep-interval 0, {fs}"] = ratio(
                report, "latency", "p50", mode=mode, rate=100)
    else:
        for mode in ("lossy", "history", "named"):
            for consumers in (1, 4):
                for rate in (1000, 10000):
                    figures[f"loss {mode}, {consumers} consumer(s), {rate}/s: delivered"] = ratio(
                        report, "loss", "delivered_percent", mode=mode, consumers=consumers, rate=rate)
                    figures[f"loss {mode}, {consumers} consumer(s), {rate}/s: CPU per record"] = ratio(
                        report, "loss", "cpu_per_record", mode=mode, consumers=consumers, rate=rate)
    for name, figure in figures.items():
        lines.setdefault(name, {})[run] = (figure, load)

runs = sorted({run for per_run in lines.values() for run in per_run})
print("| ours / floor | " + " | ".join(runs) + " | median |")
print("|---|" + "---|" * (len(runs) + 1))
for name, per_run in lines.items():
    cells = [per_run.get(run, (None, None))[0] for run in runs]
    known = [cell for cell in cells if cell is not None]
    median = statistics.median(known) if known else None
    show = lambda x: "-" if x is None else f"{x:.2f}"
    print(f"| {name} | " + " | ".join(map(show, cells)) + f" | {show(median)} |")

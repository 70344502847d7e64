#!/bin/bash
# Issue 17's targets against the protocol floor, three recorded runs: for
# each run, `filebus bench --quick --repeat 5` of the throughput and latency
# sections with the bus on ext4 (/tmp) and on tmpfs (/dev/shm), and the loss
# sweep on ext4. Every table shows ours beside the built-in floor measured in
# the same run (see crates/bench/src/floor/).
#
# usage: results/scripts/floor-targets.sh FILEBUS OUT_DIR [RUNS]
set -euo pipefail
filebus=$1 out=$2 runs=${3:-3}
mkdir -p "$out"
for run in $(seq 1 "$runs"); do
    for place in /tmp /dev/shm; do
        name=$(basename "$place")
        {
            echo "# run $run, bus in $place; uptime before: $(uptime)"
            "$filebus" bench --quick --repeat 5 --no-baselines --sections throughput,latency \
                --dir "$place" --output "$out/run$run-$name.json" 2>/dev/null
            echo "# uptime after: $(uptime)"
        } > "$out/run$run-$name.txt"
    done
    {
        echo "# run $run, loss sweep, bus in /tmp; uptime before: $(uptime)"
        "$filebus" bench --quick --sections loss --dir /tmp \
            --output "$out/run$run-loss.json" 2>/dev/null
        echo "# uptime after: $(uptime)"
    } > "$out/run$run-loss.txt"
done

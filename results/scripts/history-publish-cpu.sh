#!/bin/bash
# The CPU cost of history on the lossy publish path, less sensitive to a
# loaded machine than wall-clock throughput: a producer alone publishing a
# regular file in 4 KiB chunks, with and without --history 64, for each
# binary given; microseconds of CPU (user + system, from /usr/bin/time) and
# of wall clock per chunk, median of N interleaved runs.
#
# Usage: results/scripts/history-publish-cpu.sh runs binary...   (DIR=where the bus
# goes, default /tmp)
set -euo pipefail
runs=$1; shift
dir=$(mktemp -d "${DIR:-/tmp}/filebus-cpu-XXXXXX")
trap 'rm -rf "$dir"' EXIT
block=4096; chunks=4096
head -c $(( block * chunks )) /dev/urandom > "$dir/in"
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
for run in $(seq "$runs"); do
  n=0
  for fb in "$@"; do
    n=$(( n + 1 ))
    for variant in plain history; do
      rm -rf "$dir/bus"*
      extra=(); [ "$variant" = history ] && extra=(--history 64)
      /usr/bin/time -f "%e %U %S" -o "$dir/time" \
        "$fb" --filename "$dir/bus" --block-size "$block" producer "${extra[@]}" < "$dir/in"
      awk -v c="$chunks" '{ printf "%f %f\n", 1e6 * ($2 + $3) / c, 1e6 * $1 / c }' "$dir/time" >> "$dir/$n-$variant"
    done
  done
done
n=0
for fb in "$@"; do
  n=$(( n + 1 ))
  for variant in plain history; do
    cpu=$(cut -d' ' -f1 "$dir/$n-$variant" | median)
    wall=$(cut -d' ' -f2 "$dir/$n-$variant" | median)
    printf "%s %-8s: %6.1f us CPU, %6.1f us wall per chunk (median of %d)\n" "$fb" "$variant" "$cpu" "$wall" "$runs"
  done
done

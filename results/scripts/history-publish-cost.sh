#!/bin/bash
# The cost of history on the lossy publish path: a producer alone (no
# consumer) publishing a regular file of random bytes, with and without
# --history 64, at 4 KiB and 1 MiB blocks; runs interleaved, median of N.
#
# Usage: results/scripts/history-publish-cost.sh [runs]   (FILEBUS=path/to/filebus,
# DIR=where the bus goes, default /tmp)
set -euo pipefail
fb=${FILEBUS:-target/release/filebus}
runs=${1:-7}
dir=$(mktemp -d "${DIR:-/tmp}/filebus-cost-XXXXXX")
trap 'rm -rf "$dir"' EXIT
head -c 64M /dev/urandom > "$dir/input"
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
for block in 4096 1048576; do
  mib=$(( block == 4096 ? 16 : 64 ))
  head -c "${mib}M" "$dir/input" > "$dir/in"
  : > "$dir/plain"; : > "$dir/history"
  for run in $(seq "$runs"); do
    for variant in plain history; do
      rm -rf "$dir/bus"*
      extra=(); [ "$variant" = history ] && extra=(--history 64)
      start=$(date +%s.%N)
      "$fb" --filename "$dir/bus" --block-size "$block" producer "${extra[@]}" < "$dir/in"
      end=$(date +%s.%N)
      awk -v s="$start" -v e="$end" -v b="$block" -v m="$mib" 'BEGIN { print m * 1048576 / b / (e - s) }' >> "$dir/$variant"
    done
  done
  plain=$(median < "$dir/plain"); history=$(median < "$dir/history")
  awk -v b="$block" -v p="$plain" -v h="$history" -v r="$runs" 'BEGIN {
    printf "block %7d: without history %8.0f chunks/s, --history 64 %8.0f chunks/s: %.0f%% (median of %d)\n", b, p, h, 100 * h / p, r }'
done

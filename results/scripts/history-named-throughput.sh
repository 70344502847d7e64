#!/bin/bash
# Lossless multicast throughput at 64 KiB chunks: a producer with
# --history 64 and 4 named consumers, each piped into `cat > /dev/null`,
# against `tee` into 4 FIFOs each read by `cat > /dev/null`; same input,
# runs interleaved, median of N. Every named consumer's output is checked
# by length (history-named-slow.sh checks content).
#
# Usage: results/scripts/history-named-throughput.sh [MiB] [runs]   (FILEBUS=path/to/filebus)
set -euo pipefail
fb=${FILEBUS:-target/release/filebus}
mib=${1:-256}
runs=${2:-5}
dir=$(mktemp -d /tmp/filebus-named-tp-XXXXXX)
trap 'rm -rf "$dir"' EXIT
head -c "${mib}M" /dev/urandom > "$dir/input"
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
now() { date +%s.%N; }
: > "$dir/named"; : > "$dir/tee"
for run in $(seq "$runs"); do
  rm -rf "$dir/bus"*
  "$fb" --filename "$dir/bus" producer --history 64 < /dev/null
  pids=()
  for name in a b c d; do
    ( "$fb" --filename "$dir/bus" consumer --name "$name" | wc -c > "$dir/$name.len" ) &
    pids+=($!)
  done
  until [ "$("$fb" stat --json "$dir/bus" | grep -o '"alive":true' | wc -l)" = 4 ]; do sleep 0.02; done
  start=$(now)
  "$fb" --filename "$dir/bus" --block-size 65536 producer < "$dir/input"
  wait "${pids[@]}"
  end=$(now)
  for name in a b c d; do
    [ "$(cat "$dir/$name.len")" = $((mib * 1048576)) ] || { echo "named consumer $name: wrong length"; exit 1; }
  done
  awk -v m="$mib" -v s="$start" -v e="$end" 'BEGIN { print m / (e - s) }' >> "$dir/named"
  rm -f "$dir"/fifo*
  for i in 1 2 3 4; do mkfifo "$dir/fifo$i"; done
  pids=()
  for i in 1 2 3 4; do cat "$dir/fifo$i" > /dev/null & pids+=($!); done
  start=$(now)
  tee "$dir/fifo1" "$dir/fifo2" "$dir/fifo3" < "$dir/input" > "$dir/fifo4"
  wait "${pids[@]}"
  end=$(now)
  awk -v m="$mib" -v s="$start" -v e="$end" 'BEGIN { print m / (e - s) }' >> "$dir/tee"
done
named=$(median < "$dir/named"); tee=$(median < "$dir/tee")
awk -v n="$named" -v t="$tee" -v r="$runs" -v m="$mib" 'BEGIN {
  printf "%d MiB, 64 KiB chunks, 4 consumers: named (--history 64) %.0f MiB/s, tee into 4 FIFOs %.0f MiB/s: %.0f%% (median of %d)\n", m, n, t, 100 * n / t, r }'

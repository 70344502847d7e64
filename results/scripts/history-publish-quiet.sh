#!/bin/bash
# CPU per published chunk (4096 chunks of 4 KiB, /tmp), with and without
# --history 64, each run after a quiet minute in its directory so that the
# ext4 inode allocator finds no inode freed in the last minute by an earlier
# run; from `perf record`, with the part spent in ext4's recently_deleted.
#
# Usage: results/scripts/history-publish-quiet.sh path/to/filebus   (takes 4+ minutes)
set -eu
fb=$1; d=$(mktemp -d /tmp/filebus-quiet-XXXXXX); trap 'rm -rf "$d"' EXIT
head -c 16M /dev/urandom > "$d/in"
for v in history plain plain history; do
  rm -rf "$d/bus"*; sleep 62
  extra=(); [ $v = history ] && extra=(--history 64)
  perf record -q -g -o "$d/p.data" "$fb" --filename "$d/bus" --block-size 4096 producer "${extra[@]}" < "$d/in" 2>/dev/null
  ev=$(perf report -i "$d/p.data" --stdio -g none --sort sym 2>/dev/null | grep -m1 -o 'Event count.*' | grep -o '[0-9]*$')
  rd=$(perf report -i "$d/p.data" --children -g none --sort sym 2>/dev/null | awk '$NF == "recently_deleted" { sub("%", "", $1); print $1 }')
  awk -v v=$v -v ev=$ev -v rd=${rd:-0} 'BEGIN { printf "%-8s %6.1f us CPU per chunk, recently_deleted %5.1f us\n", v, ev / 4096 / 1000, rd / 100 * ev / 4096 / 1000 }'
done

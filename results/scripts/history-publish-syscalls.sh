#!/bin/bash
# System calls per published chunk, with and without --history 64: a lossy
# producer alone publishing 1000 chunks of 4 KiB from a regular file, under
# `strace -c -f`; prints each call's count per chunk for both variants.
#
# Usage: results/scripts/history-publish-syscalls.sh   (FILEBUS=path/to/filebus,
# DIR=where the bus goes, default /tmp)
set -euo pipefail
fb=${FILEBUS:-target/release/filebus}
chunks=1000
dir=$(mktemp -d "${DIR:-/tmp}/filebus-syscalls-XXXXXX")
trap 'rm -rf "$dir"' EXIT
head -c $(( 4096 * chunks )) /dev/urandom > "$dir/in"
for variant in plain history; do
  rm -rf "$dir/bus"*
  extra=(); [ "$variant" = history ] && extra=(--history 64)
  strace -c -f -o "$dir/$variant.strace" \
    "$fb" --filename "$dir/bus" --block-size 4096 producer "${extra[@]}" < "$dir/in"
done
# strace -c rows: % time, seconds, usecs/call, calls, [errors,] syscall.
awk -v c="$chunks" '
  FNR == 1 { variant = (FILENAME ~ /plain/) ? 1 : 2 }
  /^ *[0-9]/ && $NF != "total" { n[$NF, variant] = $4; names[$NF] = 1 }
  /total$/ { total[variant] = $4 }
  END {
    printf "%-12s %8s %8s\n", "per chunk", "plain", "history"
    for (name in names) {
      p = n[name, 1] / c; h = n[name, 2] / c
      if (p >= 0.05 || h >= 0.05) printf "%-12s %8.2f %8.2f\n", name, p, h
    }
    printf "%-12s %8.2f %8.2f\n", "total", total[1] / c, total[2] / c
  }' "$dir/plain.strace" "$dir/history.strace"

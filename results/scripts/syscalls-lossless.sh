#!/bin/bash
# System calls per chunk of a lossless 4 KiB hand-off (producer and consumer
# apart), counted by strace -c over 1,024 chunks of 4 MiB from a file.
# usage: results/scripts/syscalls-lossless.sh NAME "PROGRAM [WORDS]" [DIR]
set -euo pipefail
name=$1 program=$2 dir=${3:-/tmp}
work=$(mktemp -d "$dir/syscalls.XXXXXX")
trap 'rm -rf "$work"' EXIT
head -c 4M /dev/urandom > "$work/input"
strace -f -c -o "$work/consumer.txt" $program --back-pressure --block-size 4096 \
    --filename "$work/bus" consumer > "$work/output" &
sleep 0.5
strace -f -c -o "$work/producer.txt" $program --back-pressure --block-size 4096 \
    --filename "$work/bus" producer < "$work/input"
wait
cmp -s "$work/input" "$work/output" || { echo "$name: output differs" >&2; exit 1; }
for role in producer consumer; do
    calls=$(awk '$NF == "total" {print $(NF-2)}' "$work/$role.txt")
    printf '%s %s: %s calls, %.1f per chunk\n' "$name" "$role" "$calls" "$(echo "$calls / 1025" | bc -l)"
done

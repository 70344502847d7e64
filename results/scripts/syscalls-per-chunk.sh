#!/bin/sh
# System calls per chunk of a lossless producer and consumer, counted with
# `strace -c`: 1000 chunks of 4 KiB from a pipe, handed over one at a time,
# the consumer writing to a pipe. Usage, from the repository root:
#   cargo build && results/scripts/syscalls-per-chunk.sh target/debug/filebus > results/2026-12-02-syscalls-per-chunk/syscalls.txt
# (The counts do not depend on the build profile; the timings strace shows
# are inflated by tracing and are not measurements.)
set -eu
filebus=$(realpath "$1")
chunks=1000
dir=$(mktemp -d /tmp/filebus-syscalls.XXXXXX)
trap 'rm -rf "$dir"' EXIT
head -c $((4096 * chunks)) /dev/urandom > "$dir/input"
echo "# $(date -u +%Y-%m-%dT%H:%MZ), $("$filebus" --version), $(uname -sr), $(nproc) CPUs, bus in /tmp ($(df -T /tmp | awk 'NR == 2 { print $2 }'))"
echo "# load: $(uptime)"
echo "# $chunks chunks of 4096 bytes, lossless, producer reading a pipe, consumer writing to a pipe"
strace -c -o "$dir/consumer.txt" "$filebus" --filename "$dir/bus" --lossless consumer | cat > "$dir/output" &
consumer=$!
# The consumer is waiting before the producer starts (it needs no more than this).
sleep 1
cat "$dir/input" | strace -c -o "$dir/producer.txt" "$filebus" --filename "$dir/bus" --lossless --block-size 4096 producer
wait "$consumer"
cmp "$dir/input" "$dir/output"
for side in producer consumer; do
    total=$(awk '$NF == "total" { print $(NF-2) }' "$dir/$side.txt")
    echo
    echo "## $side: $total system calls, $(awk -v t="$total" -v n="$chunks" 'BEGIN { printf "%.1f", t / (n + 1) }') per chunk (the end-of-stream marker included)"
    cat "$dir/$side.txt"
done

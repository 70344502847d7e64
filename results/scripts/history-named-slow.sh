#!/bin/bash
# Lossless multicast with named consumers: 4 named consumers of a bus with
# --history 64, one of them slow (it reads 64 KiB, then sleeps 2 ms). Every
# consumer's output is checked against the input (SHA-256), the history's
# size is sampled every 50 ms with `filebus stat --json`, and the producer's
# rate is compared with the slow consumer's. Then the same with `tee` into 4
# FIFOs and the same slow reader, for comparison.
#
# Usage: results/scripts/history-named-slow.sh [MiB]   (FILEBUS=path/to/filebus)
set -euo pipefail
fb=${FILEBUS:-target/release/filebus}
mib=${1:-64}
dir=$(mktemp -d /tmp/filebus-named-XXXXXX)
trap 'rm -rf "$dir"' EXIT
bus=$dir/bus
head -c "${mib}M" /dev/urandom > "$dir/input"
want=$(sha256sum < "$dir/input" | cut -d' ' -f1)
slow_reader='
import sys, hashlib, time
h = hashlib.sha256(); n = 0; t0 = time.monotonic()
while True:
    b = sys.stdin.buffer.read1(65536)
    if not b: break
    h.update(b); n += len(b); time.sleep(0.002)
print(h.hexdigest(), n, "%.3f" % (time.monotonic() - t0))
'
now() { date +%s.%N; }

"$fb" --filename "$bus" producer --history 64 < /dev/null     # the bus, with its history
for name in a b c; do
  "$fb" --filename "$bus" consumer --name "$name" | sha256sum | cut -d' ' -f1 > "$dir/$name.out" &
done
"$fb" --filename "$bus" consumer --name slow | python3 -c "$slow_reader" > "$dir/slow.out" &
until [ "$("$fb" stat --json "$bus" | grep -o '"alive":true' | wc -l)" = 4 ]; do sleep 0.05; done
( while sleep 0.05; do "$fb" stat --json "$bus" | grep -o '"history":{"depth":64,"chunks":[0-9]*' | grep -o '[0-9]*$'; done ) > "$dir/samples" &
sampler=$!
start=$(now)
"$fb" --filename "$bus" --block-size 65536 producer < "$dir/input"
end=$(now)
wait %1 %2 %3 %4 2>/dev/null || true
kill "$sampler" 2>/dev/null || true
ok=yes
for name in a b c; do [ "$(cat "$dir/$name.out")" = "$want" ] || { ok=no; echo "consumer $name: WRONG BYTES"; }; done
read -r slow_sum slow_bytes slow_seconds < "$dir/slow.out"
[ "$slow_sum" = "$want" ] || { ok=no; echo "consumer slow: WRONG BYTES"; }
max_held=$(sort -n "$dir/samples" | tail -1)
echo "named consumers: all 4 received every byte: $ok ($mib MiB)"
echo "history: at most $max_held chunks held in $(wc -l < "$dir/samples") samples (depth 64)"
awk -v mib="$mib" -v s="$start" -v e="$end" -v slow="$slow_seconds" 'BEGIN {
  printf "producer: %.1f MiB/s; slow consumer alone: %.1f MiB/s\n", mib / (e - s), mib / slow }'

# tee into 4 FIFOs with the same slow reader
for i in 1 2 3 4; do mkfifo "$dir/fifo$i"; done
for i in 1 2 3; do sha256sum < "$dir/fifo$i" | cut -d' ' -f1 > "$dir/tee$i.out" & done
python3 -c "$slow_reader" < "$dir/fifo4" > "$dir/tee4.out" &
start=$(now)
tee "$dir/fifo1" "$dir/fifo2" "$dir/fifo3" < "$dir/input" > "$dir/fifo4"
wait
end=$(now)
read -r tee_sum _ _ < "$dir/tee4.out"
[ "$tee_sum" = "$want" ] || echo "tee: WRONG BYTES"
awk -v mib="$mib" -v s="$start" -v e="$end" 'BEGIN { printf "tee into 4 FIFOs, same slow reader: %.1f MiB/s\n", mib / (e - s) }'

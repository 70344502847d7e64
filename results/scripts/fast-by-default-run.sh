#!/bin/bash
# The figures of results/2026-12-02-fast-by-default/README.md, in one window, from the root of
# the repository: BEFORE is the earlier commit built into /tmp/fb-before
# (cargo build --release at commit a90c1c5, the binary copied there).
# Writes into $OUT; results/2026-12-02-fast-by-default/*.txt are copies of those files.
AFTER=target/release/filebus
BEFORE=/tmp/fb-before/filebus
OUT=${OUT:-/tmp/fb9/evidence}
mkdir -p $OUT /tmp/fb9
echo "== start $(date -u +%FT%TZ) $(uptime)" | tee $OUT/log
# 1. latency probes, 3 rounds, interleaved
for round in 1 2 3; do
  for spacing_n in "0.2 50" "0.02 250"; do
    set -- $spacing_n
    python3 results/scripts/fast-by-default-probe.py latency cat $1 $2
    python3 results/scripts/fast-by-default-probe.py latency $AFTER $1 $2
    python3 results/scripts/fast-by-default-probe.py latency $AFTER $1 $2 --sleep-interval 0
    python3 results/scripts/fast-by-default-probe.py latency $BEFORE $1 $2
    python3 results/scripts/fast-by-default-probe.py latency $BEFORE $1 $2 --sleep-interval 0
  done
done 2>&1 | tee $OUT/latency.txt
echo "== after latency $(uptime)" | tee -a $OUT/log
# 2. loss of 64-byte records, 4 consumers
for round in 1 2 3; do
  for rate in 10000 100000; do
    python3 results/scripts/fast-by-default-probe.py loss $AFTER $rate 4
    python3 results/scripts/fast-by-default-probe.py loss $BEFORE $rate 4
    python3 results/scripts/fast-by-default-probe.py loss $AFTER $rate 4 --block-size 4096 --sleep-interval 0
    python3 results/scripts/fast-by-default-probe.py loss $BEFORE $rate 4 --block-size 4096 --sleep-interval 0
  done
done 2>&1 | tee $OUT/loss.txt
echo "== after loss $(uptime)" | tee -a $OUT/log
# 3. 256 MiB file to /dev/null, lossless
head -c $((256<<20)) /dev/urandom > /tmp/fb9/256M; cat /tmp/fb9/256M > /dev/null
for round in 1 2 3; do
  results/scripts/fast-by-default-file.sh /tmp/fb9/256M cat
  results/scripts/fast-by-default-file.sh /tmp/fb9/256M $AFTER
  results/scripts/fast-by-default-file.sh /tmp/fb9/256M $AFTER --block-size 65536
  results/scripts/fast-by-default-file.sh /tmp/fb9/256M $BEFORE
  results/scripts/fast-by-default-file.sh /tmp/fb9/256M $BEFORE --block-size 1048576
done 2>&1 | tee $OUT/file.txt
rm -f /tmp/fb9/256M
echo "== after file $(uptime)" | tee -a $OUT/log
# 4. syscalls per chunk
results/scripts/fast-by-default-syscounts.sh $BEFORE before > $OUT/syscalls.txt 2>&1
results/scripts/fast-by-default-syscounts.sh $AFTER after >> $OUT/syscalls.txt 2>&1
echo "== after syscalls $(uptime)" | tee -a $OUT/log
# 5. the full bench, after and before in the same run with cat|cat
$AFTER bench --reference before=$BEFORE --reference-sleep-interval 0 \
   --output $OUT/bench.json --output $OUT/bench.csv > $OUT/bench.txt 2> $OUT/bench.err
echo "== after bench $(uptime)" | tee -a $OUT/log
echo "== end $(date -u +%FT%TZ)" | tee -a $OUT/log

#!/bin/bash
# Used for results/2026-12-02-fast-by-default/syscalls.txt.
# usage: results/scripts/fast-by-default-syscounts.sh BINARY LABEL [extra options]
# 4 KiB lossless, 2000 chunks (8,192,000 bytes) through pipes; producer and consumer each under strace -c -f.
BIN=$1; LABEL=$2; shift 2
D=$(mktemp -d /tmp/fb9-sc.XXXX)
N=2000
head -c $((N*4096)) /dev/urandom > $D/in
( cat $D/in | strace -c -f -o $D/producer.txt $BIN --lossless --block-size 4096 --filename $D/bus "$@" producer ) &
strace -c -f -o $D/consumer.txt $BIN --lossless --block-size 4096 --filename $D/bus "$@" consumer | cat > $D/out
wait
cmp $D/in $D/out && echo "$LABEL: $N chunks of 4096 bytes, every byte checked"
for side in producer consumer; do
  echo "== $LABEL $side (calls per chunk = calls / $N)"
  awk -v n=$N 'NR>2 && $0 !~ /^-/ { printf "%-18s %8d  %6.2f/chunk%s\n", $NF, $4, $4/n, ($5 ~ /^[0-9]+$/ && NF==6) ? "  (" $5 " errors)" : "" }' $D/$side.txt | sort -k2 -n -r | awk '$3+0 >= 0.05 || $1=="total"'
done
rm -rf $D

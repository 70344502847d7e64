#!/bin/bash
# The C floor (fbfloor.c, issue 17) against filebus's built-in floor
# (`filebus bench-floor`): one lossless 4 KiB hand-off of a 64 MiB file
# through pipes, timed from the first byte to the last. Used by
# results/2026-12-03-bench-floor/ (floors-lossless-4k.txt), alternating:
#
#   head -c 67108864 /dev/urandom > in64
#   for i in $(seq 10); do ./floors-lossless-4k.sh c; ./floors-lossless-4k.sh rust; done
#
# $1: c or rust. FILEBUS and FBFLOOR name the programs (default: the /tmp
# copies the run used).
FILEBUS=${FILEBUS:-/tmp/filebus-bench-floor}
FBFLOOR=${FBFLOOR:-/tmp/fbfloor}
d=$(mktemp -d)
if [ "$1" = c ]; then P="$FBFLOOR"; else P="$FILEBUS bench-floor"; fi
s=$(date +%s.%N)
cat in64 | $P --filename "$d/bus" --back-pressure --block-size 4096 producer &
$P --filename "$d/bus" --back-pressure --block-size 4096 consumer | cat > /dev/null
wait
e=$(date +%s.%N)
echo "$1 $(echo "67.108864/($e-$s)" | bc -l | cut -c1-6) MB/s"
rm -rf "$d"

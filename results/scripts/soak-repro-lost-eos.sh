#!/bin/sh
# A plain (no --follow) unnamed consumer, present before a stream, is
# stopped through it; the stream ends, and a second stream pushes the first
# one's end-of-stream chunk out of the history before the consumer is
# continued. The consumer reports the end-of-stream chunk lost, then goes
# on writing the second stream instead of ending: it ends only when the
# second stream ends (never, if that one runs on).
# Usage: results/scripts/soak-repro-lost-eos.sh FILEBUS   (exits 1 when the consumer did not end)
FB=${1:-filebus}
D=$(mktemp -d /tmp/repro-eos.XXXXXX)
B=$D/bus
"$FB" --filename "$B" producer --history 4 < /dev/null        # the bus: chunk 1, an empty stream
"$FB" --filename "$B" consumer -vv > "$D/out" 2> "$D/err" &
C=$!
sleep 0.5
kill -STOP $C
# stream A: 5 chunks (2 to 6) and its end-of-stream chunk (7)
seq 1 5 | "$FB" --filename "$B" producer --lines --block-size 2 --sleep-interval 0
# stream B: 10 chunks (8 to 17), then it goes on for 20 s before it ends
( seq 11 20; sleep 20 ) | "$FB" --filename "$B" producer --lines --block-size 3 --sleep-interval 0 &
P=$!
sleep 1
ls "$B.history"
kill -CONT $C
sleep 3
if kill -0 $C 2>/dev/null; then
    status=1; echo "consumer still running 3 s after it was continued (stream A ended 4 s ago)"
else
    wait $C; status=0; echo "consumer ended, status $?"
fi
echo "--- consumer stderr"; cat "$D/err"
echo "--- consumer output"; tr '\n' ' ' < "$D/out"; echo
kill $C $P 2>/dev/null
wait 2>/dev/null
rm -rf "$D"
exit $status

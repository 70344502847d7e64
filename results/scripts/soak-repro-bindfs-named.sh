#!/bin/sh
# A named consumer on a bindfs mount, producer in the directory underneath,
# small chunks of varying sizes (16 to 48 bytes) at a few hundred a second,
# nothing stopped or killed. A named consumer must write every record once,
# in order. Prints what it wrote wrong; exits 1 if anything.
# Usage: results/scripts/soak-repro-bindfs-named.sh FILEBUS [RECORDS]
FB=${1:-filebus}
N=${2:-20000}
D=$(mktemp -d /tmp/repro-bindfs.XXXXXX)
mkdir "$D/under" "$D/mnt"
bindfs --multithreaded --enable-lock-forwarding "$D/under" "$D/mnt"
"$FB" --filename "$D/under/bus" producer --history 16 < /dev/null
"$FB" --filename "$D/mnt/bus" consumer --name m > "$D/out" 2> "$D/err" &
C=$!
sleep 1
python3 -c "
import sys, time, random
r = random.Random(1)
i = 0
while i < $N:
    n = r.randint(1, 3)
    sys.stdout.write(''.join('P%05d:%08d\n' % (1, j) for j in range(i, min(i + n, $N))))
    sys.stdout.flush()
    i += n
    time.sleep(r.uniform(0, 0.004))
" | "$FB" --filename "$D/under/bus" producer --lines --block-size 48
wait $C
echo "consumer status $?"
python3 - "$D/out" "$N" <<'PY'
import sys, re
out = open(sys.argv[1], 'rb').read()
n = int(sys.argv[2])
recs = re.findall(rb'P00001:(\d{8})\n', out)
bad = len(out) != 16 * len(recs)
got = [int(x) for x in recs]
prev = -1
problems = 0
for k, x in enumerate(got):
    if x != prev + 1:
        problems += 1
        if problems <= 10:
            print('record %d: %d after %d' % (k, x, prev))
    prev = x
if prev != n - 1:
    problems += 1
    print('last record %d, expected %d' % (prev, n - 1))
print('%d records written for %d published, %d discontinuities%s' % (len(got), n, problems, ', output not whole records' if bad else ''))
sys.exit(1 if problems or bad else 0)
PY
status=$?
grep -v 'debug\|info' "$D/err"
fusermount -u "$D/mnt"
rm -rf "$D"
exit $status

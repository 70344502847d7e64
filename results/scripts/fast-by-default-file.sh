#!/bin/bash
# Used for the file rows of results/2026-12-02-fast-by-default/README.md.
# usage: results/scripts/fast-by-default-file.sh FILE BINARY [options...] | cat
# lossless `producer < FILE` to `consumer > /dev/null`, or `cat FILE | cat > /dev/null` with BINARY "cat"; prints MB/s
FILE=$1; BIN=$2; shift 2
SIZE=$(stat -c %s $FILE)
D=$(mktemp -d /tmp/fb9-fd.XXXX)
start=$(date +%s.%N)
if [ "$BIN" = cat ]; then
  cat $FILE | cat > /dev/null
else
  $BIN --lossless --filename $D/bus "$@" producer < $FILE &
  $BIN --lossless --filename $D/bus "$@" consumer > /dev/null
  wait
fi
end=$(date +%s.%N)
echo "$BIN $* : $(echo "scale=1; $SIZE/1000000/($end-$start)" | bc) MB/s"
rm -rf $D

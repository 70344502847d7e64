#!/bin/bash
# A 256 MiB file (/tmp/in256, made with: head -c 268435456 /dev/urandom > /tmp/in256)
# through cat | producer --lossless ... consumer --lossless | cat; BLOCK "cat" times cat | cat | cat instead.
# usage: results/scripts/pipe-size-block-trial.sh BIN BLOCK|cat ; prints MB/s for 256 MiB through cat | producer ... consumer | cat
BIN=$1; BS=$2; D=$(mktemp -d /tmp/pp.XXXX); B=$D/bus
if [ $BS = cat ]; then
  s=$(date +%s.%N); cat /tmp/in256 | cat | cat > /dev/null; e=$(date +%s.%N)
else
  s=$(date +%s.%N)
  $BIN --filename $B --lossless consumer | cat > /dev/null &
  C=$!
  cat /tmp/in256 | $BIN --filename $B --lossless --block-size $BS producer
  wait $C; e=$(date +%s.%N)
fi
rm -rf $D
python3 -c "print(round(256*1.048576/($e-$s)))"

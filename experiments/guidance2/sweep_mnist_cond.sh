#!/usr/bin/env bash
# Issue 22: guidance methods on mnist-cond, 2-core CPU, one torch thread per process (docs/results.md,
# "Guidance beyond CFG"). Heun 18 steps (35 NFE), cycling labels, seed 0 (paired: every setting starts from the
# same noise). QUEUE=a|b picks one half (run the two halves side by side); N samples per setting (200 here:
# the shared CPU gave each process about a quarter of a core).
set -euo pipefail
N=${N:-200}
OUT=${OUT:-runs/g2}
mkdir -p "$OUT"
run() {  # name, flags...
  local name=$1; shift
  [ -f "$OUT/$name.json" ] && return 0
  OMP_NUM_THREADS=1 python -m difflab eval mnist-cond --metrics fid_classifier,prdc,vendi,modes,quality \
    --n "$N" --seed 0 --batch-size 100 --json "$OUT/$name.json" "$@" > "$OUT/$name.log" 2>&1
}
if [ "${QUEUE:-a}" = a ]; then
  run unguided
  run cfg1 --cfg-weight 1
  run apg1 --cfg-weight 1 --cfg-method apg --apg-momentum -0.5
  run cfg3_interval --cfg-weight 3 --cfg-interval 0.3,5
else
  run ag2 --autoguidance mnist-cond-xs --ag-weight 2
  run cfg1_interval --cfg-weight 1 --cfg-interval 0.3,5
  run ag3 --autoguidance mnist-cond-xs --ag-weight 3
  run cfgpp0.5 --cfg-weight 0.5 --cfg-method cfgpp
fi

#!/usr/bin/env bash
# Issue 22, third round (after round2.sh queue c): the seed-to-seed spread of the unguided row, CFG++ at lam 0.3.
set -euo pipefail
OUT=${OUT:-runs/g2}
ev() { local name=$1; shift; [ -f "$OUT/$name.json" ] && return 0
  OMP_NUM_THREADS=1 python -m difflab eval mnist-cond --metrics fid_classifier,prdc,vendi,modes,quality --n 200 \
    --batch-size 100 --json "$OUT/$name.json" "$@" > "$OUT/$name.log" 2>&1; }
ev unguided_seed1 --seed 1
ev cfgpp0.3 --seed 0 --cfg-weight 0.3 --cfg-method cfgpp

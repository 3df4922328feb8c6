#!/usr/bin/env bash
# Issue 22: autoguidance on mnist-uncond with mnist-uncond-xs (mnist-cond-xs with its null label folded in), same
# protocol as sweep_mnist_cond.sh (Heun 18 steps, n = 200, seed 0, one thread). QUEUE=a|b.
set -euo pipefail
OUT=${OUT:-runs/g2u}
mkdir -p "$OUT"
ev() { local name=$1; shift; [ -f "$OUT/$name.json" ] && return 0
  OMP_NUM_THREADS=1 python -m difflab eval mnist-uncond --metrics fid_classifier,prdc,vendi,modes,quality --n 200 \
    --batch-size 100 --json "$OUT/$name.json" --seed 0 "$@" > "$OUT/$name.log" 2>&1; }
if [ "${QUEUE:-a}" = a ]; then
  ev uncond_unguided
  ev uncond_ag2 --autoguidance mnist-uncond-xs --ag-weight 2
elif [ "${QUEUE:-a}" = b ]; then
  ev uncond_ag1.3 --autoguidance mnist-uncond-xs --ag-weight 1.3
  ev uncond_ag2_interval --autoguidance mnist-uncond-xs --ag-weight 2 --cfg-interval 0.3,5
fi
# second round (QUEUE=c|d): seed 1 of the two main rows, a stronger weight in the interval
if [ "${QUEUE:-a}" = c ]; then
  ev uncond_unguided_seed1 --seed 1
  ev uncond_ag3_interval --autoguidance mnist-uncond-xs --ag-weight 3 --cfg-interval 0.3,5
elif [ "${QUEUE:-a}" = d ]; then
  ev uncond_ag2_interval_seed1 --seed 1 --autoguidance mnist-uncond-xs --ag-weight 2 --cfg-interval 0.3,5
fi

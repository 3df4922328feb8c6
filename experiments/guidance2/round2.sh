#!/usr/bin/env bash
# Issue 22, second round after sweep_mnist_cond.sh (same protocol: Heun 18 steps, n = 200, seed 0, one thread):
# weaker autoguidance weights, CFG at a low weight with and without the interval, the guide alone.
set -euo pipefail
N=${N:-200}
OUT=${OUT:-runs/g2}
run() {  # model, name, flags...
  local model=$1 name=$2; shift 2
  [ -f "$OUT/$name.json" ] && return 0
  OMP_NUM_THREADS=1 python -m difflab eval "$model" --metrics fid_classifier,prdc,vendi,modes,quality \
    --n "$N" --seed 0 --batch-size 100 --json "$OUT/$name.json" "$@" > "$OUT/$name.log" 2>&1
}
if [ "${QUEUE:-c}" = c ]; then
  run mnist-cond ag1.3 --autoguidance mnist-cond-xs --ag-weight 1.3
  run mnist-cond ag1.5 --autoguidance mnist-cond-xs --ag-weight 1.5
  run mnist-cond-xs guide_alone
  run mnist-cond ag2_interval --autoguidance mnist-cond-xs --ag-weight 2 --cfg-interval 0.3,5
else
  run mnist-cond cfg0.3_interval --cfg-weight 0.3 --cfg-interval 0.3,5
  run mnist-cond cfg0.3 --cfg-weight 0.3
  run mnist-cond ag1.3_cfg0.3_interval --cfg-weight 0.3 --autoguidance mnist-cond-xs --ag-weight 1.3 --cfg-interval 0.3,5
fi

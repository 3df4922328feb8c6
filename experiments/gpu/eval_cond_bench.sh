#!/usr/bin/env bash
# GPU pass after train_cond_large.sh: the headline measurement of each exported mnist-cond candidate (Heun 18 steps
# = 35 NFE, n = 10,000 vs the MNIST test set), then the diffusers comparisons on the GPU (training step at batch
# 64 and 256, samplers at batch 8 and 256). diffusers travels as wheels in .whl/ (docs/benchmarks.md).
#   CANDIDATES=<dir of exported models> DIFFLAB_CACHE=... DIFFLAB_INCEPTION=... OUT=<dir> bash experiments/gpu/eval_cond_bench.sh
set -u
STAGE=bench
source "$(dirname "$0")/common.sh"
for c in "$CANDIDATES"/*; do
  k=$(basename "$c")
  t 150 "eval-$k" python3 -m difflab eval "$c" --metrics fid_inception,is,fid_classifier,modes,quality --n 10000 $D \
    --json "$R/eval-$k.json" &
done
wait
for b in 64 256; do
  t 120 "train_b$b" python3 benchmarks/bench_train_vs_diffusers.py --device cuda --batch $b --reps 20 \
    --json "$R/bench_train_vs_diffusers_b$b.json"
done
for b in 8 256; do
  t 150 "sampling_b$b" python3 benchmarks/bench_sampling_vs_diffusers.py --device cuda --batch $b \
    --json "$R/bench_sampling_vs_diffusers_b$b.json"
done
tar czf "$OUT/bench.tgz" -C "$OUT" bench && rm -rf "$R"
ls -la "$OUT"

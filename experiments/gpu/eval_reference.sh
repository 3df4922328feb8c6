#!/usr/bin/env bash
# Evaluate the reference models on one GPU: thesis Table 4.1 (prior calibration), circle directions and modes,
# thesis Figure 3.1 (modes per batch of 10), and the FID-vs-NFE frontier of mnist-cond (classifier and
# Inception FID, n = 10,000 vs the MNIST test set). Each step has a time limit; results land in $OUT/eval.tgz.
#   DIFFLAB_CACHE=<dir with mnist/t10k*.gz> DIFFLAB_INCEPTION=<TF-Inception .pt> OUT=<dir> bash experiments/gpu/eval_reference.sh
set -u
STAGE=eval
source "$(dirname "$0")/common.sh"
t 170 prior python3 -m difflab reproduce thesis-prior --device cuda --out "$R/prior"
for v in "det:" "churn:--S-churn 0.9" "pg:--pg-weight 3 --pg-batch 8" "pg_churn:--pg-weight 3 --pg-batch 8 --S-churn 0.9"; do
  t 25 "motion_${v%%:*}" python3 -m difflab eval motion smmnist-circle --sequences 200 --samples 8 $D ${v#*:} \
    --json "$R/motion_${v%%:*}.json" --out "$R/motion_${v%%:*}"
done
t 70 modes python3 -m difflab reproduce thesis-modes --device cuda --n 1000 --out "$R/modes"
t 200 qnfe python3 benchmarks/bench_quality_nfe.py --model mnist-cond --n 10000 --device cuda --inception \
  --batch-size 2500 --deadline-s 150 --json "$R/quality_nfe.json"
tar czf "$OUT/eval.tgz" -C "$OUT" eval
ls -la "$OUT"

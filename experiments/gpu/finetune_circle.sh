#!/usr/bin/env bash
# Fine-tune the shipped smmnist-circle model alone on one GPU (init_from the shipped weights, fresh optimizer),
# re-export it and score it (200 histories x 8 samples, without and with PG). Results in $OUT.
set -u
source "$(dirname "$0")/common.sh"
python3 -m difflab train configs/smmnist_circle.yaml init_from=smmnist-circle device=cuda threads=1 progress=false \
  time_budget_s=${BUDGET:-110} ckpt_every=100000 log_every=200 batch_size=256 lr=5e-4 warmup_steps=20 \
  out=runs/smmnist-circle-ft > "$OUT/train.log" 2>&1 || { tail -20 "$OUT/train.log"; exit 1; }
tail -3 runs/smmnist-circle-ft/log.jsonl; cp runs/smmnist-circle-ft/log.jsonl "$OUT/smmnist-circle-ft.jsonl"
python3 -c "from difflab.export import export_shipped; print(export_shipped('runs/smmnist-circle-ft', 'smmnist-circle'))"
tar czf "$OUT/smmnist-circle.tgz" -C src/difflab/models smmnist-circle
for v in "det:" "pg:--pg-weight 3 --pg-batch 8"; do
  timeout 40 python3 -m difflab eval motion smmnist-circle --sequences 200 --samples 8 --device cuda --batch-size 2000 \
    ${v#*:} --json "$OUT/motion_${v%%:*}.json" 2>&1 | grep -E "modes|valid|TV|quality|unusable"
done

#!/usr/bin/env bash
# Fine-tune the exported `c40` mnist-cond candidate (train_cond_large.sh) alone on the GPU at a lower learning
# rate and a slower EMA, export it, and measure it the headline way; the shipped mnist-cond is measured in the same
# call (the same Inception copy and reference), so the two numbers compare.
#   INIT=<exported model dir> DIFFLAB_CACHE=... DIFFLAB_INCEPTION=... BUDGET=330 OUT=<dir> bash experiments/gpu/finetune_cond.sh
set -u
BUDGET=${BUDGET:-330}
STAGE=ft
source "$(dirname "$0")/common.sh"
M="--metrics fid_inception,is,fid_classifier,modes,quality --n 10000"
python3 -m difflab data fetch mnist > "$R/fetch.log" 2>&1
python3 -m difflab train configs/mnist_cond.yaml device=cuda threads=2 progress=false time_budget_s=$BUDGET \
  ckpt_every=100000 log_every=200 batch_size=512 lr=5e-4 warmup_steps=50 ema_decay=0.9995 model.preset=small \
  model.net.model_channels=40 init_from="$INIT" out=runs/cond-ft > "$R/train.log" 2>&1 &
t 120 eval-shipped python3 -m difflab eval mnist-cond $M $D --json "$R/eval-shipped.json"
wait
tail -2 "$R/train.log"; cp runs/cond-ft/log.jsonl "$R/train.jsonl"
python3 -c "from difflab.export import export_shipped as e; print(e('runs/cond-ft', 'mnist-cond', dest_root='$R/ft'))"
t 120 eval-ft python3 -m difflab eval "$R/ft/mnist-cond" $M $D --json "$R/eval-ft.json"
tar czf "$OUT/ft.tgz" -C "$OUT" ft && rm -rf "$R"
ls -la "$OUT"

#!/usr/bin/env bash
# Larger class-conditional MNIST candidates for `mnist-cond`, trained alone on one GPU (two runs sharing it), then
# exported as shipped fp16 models and measured the headline way (Heun 18 steps = 35 NFE, n = 10,000 vs the MNIST
# test set). Run from the repository root on a CUDA machine:
#   DIFFLAB_CACHE=<dir with mnist/*.gz> DIFFLAB_INCEPTION=<TF-Inception .pt> BUDGET=380 OUT=<dir> \
#     bash experiments/gpu/train_cond_large.sh
# Results (exported models, logs, eval JSON) land in $OUT/cond.tgz.
set -u
BUDGET=${BUDGET:-380}
STAGE=cond
source "$(dirname "$0")/common.sh"
G="device=cuda threads=2 progress=false time_budget_s=$BUDGET ckpt_every=100000 log_every=200"
E="batch_size=512 lr=1e-3 warmup_steps=200 ema_decay=0.999 model.preset=small"
declare -A NET=([small]="model.net.model_channels=32" [c40]="model.net.model_channels=40")
for k in "${!NET[@]}"; do
  python3 -m difflab train configs/mnist_cond.yaml $G $E ${NET[$k]} out=runs/cond-$k > "$R/train-$k.log" 2>&1 &
done
sleep 60; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv 2>/dev/null; uptime
wait
for k in "${!NET[@]}"; do
  tail -2 "$R/train-$k.log"; cp runs/cond-$k/log.jsonl "$R/train-$k.jsonl"
  cp "$(ls runs/cond-$k/samples/*.png | tail -1)" "$R/train-$k.png" 2>/dev/null
  python3 -c "from difflab.export import export_shipped as e; print(e('runs/cond-$k', 'mnist-cond', dest_root='$R/$k'))"
done
for k in "${!NET[@]}"; do
  t 150 "eval-$k" python3 -m difflab eval "$R/$k/mnist-cond" --metrics fid_inception,is,fid_classifier,modes,quality \
    --n 10000 $D --json "$R/eval-$k.json" &
done
wait
tar czf "$OUT/cond.tgz" -C "$OUT" cond && rm -rf "$R"
ls -la "$OUT"

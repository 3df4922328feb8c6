#!/usr/bin/env bash
# Train difflab's reference models (all but mnist-cond) on one GPU, all at once (the nets are small: one process each shares the
# GPU), then export them as shipped fp16 models. Run from the repository root on a CUDA machine:
#   DIFFLAB_CACHE=<dir with mnist/*.gz> BUDGET=470 OUT=<dir> bash experiments/gpu/train_reference.sh
# Every run is `difflab train CONFIG ...` with the overrides below; the model cards (docs/models.md) quote them.
set -u
BUDGET=${BUDGET:-470}
source "$(dirname "$0")/common.sh"
mkdir -p "$OUT/logs" runs
nvidia-smi -L 2>/dev/null; python3 -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())"
# 1. smoke: a few steps on the GPU, so a CUDA-only bug stops the call at once
python3 -m difflab train configs/tiny.yaml device=${DEVICE:-cuda} max_steps=30 out=/tmp/smoke progress=false \
  > "$OUT/logs/smoke.log" 2>&1 || { cat "$OUT/logs/smoke.log"; exit 1; }
tail -2 "$OUT/logs/smoke.log"
# 2. the reference runs, in parallel (GPU: bf16 autocast, batch 256 for the EDM models)
G="device=${DEVICE:-cuda} threads=1 progress=false time_budget_s=$BUDGET ckpt_every=100000 log_every=200"
E="batch_size=256 lr=1e-3 warmup_steps=200"
run() { local name=$1; shift; python3 -m difflab train "$@" $G out=runs/$name > "$OUT/logs/$name.log" 2>&1 & }
# mnist-cond is trained by train_cond_large.sh + finetune_cond.sh (a larger network, alone on the GPU)
run mnist-uncond configs/mnist_uncond.yaml $E
run smmnist-circle configs/smmnist_circle.yaml $E
for p in 0.5 0.7 0.9; do run smmnist-horizontal-$p configs/smmnist_horizontal.yaml $E p_right=$p; done
N="batch_size=128 lr=4e-4"
run ntnu-linear-T1000 configs/ntnu_ddpm.yaml $N beta_schedule=linear T=1000
run ntnu-linear-T4000 configs/ntnu_ddpm.yaml $N beta_schedule=linear T=4000
run ntnu-cosine-T1000 configs/ntnu_ddpm.yaml $N beta_schedule=cosine T=1000
run ntnu-cosine-T4000 configs/ntnu_ddpm.yaml $N beta_schedule=cosine T=4000
sleep 60; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv 2>/dev/null; uptime
wait
for f in "$OUT"/logs/*.log; do echo "== $f"; tail -3 "$f"; done
# 3. export: shipped models into src/difflab/models, NTNU models beside them in $OUT
python3 - <<'PY'
import os
from difflab.export import export_shipped
out = os.environ.get("OUT", "outputs/gpu")
for name in ["smmnist-circle", "smmnist-horizontal-0.5", "smmnist-horizontal-0.7",
             "smmnist-horizontal-0.9", "mnist-uncond"]:
    print(export_shipped(f"runs/{name}", name))
for name in ["ntnu-linear-T1000", "ntnu-linear-T4000", "ntnu-cosine-T1000", "ntnu-cosine-T4000"]:
    print(export_shipped(f"runs/{name}", name, dest_root=f"{out}/ntnu"))
PY
for n in $(ls runs); do cp runs/$n/log.jsonl "$OUT/logs/$n.jsonl" 2>/dev/null; cp "$(ls runs/$n/samples/*.png | tail -1)" "$OUT/logs/$n.png" 2>/dev/null; done
tar czf "$OUT/models.tgz" -C src/difflab/models .
tar czf "$OUT/ntnu.tgz" -C "$OUT" ntnu
tar czf "$OUT/logs.tgz" -C "$OUT" logs
rm -rf "$OUT/ntnu" "$OUT/logs"
ls -la "$OUT"

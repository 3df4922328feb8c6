#!/usr/bin/env bash
# Issue 19's CPU training runs (no GPU lent), as two single-thread lanes that can run side by side on the 2 cores.
#   LANE=A bash experiments/cpu/latent_lanes.sh   # continue mnist-latent and mnist-cascade from the shipped weights
#   LANE=B bash experiments/cpu/latent_lanes.sh   # equal-compute pixel vs latent vs cascade (MNIST), pixel vs latent
#                                                 # (Fashion-MNIST), each system given the same wall-clock budget T
# A step whose run folder holds DONE is skipped (resumable). Lane A needs the shipped stages unpacked first:
#   python -c "from difflab.latent import unpack_shipped as u; u('mnist-latent', 'runs/init'); u('mnist-cascade', 'runs/init')"
set -u
PY=${PY:-.venv/bin/python}
T=${T:-900}               # lane B: the training budget per system, seconds (VAE + latent, base + SR, or pixel)
step() {  # step NAME CMD... : run once
  local name=$1; shift
  [ -f "runs/$name/DONE" ] && { echo "skip $name"; return; }
  echo "$(date -u +%T) start $name: $*"
  "$@" && touch "runs/$name/DONE" || echo "FAILED $name"
  echo "$(date -u +%T) done $name"
}
train() { $PY -m difflab train "$@" --quiet; }
if [ "${LANE:-A}" = A ]; then
  step latent-mnist-2 train configs/latent_mnist.yaml name=latent-mnist-2 out=runs/latent-mnist-2 \
    model.autoencoder=runs/init/mnist-latent-vae train.init_from=mnist-latent train.lr=5e-4 train.ema_decay=0.999 \
    time_budget_s=${TA_LATENT:-2100}
  step cascade-base-2 train configs/cascade_base.yaml name=cascade-base-2 out=runs/cascade-base-2 \
    train.init_from=runs/init/mnist-cascade-base train.lr=5e-4 train.ema_decay=0.999 time_budget_s=${TA_BASE:-1800}
  step cascade-sr-2 train configs/cascade_sr.yaml name=cascade-sr-2 out=runs/cascade-sr-2 \
    train.init_from=runs/init/mnist-cascade-sr train.lr=5e-4 train.ema_decay=0.999 time_budget_s=${TA_SR:-1500}
  # a low-learning-rate phase with a longer EMA for the latent model (its IS had levelled off at 8.95)
  step latent-mnist-3 train configs/latent_mnist.yaml name=latent-mnist-3 out=runs/latent-mnist-3 \
    model.autoencoder=runs/init/mnist-latent-vae train.init_from=runs/latent-mnist-2 train.lr=1e-4 \
    train.ema_decay=0.9995 time_budget_s=${TA_LATENT3:-1200}
else
  half=$((T / 2)); vae=$((T / 3)); lat=$((T - T / 3))
  for ds in mnist fashion-mnist; do
    step eq-$ds-pixel train experiments/latent/eq_pixel.yaml name=eq-$ds-pixel out=runs/eq-$ds-pixel \
      data.name=$ds time_budget_s=$T
    step eq-$ds-vae train configs/vae_mnist.yaml name=eq-$ds-vae out=runs/eq-$ds-vae data.name=$ds time_budget_s=$vae
    step eq-$ds-latent train configs/latent_mnist.yaml name=eq-$ds-latent out=runs/eq-$ds-latent data.name=$ds \
      model.autoencoder=runs/eq-$ds-vae time_budget_s=$lat
    [ $ds = mnist ] || continue
    step eq-mnist-base train configs/cascade_base.yaml name=eq-mnist-base out=runs/eq-mnist-base \
      train.ema_decay=0.995 time_budget_s=$half
    step eq-mnist-sr train configs/cascade_sr.yaml name=eq-mnist-sr out=runs/eq-mnist-sr \
      train.ema_decay=0.995 time_budget_s=$half
  done
  step fashion-classifier train configs/digit_classifier.yaml name=fashion-classifier out=runs/fashion-classifier \
    data.name=fashion-mnist time_budget_s=400
fi

#!/usr/bin/env bash
# The n = 2,000 CPU runs of issues 16, 17 and 22 (classifier-FID etc. at n >= 2,000 when no GPU is lent).
# mnist-uncond rows use seed 7 (held out: the strata strength was chosen on seeds 5 and 6 at n = 600).
# The *_gits rows need the optimised grids: difflab schedule mnist-cond --nfe N --out benchmarks/results/grid_mnist_cond_nfeN.json
# One `difflab eval` at a time (2 cores); a row whose JSON exists is skipped (resumable).
#   bash experiments/cpu/n2000.sh            # all rows
#   ROWS="cond_unguided uncond_iid" bash experiments/cpu/n2000.sh
set -u
OUT=${OUT:-benchmarks/results/n2000}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
COND="--n 2000 --seed 0 --batch-size 500 --metrics fid_classifier,prdc,vendi"
UNC="--n 2000 --seed 7 --batch-size 500 --metrics fid_classifier,modes,is,prdc,vendi"
declare -A R=(
  [cond_unguided]="mnist-cond $COND --steps 18"
  [cond_dpmpp2m_10]="mnist-cond $COND --sampler dpmpp_2m --steps 10"
  [cond_dpmpp2m_5]="mnist-cond $COND --sampler dpmpp_2m --steps 5"
  [uncond_iid]="mnist-uncond $UNC --steps 18"
  [uncond_ag_recommended]="mnist-uncond $UNC --steps 18 --autoguidance recommended"
  [uncond_strata12]="mnist-uncond $UNC --steps 18 --diversity strata --diversity-strength 12 --group-size 10"
  [uncond_strata8]="mnist-uncond $UNC --steps 18 --diversity strata --diversity-strength 8 --group-size 10"
  [uncond_pg_feature]="mnist-uncond $UNC --steps 18 --pg-weight 10 --pg-kernel feature --pg-batch 10"
  [uncond_ag_strata12]="mnist-uncond $UNC --steps 18 --autoguidance recommended --diversity strata --diversity-strength 12 --group-size 10"
  [uncond_ortho]="mnist-uncond $UNC --steps 18 --diversity recommended --group-size 10"
  [cond_cfg0.3_interval]="mnist-cond $COND --steps 18 --cfg-weight 0.3 --cfg-interval 0.3,5"
  [cond_dpmpp2m_10_smin0.03]="mnist-cond $COND --sampler dpmpp_2m --steps 10 --sigma-min 0.03"
  [cond_dpmpp2m_5_smin0.05]="mnist-cond $COND --sampler dpmpp_2m --steps 5 --sigma-min 0.05"
  [cond_dpmpp2m_10_smin0.08]="mnist-cond $COND --sampler dpmpp_2m --steps 10 --sigma-min 0.08"
  [cond_dpmpp2m_5_smin0.15]="mnist-cond $COND --sampler dpmpp_2m --steps 5 --sigma-min 0.15"
  [cond_dpmpp2m_10_smin0.2]="mnist-cond $COND --sampler dpmpp_2m --steps 10 --sigma-min 0.2"
  [cond_deis_10]="mnist-cond $COND --sampler deis --steps 10"
  [cond_unipc_5]="mnist-cond $COND --sampler unipc --steps 5 --order 3"
  [cond_ipndm_10]="mnist-cond $COND --sampler ipndm --steps 10"
  [cond_ag_recommended]="mnist-cond $COND --steps 18 --autoguidance recommended"
  [cond_dpmpp2m_10_gits]="mnist-cond $COND --sampler dpmpp_2m --steps 10 --grid benchmarks/results/grid_mnist_cond_nfe10.json"
  [cond_dpmpp2m_5_gits]="mnist-cond $COND --sampler dpmpp_2m --steps 5 --grid benchmarks/results/grid_mnist_cond_nfe5.json"
  [cond_dpmpp2m_8]="mnist-cond $COND --sampler dpmpp_2m --steps 8"
  [cond_dpmpp2m_15]="mnist-cond $COND --sampler dpmpp_2m --steps 15"
  [cond_dpmpp2m_20]="mnist-cond $COND --sampler dpmpp_2m --steps 20"
  [cond_dpmpp2m_8_gits]="mnist-cond $COND --sampler dpmpp_2m --steps 8 --grid benchmarks/results/grid_mnist_cond_nfe8.json"
  [cond_dpmpp2m_15_gits]="mnist-cond $COND --sampler dpmpp_2m --steps 15 --grid benchmarks/results/grid_mnist_cond_nfe15.json"
  [cond_dpmpp2m_20_gits]="mnist-cond $COND --sampler dpmpp_2m --steps 20 --grid benchmarks/results/grid_mnist_cond_nfe20.json"
  [cond_cfgpp0.5]="mnist-cond $COND --steps 18 --cfg-weight 0.5 --cfg-method cfgpp"
  [cond_apg1]="mnist-cond $COND --steps 18 --cfg-weight 1 --cfg-method apg --apg-momentum -0.5"
)
# Issue 17 item 4 on the CPU: every deterministic sampler on the Karras grid at 5, 8, 10, 15, 20 and 35 NFE
# (rows cond_SAMPLER_NFE; a two-evaluation sampler gets the most steps within the budget, 2 steps - 1 NFE).
# Two lanes side by side, one thread each:
#   OMP_NUM_THREADS=1 ROWS="$(bash experiments/cpu/n2000.sh --list-nfe 0)" bash experiments/cpu/n2000.sh &
#   OMP_NUM_THREADS=1 ROWS="$(bash experiments/cpu/n2000.sh --list-nfe 1)" bash experiments/cpu/n2000.sh &
NFE_SAMPLERS="euler heun deis lms ipndm unipc dpmpp_3m dpm_2"  # (dpmpp_2m: the cond_dpmpp2m_* rows)
NFE_ROWS=()
for nfe in 5 8 10 15 20 35; do
  for s in $NFE_SAMPLERS; do
    case $s in heun|dpm_2) steps=$(((nfe + 1) / 2)) ;; *) steps=$nfe ;; esac
    # unipc rows: order 3, the default until order 2 replaced it (these rows are why); cond_unipc2_*: order 2
    opt=""; [ $s = unipc ] && opt=" --order 3" && R[cond_unipc2_$nfe]="mnist-cond $COND --sampler unipc --order 2 --steps $nfe"
    R[cond_${s}_$nfe]="mnist-cond $COND --sampler $s --steps $steps$opt"
    NFE_ROWS+=("cond_${s}_$nfe")
  done
done
# (no ddim rows: with eta 0 on an EDM grid it is Euler's update, equal to float64 rounding)
if [ "${1:-}" = --list-nfe ]; then  # every other row (lane 0 or 1), cheapest budgets first
  i=0; for r in "${NFE_ROWS[@]}"; do [ $((i % 2)) = "$2" ] && echo -n "$r "; i=$((i + 1)); done; echo; exit 0
fi
ORDER="cond_unguided cond_dpmpp2m_10 cond_dpmpp2m_5 uncond_iid uncond_strata12 uncond_ag_recommended cond_cfg0.3_interval uncond_ortho cond_unipc_5 cond_ipndm_10 cond_ag_recommended"
for row in ${ROWS:-$ORDER}; do
  [ -f "$OUT/$row.json" ] && { echo "skip $row"; continue; }
  echo "$(date -u +%T) start $row: ${R[$row]}"
  $PY -m difflab eval ${R[$row]} --quiet --json "$OUT/$row.json" || echo "FAILED $row"
  echo "$(date -u +%T) done $row"
done

#!/usr/bin/env bash
# What issue #8 still needs from a GPU, in priority order, each part under ~9 minutes (one device call):
#   PART=1: the diffusers sampling comparison after the per-step synchronisation fixes (batch 256 and 8), the same
#           at batch 8 with TF32 off (is TF32 the cause of the 0.007-0.029 output differences?), then the
#           hardware-limit and sampler-overhead scripts on the GPU.
#           Then the same two diffusers comparisons with --compile (torch.compile where it helps, issue item 4).
#   PART=2: the quality-per-NFE rows the first H100 run did not reach on the shipped mnist-cond: Heun 50 steps,
#           DPM-Solver++(2M) 5-20 and DDPM-1000 (n = 5,000, classifier and Inception FID).
#   PART=3: issue 17 item 4 on the GPU: every deterministic sampler at 5, 8, 10, 15, 20 NFE on the Karras grid
#           (heun also at 35), n = 5,000, classifier and Inception FID; then diffusers' schedulers on the same model
#           (benchmarks/bench_diffusers_on_model.py) at n = 5,000.
#   PART=4: issue 22 item 4: mnist-cond guidance rows (unguided, CFG w 0.3 in sigma [0.3, 5], CFG++ 0.5, APG 1,
#           autoguidance 1.3) and mnist-uncond (unguided, autoguidance recommended), n = 10,000, Inception FID.
# diffusers travels as wheels in .whl/ (see docs/benchmarks.md, "Commands"); the Inception weights as for
# eval_cond_bench.sh (DIFFLAB_INCEPTION).
#   PART=1 OUT=$OUT bash experiments/gpu/pending_bench.sh
set -u
STAGE=pending${PART:-1}
source "$(dirname "$0")/common.sh"
if [ "${PART:-1}" = 1 ]; then
  for b in 256 8; do
    t 150 "sampling_b$b" python3 benchmarks/bench_sampling_vs_diffusers.py --device cuda --batch $b \
      --json "$R/bench_sampling_vs_diffusers_b$b.json"
  done
  NVIDIA_TF32_OVERRIDE=0 t 120 "sampling_b8_notf32" python3 benchmarks/bench_sampling_vs_diffusers.py --device cuda \
    --batch 8 --reps 2 --json "$R/bench_sampling_vs_diffusers_b8_notf32.json"
  t 90 hardware python3 benchmarks/bench_hardware.py --device cuda --json "$R/bench_hardware.json"
  t 120 overhead python3 benchmarks/bench_sampler_overhead.py --device cuda --batch 256 \
    --json "$R/bench_sampler_overhead.json"
  t 120 sampling_b256_compiled python3 benchmarks/bench_sampling_vs_diffusers.py --device cuda --batch 256 --compile \
    --json "$R/bench_sampling_vs_diffusers_b256_compiled.json"
  t 120 train_b256_compiled python3 benchmarks/bench_train_vs_diffusers.py --device cuda --batch 256 --reps 20 \
    --compile --json "$R/bench_train_vs_diffusers_b256_compiled.json"
elif [ "${PART:-1}" = 3 ]; then
  t 560 quality_grid python3 benchmarks/bench_quality_nfe.py --model mnist-cond --n 5000 --device cuda --inception \
    --batch-size 2500 --samplers dpmpp_2m,unipc,deis,ipndm,lms,dpmpp_3m,euler,heun,dpm_2,ddim --nfe 5,8,10,15,20 \
    --deadline-s 450 --json "$R/bench_quality_nfe_grid.json"
  t 300 diffusers python3 benchmarks/bench_diffusers_on_model.py --device cuda --n 5000 --nfe 5,10,20 \
    --batch-size 2500 --json "$R/bench_diffusers_on_model_n5000.json"
elif [ "${PART:-1}" = 4 ]; then
  for row in "unguided|" "cfg0.3_interval|--cfg-weight 0.3 --cfg-interval 0.3,5" "cfgpp0.5|--cfg-weight 0.5 --cfg-method cfgpp" \
             "apg1|--cfg-weight 1 --cfg-method apg --apg-momentum -0.5" "ag1.3|--autoguidance mnist-cond-xs --ag-weight 1.3"; do
    t 110 "cond_${row%%|*}" python3 -m difflab eval mnist-cond --metrics fid_inception,fid_classifier,prdc --n 10000 \
      --steps 18 --seed 0 $D ${row#*|} --json "$R/cond_${row%%|*}.json"
  done
  for row in "unguided|" "ag_recommended|--autoguidance recommended"; do
    t 90 "uncond_${row%%|*}" python3 -m difflab eval mnist-uncond --metrics fid_inception,fid_classifier,prdc \
      --n 10000 --steps 18 --seed 0 $D ${row#*|} --json "$R/uncond_${row%%|*}.json"
  done
else
  t 540 quality python3 benchmarks/bench_quality_nfe.py --model mnist-cond --n 5000 --device cuda --inception \
    --batch-size 2500 --samplers ddpm,dpmpp_2m,heun --deadline-s 420 --json "$R/bench_quality_nfe_rest.json"
fi
ls -la "$R"

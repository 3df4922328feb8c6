#!/usr/bin/env bash
# Second GPU evaluation pass (after eval_reference.sh): Table 4.1 for p(right) = 0.5, the class-conditional
# headline (Inception FID on 10,000 samples, Heun 18 steps = 35 NFE), PG weights for modes per batch of 10,
# the NTNU tables at reduced n, and the FID-vs-NFE frontier at n = 5,000. Results land in $OUT/final.tgz.
set -u
STAGE=final
source "$(dirname "$0")/common.sh"
for v in "det:" "churn:--S-churn 0.9" "pg:--pg-weight 3 --pg-batch 2"; do
  t 60 "prior05_${v%%:*}" python3 -m difflab eval prior smmnist-horizontal-0.5 --sequences 200 --samples 100 --seed 0 \
    $D ${v#*:} --json "$R/prior05_${v%%:*}.json"
done
t 60 headline python3 -m difflab eval mnist-cond --metrics fid_inception,is,fid_classifier,modes,quality --n 10000 \
  $D --json "$R/headline.json"
for k in 3 10; do
  t 25 "modes_k$k" python3 -m difflab eval mnist-uncond --metrics modes,quality --n 1000 --steps 22 --pg-batch 10 \
    --pg-weight $k $D --json "$R/modes_k$k.json"
done
t 140 ntnu python3 -m difflab reproduce ntnu --device cuda --n 300 --metrics fid_inception,is,fid_classifier \
  --models .devdata/ntnu/ntnu --out "$R/ntnu"
t 220 qnfe python3 benchmarks/bench_quality_nfe.py --model mnist-cond --n 5000 --device cuda --inception \
  --batch-size 2500 --deadline-s 140 --json "$R/quality_nfe.json"
tar czf "$OUT/final.tgz" -C "$OUT" final && rm -rf "$R"
ls -la "$OUT"

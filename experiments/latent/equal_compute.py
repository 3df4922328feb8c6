"""Issue 19, item 6: pixel vs latent vs cascade diffusion at equal training compute on the CPU, on MNIST, and pixel
vs latent on Fashion-MNIST.

Each system got the same wall-clock training budget T on one thread (``T=900 LANE=B bash
experiments/cpu/latent_lanes.sh``): the pixel model all of it; the latent model T/3 for its autoencoder and 2T/3
for the diffusion model; the cascade T/2 for its 14x14 base and T/2 for its super-resolution stage. All three
diffusion networks are the same `mini` U-Net preset (the SR stage: `tiny`, 32 channels, as shipped). This script
exports the cascade, then scores every system with ``benchmarks/bench_latent.py`` (Heun 18 steps per stage, labels
cycled 0..9, seed 0: IS, classifier-FID, NFE, CPU / wall time and peak-memory growth per sample) and adds the
training accounting of each stage (images seen, wall seconds) from the runs' logs:

    python experiments/latent/equal_compute.py --n 500 --json benchmarks/results/latent/equal_compute.json

Fashion-MNIST is scored in the features of a Fashion-MNIST classifier trained the same way as the digit classifier
(``runs/fashion-classifier``) against ``fashion-mnist:test``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks" / "bench_latent.py"


def training(run: str) -> dict:
    """The run's 'done' record: images seen and wall seconds (several records if it was resumed: summed)."""
    done = [json.loads(line) for line in (ROOT / run / "log.jsonl").read_text().splitlines() if '"done"' in line]
    return {"run": run, "images_seen": sum(d["images_seen"] for d in done), "wall_s": sum(d["wall_s"] for d in done)}


SYSTEMS = {
    "mnist": [("pixel", "runs/eq-mnist-pixel", ["runs/eq-mnist-pixel"]),
              ("latent", "runs/eq-mnist-latent", ["runs/eq-mnist-vae", "runs/eq-mnist-latent"]),
              ("cascade", "runs/export/eq-mnist-cascade", ["runs/eq-mnist-base", "runs/eq-mnist-sr"])],
    "fashion-mnist": [("pixel", "runs/eq-fashion-mnist-pixel", ["runs/eq-fashion-mnist-pixel"]),
                      ("latent", "runs/eq-fashion-mnist-latent",
                       ["runs/eq-fashion-mnist-vae", "runs/eq-fashion-mnist-latent"])],
}
SCORING = {"mnist": ["--ref", "mnist:test", "--classifier", "digit-classifier"],
           "fashion-mnist": ["--ref", "fashion-mnist:test", "--classifier", str(ROOT / "runs/fashion-classifier")]}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--aug-sigma", type=float, default=0.2, help="the cascade's conditioning augmentation at sampling")
    p.add_argument("--json", default="benchmarks/results/latent/equal_compute.json")
    args = p.parse_args()
    from difflab.latent import export_cascade

    export_cascade(ROOT / "runs/eq-mnist-base", ROOT / "runs/eq-mnist-sr", "eq-mnist-cascade",
                   aug_sigma=args.aug_sigma, dest_root=ROOT / "runs/export")
    out = {"n": args.n, "sampler": "heun", "steps": 18, "threads": 1, "rows": []}
    for ds, systems in SYSTEMS.items():
        for system, model, runs in systems:
            r = subprocess.run([sys.executable, str(BENCH), "--models", str(ROOT / model), "--n", str(args.n),
                                *SCORING[ds], "--json", "/dev/null"], capture_output=True, text=True, check=True)
            row = json.loads(next(line for line in r.stdout.splitlines() if line.startswith('{"model"')))
            stages = [training(run) for run in runs]
            row.update(dataset=ds, system=system, stages=stages,
                       train_images=sum(s["images_seen"] for s in stages), train_wall_s=sum(s["wall_s"] for s in stages))
            out["rows"].append(row)
            print(json.dumps(row), flush=True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1))
    print("| dataset | system | IS | classifier-FID | NFE | CPU ms / sample | train images (per stage) | train wall s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in out["rows"]:
        per = " + ".join(f"{s['images_seen']:,}" for s in r["stages"])
        print(f"| {r['dataset']} | {r['system']} | {r['is']:.2f} | {r['fid_classifier']:.2f} | {r['nfe_total']} | "
              f"{r['cpu_ms_per_sample']:.0f} | {per} | {r['train_wall_s']:.0f} |")


if __name__ == "__main__":
    main()

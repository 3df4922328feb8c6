"""Pixel vs latent vs cascade diffusion (#19): quality (IS and classifier-FID with the digit classifier), network
evaluations, CPU time, wall time and peak memory per sample; the cascade's conditioning-augmentation sweep; the
autoencoder's reconstruction quality.

    python benchmarks/bench_latent.py --models mnist-cond,mnist-latent,mnist-cascade --n 500 --json OUT.json
    python benchmarks/bench_latent.py --aug-sweep 0,0.05,0.1,0.2,0.4 --n 500 --json OUT.json
    python benchmarks/bench_latent.py --vae runs/vae-mnist --json OUT.json

Every model samples with the same sampler (Heun, 18 steps: 35 network evaluations per stage; a cascade runs two
stages), labels cycled 0..9, seed 0. Timing: a separate process per model (1 torch thread) samples ``--time-n``
images in one batch after a warm-up batch; CPU time (process time, the work done, robust to other processes on a
shared CPU) and wall time per sample, and the growth of the peak resident set size during sampling per sample.
Quality: ``--n`` samples scored against the MNIST test set (difflab.eval.run.evaluate_images).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
from common import parser, write_json

from difflab.eval.run import evaluate_images
from difflab.models import load
from difflab.recipe import SamplingSpec, sample


def count_nfe(D) -> dict:
    """Forward hooks on each stage's denoiser counting network calls (per batch, so per sample)."""
    counts = {}
    stages = {"base": D.denoiser if hasattr(D, "denoiser") else D}
    sr = getattr(getattr(D, "codec", None), "sr", None)
    if sr is not None:
        stages["sr"] = sr.denoiser
    for name, mod in stages.items():
        counts[name] = 0
        mod.register_forward_hook(lambda *_a, _n=name: counts.__setitem__(_n, counts[_n] + 1))
    return counts


def time_one(name: str, n: int, steps: int) -> dict:
    """Runs in its own process: NFE, CPU/wall seconds and peak-RSS growth per sample for ``n`` samples."""
    torch.set_num_threads(1)
    D = load(name)
    spec = SamplingSpec(steps=steps, seed=0)
    sample(D, spec, 2)  # warm-up
    counts = count_nfe(D)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    c0, w0 = time.process_time(), time.perf_counter()
    x, _ = sample(D, spec, n)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"model": name, "time_n": n, "nfe": counts, "nfe_total": sum(counts.values()),
            "cpu_ms_per_sample": 1e3 * cpu / n, "wall_ms_per_sample": 1e3 * wall / n,
            "peak_rss_growth_kb_per_sample": (rss1 - rss0) / n,
            "params": sum(p.numel() for p in D.parameters()), "shape": list(x.shape[1:])}


def quality(name: str, n: int, steps: int, aug_sigma: float | None = None, *, ref: str = "mnist:test",
            classifier: str = "digit-classifier") -> dict:
    """IS, classifier-FID against ``ref`` and mean max-softmax of ``n`` samples, in ``classifier``'s features."""
    torch.set_num_threads(1)
    D = load(name)
    if aug_sigma is not None:
        D.codec.aug_sigma = float(aug_sigma)
    x, labels = sample(D, SamplingSpec(steps=steps, seed=0, batch_size=100), n)
    res = evaluate_images(x, "is,fid_classifier,quality", true_labels=labels, ref=ref, classifier=classifier)
    return {"model": name, "n": n, "ref": ref, "classifier": classifier,
            **({"aug_sigma": aug_sigma} if aug_sigma is not None else {}),
            **{k: v for k, v in res.items() if isinstance(v, (int, float))}}


def main():
    p = parser("latent", __doc__)
    p.add_argument("--models", default="mnist-cond,mnist-latent,mnist-cascade")
    p.add_argument("--n", type=int, default=500, help="samples scored per model")
    p.add_argument("--time-n", type=int, default=50, help="samples timed per model")
    p.add_argument("--steps", type=int, default=18)
    p.add_argument("--aug-sweep", default=None, help="comma-separated aug_sigma levels for mnist-cascade")
    p.add_argument("--vae", default=None, help="a VAE run: reconstruction MSE / PSNR / classifier-FID")
    p.add_argument("--no-quality", action="store_true")
    p.add_argument("--ref", default="mnist:test", help="reference images for FID (fashion-mnist:test for Fashion)")
    p.add_argument("--classifier", default="digit-classifier",
                   help="the classifier whose features and softmax give FID and IS (a run folder for Fashion)")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(time_one(args.one, args.time_n, args.steps)))
        return
    out = {"steps": args.steps, "sampler": "heun", "threads": 1}
    if args.vae:
        from difflab.latent import reconstruction_report

        torch.set_num_threads(args.threads)
        out["vae"] = {"run": args.vae, **reconstruction_report(args.vae, data=args.ref, n=args.n,
                                                                       classifier=args.classifier)}
    elif args.aug_sweep:
        out["aug_sweep"] = [quality("mnist-cascade", args.n, args.steps, float(a)) for a in args.aug_sweep.split(",")]
    else:
        rows = []
        for name in args.models.split(","):
            r = subprocess.run([sys.executable, __file__, "--one", name, "--time-n", str(args.time_n), "--steps",
                                str(args.steps)], capture_output=True, text=True, check=True)
            row = json.loads(r.stdout.strip().splitlines()[-1])
            if not args.no_quality:
                row.update(quality(name, args.n, args.steps, ref=args.ref, classifier=args.classifier))
            rows.append(row)
            print(json.dumps(row), flush=True)
        out["models"] = rows
    write_json(args.json, out)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

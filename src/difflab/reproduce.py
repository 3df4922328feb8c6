"""`difflab reproduce NAME`: one command per published table or figure we build on.

Each experiment runs the same CLI commands a user would (so the numbers can be rerun piece by piece) and
writes ``results.json`` + ``results.md`` under ``--out`` (default ``outputs/reproduce/NAME``). ``--quick`` runs
a smaller version (fewer sequences / samples); the size used is always recorded next to the numbers.

- ``pg-gmm``: Particle Guidance paper, 2-D ring of 10 Gaussians (modes vs PG weight x noise), exact score.
- ``thesis-modes``: ETH thesis Figure 3.1, distinct digits per batch of 10 for {deterministic, stochastic
  S_churn 0.7} x {no PG, PG k_PG 1}, 22 Heun steps, on ``mnist-uncond`` scored by ``digit-classifier``.
- ``thesis-prior``: ETH thesis Table 4.1, p_hat(right) on ``smmnist-horizontal-{0.9,0.7,0.5}`` for
  deterministic Heun, stochastic (S_churn 0.9) and PG (k_PG 3, B 2), plus the thesis' 0.1 start-noise scale.
- ``thesis-heatmaps``: ETH thesis Figure 3.2, the k_PG x S_churn sweep (configs/sweep_pg_mnist.yaml).
- ``ntnu``: NTNU MNIST paper Tables 1-3 on a model trained with configs/ntnu_ddpm.yaml (pass ``--model``):
  DDPM-1000 with CFG w in {0, 0.2, 0.5}, plus our best sampler at <= 35 network evaluations.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from difflab.cli import build_eval_subparser, build_parser

EXPERIMENTS = ("pg-gmm", "thesis-modes", "thesis-prior", "thesis-heatmaps", "ntnu")

THESIS_TABLE_41 = {  # true p(right) -> (deterministic, stochastic S_churn 0.9, PG k_PG 3 B 2)
    "0.9": (0.9944, 0.9598, 0.5), "0.7": (0.7933, 0.7294, 0.5004), "0.5": (0.4168, 0.5253, 0.5006)}
NTNU_TABLES = {"linear T1000 w0.2": (16.19, 9.56), "linear T4000 w0.2": (20.91, 8.68),
               "cosine T1000 w0.2": (26.82, 9.00), "cosine T4000 w0.2": (21.70, 8.73),
               "linear T1000 w0": (21.12, 9.13), "linear T1000 w0.5": (24.67, 9.14)}


def _eval(model: str, argv: list[str]) -> dict:
    from difflab.eval.run import run_eval

    return run_eval(build_parser().parse_args(["eval", model, *argv]))


def _prior(model: str, argv: list[str]) -> dict:
    from difflab.eval.motion import run_prior

    return run_prior(build_eval_subparser("prior").parse_args([model, *argv]))


def thesis_modes(quick: bool) -> dict:
    n = 30 if quick else 100  # batches of 10 -> n samples
    rows = {}
    for name, extra in [("deterministic", []), ("stochastic S_churn 0.7", ["--S-churn", "0.7"]),
                        ("deterministic + PG k_PG 1", ["--pg-weight", "1", "--pg-batch", "10"]),
                        ("stochastic S_churn 0.7 + PG k_PG 1", ["--S-churn", "0.7", "--pg-weight", "1", "--pg-batch", "10"])]:
        r = _eval("mnist-uncond", ["--metrics", "modes,quality", "--n", str(n), "--steps", "22", "--seed", "0",
                                   "--batch-size", "10", *extra])
        rows[name] = {"modes_per_10": r["modes_per_10"], "quality": r.get("quality"), "n": r["n"]}
    return {"experiment": "thesis Figure 3.1", "model": "mnist-uncond", "steps": 22, "rows": rows,
            "iid_expected_modes": 10 * (1 - 0.9**10)}


def thesis_prior(quick: bool) -> dict:
    seq, samples = (20, 20) if quick else (200, 100)
    rows = {}
    for p in ("0.9", "0.7", "0.5"):
        model = f"smmnist-horizontal-{p}"
        for name, extra in [("deterministic", []), ("stochastic S_churn 0.9", ["--S-churn", "0.9"]),
                            ("PG k_PG 3 B 2", ["--pg-weight", "3", "--pg-batch", "2"]),
                            ("deterministic, thesis start x0.1", ["--init-noise-scale", "0.1"])]:
            r = _prior(model, ["--sequences", str(seq), "--samples", str(samples), "--seed", "0", *extra])
            rows[f"{p} / {name}"] = {k: r.get(k) for k in ("p_hat_right", "quality_mean", "unusable_share", "p_true")}
    return {"experiment": "thesis Table 4.1", "sequences": seq, "samples": samples, "rows": rows,
            "published": THESIS_TABLE_41}


def run_reproduce(args):
    name = args.name
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}")
    out = Path(args.out or f"outputs/reproduce/{name}")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if name == "pg-gmm":
        from argparse import Namespace

        from difflab.guidance.toy import run_cli

        run_cli(Namespace(out=str(out), runs=20 if args.quick else 100, seed=0, quick=args.quick))
        return
    if name == "thesis-heatmaps":
        from difflab.eval.sweep import run_sweep

        cfg = "configs/sweep_tiny.yaml" if args.quick else "configs/sweep_pg_mnist.yaml"
        run_sweep(build_parser().parse_args(["sweep", cfg, "--out", str(out)]))
        return
    if name == "ntnu":
        raise ValueError("ntnu needs a model trained with configs/ntnu_ddpm.yaml (100K iterations of batch 32 in the "
                         "paper); run `difflab eval RUN --sampler ddpm --steps 1000 --cfg-weight 0.2 --metrics "
                         "fid_inception,is --n 10000` on it (see docs/results.md)")
    result = thesis_modes(args.quick) if name == "thesis-modes" else thesis_prior(args.quick)
    result["wall_s"] = time.time() - t0
    result["quick"] = bool(args.quick)
    (out / "results.json").write_text(json.dumps(result, indent=2, default=float))
    lines = [f"# {result['experiment']}", "", "| setting | result |", "| --- | --- |"]
    lines += [f"| {k} | {json.dumps(v, default=float)} |" for k, v in result["rows"].items()]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

"""The main job (`difflab demo` / `make demo`): writes outputs/demo/.

With the shipped reference models (the default when they are installed) it needs no training and takes a
few minutes on 2 CPU cores: class-conditional grids, i.i.d. vs particle guidance on the unconditional model
(grids + modes per batch of 10), the next-frame prior calibration on the horizontal models (a small Table 4.1)
and a summary table. With ``--train`` (or when no shipped model is installed) it fetches MNIST, trains a small
class-conditional model for a fixed time budget, samples a grid per digit and writes the training log.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from difflab.eval.modes import modes_per_10
from difflab.models import SHIPPED_DIR, load
from difflab.recipe import SamplingSpec, sample
from difflab.utils import write_json


def _shipped(name: str) -> bool:
    return (SHIPPED_DIR / name / "config.json").exists()


def _write_summary(out: Path, summary: dict, rows: list[tuple[str, str]]):
    write_json(summary, out / "summary.json", sort_keys=False)
    lines = ["| item | result |", "| --- | --- |"] + [f"| {k} | {v} |" for k, v in rows]
    (out / "summary.md").write_text("# difflab demo\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


def demo_train(out: Path, budget_s: float | None = None) -> dict:
    """Fetch MNIST, train the `mini` class-conditional model for a time budget, sample one row per digit."""
    from difflab.config import load_config
    from difflab.data.mnist import fetch
    from difflab.training.launcher import train
    from difflab.viz.grids import save_grid

    t0 = time.time()
    fetch("mnist")
    cfg_path = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"  # the repo's configs/
    if not cfg_path.exists():
        cfg_path = Path("configs/demo.yaml")
    overrides = [f"out={out / 'run'}", "progress=false"]
    if budget_s is not None:
        overrides.append(f"time_budget_s={budget_s}")
    cfg = load_config(cfg_path, overrides)
    summary = train(cfg, log=print)
    x, labels = sample(load(out / "run"), SamplingSpec(steps=18, seed=0, batch_size=100), 100)
    grid = save_grid(x[labels.argsort(stable=True)], out / "grid_per_digit.png", nrow=10)
    log_src = out / "run" / "log.jsonl"
    (out / "training_log.jsonl").write_text(log_src.read_text() if log_src.exists() else "")
    result = {"mode": "train", "train": summary, "grid": str(grid), "wall_s": time.time() - t0}
    _write_summary(out, result, [
        ("training steps", str(summary["steps"])), ("images seen", str(summary["images_seen"])),
        ("training images/s", f"{summary['images_per_s']:.0f}"), ("grid (rows = digits 0-9)", str(grid)),
        ("total wall time", f"{result['wall_s']:.0f} s")])
    return result


def _fidelity(x: torch.Tensor, p: torch.Tensor) -> dict:
    """Quality (mean max-softmax of the digit classifier) and, where mnist:test is at hand, classifier-FID
    (n = 100 here: compare rows with each other, not with the n = 2,000 numbers of docs/results.md)."""
    out = {"quality": float(p.max(1).values.mean())}
    try:
        from difflab.eval.run import evaluate_images

        out["fid_classifier"] = float(evaluate_images(x, "fid_classifier", ref="mnist:test")["fid_classifier"])
    except (OSError, ValueError):  # no MNIST test set cached and no network: quality only
        pass
    return out


def demo_shipped(out: Path) -> dict:
    """The tour of the shipped models (see the module docstring)."""
    from difflab.viz.grids import save_grid

    t0, rows, summary = time.time(), [], {"mode": "shipped"}
    # One batch of 100 (the sample does not depend on the batch; the spec's default 64 would give the same).
    x, labels = sample(load("mnist-cond"), SamplingSpec(steps=18, seed=0, batch_size=100), 100)
    order = labels.argsort(stable=True)
    save_grid(x[order], out / "mnist_cond_grid.png", nrow=10)
    rows.append(("class-conditional grid (Heun, 18 steps, 35 NFE)", "mnist_cond_grid.png"))
    classifier = load("digit-classifier") if _shipped("digit-classifier") else None
    if classifier is not None:
        with torch.no_grad():
            acc = (classifier(x).argmax(1) == labels).float().mean().item()
        summary["cond_label_accuracy"] = acc
        rows.append(("digit-classifier agrees with the requested label", f"{acc:.1%}"))

    uncond = "mnist-uncond" if _shipped("mnist-uncond") else None
    if uncond and classifier is not None:
        Du = load(uncond)
        n_batches, B = 10, 10
        res = {}
        fidelity = {}
        for name, spec in [("iid", SamplingSpec(steps=18, seed=1)), ("stochastic", SamplingSpec(steps=18, seed=1, S_churn=0.7)),
                           ("pg", SamplingSpec(steps=18, seed=1, pg_weight=1.0, pg_batch=B, batch_size=n_batches * B)),
                           # issue 16: the recommended diversity preset on the same seeds as iid
                           ("recommended", SamplingSpec(steps=18, seed=1, diversity="recommended", group_size=B))]:
            xs, _ = sample(Du, spec, n_batches * B)
            with torch.no_grad():
                p = classifier(xs).softmax(1)
            modes = modes_per_10(p.argmax(1), B)
            res[name] = modes
            fidelity[name] = _fidelity(xs, p)
            save_grid(xs[: 5 * B], out / f"uncond_{name}_grid.png", nrow=B)
            rows.append((f"modes per batch of 10, {name} (rows of uncond_{name}_grid.png)", f"{modes:.2f}"))
            rows.append((f"fidelity, {name}: " + ", ".join(fidelity[name]), ", ".join(
                f"{v:.3f}" for v in fidelity[name].values())))
        summary["modes_per_10"] = res
        summary["fidelity"] = fidelity
    else:
        rows.append(("i.i.d. vs particle guidance", "skipped: mnist-uncond or digit-classifier not shipped"))

    prior = {}
    for p in ("0.5", "0.7", "0.9"):
        name = f"smmnist-horizontal-{p}"
        if not _shipped(name):
            continue
        from difflab.experiments.motion import run_prior

        for sampler_name, churn in [("deterministic", 0.0), ("stochastic", 0.9)]:
            r = run_prior(name, SamplingSpec(seed=0, S_churn=churn, batch_size=160), sequences=16, samples=10)
            prior[f"{p}/{sampler_name}"] = r["p_hat_right"]
            rows.append((f"p_hat(right), true {p}, {sampler_name} (16 seq x 10)", f"{r['p_hat_right']:.3f}"))
    if not prior:
        rows.append(("prior calibration (Table 4.1, small)", "skipped: horizontal models not shipped"))
    summary["prior"] = prior
    summary["wall_s"] = time.time() - t0
    rows.append(("total wall time", f"{summary['wall_s']:.0f} s"))
    _write_summary(out, summary, rows)
    return summary


def run_demo(out="outputs/demo", train: bool = False, budget_s: float | None = None) -> dict:
    """``difflab demo``: the tour of the shipped models, or (``train``, or none shipped) a small training run."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if train or not _shipped("mnist-cond"):
        if not train:
            print("no shipped mnist-cond model in this installation: training a small one instead")
        return demo_train(out, budget_s)
    return demo_shipped(out)

"""The diversity benchmark (issue 16): diversity against fidelity for every method of
:func:`difflab.guidance.diversity`, with i.i.d. on the same seeds in every table.

(a) Exact 2-D mixtures (:mod:`difflab.data.toy`, exact denoisers; per-mode variance 0.005):
    ``ring10`` (10 equal modes on the unit circle, the PG paper's toy), ``ring10-unequal`` (weights
    proportional to 1..10), ``grid9-unequal`` (3 x 3 grid at spacing 1, centre 0.3, others 0.0875).
    ``strata`` rows use the mixture's exact posterior classifier (``GaussianMixture.classifier``) and true weights.
    Per method: modes per group of 10, the share of samples within 0.25 of a mode, and the total-variation
    distance between the pooled nearest-mode frequencies and the true weights, next to the i.i.d. noise floor
    (the mean and 95th percentile of that TV for n multinomial draws from the true weights).
(b) mnist-uncond: modes per 10 (digit classifier), classifier-FID against mnist:test, class-marginal KL to
    uniform, IS, precision/recall/density/coverage and Vendi, via :func:`difflab.eval.run.evaluate_images`.
(c) smmnist-circle and (d) mnist-cond per class: :mod:`difflab.experiments.diversity_images`.

Rows are written to ``OUT/diversity.json`` as they finish; a rerun with the same settings skips rows already
there (resumable). ``frontier.png`` plots modes per group against TV (toys) and classifier-FID (MNIST).
"""

from __future__ import annotations

import json
import math
import os
import time

import torch

from difflab.data.toy import GaussianMixture, ring_mixture
from difflab.eval.modes import modes_per_group
from difflab.experiments.diversity_images import CIRCLE_ROWS, COND_ROWS, LATENT_ROWS, run_circle, run_cond
from difflab.guidance import diversity
from difflab.sampling import generate
from difflab.utils import write_json

GROUP = 10


def mixtures() -> dict[str, GaussianMixture]:
    w = torch.arange(1, 11, dtype=torch.float64)
    grid = torch.tensor([[i, j] for i in (-1.0, 0.0, 1.0) for j in (-1.0, 0.0, 1.0)], dtype=torch.float64)
    gw = torch.full((9,), 0.7 / 8, dtype=torch.float64)
    gw[4] = 0.3
    return {"ring10": ring_mixture(10), "ring10-unequal": ring_mixture(10, weights=w / w.sum()),
            "grid9-unequal": GaussianMixture(grid, math.sqrt(0.005), gw)}


# (row name, method, strength, options, sampler options); the toy frontier
TOY_ROWS = [
    ("iid", "iid", 0.0, {}, {}),
    ("iid churn 5", "iid", 0.0, {}, {"S_churn": 5.0}),
    ("ortho", "ortho", 1.0, {}, {}),
    ("ortho 0.5", "ortho", 0.5, {}, {}),
    ("ortho + coupled churn 5", "ortho", 1.0, {}, {"S_churn": 5.0}),
    ("pg w1", "pg", 1.0, {}, {}),
    ("pg w30 window(0.3,10) churn 5", "pg", 30.0, {"sigma_window": (0.3, 10.0)}, {"S_churn": 5.0}),
    ("spell r0.35", "spell", 1.0, {"radius": 0.35}, {}),
    ("spell r0.5 window(0.5,80)", "spell", 1.0, {"radius": 0.5, "sigma_window": (0.5, 80.0)}, {}),
    ("dpp w1", "dpp", 1.0, {}, {}),
    ("vendi w1", "vendi", 1.0, {}, {}),
    ("strata (exact posterior)", "strata", 1.0, {}, {}),
]


def tv_floor(weights: torch.Tensor, n: int, trials: int = 400, seed: int = 0) -> dict:
    """TV between the frequencies of n multinomial draws and the weights: mean and 95th percentile."""
    g = torch.Generator().manual_seed(seed)
    tv = []
    for _ in range(trials):
        k = torch.multinomial(weights, n, replacement=True, generator=g)
        f = torch.bincount(k, minlength=len(weights)).double() / n
        tv.append(0.5 * float((f - weights).abs().sum()))
    tv = torch.tensor(tv)
    return {"mean": float(tv.mean()), "p95": float(tv.quantile(0.95))}


def toy_metrics(x: torch.Tensor, gm: GaussianMixture, group: int = GROUP) -> dict:
    k = gm.nearest_mode(x)
    m = torch.from_numpy(modes_per_group(k, group)).double()
    near = torch.cdist(x.reshape(x.shape[0], -1).double(), gm.means).min(1).values < 0.25
    f = torch.bincount(k, minlength=len(gm.weights)).double() / len(k)
    return {"modes": float(m.mean()), "modes_sem": float(m.std() / math.sqrt(len(m))),
            "on_mode": float(near.double().mean()), "tv": 0.5 * float((f - gm.weights).abs().sum()),
            "freq": [round(float(v), 4) for v in f]}


def sample_toy(gm, method, strength, options, sampler_options, n, steps, seed, sampler="heun"):
    if method == "strata":  # the mixture's exact posterior classifier p(c | x, sigma) and its true weights
        options = {"classifier": gm.classifier, "weights": gm.weights, **options}
    gd = diversity(method, group_size=GROUP, strength=strength, **options)
    return generate(gm, n, (gm.dim,), sampler=sampler, steps=steps, sigma_min=0.002, sigma_max=80.0, seed=seed,
                    guidance=gd, **sampler_options)


def run_toys(groups: int = 500, steps: int = 100, seed: int = 0, rows=None, names=None, done=None, save=None,
             log=print) -> dict:
    """Part (a): every toy row on every mixture (the same seed, so the same noise draws, for every row)."""
    n = groups * GROUP
    out = {} if done is None else done
    for mname, gm in mixtures().items():
        if names and mname not in names:
            continue
        block = out.setdefault(mname, {"weights": [round(float(w), 4) for w in gm.weights],
                                       "tv_iid_floor": tv_floor(gm.weights, n, seed=seed), "rows": {}})
        for row, method, s, opts, sopts in rows or TOY_ROWS:
            if row in block["rows"]:
                continue
            t0 = time.time()
            x = sample_toy(gm, method, s, opts, sopts, n, steps, seed)
            r = toy_metrics(x, gm)
            r.update(method=method, strength=s, options={k: list(v) if isinstance(v, tuple) else v
                                                         for k, v in opts.items()}, sampler_options=sopts,
                     wall_s=round(time.time() - t0, 1))
            block["rows"][row] = r
            log(f"{mname:15s} {row:32s} modes {r['modes']:.2f}  on-mode {r['on_mode']:.3f}  TV {r['tv']:.4f} "
                f"(iid floor {block['tv_iid_floor']['mean']:.4f}, p95 {block['tv_iid_floor']['p95']:.4f})")
            if save:
                save()
    return out


# sizes of parts (c) and (d) (difflab.experiments.diversity_images), full and --quick
CIRCLE_SIZES = {False: {"sequences": 40, "steps": 18, "seed": 0},
                True: {"sequences": 4, "steps": 10, "seed": 0, "rows": CIRCLE_ROWS[:3]}}
COND_SIZES = {False: {"per_class": 50, "steps": 10, "seed": 0},
              True: {"per_class": 10, "steps": 10, "seed": 0, "classes": (0, 1), "rows": COND_ROWS[:3]}}
# part "latent": part (d)'s measurement on mnist-latent (Heun 18 steps, the pixel-vs-latent table's setting)
LATENT_SIZES = {False: {"per_class": 50, "steps": 18, "seed": 0, "rows": LATENT_ROWS, "model": "mnist-latent"},
                True: {"per_class": 10, "steps": 10, "seed": 0, "classes": (0, 1), "rows": [LATENT_ROWS[i] for i in (0, 4, 7)],
                       "model": "mnist-latent"}}
# (row name, SamplingSpec changes) for mnist-uncond; every row on seed 5, Heun 18 steps (as in the issue)
MNIST_ROWS = [
    ("iid", {}),
    ("ortho", {"diversity": "ortho", "diversity_strength": 1.0}),
    ("iid churn 0.7", {"S_churn": 0.7}),
    ("ortho + coupled churn 0.7", {"diversity": "ortho", "diversity_strength": 1.0, "S_churn": 0.7}),
    ("spell r7 window(1,80)", {"diversity": "spell", "diversity_strength": 1.0,
                              "diversity_options": (("radius", 7.0), ("sigma_window", (1.0, 80.0)))}),
    ("pg feature w10", {"pg_weight": 10.0, "pg_kernel": "feature", "pg_batch": GROUP}),
    ("strata s6 (mnist-clip zero-shot)", {"diversity": "strata", "diversity_strength": 6.0}),
]
MNIST_METRICS = "fid_classifier,modes,is,prdc,vendi"


def run_mnist(n: int, seed: int = 5, rows=None, done=None, save=None, log=print) -> dict:
    """Part (b): the rows of :data:`MNIST_ROWS` on mnist-uncond, n samples each, scored against mnist:test."""
    from difflab.eval.run import evaluate_images, sample_model
    from difflab.models import load
    from difflab.recipe import SamplingSpec

    D = load("mnist-uncond")
    out = {} if done is None else done
    for row, changes in rows or MNIST_ROWS:
        if row in out and out[row].get("n") == n:
            continue
        changes = dict(changes)
        opts = dict(changes.pop("diversity_options", ()))
        spec = SamplingSpec(steps=18, seed=seed, batch_size=100, group_size=GROUP if "diversity" in changes
                            else None, **changes)
        t0 = time.time()
        gopts = dict(opts)
        if spec.diversity == "strata":  # the recipe's default: mnist-clip zero-shot over the digits, uniform p(c)
            opts["classifier"] = "mnist-clip zero-shot ('a photo of the digit k')"
        if gopts:  # options beyond the spec's fields (e.g. SPELL's radius): the same generate call, own guidance
            kw = spec.generate_kwargs(D, guidance=False)
            kw["guidance"] = diversity(spec.diversity, group_size=GROUP, strength=spec.diversity_strength, **gopts)
            images = generate(D, n, (1, 28, 28), seed=seed, batch_size=100, **kw)
        else:
            images, _ = sample_model(D, spec, n)
        t_s = time.time() - t0
        r = evaluate_images(images, MNIST_METRICS, ref="mnist:test", group_size=GROUP)
        r = {k: v for k, v in r.items() if not k.startswith("prdc_")}
        r.update(sampling=spec.to_dict(), options={k: list(v) if isinstance(v, tuple) else v for k, v in opts.items()},
                 sample_s=round(t_s, 1))
        out[row] = r
        log(f"mnist-uncond {row:30s} modes/10 {r['modes_per_10']:.2f}  FID_clf {r['fid_classifier']:.3f}  "
            f"class KL {r['class_kl_uniform']:.4f}  IS {r['is']:.3f}  vendi/10 {r['vendi_per_10']:.3f}  "
            f"P {r['precision']:.3f} R {r['recall']:.3f} ({t_s:.0f} s)")
        if save:
            save()
    return out


def plot_frontier(result: dict, path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    toys = result.get("toys", {})
    # (title, rows, x key, y key, x label, y label) of the image parts
    image_panels = [("mnist-uncond", result.get("mnist"), "fid_classifier", "modes_per_10",
                     "classifier-FID vs mnist:test (lower is better)", "modes per group of 10"),
                    ("smmnist-circle", result.get("circle"), "quality_mean", "modes_per_history",
                     "quality score, thesis eq. 4.5 (lower is better)", "directions per 8 futures"),
                    ("mnist-cond per class", result.get("cond"), "fid_classifier_mean", "vendi_mean",
                     "classifier-FID per class, mean (lower is better)", "Vendi within a class, mean"),
                    ("mnist-latent per class", result.get("latent"), "fid_classifier_mean", "vendi_mean",
                     "classifier-FID per class, mean (lower is better)", "Vendi within a class, mean")]
    panels = [(name, block) for name, block in toys.items()] + [p for p in image_panels if p[1]]
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(4.6 * max(len(panels), 1), 4.2), squeeze=False)
    for ax, (name, block, *keys) in zip(axes[0], panels, strict=False):
        if keys:
            xk, yk, xlabel, ylabel = keys
            for row, r in block.items():
                ax.scatter(r[xk], r[yk], s=30)
                ax.annotate(row, (r[xk], r[yk]), fontsize=6)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
        else:
            rows = block["rows"]
            for row, r in rows.items():
                ax.scatter(r["tv"], r["modes"], s=30)
                ax.annotate(row, (r["tv"], r["modes"]), fontsize=6)
            ax.axvline(block["tv_iid_floor"]["p95"], ls="--", c="gray", lw=0.8)
            ax.set_xlabel("TV(pooled mode frequencies, true weights); dashed: i.i.d. p95")
            ax.set_ylabel("modes per group of 10")
        ax.set_title(name, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


PARTS = ("a", "b", "c", "d", "latent")


def parse_parts(parts) -> list[str]:
    """'a,c' (or a list) -> ['a', 'c']; None: every part. a: exact 2-D mixtures, b: mnist-uncond,
    c: smmnist-circle, d: mnist-cond per class, latent: mnist-latent per class (PG on latents / decoded images)."""
    items = list(PARTS) if parts is None else [p.strip().lower() for p in
                                                (parts.split(",") if isinstance(parts, str) else parts) if p.strip()]
    bad = [p for p in items if p not in PARTS]
    if bad or not items:
        raise ValueError(f"diversity parts must be a comma list of {', '.join(PARTS)}, got {parts!r}")
    return items


def run_diversity(out: str = "outputs/reproduce/diversity", quick: bool = False, n: int | None = None,
                  toy_groups: int | None = None, mnist: bool = True, parts=None, log=print) -> dict:
    """``difflab reproduce diversity [--rows PARTS]``: parts (a)-(d) and latent (default all; ``mnist=False`` drops
    (b)), resumable; writes OUT/diversity.json and frontier.png. ``n``: samples per row of (b)."""
    parts = [p for p in parse_parts(parts) if mnist or p != "b"]
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "diversity.json")
    groups = toy_groups or (60 if quick else 500)
    n_mnist = n or (100 if quick else 2000)
    result = json.loads(open(path).read()) if os.path.exists(path) else {}
    if "a" in parts and result.get("config", {}).get("toy_groups") not in (None, groups):
        result.pop("toys", None)
    ran = sorted(set(result.get("config", {}).get("parts", [])) | set(parts))  # this run's and earlier runs' parts
    result["config"] = {"parts": ran, "toy_groups": groups, "toy_steps": 100, "group": GROUP, "toy_sampler": "heun",
                        "mnist_n": n_mnist, "mnist_seed": 5, "mnist_steps": 18, "quick": bool(quick)}
    save = lambda: write_json(result, path, sort_keys=False)  # noqa: E731
    t0 = time.time()
    if "a" in parts:
        run_toys(groups, 100, 0, done=result.setdefault("toys", {}), save=save, log=log)
    if "b" in parts:
        rows = MNIST_ROWS[:2] if quick else None
        run_mnist(n_mnist, rows=rows, done=result.setdefault("mnist", {}), save=save, log=log)
    if "c" in parts:
        run_circle(**CIRCLE_SIZES[quick], done=result.setdefault("circle", {}), save=save, log=log)
    if "d" in parts:
        run_cond(**COND_SIZES[quick], done=result.setdefault("cond", {}), save=save, log=log)
    if "latent" in parts:
        run_cond(**LATENT_SIZES[quick], done=result.setdefault("latent", {}), save=save, log=log)
    result["wall_s"] = result.get("wall_s", 0) + time.time() - t0
    save()
    result["frontier"] = plot_frontier(result, os.path.join(out, "frontier.png"))
    save()
    log(f"wrote {path} and {result['frontier']}")
    return result

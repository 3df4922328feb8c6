"""`difflab reproduce thesis-figures`: the ETH thesis' Figures 3.1, 3.3 and 5.1 on ``mnist-uncond``.

- Figures 3.3 and 5.1: along Heun trajectories of groups of 10 particles under particle guidance (Corso et al.
  2023; :class:`~difflab.guidance.particle.ParticleGuidance`, paper variant, k_PG = w sigma), the norm of the PG
  term ``k_PG grad sum_j k(x_i, x_j)`` added to the ODE direction against the norm of the probability-flow
  direction itself, ``d = (x - D(x; sigma)) / sigma`` (Karras et al. 2022, eq. 3 with D; the unguided D), per
  step, for the pixel RBF (L2) kernel (3.3) and the IoU kernel (5.1) at a couple of weights. Both norms are what
  PG records per particle in ``last_info`` (``pg_grad_norm``, ``ode_grad_norm``), read by the sampler's callback
  at the first evaluation of each step (at ``sigma_hat``); mean and 10-90% band over the particles.
- Figure 3.1: a UMAP (umap-learn, the ``eval`` extra) of the digit classifier's 64-d penultimate features of
  samples from i.i.d. sampling, the recommended diversity method (``ortho``: structured starting noise) and PG
  with the feature kernel (``digit-features``, k_PG 10), fitted jointly with real mnist:test digits (grey), each
  sample coloured by the classifier's label, and a few groups of 10 joined by their minimum spanning tree in the
  embedding. Numbers: modes per 10 and the mean within-group distance in the 64-d feature space (UMAP distances
  are not metric), both relative to i.i.d. on the same seeds.

Writes ``OUT/fig3_3_pg_vs_ode_l2.png``, ``OUT/fig5_1_pg_vs_ode_iou.png``, ``OUT/fig3_1_umap.png`` and
``OUT/results.json``. ``quick``: fewer particles and steps (under a minute; what the tests run).
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
import torch

from difflab.utils import write_json

GROUP = 10
NORM_FIGURES = {"3.3": ("rbf", "fig3_3_pg_vs_ode_l2.png", "L2 (pixel RBF) kernel"),
                "5.1": ("iou", "fig5_1_pg_vs_ode_iou.png", "IoU kernel")}
UMAP_FILE = "fig3_1_umap.png"
LINES, MARKERS = ("-", "--", ":", "-."), "os^D"  # per highlighted group
# (row, diversity method, strength, options); PG as the thesis-modes row "PG feature kernel k_PG 10"
UMAP_ROWS = [("i.i.d.", "iid", 0.0, {}), ("ortho (recommended)", "recommended", None, {}),
             ("PG feature kernel, k_PG 10", "pg", 10.0, {"kernel": "feature"})]
# PG's two variants (see difflab.guidance.particle): the gradient through D, or D's Jacobian taken as the identity
VARIANT_LABELS = {"paper": "paper: grad through D", "thesis": "thesis' code: D's Jacobian = I"}
FULL = {"norm_groups": 5, "norm_steps": 18, "weights": (1.0, 10.0), "umap_n": 200, "umap_steps": 18, "real_n": 1000,
        "highlight": 3}
QUICK = {"norm_groups": 2, "norm_steps": 4, "weights": (1.0, 10.0), "umap_n": 20, "umap_steps": 4, "real_n": 100,
         "highlight": 2}


def require_umap() -> None:
    """One line naming the package when umap-learn is missing (checked before any sampling)."""
    if importlib.util.find_spec("umap") is None:
        raise ValueError("`difflab reproduce thesis-figures` needs umap-learn for Figure 3.1, which is not installed: "
                         "pip install 'difflab[eval]' (or pip install umap-learn)")


def _band(v: torch.Tensor) -> dict:
    v = v.double()
    return {k: float(f"{float(x):.4g}") for k, x in (("mean", v.mean()), ("q10", v.quantile(0.1)),
                                                     ("q90", v.quantile(0.9)))}


def norm_trajectory(D, kernel: str, weight: float, groups: int, steps: int, seed: int = 0,
                    variant: str = "paper") -> tuple[list[dict], float]:
    """Per Heun step: sigma_hat and the PG / ODE-direction norms (and their per-particle ratio) over the
    ``groups * GROUP`` particles of one PG run (see the module docstring); and max |x| of the final samples (data
    lie in [-1, 1])."""
    from difflab.guidance import ParticleGuidance
    from difflab.sampling import generate

    pg = ParticleGuidance(weight=weight, kernel=kernel, group_size=GROUP, variant=variant)
    rows = []

    def record(info):
        pg_n, ode_n = info["pg_grad_norm"], info["ode_grad_norm"]
        rows.append({"step": int(info["i"]), "sigma": float(info["sigma_hat"]), "pg": _band(pg_n),
                     "ode": _band(ode_n), "ratio": _band(pg_n / ode_n.clamp_min(1e-30))})

    x = generate(D, groups * GROUP, (1, 28, 28), sampler="heun", steps=steps, seed=seed, guidance=pg,
                 callback=record, batch_size=groups * GROUP)
    return rows, float(x.abs().max())


def _ratio_summary(rows: list[dict]) -> dict:
    """Mean PG / ODE norm ratio at the first step (highest sigma), the step nearest sigma = 1, the last step, and
    its largest value with the sigma where it occurs."""
    mid = min(rows, key=lambda r: abs(np.log(r["sigma"])))
    peak = max(rows, key=lambda r: r["ratio"]["mean"])
    out = {f"sigma={r['sigma']:.3g}": float(f"{r['ratio']['mean']:.3g}") for r in (rows[0], mid, rows[-1])}
    return {**out, "peak": float(f"{peak['ratio']['mean']:.3g}"), "peak_sigma": float(f"{peak['sigma']:.3g}")}


def plot_norms(runs: dict, title: str, path: Path) -> Path:
    """One row per PG variant. Left: PG-term and ODE-direction norms per step (log-log, sigma decreasing to the
    right); right: their ratio. Lines: mean over particles; bands: 10-90%."""
    from difflab.viz.plots import _plt

    plt = _plt()
    fig, axes = plt.subplots(len(runs), 2, figsize=(10, 3.6 * len(runs)), dpi=90, squeeze=False)
    colours = plt.get_cmap("tab10")
    for (ax, axr), (variant, by_weight) in zip(axes, runs.items(), strict=True):
        for j, (w, rows) in enumerate(by_weight.items()):
            s = np.array([r["sigma"] for r in rows])
            c = colours(j)
            for key, ls, lab in (("pg", "-", f"PG term, k_PG = {w:g} sigma"), ("ode", "--", f"ODE direction (w {w:g} run)")):
                ax.plot(s, [r[key]["mean"] for r in rows], ls, color=c, marker="o" if key == "pg" else None, ms=3,
                        label=lab)
                ax.fill_between(s, [r[key]["q10"] for r in rows], [r[key]["q90"] for r in rows], color=c, alpha=0.15)
            axr.plot(s, [r["ratio"]["mean"] for r in rows], "-o", color=c, ms=3, label=f"w = {w:g}")
            axr.fill_between(s, [r["ratio"]["q10"] for r in rows], [r["ratio"]["q90"] for r in rows], color=c,
                             alpha=0.15)
        axr.axhline(1.0, color="0.4", lw=0.8, ls=":")
        for a, ylab in ((ax, f"{VARIANT_LABELS[variant]}\nnorm per particle"), (axr, "||PG term|| / ||ODE direction||")):
            a.set_xscale("log")
            a.set_yscale("log")
            a.invert_xaxis()
            a.set_xlabel("sigma (sampling runs left to right)")
            a.set_ylabel(ylab, fontsize=9)
            a.grid(True, which="major", alpha=0.3)
            a.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def sample_rows(D, n: int, steps: int, seed: int = 0) -> dict:
    """Samples [n, 1, 28, 28] per row of :data:`UMAP_ROWS` on the same seeds, groups of 10 in one batch each."""
    from difflab.guidance import diversity
    from difflab.models import embedding
    from difflab.sampling import generate

    out = {}
    for row, method, strength, opts in UMAP_ROWS:
        if opts.get("kernel") == "feature":
            opts = {**opts, "features": embedding("digit-features")}
        g = diversity(method, group_size=GROUP, strength=strength, **opts)
        t0 = time.time()
        x = generate(D, n, (1, 28, 28), sampler="heun", steps=steps, seed=seed, guidance=g, batch_size=10 * GROUP)
        out[row] = (x.float().cpu(), time.time() - t0)
    return out


def _within_group_distance(f: np.ndarray) -> np.ndarray:
    """Mean pairwise Euclidean distance inside each consecutive group of GROUP feature rows."""
    g = f[: len(f) // GROUP * GROUP].reshape(-1, GROUP, f.shape[1]).astype(np.float64)
    d = np.sqrt(((g[:, :, None] - g[:, None]) ** 2).sum(-1))
    return d.sum((1, 2)) / (GROUP * (GROUP - 1))


def _mst_edges(p: np.ndarray) -> list[tuple[int, int]]:
    from scipy.sparse.csgraph import minimum_spanning_tree

    d = np.sqrt(((p[:, None] - p[None]) ** 2).sum(-1))
    t = minimum_spanning_tree(d).tocoo()
    return list(zip(t.row.tolist(), t.col.tolist(), strict=True))


def umap_figure(samples: dict, real_n: int, highlight: int, path: Path, seed: int = 0) -> dict:
    """Figure 3.1 (see the module docstring); returns the numbers per row."""
    from matplotlib.lines import Line2D

    from difflab.eval import classifier as clf
    from difflab.eval.features import ClassifierFeatures, extract, reference_features
    from difflab.eval.modes import modes_per_group
    from difflab.viz.plots import _plt, embed_2d

    ext = ClassifierFeatures("digit-classifier")
    real = reference_features(ext, "mnist:test", real_n)
    feats = {row: extract(ext, x) for row, (x, _) in samples.items()}
    labels = {row: clf.predict("digit-classifier", x).numpy() for row, (x, _) in samples.items()}
    emb, used = embed_2d(np.concatenate([real] + list(feats.values())), "umap", seed)
    er, k = emb[: len(real)], len(real)
    base = float(_within_group_distance(feats[UMAP_ROWS[0][0]]).mean())
    plt = _plt()
    fig, axes = plt.subplots(1, len(samples), figsize=(4.6 * len(samples), 4.9), dpi=90, sharex=True, sharey=True)
    numbers = {}
    for ax, (row, (x, secs)) in zip(axes, samples.items(), strict=True):
        eg = emb[k: k + len(x)]
        k += len(x)
        modes = modes_per_group(labels[row], GROUP)
        wd = _within_group_distance(feats[row])
        numbers[row] = {"modes_per_10": float(modes.mean()), "within_group_feature_distance": float(wd.mean()),
                        "within_group_distance_vs_iid": float(wd.mean()) / base, "n": len(x), "sample_s": round(secs, 1),
                        "highlighted_groups_modes": [int(m) for m in modes[:highlight]]}
        ax.scatter(er[:, 0], er[:, 1], c="0.85", s=3, lw=0)
        sc = ax.scatter(eg[:, 0], eg[:, 1], c=labels[row], cmap="tab10", vmin=-0.5, vmax=9.5, s=9, lw=0)
        for gi in range(highlight):
            p = eg[gi * GROUP:(gi + 1) * GROUP]
            for a, b in _mst_edges(p):
                ax.plot(p[[a, b], 0], p[[a, b], 1], LINES[gi % 4], color="k", lw=1.1, alpha=0.85, zorder=3)
            ax.scatter(p[:, 0], p[:, 1], c=labels[row][gi * GROUP:(gi + 1) * GROUP], cmap="tab10", vmin=-0.5,
                       vmax=9.5, s=46, edgecolors="k", linewidths=0.9, marker=MARKERS[gi % 4], zorder=4)
        ax.set_title(f"{row}\nmodes/10 {modes.mean():.2f}, within-group feature distance x{wd.mean() / base:.2f}\n"
                     f"highlighted groups: {', '.join(str(m) for m in modes[:highlight])} digits", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[len(axes) // 2].legend(handles=[Line2D([], [], ls=LINES[g % 4], marker=MARKERS[g % 4], color="k", mfc="w",
                                                label=f"group {g + 1}") for g in range(highlight)],
                                loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=highlight, fontsize=8,
                                handlelength=3)
    cb = fig.colorbar(sc, ax=list(axes), ticks=range(10), fraction=0.02, pad=0.01)
    cb.set_label("digit (classifier)")
    fig.suptitle(f"{used.upper()} of digit-classifier features (grey: {len(real)} mnist:test digits); "
                 f"{highlight} groups of 10 joined by their spanning tree (marker and line style per group)", fontsize=9, y=1.06)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return numbers


def run_thesis_figures(out="outputs/reproduce/thesis-figures", quick: bool = False, seed: int = 0,
                       log=print) -> dict:
    """``difflab reproduce thesis-figures``: Figures 3.3, 5.1 and 3.1 (see the module docstring)."""
    require_umap()
    from difflab.models import load

    torch.manual_seed(seed)
    cfg = dict(QUICK if quick else FULL)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    D = load("mnist-uncond")
    result = {"experiment": "thesis Figures 3.1, 3.3, 5.1", "model": "mnist-uncond", "sampler": "heun",
              "group": GROUP, "seed": seed, "quick": bool(quick), "config": {**cfg, "weights": list(cfg["weights"])},
              "pg": "median bandwidth, kernel on D(x), k_PG = w sigma; variants: " + str(VARIANT_LABELS)}
    for fig, (kernel, fname, label) in NORM_FIGURES.items():
        done = {v: {w: norm_trajectory(D, kernel, w, cfg["norm_groups"], cfg["norm_steps"], seed, v)
                    for w in cfg["weights"]} for v in VARIANT_LABELS}
        runs = {v: {w: rows for w, (rows, _) in by_w.items()} for v, by_w in done.items()}
        title = (f"Figure {fig}: PG term vs ODE direction, {label}; mnist-uncond, Heun {cfg['norm_steps']} steps, "
                 f"{cfg['norm_groups']} groups of {GROUP}")
        plot_norms(runs, title, out / fname)
        summary = {v: {f"w={w:g}": _ratio_summary(rows) for w, rows in by_w.items()} for v, by_w in runs.items()}
        result[f"fig{fig}"] = {"kernel": kernel, "png": fname, "ratio_mean_at": summary, "final_abs_max":
                               {v: {f"w={w:g}": round(m, 3) for w, (_, m) in by_w.items()} for v, by_w in done.items()},
                               "steps": {v: {f"w={w:g}": rows for w, rows in by_w.items()} for v, by_w in runs.items()}}
        log(f"Figure {fig} ({kernel}): mean ||PG|| / ||d|| {summary} -> {out / fname}")
    samples = sample_rows(D, cfg["umap_n"], cfg["umap_steps"], seed)
    numbers = umap_figure(samples, cfg["real_n"], cfg["highlight"], out / UMAP_FILE, seed)
    result["fig3.1"] = {"png": UMAP_FILE, "embedding": "umap of digit-classifier features", "rows": numbers}
    for row, r in numbers.items():
        log(f"Figure 3.1 {row:28s} modes/10 {r['modes_per_10']:.2f}  within-group feature distance "
            f"{r['within_group_feature_distance']:.3f} (x{r['within_group_distance_vs_iid']:.2f} i.i.d.)")
    result["wall_s"] = round(time.time() - t0, 1)
    write_json(result, out / "results.json", sort_keys=False)
    log(f"wrote {out / 'results.json'} ({result['wall_s']} s)")
    return result

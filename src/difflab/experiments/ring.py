"""The 2-D ring experiment of the Particle Guidance paper (Corso et al. 2023, appendix; thesis Figure 6.3).

10 Gaussians evenly on the unit circle (per-mode variance 0.005), the exact denoiser of the noised mixture,
10 particles per run, averaged over 100 runs; the score is the number of distinct modes the particles end
nearest to. I.i.d. sampling finds 10 (1 - 0.9^10) = 6.51 modes on average.

Sampler: EDM's stochastic Heun (Karras et al. 2022, Algorithm 2) on a 200-step Karras grid
(sigma 80 -> 0.002), with S_churn as the "noise weight" axis: S_churn = 0 is the probability-flow ODE, and
gamma = min(S_churn / N, sqrt(2) - 1) re-injects noise at every step (a reverse-SDE-like sampler). It is the
sampler of the thesis and needs no other sampler module; any entry of ``SAMPLERS`` can be passed instead.

Runs are vectorised: runs x particles form one batch and ``ParticleGuidance(group_size=particles)`` couples
only the particles of the same run. Every cell of a sweep uses the same seed, so the same initial noise and
the same churn noise (the comparison is paired).

``difflab toy gmm --out DIR [--runs 100] [--quick]`` (or :func:`run_ring`) writes
``gmm.json`` and heatmaps ``gmm_heatmap_rbf.png`` / ``gmm_heatmap_cyclic.png`` and prints the tables.
"""

from __future__ import annotations

import math
import os
import time

import torch

from difflab.data.toy import GaussianMixture, ring_mixture
from difflab.eval.diversity import pairwise_distance_per_group
from difflab.eval.modes import expected_modes, modes_per_group
from difflab.guidance.particle import ParticleGuidance
from difflab.sampling import SAMPLERS, karras_sigmas
from difflab.utils import write_json

DEFAULT_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
DEFAULT_CHURNS = (0.0, 10.0, 20.0, 40.0, 80.0)


def iid_expected_modes(n_modes: int = 10, particles: int = 10) -> float:
    """E[#distinct modes] of `particles` i.i.d. draws from `n_modes` equally likely modes."""
    return expected_modes(n_modes, particles)


def count_modes(x: torch.Tensor, gm: GaussianMixture, group_size: int) -> torch.Tensor:
    """Number of distinct nearest modes per run ([runs])."""
    return torch.from_numpy(modes_per_group(gm.nearest_mode(x), group_size)).float()


def mean_pairwise_distance(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """Mean distance between distinct particles of the same run ([runs])."""
    return pairwise_distance_per_group(x, "l2", group_size)


def sample_runs(gm: GaussianMixture, runs: int, particles: int, steps: int, guidance=None, S_churn: float = 0.0,
                seed: int = 0, sampler: str = "heun", sigma_min: float = 0.002, sigma_max: float = 80.0):
    """runs x particles samples in one batch ([runs * particles, dim]); the same seed gives the same noise."""
    sigmas = karras_sigmas(steps, sigma_min=sigma_min, sigma_max=sigma_max, rho=7.0)
    g = torch.Generator().manual_seed(seed)
    x = sigmas[0] * torch.randn(runs * particles, gm.dim, generator=g)
    kwargs = {"S_churn": S_churn} if S_churn else {}
    return SAMPLERS[sampler](gm, x, sigmas, generator=g, guidance=guidance, **kwargs)


def _summary(x, gm, particles):
    modes = count_modes(x, gm, particles)
    mpd = mean_pairwise_distance(x, particles)
    n = modes.numel()
    # "on a mode": within 0.25 of the nearest mean (3.5 per-mode standard deviations at variance 0.005)
    near = torch.cdist(x.reshape(x.shape[0], -1).double(), gm.means).min(1).values < 0.25
    return {"modes": float(modes.mean()), "modes_sem": float(modes.std() / math.sqrt(n)) if n > 1 else 0.0,
            "mean_pairwise_distance": float(mpd.mean()), "fraction_on_a_mode": float(near.double().mean())}


def run_gmm_experiment(pg_weights=DEFAULT_WEIGHTS, churns=DEFAULT_CHURNS, kernels=("rbf", "cyclic"), runs: int = 100,
                       particles: int = 10, steps: int = 200, n_modes: int = 10, variance: float = 0.005,
                       radius: float = 1.0, seed: int = 0, variant: str = "paper", on: str = "denoised",
                       schedule: str = "sigma", sampler: str = "heun", progress=None) -> dict:
    """Sweep PG weight (rows) x S_churn (columns) for each kernel; modes[k][i][j] is the mean over runs."""
    gm = ring_mixture(n_modes, radius, variance)
    t0 = time.time()
    out = {"config": {"pg_weights": list(map(float, pg_weights)), "S_churn": list(map(float, churns)),
                      "kernels": list(kernels), "runs": runs, "particles": particles, "steps": steps,
                      "n_modes": n_modes, "variance": variance, "radius": radius, "seed": seed,
                      "variant": variant, "on": on, "schedule": schedule, "sampler": sampler,
                      "grid": "karras(steps, 0.002, 80, rho=7)"},
           "iid_expected_modes": iid_expected_modes(n_modes, particles), "kernels": {}}
    iid = {}
    for c in churns:  # weight 0 is i.i.d. sampling, shared by every kernel
        iid[c] = _summary(sample_runs(gm, runs, particles, steps, None, c, seed, sampler), gm, particles)
    for kernel in kernels:
        cells = []
        for w in pg_weights:
            row = []
            for c in churns:
                if w == 0:
                    row.append(iid[c])
                    continue
                pg = ParticleGuidance(weight=w, kernel=kernel, schedule=schedule, on=on, variant=variant,
                                      group_size=particles)
                row.append(_summary(sample_runs(gm, runs, particles, steps, pg, c, seed, sampler), gm, particles))
                if progress:
                    progress(f"{kernel} w={w:g} S_churn={c:g}: {row[-1]['modes']:.2f} modes")
            cells.append(row)
        out["kernels"][kernel] = {key: [[cell[key] for cell in row] for row in cells]
                                  for key in ("modes", "modes_sem", "mean_pairwise_distance", "fraction_on_a_mode")}
    out["seconds"] = time.time() - t0
    return out


def compare_variants(runs: int = 100, particles: int = 10, steps: int = 100, weight: float = 1.0, seed: int = 0,
                     n_modes: int = 10, variance: float = 0.005) -> dict:
    """DESIGN §4: i.i.d. vs the paper's PG vs the thesis' PG on the ring (deterministic Heun, Karras steps)."""
    gm = ring_mixture(n_modes, 1.0, variance)
    settings = {
        "iid": None,
        "paper": dict(variant="paper"),
        "paper_on_x": dict(variant="paper", on="x"),
        "paper_cyclic": dict(variant="paper", kernel="cyclic"),
        "thesis": dict(variant="thesis"),
        "thesis_detached_bandwidth": dict(variant="thesis", detach_bandwidth=True),
    }
    t0 = time.time()
    res = {}
    for name, kw in settings.items():
        pg = None if kw is None else ParticleGuidance(weight=weight, group_size=particles, **kw)
        res[name] = _summary(sample_runs(gm, runs, particles, steps, pg, 0.0, seed), gm, particles)
    return {"config": {"runs": runs, "particles": particles, "steps": steps, "weight": weight, "seed": seed,
                       "sampler": "heun (S_churn = 0)", "schedule": "sigma", "kernel": "rbf, median bandwidth"},
            "iid_expected_modes": iid_expected_modes(n_modes, particles), "results": res,
            "seconds": time.time() - t0}


def one_step_sign(dims=(2, 1024), trials: int = 50, seed: int = 0) -> dict:
    """One PG update on random points in [-1, 1]^dim (n in 2..100): how often does the mean pairwise distance
    grow, and what fraction of pairs come closer? For the paper's PG, the thesis' PG (h through the median)
    and the thesis' PG with the median detached."""
    settings = {"paper": {}, "thesis": dict(variant="thesis"),
                "thesis_detached_bandwidth": dict(variant="thesis", detach_bandwidth=True)}
    out = {}
    for dim in dims:
        for name, kw in settings.items():
            grows, closer = 0, 0.0
            for t in range(trials):
                g = torch.Generator().manual_seed(seed * 100003 + t)
                n = int(torch.randint(2, 101, (1,), generator=g))
                z = torch.rand(n, dim, generator=g, dtype=torch.float64) * 2 - 1
                pg = ParticleGuidance(weight=1.0, schedule="constant", on="x", **kw)
                # With D = 0, D' is the PG displacement of the denoised estimate; x moves along it.
                step = pg.wrap(lambda x, s: torch.zeros_like(x))(z, torch.ones(n, dtype=torch.float64))
                z1 = z + 1e-4 * step / step.norm(dim=1).max()
                iu = torch.triu_indices(n, n, 1)
                d0, d1 = torch.cdist(z, z)[iu[0], iu[1]], torch.cdist(z1, z1)[iu[0], iu[1]]
                grows += int(d1.mean() > d0.mean())
                closer += float((d1 < d0).double().mean())
            out[f"{name}@{dim}d"] = {"mean_distance_grows": grows, "trials": trials,
                                     "fraction_of_pairs_closer": closer / trials}
    return out


def plot_heatmaps(result: dict, out_dir: str) -> list[str]:
    """One figure per kernel, PG weight (rows) x S_churn (columns): modes recovered (left) and the fraction of
    samples that ended on a mode (right; the price of strong repulsion)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg, paths = result["config"], []
    panels = [("modes", "distinct modes", 5.0, cfg["n_modes"], "viridis"),
              ("fraction_on_a_mode", "fraction of samples on a mode", 0.0, 1.0, "magma")]
    for kernel, data in result["kernels"].items():
        fig, axes = plt.subplots(1, 2, figsize=(2 * (1.0 * len(cfg["S_churn"]) + 2.2), 0.55 * len(cfg["pg_weights"]) + 1.8))
        for ax, (key, label, vmin, vmax, cmap) in zip(axes, panels, strict=True):
            vals = torch.tensor(data[key])
            im = ax.imshow(vals.numpy(), cmap=cmap, vmin=min(vmin, float(vals.min())), vmax=vmax, origin="lower",
                           aspect="auto")
            ax.set_xticks(range(len(cfg["S_churn"])), [f"{c:g}" for c in cfg["S_churn"]])
            ax.set_yticks(range(len(cfg["pg_weights"])), [f"{w:g}" for w in cfg["pg_weights"]])
            ax.set_xlabel(f"noise weight S_churn (stochastic Heun, {cfg['steps']} steps)")
            ax.set_ylabel("PG weight w (k_PG = w sigma)")
            mid = 0.5 * (float(vals.max()) + float(vals.min()))
            for i in range(vals.shape[0]):
                for j in range(vals.shape[1]):
                    ax.text(j, i, f"{vals[i, j]:.2f}", ha="center", va="center", fontsize=8,
                            color="white" if vals[i, j] < mid else "black")
            fig.colorbar(im, ax=ax, label=label)
        axes[0].set_title(f"{kernel} kernel: modes of {cfg['n_modes']} found by {cfg['particles']} particles "
                          f"({cfg['runs']} runs)", fontsize=9)
        axes[1].set_title("fraction of samples within 0.25 of a mode", fontsize=9)
        fig.tight_layout()
        path = os.path.join(out_dir, f"gmm_heatmap_{kernel}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def _table(result) -> str:
    cfg, lines = result["config"], []
    for kernel, data in result["kernels"].items():
        lines.append(f"kernel={kernel}: modes (fraction on a mode); rows: PG weight, columns: S_churn")
        lines.append("| w \\ S_churn | " + " | ".join(f"{c:g}" for c in cfg["S_churn"]) + " |")
        lines.append("|---" * (len(cfg["S_churn"]) + 1) + "|")
        for w, row, on in zip(cfg["pg_weights"], data["modes"], data["fraction_on_a_mode"], strict=True):
            lines.append(f"| {w:g} | " + " | ".join(f"{v:.2f} ({o:.2f})" for v, o in zip(row, on, strict=True)) + " |")
    return "\n".join(lines)


def run_ring(out: str, runs: int = 100, particles: int = 10, steps: int = 200, seed: int = 0,
             quick: bool = False) -> dict:
    """What ``difflab toy gmm`` runs: the sweep, the heatmaps and the DESIGN §4 comparison; writes OUT/gmm.json."""
    os.makedirs(out, exist_ok=True)
    if runs < 1 or particles < 2 or steps < 2:
        raise ValueError("need --runs >= 1, --particles >= 2 and --steps >= 2")
    if quick:
        weights, churns, runs, steps, cmp_steps = (0.0, 1.0, 4.0), (0.0, 40.0), min(runs, 20), 50, 50
    else:
        weights, churns, runs, steps, cmp_steps = DEFAULT_WEIGHTS, DEFAULT_CHURNS, runs, steps, 100
    t0 = time.time()
    sweep = run_gmm_experiment(weights, churns, runs=runs, particles=particles, steps=steps, seed=seed,
                               progress=lambda s: print(s, flush=True))
    comparison = compare_variants(runs=runs, particles=particles, steps=cmp_steps, seed=seed)
    signs = one_step_sign(trials=10 if quick else 50, seed=seed)
    result = {"sweep": sweep, "comparison": comparison, "one_step_sign": signs, "seconds": time.time() - t0}
    write_json(result, os.path.join(out, "gmm.json"))
    paths = plot_heatmaps(sweep, out)
    print(_table(sweep))
    print(f"i.i.d. expectation: {sweep['iid_expected_modes']:.2f} modes")
    print(f"comparison (Heun, {cmp_steps} Karras steps, S_churn = 0):")
    for name, r in comparison["results"].items():
        print(f"  {name:28s} modes {r['modes']:.2f} +- {r['modes_sem']:.2f}   "
              f"mean pairwise distance {r['mean_pairwise_distance']:.3f}   on a mode {r['fraction_on_a_mode']:.2f}")
    for name, r in signs.items():
        print(f"  one step {name:34s} mean distance grows {r['mean_distance_grows']}/{r['trials']}, "
              f"pairs closer {r['fraction_of_pairs_closer']:.2f}")
    print(f"wrote {os.path.join(out, 'gmm.json')} and {', '.join(paths)} in {result['seconds']:.0f} s")
    return result

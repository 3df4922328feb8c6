"""A 2-D toy where CFG collapses a conditional distribution onto few modes and autoguidance keeps them (issue 22;
the mechanism of Karras et al. 2024, "Guiding a diffusion model with a bad version of itself", section 3 / Fig. 1).

Data: two classes of isotropic Gaussian modes (std ``std``) on the unit circle. Class 0 (the one sampled) has
``modes`` equally likely modes; class 1 has one mode next to each of the first ``shared`` class-0 modes (an angle
``offset`` away), so there p(c = 0 | x) is about 1/2 while at the other class-0 modes it is about 1. The
unconditional model is the 50/50 mixture of the classes.

- the *good* denoiser is exact (:class:`ClassMixture`, the posterior mean of each noised mixture);
- the *bad* one (the guide) is the exact denoiser of the same mixtures with every mode widened to
  ``sqrt(std^2 + blur^2)``: the same kind of model, only less sharp.

CFG samples approximately p(x | c) p(c | x)^w: it moves mass away from the shared modes (where p(c | x) is 1/2)
onto the private ones. Autoguidance samples approximately p_good(x | c)^w / p_bad(x | c)^(w-1): every mode is
sharpened alike, so the mode weights stay as they are. :func:`run` measures, per guidance setting, the share of
class-0 samples at each class-0 mode, the number of modes holding at least half their true share, the KL
divergence of the mode histogram from the truth (uniform), the share of samples more than 4 std from every class-0
mode ("off"), and the mean distance to the nearest mode.

``python -m difflab.experiments.guidance_toy --out docs/guidance_toy.png --json docs/guidance_toy.json``
"""

from __future__ import annotations

import argparse
import math

import torch

from difflab.data.toy import GaussianMixture
from difflab.guidance import AdaptiveProjectedGuidance, AutoGuidance, CFGPlusPlus, ClassifierFreeGuidance
from difflab.sampling import karras_sigmas
from difflab.sampling.generate import generate
from difflab.utils import write_json


class ClassMixture:
    """Exact class-conditional denoiser: label k < K uses ``parts[k]``, label K (null) the mixture of all parts
    with ``prior`` weights (the components concatenated)."""

    def __init__(self, parts: list[GaussianMixture], prior=None):
        self.parts = parts
        self.num_classes = len(parts)
        prior = torch.full((len(parts),), 1.0 / len(parts), dtype=torch.float64) if prior is None else \
            torch.as_tensor(prior, dtype=torch.float64)
        self.null = GaussianMixture(torch.cat([p.means for p in parts]), torch.cat([p.stds for p in parts]),
                                    torch.cat([prior[k] * p.weights for k, p in enumerate(parts)]))

    def __call__(self, x, sigma, class_labels=None, **cond):
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        sigma = sigma.expand(x.shape[0]) if sigma.ndim == 0 else sigma
        if class_labels is None:
            return self.null.denoiser(x, sigma)
        out = torch.empty_like(x)
        for k, gm in enumerate([*self.parts, self.null]):
            m = class_labels == k
            if m.any():
                out[m] = gm.denoiser(x[m], sigma[m])
        return out


def make_problem(modes: int = 6, shared: int = 3, std: float = 0.06, offset: float = 0.35, blur: float = 0.15):
    """(good, bad, class-0 mode means): see the module doc."""
    ang = torch.arange(modes, dtype=torch.float64) * 2 * math.pi / modes
    m0 = torch.stack([ang.cos(), ang.sin()], 1)
    a1 = ang[:shared] + offset
    m1 = torch.stack([a1.cos(), a1.sin()], 1)

    def mix(s):
        return ClassMixture([GaussianMixture(m0, s), GaussianMixture(m1, s)])

    return mix(std), mix(math.sqrt(std**2 + blur**2)), m0


def summarize(x: torch.Tensor, means: torch.Tensor, std: float, shared: int) -> dict:
    d = torch.cdist(x.double(), means)
    near, idx = d.min(1)
    on = near <= 4 * std
    K = means.shape[0]
    share = torch.bincount(idx[on], minlength=K).double() / max(int(on.sum()), 1)
    p = share.clamp_min(1e-12)
    return {"share": [round(float(v), 4) for v in share],
            "modes_kept": int((share >= 0.5 / K).sum()),
            "shared_mass": round(float(share[:shared].sum()), 4),
            "kl_to_true": round(float((p * (p * K).log()).sum()), 4),
            "off": round(float(1 - on.double().mean()), 4),
            "mean_dist": round(float(near.mean()), 4)}


def settings(sigmas) -> dict:
    """name -> guidance list (innermost first); weights in the 'ntnu' CFG convention (0: none) and Karras'
    autoguidance convention (1: none)."""
    return {
        "unguided": None,
        "CFG w=1": [ClassifierFreeGuidance(1.0)],
        "CFG w=3": [ClassifierFreeGuidance(3.0)],
        "CFG w=3, interval [0.05,1]": [ClassifierFreeGuidance(3.0, sigma_window=(0.05, 1.0))],
        "APG w=3": [AdaptiveProjectedGuidance(3.0)],
        "CFG++ lam=0.8": [CFGPlusPlus(0.8, sigmas=sigmas)],
        "AG w=2": "ag2",
        "AG w=4": "ag4",
    }


def run(n: int = 4000, steps: int = 32, seed: int = 0, sampler: str = "heun", **problem) -> dict:
    good, bad, m0 = make_problem(**problem)
    std = float(good.parts[0].stds[0])
    shared = problem.get("shared", 3)
    sigmas = karras_sigmas(steps, 0.002, 10.0)
    out = {"n": n, "steps": steps, "sampler": sampler, "seed": seed, "problem": problem, "results": {}}
    labels = torch.zeros(n, dtype=torch.long)
    samples = {}
    for name, g in settings(sigmas).items():
        if isinstance(g, str):
            g = [AutoGuidance(bad, weight=float(g[2:]))]
        x = generate(good, n, (2,), sampler=sampler, grid=sigmas.tolist(), seed=seed, guidance=g,
                     cond={"class_labels": labels}, device="cpu")
        samples[name] = x
        out["results"][name] = summarize(x, m0, std, shared)
    out["samples"] = samples
    out["means"] = (m0, good.parts[1].means)
    return out


def plot(result: dict, path: str, names=("unguided", "CFG w=3", "APG w=3", "AG w=2")):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m0, m1 = result["means"]
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.8))
    for ax, name in zip(axes, names, strict=True):
        x = result["samples"][name][:2000]
        ax.scatter(x[:, 0], x[:, 1], s=1.5, alpha=0.4, color="C0", zorder=2)
        ax.scatter(m0[:, 0], m0[:, 1], marker="+", s=60, lw=0.8, color="k", zorder=1,
                   label="class 0 (sampled)")
        ax.scatter(m1[:, 0], m1[:, 1], marker="x", s=40, lw=0.8, color="C3", zorder=1, label="class 1")
        r = result["results"][name]
        ax.set_title(f"{name}\nmodes kept {r['modes_kept']}/{len(m0)}, shared mass {r['shared_mass']:.2f}", fontsize=9)
        ax.set_xlim(-1.4, 1.4), ax.set_ylim(-1.4, 1.4), ax.set_aspect("equal"), ax.set_xticks([]), ax.set_yticks([])
    axes[0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def table(result: dict) -> str:
    rows = ["| setting | modes kept (of 6) | mass on shared modes (truth 0.50) | KL to truth | off-mode | mean dist |",
            "| --- | --- | --- | --- | --- | --- |"]
    for name, r in result["results"].items():
        rows.append(f"| {name} | {r['modes_kept']} | {r['shared_mass']:.3f} | {r['kl_to_true']:.3f} | {r['off']:.4f} "
                    f"| {r['mean_dist']:.4f} |")
    return "\n".join(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="guidance_toy.png")
    ap.add_argument("--json", default=None)
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--steps", type=int, default=32)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    res = run(n=args.n, steps=args.steps)
    plot(res, args.out)
    print(table(res))
    if args.json:
        write_json({k: v for k, v in res.items() if k not in ("samples", "means")}, args.json)


if __name__ == "__main__":
    main()

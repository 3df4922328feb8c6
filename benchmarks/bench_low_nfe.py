"""Accuracy per network evaluation (issue 17): every deterministic sampler x grid at 5, 10 and 20 NFE on exact
Gaussian-mixture denoisers, measured as the distance to the exact probability-flow ODE solution from the same
noise.

Problems (exact denoisers, unequal weights; sigma in [0.002, 80], the EDM range):
- ``1d``: the two-mode mixture of the analytic tests, weights (0.3, 0.7), means (-2, 1.5), stds (0.3, 0.5);
- ``8d``: three components, weights (0.5, 0.3, 0.2), means N(0, 1.5^2 I) (seed 1), stds (0.3, 0.5, 0.4);
- ``64d``: four components, weights (0.4, 0.3, 0.2, 0.1), means N(0, 1) (seed 2), stds (0.5, 0.3, 0.4, 0.6).

Error: RMS over samples and coordinates of x - x_ref, x_ref the PF-ODE solved from the same x_T = 80 z (float64)
by dopri5 at rtol = atol = 1e-9 (256 samples; ``--quick``: 64, and no 64d problem). NFE counts network
evaluations: one per step for the multistep samplers (euler, dpmpp_2m, dpmpp_3m, lms, deis, ipndm, unipc), two
per step except the last for the two-stage ones (heun, dpm_2, dpmpp_2s_ancestral with eta = 0), so those get
(B + 1) // 2 steps at budget B (5, 9 and 19 NFE). ode_rk4 is left out (its sub-stepping needs >= 25 NFE on these
grids), dopri5 too (adaptive).

"Reference methods" are the configurations k-diffusion and diffusers offer (their samplers with their default
options, on a Karras, log-uniform (k-diffusion's 'exponential') or polyexponential grid); "difflab-only" adds
dpmpp_3m with the exact third-order coefficient (``third_order='exact'``) and UniPC's variants with
lower_order_final off. difflab implements every reference method, so its best is at least theirs by construction;
the table says by how much the extras add.

    python benchmarks/bench_low_nfe.py [--quick] [--json OUT]
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, parser, setup, table, write_json  # noqa: E402

from difflab.data.toy import GaussianMixture  # noqa: E402
from difflab.sampling import SAMPLERS, sigma_grid  # noqa: E402
from difflab.sampling.optimize import optimize_grid  # noqa: E402

SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
BUDGETS = (5, 10, 20)
GRIDS = ("karras", "loguniform", "polyexponential", "gits")
# "gits": difflab's own grid, optimised per problem and step count by `difflab.sampling.optimize.optimize_grid`
# (dynamic programming over a 200-interval Karras grid, Euler truncation cost along 64 Heun reference paths drawn
# from seed 1, not the evaluation noise of seed 0). No other library has it, so it never counts as a reference.
# name -> (sampler, options, evaluations per step (1 or 2: two-stage), reference method?)
CONFIGS = {
    "euler": ("euler", {}, 1, True),
    "heun": ("heun", {}, 2, True),
    "dpm_2": ("dpm_2", {}, 2, True),
    "dpmpp_2s": ("dpmpp_2s_ancestral", {"eta": 0.0}, 2, True),
    "dpmpp_2m": ("dpmpp_2m", {}, 1, True),
    "dpmpp_3m": ("dpmpp_3m", {}, 1, True),
    "lms": ("lms", {}, 1, True),
    "deis": ("deis", {}, 1, True),
    "ipndm": ("ipndm", {}, 1, True),
    "unipc_bh1": ("unipc", {"variant": "bh1", "order": 3}, 1, True),
    "unipc_bh2": ("unipc", {"variant": "bh2", "order": 3}, 1, True),
    "unipc_bh2_o2": ("unipc", {"variant": "bh2", "order": 2}, 1, True),
    "dpmpp_3m_exact": ("dpmpp_3m", {"third_order": "exact"}, 1, False),
    "unipc_bh1_nolof": ("unipc", {"variant": "bh1", "order": 3, "lower_order_final": False}, 1, False),
    "unipc_bh2_nolof": ("unipc", {"variant": "bh2", "order": 3, "lower_order_final": False}, 1, False),
}


def problems(quick: bool) -> dict:
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    out = {
        "1d": GaussianMixture([[-2.0], [1.5]], [0.3, 0.5], [0.3, 0.7]),
        "8d": GaussianMixture(1.5 * torch.randn(3, 8, generator=g1, dtype=torch.float64), [0.3, 0.5, 0.4],
                              [0.5, 0.3, 0.2]),
    }
    if not quick:
        out["64d"] = GaussianMixture(torch.randn(4, 64, generator=g2, dtype=torch.float64), [0.5, 0.3, 0.4, 0.6],
                                     [0.4, 0.3, 0.2, 0.1])
    return out


def steps_for(budget: int, per_step: int) -> tuple[int, int]:
    """Steps and NFE within the budget: B steps (one evaluation each), or (B + 1) // 2 two-stage steps."""
    if per_step == 1:
        return budget, budget
    n = (budget + 1) // 2
    return n, 2 * n - 1


def main(argv=None) -> int:
    args = parser("bench_low_nfe", __doc__).parse_args(argv)
    setup(args)
    n_samples = 64 if args.quick else 256
    t0 = time.perf_counter()
    results = []
    for pname, D in problems(args.quick).items():
        x = SIGMA_MAX * torch.randn(n_samples, D.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        stats = {}
        ref = SAMPLERS["ode_dopri5"](D, x, sigma_grid("karras", 8, SIGMA_MIN, SIGMA_MAX), rtol=1e-9, atol=1e-9,
                                     stats=stats)
        print(f"{pname}: reference dopri5 with {stats['nfe']} NFE", flush=True)
        gits = {}
        for budget in BUDGETS:
            for cname, (sampler, opts, per_step, is_ref) in CONFIGS.items():
                steps, nfe = steps_for(budget, per_step)
                for grid in GRIDS:
                    if grid == "gits":
                        if steps not in gits:
                            g = optimize_grid(D, steps, (D.dim,), sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, fine=200,
                                              batch=64, seed=1)
                            gits[steps] = torch.tensor(g["sigmas"], dtype=torch.float64)
                        sigmas = gits[steps]
                    else:
                        sigmas = sigma_grid(grid, steps, SIGMA_MIN, SIGMA_MAX)
                    out = SAMPLERS[sampler](D, x, sigmas, **opts)
                    err = float((out - ref).pow(2).mean().sqrt())
                    results.append(dict(problem=pname, budget=budget, config=cname, sampler=sampler, options=opts,
                                        grid=grid, steps=steps, nfe=nfe, rms_error=err,
                                        reference_method=is_ref and grid != "gits"))
    # Per problem and budget: the best configuration overall and among the reference methods.
    summary = []
    for pname in dict.fromkeys(r["problem"] for r in results):
        for budget in BUDGETS:
            rs = [r for r in results if r["problem"] == pname and r["budget"] == budget]
            best = min(rs, key=lambda r: r["rms_error"])
            best_ref = min((r for r in rs if r["reference_method"]), key=lambda r: r["rms_error"])
            karras_ref = min((r for r in rs if r["reference_method"] and r["grid"] == "karras"),
                             key=lambda r: r["rms_error"])
            summary.append(dict(problem=pname, nfe_budget=budget, best=f"{best['config']}/{best['grid']}",
                                best_error=best["rms_error"], best_reference=f"{best_ref['config']}/{best_ref['grid']}",
                                reference_error=best_ref["rms_error"],
                                best_karras_reference=f"{karras_ref['config']}", karras_reference_error=karras_ref["rms_error"],
                                ratio=best["rms_error"] / best_ref["rms_error"]))
    table(summary, ["problem", "nfe_budget", "best", "best_error", "best_reference", "reference_error",
                    "best_karras_reference", "karras_reference_error", "ratio"],
          "best difflab sampler+grid vs the best k-diffusion/diffusers method (RMS error to the exact ODE solution)")
    # Full table: error per configuration and grid, geometric mean over problems.
    full = []
    for cname in CONFIGS:
        row = {"config": cname}
        for budget in BUDGETS:
            for grid in GRIDS:
                errs = [r["rms_error"] for r in results if r["config"] == cname and r["budget"] == budget
                        and r["grid"] == grid]
                row[f"{budget}/{grid[:5]}"] = math.exp(sum(math.log(e) for e in errs) / len(errs))
        full.append(row)
    cols = ["config"] + [f"{b}/{g[:5]}" for b in BUDGETS for g in GRIDS]
    table(full, cols, "geometric mean over problems of the RMS error, by NFE budget / grid")
    write_json(args.json, {"benchmark": "bench_low_nfe", "quick": args.quick, "machine": machine(),
                           "n_samples": n_samples, "sigma_min": SIGMA_MIN, "sigma_max": SIGMA_MAX,
                           "budgets": list(BUDGETS), "grids": list(GRIDS), "results": results, "summary": summary,
                           "geomean": full, "seconds": time.perf_counter() - t0})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

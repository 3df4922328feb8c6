"""A sigma grid optimised for one model and one budget of steps, by dynamic programming over a fine grid.

The idea of GITS (Chen et al. 2024, "On the trajectory regularity of ODE-based diffusion sampling"): the
probability-flow ODE's trajectories of one model are all alike, so a few of them, solved finely, tell which coarse
grid a cheap solver should use. Here:

1. A fine Karras grid ``s_0 > ... > s_M = 0`` (``fine`` intervals) and reference trajectories of ``batch`` samples
   solved along it with Heun (Karras et al. 2022, Algorithm 1): ``x_k`` at every ``s_k``, and ``D(x_k; s_k)``.
2. The cost of jumping from ``s_i`` to ``s_j`` (i < j) in one Euler step, ``x_i + (s_j - s_i) (x_i - D(x_i; s_i)) / s_i``,
   is its mean squared distance to ``x_j`` (the local truncation error along the reference path). One network
   evaluation per fine point prices every pair, since the Euler direction at ``x_i`` does not depend on j.
3. Dynamic programming picks the ``steps`` jumps from ``s_0`` to ``s_M`` with the least total cost (GITS' eq. 9;
   O(steps M^2) additions).

The grid suits first-order steps best; higher-order samplers (ipndm, dpmpp_2m, unipc) use it as well, and
``benchmarks/bench_quality_nfe.py --grid FILE`` measures whether it helps them. ``difflab schedule MODEL --nfe N
--out grid.json`` writes it; ``--grid grid.json`` (or ``SamplingSpec(grid="grid.json")``) samples with it.
"""

from __future__ import annotations

import torch

from difflab.sampling.base import denoise
from difflab.sampling.rng import make_generators, randn
from difflab.sampling.schedules import karras_sigmas


@torch.no_grad()
def reference_path(D, x: torch.Tensor, sigmas: torch.Tensor, cond: dict | None = None):
    """Heun along ``sigmas`` from x: the states ``[M + 1, B, ...]`` and the denoised estimates at the first M."""
    cond = cond or {}
    xs, dens = [x], []
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        den = denoise(D, x, s, cond)
        d = (x - den) / s
        x_next = x + (s_next - s) * d
        if s_next > 0:  # Apply 2nd order correction.
            d_prime = (x_next - denoise(D, x_next, s_next, cond)) / s_next
            x_next = x + (s_next - s) * 0.5 * (d + d_prime)
        xs.append(x_next)
        dens.append(den)
        x = x_next
    return torch.stack(xs), torch.stack(dens)


def jump_costs(xs: torch.Tensor, dens: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """cost[i, j] = mean squared error of one Euler step from s_i to s_j against the reference x_j (inf for j <= i)."""
    M = len(sigmas) - 1
    s = sigmas.double()
    flat = xs.reshape(M + 1, xs.shape[1], -1).double()
    d = (flat[:-1] - dens.reshape(M, dens.shape[1], -1).double()) / s[:-1, None, None]
    cost = torch.full((M + 1, M + 1), float("inf"), dtype=torch.float64)
    for i in range(M):
        j = torch.arange(i + 1, M + 1)
        pred = flat[i][None] + (s[j] - s[i])[:, None, None] * d[i][None]
        cost[i, j] = ((pred - flat[j]) ** 2).mean(dim=(1, 2))
    return cost


def best_path(cost: torch.Tensor, steps: int) -> list[int]:
    """Indices 0 = k_0 < k_1 < ... < k_steps = M minimising sum cost[k_t, k_{t+1}] (dynamic programming)."""
    M = cost.shape[0] - 1
    if not 1 <= steps <= M:
        raise ValueError(f"steps must be in [1, {M}] for a fine grid of {M} intervals, got {steps}")
    best = torch.full((steps + 1, M + 1), float("inf"), dtype=torch.float64)
    arg = torch.zeros((steps + 1, M + 1), dtype=torch.long)
    best[0, 0] = 0.0
    for t in range(1, steps + 1):
        total = best[t - 1][:, None] + cost  # [from, to]
        best[t], arg[t] = total.min(dim=0)
    path = [M]
    for t in range(steps, 0, -1):
        path.append(int(arg[t, path[-1]]))
    return path[::-1]


def optimize_grid(D, steps: int, shape, *, sigma_min: float = 0.002, sigma_max: float = 80.0, fine: int = 100,
                  batch: int = 16, seed: int = 0, cond: dict | None = None, rho: float = 7.0,
                  device=None) -> dict:
    """The grid of ``steps`` intervals (``steps + 1`` sigmas ending in 0) for model D, and what it was made from.

    ``shape``: one sample's shape; ``cond``: conditioning for the ``batch`` reference samples (e.g. cycling class
    labels). Returns ``{"sigmas": [...], "steps", "fine", "batch", "seed", "cost", "cost_karras"}`` where the costs
    are the summed Euler truncation errors of this grid and of the Karras grid with the same steps."""
    fine_sigmas = karras_sigmas(fine, sigma_min, sigma_max, rho)
    device = torch.device(device or "cpu")
    gens = make_generators(seed, batch, device="cpu" if device.type != "cuda" else device)
    x = randn((batch, *shape), generator=gens, device=device) * float(fine_sigmas[0])
    xs, dens = reference_path(D, x, fine_sigmas, cond)
    cost = jump_costs(xs.cpu(), dens.cpu(), fine_sigmas)
    path = best_path(cost, steps)
    # The Karras grid of the same steps, snapped to the fine grid, for comparison.
    karras = karras_sigmas(steps, sigma_min, sigma_max, rho)
    snap = [int((fine_sigmas - float(v)).abs().argmin()) for v in karras]
    price = lambda p: float(sum(cost[a, b] for a, b in zip(p[:-1], p[1:], strict=True)))  # noqa: E731
    return {"sigmas": [float(fine_sigmas[k]) for k in path], "steps": steps, "fine": fine, "batch": batch,
            "seed": seed, "sigma_min": sigma_min, "sigma_max": sigma_max, "cost": price(path),
            "cost_karras": price(snap) if len(set(snap)) == len(snap) else None}


__all__ = ["best_path", "jump_costs", "optimize_grid", "reference_path"]

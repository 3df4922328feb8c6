"""The optimised sigma grid (difflab.sampling.optimize, `difflab schedule`): the dynamic programme finds the true
optimum, and on an exact mixture denoiser the grid it picks beats the Karras grid of the same budget for Euler."""

from __future__ import annotations

import itertools
import json

import torch

from difflab.data.toy import ring_mixture
from difflab.sampling import SAMPLERS, karras_sigmas
from difflab.sampling.optimize import best_path, jump_costs, optimize_grid, reference_path


def test_dp_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    M = 7
    cost = torch.rand(M + 1, M + 1, generator=g, dtype=torch.float64)
    cost = torch.where(torch.arange(M + 1)[:, None] < torch.arange(M + 1)[None], cost, torch.full_like(cost, float("inf")))
    for steps in (1, 2, 3, 5, 7):
        path = best_path(cost, steps)
        price = lambda p: sum(float(cost[a, b]) for a, b in zip(p[:-1], p[1:], strict=True))  # noqa: E731
        brute = min(price([0, *mid, M]) for mid in itertools.combinations(range(1, M), steps - 1))
        assert path[0] == 0 and path[-1] == M and len(path) == steps + 1
        assert abs(price(path) - brute) < 1e-12


def test_jump_cost_is_zero_along_an_exact_euler_path():
    """A denoiser whose Euler steps are exact (D = 0: x scales with sigma) has zero cost everywhere."""
    sig = karras_sigmas(6, 0.01, 10.0)
    D = lambda x, s, **c: torch.zeros_like(x)  # noqa: E731
    xs, dens = reference_path(D, torch.randn(3, 2, generator=torch.Generator().manual_seed(1)) * 10, sig)
    c = jump_costs(xs, dens, sig)
    assert torch.isfinite(c[0, 1:]).all() and c[0, 1:].max() < 1e-9 * float((xs[0] ** 2).mean())


def test_optimised_grid_beats_karras_for_euler_on_an_exact_mixture(tmp_path):
    gm = ring_mixture(10, variance=0.005)
    res = optimize_grid(gm, 6, (2,), sigma_min=0.002, sigma_max=80.0, fine=80, batch=64, seed=0)
    assert res["cost"] < res["cost_karras"]
    opt = torch.tensor(res["sigmas"])
    assert opt[0] == 80.0 and opt[-1] == 0 and (opt[1:] < opt[:-1]).all() and len(opt) == 7

    def final_error(sigmas):  # Euler from the same 256 starts vs a 400-step Heun reference
        g = torch.Generator().manual_seed(5)
        x = 80.0 * torch.randn(256, 2, generator=g)
        ref = SAMPLERS["heun"](gm, x, karras_sigmas(400, 0.002, 80.0))
        out = SAMPLERS["euler"](gm, x, sigmas)
        return float(((out - ref) ** 2).sum(1).mean())

    assert final_error(opt) < final_error(karras_sigmas(6, 0.002, 80.0))


def test_cli_schedule_then_sample_with_the_grid(tmp_path, monkeypatch):
    from difflab.cli import main
    from difflab.recipe import SamplingSpec

    monkeypatch.chdir(tmp_path)
    assert main(["schedule", "mnist-cond", "--nfe", "4", "--fine", "12", "--batch", "2", "--out", "g.json"]) == 0
    grid = json.loads((tmp_path / "g.json").read_text())["sigmas"]
    assert len(grid) == 5 and grid[-1] == 0
    assert SamplingSpec(grid="g.json").grid == tuple(grid)
    assert main(["sample", "mnist-cond", "--sampler", "ipndm", "--grid", "g.json", "--n", "2", "--out", "s.png"]) == 0
    assert (tmp_path / "s.png").exists()

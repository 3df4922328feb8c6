"""Analytic tests: every sampler on a 1-D Gaussian mixture with its exact denoiser, convergence orders, and
per-sample reproducibility.

Mixture: weights (0.3, 0.7), means (-2, 1.5), stds (0.3, 0.5): far enough apart that assigning a sample to
its nearest mean misclassifies < 0.1% of exact samples, so the per-component weight and spread estimated that
way are (to 0.5%) the true ones.

- Deterministic samplers start from exact quantiles of p_sigma_max (u_k = (k + 1/2)/N) and are compared
  with the exact quantiles of the data: the probability-flow ODE maps quantiles to quantiles in 1-D, so the
  only error left is discretisation (no sampling noise). Tolerances: weight +-0.01, spread +-3%, mean
  |x - F^-1(u)| < 0.02.
- Stochastic samplers start from exact samples of p_sigma_max (data + sigma_max n) with N = 4000: weight
  standard error 0.007, spread standard error 2-2.5%; tolerances: weight +-0.035, spread +-8%.
"""

from __future__ import annotations

import math

import pytest
import torch

from difflab.data.toy import GaussianMixture, gaussian
from difflab.sampling import SAMPLERS, generate, karras_sigmas, make_generators

SIGMA_MAX = 80.0
GMM = GaussianMixture([[-2.0], [1.5]], [0.3, 0.5], [0.3, 0.7])



def mixture_quantiles(u: torch.Tensor, sigma: float = 0.0) -> torch.Tensor:
    """F^-1(u) of the 1-D mixture convolved with N(0, sigma^2), by bisection (float64)."""
    m, s, w = GMM.means[:, 0], (GMM.stds**2 + sigma**2).sqrt(), GMM.weights
    lo, hi = torch.full_like(u, -20.0 - 10 * sigma), torch.full_like(u, 20.0 + 10 * sigma)
    for _ in range(80):
        mid = (lo + hi) / 2
        below = (w * 0.5 * (1 + torch.erf((mid[:, None] - m) / (s * math.sqrt(2))))).sum(1) < u
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return (lo + hi) / 2


def mixture_stats(x: torch.Tensor):
    """Fraction assigned to component 0 and RMS distance to each component's mean."""
    k = GMM.nearest_mode(x)
    w0 = float((k == 0).double().mean())
    spread = [float(((x[k == j].double() - GMM.means[j]) ** 2).mean().sqrt()) for j in range(2)]
    return w0, spread


def check_mixture(x, w_tol, rel_tol, label):
    w0, spread = mixture_stats(x)
    true = GMM.stds.tolist()
    print(f"{label}: weight {w0:.4f} (0.3), spread {spread[0]:.4f} (0.3), {spread[1]:.4f} (0.5)")
    assert abs(w0 - 0.3) < w_tol, f"{label}: weight {w0:.4f}, expected 0.3 +- {w_tol}"
    for j in range(2):
        assert abs(spread[j] / true[j] - 1) < rel_tol, f"{label}: component {j} spread {spread[j]:.4f} vs {true[j]}"


DETERMINISTIC = [
    ("heun", 32, {}),
    ("ode_heun", 32, {}),
    ("euler", 128, {}),
    ("ode_euler", 128, {}),
    ("ddim", 128, {"eta": 0.0}),
    ("ode_dopri5", 4, {}),
    ("ode_rk4", 16, {}),
    ("dpmpp_2m", 64, {}),
]


@pytest.mark.parametrize("name,steps,opts", DETERMINISTIC, ids=[f"{n}-{s}" for n, s, _ in DETERMINISTIC])
def test_deterministic_sampler_transports_quantiles(name, steps, opts):
    N = 1000
    u = (torch.arange(N, dtype=torch.float64) + 0.5) / N
    x = mixture_quantiles(u, SIGMA_MAX).float()[:, None]
    out = SAMPLERS[name](GMM, x, karras_sigmas(steps, 0.002, SIGMA_MAX), **opts)
    check_mixture(out, 0.01, 0.03, f"{name} {steps} steps")
    transport = (out[:, 0].double() - mixture_quantiles(u)).abs().mean()
    print(f"  mean |x - F^-1(u)| = {transport:.2e}")
    assert transport < (1e-3 if name == "ode_dopri5" else 0.02)


STOCHASTIC = [
    ("ddpm", 400, {"variance": "posterior"}),
    ("ddpm", 200, {"variance": "beta"}),
    ("ddim", 200, {"eta": 0.5}),
    ("ddim", 400, {"eta": 1.0}),
    ("heun", 64, {"S_churn": 10.0}),
    ("euler", 200, {"S_churn": 10.0}),
    ("euler_maruyama", 200, {"sde": "ve"}),
    ("euler_maruyama", 200, {"sde": "vp"}),
    ("pc", 100, {"sde": "ve", "snr_norm": "batch"}),
    ("pc", 100, {"sde": "vp", "snr_norm": "batch"}),
    ("pc", 100, {"predictor": "euler_maruyama", "snr_norm": "batch"}),
    ("pc", 200, {"n_corrector": 0}),
]


@pytest.mark.parametrize("name,steps,opts", STOCHASTIC, ids=[f"{n}-{s}-{o}" for n, s, o in STOCHASTIC])
def test_stochastic_sampler_reproduces_mixture(name, steps, opts):
    N = 4000
    g = torch.Generator().manual_seed(11)
    x = GMM.sample(N, generator=g) + SIGMA_MAX * torch.randn(N, 1, generator=g)
    out = SAMPLERS[name](GMM, x, karras_sigmas(steps, 0.002, SIGMA_MAX), generator=g, **opts)
    check_mixture(out, 0.035, 0.08, f"{name} {steps} steps {opts}")


def test_pc_per_sample_norms_on_a_wide_gaussian():
    """The default corrector (per-sample snr norms) in 256 dims, where ||z||/||score|| concentrates: the
    variance of N(0, 0.5^2 I) is reproduced within 5% (the state-dependent step's bias is ~1/d)."""
    G = gaussian(256, std=0.5)
    g = torch.Generator().manual_seed(0)
    x = G.sample(200, generator=g) + SIGMA_MAX * torch.randn(200, 256, generator=g)
    out = SAMPLERS["pc"](G, x, karras_sigmas(100, 0.002, SIGMA_MAX), generator=g)
    ratio = float(out.var() / 0.25)
    print(f"pc per-sample norms, d=256: variance ratio {ratio:.4f}")
    assert abs(ratio - 1) < 0.05


def test_convergence_order_euler_and_heun():
    """Deterministic PF-ODE from the same initial noise; error vs a very fine Heun solution (2048 steps,
    checked against dopri5 at rtol=atol=1e-10). Doubling the steps divides Euler's error by ~2 and Heun's by ~4."""
    g = torch.Generator().manual_seed(0)
    x = SIGMA_MAX * torch.randn(64, 1, generator=g, dtype=torch.float64)
    ref = SAMPLERS["heun"](GMM, x, karras_sigmas(2048, 0.002, SIGMA_MAX))
    ref_dopri = SAMPLERS["ode_dopri5"](GMM, x, karras_sigmas(8, 0.002, SIGMA_MAX), rtol=1e-10, atol=1e-10)
    assert float((ref - ref_dopri).abs().max()) < 2e-5
    for name, expected, lo, hi in [("euler", 2.0, 1.7, 2.4), ("heun", 4.0, 3.4, 4.8)]:
        errs = [float((SAMPLERS[name](GMM, x, karras_sigmas(n, 0.002, SIGMA_MAX)) - ref).abs().mean())
                for n in (32, 64, 128)]
        ratios = [a / b for a, b in zip(errs[:-1], errs[1:], strict=True)]
        print(f"{name}: errors {[f'{e:.2e}' for e in errs]}, ratios {[f'{r:.2f}' for r in ratios]}")
        for r in ratios:
            assert lo < r < hi, f"{name}: error ratio {r:.2f} when steps double, expected ~{expected}"


@pytest.mark.parametrize("name,opts", [("ddpm", {}), ("ddim", {"eta": 0.7}), ("euler_maruyama", {"sde": "vp"}),
                                       ("pc", {}), ("heun", {"S_churn": 5.0}), ("euler", {"S_churn": 5.0})])
def test_sample_is_the_same_alone_or_in_a_batch(name, opts):
    """Per-sample generators: sample k depends only on generator (seed, k), never on the batch around it."""
    sig = karras_sigmas(6, 0.002, 10.0)
    gens = make_generators(3, 5)
    x = 10.0 * torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    D = GaussianMixture([[-1.0, 0.0], [1.0, 0.5]], 0.3)
    batch = SAMPLERS[name](D, x, sig, generator=gens, **opts)
    alone = SAMPLERS[name](D, x[3:4], sig, generator=make_generators(3, 1, offset=3), **opts)
    torch.testing.assert_close(batch[3:4], alone, rtol=1e-5, atol=1e-6)


def test_generate_is_batch_size_invariant_and_seeded():
    D = GaussianMixture([[-1.0], [1.0]], 0.3)
    kw = dict(sampler="ddpm", steps=8, sigma_max=10.0, seed=5)
    a = generate(D, 6, (1,), **kw)
    b = generate(D, 6, (1,), batch_size=4, **kw)
    c = generate(D, 2, (1,), offset=4, **kw)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a[4:], c)
    assert not torch.allclose(a, generate(D, 6, (1,), **{**kw, "seed": 6}))
    # seed= on a sampler is the same as per-sample generators (seed, index).
    x = 10.0 * torch.randn(3, 1, generator=torch.Generator().manual_seed(0))
    sig = karras_sigmas(5, 0.002, 10.0)
    torch.testing.assert_close(SAMPLERS["pc"](D, x, sig, seed=9), SAMPLERS["pc"](D, x, sig, generator=make_generators(9, 3)))


def test_generate_init_noise_scale_and_callback():
    D = gaussian(1, std=0.5)
    seen = []
    generate(D, 3, (1,), sampler="heun", steps=4, sigma_max=10.0, init_noise_scale=0.1, callback=seen.append)
    first = seen[0]
    assert set(first) >= {"i", "x", "sigma", "sigma_hat", "denoised", "batch_start"}
    assert first["sigma"] == pytest.approx(10.0)
    ref = generate(D, 3, (1,), sampler="heun", steps=4, sigma_max=10.0, callback=lambda f: None)
    # same per-sample noise, scaled down by 0.1 before the first step (the network is still told sigma_max)
    assert first["x"].abs().sum() < ref.abs().sum() * 10
    x0 = make_generators(0, 3)[0]
    z = torch.randn(1, generator=x0)
    assert float(first["x"][0, 0]) == pytest.approx(float(z) * 10.0 * 0.1, rel=1e-5)


def test_cond_and_guidance_reach_the_denoiser():
    calls = []

    def D(x, sigma, **cond):
        calls.append(cond)
        return x / (1 + sigma[:, None] ** 2)

    class Scale:
        def wrap(self, D):
            return lambda x, sigma, **c: 0.5 * D(x, sigma, **c)

    sig = karras_sigmas(3, 0.002, 10.0)
    x = torch.ones(2, 1)
    for name, fn in SAMPLERS.items():
        calls.clear()
        out = fn(D, x, sig, generator=torch.Generator().manual_seed(0), cond={"class_labels": 7}, guidance=Scale())
        assert calls and all(c == {"class_labels": 7} for c in calls), name
        assert out.shape == x.shape and torch.isfinite(out).all(), name


def test_callback_fields_for_every_sampler():
    sig = karras_sigmas(4, 0.002, 10.0)
    D = gaussian(2, std=0.5)
    for name, fn in SAMPLERS.items():
        seen = []
        fn(D, 10 * torch.randn(3, 2, generator=torch.Generator().manual_seed(0)), sig,
           generator=torch.Generator().manual_seed(1), callback=seen.append)
        assert [f["i"] for f in seen] == list(range(4)), name
        for f in seen:
            assert {"i", "x", "sigma", "sigma_hat", "denoised"} <= set(f), name
            assert f["x"].shape == f["denoised"].shape == (3, 2), name

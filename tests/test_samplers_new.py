"""The low-NFE samplers of issue 17: lms, dpm_2, dpmpp_2s_ancestral, dpmpp_sde, dpmpp_3m, dpmpp_2m_sde, dpmpp_3m_sde,
unipc, deis, ipndm.

Three kinds of test:
- analytic: an exact Gaussian denoiser (final variance) and the unequal two-mode mixture of
  test_samplers_analytic (weight 0.3 and spreads, same tolerances and initial states as there);
- order: error at sigma_min (read with the callback) against the closed-form PF-ODE solution of N(0, s^2 I),
  x(sigma) = x(sigma_max) sqrt((s^2 + sigma^2) / (s^2 + sigma_max^2)); log2 of the error ratio when the steps
  double must sit in a window around the method's order;
- oracle: diffusers' scheduler of the same method, same network/denoiser, grid and noise (see each test for
  the tolerance and what is set so that the algorithms coincide).
"""

from __future__ import annotations

import math

import pytest
import torch

from difflab.data.toy import GaussianMixture, gaussian
from difflab.diffusion.precond import VPEpsPrecond
from difflab.sampling import (
    DETERMINISTIC_SAMPLERS,
    SAMPLERS,
    karras_sigmas,
    loguniform_sigmas,
    make_generators,
    polyexponential_sigmas,
    sigma_grid,
)
from test_samplers_analytic import GMM, SIGMA_MAX, check_mixture, mixture_quantiles
from test_samplers_oracle import B, T, TinyNet, assert_matches, gens, run_discrete, x_vp_init

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"), pytest.mark.filterwarnings("ignore::UserWarning")]

NEW = ["lms", "dpm_2", "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_3m", "dpmpp_2m_sde", "dpmpp_3m_sde", "unipc", "deis",
       "ipndm"]
NEW_DETERMINISTIC = [n for n in NEW if n in DETERMINISTIC_SAMPLERS]
NEW_STOCHASTIC = [n for n in NEW if n not in DETERMINISTIC_SAMPLERS]


# ---------------------------------------------------------------------------------------------- analytic


@pytest.mark.parametrize("name", NEW_DETERMINISTIC)
def test_deterministic_new_sampler_transports_quantiles(name):
    """The PF-ODE maps quantiles of p_sigma_max to quantiles of the data (1-D): 48 steps (<= 95 NFE), tolerances
    as test_samplers_analytic."""
    N = 1000
    u = (torch.arange(N, dtype=torch.float64) + 0.5) / N
    x = mixture_quantiles(u, SIGMA_MAX).float()[:, None]
    out = SAMPLERS[name](GMM, x, karras_sigmas(48, 0.002, SIGMA_MAX))
    check_mixture(out, 0.01, 0.03, f"{name} 48 steps")
    transport = (out[:, 0].double() - mixture_quantiles(u)).abs().mean()
    print(f"  mean |x - F^-1(u)| = {transport:.2e}")
    assert transport < 0.02


@pytest.mark.parametrize("name", NEW_STOCHASTIC)
def test_stochastic_new_sampler_reproduces_mixture(name):
    N = 4000
    g = torch.Generator().manual_seed(11)
    x = GMM.sample(N, generator=g) + SIGMA_MAX * torch.randn(N, 1, generator=g)
    out = SAMPLERS[name](GMM, x, karras_sigmas(100, 0.002, SIGMA_MAX), generator=g)
    check_mixture(out, 0.035, 0.08, f"{name} 100 steps")


@pytest.mark.parametrize("name", NEW)
def test_new_sampler_gaussian_final_variance(name):
    """N(0, 0.5^2 I) in 16 dims from exact samples of p_sigma_max: the final variance within 5% (32000 values:
    standard error 0.8%) after 100 steps (at 20 even Heun is 9% off here: sigma_max / s = 160)."""
    G = gaussian(16, std=0.5)
    g = torch.Generator().manual_seed(5)
    x = G.sample(2000, generator=g) + SIGMA_MAX * torch.randn(2000, 16, generator=g)
    out = SAMPLERS[name](G, x, karras_sigmas(100, 0.002, SIGMA_MAX), generator=g)
    ratio = float(out.double().var() / 0.25)
    print(f"{name}: variance ratio {ratio:.4f}")
    assert abs(ratio - 1) < 0.05


# ---------------------------------------------------------------------------------------------- order

S_GAUSS = 0.5
G_ORDER = gaussian(4, std=S_GAUSS)
X_ORDER = SIGMA_MAX * torch.randn(8, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def error_at_sigma_min(name, steps, **opts):
    seen = {}
    SAMPLERS[name](G_ORDER, X_ORDER, karras_sigmas(steps, 0.002, SIGMA_MAX),
                   callback=lambda f: seen.__setitem__(f["i"], f["x"]), **opts)
    exact = X_ORDER * math.sqrt((S_GAUSS**2 + 0.002**2) / (S_GAUSS**2 + SIGMA_MAX**2))
    return float((seen[steps - 1] - exact).abs().max() / exact.abs().max())


ORDERS = [  # name, options, expected order, slope window (log2 of the error ratio at 64 -> 128 -> 256 steps)
    ("lms", {}, 4, (3.4, 4.6)),
    ("lms", {"order": 2}, 2, (1.8, 2.3)),
    ("dpm_2", {}, 2, (1.8, 2.3)),
    ("dpmpp_2s_ancestral", {"eta": 0.0}, 2, (1.8, 2.3)),
    ("dpmpp_sde", {"eta": 0.0}, 2, (1.8, 2.3)),
    ("dpmpp_2m_sde", {"eta": 0.0}, 2, (1.8, 2.3)),
    ("dpmpp_3m", {"third_order": "exact"}, 3, (2.7, 3.5)),
    ("dpmpp_3m_sde", {"eta": 0.0, "third_order": "exact"}, 3, (2.7, 3.5)),
    ("dpmpp_3m", {}, 2, (1.6, 2.3)),  # the reference coefficient of DPM-Solver++/diffusers/k-diffusion: order 2
    ("unipc", {"order": 3}, 4, (3.6, 4.6)),  # UniPC-3 = UniP-3 + UniC: order 4 (Zhao et al. 2023, Theorem 3.1)
    ("unipc", {"order": 3, "variant": "bh1"}, 4, (3.6, 4.6)),
    ("unipc", {}, 3, (2.7, 3.5)),  # the default, UniPC-2: order 3
    ("unipc", {"order": 1}, 2, (1.8, 2.3)),
    ("unipc", {"order": 2, "use_corrector": False}, 2, (1.8, 2.3)),
    ("deis", {}, 3, (2.6, 3.5)),
    ("deis", {"order": 2}, 2, (1.8, 2.3)),
    ("ipndm", {}, 2, (1.8, 2.3)),  # fixed uniform-step coefficients on a non-uniform grid: 2nd order measured
]


@pytest.mark.parametrize("name,opts,order,window", ORDERS, ids=[f"{n}-{o}" for n, o, _, _ in ORDERS])
def test_convergence_order_on_exact_gaussian(name, opts, order, window):
    errs = [error_at_sigma_min(name, n, **opts) for n in (64, 128, 256)]
    slopes = [math.log2(a / b) for a, b in zip(errs[:-1], errs[1:], strict=True)]
    print(f"{name} {opts}: errors {[f'{e:.2e}' for e in errs]}, slopes {[f'{s:.2f}' for s in slopes]} (order {order})")
    for s in slopes:
        assert window[0] < s < window[1], f"{name} {opts}: slope {s:.2f}, expected ~{order}"


# ---------------------------------------------------------------------------------------------- equivalences


def test_eta0_sde_samplers_are_their_ode_counterparts():
    x = SIGMA_MAX * torch.randn(6, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    D = GaussianMixture([[-1.0, 0.0], [1.0, 0.5]], 0.3, [0.3, 0.7])
    sig = karras_sigmas(12, 0.002, SIGMA_MAX)
    torch.testing.assert_close(SAMPLERS["dpmpp_2m_sde"](D, x, sig, eta=0.0), SAMPLERS["dpmpp_2m"](D, x, sig))
    torch.testing.assert_close(SAMPLERS["dpmpp_3m_sde"](D, x, sig, eta=0.0), SAMPLERS["dpmpp_3m"](D, x, sig))
    torch.testing.assert_close(SAMPLERS["dpmpp_sde"](D, x, sig, eta=0.0),
                               SAMPLERS["dpmpp_2s_ancestral"](D, x, sig, eta=0.0))
    torch.testing.assert_close(SAMPLERS["deis"](D, x, sig, order=1), SAMPLERS["ode_euler"](D, x, sig))
    torch.testing.assert_close(SAMPLERS["ipndm"](D, x, sig, order=1), SAMPLERS["euler"](D, x, sig))


@pytest.mark.parametrize("name", NEW_STOCHASTIC)
def test_new_sampler_same_alone_or_in_a_batch(name):
    sig = karras_sigmas(6, 0.002, 10.0)
    x = 10.0 * torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    D = GaussianMixture([[-1.0, 0.0], [1.0, 0.5]], 0.3)
    batch = SAMPLERS[name](D, x, sig, generator=make_generators(3, 5))
    alone = SAMPLERS[name](D, x[3:4], sig, generator=make_generators(3, 1, offset=3))
    torch.testing.assert_close(batch[3:4], alone, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(batch, SAMPLERS[name](D, x, sig, generator=make_generators(4, 5)))


def test_bad_options_are_value_errors():
    x, sig = torch.zeros(2, 2), karras_sigmas(4, 0.002, 10.0)
    D = gaussian(2, std=0.5)
    for name, opts, word in [("unipc", {"order": 4}, "order"), ("unipc", {"variant": "bh3"}, "variant"),
                             ("deis", {"order": 0}, "order"), ("lms", {"order": 5}, "order"),
                             ("dpmpp_2m_sde", {"eta": -1.0}, "eta"), ("dpmpp_sde", {"s_noise": float("nan")}, "s_noise"),
                             ("dpmpp_3m_sde", {"noise": "pink"}, "noise"), ("dpmpp_3m", {"third_order": "x"}, "third"),
                             ("dpmpp_sde", {"r": 0.0}, "r must"), ("dpm_2", {"S_churn": -1.0}, "S_churn"),
                             ("ipndm", {"typo": 1}, "unknown option")]:
        with pytest.raises(ValueError, match=word):
            SAMPLERS[name](D, x, sig, **opts)


# Brownian-tree noise: tests/test_samplers_oracle_sde.py.


# ---------------------------------------------------------------------------------------------- grids


def test_polyexponential_grid():
    s = polyexponential_sigmas(10, 0.002, 80.0, rho=1.0)
    torch.testing.assert_close(s, loguniform_sigmas(10, 0.002, 80.0))
    s = sigma_grid("polyexponential", 10, 0.002, 80.0)  # default rho = 2
    assert float(s[0]) == pytest.approx(80.0) and float(s[-2]) == pytest.approx(0.002) and float(s[-1]) == 0.0
    assert (s[1:] < s[:-1]).all()
    ramp = torch.linspace(1, 0, 10, dtype=torch.float64) ** 2
    torch.testing.assert_close(s[:-1], (ramp * math.log(80 / 0.002) + math.log(0.002)).exp().float())
    assert torch.equal(sigma_grid("karras", 7, 0.002, 80.0), karras_sigmas(7, 0.002, 80.0, 7.0))
    with pytest.raises(ValueError, match="rho"):
        polyexponential_sigmas(5, rho=0.0)


# ---------------------------------------------------------------------------------------------- oracles

diffusers = pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def net():
    return TinyNet().eval().requires_grad_(False)


def _dpm_multistep(**kw):
    return diffusers.DPMSolverMultistepScheduler(num_train_timesteps=T, beta_schedule="linear", beta_start=1e-4,
                                                 beta_end=0.02, timestep_spacing="leading", final_sigmas_type="zero",
                                                 steps_offset=0, **kw)


def _ours_on(sched, name, net, **opts):
    sigmas = sched.sigmas
    x = x_vp_init() * math.sqrt(1 + float(sigmas[0]) ** 2)
    return SAMPLERS[name](VPEpsPrecond(net, T=T), x, sigmas, **opts)


@pytest.mark.parametrize("solver_type", ["heun", "midpoint"])
def test_dpmpp_3m_matches_diffusers(net, solver_type):
    """DPMSolverMultistepScheduler(solver_order=3): 16 steps so that lower_order_final only drops the last step
    (to sigma = 0) to first order; difflab's default third_order='dpm_solver' is diffusers' coefficient. The grid is
    diffusers' own (see test_dpmpp_2m_matches_diffusers). Tolerance 2e-5 of the scale: float32 round-off
    (diffusers computes its coefficients in float32, difflab in float64)."""
    sched = _dpm_multistep(algorithm_type="dpmsolver++", solver_order=3, solver_type=solver_type)
    theirs = run_discrete(sched, net, 16)
    ours = _ours_on(sched, "dpmpp_3m", net, solver_type=solver_type)
    assert_matches(ours, theirs)
    # The exact coefficient is a different (3rd-order) method: it does not match.
    exact = _ours_on(sched, "dpmpp_3m", net, third_order="exact", solver_type=solver_type)
    assert float((exact - theirs).abs().max()) > 1e-4


def test_dpmpp_2m_sde_matches_diffusers(net):
    """algorithm_type='sde-dpmsolver++', solver_order=2 (midpoint), one list of per-sample generators each side:
    diffusers draws randn_tensor(shape, generator=list) every step, difflab one row per generator per step,
    the same numbers (the last draw of diffusers, at the step to sigma = 0, multiplies sigma' = 0).
    Tolerance 1e-4 of the scale: float32 coefficients on an SDE path."""
    sched = _dpm_multistep(algorithm_type="sde-dpmsolver++", solver_order=2, solver_type="midpoint")
    theirs = run_discrete(sched, net, 16, generator=gens())
    ours = _ours_on(sched, "dpmpp_2m_sde", net, generator=gens())
    assert_matches(ours, theirs, rel=1e-4)
    # ... and the heun variant's 2nd-order term is that of dpmpp_3m_sde's warm-up (order 2 here).
    sched = _dpm_multistep(algorithm_type="sde-dpmsolver++", solver_order=2, solver_type="heun")
    theirs = run_discrete(sched, net, 16, generator=gens())
    ours = _ours_on(sched, "dpmpp_2m_sde", net, generator=gens(), solver_type="heun")
    assert_matches(ours, theirs, rel=1e-4)


@pytest.mark.parametrize("variant,order", [("bh2", 3), ("bh2", 2), ("bh2", 1)])
def test_unipc_matches_diffusers(net, variant, order):
    """UniPCMultistepScheduler(predict_x0=True, lower_order_final=True, final_sigmas_type='zero') on its own
    grid, 12 steps; tolerance 2e-5 of the scale (float32 coefficients in diffusers)."""
    sched = _unipc(order, variant, "zero", True)
    theirs = run_discrete(sched, net, 12)
    ours = _ours_on(sched, "unipc", net, order=order, variant=variant)
    assert_matches(ours, theirs)


def _unipc(order, variant, final, lower_order_final):
    return diffusers.UniPCMultistepScheduler(num_train_timesteps=T, beta_schedule="linear", beta_start=1e-4,
                                             beta_end=0.02, solver_order=order, solver_type=variant,
                                             timestep_spacing="leading", final_sigmas_type=final, steps_offset=0,
                                             lower_order_final=lower_order_final)


def _ours_before_last(sched, name, net, **opts):
    """difflab on diffusers' grid ending at sigma_min with 0 appended, read at sigma_min with the callback
    and VP-scaled as diffusers' sample."""
    grid = torch.cat([sched.sigmas, torch.zeros(1)])
    seen = {}
    x = x_vp_init() * math.sqrt(1 + float(grid[0]) ** 2)
    SAMPLERS[name](VPEpsPrecond(net, T=T), x, grid, callback=lambda f: seen.__setitem__(f["i"], f["x"]), **opts)
    n = len(grid) - 2
    return seen[n] / math.sqrt(1 + float(grid[n]) ** 2)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_unipc_bh1_matches_diffusers(net, order):
    """B(h) = h: diffusers' step to sigma = 0 is NaN for bh1 (B(h) = -inf times a zero correction), so both
    run to the table's sigma_min (final_sigmas_type='sigma_min', difflab with 0 appended and read there) and
    without lower_order_final (whose 'last steps' would differ by the appended step). Tolerance 2e-5."""
    sched = _unipc(order, "bh1", "sigma_min", False)
    theirs = run_discrete(sched, net, 12)
    assert_matches(_ours_before_last(sched, "unipc", net, order=order, variant="bh1", lower_order_final=False), theirs)


@pytest.mark.parametrize("order", [2, 3])
def test_deis_matches_diffusers(net, order):
    """DEISMultistepScheduler(algorithm_type='deis') ends at the table's sigma at t = 0 (~0.01), not at 0: difflab
    runs that grid with a final 0 appended and is compared at the level before its last step (read with the
    callback). 16 steps, so diffusers' lower_order_final (< 15 steps) is off. Tolerance 2e-5 of the scale."""
    sched = diffusers.DEISMultistepScheduler(num_train_timesteps=T, beta_schedule="linear", beta_start=1e-4,
                                             beta_end=0.02, solver_order=order, timestep_spacing="leading",
                                             steps_offset=0)
    theirs = run_discrete(sched, net, 16)
    assert_matches(_ours_before_last(sched, "deis", net, order=order), theirs)


D2 = GaussianMixture([[-1.0, 0.5], [1.0, -0.5]], [0.3, 0.6], [0.3, 0.7])


def _x_ve():
    return SIGMA_MAX * torch.randn(B, 2, generator=torch.Generator().manual_seed(3))


def test_ipndm_matches_diffusers():
    """IPNDMScheduler on a Karras grid: its 'betas'/'alphas' (sin/cos of the VP angle) are set to
    sigma/sqrt(1 + sigma^2) and 1/sqrt(1 + sigma^2) of the grid, the model returns the v-prediction
    alpha eps - beta x0 of the exact mixture denoiser (diffusers turns it into eps). Tolerance 2e-5."""
    steps = 10
    sig = karras_sigmas(steps, 0.002, SIGMA_MAX)
    sched = diffusers.IPNDMScheduler(num_train_timesteps=1000)
    sched.set_timesteps(steps)
    sched.betas, sched.alphas = sig / (1 + sig**2).sqrt(), 1 / (1 + sig**2).sqrt()
    x0 = _x_ve()
    x = x0 / math.sqrt(1 + float(sig[0]) ** 2)
    for i, t in enumerate(sched.timesteps):
        s, a, b = float(sig[i]), float(sched.alphas[i]), float(sched.betas[i])
        x_ve = x / a
        den = D2(x_ve, s)
        v = a * (x_ve - den) / s - b * den
        x = sched.step(v, t, x).prev_sample
    assert_matches(SAMPLERS["ipndm"](D2, x0, sig), x)


def test_lms_matches_diffusers():
    """LMSDiscreteScheduler (order 4) with its sigmas set to a Karras grid; the model's eps comes from the
    exact mixture denoiser at the scheduler's sigma. diffusers integrates the Lagrange basis with
    scipy.integrate.quad (exact for these polynomials), difflab in closed form. Tolerance 2e-5."""
    steps = 10
    sig = karras_sigmas(steps, 0.002, SIGMA_MAX)
    sched = diffusers.LMSDiscreteScheduler(num_train_timesteps=1000)
    sched.set_timesteps(steps)
    sched.sigmas = sig.clone()
    x0 = _x_ve()
    x = x0.clone()
    for i, t in enumerate(sched.timesteps):
        s = float(sig[i])
        x = sched.step((x - D2(x, s)) / s, t, x).prev_sample
    assert_matches(SAMPLERS["lms"](D2, x0, sig), x)


def test_dpm_2_matches_diffusers_kdpm2():
    """KDPM2DiscreteScheduler on its own grid (two step() calls per level: Euler to the geometric midpoint,
    then the full step with the midpoint's derivative); the model's eps comes from the exact mixture
    denoiser at the sigma the scheduler is at (sigmas or sigmas_interpol, as its scale_model_input). Compared
    at the last level before sigma = 0 (diffusers' final midpoint is sigma = 0, where its derivative is 0/0).
    Tolerance 2e-5."""
    steps = 8
    sched = diffusers.KDPM2DiscreteScheduler(num_train_timesteps=1000)
    sched.set_timesteps(steps)
    grid = sched.sigmas.unique_consecutive()
    x0 = grid[0] * torch.randn(B, 2, generator=torch.Generator().manual_seed(3))
    x = x0.clone()
    for t in sched.timesteps[: 2 * (steps - 1)]:
        idx = 0 if sched.step_index is None else sched.step_index
        s = float(sched.sigmas[idx] if sched.state_in_first_order else sched.sigmas_interpol[idx])
        x = sched.step((x - D2(x, s)) / s, t, x).prev_sample
    seen = {}
    SAMPLERS["dpm_2"](D2, x0, grid, callback=lambda f: seen.__setitem__(f["i"], f["x"]))
    assert_matches(seen[steps - 1], x)


# ---------------------------------------------------------------------------------------------- fixes


@pytest.mark.parametrize("steps", [2, 3, 4, 6, 8])
def test_ode_rk4_is_stable_on_coarse_grids(steps):
    """A Karras grid with few steps has |d ln sigma| up to 10.6, far beyond RK4's stable step (2.79): such
    intervals are split into substeps of <= 1 in ln sigma, so the result stays near the exact solution (it
    used to reach 1e3 for 2 steps) and stats['nfe'] counts the extra evaluations."""
    G = gaussian(4, std=0.5)
    x = SIGMA_MAX * torch.randn(64, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sig = karras_sigmas(steps, 0.002, SIGMA_MAX)
    stats = {}
    out = SAMPLERS["ode_rk4"](G, x, sig, stats=stats)
    exact = x * (0.5 / math.sqrt(0.25 + SIGMA_MAX**2))
    err = float((out - exact).abs().max() / exact.abs().max())
    du = sig[:-1].double().log().diff().abs()
    assert stats["nfe"] == 4 * int(torch.ceil(du - 1e-9).clamp_min(1).sum()) + 1
    print(f"{steps} steps: nfe {stats['nfe']}, relative error {err:.3g}")
    assert err < 0.1


def test_ode_rk4_unchanged_on_fine_grids():
    """Where every interval is <= 1 in ln sigma (here 32 Karras steps) nothing is split: 4 (N - 1) + 1 NFE."""
    stats = {}
    sig = karras_sigmas(32, 0.002, SIGMA_MAX)
    assert float(sig[:-1].log().diff().abs().max()) <= 1.0
    SAMPLERS["ode_rk4"](GMM, torch.zeros(2, 1), sig, stats=stats)
    assert stats["nfe"] == 4 * 31 + 1


def test_pc_default_in_one_dimension():
    """The default corrector (snr_norm='expected', a state-independent step) on the 1-D 0.3/0.7 mixture,
    100 steps: weight 0.30 +- 0.02 (per-sample realised norms, the old default, are unstable in 1-D)."""
    N = 4000
    g = torch.Generator().manual_seed(11)
    x = GMM.sample(N, generator=g) + SIGMA_MAX * torch.randn(N, 1, generator=g)
    out = SAMPLERS["pc"](GMM, x, karras_sigmas(100, 0.002, SIGMA_MAX), generator=g)
    check_mixture(out, 0.02, 0.08, "pc default, 1-D")


def test_sigma_reaches_the_denoiser_in_x_dtype():
    seen = []

    def D(x, sigma, **c):
        seen.append(sigma.dtype)
        return x / (1 + sigma[:, None] ** 2)

    sig = karras_sigmas(3, 0.002, 10.0)
    for dtype in (torch.float64, torch.float32):
        seen.clear()
        for name in NEW + ["heun", "dpmpp_2m", "ddim"]:
            SAMPLERS[name](D, torch.ones(2, 1, dtype=dtype), sig, generator=torch.Generator().manual_seed(0))
        assert set(seen) == {dtype}


def test_ddim_eta_above_one_where_defined():
    """eq. 16 is defined for eta^2 <= sigma^2 / (sigma^2 - sigma'^2) at every step to sigma' > 0: on a 200-step
    Karras grid that allows eta ~1.2. eta = 1.1 runs (more noise than DDPM, still the right marginals: the
    1-D mixture's weight and spreads as in the stochastic analytic tests); beyond the bound a ValueError."""
    sig = karras_sigmas(200, 0.002, SIGMA_MAX)
    s = sig[:-2].double()
    bound = float((s**2 / (s**2 - sig[1:-1].double() ** 2)).min().sqrt())
    assert bound > 1.1
    g = torch.Generator().manual_seed(11)
    x = GMM.sample(4000, generator=g) + SIGMA_MAX * torch.randn(4000, 1, generator=g)
    check_mixture(SAMPLERS["ddim"](GMM, x, sig, generator=g, eta=1.1), 0.035, 0.08, "ddim eta 1.1")
    with pytest.raises(ValueError, match="eta"):
        SAMPLERS["ddim"](GMM, x, sig, eta=bound * 1.01)

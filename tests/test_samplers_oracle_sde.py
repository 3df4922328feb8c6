"""Oracle tests for the stochastic low-NFE samplers of issue 17 (dpmpp_2s_ancestral, dpmpp_sde, dpmpp_2m_sde,
dpmpp_3m_sde) and the Brownian-tree noise.

Two oracles:
- k-diffusion's algorithms (``sample_dpmpp_2s_ancestral``, ``sample_dpmpp_2m_sde``, ``sample_dpmpp_3m_sde``,
  ``BrownianTreeNoiseSampler``). k-diffusion cannot be imported here (it needs torchvision), so each is written below
  from its mathematics (Lu et al. 2022, DPM-Solver++, Algorithm 1 and App. B, in lambda = -ln sigma; the SDE
  exponential integrator with h_eta = (1 + eta) h) as an independent reference, without difflab's helpers, and fed
  the same noise as difflab: a noise sampler ``z(sigma, sigma_next)`` that draws one row per sample from clones of
  the per-sample generators, in the order difflab draws (one draw per step that adds noise).
- diffusers: DPMSolverMultistepScheduler(algorithm_type='sde-dpmsolver++') given the same noise through
  ``step(..., variance_noise=z)``, and DPMSolverSinglestepScheduler (order 2) for the deterministic (eta = 0)
  DPM-Solver++(2S); diffusers has no ancestral DPM-Solver++(2S) (its singlestep 'sde-dpmsolver++' draws fresh noise
  per stage, not the ancestral split), so eta > 0 is checked against the k-diffusion reference only.

Denoisers: the exact Gaussian-mixture denoiser in float64 (tolerance 1e-10: only round-off differs) and the tiny
random conv net of test_samplers_oracle (float32; tolerances relative to the output's scale as there).
"""

from __future__ import annotations

import math

import pytest
import torch

from difflab.data.toy import GaussianMixture
from difflab.diffusion.precond import EDMPrecond, VPEpsPrecond
from difflab.sampling import SAMPLERS, karras_sigmas, make_generators
from test_samplers_oracle import B, T, TinyNet, assert_matches, x_vp_init
from test_samplers_oracle import _clone as clones

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::UserWarning")]

MIX = GaussianMixture([[-1.0, 0.0], [1.0, 0.5]], [0.3, 0.5], [0.3, 0.7])
SIG = 10.0


def fresh_noise(x, gens):
    """k-diffusion's noise_sampler(sigma, sigma_next) with one generator per sample (row i from generator i)."""
    gens = clones(gens)
    return lambda sigma, sigma_next: torch.stack([torch.randn(x.shape[1:], generator=g, dtype=x.dtype) for g in gens])


def call(D, x, sigma):
    return D(x, torch.full((x.shape[0],), sigma, dtype=x.dtype))


# ---------------------------------------------------------------------------------------------- references


def ref_dpmpp_2s_ancestral(D, x, sigmas, eta, s_noise, z):
    """k-diffusion's sample_dpmpp_2s_ancestral: the ancestral split of Song et al. 2021 (DDIM eq. 16 in VE variables,
    sigma_up capped at sigma'), DPM-Solver++(2S) (Lu et al. 2022, Algorithm 1, r = 1/2) from sigma to sigma_down
    in lambda = -ln sigma, an Euler step where sigma_down = 0, then sigma_up-scaled noise."""
    sigmas = [float(s) for s in sigmas]
    for s, s_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        d = call(D, x, s)
        s_up = min(s_next, eta * math.sqrt(s_next**2 * (s**2 - s_next**2) / s**2)) if eta else 0.0
        s_down = math.sqrt(s_next**2 - s_up**2)
        if s_down == 0:
            x = x + (s_down - s) * (x - d) / s
        else:
            lam, lam_down = -math.log(s), -math.log(s_down)
            h = lam_down - lam
            lam_mid = lam + h / 2
            x_2 = math.exp(lam - lam_mid) * x - math.expm1(-h / 2) * d
            x = math.exp(-h) * x - math.expm1(-h) * call(D, x_2, math.exp(-lam_mid))
        if s_next > 0 and s_up > 0:
            x = x + z(s, s_next) * s_noise * s_up
    return x


def c2_kdiffusion(h_eta):
    """-phi_3(h_eta), phi_3 = phi_2 / h_eta - 1/2, phi_2 = 1 + (e^{-h_eta} - 1) / h_eta (k-diffusion, DPM-Solver++)."""
    return -((math.expm1(-h_eta) / h_eta + 1) / h_eta - 0.5)


def c2_diffusers(h_eta):
    """diffusers' D2 coefficient of the third-order sde-dpmsolver++ update ((1 - e^{-2h} - 2h)/(2h)^2 - 1/2 with
    h_eta = 2h, eta = 1): c2_kdiffusion(h_eta) - 1."""
    return -(math.expm1(-h_eta) + h_eta) / h_eta**2 - 0.5


def ref_dpmpp_multistep_sde(D, x, sigmas, order, eta, s_noise, z, solver_type="heun", c2=c2_kdiffusion):
    """k-diffusion's sample_dpmpp_2m_sde (order 2) / sample_dpmpp_3m_sde (order 3): the exponential integrator of
    the data-prediction SDE, h = ln(sigma / sigma'), h_eta = (1 + eta) h,
        x' = (sigma'/sigma) e^{-eta h} x + (1 - e^{-h_eta}) D_0 + phi_2 D_1 + c2(h_eta) D_2
             + sigma' sqrt(1 - e^{-2 eta h}) s_noise z,
    D_1, D_2 the divided differences of the denoised history in lambda (Lu et al. 2022, App. B), the midpoint
    2nd-order term (1 - e^{-h_eta}) D_1 / 2 for solver_type 'midpoint', and x' = D on the step to sigma' = 0."""
    sigmas = [float(s) for s in sigmas]
    hist = []  # (denoised, h) of earlier steps, oldest first
    for s, s_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        d = call(D, x, s)
        if s_next == 0:
            x = d
            continue
        h = math.log(s / s_next)
        h_eta = (1 + eta) * h
        phi_2 = math.expm1(-h_eta) / h_eta + 1
        x = (s_next / s) * math.exp(-eta * h) * x - math.expm1(-h_eta) * d
        if order == 3 and len(hist) >= 2:
            (d_2, h_2), (d_1, h_1) = hist[-2:]
            r0, r1 = h_1 / h, h_2 / h
            g0, g1 = (d - d_1) / r0, (d_1 - d_2) / r1
            x = x + phi_2 * (g0 + (g0 - g1) * r0 / (r0 + r1)) + c2(h_eta) * (g0 - g1) / (r0 + r1)
        elif hist:
            d_1, h_1 = hist[-1]
            D1 = (d - d_1) / (h_1 / h)
            x = x + (phi_2 if solver_type == "heun" else -0.5 * math.expm1(-h_eta)) * D1
        if eta > 0:
            x = x + z(s, s_next) * s_next * math.sqrt(-math.expm1(-2 * eta * h)) * s_noise
        hist.append((d, h))
    return x


# ---------------------------------------------------------------------------------------------- vs k-diffusion


def _mixture_start(n=6, seed=1):
    return SIG * torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("eta,s_noise", [(0.0, 1.0), (0.5, 1.0), (1.0, 0.8), (3.0, 1.0)])
def test_dpmpp_2s_ancestral_matches_kdiffusion_algorithm(eta, s_noise):
    """Exact mixture denoiser, 8 Karras steps, per-sample generators; eta = 3 makes sigma_up hit its cap sigma'
    (sigma_down = 0: the Euler branch) on every step of this coarse grid."""
    x, sig = _mixture_start(), karras_sigmas(8, 0.002, SIG)
    gens = make_generators(3, x.shape[0])
    ref = ref_dpmpp_2s_ancestral(MIX, x, sig, eta, s_noise, fresh_noise(x, gens))
    ours = SAMPLERS["dpmpp_2s_ancestral"](MIX, x, sig, generator=gens, eta=eta, s_noise=s_noise)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name,order,solver_type", [("dpmpp_2m_sde", 2, "midpoint"), ("dpmpp_2m_sde", 2, "heun"),
                                                    ("dpmpp_3m_sde", 3, "heun")])
@pytest.mark.parametrize("eta,s_noise", [(1.0, 1.0), (0.5, 0.8)])
def test_dpmpp_sde_multistep_matches_kdiffusion_algorithm(name, order, solver_type, eta, s_noise):
    x, sig = _mixture_start(), karras_sigmas(10, 0.002, SIG)
    gens = make_generators(5, x.shape[0])
    ref = ref_dpmpp_multistep_sde(MIX, x, sig, order, eta, s_noise, fresh_noise(x, gens), solver_type)
    ours = SAMPLERS[name](MIX, x, sig, generator=gens, eta=eta, s_noise=s_noise, solver_type=solver_type)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------------------------- vs diffusers

diffusers = pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def net():
    return TinyNet().eval().requires_grad_(False)


def test_dpmpp_2s_matches_diffusers_singlestep(net):
    """eta = 0: DPMSolverSinglestepScheduler(dpmsolver++, solver_order=2, midpoint) on the grid sigma_0, m_0,
    sigma_1, m_1, ..., sigma_{n-1}, 0 with m_i = sqrt(sigma_i sigma_{i+1}) the midpoints in lambda: its order list
    [1, 2, 1, 2, ..., 1] makes each pair (first-order step to m_i, second-order step from sigma_i with D_1 =
    (D(m_i) - D(sigma_i)) / r, r = 1/2) one DPM-Solver++(2S) step, and the last step x <- D. The scheduler's own
    sigmas are replaced by this grid (its update formulas read only ``sched.sigmas``); the model is difflab's D
    on the same tiny net (prediction_type='sample', fed x_VP sqrt(1 + sigma^2)). 2n - 1 = 13 NFE both sides."""
    n = 7
    D = EDMPrecond(net, sigma_data=0.5)
    sig = karras_sigmas(n, 0.002, SIG)
    s = sig[:-1].double()
    mids = (s[:-1] * s[1:]).sqrt()
    grid = torch.stack([s[:-1], mids], 1).reshape(-1)
    grid = torch.cat([grid, s[-1:], torch.zeros(1, dtype=torch.float64)]).float()
    sched = diffusers.DPMSolverSinglestepScheduler(num_train_timesteps=T, algorithm_type="dpmsolver++", solver_order=2,
                                                   solver_type="midpoint", prediction_type="sample",
                                                   lower_order_final=True, final_sigmas_type="zero")
    sched.set_timesteps(2 * n - 1)
    assert sched.order_list == [1, 2] * (n - 1) + [1]
    sched.sigmas = grid
    x_vp = x_vp_init()
    for k, t in enumerate(sched.timesteps):
        sigma = float(grid[k])
        out = D(x_vp * math.sqrt(1 + sigma**2), torch.full((B,), sigma))
        x_vp = sched.step(out, t, x_vp).prev_sample
    x0 = x_vp_init() * math.sqrt(1 + SIG**2)
    assert_matches(SAMPLERS["dpmpp_2s_ancestral"](D, x0, sig, eta=0.0), x_vp)
    assert_matches(ref_dpmpp_2s_ancestral(D, x0, sig, 0.0, 1.0, None), x_vp)


@pytest.mark.parametrize("order,solver_type", [(2, "midpoint"), (2, "heun"), (3, "heun")])
def test_dpmpp_sde_matches_diffusers_variance_noise(net, order, solver_type):
    """DPMSolverMultistepScheduler(algorithm_type='sde-dpmsolver++', solver_order=order) vs dpmpp_2m_sde /
    dpmpp_3m_sde (eta = 1), 16 steps on diffusers' own grid (>= 15 steps: lower_order_final only makes the last
    step, to sigma = 0, first order, x <- D in both), the same noise: z_i is drawn from clones of the per-sample
    generators and passed as ``variance_noise``, difflab draws it from the generators themselves.

    Order 2: all three agree (float32 coefficients in diffusers: tolerance 1e-4 of the scale).
    Order 3, a documented difference: diffusers' third-order SDE update weights D_2 by
    (1 - e^{-2h} - 2h)/(2h)^2 - 1/2, k-diffusion (and difflab) by -phi_3(2h) = (1 - e^{-2h} - 2h)/(2h)^2 + 1/2, one
    whole D_2 apart on every third-order step (the first two steps, orders 1 and 2, coincide). So diffusers is
    compared with the reference run with diffusers' coefficient (same algorithm otherwise), difflab with the
    reference run with k-diffusion's, and difflab is checked to agree with diffusers at the level before the first
    third-order step (read with the callback) and to differ at the end (else the docstrings' claim is stale)."""
    steps, name = 16, ("dpmpp_2m_sde" if order == 2 else "dpmpp_3m_sde")
    sched = diffusers.DPMSolverMultistepScheduler(num_train_timesteps=T, beta_schedule="linear", beta_start=1e-4,
                                                  beta_end=0.02, timestep_spacing="leading", final_sigmas_type="zero",
                                                  steps_offset=0, algorithm_type="sde-dpmsolver++",
                                                  solver_order=order, solver_type=solver_type)
    sched.set_timesteps(steps)
    sigmas = sched.sigmas
    D = VPEpsPrecond(net, T=T)
    x0 = x_vp_init() * math.sqrt(1 + float(sigmas[0]) ** 2)
    z = fresh_noise(x0, make_generators(9, B))
    noises = [z(None, None) for _ in range(steps - 1)] + [torch.zeros_like(x0)]
    x_vp = x_vp_init()
    for t, zi in zip(sched.timesteps, noises, strict=True):
        x_vp = sched.step(net(x_vp, t.float().expand(B)), t, x_vp, variance_noise=zi).prev_sample
    seen = {}
    ours = SAMPLERS[name](D, x0, sigmas, generator=make_generators(9, B), solver_type=solver_type,
                          callback=lambda f: seen.__setitem__(f["i"], f["x"]))
    replay = iter(noises)
    ref = ref_dpmpp_multistep_sde(D, x0, sigmas, order, 1.0, 1.0, lambda s, s_next: next(replay), solver_type)
    assert_matches(ours, ref, rel=1e-5)
    if order == 2:
        assert_matches(ours, x_vp, rel=1e-4)
        return
    replay = iter(noises)
    ref_diffusers = ref_dpmpp_multistep_sde(D, x0, sigmas, 3, 1.0, 1.0, lambda s, s_next: next(replay), solver_type,
                                            c2=c2_diffusers)
    assert_matches(ref_diffusers, x_vp, rel=1e-4)
    assert float((ours - x_vp).abs().max()) > 1e-2 * float(x_vp.abs().max())
    # Before the first third-order step: diffusers' sample after two steps (VP-scaled) is difflab's x at level 2.
    x_vp2 = x_vp_init()
    sched.set_timesteps(steps)
    for t, zi in zip(sched.timesteps[:2], noises, strict=False):
        x_vp2 = sched.step(net(x_vp2, t.float().expand(B)), t, x_vp2, variance_noise=zi).prev_sample
    assert_matches(seen[2] / math.sqrt(1 + float(sigmas[2]) ** 2), x_vp2, rel=1e-4)


# ---------------------------------------------------------------------------------------------- Brownian tree


def tree_noise(x, sigma_min, sigma_max, gens):
    """k-diffusion's BrownianTreeNoiseSampler over [sigma_min, sigma_max] with one torchsde.BrownianTree per sample,
    each seeded with that sample's entropy (difflab's rule: the first ``randint(0, 2**62)`` of the sample's
    generator), returning (W(sigma) - W(sigma')) / sqrt(sigma - sigma'). k-diffusion returns the opposite sign,
    (W(sigma') - W(sigma)) / sqrt(|sigma - sigma'|) (its BatchedBrownianTree flips the sign of a decreasing
    interval): the mirrored path -W, again a Brownian motion, so the two conventions have the same law."""
    torchsde = pytest.importorskip("torchsde")
    trees = [torchsde.BrownianTree(sigma_min, torch.zeros(x.shape[1:], dtype=x.dtype), sigma_max,
                                   entropy=int(torch.randint(0, 2**62, (1,), generator=g))) for g in clones(gens)]
    return lambda s, s_next: (torch.stack([tr(s_next, s) for tr in trees]) / math.sqrt(s - s_next))


def test_brownian_increments_are_one_seeded_torchsde_path():
    pytest.importorskip("torchsde")
    from difflab.sampling.noise import BrownianTreeNoise

    x = torch.zeros(3, 2, 4, dtype=torch.float64)
    gens = make_generators(2, 3)
    ref = tree_noise(x, 0.002, SIG, gens)
    z = BrownianTreeNoise(x, 0.002, SIG, clones(gens))
    for s, s_next in [(SIG, 3.0), (3.0, 0.5), (0.5, 0.002), (SIG, 0.002), (1.7, 1.2), (3.0, 0.5)]:
        torch.testing.assert_close(z(s, s_next), ref(s, s_next), rtol=1e-12, atol=1e-12)
    # One path: increments over adjacent intervals add up, and a query repeated out of order is the same.
    w = lambda a, b: z(a, b) * math.sqrt(a - b)
    torch.testing.assert_close(w(SIG, 3.0) + w(3.0, 0.5), w(SIG, 0.5), rtol=1e-12, atol=1e-12)
    # Standard normal: 4000 unit-normalised increments of disjoint intervals of one path.
    zs = torch.cat([z(a, b).reshape(-1) for a, b in zip(torch.linspace(SIG, 0.002, 501).tolist()[:-1],
                                                        torch.linspace(SIG, 0.002, 501).tolist()[1:], strict=True)])
    assert abs(float(zs.mean())) < 0.06 and abs(float(zs.std()) - 1) < 0.04


@pytest.mark.parametrize("name,order", [("dpmpp_2m_sde", 2), ("dpmpp_3m_sde", 3)])
def test_brownian_sde_sampler_matches_kdiffusion_with_tree_noise(name, order):
    """noise='brownian' = the k-diffusion algorithm with a BrownianTreeNoiseSampler over [sigma_min, sigma_max]
    of the grid (the smallest non-zero and the largest sigma), per-sample trees seeded as above."""
    x, sig = _mixture_start(), karras_sigmas(10, 0.002, SIG)
    gens = make_generators(4, x.shape[0])
    z = tree_noise(x, float(sig[-2]), float(sig[0]), gens)
    ref = ref_dpmpp_multistep_sde(MIX, x, sig, order, 1.0, 1.0, z, "heun" if order == 3 else "midpoint")
    torch.testing.assert_close(SAMPLERS[name](MIX, x, sig, generator=gens, noise="brownian"), ref,
                               rtol=1e-10, atol=1e-10)


def ref_dpmpp_sde(D, x, sigmas, eta, s_noise, r, z):
    """k-diffusion's sample_dpmpp_sde: per step, with lambda = -ln sigma, h = lambda' - lambda, s = lambda + r h,
    an ancestral DPM-Solver++(1) step sigma -> sigma_s from D(x; sigma), then one sigma -> sigma' from
    (1 - 1/(2r)) D(x; sigma) + 1/(2r) D(x_2; sigma_s), each followed by noise z(a, b) over its own interval
    ([sigma_s, sigma], then [sigma', sigma]: on one Brownian path the second contains the first); Euler to 0."""
    sigmas = [float(v) for v in sigmas]
    for s, s_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        d = call(D, x, s)
        if s_next == 0:
            x = x + (s_next - s) * (x - d) / s
            continue
        lam, lam_next = -math.log(s), -math.log(s_next)
        sig_s = math.exp(-(lam + r * (lam_next - lam)))
        outs = []
        for target in (sig_s, s_next):
            s_up = min(target, eta * math.sqrt(target**2 * (s**2 - target**2) / s**2))
            outs.append((math.sqrt(target**2 - s_up**2), s_up))
        (sd1, su1), (sd2, su2) = outs
        x_2 = (sd1 / s) * x - math.expm1(math.log(sd1) - math.log(s)) * d + z(s, sig_s) * s_noise * su1
        d_d = (1 - 1 / (2 * r)) * d + 1 / (2 * r) * call(D, x_2, sig_s)
        x = (sd2 / s) * x - math.expm1(math.log(sd2) - math.log(s)) * d_d + z(s, s_next) * s_noise * su2
    return x


@pytest.mark.parametrize("eta,s_noise,r", [(1.0, 1.0, 0.5), (0.5, 0.8, 0.5), (1.0, 1.0, 0.3)])
def test_dpmpp_sde_matches_kdiffusion_with_tree_noise(eta, s_noise, r):
    """dpmpp_sde (k-diffusion's sample_dpmpp_sde) with noise='brownian' against the reference above fed the same
    per-sample Brownian trees over [sigma_min, sigma_max] of the grid."""
    x, sig = _mixture_start(), karras_sigmas(8, 0.002, SIG)
    gens = make_generators(5, x.shape[0])
    ref = ref_dpmpp_sde(MIX, x, sig, eta, s_noise, r, tree_noise(x, float(sig[-2]), float(sig[0]), gens))
    ours = SAMPLERS["dpmpp_sde"](MIX, x, sig, generator=gens, noise="brownian", eta=eta, s_noise=s_noise, r=r)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)


BROWNIAN = ["dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde"]
X_B = SIG * torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def run_b(name, n, x=X_B, gens=None, **kw):
    gens = make_generators(7, x.shape[0]) if gens is None else gens
    return SAMPLERS[name](MIX, x, karras_sigmas(n, 0.002, SIG), generator=gens, **kw)


@pytest.mark.slow
@pytest.mark.parametrize("name", BROWNIAN)
def test_brownian_noise_sample_is_stable_in_the_step_count(name):
    """With noise='brownian' the sample follows one Brownian path per seed: changing only the step count moves it
    by the discretisation error, which shrinks as the steps grow (100 -> 200 -> 400), while fresh draws redraw it
    (an O(1) change). ~30 s each on a loaded CPU (the trees are queried per sample and step)."""
    pytest.importorskip("torchsde")
    tree = {n: run_b(name, n, noise="brownian") for n in (100, 200, 400)}
    fresh = {n: run_b(name, n) for n in (100, 200)}
    d1, d2 = (float((tree[a] - tree[b]).abs().mean()) for a, b in ((100, 200), (200, 400)))
    d_fresh = float((fresh[100] - fresh[200]).abs().mean())
    print(f"{name}: mean |x_100 - x_200| {d1:.3g}, |x_200 - x_400| {d2:.3g}; fresh draws {d_fresh:.3g}")
    assert d1 < 0.05 and d2 < 0.8 * d1 and d_fresh > 10 * d1


@pytest.mark.parametrize("name", BROWNIAN)
def test_brownian_noise_sample_does_not_depend_on_the_batch(name):
    """Per-sample trees: sample 5 is the same alone (its own generator) and in a permuted batch."""
    pytest.importorskip("torchsde")
    full = run_b(name, 12, noise="brownian")
    alone = run_b(name, 12, X_B[5:6], make_generators(7, 1, offset=5), noise="brownian")
    torch.testing.assert_close(full[5:6], alone)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(1))
    gens = make_generators(7, 16)
    torch.testing.assert_close(run_b(name, 12, X_B[perm], [gens[i] for i in perm], noise="brownian"), full[perm])

"""Oracle tests: difflab's samplers against diffusers' schedulers on the same tiny network, grid and noise.

How the noise is made identical: both sides get their own list of per-sample torch.Generators seeded alike.
diffusers' ``randn_tensor`` with a list draws ``torch.randn((1, *shape[1:]), generator=g_i)`` per sample and
``difflab.sampling.rng.randn`` draws ``torch.randn(shape[1:], generator=g_i)``: the same numbers, as long as
both sides draw in the same order (checked below by the results matching to float32 precision).

Options set on the diffusers side so that both compute the same thing (DESIGN.md §4):
``clip_sample=False`` (difflab's ``clip_x0`` is off by default; one test turns both on),
``set_alpha_to_one=True`` (a grid ending in sigma = 0 is abar = 1), ``steps_offset=0`` and
``timestep_spacing='leading'`` (integer timesteps: with 'linspace' diffusers' Heun interpolates sigma linearly
in t and feeds the network fractional t, while VPEpsPrecond maps sigma to t in log-sigma).
k-diffusion cannot be imported here (it needs torchvision), so it is not an oracle.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from difflab.diffusion.precond import EDMPrecond, VPEpsPrecond
from difflab.diffusion.schedules import ddpm_sigmas
from difflab.sampling import SAMPLERS, ddpm_sigma_grid, ddpm_timesteps, karras_sigmas, loguniform_sigmas

diffusers = pytest.importorskip("diffusers")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

B, SHAPE, T = 2, (1, 8, 8), 1000



class TinyNet(nn.Module):
    """A random two-layer conv net F(x_in, c_noise) with a sinusoidal noise embedding."""

    def __init__(self, seed=0, hidden=8):
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.conv1 = nn.Conv2d(1, hidden, 3, padding=1)
            self.emb = nn.Linear(8, hidden)
            self.conv2 = nn.Conv2d(hidden, 1, 3, padding=1)
        self.freqs = torch.tensor([1.0, 0.1, 0.01, 0.001])

    def forward(self, x, c_noise, class_labels=None, cond_frames=None):
        t = torch.as_tensor(c_noise, dtype=torch.float32).reshape(-1).expand(x.shape[0])
        e = torch.cat([torch.sin(t[:, None] * self.freqs), torch.cos(t[:, None] * self.freqs)], 1)
        h = torch.nn.functional.silu(self.conv1(x) + self.emb(e)[:, :, None, None])
        return 0.5 * self.conv2(h)


def gens(seed=100):
    return [torch.Generator().manual_seed(seed + i) for i in range(B)]


@pytest.fixture(scope="module")
def net():
    return TinyNet().eval().requires_grad_(False)


def x_vp_init():
    return torch.randn(B, *SHAPE, generator=torch.Generator().manual_seed(7))


def assert_matches(ours, theirs, rel=2e-5):
    scale = float(theirs.abs().max())
    err = float((ours - theirs).abs().max())
    print(f"max |difflab - diffusers| = {err:.3g} (scale {scale:.3g})")
    assert err <= rel * max(scale, 1.0), f"max |difflab - diffusers| = {err:.3g} (scale {scale:.3g})"
    return err


def run_discrete(sched, net, steps, **step_kw):
    """diffusers' loop for DDPM / DDIM: the sample is VP-scaled, the net is eps(x_vp, t)."""
    sched.set_timesteps(steps)
    x = x_vp_init()
    for t in sched.timesteps:
        eps = net(x, t.float().expand(B))
        x = sched.step(eps, t, x, **step_kw).prev_sample
    return x


@pytest.mark.parametrize("variance,variance_type", [("posterior", "fixed_small"), ("beta", "fixed_large")])
@pytest.mark.parametrize("steps,T_", [(10, 1000), (50, 50)])
def test_ddpm_matches_diffusers(net, variance, variance_type, steps, T_):
    # A 10-step leading sub-sequence of T = 1000, and the full 50-step chain of a T = 50 schedule
    # (difflab rescales linear betas by 1000/T, so diffusers gets beta_start/end * 1000/T).
    sched = diffusers.DDPMScheduler(num_train_timesteps=T_, beta_schedule="linear", beta_start=1e-4 * 1000 / T_,
                                    beta_end=0.02 * 1000 / T_, clip_sample=False, variance_type=variance_type)
    theirs = run_discrete(sched, net, steps, generator=gens())
    assert torch.equal(sched.timesteps, ddpm_timesteps(steps, T_, "leading"))
    D = VPEpsPrecond(net, T=T_, beta_schedule="linear")
    sigmas = ddpm_sigma_grid(steps, T_, "linear", "leading")
    x = x_vp_init() * math.sqrt(1 + float(sigmas[0]) ** 2)
    ours = SAMPLERS["ddpm"](D, x, sigmas, generator=gens(), variance=variance)
    assert_matches(ours, theirs)


def test_ddpm_clip_matches_diffusers(net):
    sched = diffusers.DDPMScheduler(num_train_timesteps=T, clip_sample=True, clip_sample_range=1.0)
    theirs = run_discrete(sched, net, 20, generator=gens())
    D, sigmas = VPEpsPrecond(net, T=T), ddpm_sigma_grid(20, T)
    ours = SAMPLERS["ddpm"](D, x_vp_init() * math.sqrt(1 + float(sigmas[0]) ** 2), sigmas, generator=gens(),
                            clip_x0=1.0)
    assert_matches(ours, theirs)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("clip", [False, True])
def test_ddim_matches_diffusers(net, eta, clip):
    sched = diffusers.DDIMScheduler(num_train_timesteps=T, beta_schedule="linear", clip_sample=clip,
                                    set_alpha_to_one=True, steps_offset=0, timestep_spacing="leading")
    theirs = run_discrete(sched, net, 20, eta=eta, generator=gens())
    D, sigmas = VPEpsPrecond(net, T=T), ddpm_sigma_grid(20, T)
    x = x_vp_init() * math.sqrt(1 + float(sigmas[0]) ** 2)
    ours = SAMPLERS["ddim"](D, x, sigmas, generator=gens(), eta=eta, clip_x0=1.0 if clip else None)
    assert_matches(ours, theirs)


def test_ddim_eta1_is_ddpm_and_eta0_is_ode_euler(net):
    D, sigmas = VPEpsPrecond(net, T=T), ddpm_sigma_grid(20, T)
    x = x_vp_init() * math.sqrt(1 + float(sigmas[0]) ** 2)
    a = SAMPLERS["ddim"](D, x, sigmas, generator=gens(), eta=1.0)
    b = SAMPLERS["ddpm"](D, x, sigmas, generator=gens(), variance="posterior")
    assert_matches(a, b)
    c = SAMPLERS["ddim"](D, x, sigmas, eta=0.0)
    d = SAMPLERS["ode_euler"](D, x, sigmas)
    assert_matches(c, d)


def test_heun_matches_diffusers_heun_discrete(net):
    steps = 12
    sched = diffusers.HeunDiscreteScheduler(num_train_timesteps=T, beta_schedule="linear", beta_start=1e-4,
                                            beta_end=0.02, timestep_spacing="leading", prediction_type="epsilon")
    sched.set_timesteps(steps)
    # diffusers computes sigma = sqrt((1 - abar) / abar) in float32, which loses digits at small t
    # (1.0001e-2 instead of 1.0000e-2 at t = 0); run difflab on diffusers' grid so both do the same arithmetic.
    # VPEpsPrecond still maps each sigma to the same integer t.
    sigmas = sched.sigmas.unique_consecutive()
    assert torch.allclose(sigmas, ddpm_sigma_grid(steps, T), rtol=2e-4)
    x0 = x_vp_init() * float(sigmas[0])
    x = x0.clone()
    for t in sched.timesteps:
        eps = net(sched.scale_model_input(x, t), t.expand(B))
        x = sched.step(eps, t, x).prev_sample
    ours = SAMPLERS["heun"](VPEpsPrecond(net, T=T), x0, sigmas)
    assert_matches(ours, x)
    assert_matches(SAMPLERS["ode_heun"](VPEpsPrecond(net, T=T), x0, sigmas), x)


def _clone(gs):
    out = []
    for g in gs:
        c = torch.Generator()
        c.set_state(g.get_state())
        out.append(c)
    return out


@pytest.mark.parametrize("S_churn", [0.0, 5.0])
def test_euler_matches_diffusers_edm_euler(net, S_churn):
    """EDMEulerScheduler with churn. diffusers' documented loop evaluates the network on the sample *before*
    the churn (scale_model_input uses sigma_i) and then combines that output with the churned sample and
    sigma_hat in precondition_outputs, which is not Karras et al.'s Algorithm 2 (D(x_hat; sigma_hat)). To run
    Algorithm 2 through diffusers we peek at the churn noise with a cloned generator, evaluate the network at
    (x_hat, sigma_hat), and let step() redraw the same noise itself."""
    steps = 8
    D = EDMPrecond(net, sigma_data=0.5)
    sched = diffusers.EDMEulerScheduler(sigma_min=0.002, sigma_max=80.0, sigma_data=0.5, rho=7.0,
                                        prediction_type="epsilon")
    sched.set_timesteps(steps)
    sigmas = karras_sigmas(steps, 0.002, 80.0, 7.0)
    assert torch.allclose(sched.sigmas, sigmas, rtol=1e-5)
    x0 = x_vp_init() * 80.0
    x, g = x0.clone(), gens()
    for i, t in enumerate(sched.timesteps):
        sched.scale_model_input(x, t)
        sigma = float(sched.sigmas[i])
        gamma = min(S_churn / steps, math.sqrt(2) - 1) if S_churn > 0 else 0.0
        sigma_hat = sigma * (1 + gamma)
        x_hat = x
        if gamma > 0:
            noise = diffusers.utils.torch_utils.randn_tensor(x.shape, generator=_clone(g))
            x_hat = x + noise * math.sqrt(sigma_hat**2 - sigma**2)
        s_hat = torch.tensor(sigma_hat)
        F = net(x_hat / (s_hat**2 + 0.25).sqrt(), sched.precondition_noise(s_hat).expand(B))
        x = sched.step(F, t, x, s_churn=S_churn, generator=g).prev_sample
    ours = SAMPLERS["euler"](D, x0, sigmas, generator=gens(), S_churn=S_churn)
    assert_matches(ours, x)


def test_dpmpp_2m_matches_diffusers(net):
    # 16 steps: with fewer than 15, diffusers' lower_order_final also drops to 1st order on the second-last step.
    steps = 16
    sched = diffusers.DPMSolverMultistepScheduler(num_train_timesteps=T, beta_schedule="linear", beta_start=1e-4,
                                                  beta_end=0.02,
                                                  algorithm_type="dpmsolver++", solver_order=2,
                                                  solver_type="midpoint", timestep_spacing="leading",
                                                  final_sigmas_type="zero", steps_offset=0)
    theirs = run_discrete(sched, net, steps)
    # diffusers' DPM-Solver 'leading' sub-sequence differs from DDPM/DDIM's (928, ..., 58 for 16 steps);
    # run difflab on diffusers' own grid (the table's sigmas at those timesteps, then 0).
    sigmas = sched.sigmas
    assert torch.allclose(sigmas[:-1], ddpm_sigmas(T)[sched.timesteps].float(), rtol=2e-4)
    D = VPEpsPrecond(net, T=T)
    ours = SAMPLERS["dpmpp_2m"](D, x_vp_init() * math.sqrt(1 + float(sigmas[0]) ** 2), sigmas)
    assert_matches(ours, theirs)


def test_dpmpp_2m_matches_diffusers_edm_dpmsolver(net):
    """EDMDPMSolverMultistepScheduler (DPM-Solver++(2M) in EDM's sigma parametrisation, Karras grid) against
    difflab's dpmpp_2m on an EDMPrecond of the same net: the network is called with diffusers' own input scaling
    and noise conditioning (scale_model_input, timesteps = precondition_noise(sigma)). 16 steps: diffusers'
    lower_order_final drops the second-last step to first order below 15."""
    steps = 16
    D = EDMPrecond(net, sigma_data=0.5)
    sched = diffusers.EDMDPMSolverMultistepScheduler(sigma_min=0.002, sigma_max=80.0, sigma_data=0.5, rho=7.0,
                                                     solver_order=2, algorithm_type="dpmsolver++",
                                                     prediction_type="epsilon", final_sigmas_type="zero")
    sched.set_timesteps(steps)
    sigmas = karras_sigmas(steps, 0.002, 80.0, 7.0)
    assert torch.allclose(sched.sigmas, sigmas, rtol=1e-5)
    x0 = x_vp_init() * 80.0
    x = x0.clone()
    for t in sched.timesteps:
        F = net(sched.scale_model_input(x, t), t.expand(B))
        x = sched.step(F, t, x).prev_sample
    ours = SAMPLERS["dpmpp_2m"](D, x0, sigmas)
    assert_matches(ours, x)


def test_pc_matches_diffusers_score_sde_ve(net):
    """Song et al.'s VE predictor-corrector through diffusers' ScoreSdeVeScheduler (reverse-diffusion predictor,
    Langevin corrector with the snr rule on batch-averaged norms, i.e. difflab's ``snr_norm='batch'``).
    The pipeline tells the model ``scheduler.sigmas[i]`` (continuous) while step_pred uses
    ``discrete_sigmas``; we give the model the discrete sigma the step uses, so both sides follow one grid."""
    N, smin, smax, snr = 12, 0.01, 50.0, 0.16
    D = EDMPrecond(net, sigma_data=0.5)
    score = lambda x, s: (D(x, s) - x) / s**2
    sched = diffusers.ScoreSdeVeScheduler(num_train_timesteps=N, snr=snr, sigma_min=smin, sigma_max=smax)
    sched.set_timesteps(N)
    sched.set_sigmas(N)
    grid = torch.cat([sched.discrete_sigmas.flip(0), torch.zeros(1)])
    assert torch.allclose(grid, loguniform_sigmas(N, smin, smax), rtol=1e-5)
    x0 = x_vp_init() * smax
    x, g = x0.clone(), torch.Generator().manual_seed(3)
    for i, t in enumerate(sched.timesteps):
        idx = int((t * (N - 1)).long())
        assert idx == N - 1 - i
        s = float(sched.discrete_sigmas[idx])
        x = sched.step_correct(score(x, s), x, generator=g).prev_sample
        out = sched.step_pred(score(x, s), t, x, generator=g)
        x, x_mean = out.prev_sample, out.prev_sample_mean
    ours = SAMPLERS["pc"](D, x0, grid, generator=torch.Generator().manual_seed(3), sde="ve",
                          predictor="reverse_diffusion", snr=snr, n_corrector=1, snr_norm="batch")
    assert_matches(ours, x_mean, rel=1e-4)

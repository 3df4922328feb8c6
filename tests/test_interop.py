"""Oracle tests: the same UNet2DModel weights under diffusers and under difflab (DESIGN.md §3-4).

A tiny diffusers UNet2DModel (8x8, block_out_channels (8, 16), one layer per block, 4 groups) is wrapped by
difflab.interop.DiffusersUNet; every check runs the same weights, the same noise and the same schedule through
both libraries."""

from __future__ import annotations

import math

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from diffusers import (  # noqa: E402
    DDIMPipeline,
    DDIMScheduler,
    DDPMPipeline,
    DDPMScheduler,
    EDMEulerScheduler,
    HeunDiscreteScheduler,
    UNet2DModel,
)

from difflab.diffusion.precond import VPEpsPrecond  # noqa: E402
from difflab.diffusion.schedules import ddpm_betas  # noqa: E402
from difflab.guidance import ClassifierFreeGuidance  # noqa: E402
from difflab.interop import (  # noqa: E402
    DiffusersUNet,
    KDiffusionDenoiser,
    diffusers_sigma_grid,
    edm_from_diffusers,
    from_diffusers,
    scheduler_sigmas,
)
from difflab.sampling import SAMPLERS, karras_sigmas  # noqa: E402

B = 3
ATOL = 2e-5


def tiny_unet(seed=0, **kw) -> UNet2DModel:
    torch.manual_seed(seed)
    cfg = dict(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
               norm_num_groups=4, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
               up_block_types=("AttnUpBlock2D", "UpBlock2D"))
    cfg.update(kw)
    unet = UNet2DModel(**cfg).eval().requires_grad_(False)
    # Random weights everywhere (diffusers zero-inits nothing important, but make the output non-trivial).
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return unet


@pytest.fixture(scope="module")
def unet():
    return tiny_unet()


def noise(seed=1, shape=(B, 1, 8, 8)):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


# -- schedules ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("T", [1000, 100, 4000])
def test_cosine_equals_squaredcos_cap_v2(T):
    theirs = DDPMScheduler(num_train_timesteps=T, beta_schedule="squaredcos_cap_v2").betas.double()
    assert (theirs - ddpm_betas(T, "cosine")).abs().max() < 1e-7  # float32 storage round-off only


def test_linear_equals_diffusers_at_T1000():
    theirs = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear").betas.double()
    assert (theirs - ddpm_betas(1000, "linear")).abs().max() < 1e-8


def test_linear_differs_for_other_T_and_from_diffusers_uses_scheduler_table(unet):
    # difflab rescales the linear endpoints by 1000/T, diffusers does not: different schedules.
    sch = DDPMScheduler(num_train_timesteps=200, beta_schedule="linear")
    D = from_diffusers(unet, sch)
    assert D.schedule_max_rel_diff > 0.1
    assert torch.allclose(D.sigmas_table.double(), scheduler_sigmas(sch), rtol=1e-6)
    assert D.T == 200 and D.sigma_max == pytest.approx(float(scheduler_sigmas(sch)[-1]), rel=1e-6)


# -- the wrapped network -------------------------------------------------------------------------------------
@pytest.mark.parametrize("schedule", ["linear", "squaredcos_cap_v2"])
def test_wrapped_eps_equals_diffusers(unet, schedule):
    sch = DDPMScheduler(num_train_timesteps=1000, beta_schedule=schedule)
    for D in (from_diffusers(unet, sch), VPEpsPrecond(DiffusersUNet(unet), T=1000,
                                                      beta_schedule="linear" if schedule == "linear" else "cosine")):
        t = torch.tensor([0, 371, 999])
        abar = sch.alphas_cumprod[t].double()
        sigma = ((1 - abar) / abar).sqrt().float()
        x_vp = noise()
        eps_ref = unet(x_vp, t).sample
        x = x_vp * (1 + sigma.double() ** 2).sqrt().float()[:, None, None, None]
        with torch.no_grad():
            eps = (x - D(x, sigma)) / sigma[:, None, None, None]
        # t(sigma) recovers the integer timestep, so the network sees exactly diffusers' input.
        assert torch.allclose(D.sigma_to_t(sigma), t.float(), atol=1e-3)
        assert torch.allclose(eps, eps_ref, atol=1e-4, rtol=1e-4), (eps - eps_ref).abs().max()


def test_fractional_timestep_is_passed_through(unet):
    net = DiffusersUNet(unet)
    x, t = noise(), torch.tensor([10.25, 500.5, 998.75])
    assert torch.equal(net(x, t), unet(x, t).sample)


def test_v_prediction(unet):
    sch = DDPMScheduler(num_train_timesteps=1000, prediction_type="v_prediction")
    D = from_diffusers(unet, sch)
    assert D.kind == "v"
    t = torch.tensor([5, 400, 900])
    abar = sch.alphas_cumprod[t]
    sigma = ((1 - abar.double()) / abar.double()).sqrt().float()
    x_vp = noise(2)
    v = unet(x_vp, t).sample
    x0_ref = abar.sqrt()[:, None, None, None] * x_vp - (1 - abar).sqrt()[:, None, None, None] * v
    x = x_vp * (1 + sigma.double() ** 2).sqrt().float()[:, None, None, None]
    assert torch.allclose(D(x, sigma), x0_ref, atol=ATOL)


def test_class_conditional_and_cfg():
    unet = tiny_unet(num_class_embeds=4)  # 3 classes + the null label (index 3)
    D = from_diffusers(unet, DDPMScheduler())
    assert D.num_classes == 3
    t, y = torch.tensor([100, 200, 300]), torch.tensor([0, 2, 1])
    sigma = D.sigmas_table[t]
    x_vp = noise(3)
    x = x_vp * (1 + sigma**2).sqrt()[:, None, None, None]
    eps = (x - D(x, sigma, class_labels=y)) / sigma[:, None, None, None]
    assert torch.allclose(eps, unet(x_vp, t, class_labels=y).sample, atol=1e-4)
    # Missing labels are the null label; CFG runs over the wrapped model.
    assert torch.allclose(D(x, sigma), D(x, sigma, class_labels=torch.full((B,), 3)))
    sig = diffusers_sigma_grid(D, [800, 600, 400, 200, 0])
    out = SAMPLERS["ddim"](D, noise(4) * sig[0], sig, cond={"class_labels": y}, guidance=ClassifierFreeGuidance(0.5))
    assert out.shape == (B, 1, 8, 8) and torch.isfinite(out).all()


def test_wrapper_errors(unet):
    with pytest.raises(ValueError, match="prediction_type"):
        DiffusersUNet(unet, prediction_type="sample")
    with pytest.raises(ValueError, match="beta_schedule"):
        from_diffusers(unet, DDPMScheduler(beta_schedule="scaled_linear"))
    with pytest.raises(ValueError, match="table"):
        from_diffusers(unet, DDPMScheduler(), table="mine")
    assert from_diffusers(unet, DDPMScheduler(), table="difflab").schedule_source == "difflab"
    with pytest.raises(ValueError, match="input channels"):
        DiffusersUNet(unet)(torch.zeros(1, 2, 8, 8), torch.zeros(1))
    with pytest.raises(ValueError, match="no class embedding"):
        DiffusersUNet(unet)(torch.zeros(1, 1, 8, 8), torch.zeros(1), class_labels=torch.zeros(1))
    with pytest.raises(TypeError, match="UNet2DModel"):
        DiffusersUNet(torch.nn.Linear(2, 2))


def test_cond_frames_are_concatenated():
    unet = tiny_unet(in_channels=3, out_channels=1)
    net = DiffusersUNet(unet)
    x, c, t = noise(5), noise(6, (B, 2, 8, 8)), torch.tensor([1.0, 2.0, 3.0])
    assert torch.equal(net(x, t, cond_frames=c), unet(torch.cat([x, c], 1), t).sample)


# -- samplers against diffusers' scheduler loops and pipelines ------------------------------------------------
def _ddim_loop(unet, sch, x_vp, steps):
    sch.set_timesteps(steps)
    x = x_vp.clone()
    for t in sch.timesteps:
        x = sch.step(unet(x, t).sample, t, x, eta=0.0).prev_sample
    return x


@pytest.mark.parametrize("schedule", ["linear", "squaredcos_cap_v2"])
def test_ddim_matches_diffusers_loop_and_pipeline(unet, schedule):
    steps = 6
    sch = DDIMScheduler(num_train_timesteps=1000, beta_schedule=schedule, clip_sample=False, set_alpha_to_one=True)
    D = from_diffusers(unet, sch)
    sch.set_timesteps(steps)
    sigmas = diffusers_sigma_grid(D, sch.timesteps)
    z = noise(7)
    ref = _ddim_loop(unet, sch, z, steps)
    # x_T (VP) = z  <=>  x (VE) = z sqrt(1 + sigma_0^2).
    x = SAMPLERS["ddim"](D, z * math.sqrt(1 + float(sigmas[0]) ** 2), sigmas)
    assert torch.allclose(x, ref, atol=ATOL), (x - ref).abs().max()
    # The pipeline (same generator => same initial noise) returns (x/2 + 1/2) clamped to [0, 1].
    pipe = DDIMPipeline(unet=unet, scheduler=sch)
    pipe.set_progress_bar_config(disable=True)
    img = pipe(batch_size=B, generator=torch.Generator().manual_seed(7), num_inference_steps=steps, eta=0.0,
               output_type="pt").images
    assert torch.allclose(img, (x / 2 + 0.5).clamp(0, 1), atol=ATOL)


def test_ddim_set_alpha_to_one_false(unet):
    """diffusers' last DDIM step with set_alpha_to_one=False goes from t=0 to abar_0 (itself): the output is x
    at sigma_0, i.e. difflab's chain one step before its final jump to sigma = 0, in VP scaling."""
    steps = 5
    sch = DDIMScheduler(clip_sample=False, set_alpha_to_one=False)
    D = from_diffusers(unet, sch)
    sch.set_timesteps(steps)
    sigmas = diffusers_sigma_grid(D, sch.timesteps)
    z = noise(8)
    ref = _ddim_loop(unet, sch, z, steps)
    seen = {}
    SAMPLERS["ddim"](D, z * math.sqrt(1 + float(sigmas[0]) ** 2), sigmas,
                     callback=lambda f: seen.update({f["i"]: (f["x"].clone(), f["sigma"])}))
    x_last, s_last = seen[steps - 1]
    assert s_last == pytest.approx(float(D.sigmas_table[0]))
    assert torch.allclose(x_last / math.sqrt(1 + s_last**2), ref, atol=ATOL)


def test_ddpm_matches_diffusers_pipeline(unet):
    steps = 8
    sch = DDPMScheduler(num_train_timesteps=1000, clip_sample=False)
    D = from_diffusers(unet, sch)
    sch.set_timesteps(steps)
    sigmas = diffusers_sigma_grid(D, sch.timesteps)
    g = torch.Generator().manual_seed(9)
    z = torch.randn((B, 1, 8, 8), generator=g)
    x = SAMPLERS["ddpm"](D, z * math.sqrt(1 + float(sigmas[0]) ** 2), sigmas, generator=g)
    pipe = DDPMPipeline(unet=unet, scheduler=sch)
    pipe.set_progress_bar_config(disable=True)
    img = pipe(batch_size=B, generator=torch.Generator().manual_seed(9), num_inference_steps=steps,
               output_type="pt").images
    assert torch.allclose(img, (x / 2 + 0.5).clamp(0, 1), atol=5e-5), (img - (x / 2 + 0.5).clamp(0, 1)).abs().max()


def test_heun_matches_heun_discrete_scheduler(unet):
    steps = 5
    # Its default betas are Stable Diffusion's (0.00085 .. 0.012, linear): from_diffusers loads that table.
    sch = HeunDiscreteScheduler(num_train_timesteps=1000, use_karras_sigmas=True, timestep_spacing="linspace")
    D = from_diffusers(unet, sch)
    assert D.schedule_max_rel_diff > 0.1 and D.sigma_max == pytest.approx(float(sch.sigmas.max()), rel=1e-5)
    sch.set_timesteps(steps)
    # diffusers stores [s0, s1, s1, s2, s2, ..., s_{n-1}, s_{n-1}, 0]; the grid is [s0, s1, ..., s_{n-1}, 0].
    sig = torch.cat([sch.sigmas[::2], sch.sigmas.new_zeros(1)])
    assert torch.allclose(sig, karras_sigmas(steps, float(sig[steps - 1]), float(sig[0])).float())
    z = noise(10)
    x = z * sch.init_noise_sigma
    for t in sch.timesteps:
        x = sch.step(unet(sch.scale_model_input(x, t), t).sample, t, x).prev_sample
    ours = SAMPLERS["heun"](D, z * float(sig[0]), sig)
    assert torch.allclose(ours, x, atol=1e-4), (ours - x).abs().max()


def test_euler_matches_edm_euler_scheduler(unet):
    steps = 6
    sch = EDMEulerScheduler(sigma_min=0.002, sigma_max=80.0, sigma_data=0.5)
    sch.set_timesteps(steps)
    D = edm_from_diffusers(unet)
    z = noise(11)
    x = z * float(sch.sigmas[0])
    for t in sch.timesteps:
        x = sch.step(unet(sch.scale_model_input(x, t), t).sample, t, x).prev_sample
    ours = SAMPLERS["euler"](D, z * 80.0, karras_sigmas(steps, 0.002, 80.0))
    assert torch.allclose(ours, x, atol=ATOL * 10), (ours - x).abs().max()


# -- k-diffusion-style denoisers ------------------------------------------------------------------------------
class KStyleEpsDenoiser(torch.nn.Module):
    """What k_diffusion.external.DiscreteEpsDDPMDenoiser does (k-diffusion is not importable here):
    c_in = 1/sqrt(sigma^2 + 1), t = sigma_to_t(sigma) by log-sigma interpolation, denoised = x - sigma eps."""

    def __init__(self, inner, alphas_cumprod):
        super().__init__()
        self.inner = inner
        self.register_buffer("sigmas", ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5)
        self.register_buffer("log_sigmas", self.sigmas.log())

    @property
    def sigma_min(self):
        return self.sigmas[0]

    @property
    def sigma_max(self):
        return self.sigmas[-1]

    def sigma_to_t(self, sigma):
        log_sigma = sigma.log()
        dists = log_sigma - self.log_sigmas[:, None]
        low_idx = dists.ge(0).cumsum(dim=0).argmax(dim=0).clamp(max=self.log_sigmas.shape[0] - 2)
        high_idx = low_idx + 1
        low, high = self.log_sigmas[low_idx], self.log_sigmas[high_idx]
        w = ((low - log_sigma) / (low - high)).clamp(0, 1)
        return ((1 - w) * low_idx + w * high_idx).view(sigma.shape)

    def forward(self, input, sigma, **kwargs):
        c_in = (sigma**2 + 1) ** -0.5
        eps = self.inner(input * c_in[:, None, None, None], self.sigma_to_t(sigma), **kwargs).sample
        return input - eps * sigma[:, None, None, None]


def test_kdiffusion_denoiser_equals_difflab_precond(unet):
    sch = DDPMScheduler()
    kd = KDiffusionDenoiser(KStyleEpsDenoiser(unet, sch.alphas_cumprod))
    D = from_diffusers(unet, sch)
    assert kd.sigma_max == pytest.approx(D.sigma_max, rel=1e-5)
    sig = karras_sigmas(4, kd.sigma_min, kd.sigma_max)
    z = noise(12) * float(sig[0])
    a = SAMPLERS["heun"](kd, z, sig)
    b = SAMPLERS["heun"](D, z, sig)
    assert torch.allclose(a, b, atol=1e-4)
    # A float sigma is broadcast to [B].
    assert torch.allclose(kd(z, 3.0), D(z, 3.0), atol=1e-5)


def test_kdiffusion_denoiser_checks_and_cond_map():
    seen = {}

    def model(x, sigma, **extra):
        seen.update(extra, sigma=sigma)
        return x * 0

    kd = KDiffusionDenoiser(model, cond_map={"class_labels": "class_cond"})
    kd(torch.zeros(2, 3), 1.5, class_labels=torch.tensor([1, 2]))
    assert set(seen) == {"class_cond", "sigma"} and seen["sigma"].shape == (2,)
    with pytest.raises(ValueError, match="shaped like x"):
        KDiffusionDenoiser(lambda x, s: x[:1])(torch.zeros(2, 3), 1.0)
    with pytest.raises(ValueError, match="sigma must be"):
        kd(torch.zeros(2, 3), torch.ones(3))
    with pytest.raises(TypeError, match="callable"):
        KDiffusionDenoiser(3)

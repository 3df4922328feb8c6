"""Diffusion core: preconditioner algebra, exact denoisers through the EDM sampler, losses, schedules."""

import math

import pytest
import torch

from difflab.data.toy import gaussian
from difflab.diffusion import EDMPrecond, VEPrecond, VPEpsPrecond, VPrecond, ddpm_betas, ddpm_sigmas
from difflab.diffusion.losses import EDMLoss, EpsLoss, drop_labels
from difflab.sampling import SAMPLERS, karras_sigmas
from difflab.sampling.rng import make_generators, randn
from difflab.utils import append_dims, as_sigma

SD = 0.7  # std of the Gaussian data


class IdealNet(torch.nn.Module):
    """The ideal network for Gaussian data N(0, SD^2) under a given preconditioning: it solves
    D_ideal = c_skip x + c_out F for F, so every parameterization should give the same D."""

    def __init__(self, precond_ref):
        super().__init__()
        self.ref = precond_ref
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.num_classes = 0

    def forward(self, x_in, c_noise, class_labels=None, cond_frames=None):
        sigma = self.ref.sigma_of_noise(c_noise)
        c_skip, c_out, c_in, _ = self.ref.coefficients(sigma)
        x = x_in / append_dims(c_in, x_in.ndim)
        d = x * SD**2 / (SD**2 + append_dims(sigma, x.ndim) ** 2)
        return (d - append_dims(c_skip, x.ndim) * x) / append_dims(c_out, x.ndim)


def _with_inverse(precond):
    """Attach c_noise -> sigma for the ideal net."""
    if isinstance(precond, EDMPrecond):
        precond.sigma_of_noise = lambda c: (4 * c).exp()
    elif isinstance(precond, VEPrecond):
        precond.sigma_of_noise = lambda c: 2 * c.exp()
    else:  # discrete time: interpolate the table at fractional t
        def inv(t):
            i = t.floor().long().clamp(0, precond.T - 2)
            w = t - i
            return (precond.log_sigmas[i] * (1 - w) + precond.log_sigmas[i + 1] * w).exp()
        precond.sigma_of_noise = inv
    return precond


@pytest.mark.parametrize("kind", ["edm", "ve", "vp_eps", "v"])
def test_every_preconditioning_yields_the_ideal_denoiser(kind):
    net_holder = {}
    cls = {"edm": EDMPrecond, "ve": VEPrecond, "vp_eps": VPEpsPrecond, "v": VPrecond}[kind]
    precond = cls(torch.nn.Identity())
    _with_inverse(precond)
    precond.net = IdealNet(precond)
    net_holder["p"] = precond
    g = torch.Generator().manual_seed(0)
    x = randn((6, 1, 4, 4), generator=g) * 3
    sigma = torch.tensor([0.02, 0.1, 0.5, 1.0, 3.0, 20.0])
    if kind in ("vp_eps", "v"):
        sigma = sigma.clamp(precond.sigma_min, precond.sigma_max)
    D = precond(x, sigma)
    exact = x * SD**2 / (SD**2 + append_dims(sigma, 4) ** 2)
    torch.testing.assert_close(D, exact, rtol=2e-4, atol=2e-5)


def test_heun_reproduces_gaussian_variance():
    """For N(0, sd^2) data the ideal denoiser is x sd^2/(sd^2+sigma^2): sampling must give variance sd^2."""
    data = gaussian(dim=1, std=SD)
    sig = karras_sigmas(128, 0.002, 80.0)  # Heun's error at 128 steps is ~0.1% here (2nd order)
    g = torch.Generator().manual_seed(1)
    x = sig[0] * torch.randn(40000, 1, generator=g)
    out = SAMPLERS["heun"](data, x, sig)
    assert abs(out.std().item() - SD) < 0.01
    assert abs(out.mean().item()) < 0.01


def test_heun_stochastic_converges_to_gaussian_variance():
    data = gaussian(dim=1, std=SD)
    sig = karras_sigmas(256, 0.002, 80.0)
    g = torch.Generator().manual_seed(2)
    x = sig[0] * torch.randn(20000, 1, generator=g)
    out = SAMPLERS["heun"](data, x, sig, S_churn=40.0, generator=g)
    assert abs(out.std().item() - SD) < 0.015


def test_ddpm_sigmas_and_betas():
    for sched in ("linear", "cosine"):
        for T in (1000, 4000):
            b = ddpm_betas(T, sched)
            assert b.shape == (T,) and (b > 0).all() and (b < 1).all()
            s = ddpm_sigmas(T, sched)
            assert (s[1:] > s[:-1]).all()
    # linear T=1000: the DDPM paper's endpoints
    b = ddpm_betas(1000, "linear")
    assert math.isclose(b[0].item(), 1e-4) and math.isclose(b[-1].item(), 0.02)
    with pytest.raises(ValueError, match="schedule"):
        ddpm_betas(10, "quadratic")


def test_karras_grid():
    s = karras_sigmas(18, 0.002, 80.0, 7.0)
    assert len(s) == 19 and s[-1] == 0 and abs(s[0] - 80) < 1e-4 and abs(s[-2] - 0.002) < 1e-7
    with pytest.raises(ValueError, match="n"):
        karras_sigmas(0)
    with pytest.raises(ValueError, match="sigma_min"):
        karras_sigmas(5, sigma_min=1.0, sigma_max=0.5)


def test_label_dropout_is_per_sample():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(1000) % 10
    out = drop_labels(labels, 0.3, 10, generator=g)
    dropped = (out == 10).float().mean().item()
    assert 0.25 < dropped < 0.35  # per-sample, not all-or-nothing
    assert ((out == labels) | (out == 10)).all()
    with pytest.raises(ValueError, match="p"):
        drop_labels(labels, 1.5, 10)


def test_per_sample_generators_do_not_depend_on_batch():
    a = randn((4, 3), generator=make_generators(7, 4))
    b = randn((2, 3), generator=make_generators(7, 2, offset=2))
    torch.testing.assert_close(a[2:], b)


@pytest.mark.parametrize("loss", [EpsLoss(2), EpsLoss(1), EDMLoss()])
def test_loss_decreases_on_tiny_synthetic_set(loss):
    from difflab.nets.unet import build_unet

    torch.manual_seed(0)
    net = build_unet("tiny", img_resolution=8)
    D = VPEpsPrecond(net, T=100) if isinstance(loss, EpsLoss) else EDMPrecond(net)
    x0 = torch.zeros(16, 1, 8, 8)
    x0[:, :, 2:6, 2:6] = 1.0
    x0 = x0 * 2 - 1
    opt = torch.optim.Adam(D.parameters(), lr=3e-3)

    def eval_loss():
        g = torch.Generator().manual_seed(123)
        with torch.no_grad():
            return loss(D, x0, {}, generator=g).mean().item()

    before = eval_loss()
    for step in range(60):
        g = torch.Generator().manual_seed(step)
        opt.zero_grad()
        loss(D, x0, {}, generator=g).mean().backward()
        opt.step()
    assert eval_loss() < 0.7 * before


def test_as_sigma_fills_a_python_number_like_a_float32_conversion():
    """A float is filled in on x's device (no host copy) with the value a float32 conversion gives; tensors keep
    their checks."""
    x = torch.zeros(3, 1, 2, 2)
    for v in (0.002, 80.0, 1 / 3, 0, 1e39, -1e39):
        s = as_sigma(v, x)
        assert s.shape == (3,) and s.dtype == torch.float32
        assert torch.equal(s, torch.as_tensor(v, dtype=torch.float32).expand(3))
    assert torch.equal(as_sigma(torch.tensor([1.0, 2.0, 3.0]), x), torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="sigma must be a scalar or a"):
        as_sigma(torch.ones(2), x)


@pytest.mark.parametrize("preset,precond", [("tiny", EDMPrecond), ("tiny", VPEpsPrecond), ("ntnu", VPEpsPrecond)])
def test_bfloat16_network_runs_and_matches_float32(preset, precond):
    """A network cast to bfloat16 (``difflab.load(dtype=torch.bfloat16)``) runs, conditional inputs included,
    and stays near its float32 self; c_noise is passed in float32 so DDPM timesteps are not rounded."""
    from difflab.nets.unet import build_unet

    torch.manual_seed(0)
    kw = dict(in_channels=1, out_channels=1, num_classes=10, cond_channels=1, model_channels=8)
    D32 = precond(build_unet(preset, **kw)).eval()
    D16 = precond(build_unet(preset, **kw)).eval()
    D16.load_state_dict(D32.state_dict())
    D16 = D16.to(torch.bfloat16)
    x, prev = torch.randn(3, 1, 8, 8), torch.randn(3, 1, 8, 8)
    cond = dict(class_labels=torch.tensor([0, 5, 10]), cond_frames=prev)
    sigma = torch.tensor([0.05, 1.0, 20.0])
    with torch.no_grad():
        out32, out16 = D32(x, sigma, **cond), D16(x, sigma, **cond)
    assert out16.dtype == torch.float32 and torch.isfinite(out16).all()
    scale = (out32 - x).abs().max()  # the network's contribution
    assert (out16 - out32).abs().max() < 0.05 * scale + 1e-3
    seen = []
    D16.net.register_forward_pre_hook(lambda m, args: seen.append(args[1].dtype))
    D16(x, sigma, **cond)
    assert seen == [torch.float32]


def test_linear_betas_reject_a_T_too_small_for_the_rescaled_endpoints():
    """beta_T = 0.02 * 1000 / T reaches 1 at T = 20: a clear error instead of a grid of NaN / inf sigmas."""
    with pytest.raises(ValueError, match="use T > 20 or the cosine schedule"):
        ddpm_betas(10, "linear")
    sig = ddpm_sigmas(21, "linear")
    assert torch.isfinite(sig).all() and (sig[1:] > sig[:-1]).all()
    assert torch.isfinite(ddpm_sigmas(5, "cosine")).all()

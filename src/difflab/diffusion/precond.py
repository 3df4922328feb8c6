"""Preconditioners: each wraps a network F into the one denoiser contract ``D(x, sigma, **cond) -> x0_hat``.

    D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma))

(Karras et al. 2022, eq. 7 and Table 1). The network is a plain module
``F(x_in, c_noise, class_labels=None, cond_frames=None)``; conditioning frames are concatenated by the
network as extra channels and are not scaled.
"""

from __future__ import annotations

import torch
from torch import nn

from difflab.diffusion.schedules import ddpm_sigmas
from difflab.utils import append_dims, as_sigma


class Precond(nn.Module):
    """Base class. Subclasses define :meth:`coefficients` and :meth:`sample_train_sigma`."""

    kind = "base"

    def __init__(self, net: nn.Module, sigma_data: float = 0.5, sigma_min: float = 0.002,
                 sigma_max: float = 80.0):
        super().__init__()
        self.net = net
        self.sigma_data = float(sigma_data)
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)

    def coefficients(self, sigma: torch.Tensor):
        raise NotImplementedError

    def sample_train_sigma(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """The noise levels this parameterization is trained on (used by the eps losses)."""
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        return int(getattr(self.net, "num_classes", 0) or 0)

    def forward(self, x: torch.Tensor, sigma, class_labels=None, cond_frames=None, **kwargs) -> torch.Tensor:
        sigma = as_sigma(sigma, x)
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma)
        dtype = next(self.net.parameters()).dtype
        # c_noise stays float32: a DDPM timestep (0..999) in bfloat16 would be rounded to a multiple of 4.
        F_x = self.net((append_dims(c_in, x.ndim) * x).to(dtype), c_noise,
                       class_labels=class_labels, cond_frames=cond_frames, **kwargs)
        return append_dims(c_skip, x.ndim) * x + append_dims(c_out, x.ndim) * F_x.to(torch.float32)

    def round_sigma(self, sigma):
        return torch.as_tensor(sigma)


class EDMPrecond(Precond):
    """EDM preconditioning (Karras et al. 2022, Table 1 and eq. 7):
    c_skip = sd^2/(s^2+sd^2), c_out = s sd/sqrt(s^2+sd^2), c_in = 1/sqrt(s^2+sd^2), c_noise = ln(s)/4.
    Trained on ln(sigma) ~ N(P_mean, P_std^2)."""

    kind = "edm"

    def __init__(self, net, sigma_data=0.5, sigma_min=0.002, sigma_max=80.0, P_mean=-1.2, P_std=1.2):
        super().__init__(net, sigma_data, sigma_min, sigma_max)
        self.P_mean, self.P_std = float(P_mean), float(P_std)

    def coefficients(self, sigma):
        sd = self.sigma_data
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / (sigma**2 + sd**2).sqrt()
        c_in = 1 / (sd**2 + sigma**2).sqrt()
        c_noise = sigma.clamp(min=1e-20).log() / 4
        return c_skip, c_out, c_in, c_noise

    def sample_train_sigma(self, n, generator=None, device=None):
        z = torch.randn(n, generator=generator, device=device)
        return (z * self.P_std + self.P_mean).exp()


class _DiscreteTime(Precond):
    """Shared machinery for networks trained on a discrete DDPM schedule (timestep t = 0..T-1 as c_noise).

    A sigma between two table entries maps to a fractional t by linear interpolation in log-sigma
    (exact integers for the table's own sigmas, so DDPM/DDIM grids reproduce the discrete model)."""

    def __init__(self, net, T=1000, beta_schedule="linear", sigma_data=1.0):
        sig = ddpm_sigmas(T, beta_schedule)
        super().__init__(net, sigma_data=sigma_data, sigma_min=float(sig[0]), sigma_max=float(sig[-1]))
        self.T, self.beta_schedule = int(T), beta_schedule
        self.register_buffer("sigmas_table", sig.float(), persistent=False)
        self.register_buffer("log_sigmas", sig.log().float(), persistent=False)

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        log_s = sigma.clamp(min=1e-20).log().to(self.log_sigmas.device)
        idx = torch.searchsorted(self.log_sigmas, log_s).clamp(1, self.T - 1)
        lo, hi = self.log_sigmas[idx - 1], self.log_sigmas[idx]
        w = ((log_s - lo) / (hi - lo)).clamp(0, 1)
        t = (idx - 1).float() + w
        return t.to(sigma.device)

    def round_sigma(self, sigma):
        sigma = torch.as_tensor(sigma, dtype=torch.float32)
        idx = (self.log_sigmas.to(sigma.device)[None] - sigma.reshape(-1, 1).log()).abs().argmin(1)
        return self.sigmas_table.to(sigma.device)[idx].reshape(sigma.shape)

    def sample_train_sigma(self, n, generator=None, device=None):
        t = torch.randint(0, self.T, (n,), generator=generator, device=device)
        return self.sigmas_table.to(t.device)[t]

    def set_sigma_table(self, sigmas: torch.Tensor):
        """Replace the sigma table (t = 0..T-1, increasing) in place, e.g. with a diffusers scheduler's own
        float32 ``alphas_cumprod`` (difflab.interop.from_diffusers). Returns self."""
        sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
        if sigmas.ndim != 1 or sigmas.numel() != self.T or not bool((sigmas[1:] > sigmas[:-1]).all()):
            raise ValueError(f"need an increasing table of T={self.T} sigmas, got shape {tuple(sigmas.shape)}")
        device = self.sigmas_table.device
        self.sigmas_table = sigmas.float().to(device)
        self.log_sigmas = sigmas.log().float().to(device)
        self.sigma_min, self.sigma_max = float(sigmas[0]), float(sigmas[-1])
        return self


class VPEpsPrecond(_DiscreteTime):
    """DDPM eps-prediction (Ho et al. 2020) in sigma-space (Karras et al. 2022, Table 1, 'VP'/iDDPM column):
    D(x; sigma) = x - sigma * eps(x / sqrt(1 + sigma^2), t(sigma))."""

    kind = "vp_eps"

    def coefficients(self, sigma):
        c_skip = torch.ones_like(sigma)
        c_out = -sigma
        c_in = 1 / (sigma**2 + 1).sqrt()
        return c_skip, c_out, c_in, self.sigma_to_t(sigma)


class VPrecond(_DiscreteTime):
    """v-prediction (Salimans & Ho 2022): v = alpha eps - sigma_vp x0 with alpha = 1/sqrt(1+s^2),
    sigma_vp = s/sqrt(1+s^2); hence x0 = x/(1+s^2) - s/sqrt(1+s^2) v in sigma-space."""

    kind = "v"

    def coefficients(self, sigma):
        c_skip = 1 / (sigma**2 + 1)
        c_out = -sigma / (sigma**2 + 1).sqrt()
        c_in = 1 / (sigma**2 + 1).sqrt()
        return c_skip, c_out, c_in, self.sigma_to_t(sigma)


class VEPrecond(Precond):
    """Variance-exploding score SDE (Song et al. 2021; Karras et al. 2022 Table 1 'VE' column):
    c_skip = 1, c_out = sigma, c_in = 1, c_noise = ln(sigma / 2). Trained on log-uniform sigma."""

    kind = "ve"

    def __init__(self, net, sigma_min=0.02, sigma_max=100.0, sigma_data=0.5):
        super().__init__(net, sigma_data, sigma_min, sigma_max)

    def coefficients(self, sigma):
        one = torch.ones_like(sigma)
        return one, sigma, one, (0.5 * sigma.clamp(min=1e-20)).log()

    def sample_train_sigma(self, n, generator=None, device=None):
        u = torch.rand(n, generator=generator, device=device)
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** u


PRECONDS = {"edm": EDMPrecond, "vp_eps": VPEpsPrecond, "v": VPrecond, "ve": VEPrecond}


def make_precond(kind: str, net: nn.Module, **kwargs) -> Precond:
    """Build a preconditioner by name: 'edm', 'vp_eps', 'v', 've'."""
    if kind not in PRECONDS:
        raise ValueError(f"unknown preconditioning {kind!r}; choose one of {sorted(PRECONDS)}")
    return PRECONDS[kind](net, **kwargs)


def vp_log_snr(sigma: torch.Tensor) -> torch.Tensor:
    """log SNR = -2 log sigma in sigma-space."""
    return -2 * torch.log(sigma)



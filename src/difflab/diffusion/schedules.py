"""Noise schedules. Everything is expressed as a noise level sigma (the VE / EDM variable).

DDPM (Ho et al. 2020) and the VP-SDE (Song et al. 2021) live in sigma-space through
``sigma_t = sqrt((1 - abar_t) / abar_t)`` and ``x_vp = x / sqrt(1 + sigma^2)`` (Karras et al. 2022, Table 1).
Sampling grids (Karras rho-grid, DDPM sub-sequences, ...) are in ``difflab.sampling.schedules``.
"""

from __future__ import annotations

import math

import torch


def ddpm_betas(T: int = 1000, schedule: str = "linear", beta_start: float = 1e-4, beta_end: float = 0.02,
               cosine_s: float = 0.008) -> torch.Tensor:
    """Discrete DDPM betas, float64 [T].

    ``linear``: Ho et al. 2020 (beta_1 = 1e-4 .. beta_T = 0.02 for T = 1000; the endpoints are rescaled by
    1000 / T so that other T keep the same continuous-time process, as in Nichol & Dhariwal 2021).
    ``cosine``: Nichol & Dhariwal 2021, eq. 17, abar_t = f(t)/f(0), f(t) = cos^2((t/T + s)/(1 + s) * pi/2),
    betas clipped to 0.999.
    """
    if not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be a positive integer, got {T!r}")
    if schedule == "linear":
        scale = 1000.0 / T
        if not 0 < beta_start <= beta_end or beta_end * scale >= 1:
            raise ValueError(f"linear betas need 0 < beta_start <= beta_end and beta_end * 1000 / T < 1 (a beta >= 1 "
                             f"leaves no signal); got beta_start={beta_start}, beta_end={beta_end}, T={T}: "
                             f"use T > {math.floor(1000 * beta_end)} or the cosine schedule")
        return torch.linspace(beta_start * scale, beta_end * scale, T, dtype=torch.float64)
    if schedule == "cosine":
        t = torch.arange(T + 1, dtype=torch.float64) / T
        f = torch.cos((t + cosine_s) / (1 + cosine_s) * math.pi / 2) ** 2
        abar = f / f[0]
        return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
    raise ValueError(f"unknown beta schedule {schedule!r}; choose 'linear' or 'cosine'")


def ddpm_abar(betas: torch.Tensor) -> torch.Tensor:
    """Cumulative product abar_t = prod_{s<=t} (1 - beta_s), float64 [T]."""
    return torch.cumprod(1 - betas.double(), dim=0)


def ddpm_sigmas(T: int = 1000, schedule: str = "linear", **kw) -> torch.Tensor:
    """sigma_t = sqrt((1 - abar_t) / abar_t) for t = 0..T-1 (index 0 is the least noisy), float64."""
    abar = ddpm_abar(ddpm_betas(T, schedule, **kw))
    return ((1 - abar) / abar).sqrt()


def vp_sigma(t, beta_d: float = 19.9, beta_min: float = 0.1) -> torch.Tensor:
    """Continuous VP-SDE noise level (Song et al. 2021; Karras et al. 2022 Table 1):
    sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1), t in [eps_t, 1]."""
    t = torch.as_tensor(t, dtype=torch.float64)
    return torch.sqrt(torch.expm1(0.5 * beta_d * t**2 + beta_min * t))


def vp_sigma_inv(sigma, beta_d: float = 19.9, beta_min: float = 0.1) -> torch.Tensor:
    """Inverse of :func:`vp_sigma`: t(sigma)."""
    sigma = torch.as_tensor(sigma, dtype=torch.float64)
    return (torch.sqrt(beta_min**2 + 2 * beta_d * torch.log1p(sigma**2)) - beta_min) / beta_d

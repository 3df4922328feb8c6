"""Sampling grids: decreasing noise levels sigma_0 > ... > sigma_{N-1} > sigma_N = 0."""

from __future__ import annotations

import math

import torch

from difflab.diffusion.schedules import ddpm_sigmas, vp_sigma
from difflab.utils import check_positive_int


def _append_zero(s: torch.Tensor) -> torch.Tensor:
    return torch.cat([s.float(), s.new_zeros(1).float()])


def _check_range(sigma_min, sigma_max):
    if not (0 < sigma_min < sigma_max) or not math.isfinite(sigma_max):
        raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")


def karras_sigmas(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. 2022, eq. 5: sigma_i = (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho,
    i = 0..n-1, then 0. Returns n + 1 values."""
    check_positive_int("n (steps)", n)
    _check_range(sigma_min, sigma_max)
    if rho <= 0:
        raise ValueError(f"rho must be > 0, got {rho}")
    if n == 1:
        return _append_zero(torch.tensor([float(sigma_max)], dtype=torch.float64))
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return _append_zero((hi + ramp * (lo - hi)) ** rho)


def uniform_sigmas(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0) -> torch.Tensor:
    """n levels uniform in sigma from sigma_max to sigma_min, then 0."""
    check_positive_int("n (steps)", n)
    _check_range(sigma_min, sigma_max)
    return _append_zero(torch.linspace(sigma_max, sigma_min, n, dtype=torch.float64))


def loguniform_sigmas(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0) -> torch.Tensor:
    """n levels uniform in log sigma (the VE-SDE geometric grid, Song et al. 2021), then 0."""
    check_positive_int("n (steps)", n)
    _check_range(sigma_min, sigma_max)
    return _append_zero(torch.logspace(math.log10(sigma_max), math.log10(sigma_min), n, dtype=torch.float64))


def polyexponential_sigmas(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 2.0) -> torch.Tensor:
    """n levels with ln sigma_i = ln sigma_min + (1 - i/(n-1))^rho (ln sigma_max - ln sigma_min), i = 0..n-1,
    then 0 (k-diffusion's ``get_sigmas_polyexponential``): rho = 1 is the log-uniform grid, rho > 1 puts more
    levels at small sigma. Returns n + 1 values."""
    check_positive_int("n (steps)", n)
    _check_range(sigma_min, sigma_max)
    if not (rho > 0 and math.isfinite(rho)):
        raise ValueError(f"rho must be a finite number > 0, got {rho}")
    if n == 1:
        return _append_zero(torch.tensor([float(sigma_max)], dtype=torch.float64))
    ramp = torch.linspace(1, 0, n, dtype=torch.float64) ** rho
    return _append_zero(torch.exp(ramp * (math.log(sigma_max) - math.log(sigma_min)) + math.log(sigma_min)))


def vp_sigmas(n: int, beta_d: float = 19.9, beta_min: float = 0.1, eps_t: float = 1e-3) -> torch.Tensor:
    """Continuous VP-SDE grid, uniform in t from 1 to eps_t (Song et al. 2021; Karras et al. 2022 Table 1)."""
    check_positive_int("n (steps)", n)
    t = torch.linspace(1.0, eps_t, n, dtype=torch.float64)
    return _append_zero(vp_sigma(t, beta_d, beta_min))


def ddpm_timesteps(n: int, T: int = 1000, spacing: str = "leading", steps_offset: int = 0) -> torch.Tensor:
    """A decreasing sub-sequence of n of the T discrete DDPM timesteps.

    'leading' (DDIM paper / diffusers default): t = i * (T // n) + steps_offset, i = n-1..0;
    'trailing': t = round(T - i * T / n) - 1, i = 0..n-1 (Lin et al. 2024, includes t = T-1);
    'linspace': t = round(linspace(0, T-1, n)).

    Always exactly n distinct timesteps in [0, T-1]. (diffusers builds 'trailing' with
    ``np.arange(T, 0, -T/n)``, which for some n, e.g. T=1000, n=61, returns n+1 values ending in -1 through
    floating-point round-off; here the i-th value is computed directly, which equals diffusers' value wherever
    diffusers is right.)"""
    check_positive_int("n (steps)", n)
    if n > T:
        raise ValueError(f"steps={n} exceeds the schedule's T={T}")
    if spacing == "leading":
        t = torch.arange(n, dtype=torch.int64) * (T // n) + steps_offset
    elif spacing == "trailing":
        ramp = T + torch.arange(n, dtype=torch.float64) * (-T / n)
        t = (torch.round(ramp) - 1).long().flip(0)
    elif spacing == "linspace":
        t = torch.linspace(0, T - 1, n, dtype=torch.float64).round().long()
    else:
        raise ValueError(f"unknown spacing {spacing!r}; choose 'leading', 'trailing' or 'linspace'")
    return t.flip(0)


def ddpm_sigma_grid(n: int, T: int = 1000, beta_schedule: str = "linear", spacing: str = "leading",
                    steps_offset: int = 0) -> torch.Tensor:
    """The sigma levels of a DDPM sub-sequence (see :func:`ddpm_timesteps`), then 0. With n = T this is the
    full ancestral chain of Ho et al. 2020."""
    table = ddpm_sigmas(T, beta_schedule)
    return _append_zero(table[ddpm_timesteps(n, T, spacing, steps_offset)])


GRIDS = {"karras": karras_sigmas, "uniform": uniform_sigmas, "loguniform": loguniform_sigmas,
         "polyexponential": polyexponential_sigmas, "vp": vp_sigmas}

DEFAULT_RHO = {"karras": 7.0, "polyexponential": 2.0}  # rho=None in sigma_grid picks these


DDPM_SPACINGS = ("leading", "trailing", "linspace")


def sigma_grid(name: str, n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float | None = None,
               T: int = 1000, beta_schedule: str = "linear", **kw) -> torch.Tensor:
    """A sampling grid by name: 'karras' (rho, default 7), 'uniform', 'loguniform', 'polyexponential' (rho,
    default 2), 'vp' (continuous VP-SDE, uses its own
    range; ``beta_d``, ``beta_min``, ``eps_t`` in kw), or 'ddpm_leading' / 'ddpm_trailing' / 'ddpm_linspace'
    (a sub-sequence of the T-step DDPM schedule ``beta_schedule``; sigma_min/max are ignored)."""
    if name == "karras":
        return karras_sigmas(n, sigma_min, sigma_max, DEFAULT_RHO[name] if rho is None else rho)
    if name == "polyexponential":
        return polyexponential_sigmas(n, sigma_min, sigma_max, DEFAULT_RHO[name] if rho is None else rho)
    if name == "uniform":
        return uniform_sigmas(n, sigma_min, sigma_max)
    if name == "loguniform":
        return loguniform_sigmas(n, sigma_min, sigma_max)
    if name == "vp":
        return vp_sigmas(n, **kw)
    if name.startswith("ddpm_") and name[5:] in DDPM_SPACINGS:
        return ddpm_sigma_grid(n, T, beta_schedule, name[5:], kw.get("steps_offset", 0))
    names = sorted(GRIDS) + [f"ddpm_{s}" for s in DDPM_SPACINGS]
    raise ValueError(f"unknown grid {name!r}; choose one of {names}")

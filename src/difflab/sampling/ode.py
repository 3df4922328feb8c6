"""Probability-flow ODE samplers (Song et al. 2021, eq. 13; Karras et al. 2022, eq. 3 with sigma(t) = t):

    dx/dsigma = (x - D(x; sigma)) / sigma.

``ode_euler`` and ``ode_heun`` are the deterministic EDM samplers on the given grid; ``ode_dopri5`` / ``ode_rk4``
hand the ODE to torchdiffeq, in the variable u = ln sigma (dx/du = x - D(x; e^u), smooth down to small sigma),
from sigmas[0] to sigmas[-2] and finish with the Euler step to sigma = 0, which is exactly D(x; sigmas[-2]).
"""

from __future__ import annotations

import math

import torch

from difflab.sampling.base import check_options, check_sigmas, denoise, guided, report
from difflab.sampling.edm import sample_euler, sample_heun

ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")  # torchdiffeq, with rtol / atol
FIXED_METHODS = ("rk4", "euler", "midpoint", "heun3")  # torchdiffeq, one step per grid interval
_ADAPTIVE, _FIXED = ADAPTIVE_METHODS, FIXED_METHODS  # old private names (aliases)
# Longest step in u = ln sigma a fixed-grid solver takes; longer grid intervals are split. For any data the
# Jacobian of f(x) = x - D(x; sigma) is I - Cov[x0 | x] / sigma^2, whose eigenvalues are <= 1 (-> 1 for
# sigma >> the data's scale), so z = eigenvalue * du >= -|du|: with |du| <= 1 every contracting mode is inside
# the stability region of euler/midpoint/heun3/rk4 (|R(-1)| <= 1; rk4's real stability limit is 2.79), and
# rk4's R(-1) = 0.375 is e^-1 within 2%. Before issue 17 rk4 took one step per interval and diverged on
# coarse grids (a 2-step Karras grid has |du| = 10.6).
MAX_DU = 1.0


def substeps(u: torch.Tensor, max_du: float = MAX_DU) -> tuple[torch.Tensor, list[int]]:
    """Split each interval of the decreasing grid u into ceil(|du| / max_du) equal substeps; returns the fine
    grid and the indices of the original points in it."""
    fine, idx = [u[:1]], [0]
    for a, b in zip(u[:-1], u[1:], strict=True):
        m = max(1, math.ceil(abs(float(b - a)) / max_du - 1e-9))
        fine.append(a + (b - a) * torch.arange(1, m + 1, dtype=u.dtype, device=u.device) / m)
        idx.append(idx[-1] + m)
    return torch.cat(fine), idx


def sample_ode_euler(D, x, sigmas, *, generator=None, callback=None, guidance=None, cond=None, **options):
    """Euler's method on the probability-flow ODE (Karras et al. 2022, eq. 3; Algorithm 1 without the 2nd-order
    correction). Deterministic; the same as deterministic DDIM (eta = 0) on the same grid."""
    check_options("ode_euler", options, set())
    return sample_euler(D, x, sigmas, generator=generator, callback=callback, guidance=guidance, cond=cond)


def sample_ode_heun(D, x, sigmas, *, generator=None, callback=None, guidance=None, cond=None, **options):
    """Heun's 2nd-order method on the probability-flow ODE, Karras et al. 2022, Algorithm 1 (deterministic;
    Euler on the last step to sigma = 0)."""
    check_options("ode_heun", options, set())
    return sample_heun(D, x, sigmas, generator=generator, callback=callback, guidance=guidance, cond=cond)


@torch.no_grad()
def sample_ode(D, x, sigmas, *, generator=None, callback=None, guidance=None, method: str = "dopri5",
               rtol: float = 1e-5, atol: float = 1e-5, stats: dict | None = None, cond=None, **options):
    """Solve the probability-flow ODE (Song et al. 2021, eq. 13 and Sec. 4.3, which uses RK45) with torchdiffeq.

    In u = ln sigma: dx/du = x - D(x; e^u), from u_0 = ln sigmas[0] to ln sigmas[-2], then x <- D(x; sigmas[-2])
    (the Euler step to sigma = 0). ``method``: an adaptive solver ('dopri5', 'bosh3', ... with ``rtol``/``atol``)
    or a fixed-grid one ('rk4', 'midpoint', ...) that takes one step per grid interval, split into equal
    substeps of <= 1 in ln sigma (``MAX_DU``), so a coarse grid costs more evaluations instead of diverging.
    The grid's interior points are output times (for the callback); they do not constrain an adaptive
    solver's steps. If ``stats`` is a dict it receives ``nfe`` (denoiser evaluations of the solve, excluding
    callback ones).
    """
    import torchdiffeq

    check_options("ode", options, set())
    sigmas = check_sigmas(sigmas)
    if method not in ADAPTIVE_METHODS + FIXED_METHODS:
        raise ValueError(f"method must be one of {ADAPTIVE_METHODS + FIXED_METHODS}, got {method!r}")
    if not (rtol > 0 and atol > 0):
        raise ValueError(f"rtol and atol must be > 0, got rtol={rtol}, atol={atol}")
    pos = sigmas[:-1]
    if (pos[1:] >= pos[:-1]).any():
        raise ValueError("sigmas must be strictly decreasing for an ODE solver")
    D, cond = guided(D, guidance), cond or {}
    nfe = 0

    def f(u, x_u):
        nonlocal nfe
        nfe += 1
        return x_u - denoise(D, x_u, math.exp(float(u)), cond)

    # Integrate from sigmas[0] down to sigmas[-2] in u = ln sigma.
    u = pos.double().log().to(x.device, x.dtype)
    if len(u) > 1 and method in ADAPTIVE_METHODS:
        xs = torchdiffeq.odeint(f, x, u, method=method, rtol=rtol, atol=atol)
    elif len(u) > 1:
        u_fine, idx = substeps(u)
        xs = torchdiffeq.odeint(f, x, u_fine, method=method)[idx]
    else:
        xs = x[None]
    if callback is not None:
        for i in range(len(u) - 1):
            sigma = float(pos[i])
            report(callback, guidance, i=i, x=xs[i], sigma=sigma, sigma_hat=sigma,
                   denoised=denoise(D, xs[i], sigma, cond))
    # Last step: Euler to sigma = 0, i.e. the denoiser's estimate.
    sigma = float(pos[-1])
    denoised = denoise(D, xs[-1], sigma, cond)
    nfe += 1
    report(callback, guidance, i=len(u) - 1, x=xs[-1], sigma=sigma, sigma_hat=sigma, denoised=denoised)
    if stats is not None:
        stats["nfe"] = nfe
    return denoised


def sample_ode_dopri5(D, x, sigmas, *, generator=None, callback=None, guidance=None, rtol: float = 1e-5,
                      atol: float = 1e-5, stats: dict | None = None, cond=None, **options):
    """Adaptive Dormand–Prince RK45 on the probability-flow ODE (Song et al. 2021, Sec. 4.3); see :func:`sample_ode`."""
    check_options("ode_dopri5", options, set())
    return sample_ode(D, x, sigmas, callback=callback, guidance=guidance, method="dopri5", rtol=rtol, atol=atol,
                      stats=stats, cond=cond)


def sample_ode_rk4(D, x, sigmas, *, generator=None, callback=None, guidance=None, stats: dict | None = None,
                   cond=None, **options):
    """Classic fixed-step Runge–Kutta (torchdiffeq 'rk4', 3/8 rule), one step per grid interval in ln sigma,
    split into ceil(|d ln sigma|) equal substeps (see ``MAX_DU``; e.g. the first steps of a Karras grid with
    fewer than ~25 steps), so it is stable and accurate on every grid; ``stats['nfe']`` counts them
    (4 per substep + 1). See :func:`sample_ode`."""
    check_options("ode_rk4", options, set())
    return sample_ode(D, x, sigmas, callback=callback, guidance=guidance, method="rk4", stats=stats, cond=cond)

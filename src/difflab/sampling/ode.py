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
    or a fixed-grid one ('rk4', 'midpoint', ...) that takes one step per grid interval. The grid's interior
    points are output times (for the callback); they do not constrain an adaptive solver's steps. If
    ``stats`` is a dict it receives ``nfe`` (denoiser evaluations of the solve, excluding callback ones).
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
    if len(u) > 1:
        kw = dict(rtol=rtol, atol=atol) if method in ADAPTIVE_METHODS else {}
        xs = torchdiffeq.odeint(f, x, u, method=method, **kw)
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
    """Classic fixed-step Runge–Kutta (torchdiffeq 'rk4', 3/8 rule), one step per grid interval in ln sigma;
    see :func:`sample_ode`."""
    check_options("ode_rk4", options, set())
    return sample_ode(D, x, sigmas, callback=callback, guidance=guidance, method="rk4", stats=stats, cond=cond)

"""RePaint's resampling (Lugmayr et al. 2022, Algorithm 1) in sigma-space: after each step down the grid, jump
back up to the previous noise level with fresh noise and redo the step, ``resample`` times in all, so the
generated region has more steps in which to harmonise with the known one (use it with
:class:`difflab.guidance.inpaint.Inpainting`; without a guidance it is a stochastic sampler of the plain model).

Each step from ``sigma`` to ``sigma_next`` is a Heun step of the probability-flow ODE (Karras et al. 2022,
Algorithm 1; Euler to sigma = 0). The jump back adds ``sqrt(sigma^2 - sigma_next^2) * z``: the forward process
from ``sigma_next`` to ``sigma`` (the variance-exploding form of RePaint's ``x_t ~ N(sqrt(1 - beta) x_{t-1}, beta I)``).
NFE: ``2 resample (N - 1) + 1`` for N steps (the last step, to sigma = 0, is a single Euler step and is not
resampled)."""

from __future__ import annotations

import math

import torch

from difflab.sampling.base import check_options, check_sigmas, denoise, guided, report
from difflab.sampling.rng import randn_like
from difflab.utils import check_int


@torch.no_grad()
def sample_repaint(D, x, sigmas, *, generator=None, callback=None, guidance=None, cond=None, resample: int = 2,
                   **options):
    """Heun steps with RePaint resampling (module doc); ``resample`` = 1 is deterministic Heun."""
    check_options("repaint", options, set())
    check_int("resample", resample, 1, 1000)
    sigmas = check_sigmas(sigmas)
    D, cond, n = guided(D, guidance), cond or {}, len(sigmas) - 1
    for i in range(n):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        for r in range(resample):
            # Heun step down.
            denoised = denoise(D, x, sigma, cond)
            d_cur = (x - denoised) / sigma
            x_next = x + (sigma_next - sigma) * d_cur
            if sigma_next > 0:
                d_prime = (x_next - denoise(D, x_next, sigma_next, cond)) / sigma_next
                x_next = x + (sigma_next - sigma) * (0.5 * d_cur + 0.5 * d_prime)
            last = r == resample - 1 or sigma_next == 0
            if last:  # one callback per step of the grid, as every sampler (with the resample count)
                report(callback, guidance, i=i, resampled=r + 1, x=x, sigma=sigma, sigma_hat=sigma, denoised=denoised,
                       d=d_cur)
            if not last:
                # Jump back in noise: the forward process from sigma_next to sigma.
                x = x_next + math.sqrt(sigma**2 - sigma_next**2) * randn_like(x_next, generator)
            else:
                x = x_next
                break
    return x


__all__ = ["sample_repaint"]

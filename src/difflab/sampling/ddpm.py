"""DDPM ancestral sampling (Ho et al. 2020) in sigma-space, on any decreasing grid ending in 0.

The grid itself defines the discrete chain: abar_i = 1 / (1 + sigma_i^2) (so sigma = 0 is abar = 1) and the
step from sigma_i to sigma_{i+1} has alpha_t = abar_t / abar_{t-1}, beta_t = 1 - alpha_t. On a DDPM sub-sequence
grid (``ddpm_sigma_grid``) this is exactly the reverse chain of the trained T-step model, including skipped
steps as in diffusers' DDPMScheduler with ``num_inference_steps < T``.
"""

from __future__ import annotations

import math

import torch

from difflab.sampling.base import check_options, check_sigmas, denoise, guided, report
from difflab.sampling.generate import resolve_generator
from difflab.sampling.rng import randn_like

_VARIANCES = ("posterior", "beta")


def check_clip(clip_x0):
    if clip_x0 is not None and not (isinstance(clip_x0, (int, float)) and not isinstance(clip_x0, bool)
                                    and clip_x0 > 0 and math.isfinite(clip_x0)):
        raise ValueError(f"clip_x0 must be None or a finite number > 0, got {clip_x0!r}")


def vp_coefficients(sigma: float, sigma_next: float):
    """abar_t, abar_{t-1}, 1 - abar_t, 1 - abar_{t-1}, alpha_t, beta_t for the step sigma -> sigma_next
    (closed forms in sigma, float64, so small sigmas keep their precision)."""
    abar, abar_prev = 1 / (1 + sigma**2), 1 / (1 + sigma_next**2)
    one_m_abar, one_m_abar_prev = sigma**2 / (1 + sigma**2), sigma_next**2 / (1 + sigma_next**2)
    alpha = (1 + sigma_next**2) / (1 + sigma**2)
    beta = (sigma**2 - sigma_next**2) / (1 + sigma**2)
    return abar, abar_prev, one_m_abar, one_m_abar_prev, alpha, beta


@torch.no_grad()
def sample_ddpm(D, x, sigmas, *, generator=None, callback=None, guidance=None, variance: str = "posterior",
                clip_x0: float | None = None, cond=None, seed: int | None = None, **options):
    """Ancestral sampling, Ho et al. 2020, Algorithm 2 with the posterior q(x_{t-1} | x_t, x0) of eq. 6-7:

        mu_t = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x0_hat + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t,
        x_{t-1} = mu_t + sigma_t z,  z = 0 on the last step,

    with ``variance='posterior'``: sigma_t^2 = beta-tilde_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t, or
    ``variance='beta'``: sigma_t^2 = beta_t (Section 3.2; diffusers' 'fixed_small' / 'fixed_large').

    x0_hat = D(x; sigma) (eq. 15 rewritten through the denoiser), optionally clipped to [-clip_x0, clip_x0]
    (diffusers' ``clip_sample``; off by default). The paper's variables are kept internally:
    x_t = x / sqrt(1 + sigma^2) (VP-scaled); input and output are VE-scaled (x = x0 + sigma n).
    In VE variables without clipping the step is the ancestral Euler step
    x' = (s'/s)^2 x + (1 - (s'/s)^2) x0_hat + s' sqrt(1 - (s'/s)^2) z for the posterior variance.
    """
    check_options("ddpm", options, set())
    sigmas = check_sigmas(sigmas)
    if variance not in _VARIANCES:
        raise ValueError(f"variance must be one of {_VARIANCES}, got {variance!r}")
    check_clip(clip_x0)
    generator = resolve_generator(generator, seed, x)
    D, cond, n = guided(D, guidance), cond or {}, len(sigmas) - 1
    for i in range(n):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        abar, abar_prev, one_m_abar, one_m_abar_prev, alpha, beta = vp_coefficients(sigma, sigma_next)
        # Predict x0 (and clip it if asked).
        denoised = denoise(D, x, sigma, cond)
        report(callback, guidance, i=i, x=x, sigma=sigma, sigma_hat=sigma, denoised=denoised)
        x0 = denoised if clip_x0 is None else denoised.clamp(-clip_x0, clip_x0)
        # Posterior mean in the paper's (VP) variables, eq. 7.
        x_t = x * math.sqrt(abar)
        mean = (math.sqrt(abar_prev) * beta / one_m_abar) * x0 + (math.sqrt(alpha) * one_m_abar_prev / one_m_abar) * x_t
        # Add noise with the chosen variance, except on the last step.
        if sigma_next > 0:
            var = beta * one_m_abar_prev / one_m_abar if variance == "posterior" else beta
            mean = mean + math.sqrt(var) * randn_like(x, generator)
        # Back to VE scaling at the new noise level.
        x = mean / math.sqrt(abar_prev)
    return x

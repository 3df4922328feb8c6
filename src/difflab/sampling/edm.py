"""EDM samplers (Karras et al. 2022): Heun's 2nd-order method, deterministic (Algorithm 1) or stochastic
(Algorithm 2, S_churn / S_noise / S_tmin / S_tmax), and the 1st-order Euler variant."""

from __future__ import annotations

import math

import torch

from difflab.sampling.base import (
    check_churn,
    check_options,
    check_sigmas,
    churn,
    denoise,
    gamma_for,
    guided,
    report,
)

_CHURN_OPTS = {"S_churn", "S_tmin", "S_tmax", "S_noise", "cond"}


@torch.no_grad()
def sample_heun(D, x, sigmas, *, generator=None, callback=None, guidance=None, S_churn: float = 0.0,
                S_tmin: float = 0.0, S_tmax: float = math.inf, S_noise: float = 1.0, cond=None, **options):
    """Karras et al. 2022, Algorithm 2 (stochastic Heun); with S_churn = 0 it is Algorithm 1 (deterministic).

    gamma_i = min(S_churn/N, sqrt(2)-1) for S_tmin <= sigma_i <= S_tmax; the last step (to sigma = 0) is Euler.
    """
    check_options("heun", options, _CHURN_OPTS)
    sigmas = check_sigmas(sigmas)
    check_churn(S_churn, S_noise, S_tmin, S_tmax)
    D, cond, n = guided(D, guidance), cond or {}, len(sigmas) - 1
    for i in range(n):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        # Increase noise temporarily.
        gamma = gamma_for(sigma, S_churn, n, S_tmin, S_tmax)
        x_hat, sigma_hat = churn(x, sigma, gamma, S_noise, generator, guidance)
        # Euler step.
        denoised = denoise(D, x_hat, sigma_hat, cond)
        d_cur = (x_hat - denoised) / sigma_hat
        x_next = x_hat + (sigma_next - sigma_hat) * d_cur
        report(callback, guidance, i=i, x=x, sigma=sigma, sigma_hat=sigma_hat, denoised=denoised, d=d_cur)
        # Apply 2nd order correction.
        if sigma_next > 0:
            denoised_next = denoise(D, x_next, sigma_next, cond)
            d_prime = (x_next - denoised_next) / sigma_next
            x_next = x_hat + (sigma_next - sigma_hat) * (0.5 * d_cur + 0.5 * d_prime)
        x = x_next
    return x


@torch.no_grad()
def sample_euler(D, x, sigmas, *, generator=None, callback=None, guidance=None, S_churn: float = 0.0,
                 S_tmin: float = 0.0, S_tmax: float = math.inf, S_noise: float = 1.0, cond=None, **options):
    """Euler's method on the probability-flow ODE dx/dsigma = (x - D(x; sigma))/sigma (Karras et al. 2022,
    eq. 3 with sigma(t) = t), with optional churn as in Algorithm 2 (diffusers' EDMEulerScheduler)."""
    check_options("euler", options, _CHURN_OPTS)
    sigmas = check_sigmas(sigmas)
    check_churn(S_churn, S_noise, S_tmin, S_tmax)
    D, cond, n = guided(D, guidance), cond or {}, len(sigmas) - 1
    for i in range(n):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        # Increase noise temporarily.
        x_hat, sigma_hat = churn(x, sigma, gamma_for(sigma, S_churn, n, S_tmin, S_tmax), S_noise, generator,
                                 guidance)
        # Euler step.
        denoised = denoise(D, x_hat, sigma_hat, cond)
        d_cur = (x_hat - denoised) / sigma_hat
        report(callback, guidance, i=i, x=x, sigma=sigma, sigma_hat=sigma_hat, denoised=denoised, d=d_cur)
        x = x_hat + (sigma_next - sigma_hat) * d_cur
    return x


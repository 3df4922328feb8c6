"""DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic
Models", Algorithm 2), in sigma-space as in k-diffusion's ``sample_dpmpp_2m``."""

from __future__ import annotations

import math

import torch

from difflab.sampling.base import check_options, check_sigmas, denoise, guided, report


@torch.no_grad()
def sample_dpmpp_2m(D, x, sigmas, *, generator=None, callback=None, guidance=None, cond=None, **options):
    """DPM-Solver++(2M), Lu et al. 2022, Algorithm 2 (multistep 2nd order, data prediction).

    With lambda = -ln sigma (half the log-SNR) and h_i = lambda_{i+1} - lambda_i:
        x_{i+1} = (sigma_{i+1} / sigma_i) x_i - (e^{-h_i} - 1) D_i,
        D_i = (1 + 1/(2 r_i)) D(x_i; sigma_i) - 1/(2 r_i) D(x_{i-1}; sigma_{i-1}),  r_i = h_{i-1} / h_i,
    with the first-order update (DPM-Solver++(1) = DDIM) on the first step and on the last step to sigma = 0
    (k-diffusion's convention; diffusers' ``lower_order_final``). The VE-scaled update equals the paper's VP one
    (alpha_t = 1/sqrt(1+sigma^2), sigma_t = sigma alpha_t). Deterministic: ``generator`` is unused.
    """
    check_options("dpmpp_2m", options, set())
    sigmas = check_sigmas(sigmas)
    D, cond, n = guided(D, guidance), cond or {}, len(sigmas) - 1
    old_denoised, h_last = None, None
    for i in range(n):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoise(D, x, sigma, cond)
        report(callback, guidance, i=i, x=x, sigma=sigma, sigma_hat=sigma, denoised=denoised)
        # Last step: the first-order update to sigma = 0 is the denoiser's estimate.
        if sigma_next == 0:
            x = denoised
            continue
        h = math.log(sigma) - math.log(sigma_next)
        if old_denoised is None or h_last is None or h_last == 0 or h == 0:
            # First-order step (DPM-Solver++(1)).
            d = denoised
        else:
            # Second-order multistep correction.
            r = h_last / h
            d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
        x = (sigma_next / sigma) * x - math.expm1(-h) * d
        old_denoised, h_last = denoised, h
    return x

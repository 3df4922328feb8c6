"""Single-step second-order samplers: two network evaluations per step (one on the last step to sigma = 0).

- ``dpm_2``: DPM-Solver-2 in sigma-space (Lu et al. 2022, "DPM-Solver", Algorithm 1 with r = 1/2, as Karras et
  al. 2022 use it in their Sec. 3 comparison; k-diffusion's ``sample_dpm_2``, diffusers' KDPM2DiscreteScheduler):
  an Euler half-step to the geometric midpoint sigma_mid = sqrt(sigma sigma'), then the full step with the
  midpoint's derivative.
- ``dpmpp_2s_ancestral``: DPM-Solver++(2S) (Lu et al. 2022, "DPM-Solver++", Algorithm 1, r = 1/2) to
  sigma_down, plus ancestral noise sigma_up (k-diffusion's ``sample_dpmpp_2s_ancestral``).
- ``dpmpp_sde``: the stochastic DPM-Solver++(2S) of k-diffusion's ``sample_dpmpp_sde`` (diffusers'
  DPMSolverSDEScheduler): both stages are ancestral steps whose noises are the increments of one Brownian path.
"""

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
from difflab.sampling.noise import ancestral_step, denoise_and_report, sde_setup


@torch.no_grad()
def sample_dpm_2(D, x, sigmas, *, generator=None, callback=None, guidance=None, S_churn: float = 0.0,
                 S_tmin: float = 0.0, S_tmax: float = math.inf, S_noise: float = 1.0, cond=None, **options):
    """DPM-Solver-2 in sigma-space (Lu et al. 2022, Algorithm 1, r = 1/2; midpoint in ln sigma):

        d = (x - D(x; sigma)) / sigma,  x_mid = x + (sigma_mid - sigma) d,  sigma_mid = sqrt(sigma sigma'),
        x' = x + (sigma' - sigma) (x_mid - D(x_mid; sigma_mid)) / sigma_mid,

    with the Euler step to sigma = 0 at the end and optional churn as in Karras et al. 2022, Algorithm 2."""
    check_options("dpm_2", options, set())
    sigmas = check_sigmas(sigmas)
    check_churn(S_churn, S_noise, S_tmin, S_tmax)
    D, cond, n = guided(D, guidance), cond or {}, len(sigmas) - 1
    for i in range(n):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        # Increase noise temporarily.
        x_hat, sigma_hat = churn(x, sigma, gamma_for(sigma, S_churn, n, S_tmin, S_tmax), S_noise, generator)
        denoised = denoise(D, x_hat, sigma_hat, cond)
        d = (x_hat - denoised) / sigma_hat
        report(callback, guidance, i=i, x=x, sigma=sigma, sigma_hat=sigma_hat, denoised=denoised, d=d)
        if sigma_next == 0:
            x = denoised  # Euler step to sigma = 0.
            continue
        # Half-step to the midpoint in ln sigma, then the full step with the midpoint's derivative.
        sigma_mid = math.exp(0.5 * (math.log(sigma_hat) + math.log(sigma_next)))
        x_mid = x_hat + (sigma_mid - sigma_hat) * d
        d_mid = (x_mid - denoise(D, x_mid, sigma_mid, cond)) / sigma_mid
        x = x_hat + (sigma_next - sigma_hat) * d_mid
    return x


def dpmpp_1(x, denoised, sigma: float, sigma_to: float):
    """DPM-Solver++(1) from sigma to sigma_to (= DDIM = Euler in VE variables; Lu et al. 2022, eq. 9):
    x' = (sigma_to/sigma) x - expm1(-h) D = (sigma_to/sigma) x + (1 - sigma_to/sigma) D, h = ln(sigma/sigma_to)."""
    ratio = sigma_to / sigma
    return ratio * x + (1 - ratio) * denoised


@torch.no_grad()
def sample_dpmpp_2s_ancestral(D, x, sigmas, *, generator=None, callback=None, guidance=None, eta: float = 1.0,
                              s_noise: float = 1.0, cond=None, seed: int | None = None, **options):
    """Ancestral DPM-Solver++(2S) (Lu et al. 2022, DPM-Solver++ Algorithm 1 with r = 1/2):

        (sigma_down, sigma_up) = ancestral split of sigma -> sigma' (``eta``),  h = ln(sigma / sigma_down),
        x_2 = (sigma_s / sigma) x - expm1(-h/2) D(x; sigma),  sigma_s = sqrt(sigma sigma_down),
        x' = (sigma_down / sigma) x - expm1(-h) D(x_2; sigma_s) + s_noise sigma_up z,  h = ln(sigma / sigma_down).

    eta = 0 is the deterministic DPM-Solver++(2S); the last step to sigma = 0 is x <- D(x; sigma)."""
    check_options("dpmpp_2s_ancestral", options, set())
    sigmas, z, D, cond = sde_setup("dpmpp_2s_ancestral", D, x, sigmas, generator, seed, "generator", eta, s_noise,
                                   guidance, cond)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoise_and_report(D, x, sigma, cond, i, callback, guidance)
        if sigma_next == 0:
            x = denoised
            continue
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
        # DPM-Solver++(2S): first-order step to the midpoint in lambda, then the full step with its estimate.
        sigma_s = math.sqrt(sigma * sigma_down)
        if sigma_down > 0:
            x_2 = dpmpp_1(x, denoised, sigma, sigma_s)
            x = dpmpp_1(x, denoise(D, x_2, sigma_s, cond), sigma, sigma_down)
        else:
            x = denoised
        # Ancestral noise.
        if sigma_up > 0:
            x = x + z(sigma, sigma_next) * (s_noise * sigma_up)
    return x


@torch.no_grad()
def sample_dpmpp_sde(D, x, sigmas, *, generator=None, callback=None, guidance=None, eta: float = 1.0,
                     s_noise: float = 1.0, r: float = 0.5, noise: str = "generator", cond=None,
                     seed: int | None = None, **options):
    """Stochastic DPM-Solver++(2S) (k-diffusion's ``sample_dpmpp_sde``; Lu et al. 2022 with the ancestral split
    of each stage): with lambda = -ln sigma, h = lambda' - lambda, s = lambda + r h,

        stage 1: ancestral step sigma -> sigma_s (sigma_down^(1), sigma_up^(1)) from D(x; sigma) -> x_2,
        stage 2: D_d = (1 - 1/(2r)) D(x; sigma) + 1/(2r) D(x_2; sigma_s), ancestral step sigma -> sigma' from D_d,

    each x <- (sigma_down/sigma) x - expm1(-(ln sigma - ln sigma_down)) D + s_noise sigma_up z. The two noises
    are increments of one Brownian path in sigma (over [sigma_s, sigma] and [sigma', sigma]), drawn from the
    per-sample generators or, with ``noise='brownian'``, from a seeded Brownian tree (torchsde), so that the
    sample converges as the steps grow. eta = 0 with r = 1/2 is DPM-Solver++(2S)."""
    check_options("dpmpp_sde", options, set())
    if not (0 < r <= 1):
        raise ValueError(f"dpmpp_sde: r must be in (0, 1], got {r!r}")
    sigmas, z, D, cond = sde_setup("dpmpp_sde", D, x, sigmas, generator, seed, noise, eta, s_noise, guidance, cond)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoise_and_report(D, x, sigma, cond, i, callback, guidance)
        if sigma_next == 0:
            x = denoised
            continue
        h = math.log(sigma) - math.log(sigma_next)
        sigma_s = math.exp(math.log(sigma) - r * h)
        # Brownian increments over [sigma_s, sigma] and [sigma', sigma_s], normalised.
        z1 = z(sigma, sigma_s) if eta > 0 else None
        z2 = z(sigma_s, sigma_next) if eta > 0 else None
        # Stage 1: ancestral step to sigma_s.
        sd, su = ancestral_step(sigma, sigma_s, eta)
        x_2 = dpmpp_1(x, denoised, sigma, sd)
        if su > 0:
            x_2 = x_2 + z1 * (s_noise * su)
        denoised_2 = denoise(D, x_2, sigma_s, cond)
        # Stage 2: ancestral step to sigma' with the combined estimate.
        fac = 1 / (2 * r)
        denoised_d = (1 - fac) * denoised + fac * denoised_2
        sd, su = ancestral_step(sigma, sigma_next, eta)
        x = dpmpp_1(x, denoised_d, sigma, sd)
        if su > 0:
            w = (z1 * math.sqrt(sigma - sigma_s) + z2 * math.sqrt(sigma_s - sigma_next)) / math.sqrt(sigma - sigma_next)
            x = x + w * (s_noise * su)
    return x

"""DDIM (Song, Meng & Ermon 2021) in sigma-space, on any decreasing grid ending in 0.

abar_i = 1 / (1 + sigma_i^2) comes from the grid itself (sigma = 0 is abar = 1, i.e. diffusers'
``set_alpha_to_one=True``). With eta = 0 the update is exactly an Euler step of the probability-flow ODE in
sigma-space, x' = x0_hat + sigma' eps_hat (Karras et al. 2022, Sec. 3 / Table 1); with eta = 1 it is DDPM
ancestral sampling with the posterior variance.
"""

from __future__ import annotations

import math

import torch

from difflab.sampling.base import check_options, check_sigmas, denoise, guided, report
from difflab.sampling.ddpm import check_clip, vp_coefficients
from difflab.sampling.generate import resolve_generator
from difflab.sampling.rng import randn_like


def check_eta_defined(eta: float, sigmas: torch.Tensor):
    """eq. 16 needs 1 - abar_{t-1} - sigma_t(eta)^2 >= 0: eta^2 <= sigma^2 / (sigma^2 - sigma'^2) (VE variables)
    at each step to sigma' > 0 (the step to sigma' = 0 adds no noise whatever eta)."""
    if eta <= 1.0:
        return
    s = sigmas.double()
    s, s_next = s[:-1][s[1:] > 0], s[1:][s[1:] > 0]
    gap = s**2 - s_next**2
    if len(s) and bool((gap > 0).any()):
        bound = float((s[gap > 0] ** 2 / gap[gap > 0]).min().sqrt())
        if eta > bound * (1 + 1e-9):
            raise ValueError(f"eta={eta:g} is not defined on this grid: DDIM's eta must be <= {bound:.4g} here "
                             "(sqrt(sigma^2 / (sigma^2 - sigma'^2)) at its largest step)")


@torch.no_grad()
def sample_ddim(D, x, sigmas, *, generator=None, callback=None, guidance=None, eta: float = 0.0,
                clip_x0: float | None = None, cond=None, seed: int | None = None, **options):
    """Song et al. 2021 (DDIM), eq. 12 with sigma_t(eta) of eq. 16:

        x_{t-1} = sqrt(abar_{t-1}) x0_hat + sqrt(1 - abar_{t-1} - sigma_t^2) eps_hat + sigma_t z,
        sigma_t = eta sqrt((1 - abar_{t-1}) / (1 - abar_t)) sqrt(1 - abar_t / abar_{t-1}),

    in the paper's (VP) variables x_t = x / sqrt(1 + sigma^2); input and output are VE-scaled. x0_hat = D(x;
    sigma), eps_hat = (x - D(x; sigma)) / sigma. ``clip_x0`` clips x0_hat only (eps_hat stays the network's, as
    in diffusers' DDIMScheduler with ``use_clipped_model_output=False``). eta = 0 is deterministic (no noise
    is drawn), eta = 1 is DDPM with the posterior variance; eta > 1 (more noise than DDPM, the direction term
    shrinks) is defined while 1 - abar_{t-1} - sigma_t^2 >= 0, i.e. eta^2 <= (1 - abar_t) / beta_t =
    sigma^2 / (sigma^2 - sigma'^2) at every step to sigma' > 0; a larger eta is a ValueError.
    """
    check_options("ddim", options, set())
    sigmas = check_sigmas(sigmas)
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not (eta >= 0.0 and math.isfinite(eta)):
        raise ValueError(f"eta must be a finite number >= 0, got {eta!r}")
    check_eta_defined(eta, sigmas)
    check_clip(clip_x0)
    generator = resolve_generator(generator, seed, x)
    D, cond, n = guided(D, guidance), cond or {}, len(sigmas) - 1
    for i in range(n):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        abar, abar_prev, one_m_abar, one_m_abar_prev, alpha, beta = vp_coefficients(sigma, sigma_next)
        # Predict x0 and the noise.
        denoised = denoise(D, x, sigma, cond)
        report(callback, guidance, i=i, x=x, sigma=sigma, sigma_hat=sigma, denoised=denoised)
        eps = (x - denoised) / sigma
        x0 = denoised if clip_x0 is None else denoised.clamp(-clip_x0, clip_x0)
        # sigma_t(eta), eq. 16; the direction's coefficient squared is
        # 1 - abar_{t-1} - sigma_t^2 = (1 - abar_{t-1}) (1 - eta^2 beta_t / (1 - abar_t)).
        std = eta * math.sqrt(one_m_abar_prev / one_m_abar * beta)
        dir_coef = math.sqrt(max(one_m_abar_prev * (1 - eta**2 * beta / one_m_abar), 0.0))
        # DDIM update, eq. 12, in VP variables.
        x_prev = math.sqrt(abar_prev) * x0 + dir_coef * eps
        if std > 0 and sigma_next > 0:
            x_prev = x_prev + std * randn_like(x, generator)
        # Back to VE scaling at the new noise level.
        x = x_prev / math.sqrt(abar_prev)
    return x

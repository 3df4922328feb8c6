"""Reverse-SDE samplers of the score SDE paper (Song et al. 2021): Euler–Maruyama and predictor–corrector.

All work on the one denoiser D with a VE-scaled state x = x0 + sigma n and any decreasing grid ending in 0;
the score is Tweedie's ``(D(x; sigma) - x) / sigma^2``.

- ``sde='ve'``: the VE SDE dx = sqrt(d[sigma^2]/dt) dw with Song et al.'s geometric sigma(t) (t linear in
  ln sigma), the state is x itself.
- ``sde='vp'``: the VP SDE dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw acts on the VP-scaled state
  x_vp = x / sqrt(1 + sigma^2) with score_vp = sqrt(1 + sigma^2) score; each step converts x to x_vp at sigma,
  applies the VP update and converts back at the next sigma. The grid's sigmas fix the VP times through
  sigma(t) = sqrt(exp(beta_d t^2/2 + beta_min t) - 1) (Euler–Maruyama) or the discrete betas
  beta_i = 1 - abar_i / abar_{i+1} with abar = 1/(1 + sigma^2) (reverse-diffusion predictor, eq. 47).

The last step (to sigma = 0) returns Tweedie's estimate D(x; sigma_{N-1}), the noise-free final step Song et
al.'s samplers take (their code returns ``x_mean`` on the last step) and the exact reverse-diffusion step to
sigma = 0 without noise.
"""

from __future__ import annotations

import math

import torch

from difflab.diffusion.schedules import vp_sigma_inv
from difflab.sampling.base import check_options, check_sigmas, denoise, guided, report
from difflab.sampling.generate import resolve_generator
from difflab.sampling.rng import randn_like
from difflab.utils import append_dims

_SDES = ("ve", "vp")
_PREDICTORS = ("reverse_diffusion", "euler_maruyama")


def _check_sde(sde):
    if sde not in _SDES:
        raise ValueError(f"sde must be one of {_SDES}, got {sde!r}")


def em_step(x, denoised, sigma: float, sigma_next: float, sde: str, z, beta_d: float, beta_min: float):
    """One Euler–Maruyama step of the reverse SDE dx = [f - g^2 score] dt + g dw (Song et al. 2021, eq. 6)
    from sigma to sigma_next > 0, z ~ N(0, I) (None: no noise)."""
    if sde == "ve":
        # VE: sigma(t) = sigma_min (sigma_max/sigma_min)^t, so g(t)^2 dt = 2 sigma^2 d(ln sigma).
        dt = math.log(sigma) - math.log(sigma_next)
        x_next = x + 2 * dt * (denoised - x)  # = x + g^2 dt score
        return x_next if z is None else x_next + sigma * math.sqrt(2 * dt) * z
    # VP: times from sigma(t) of the continuous VP-SDE, beta(t) = beta_min + beta_d t.
    t, t_next = float(vp_sigma_inv(sigma, beta_d, beta_min)), float(vp_sigma_inv(sigma_next, beta_d, beta_min))
    dt, beta_t = t - t_next, beta_min + beta_d * t
    x_vp, score_vp = x / math.sqrt(1 + sigma**2), (denoised - x) * (math.sqrt(1 + sigma**2) / sigma**2)
    x_vp = x_vp + (0.5 * beta_t * x_vp + beta_t * score_vp) * dt
    if z is not None:
        x_vp = x_vp + math.sqrt(beta_t * dt) * z
    return x_vp * math.sqrt(1 + sigma_next**2)


def reverse_diffusion_step(x, denoised, sigma: float, sigma_next: float, sde: str, z):
    """The reverse-diffusion predictor, Song et al. 2021 eq. 46 (VE) / eq. 47 (VP), between two grid levels."""
    if sde == "ve":
        # x' = x + (sigma^2 - sigma'^2) score + sqrt(sigma^2 - sigma'^2) z.
        var = sigma**2 - sigma_next**2
        x_next = x + (var / sigma**2) * (denoised - x)
        return x_next if z is None else x_next + math.sqrt(var) * z
    # VP: x_vp' = (2 - sqrt(1 - beta_i)) x_vp + beta_i score_vp + sqrt(beta_i) z, beta_i from the grid.
    beta = (sigma**2 - sigma_next**2) / (1 + sigma**2)
    x_vp, score_vp = x / math.sqrt(1 + sigma**2), (denoised - x) * (math.sqrt(1 + sigma**2) / sigma**2)
    x_vp = (2 - math.sqrt(1 - beta)) * x_vp + beta * score_vp
    if z is not None:
        x_vp = x_vp + math.sqrt(beta) * z
    return x_vp * math.sqrt(1 + sigma_next**2)


@torch.no_grad()
def sample_euler_maruyama(D, x, sigmas, *, generator=None, callback=None, guidance=None, sde: str = "ve",
                          beta_d: float = 19.9, beta_min: float = 0.1, cond=None, seed: int | None = None,
                          **options):
    """Euler–Maruyama on the reverse-time SDE, Song et al. 2021, eq. 6 (Sec. 4.1, App. C/F 'Euler–Maruyama').

    VE (``sde='ve'``): EM in Song et al.'s VE time t ~ ln sigma: x' = x + 2 h (D - x) + sigma sqrt(2 h) z,
    h = ln(sigma / sigma').
    VP (``sde='vp'``): EM in the VP time t(sigma) (``beta_d``, ``beta_min``, Song et al.'s defaults 19.9, 0.1)
    on the VP-scaled state: x_vp' = x_vp + [beta(t)/2 x_vp + beta(t) score_vp] dt + sqrt(beta(t) dt) z.
    The last step (to sigma = 0) returns D(x; sigma_{N-1}). EM is first order: a coarse grid (h > 1) overshoots.
    """
    check_options("euler_maruyama", options, set())
    sigmas = check_sigmas(sigmas)
    _check_sde(sde)
    generator = resolve_generator(generator, seed, x)
    D, cond, n = guided(D, guidance), cond or {}, len(sigmas) - 1
    for i in range(n):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        # Score from the denoiser.
        denoised = denoise(D, x, sigma, cond)
        report(callback, guidance, i=i, x=x, sigma=sigma, sigma_hat=sigma, denoised=denoised)
        # Last step: Tweedie's estimate, no noise.
        if sigma_next == 0:
            x = denoised
            continue
        # Euler–Maruyama step of the reverse SDE.
        x = em_step(x, denoised, sigma, sigma_next, sde, randn_like(x, generator), beta_d, beta_min)
    return x


def langevin_step(D, x, sigma: float, cond, snr: float, alpha: float, generator, snr_norm: str = "sample",
                  sigma_data: float = 0.5):
    """One Langevin corrector step at fixed sigma, Song et al. 2021, Algorithm 4 (VE, alpha = 1) / 5 (VP,
    alpha = 1 - beta_i): eps = 2 alpha (r ||z|| / ||score||)^2, x <- x + eps score + sqrt(2 eps) z.

    ``snr_norm='expected'``: the norms replaced by their expectations for data of per-coordinate variance
    sigma_data^2 (exact for N(0, sigma_data^2 I)): ||z||^2 = d and ||score||^2 = d / (sigma^2 + sigma_data^2),
    i.e. the state-independent step eps = 2 alpha snr^2 (sigma^2 + sigma_data^2) (a sample does not depend on
    its batch, and the step does not bias the stationary law in low dimension).
    ``'sample'``: the norms of each sample (the algorithm as written; state-dependent, see :func:`sample_pc`).
    ``'batch'``: the norms averaged over the batch, as in Song et al.'s code and diffusers'
    ScoreSdeVeScheduler (couples the samples of a batch). The step is invariant to the VE/VP scaling of x
    (eps_vp = eps / (1 + sigma^2) gives the same update), so it is applied to x directly."""
    denoised = denoise(D, x, sigma, cond)
    score = (denoised - x) / sigma**2
    z = randn_like(x, generator)
    if snr_norm == "expected":
        eps = 2 * alpha * snr**2 * (sigma**2 + sigma_data**2)
        return x + eps * score + math.sqrt(2 * eps) * z
    grad_norm = score.flatten(1).norm(dim=1)
    noise_norm = z.flatten(1).norm(dim=1)
    if snr_norm == "batch":
        grad_norm, noise_norm = grad_norm.mean().expand_as(grad_norm), noise_norm.mean().expand_as(noise_norm)
    eps = append_dims(2 * alpha * (snr * noise_norm / grad_norm.clamp_min(1e-30)) ** 2, x.ndim)
    return x + eps * score + (2 * eps).sqrt() * z


@torch.no_grad()
def sample_pc(D, x, sigmas, *, generator=None, callback=None, guidance=None, sde: str = "ve",
              predictor: str = "reverse_diffusion", snr: float = 0.16, n_corrector: int = 1,
              snr_norm: str = "expected", sigma_data: float = 0.5, beta_d: float = 19.9, beta_min: float = 0.1,
              cond=None,
              seed: int | None = None, **options):
    """Predictor–corrector sampling, Song et al. 2021, Algorithm 1 with Algorithms 2–5 (App. G).

    At each level sigma_i: ``n_corrector`` Langevin steps with signal-to-noise ratio ``snr`` (Algorithm 4/5;
    VP uses alpha_i = 1 - beta_i of the step i -> i+1), then one predictor step to sigma_{i+1}:
    ``predictor='reverse_diffusion'`` (eq. 46/47) or ``'euler_maruyama'`` (see :func:`sample_euler_maruyama`).
    This is the order of Song et al.'s code (corrector, then predictor, at each time); the last step (to
    sigma = 0) returns D(x; sigma_{N-1}). ``n_corrector=0`` gives the predictor alone. Defaults (snr 0.16,
    one corrector step, reverse diffusion) are the paper's VE settings for CIFAR-10.
    ``snr_norm``: 'expected' (default; the step 2 alpha snr^2 (sigma^2 + sigma_data^2) that the rule gives with
    the norms' expected values ||z||^2 = d, ||score||^2 = d / (sigma^2 + sigma_data^2), ``sigma_data`` default
    0.5 as EDM: per-sample, state-independent, correct in every dimension), 'sample' (per-sample realised
    norms, the algorithm as written) or 'batch' (norms averaged over the batch as in Song et al.'s code /
    diffusers; couples the batch). Per-sample realised norms make the
    step size depend on the state, which biases the corrector's stationary law: in d dims
    ||z||^2 / (||score||^2 v) is F(d, d)-distributed, so in low dimension (d < ~100) the corrector inflates
    the variance (for d = 1 it is unstable); before issue 17 'sample' was the default.
    """
    check_options("pc", options, set())
    sigmas = check_sigmas(sigmas)
    _check_sde(sde)
    if predictor not in _PREDICTORS:
        raise ValueError(f"predictor must be one of {_PREDICTORS}, got {predictor!r}")
    if isinstance(snr, bool) or not isinstance(snr, (int, float)) or not (snr > 0 and math.isfinite(snr)):
        raise ValueError(f"snr must be a finite number > 0, got {snr!r}")
    if not (isinstance(sigma_data, (int, float)) and sigma_data >= 0 and math.isfinite(sigma_data)):
        raise ValueError(f"sigma_data must be a finite number >= 0, got {sigma_data!r}")
    if snr_norm not in ("expected", "sample", "batch"):
        raise ValueError(f"snr_norm must be 'expected', 'sample' or 'batch', got {snr_norm!r}")
    if isinstance(n_corrector, bool) or not isinstance(n_corrector, int) or n_corrector < 0:
        raise ValueError(f"n_corrector must be an integer >= 0, got {n_corrector!r}")
    generator = resolve_generator(generator, seed, x)
    D, cond, n = guided(D, guidance), cond or {}, len(sigmas) - 1
    for i in range(n):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        # Corrector: Langevin MCMC at sigma_i.
        alpha = 1.0 if sde == "ve" else (1 + sigma_next**2) / (1 + sigma**2)
        for _ in range(n_corrector):
            x = langevin_step(D, x, sigma, cond, snr, alpha, generator, snr_norm, sigma_data)
        # Predictor: one reverse-SDE step to sigma_{i+1}.
        denoised = denoise(D, x, sigma, cond)
        report(callback, guidance, i=i, x=x, sigma=sigma, sigma_hat=sigma, denoised=denoised)
        if sigma_next == 0:
            x = denoised
        elif predictor == "reverse_diffusion":
            x = reverse_diffusion_step(x, denoised, sigma, sigma_next, sde, randn_like(x, generator))
        else:
            x = em_step(x, denoised, sigma, sigma_next, sde, randn_like(x, generator), beta_d, beta_min)
    return x

"""Noise for the SDE samplers: the standard-normal increment z = (W(sigma) - W(sigma')) / sqrt(sigma - sigma')
of a Brownian motion indexed by sigma, drawn per call from the per-sample generators (default), or read from a
seeded Brownian tree (``noise='brownian'``; the optional extra ``torchsde``).

A Brownian tree (Li et al. 2020, "Scalable Gradients for Stochastic Differential Equations", Sec. 4; the
``BrownianTreeNoiseSampler`` of k-diffusion) fixes one Brownian path per sample: the increment over an interval
depends only on the path's seed and the interval, not on how the grid is cut, so the sample of an SDE sampler
changes smoothly with the step count (and converges as the steps grow) instead of being redrawn."""

from __future__ import annotations

import math

import torch

from difflab.sampling.base import check_sigmas, denoise, guided, report
from difflab.sampling.generate import resolve_generator
from difflab.sampling.rng import randn_like

NOISES = ("generator", "brownian")


def check_noise(name: str, noise: str, eta, s_noise):
    if noise not in NOISES:
        raise ValueError(f"{name}: noise must be one of {NOISES}, got {noise!r}")
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not (eta >= 0 and math.isfinite(eta)):
        raise ValueError(f"{name}: eta must be a finite number >= 0, got {eta!r}")
    if isinstance(s_noise, bool) or not isinstance(s_noise, (int, float)) or not (s_noise >= 0 and math.isfinite(s_noise)):
        raise ValueError(f"{name}: s_noise must be a finite number >= 0, got {s_noise!r}")


def _entropy(x: torch.Tensor, generator) -> list[int]:
    """One 62-bit seed per sample, drawn from that sample's generator (or from one generator / the global RNG)."""
    if isinstance(generator, (list, tuple)):
        if len(generator) != x.shape[0]:
            raise ValueError(f"got {len(generator)} generators for a batch of {x.shape[0]}")
        return [int(torch.randint(0, 2**62, (1,), generator=g, device=g.device)) for g in generator]
    dev = generator.device if generator is not None else "cpu"
    return [int(v) for v in torch.randint(0, 2**62, (x.shape[0],), generator=generator, device=dev)]


class BrownianTreeNoise:
    """Per-sample torchsde.BrownianInterval on [sigma_min, sigma_max]; ``noise(sigma, sigma_next)`` is the
    normalised increment (W(sigma) - W(sigma_next)) / sqrt(sigma - sigma_next) ~ N(0, I)."""

    def __init__(self, x: torch.Tensor, sigma_min: float, sigma_max: float, generator=None):
        try:
            import torchsde
        except ImportError as e:  # pragma: no cover - depends on the optional extra
            raise ValueError("noise='brownian' needs torchsde (pip install 'difflab[sde]')") from e
        self.lo, self.hi = float(sigma_min), float(sigma_max)
        self.trees = [torchsde.BrownianInterval(t0=self.lo, t1=self.hi, size=tuple(x.shape[1:]), dtype=x.dtype,
                                                device=x.device, entropy=s, tol=1e-6, pool_size=24,
                                                halfway_tree=True)
                      for s in _entropy(x, generator)]

    def __call__(self, sigma: float, sigma_next: float) -> torch.Tensor:
        a, b = min(max(sigma_next, self.lo), self.hi), min(max(sigma, self.lo), self.hi)
        w = torch.stack([tree(a, b) for tree in self.trees])
        return w / math.sqrt(abs(b - a))


def noise_sampler(x: torch.Tensor, sigmas: torch.Tensor, generator, noise: str):
    """``fn(sigma, sigma_next)`` returning N(0, I) noise like x: fresh draws from ``generator`` ('generator'), or
    the increments of a Brownian tree over [sigmas[-2], sigmas[0]] seeded from ``generator`` ('brownian')."""
    if noise == "brownian":
        return BrownianTreeNoise(x, float(sigmas[-2]), float(sigmas[0]), generator)
    return lambda sigma, sigma_next: randn_like(x, generator)


def denoise_and_report(D, x, sigma: float, cond, i: int, callback, guidance):
    """D(x; sigma) for level i, reported to the callback (sigma_hat = sigma: no churn)."""
    denoised = denoise(D, x, sigma, cond)
    report(callback, guidance, i=i, x=x, sigma=sigma, sigma_hat=sigma, denoised=denoised)
    return denoised


def sde_setup(name: str, D, x: torch.Tensor, sigmas, generator, seed, noise: str, eta, s_noise, guidance, cond):
    """What the SDE samplers share before their loop: the checked grid, the noise source (None for eta = 0),
    the guided denoiser and the conditioning dict."""
    sigmas = check_sigmas(sigmas)
    check_noise(name, noise, eta, s_noise)
    generator = resolve_generator(generator, seed, x)
    z = noise_sampler(x, sigmas, generator, noise) if eta > 0 else None
    return sigmas, z, guided(D, guidance), cond or {}


def ancestral_step(sigma: float, sigma_next: float, eta: float) -> tuple[float, float]:
    """Split sigma -> sigma_next into a deterministic move to sigma_down and fresh noise sigma_up, with
    sigma_down^2 + sigma_up^2 = sigma_next^2 and sigma_up = eta sqrt(sigma'^2 (sigma^2 - sigma'^2) / sigma^2)
    (the DDPM posterior's std for eta = 1; Song et al. 2021 DDIM eq. 16 in VE variables)."""
    if eta == 0 or sigma_next == 0:
        return sigma_next, 0.0
    sigma_up = min(sigma_next, eta * math.sqrt(max(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2, 0.0)))
    return math.sqrt(sigma_next**2 - sigma_up**2), sigma_up

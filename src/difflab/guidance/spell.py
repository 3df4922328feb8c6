"""Sparse repellency (SPELL; Kirchhof et al. 2024, "Shielded diffusion: generating novel and diverse images
using sparse repellency", eq. 5-6).

At each evaluation the denoised estimate of particle i is pushed out of the balls of radius r around the
denoised estimates of the particles before it in its group (j < i, the paper's sequential order) and around a
reference set (``reference``: "new samples unlike these"):

    x0_i <- x0_i + strength * sum_j max(0, r - ||x0_i - x0_j||) (x0_i - x0_j) / ||x0_i - x0_j||

With strength 1 a single intruder is moved exactly onto the sphere of radius r (the paper's correction); a
particle far from all others is not touched at all (the repellency is sparse), so a group that is already
diverse samples exactly as i.i.d. The correction enters the sampler through the denoised estimate (the ODE
direction ``(x - x0) / sigma``), so it works with every sampler. ``sigma_window = (lo, hi)`` restricts it to
those noise levels (the paper applies it in the early, high-noise part of the trajectory).
"""

from __future__ import annotations

import math

import torch

from difflab.guidance.base import Guidance
from difflab.sampling.base import member
from difflab.utils import as_sigma


class SparseRepellency(Guidance):
    host_sigma = True

    def __init__(self, group_size: int | None = None, strength: float = 1.0, radius: float | None = None,
                 reference: torch.Tensor | None = None, sigma_window=None):
        super().__init__()
        self.strength = float(strength)
        if not (self.strength >= 0 and math.isfinite(self.strength)):
            raise ValueError(f"spell: strength must be a finite number >= 0, got {strength!r}")
        if radius is not None and not (float(radius) > 0 and math.isfinite(float(radius))):
            raise ValueError(f"spell: radius must be a positive number, got {radius!r}")
        if group_size is not None and (isinstance(group_size, bool) or not isinstance(group_size, int)
                                       or group_size < 1):
            raise ValueError(f"group_size must be an integer >= 1, got {group_size!r}")
        if sigma_window is not None:
            lo, hi = (float(v) for v in sigma_window)
            if not 0 <= lo <= hi:
                raise ValueError(f"sigma_window must satisfy 0 <= lo <= hi, got {sigma_window!r}")
            sigma_window = (lo, hi)
        self.radius = None if radius is None else float(radius)
        self.group_size, self.sigma_window = group_size, sigma_window
        self.reference = None if reference is None else torch.as_tensor(reference)

    def __repr__(self):
        return (f"SparseRepellency(group_size={self.group_size}, strength={self.strength}, radius={self.radius}, "
                f"sigma_window={self.sigma_window}, reference={None if self.reference is None else len(self.reference)})")

    def radius_for(self, F: int) -> float:
        """The radius r; default 0.25 sqrt(F) (0.35 in 2-D, 7 for 28 x 28 images in [-1, 1])."""
        return self.radius if self.radius is not None else 0.25 * math.sqrt(F)

    def active(self, sigma: float) -> bool:
        if self.strength == 0:
            return False
        return self.sigma_window is None or self.sigma_window[0] <= sigma <= self.sigma_window[1]

    def correction(self, x0: torch.Tensor) -> torch.Tensor:
        """The SPELL displacement of the denoised estimates x0 [B, ...] (same shape)."""
        B = x0.shape[0]
        n = self.group_size or B
        if B % n:
            raise ValueError(f"batch size {B} is not a multiple of group_size={n}")
        G = B // n
        z = x0.reshape(G, n, -1).double()
        r = self.radius_for(z.shape[-1])
        diff = z[:, :, None, :] - z[:, None, :, :]  # [G, n, n, F]: x0_i - x0_j
        dist = diff.norm(dim=-1)
        push = (r - dist).clamp_min(0) * torch.tril(torch.ones(n, n, dtype=torch.bool, device=z.device), -1)
        delta = (push / dist.clamp_min(1e-12))[..., None].mul(diff).sum(2)
        if self.reference is not None:
            ref = self.reference.to(z.device, torch.float64).reshape(1, 1, self.reference.shape[0], -1)
            rd = z[:, :, None, :] - ref
            rdist = rd.norm(dim=-1)
            delta = delta + ((r - rdist).clamp_min(0) / rdist.clamp_min(1e-12))[..., None].mul(rd).sum(2)
        return (self.strength * delta).reshape(x0.shape).to(x0.dtype)

    def apply(self, D, x, sigma, **cond):
        host = isinstance(sigma, (int, float))
        inner_sigma = sigma if host and member(D, "host_sigma", False) else as_sigma(sigma, x)
        x0 = D(x, inner_sigma, **cond)
        on = self.active(float(sigma)) if host else self.active(float(as_sigma(sigma, x).max()))
        if not on:
            self.last_info = {"spell_moved": torch.zeros((), device=x.device)}
            return x0
        delta = self.correction(x0)
        moved = (delta.reshape(x.shape[0], -1).abs().sum(1) > 0).float().mean()
        self.last_info = {"spell_moved": moved}
        return x0 + delta

"""Condition-annealed diffusion sampling (CADS; Sadat et al. 2024, "CADS: unleashing the diversity of diffusion
models through condition-annealed sampling", eq. 3-5), for class-conditional models.

The condition embedding y is corrupted early in sampling and restored towards the end:

    y_hat = sqrt(gamma(t)) y + s sqrt(1 - gamma(t)) n,   n ~ N(0, I)                      (eq. 3)
    gamma(t) = 1 for t <= tau1, (tau2 - t) / (tau2 - tau1) for tau1 < t < tau2, 0 for t >= tau2   (eq. 4)
    y_final = psi * rescale(y_hat) + (1 - psi) * y_hat,   rescale: y_hat's mean / std set to y's   (eq. 5)

with t in [0, 1] the sampling time (1 = pure noise). We map sigma to t by
``t = log(sigma / sigma_min) / log(sigma_max / sigma_min)`` (clamped to [0, 1]). Defaults are the paper's
class-conditional ones: tau1 = 0.6, tau2 = 0.9, psi = 1; ``strength`` is the noise scale s (the paper's 0.25
for ImageNet; 0 is plain sampling: with psi = 1 the rescaled sqrt(gamma) y is y itself).

Our networks embed the class label with an ``nn.Embedding`` (``map_label`` in the U-Nets); CADS is applied to
that embedding's output through a forward hook held only during the call, to conditional rows only (the
null label of classifier-free guidance is left alone, as in the paper). The noise n comes from the guidance's
own generator (``seed``), a fresh draw per network call. An unconditional model raises ValueError.
"""

from __future__ import annotations

import math

import torch

from difflab.guidance.base import Guidance
from difflab.sampling.base import member
from difflab.utils import as_sigma


def label_embedding(D):
    """The class-label ``nn.Embedding`` inside D (following guidance wrappers' ``inner``), or None."""
    seen = 0
    while D is not None and seen < 32:
        if isinstance(D, torch.nn.Module):
            embs = [m for name, m in D.named_modules() if isinstance(m, torch.nn.Embedding)
                    and name.split(".")[-1] in ("map_label", "label")]
            return embs[0] if embs else None
        D, seen = getattr(D, "inner", None), seen + 1
    return None


def check_conditional(D, method: str = "cads"):
    """ValueError unless D is a class-conditional model (``num_classes`` > 0)."""
    if D is None or not member(D, "num_classes", 0):
        raise ValueError(f"diversity method {method!r} needs a class-conditional model (it anneals the class "
                         "condition); this model is unconditional" if D is not None else
                         f"diversity method {method!r} needs a class-conditional model: pass model=D")


class ConditionAnnealing(Guidance):
    host_sigma = True

    def __init__(self, model, strength: float = 0.25, tau1: float = 0.6, tau2: float = 0.9, psi: float = 1.0,
                 sigma_min: float = 0.002, sigma_max: float = 80.0, seed: int = 0, group_size: int | None = None):
        super().__init__()
        check_conditional(model)
        self.num_classes = int(member(model, "num_classes"))
        self.strength = float(strength)
        if not (self.strength >= 0 and math.isfinite(self.strength)):
            raise ValueError(f"cads: strength (noise scale s) must be a finite number >= 0, got {strength!r}")
        if not 0 <= tau1 < tau2 <= 1:
            raise ValueError(f"cads: need 0 <= tau1 < tau2 <= 1, got tau1={tau1}, tau2={tau2}")
        if not 0 <= psi <= 1:
            raise ValueError(f"cads: psi must be in [0, 1], got {psi}")
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"cads: need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.tau1, self.tau2, self.psi = float(tau1), float(tau2), float(psi)
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.group_size = group_size  # CADS acts per sample; accepted for the factory's common signature
        self.generator = torch.Generator().manual_seed(int(seed))

    def __repr__(self):
        return f"ConditionAnnealing(s={self.strength}, tau1={self.tau1}, tau2={self.tau2}, psi={self.psi})"

    def gamma(self, sigma: float) -> float:
        """gamma(t) of eq. 4 at the noise level sigma."""
        t = math.log(max(sigma, 1e-30) / self.sigma_min) / math.log(self.sigma_max / self.sigma_min)
        t = min(max(t, 0.0), 1.0)
        if t <= self.tau1:
            return 1.0
        if t >= self.tau2:
            return 0.0
        return (self.tau2 - t) / (self.tau2 - self.tau1)

    def anneal(self, y: torch.Tensor, gamma: float) -> torch.Tensor:
        """Eq. 3 and 5 on embeddings y [B, E]."""
        n = torch.randn(y.shape, generator=self.generator, dtype=torch.float32).to(y.device, y.dtype)
        y_hat = math.sqrt(gamma) * y + self.strength * math.sqrt(1 - gamma) * n
        mu, sd = y.mean(-1, keepdim=True), y.std(-1, keepdim=True)
        mu_h, sd_h = y_hat.mean(-1, keepdim=True), y_hat.std(-1, keepdim=True).clamp_min(1e-12)
        rescaled = (y_hat - mu_h) / sd_h * sd + mu
        return self.psi * rescaled + (1 - self.psi) * y_hat

    def apply(self, D, x, sigma, **cond):
        host = isinstance(sigma, (int, float))
        inner_sigma = sigma if host and member(D, "host_sigma", False) else as_sigma(sigma, x)
        s = float(sigma) if host else float(as_sigma(sigma, x).max())
        gamma = self.gamma(s)
        self.last_info = {"cads_gamma": torch.tensor(gamma)}
        if self.strength == 0 or gamma >= 1:
            return D(x, inner_sigma, **cond)
        emb = label_embedding(D)
        if emb is None:
            raise ValueError("cads: found no class-label embedding (map_label / label) in this model")

        def hook(module, inputs, out):
            keep = inputs[0] == self.num_classes  # the null label (classifier-free guidance) stays as it is
            return torch.where(keep[..., None], out, self.anneal(out, gamma))

        handle = emb.register_forward_hook(hook)
        try:
            return D(x, inner_sigma, **cond)
        finally:
            handle.remove()

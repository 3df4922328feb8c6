"""Gaussian-mixture data with exact denoisers (the analytic ground truth for samplers and guidance).

For p(x0) = sum_k w_k N(mu_k, s_k^2 I) the noised density is p_sigma = sum_k w_k N(mu_k, (s_k^2 + sigma^2) I)
and the ideal denoiser (posterior mean, Tweedie) is
    D(x; sigma) = sum_k r_k(x) [mu_k + s_k^2 / (s_k^2 + sigma^2) (x - mu_k)],
    r_k(x) proportional to w_k N(x; mu_k, (s_k^2 + sigma^2) I).
Works for samples of any shape (flattened to d dims)."""

from __future__ import annotations

import math

import torch

from difflab.utils import append_dims, as_sigma


class GaussianMixture:
    """Isotropic Gaussian mixture in d dimensions with an exact denoiser ``D(x, sigma)``."""

    def __init__(self, means, stds, weights=None):
        self.means = torch.as_tensor(means, dtype=torch.float64)
        if self.means.ndim == 1:
            self.means = self.means[:, None]
        K = self.means.shape[0]
        self.stds = torch.as_tensor(stds, dtype=torch.float64).expand(K).clone()
        w = torch.full((K,), 1.0 / K, dtype=torch.float64) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        if (w < 0).any() or abs(float(w.sum()) - 1) > 1e-6:
            raise ValueError("mixture weights must be non-negative and sum to 1")
        if (self.stds <= 0).any():
            raise ValueError("component stds must be > 0")
        self.weights = w

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, generator=None, return_labels=False):
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        x = (self.means[k] + self.stds[k, None] * z).float()
        return (x, k) if return_labels else x

    def log_resp(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """log r_k(x) for the mixture noised to sigma: [B, K]."""
        xf = x.reshape(x.shape[0], -1).double()
        var = self.stds[None] ** 2 + sigma.double()[:, None] ** 2  # [B, K]
        d2 = ((xf[:, None, :] - self.means[None]) ** 2).sum(-1)
        logp = self.weights.log()[None] - 0.5 * d2 / var - 0.5 * self.dim * torch.log(2 * math.pi * var)
        return logp - torch.logsumexp(logp, dim=1, keepdim=True)

    def classifier(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """The exact noise-conditional classifier over the components, as logits [B, K]: log p(c | x, sigma) =
        log r_c(x), the responsibilities of the noised mixture (r_c proportional to w_c N(x; mu_c, (s_c^2 +
        sigma^2) I)). Differentiable in x, so classifier guidance with it at scale 1 turns the exact denoiser into
        the exact denoiser of component c (``difflab.guidance.classifier``, ``diversity("strata", ...)``)."""
        return self.log_resp(x, as_sigma(sigma, x))

    def log_prob(self, x: torch.Tensor, sigma=0.0) -> torch.Tensor:
        xf = x.reshape(x.shape[0], -1).double()
        sigma = as_sigma(sigma, x).double()
        var = self.stds[None] ** 2 + sigma[:, None] ** 2
        d2 = ((xf[:, None, :] - self.means[None]) ** 2).sum(-1)
        logp = self.weights.log()[None] - 0.5 * d2 / var - 0.5 * self.dim * torch.log(2 * math.pi * var)
        return torch.logsumexp(logp, dim=1)

    def denoiser(self, x: torch.Tensor, sigma, **cond) -> torch.Tensor:
        """Exact posterior mean E[x0 | x0 + sigma n = x]."""
        sigma = as_sigma(sigma, x)
        xf = x.reshape(x.shape[0], -1).double()
        r = self.log_resp(x, sigma).exp()  # [B, K]
        s2 = self.stds[None] ** 2
        shrink = s2 / (s2 + sigma.double()[:, None] ** 2)  # [B, K]
        comp = self.means[None] + shrink[..., None] * (xf[:, None, :] - self.means[None])  # [B, K, d]
        return (r[..., None] * comp).sum(1).reshape(x.shape).to(x.dtype)

    __call__ = denoiser

    def score(self, x, sigma):
        sigma = as_sigma(sigma, x)
        return (self.denoiser(x, sigma) - x) / append_dims(sigma, x.ndim) ** 2

    def nearest_mode(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.reshape(x.shape[0], -1).double()
        return torch.cdist(xf, self.means).argmin(1)


def ring_mixture(n_modes: int = 10, radius: float = 1.0, variance: float = 0.005, weights=None) -> GaussianMixture:
    """n_modes Gaussians evenly on a circle (the Particle Guidance paper's 2-D toy; variance per mode)."""
    ang = torch.arange(n_modes, dtype=torch.float64) * 2 * math.pi / n_modes
    means = radius * torch.stack([ang.cos(), ang.sin()], 1)
    return GaussianMixture(means, math.sqrt(variance), weights)


def gaussian(dim: int = 1, std: float = 1.0, mean: float = 0.0) -> GaussianMixture:
    """A single Gaussian N(mean, std^2 I): D(x; sigma) = mean + std^2/(std^2+sigma^2) (x - mean)."""
    return GaussianMixture(torch.full((1, dim), float(mean)), std)

"""Structured (jointly coupled) noise: diversity that keeps every particle's marginal exactly the model's.

A group of n particles starts from noise z_1..z_n. I.i.d. sampling draws them independently. Here the group's
*directions* are made negatively dependent while each z_i stays exactly N(0, I_F):

    z_i' = ||z_i|| * (V Q)_i,

- Q [k, F]: the Gram-Schmidt orthonormalisation (QR with a positive diagonal of R) of the group's own first
  k = min(n, F) draws. For Gaussian draws Q is a Haar-random orthonormal k-frame (Stewart 1980; Mezzadri 2007),
  and it depends only on the draws' directions, hence is independent of their norms.
- V [n, k]: a fixed configuration of n unit vectors. For n <= F the rows of the symmetric square root of the
  Gram matrix G_s = (1 - s) I + s G_simplex, where G_simplex has -1/(n - 1) off the diagonal (the regular simplex:
  the most spread n directions); s = ``strength`` in (0, 1], so the pairwise cosine of the group's starting
  directions is -s/(n - 1). For n > F (the 2-D toys: F = 2) the n points spread on the sphere S^{F-1}
  (a regular polygon for F = 2, antipodal pairs for F = 1, a deterministic repulsion configuration else);
  there any s > 0 uses the full configuration.

Why each particle stays exactly N(0, I): (V Q)_i = V_i Q is a unit vector; for any orthogonal O, Q O has the
law of Q (Haar), so V_i Q has a rotation-invariant law on the sphere, i.e. it is uniform. ||z_i|| is chi_F
distributed and independent of every direction (norm and direction of a standard Gaussian are independent, and
Q sees only directions). A chi_F radius times an independent uniform direction is N(0, I_F). So the law of
every single particle's noise, and therefore of every single sample, is exactly the i.i.d. sampler's: pooled
frequencies are unbiased (stratification even lowers their variance), while the group is spread out.

The same map is applied to the fresh noise of every churn step (Karras et al. 2022, Algorithm 2, line 5) when
``churn=True``: the draws of different steps are independent, so a particle's whole noise path (start and churn)
is still that of an i.i.d. run (no drift couples the particles), and its sample has the model's law exactly.

Hooks (see :mod:`difflab.sampling.base`): ``start_noise(z)`` is called by ``generate`` on the standard normal
start of each batch; ``churn_noise(eps)`` by the EDM samplers' churn. The denoiser itself is not changed.
Groups are consecutive blocks of ``group_size`` rows of the batch (the batch must be a multiple of it).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from difflab.guidance.base import Guidance
from difflab.sampling.base import member


def _sqrt_psd(G: torch.Tensor) -> torch.Tensor:
    lam, U = torch.linalg.eigh(G)
    return (U * lam.clamp_min(0).sqrt()) @ U.T


@lru_cache(maxsize=64)
def configuration(n: int, F: int, strength: float) -> torch.Tensor:
    """The fixed unit vectors V [n, min(n, F)] (float64) of the module docstring."""
    if n <= F:
        G = (1 - strength) * torch.eye(n, dtype=torch.float64)
        simplex = torch.full((n, n), -1.0 / (n - 1), dtype=torch.float64)
        simplex.fill_diagonal_(1.0)
        V = _sqrt_psd(G + strength * simplex)
        return V / V.norm(dim=1, keepdim=True)
    if F == 1:
        return torch.tensor([[1.0 if i % 2 == 0 else -1.0] for i in range(n)], dtype=torch.float64)
    if F == 2:
        a = torch.arange(n, dtype=torch.float64) * 2 * math.pi / n
        return torch.stack([a.cos(), a.sin()], 1)
    g = torch.Generator().manual_seed(0)  # a fixed, deterministic start for the repulsion (Thomson) iteration
    V = torch.randn(n, F, generator=g, dtype=torch.float64)
    V = V / V.norm(dim=1, keepdim=True)
    for _ in range(500):
        diff = V[:, None] - V[None]
        d2 = (diff**2).sum(-1) + torch.eye(n, dtype=torch.float64)
        force = (diff / d2[..., None] ** 1.5).sum(1)
        V = V + 0.05 * force / n
        V = V / V.norm(dim=1, keepdim=True)
    return V


def couple(z: torch.Tensor, group_size: int, strength: float = 1.0) -> torch.Tensor:
    """Structured noise for consecutive groups of ``group_size`` rows of standard normal ``z`` [B, ...]
    (see the module docstring); ``strength`` 0 returns z unchanged (i.i.d.)."""
    if strength == 0 or group_size < 2:
        return z
    B = z.shape[0]
    if B % group_size:
        raise ValueError(f"batch size {B} is not a multiple of group_size={group_size}")
    n, G = group_size, B // group_size
    flat = z.reshape(G, n, -1).double()
    F = flat.shape[-1]
    k = min(n, F)
    radius = flat.norm(dim=-1, keepdim=True)  # [G, n, 1]
    Q, R = torch.linalg.qr(flat[:, :k].transpose(1, 2))  # Q [G, F, k]
    sign = torch.sign(torch.diagonal(R, dim1=1, dim2=2))
    Q = Q * torch.where(sign == 0, torch.ones_like(sign), sign)[:, None, :]  # positive diag(R): Haar frame
    V = configuration(n, F, float(strength)).to(z.device)
    out = radius * (V @ Q.transpose(1, 2))  # [G, n, F]
    return out.reshape(z.shape).to(z.dtype)


class StructuredNoise(Guidance):
    """Jointly structured starting (and churn) noise per group; the denoiser is left alone. See the module
    docstring for the construction and the proof that each particle's sample keeps the model's law."""

    host_sigma = True

    def __init__(self, group_size: int, strength: float = 1.0, start: bool = True, churn: bool = True):
        super().__init__()
        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 2:
            raise ValueError(f"group_size must be an integer >= 2, got {group_size!r}")
        strength = float(strength)
        if not 0 <= strength <= 1:
            raise ValueError(f"structured noise: strength must be in [0, 1] (the simplex share), got {strength}")
        self.group_size, self.strength, self.start, self.churn = group_size, strength, bool(start), bool(churn)

    def __repr__(self):
        return (f"StructuredNoise(group_size={self.group_size}, strength={self.strength}, start={self.start}, "
                f"churn={self.churn})")

    def start_noise(self, z: torch.Tensor) -> torch.Tensor:
        return couple(z, self.group_size, self.strength) if self.start else z

    def churn_noise(self, eps: torch.Tensor) -> torch.Tensor:
        return couple(eps, self.group_size, self.strength) if self.churn else eps

    def apply(self, D, x, sigma, **cond):
        if isinstance(sigma, (int, float)) and not member(D, "host_sigma", False):
            sigma = torch.full((x.shape[0],), float(sigma), device=x.device, dtype=x.dtype)
        return D(x, sigma, **cond)

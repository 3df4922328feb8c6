"""Variants of classifier-free guidance that change how D_c and D_u are combined: adaptive projected guidance
(APG) and CFG++. Both subclass :class:`~difflab.guidance.cfg.ClassifierFreeGuidance` (one batched call of D on
[x; x] with [c; null], the same ``sigma_window``), so they compose with every sampler and with the other
guidances like CFG does.

**APG** (Sadat, Hilliges & Weber 2024, "Eliminating oversaturation and artifacts of high guidance scales in
diffusion models", Algorithm 1), in the denoised (x0) space of the D contract. With the CFG update written as
``D' = D_c + w Delta``, ``Delta = D_c - D_u`` (w the 'ntnu' weight, i.e. the paper's scale minus 1):

1. reverse momentum (their eq. 13): ``Delta <- Delta + beta * Delta_prev_avg`` with ``beta < 0`` (``momentum``),
   a running average over the sampler's calls of one trajectory;
2. rescaling (eq. 12): ``Delta <- Delta * min(1, r / ||Delta||)`` per sample (``norm_threshold`` r; None: off);
3. projection (eqs. 8-10): ``Delta_par = <Delta, D_c> / <D_c, D_c> D_c``, ``Delta_orth = Delta - Delta_par``;
   ``D' = D_c + w (Delta_orth + eta Delta_par)``. The parallel part is what oversaturates; ``eta = 1`` with no
   momentum and no threshold is CFG exactly.

The momentum state resets when a call's sigma is at least the sigma of the current trajectory's first guided
call (a new trajectory starts at sigma_max; ``generate`` runs batches one after another), when the batch shape
changes, or on :meth:`AdaptiveProjectedGuidance.reset`. A second-order sampler updates it on each of its calls.

**CFG++** (Chung et al. 2024, "CFG++: manifold-constrained classifier-free guidance", eq. 9 / Algorithm 1): the
DDIM step with ``x_{i+1} = D_lam + sigma_{i+1} eps_u`` where ``D_lam = D_u + lam (D_c - D_u)``, ``lam`` in [0, 1]
and ``eps_u = (x - D_u) / sigma_i`` (the *unconditional* noise is re-added). Written as a denoiser for an Euler step
``x_{i+1} = x + (sigma_{i+1} - sigma_i) (x - D') / sigma_i`` this is exactly

    D' = D_u + lam * sigma_i / (sigma_i - sigma_{i+1}) * (D_c - D_u),

i.e. CFG with a weight that depends on the *step*, not only on sigma. So CFG++ needs the sampler's grid
(``sigmas``): sigma_{i+1} is read as the next grid value below the call's sigma. With the Euler sampler (and DDIM
with eta = 0, the same update in the EDM parametrisation) this reproduces the paper's update exactly; other
samplers get the same per-sigma weight (a second-order corrector's call at sigma_{i+1} uses the weight of the step
below it): an approximation, measured in docs/results.md. ``weight`` is lam (the paper's range is [0, 1]);
the CFG ``convention`` does not apply.
"""

from __future__ import annotations

import torch

from difflab.guidance.cfg import ClassifierFreeGuidance


def _dot(a, b):
    return (a * b).flatten(1).sum(1)


def _bcast(v, like):
    return v.reshape(-1, *([1] * (like.ndim - 1)))


class AdaptiveProjectedGuidance(ClassifierFreeGuidance):
    """APG (see the module doc): ``eta`` weight of the parallel component (0: removed), ``norm_threshold`` r of the
    rescaling (None: off), ``momentum`` beta (negative: reverse momentum; 0: off). ``weight``, ``convention`` and
    ``sigma_window`` as in :class:`ClassifierFreeGuidance`."""

    def __init__(self, weight: float = 0.2, eta: float = 0.0, norm_threshold: float | None = None,
                 momentum: float = 0.0, **kw):
        super().__init__(weight, **kw)
        self.eta = float(eta)
        if norm_threshold is not None and not float(norm_threshold) > 0:
            raise ValueError(f"APG norm_threshold must be > 0 (or None: off), got {norm_threshold!r}")
        self.norm_threshold = None if norm_threshold is None else float(norm_threshold)
        if not -1 < float(momentum) < 1:
            raise ValueError(f"APG momentum must be in (-1, 1), got {momentum!r}")
        self.momentum = float(momentum)
        self.reset()

    def reset(self):
        """Forget the momentum average (the next call starts a trajectory)."""
        self._avg, self._start = None, None

    def combine(self, d_c, d_u, sigma_host, sigma):
        a, b = self.coefficients
        w = -b  # D' = a D_c + b D_u = D_c + w (D_c - D_u) since a + b = 1 in both conventions
        delta = d_c - d_u
        if self.momentum:
            s = sigma_host if sigma_host is not None else float(sigma.max())
            if self._avg is None or self._avg.shape != delta.shape or s >= self._start:
                self._avg, self._start = torch.zeros_like(delta), s
            delta = delta + self.momentum * self._avg
            self._avg = delta
        if self.norm_threshold is not None:
            norm = delta.flatten(1).norm(dim=1)
            delta = delta * _bcast(torch.clamp(self.norm_threshold / norm.clamp_min(1e-12), max=1.0), delta)
        par = _bcast(_dot(delta, d_c) / _dot(d_c, d_c).clamp_min(1e-12), delta) * d_c
        orth = delta - par
        return d_c + w * (orth + self.eta * par)


class CFGPlusPlus(ClassifierFreeGuidance):
    """CFG++ (see the module doc): ``weight`` is lam, ``sigmas`` the sampler's decreasing grid ending in 0."""

    def __init__(self, weight: float = 0.5, sigmas=None, **kw):
        kw.pop("convention", None)
        super().__init__(weight, convention="ho", **kw)
        if sigmas is None:
            raise ValueError("CFG++ needs the sampler's sigma grid (sigmas=...): its weight depends on the step")
        grid = sorted({float(s) for s in torch.as_tensor(sigmas).flatten().tolist()})
        if not grid or grid[0] != 0.0:
            raise ValueError("CFG++: the sigma grid must end in 0")
        self.grid = grid  # ascending

    def step_weight(self, sigma: float) -> float:
        """lam * sigma / (sigma - sigma_next), sigma_next the largest grid value below sigma (relative tol 1e-5)."""
        below = [s for s in self.grid if s < sigma * (1 - 1e-5)]
        nxt = below[-1] if below else 0.0
        return self.weight * sigma / (sigma - nxt) if sigma > 0 else self.weight

    def combine(self, d_c, d_u, sigma_host, sigma):
        if sigma_host is not None:
            w = self.step_weight(sigma_host)
            return d_u + w * (d_c - d_u)
        w = torch.tensor([self.step_weight(float(s)) for s in sigma.tolist()], dtype=d_c.dtype, device=d_c.device)
        return d_u + _bcast(w, d_c) * (d_c - d_u)


__all__ = ["AdaptiveProjectedGuidance", "CFGPlusPlus"]

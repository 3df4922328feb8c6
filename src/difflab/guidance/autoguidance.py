"""Autoguidance (Karras, Aittala, Kynkaanniemi, Lehtinen, Aila & Laine 2024, "Guiding a diffusion model with a
bad version of itself", eq. 1 with the conditional guide of section 3):

    D_w(x; sigma, c) = D_bad(x; sigma, c) + w (D_good(x; sigma, c) - D_bad(x; sigma, c))

where D_bad (the *guide*) is a smaller and/or less-trained model of the same task and conditioning. ``w = 1`` is
the good model alone, ``w > 1`` extrapolates away from the guide's errors. Unlike CFG, whose unconditional model
answers a different question (and so pulls samples towards the few points where p(c | x) is largest, dropping
modes), the guide's errors are of the same kind as the good model's, only larger, so the extrapolation sharpens
the conditional distribution without collapsing it (the 2-D toy in :mod:`difflab.experiments.guidance_toy`).

Composition: in a guidance list autoguidance wraps whatever comes before it, so ``[CFG, AutoGuidance]`` is
``D_bad + w (D_cfg - D_bad)`` with the guide called on the conditional labels. The two networks are different,
so their calls cannot share one batch: each step costs one call of D (already batched over [c; null] by CFG) and
one of the guide, on the whole batch; outside ``sigma_window`` (Kynkaanniemi et al. 2024, guidance in a limited
interval) the guide is not called at all. The guide gets the same conditioning as D (its labels must agree: a
class-conditional guide for a class-conditional model, same number of classes).

:data:`RECOMMENDED` names the shipped guide of a shipped model and the weight (and interval) documented in
docs/results.md; ``--autoguidance recommended`` uses it."""

from __future__ import annotations

import torch

from difflab.guidance.base import Guidance
from difflab.guidance.cfg import check_window, window_mask
from difflab.sampling.base import denoise, member
from difflab.utils import append_dims, as_sigma

# model name -> the shipped guide and its documented setting (docs/results.md, "Guidance beyond CFG").
RECOMMENDED: dict[str, dict] = {
    "mnist-cond": {"guide": "mnist-cond-xs", "weight": 1.3, "interval": None},
    "mnist-uncond": {"guide": "mnist-uncond-xs", "weight": 2.0, "interval": (0.3, 5.0)},
}
DEFAULT_WEIGHT = 2.0


def recommended(model_name: str | None) -> dict:
    """The documented guide setting for a shipped model (a copy of its :data:`RECOMMENDED` entry)."""
    if model_name not in RECOMMENDED:
        raise ValueError(f"--autoguidance recommended: no shipped guide for model {model_name!r} "
                         f"(known: {', '.join(sorted(RECOMMENDED))}); pass a guide model instead")
    return dict(RECOMMENDED[model_name])


class AutoGuidance(Guidance):
    """``D_bad + w (D - D_bad)`` with ``guide`` = D_bad (a denoiser), ``weight`` = w (1: no guidance) and an
    optional ``sigma_window = (lo, hi)`` outside which D is returned unguided."""

    host_sigma = True

    def __init__(self, guide, weight: float = DEFAULT_WEIGHT, sigma_window=None):
        super().__init__()
        if not callable(guide):
            raise TypeError(f"AutoGuidance: the guide must be a denoiser, got {type(guide).__name__}")
        self.guide = guide
        self.weight = float(weight)
        self.sigma_window = check_window(sigma_window)

    def members(self, D) -> dict:
        k, kg = member(D, "num_classes"), member(self.guide, "num_classes")
        if bool(k) != bool(kg) or (k and kg and k != kg):
            raise ValueError(f"autoguidance: the guide has num_classes={kg or 0} but the model {k or 0}; "
                             "guide a model with one trained on the same conditioning")
        return {}

    def apply(self, D, x, sigma, **cond):
        sigma_host = float(sigma) if isinstance(sigma, (int, float)) else None
        inside, active = window_mask(self.sigma_window, sigma_host, as_sigma(sigma, x))
        d_good = denoise(D, x, sigma, cond)
        if not inside:
            self.last_info = {"ag_active": 0.0}
            return d_good
        d_bad = denoise(self.guide, x, sigma, cond).to(d_good.dtype)
        guided = torch.lerp(d_bad, d_good, self.weight)  # exact D_good at w = 1, exact D_bad at w = 0
        if active is None:
            self.last_info = {"ag_active": 1.0}
            return guided
        self.last_info = {"ag_active": active.float().mean()}
        return torch.where(append_dims(active, x.ndim), guided, d_good)

    def __repr__(self):
        return f"AutoGuidance(weight={self.weight}, sigma_window={self.sigma_window})"


__all__ = ["DEFAULT_WEIGHT", "RECOMMENDED", "AutoGuidance", "recommended"]

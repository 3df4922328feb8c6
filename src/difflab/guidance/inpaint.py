"""Inpainting with any pixel-space model and any sampler, as a denoiser transform.

The known pixels ``x_known`` (where ``keep = 1``) are imposed on the denoised estimate:

    D'(x; sigma) = keep * x_known + (1 - keep) * D(x; sigma)

This is the replacement method of Song et al. 2021 (score SDE, appendix on imputation) and RePaint (Lugmayr et
al. 2022) written in the denoiser contract. It keeps the known region on the forward-noised original without
drawing any extra noise: on the known pixels the probability-flow ODE ``dx/dsigma = (x - D')/sigma`` has the
solution ``x = x_known + sigma z`` for the starting noise z, so every Euler / Heun / multistep update moves them
along exactly that path (their updates are linear combinations of ``x`` and ``D'``), churn and ancestral noise
re-noise them consistently, and the final step to sigma = 0 returns ``D' = x_known`` there: the known pixels come
out exactly (up to float rounding). The network always sees a consistently noised known region, so the generated
part is harmonised with it. ``sampler="repaint"`` adds RePaint's resampling (jumps back in noise).

The known images and masks ride in ``cond`` (``inpaint_x0`` [B, C, H, W] in [-1, 1], ``inpaint_keep`` [B, 1 or
C, H, W] in {0, 1}), so ``generate`` slices them per batch like class labels; they are removed before D is called.

Masks by name (:func:`make_mask`) name the region to *regenerate*: ``bottom-half``, ``top-half``, ``left-half``,
``right-half``, ``center`` (the middle half in both directions), ``random-pixels:P`` (each pixel with probability
P, from a seeded generator per image), or a PNG file (white = regenerate, resized to the image size).
"""

from __future__ import annotations

from pathlib import Path

import torch

from difflab.guidance.base import Guidance

MASKS = ("bottom-half", "top-half", "left-half", "right-half", "center", "random-pixels:P", "FILE.png")
COND_KEYS = ("inpaint_x0", "inpaint_keep")


def make_mask(name: str, n: int, size: tuple[int, int], *, seed: int = 0, offset: int = 0) -> torch.Tensor:
    """The region to regenerate, ``[n, 1, H, W]`` float in {0, 1}; image k of a ``random-pixels`` mask draws
    from the generator seeded ``(seed, 13, offset + k)``."""
    H, W = size
    m = torch.zeros(n, 1, H, W)
    if name == "bottom-half":
        m[..., H // 2:, :] = 1
    elif name == "top-half":
        m[..., : H // 2, :] = 1
    elif name == "left-half":
        m[..., :, : W // 2] = 1
    elif name == "right-half":
        m[..., :, W // 2:] = 1
    elif name == "center":
        m[..., H // 4: H - H // 4, W // 4: W - W // 4] = 1
    elif name.startswith("random-pixels:"):
        from difflab.sampling.rng import make_generator

        try:
            p = float(name.split(":", 1)[1])
        except ValueError:
            p = -1.0
        if not 0 < p < 1:
            raise ValueError(f"--mask {name}: P must be a number in (0, 1), e.g. random-pixels:0.5")
        for k in range(n):
            g = make_generator(seed, 13, offset + k)
            m[k] = (torch.rand(1, H, W, generator=g) < p).float()
    elif name.lower().endswith(".png"):
        if not Path(name).is_file():
            raise ValueError(f"--mask {name}: no such PNG file")
        import numpy as np
        from PIL import Image

        img = Image.open(name).convert("L").resize((W, H), Image.NEAREST)
        m[:] = (torch.from_numpy(np.asarray(img, dtype=np.float32)).reshape(1, H, W) > 127).float()
    else:
        raise ValueError(f"unknown mask {name!r}; choose one of {', '.join(MASKS)}")
    return m


class Inpainting(Guidance):
    """``D' = keep * x_known + (1 - keep) * D`` with ``inpaint_x0`` / ``inpaint_keep`` taken from cond (module doc).
    Put it last in a guidance list, so the known pixels are imposed on the fully guided estimate."""

    host_sigma = True  # sigma passes through to D unchanged

    def apply(self, D, x, sigma, **cond):
        x0, keep = cond.pop("inpaint_x0", None), cond.pop("inpaint_keep", None)
        if x0 is None or keep is None:
            raise ValueError("Inpainting needs cond entries inpaint_x0 (known images) and inpaint_keep (mask)")
        x0, keep = x0.to(x.device, x.dtype), keep.to(x.device, x.dtype)
        if x0.shape != x.shape:
            raise ValueError(f"inpaint_x0 has shape {tuple(x0.shape)}, the samples {tuple(x.shape)}")
        inner = D(x, sigma, **cond)
        self.last_info = {"inpaint_known_share": keep.mean()}
        return keep * x0 + (1 - keep) * inner

    def __repr__(self):
        return "Inpainting()"


__all__ = ["COND_KEYS", "MASKS", "Inpainting", "make_mask"]

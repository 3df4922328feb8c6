"""How well inpainting completes digits (issue 19): per mask, how often the digit classifier reads the original
label in the completion, against two references on the same images: the originals (the classifier's ceiling) and
the kept part alone with the regenerated region blanked to the background (what the kept pixels tell by
themselves). ``difflab reproduce inpainting`` writes the table."""

from __future__ import annotations

import time

import torch

from difflab.eval.classifier import predict
from difflab.guidance.inpaint import make_mask
from difflab.models import load
from difflab.recipe import SamplingSpec, sample

MASKS = ("bottom-half", "top-half", "left-half", "right-half", "center", "random-pixels:0.5")


def inpaint_agreement(model, spec: SamplingSpec, n: int = 100, masks=MASKS, data: str = "mnist:test") -> dict:
    """{mask: {"completed", "kept_only", "original", "known_max_abs_diff"}} over the first n images of ``data``."""
    from difflab.data import get_dataset

    D = load(model, device=spec.device) if isinstance(model, str) else model
    x0, y = get_dataset(data, limit=spec.inpaint_offset + n).as_tensors()
    x0, y = x0[spec.inpaint_offset:spec.inpaint_offset + n], y[spec.inpaint_offset:spec.inpaint_offset + n]
    original = float((predict("digit-classifier", x0) == y).float().mean())
    rows = {}
    for mask in masks:
        t0 = time.time()
        s = spec.replace(inpaint=data, inpaint_mask=mask)
        x, _ = sample(D, s, n)
        regen = make_mask(mask, n, tuple(x0.shape[-2:]), seed=s.seed, offset=s.inpaint_offset)
        blank = torch.where(regen > 0, torch.full_like(x0, -1.0), x0)
        rows[mask] = {"completed": float((predict("digit-classifier", x.cpu()) == y).float().mean()),
                      "kept_only": float((predict("digit-classifier", blank) == y).float().mean()),
                      "original": original,
                      "known_max_abs_diff": float(((x.cpu() - x0) * (1 - regen)).abs().max()),
                      "wall_s": round(time.time() - t0, 1)}
        print(mask, rows[mask], flush=True)
    return {"experiment": "inpainting: digit classifier agreement with the original label", "model": str(model),
            "n": n, "data": data, "sampling": spec.to_dict(), "rows": rows}


__all__ = ["MASKS", "inpaint_agreement"]

"""How well inpainting completes digits (issue 19): per mask, how often the digit classifier reads the original
label in the completion, against two references on the same images: the originals (the classifier's ceiling) and
the kept part alone with the regenerated region blanked to the background (what the kept pixels tell by
themselves). ``difflab reproduce inpainting`` writes the table."""

from __future__ import annotations

import time

import torch

from difflab.eval.classifier import predict, probs
from difflab.guidance.inpaint import make_mask
from difflab.models import load
from difflab.recipe import SamplingSpec, sample

MASKS = ("bottom-half", "top-half", "left-half", "right-half", "center", "random-pixels:0.5")
# further completion columns of `difflab reproduce inpainting`: RePaint's resampling on the Heun grid of the first
# column (Heun 10 steps: 19 NFE; RePaint R: 2 R (N - 1) + 1 = 37 / 91 NFE) and, as the control at RePaint R5's
# cost, plain Heun with 46 steps (2 N - 1 = 91 NFE)
VARIANTS = {"repaint R2": {"sampler": "repaint", "resample": 2}, "repaint R5": {"sampler": "repaint", "resample": 5},
            "heun 46 steps": {"steps": 46}}


def inpaint_agreement(model, spec: SamplingSpec, n: int = 100, masks=MASKS, data: str = "mnist:test",
                      variants: dict | None = None) -> dict:
    """{mask: {"completed", "confidence", "kept_only", "original", "known_max_abs_diff", "wall_s"}} over the first n
    images of ``data`` (confidence: the classifier's mean max-softmax on the completions); ``variants`` ({column:
    SamplingSpec changes}, e.g. :data:`VARIANTS`) adds, per mask, a column {"completed", "confidence",
    "known_max_abs_diff", "wall_s"} completed from the same images, masks and seed."""
    from difflab.data import get_dataset

    D = load(model, device=spec.device) if isinstance(model, str) else model
    x0, y = get_dataset(data, limit=spec.inpaint_offset + n).as_tensors()
    x0, y = x0[spec.inpaint_offset:spec.inpaint_offset + n], y[spec.inpaint_offset:spec.inpaint_offset + n]
    original = float((predict("digit-classifier", x0) == y).float().mean())
    rows = {}
    for mask in masks:
        regen = make_mask(mask, n, tuple(x0.shape[-2:]), seed=spec.seed, offset=spec.inpaint_offset)
        blank = torch.where(regen > 0, torch.full_like(x0, -1.0), x0)
        rows[mask] = {"kept_only": float((predict("digit-classifier", blank) == y).float().mean()),
                      "original": original}
        for column, changes in [(None, {})] + list((variants or {}).items()):
            t0 = time.time()
            x, _ = sample(D, spec.replace(inpaint=data, inpaint_mask=mask, **changes), n)
            p = probs("digit-classifier", x.cpu())
            r = {"completed": float((p.argmax(1) == y).float().mean()), "confidence": float(p.max(1).values.mean()),
                 "known_max_abs_diff": float(((x.cpu() - x0) * (1 - regen)).abs().max()),
                 "wall_s": round(time.time() - t0, 1)}
            rows[mask].update(r if column is None else {column: r})
        print(mask, rows[mask], flush=True)
    return {"experiment": "inpainting: digit classifier agreement with the original label", "model": str(model),
            "n": n, "data": data, "sampling": spec.to_dict(), "variants": variants or {}, "rows": rows}


__all__ = ["MASKS", "VARIANTS", "inpaint_agreement"]

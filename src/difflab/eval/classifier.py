"""The digit classifier as an evaluation tool: Otsu background masking, logits, accuracy (the cached loaders live in
difflab.models and are re-exported here).

Images are ``[N, 1, H, W]`` in [-1, 1], the range generated samples and :func:`difflab.data.get_dataset` use and
the range the classifier was trained on (DESIGN.md §4: never feed it differently normalised images).

``mask="otsu"`` (the thesis' habit): per image, pixels at or below the Otsu threshold
(:func:`skimage.filters.threshold_otsu` on the image mapped to [0, 1]) are set to -1 (black background), the
others are kept. It removes the faint background haze of under-trained or heavily guided samples before they
are classified; real MNIST is almost unchanged by it.
"""

from __future__ import annotations

import torch

# The loaders moved to difflab.models (issue 15: below eval); re-exported here for old imports.
from difflab.models import _CACHE, embedding, load_classifier, model_id  # noqa: F401
from difflab.models import param_device as _param_device

MASKS = (None, "none", "otsu")


def otsu_mask(x: torch.Tensor) -> torch.Tensor:
    """Set each image's pixels at or below its Otsu threshold to -1 (images in [-1, 1]; any leading shape)."""
    from difflab.eval.frames import otsu_threshold

    flat = x.detach().reshape(x.shape[0], -1).float().cpu()
    u = (flat.clamp(-1, 1) + 1) / 2
    keep = u > otsu_threshold(u)[:, None]
    keep |= (u.amax(1) <= u.amin(1))[:, None]  # a constant image is left alone
    out = torch.where(keep, flat, torch.full_like(flat, -1.0))
    return out.reshape(x.shape).to(device=x.device, dtype=x.dtype)


def prepare(x: torch.Tensor, mask=None) -> torch.Tensor:
    """Images as the classifier expects them: float, clamped to [-1, 1], optionally Otsu-masked."""
    if mask not in MASKS:
        raise ValueError(f"mask must be one of {MASKS}, got {mask!r}")
    if x.ndim == 3:
        x = x[:, None]
    x = x.float().clamp(-1, 1)
    return otsu_mask(x) if mask == "otsu" else x


@torch.no_grad()
def logits(model, images: torch.Tensor, batch_size: int = 500, mask=None) -> torch.Tensor:
    """Classifier logits [N, K] (CPU float32) for images [N, 1, H, W] in [-1, 1], in batches."""
    model = load_classifier(model)
    dev = _param_device(model)
    out = [model(prepare(images[i:i + batch_size], mask).to(dev)).float().cpu()
           for i in range(0, images.shape[0], batch_size)]
    return torch.cat(out) if out else torch.zeros(0, getattr(model, "num_classes", 10))


def probs(model, images, batch_size: int = 500, mask=None) -> torch.Tensor:
    return logits(model, images, batch_size, mask).softmax(-1)


def predict(model, images, batch_size: int = 500, mask=None) -> torch.Tensor:
    return logits(model, images, batch_size, mask).argmax(-1)


def accuracy(model="digit-classifier", data="mnist:test", batch_size: int = 500, mask=None, limit=None,
             per_class: bool = False):
    """Test accuracy of a classifier (name, run dir or module) on a dataset spec, e.g. ``'mnist:test'``.

    Returns a float, or with ``per_class=True`` a dict ``{"accuracy", "per_class", "n"}``."""
    from difflab.data import get_dataset

    ds = get_dataset(data, limit=limit) if isinstance(data, str) else data
    x, y = ds.as_tensors()
    pred = predict(model, x, batch_size, mask)
    acc = float((pred == y).float().mean())
    if not per_class:
        return acc
    k = int(y.max()) + 1
    pc = [float((pred[y == c] == c).float().mean()) if (y == c).any() else float("nan") for c in range(k)]
    return {"accuracy": acc, "per_class": pc, "n": int(y.numel()), "errors": int((pred != y).sum())}


__all__ = ["accuracy", "load_classifier", "logits", "model_id", "otsu_mask", "predict", "prepare", "probs"]

"""Text-guided generation experiments (issue 20): training the text-conditional U-Net from an unconditional one,
and the evaluation of text conditioning and CLIP guidance (docs/results.md, "Text-guided generation").

    python -m difflab.experiments.text_eval train-text configs/text_mnist.yaml [key=value ...]
    python -m difflab.experiments.text_eval eval --out outputs/text [--n 100] [--quick]

Metrics: *digit agreement* (the shipped digit classifier's label of a sample against the digit its prompt names,
:func:`difflab.data.captions.parse_digit`), *attribute adherence* (paired comparisons: the same seeds sampled with
"a thick seven" and "a thin seven", the share of pairs whose measured thickness moves the asked way; likewise
slant), a *CLIP-score analogue* (the mean cosine similarity between the prompt and the sample under the second,
separately trained contrastive model, never the one that guides) and zero-shot accuracy of the contrastive
models by prompt ("a photo of the digit k") on clean and noisy test images.
"""

from __future__ import annotations

import torch

from difflab.data.captions import ZERO_SHOT_PROMPT, measure, parse_digit

PROMPTS = ("a seven", "the number 3", "a handwritten zero", "an image of a bold 8", "two", "a 5",
           "a picture of the digit one", "4", "a thin six", "a nine slanted right")
PAIRS = (("thickness", "a thick {}", "a thin {}"), ("slant", "a {} slanted right", "a {} slanted left"))


def train_text(cfg, init_unet: str | None = "mnist-uncond", resume: bool = False, overwrite: bool = False) -> dict:
    """Train a text-conditional model (``model.net.text``) with the Trainer, its U-Net started from the weights of
    ``init_unet`` (a model of the same preset; the text projection starts at zero, so step 0 is that model)."""
    from difflab.checkpoint import load_checkpoint, load_into
    from difflab.models import resolve
    from difflab.training.trainer import Trainer

    tr = Trainer(cfg, resume=resume, overwrite=overwrite)
    if init_unet and tr.step == 0:
        data = load_checkpoint(resolve(init_unet))
        part = data["ema"] if data["ema"] is not None else data["model"]
        unet = {k[len("net."):]: v for k, v in part.items() if k.startswith("net.")}
        for model in (tr.model, tr.ema):
            load_into(model.net.unet, unet, resolve(init_unet), "the text model's U-Net")
        tr.log(f"U-Net initialised from {init_unet}")
    return tr.run()


@torch.no_grad()
def zero_shot(M, x: torch.Tensor, y: torch.Tensor, sigma: float = 0.0, seed: int = 0, batch: int = 500) -> float:
    """Zero-shot digit accuracy of a contrastive model: argmax over the 10 prompts ``a photo of the digit k`` of
    the similarity with ``x + sigma n``."""
    from difflab.guidance.clip import zero_shot_classifier

    dev = next(M.parameters()).device
    C = zero_shot_classifier(M, [ZERO_SHOT_PROMPT.format(k) for k in range(10)])
    g = torch.Generator().manual_seed(seed)
    correct = 0
    for i in range(0, len(x), batch):
        xb = x[i:i + batch]
        xb = xb + sigma * torch.randn(xb.shape, generator=g)
        s = torch.full((len(xb),), max(sigma, 1e-3))
        pred = C(xb.to(dev), s.to(dev)).argmax(1).cpu()
        correct += int((pred == y[i:i + batch]).sum())
    return correct / len(x)


@torch.no_grad()
def attribute_retrieval(M, x: torch.Tensor, y: torch.Tensor, attr: str, high: str, low: str) -> float:
    """Of the test images in the outer thirds of ``attr``, the share that the model matches better with the
    prompt of their own side (e.g. 'a thick 7' vs 'a thin 7' for each image's own digit)."""
    a = measure(x)[attr]
    lo, hi = a.quantile(1 / 3), a.quantile(2 / 3)
    sel = (a < lo) | (a > hi)
    xs, ys, up = x[sel], y[sel], (a > hi)[sel]
    dev = next(M.parameters()).device
    gi = M.encode_image(xs.to(dev), torch.full((len(xs),), 1e-3, device=dev))
    words = [str(k) for k in range(10)]
    hh = M.encode_text([high.format(w) for w in words])[ys.to(dev)]
    hl = M.encode_text([low.format(w) for w in words])[ys.to(dev)]
    pred_up = ((gi * hh).sum(1) > (gi * hl).sum(1)).cpu()
    return float((pred_up == up).float().mean())


def clip_score(M, x: torch.Tensor, prompts) -> float:
    """Mean cosine similarity between samples and their prompts under the contrastive model M (clean images)."""
    dev = next(M.parameters()).device
    with torch.no_grad():
        g = M.encode_image(x.to(dev), torch.full((len(x),), 1e-3, device=dev))
        h = M.encode_text(list(prompts))
    return float((g * h).sum(1).mean())


def digit_agreement(x: torch.Tensor, prompts) -> float:
    """The share of samples the shipped digit classifier labels as the digit their prompt names."""
    from difflab.eval.classifier import predict
    from difflab.models import load_classifier

    want = torch.tensor([parse_digit(p) for p in prompts])
    pred = predict(load_classifier("digit-classifier", device="cpu"), x.cpu()).cpu()
    return float((pred == want).float().mean())


__all__ = ["PAIRS", "PROMPTS", "attribute_retrieval", "clip_score", "digit_agreement", "train_text", "zero_shot"]

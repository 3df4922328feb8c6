"""Captions for MNIST / Fashion-MNIST from labels and measured attributes, and a captioned dataset.

Attributes of images in [-1, 1] (:func:`measure`), ink = pixels above 0 (intensity > 0.5):

- ``thickness``: ink area / skeleton length (pixels; the skeleton of scikit-image's ``skeletonize``, Zhang & Suen
  1984), the mean stroke width;
- ``slant``: the shear -mu11 / mu02 of the intensity-weighted second central moments (column against row; > 0:
  the top leans right), the deskewing measure of Simard et al.;
- ``height`` / ``width``: the bounding box of the ink; ``cx`` / ``cy``: its centre minus the image centre;
- ``brightness``: the mean intensity of the ink (Fashion-MNIST's dark / light).

A caption names the class (for digits as a word or a numeral, with synonyms and many templates) and, with some
probability, the attributes that lie in the outer thirds of the training set's distribution (thick / thin,
slanted right / left, large / small, ...). :func:`parse_digit` reads the digit a free text names.
"""

from __future__ import annotations

import numpy as np
import torch

from difflab.nets.text import DIGIT_WORDS, MAX_LEN, WORD_ID, tokenize, words

ATTRIBUTES = ("thickness", "slant", "height", "width", "cx", "cy", "brightness")
SYNONYMS = {
    "thick": ("thick", "bold", "heavy", "fat", "chunky"), "thin": ("thin", "skinny", "fine", "narrow", "slim"),
    "right": ("slanted right", "leaning right", "italic", "tilted right", "slanting right"),
    "left": ("slanted left", "leaning left", "tilted left", "slanting left"),
    "upright": ("upright", "straight", "vertical"),
    "large": ("large", "big", "huge", "tall"), "small": ("small", "tiny", "little", "short"),
    "dark": ("dark", "dim", "faint"), "light": ("bright", "light", "pale"),
}
# the attribute, the word below the lower and above the upper tercile, and whether the word is an adjective
# before the noun (else a phrase after it: "a seven slanted right")
RULES = (("thickness", "thin", "thick"), ("slant", "left", "right"), ("height", "small", "large"),
         ("brightness", "dark", "light"))
# the zero-shot classification prompt of a contrastive model (CLIP, Radford et al. 2021, section 3.1.2)
ZERO_SHOT_PROMPT = "a photo of the digit {}"
TEMPLATES = (
    "{a} {adj}{noun}", "{a} {adj}{noun}", "the {kind} {num}", "{num}", "{adj}{num}", "{a} handwritten {adj}{noun}",
    "an image of {a} {adj}{noun}", "a picture of the {kind} {num}", "{a} {noun} written in {adj2}strokes",
    "a photo of {a} {adj}{noun}", "{a} {adj}{noun} drawn with a pen", "the {kind} {num}, {adj}",
)
FASHION = ("t-shirt", "trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")
FASHION_SYNONYMS = (("t-shirt", "tee", "top"), ("trousers", "pants", "jeans"), ("pullover", "sweater", "jumper"),
                    ("dress",), ("coat", "jacket"), ("sandal",), ("shirt",), ("sneaker", "trainer", "shoe"),
                    ("bag", "handbag", "purse"), ("ankle boot", "boot"))


def parse_digit(text: str) -> int | None:
    """The first digit a free text names, as a word ('seven') or a numeral ('7'); None if it names none."""
    for w in words(text):
        if w in DIGIT_WORDS:
            return DIGIT_WORDS.index(w)
        if w.isdigit():
            return int(w)
    return None


def _skeleton_length(mask: np.ndarray) -> np.ndarray:
    from skimage.morphology import skeletonize

    return np.array([skeletonize(m).sum() for m in mask], dtype=np.float64)


def measure(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The attributes (module doc) of images [B, 1, H, W] (or [B, H, W]) in [-1, 1], each a float64 tensor [B]."""
    x = torch.as_tensor(x).detach().float().cpu()
    x = x[:, 0] if x.ndim == 4 else x
    B, H, W = x.shape
    v = ((x + 1) / 2).clamp(0, 1).double()
    mask = (x > 0).numpy()
    area = torch.as_tensor(mask.sum((1, 2)), dtype=torch.float64)
    skel = torch.as_tensor(_skeleton_length(mask))
    r = torch.arange(H, dtype=torch.float64)[None, :, None]
    c = torch.arange(W, dtype=torch.float64)[None, None, :]
    m = v.sum((1, 2)).clamp(min=1e-8)
    mr, mc = (v * r).sum((1, 2)) / m, (v * c).sum((1, 2)) / m
    mu02 = (v * (r - mr[:, None, None]) ** 2).sum((1, 2)) / m
    mu11 = (v * (r - mr[:, None, None]) * (c - mc[:, None, None])).sum((1, 2)) / m
    rows, cols = torch.as_tensor(mask.any(2)), torch.as_tensor(mask.any(1))

    def extent(a):
        idx = torch.arange(a.shape[1], dtype=torch.float64)
        lo = torch.where(a, idx, torch.inf).amin(1)
        hi = torch.where(a, idx, -torch.inf).amax(1)
        ok = a.any(1)
        return torch.where(ok, hi - lo + 1, 0.0), torch.where(ok, (hi + lo) / 2 - (a.shape[1] - 1) / 2, 0.0)

    height, cy = extent(rows)
    width, cx = extent(cols)
    bright = (v * torch.as_tensor(mask)).sum((1, 2)) / area.clamp(min=1)
    return {"thickness": area / skel.clamp(min=1), "slant": -mu11 / mu02.clamp(min=1e-8), "height": height,
            "width": width, "cx": cx, "cy": cy, "brightness": bright}


def terciles(attrs: dict[str, torch.Tensor]) -> dict[str, tuple[float, float]]:
    """The 1/3 and 2/3 quantiles of each attribute (the caption thresholds)."""
    return {k: (float(v.quantile(1 / 3)), float(v.quantile(2 / 3))) for k, v in attrs.items()}


def attribute_words(attrs: dict, i: int, cuts: dict) -> list[str]:
    """The attribute words (keys of :data:`SYNONYMS`) that hold for image i."""
    out = []
    for name, low, high in RULES:
        if name not in cuts:
            continue
        val, (lo, hi) = float(attrs[name][i]), cuts[name]
        if val < lo:
            out.append(low)
        elif val > hi:
            out.append(high)
        elif name == "slant":
            out.append("upright")
    return out


def caption(label: int, attr_words: list[str], rng: np.random.Generator, dataset: str = "mnist") -> str:
    """One random phrasing of the class ``label`` with a random subset of ``attr_words``."""
    kept = [w for w in attr_words if rng.random() < 0.6]
    adjs = [rng.choice(SYNONYMS[w]) for w in kept]
    pre = [a for a in adjs if " " not in a]
    post = [a for a in adjs if " " in a]
    if dataset == "fashion-mnist":
        noun = str(rng.choice(FASHION_SYNONYMS[label]))
        num, kind = noun, "item"
    else:
        num = DIGIT_WORDS[label] if rng.random() < 0.5 else str(label)
        noun, kind = num, str(rng.choice(("digit", "number", "numeral")))
    t = TEMPLATES[rng.integers(len(TEMPLATES))]
    adj = " ".join(pre) + " " if pre else ""
    text = t.format(a="a", adj=adj, noun=noun, num=num, kind=kind, adj2=adj or "")
    if post:
        text += " " + " and ".join(post)
    return " ".join(text.replace(", ", " ").split()).strip() or num


class CaptionedImages:
    """Images [N, 1, H, W] in [-1, 1], labels, attributes and ``k`` captions per image (token ids [N, k, L]).
    ``get_batch(idx)`` gives ``{"x", "class_labels", "captions"}``; which caption a training step uses is drawn by
    the objective (difflab.diffusion.losses.pick_captions) from the step's generator, so runs resume exactly."""

    def __init__(self, x: torch.Tensor, labels: torch.Tensor, k: int = 8, seed: int = 0, dataset: str = "mnist",
                 cuts: dict | None = None, max_len: int = MAX_LEN):
        self.x, self.labels = x.float(), labels.long()
        self.attrs = measure(self.x)
        used = ("brightness", "height") if dataset == "fashion-mnist" else ("thickness", "slant")
        self.cuts = cuts or {k: v for k, v in terciles(self.attrs).items() if k in used}
        rng = np.random.default_rng(seed)
        texts = [caption(int(self.labels[i]), attribute_words(self.attrs, i, self.cuts), rng, dataset)
                 for i in range(len(self.x)) for _ in range(k)]
        self.captions = tokenize(texts, max_len).reshape(len(self.x), k, max_len).to(torch.int16)
        self.texts = texts[:k * 4]  # a few, for inspection

    def __len__(self) -> int:
        return len(self.x)

    def get_batch(self, idx) -> dict:
        idx = torch.as_tensor(idx).long()
        return {"x": self.x[idx], "class_labels": self.labels[idx], "captions": self.captions[idx].long()}


def captioned_dataset(name: str, split: str = "train", size: int = 28, limit: int | None = None,
                      seed: int = 0, k: int = 8) -> CaptionedImages:
    """``mnist-captions`` / ``fashion-mnist-captions``: the image set with k captions per image."""
    from difflab.data.mnist import get_dataset

    base = name[: -len("-captions")]
    x, y = get_dataset(f"{base}:{split}", size=size, limit=limit).as_tensors()
    return CaptionedImages(x, y, k=k, seed=seed, dataset=base)


def known_fraction(text: str) -> float:
    """The fraction of a text's words the tokenizer knows (the rest are ignored)."""
    w = words(text)
    return sum(x in WORD_ID for x in w) / max(len(w), 1)


__all__ = ["ATTRIBUTES", "CaptionedImages", "ZERO_SHOT_PROMPT", "attribute_words", "caption", "captioned_dataset",
           "known_fraction", "measure", "parse_digit", "terciles"]

"""Inception Score with the digit classifier (Salimans et al. 2016; the NTNU paper's use on MNIST).

``IS = exp(E_x KL(p(y|x) || p(y)))``: 1 when every sample gets the same prediction, K when predictions are
confident and the K classes are equally frequent (10 is the ceiling for MNIST), ~9.9 for real MNIST test
images with a 99.5% classifier. Computed on the whole set (``splits=1``) by default; ``splits=10`` gives the
classic mean and std over 10 chunks.
"""

from __future__ import annotations

import numpy as np
import torch

from difflab.eval import classifier as clf


def inception_score(p, splits: int = 1, eps: float = 1e-12) -> tuple[float, float]:
    """IS mean and std over ``splits`` chunks of class probabilities p [N, K]."""
    p = torch.as_tensor(np.asarray(p), dtype=torch.float64)
    if p.ndim != 2 or p.shape[0] < 1:
        raise ValueError(f"probabilities must be [N, K], got {tuple(p.shape)}")
    scores = []
    for chunk in torch.tensor_split(p, splits):
        py = chunk.mean(0, keepdim=True)
        kl = (chunk * ((chunk + eps).log() - (py + eps).log())).sum(1)
        scores.append(float(kl.mean().exp()))
    return float(np.mean(scores)), float(np.std(scores))


def quality(p) -> float:
    """Mean max-softmax probability: how confidently samples look like some digit (the sweeps' 'quality')."""
    p = torch.as_tensor(np.asarray(p), dtype=torch.float64)
    return float(p.max(1).values.mean())


def compute_is(images: torch.Tensor, classifier="digit-classifier", splits: int = 1, mask=None) -> dict:
    p = clf.probs(classifier, images, mask=mask)
    m, s = inception_score(p, splits)
    return {"is": m, "is_std": s, "n": int(p.shape[0])}


class InceptionScore:
    """Streaming metric: ``update(images)``, ``compute() -> {'is', 'is_std', 'n'}``."""

    def __init__(self, classifier="digit-classifier", splits: int = 1, mask=None):
        self.classifier, self.splits, self.mask = clf.load_classifier(classifier), splits, mask
        self.p: list[torch.Tensor] = []

    def update(self, images):
        self.p.append(clf.probs(self.classifier, images, mask=self.mask))

    def compute(self) -> dict:
        p = torch.cat(self.p)
        m, s = inception_score(p, self.splits)
        return {"is": m, "is_std": s, "n": int(p.shape[0])}


__all__ = ["InceptionScore", "compute_is", "inception_score", "quality"]

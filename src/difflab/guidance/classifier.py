"""Classifier guidance (Dhariwal & Nichol 2021) as a denoiser transform.

A noise-conditional classifier p(c | x, sigma) adds ``s grad_x log p(c | x, sigma)`` to the score, so

    D'(x; sigma) = D(x; sigma) + s sigma^2 grad_x log p(c | x, sigma)

(Tweedie: score = (D - x) / sigma^2). With s = 1 and an exact classifier this is exactly the conditional
denoiser of class c: grad log p(x) + grad log p(c | x) = grad log p(x | c).
``classifier(x, sigma) -> logits [B, K]`` (log-softmax is applied here). Labels are ``labels`` (an int or a
[B] tensor) or else the sampler's ``class_labels`` conditioning.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from difflab.guidance.base import Guidance
from difflab.utils import append_dims, as_sigma


class ClassifierGuidance(Guidance):
    needs_grad = True

    def __init__(self, classifier: Callable, scale: float = 1.0, labels=None, label_key: str = "class_labels"):
        super().__init__()
        if not callable(classifier):
            raise ValueError(f"classifier must be callable classifier(x, sigma) -> logits, got "
                             f"{type(classifier).__name__}")
        self.classifier, self.scale, self.labels, self.label_key = classifier, float(scale), labels, label_key

    def _labels(self, x, cond):
        labels = self.labels if self.labels is not None else cond.get(self.label_key)
        if labels is None:
            raise ValueError(f"ClassifierGuidance needs labels=... or the sampler's {self.label_key}")
        labels = torch.as_tensor(labels, device=x.device).long()
        if labels.ndim == 0:
            labels = labels.expand(x.shape[0])
        if labels.shape != (x.shape[0],):
            raise ValueError(f"labels must be an int or a [B]={x.shape[0]} tensor, got shape {tuple(labels.shape)}")
        return labels

    def grad_log_prob(self, x, sigma, labels):
        """grad_x log p(c | x, sigma) per sample."""
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            logits = self.classifier(xg, sigma)
            logp = torch.log_softmax(logits.double(), dim=1)
            selected = logp.gather(1, labels[:, None]).sum()
            (g,) = torch.autograd.grad(selected, xg)
        return g.to(x.dtype)

    def apply(self, D, x, sigma, **cond):
        sigma = as_sigma(sigma, x)
        labels = self._labels(x, cond)
        denoised = D(x, sigma, **cond)
        g = self.grad_log_prob(x, sigma, labels)
        term = self.scale * append_dims(sigma.to(x.dtype), x.ndim) ** 2 * g
        self.last_info = {"cg_grad_norm": term.detach().reshape(x.shape[0], -1).norm(dim=1)}
        return denoised + term

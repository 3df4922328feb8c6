"""Mode coverage from class labels: distinct classes per batch of 10, classes covered, histogram vs uniform.

The thesis' diversity measure: draw batches of 10 samples (10 particles under particle guidance), classify them,
count the distinct digits per batch and average (``modes_per_10``). For i.i.d. samples from a balanced 10-class
distribution the expectation is ``10 (1 - 0.9^10) = 6.51`` (:func:`expected_modes`); 10 is the ceiling.
Labels come from the digit classifier for samples, or are the true labels for real data.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def _labels(labels) -> np.ndarray:
    a = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    return a.reshape(-1).astype(np.int64)


def modes_per_group(labels, group_size: int = 10) -> np.ndarray:
    """Distinct labels in each consecutive group of ``group_size`` (an incomplete last group is dropped).
    Negative labels mean "no mode" (e.g. a frame without a direction) and are not counted. The one mode
    counter behind the digit, ring and motion experiments."""
    a = _labels(labels)
    g = len(a) // group_size
    if g == 0:
        raise ValueError(f"need at least one full group of {group_size} labels, got {len(a)}")
    return np.array([len(np.unique(r[r >= 0])) for r in a[: g * group_size].reshape(g, group_size)])


def modes_per_10(labels, group_size: int = 10) -> float:
    """Mean number of distinct classes per group of 10 (or ``group_size``)."""
    return float(modes_per_group(labels, group_size).mean())


def expected_modes(num_classes: int = 10, group_size: int = 10, probs=None) -> float:
    """E[#distinct] for i.i.d. draws: sum_c 1 - (1 - p_c)^n (uniform p by default)."""
    p = np.full(num_classes, 1.0 / num_classes) if probs is None else np.asarray(probs, np.float64)
    return float(np.sum(1 - (1 - p) ** group_size))


def class_histogram(labels, num_classes: int = 10) -> np.ndarray:
    return np.bincount(_labels(labels), minlength=num_classes)[:num_classes]


def kl_to_uniform(hist) -> float:
    """KL(p || uniform) in nats = log K - H(p) (0 for a balanced histogram, log K for one class)."""
    p = np.asarray(hist, np.float64)
    p = p / p.sum()
    nz = p > 0
    return float(np.sum(p[nz] * np.log(p[nz] * len(p))))


def tv_to_uniform(hist) -> float:
    """Total variation 0.5 sum |p - 1/K| (0 balanced, 1 - 1/K for one class)."""
    p = np.asarray(hist, np.float64)
    p = p / p.sum()
    return float(0.5 * np.abs(p - 1.0 / len(p)).sum())


def mode_coverage(labels, num_classes: int = 10, group_size: int = 10) -> dict:
    """All of the above in one dict (keys: modes_per_10, modes_per_10_std, classes_covered, class_hist,
    class_kl_uniform, class_tv_uniform, expected_modes_iid, n)."""
    a = _labels(labels)
    h = class_histogram(a, num_classes)
    out = {"classes_covered": int((h > 0).sum()), "class_hist": h.tolist(), "class_kl_uniform": kl_to_uniform(h),
           "class_tv_uniform": tv_to_uniform(h), "expected_modes_iid": expected_modes(num_classes, group_size),
           "n": int(len(a))}
    if len(a) >= group_size:
        m = modes_per_group(a, group_size)
        out.update(modes_per_10=float(m.mean()), modes_per_10_std=float(m.std()),
                   modes_per_10_sem=float(m.std(ddof=1) / math.sqrt(len(m))) if len(m) > 1 else float("nan"))
    return out


__all__ = ["class_histogram", "expected_modes", "kl_to_uniform", "mode_coverage", "modes_per_10", "modes_per_group",
           "tv_to_uniform"]

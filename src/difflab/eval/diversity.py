"""Diversity within batches and between sets: mean pairwise distance, Vendi score, precision/recall/density/
coverage.

- :func:`mean_pairwise_distance`: the mean over pairs i < j inside each group (a batch of 10 particles), averaged
  over groups, with metric ``"l2"`` (pixels, or any features), ``"iou"`` (Jaccard distance ``1 - sum min / sum
  max`` on images mapped from [-1, 1] to [0, 1], the thesis' IoU kernel's distance) or ``"cosine"``.
- :func:`vendi_score` (Friedman & Dieng 2023): ``exp(-sum_i l_i log l_i)`` with l the eigenvalues of K / n for a
  similarity kernel K with K_ii = 1; 1 for identical items, n for n mutually orthogonal ones. With the
  cosine kernel on features the d x d Gram matrix gives the same eigenvalues (cheap for n >> d).
- :func:`prdc` (Naeem et al. 2020, "Reliable fidelity and diversity metrics for generative models"): a sample
  is inside the real manifold when it lies within the k-NN radius (k = 5) of some real point. precision: the
  fraction of fake points inside; recall: the fraction of real points inside the fakes' k-NN balls; density:
  the mean number of real balls containing a fake point, / k (about 1 for matching distributions, can exceed
  1); coverage: the fraction of real points whose ball contains a fake point.
"""

from __future__ import annotations

import numpy as np
import torch


def _flat(x) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    return x.reshape(x.shape[0], -1).double()


def iou_distance_matrix(a, b=None) -> torch.Tensor:
    """1 - IoU between images in [-1, 1] (mapped to [0, 1]): [n, m]; 0 for identical, 1 for disjoint supports."""
    a = ((_flat(a) + 1) / 2).clamp(0, 1)
    b = a if b is None else ((_flat(b) + 1) / 2).clamp(0, 1)
    mn = torch.minimum(a[:, None], b[None]).sum(-1)
    mx = torch.maximum(a[:, None], b[None]).sum(-1)
    return torch.where(mx > 0, 1 - mn / mx.clamp_min(1e-12), torch.zeros_like(mx))


def pairwise_distances(x, metric: str = "l2") -> torch.Tensor:
    """[n, n] distances between the rows (images are flattened)."""
    if metric == "iou":
        return iou_distance_matrix(x)
    f = _flat(x)
    if metric == "l2":
        return torch.cdist(f, f)
    if metric == "cosine":
        f = f / f.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return (1 - f @ f.T).clamp_min(0)
    raise ValueError(f"unknown metric {metric!r}; use l2, iou or cosine")


def pairwise_distance_per_group(x, metric: str = "l2", group_size: int | None = None) -> torch.Tensor:
    """Mean distance over pairs i < j within each consecutive group (None: one group) -> [groups] (float64)."""
    n = len(x)
    g = n if group_size is None else group_size
    if g < 2 or n < 2:
        raise ValueError(f"need groups of at least 2 items, got group_size={g}, n={n}")
    iu = torch.triu_indices(g, g, 1)
    return torch.stack([pairwise_distances(x[s:s + g], metric)[iu[0], iu[1]].mean()
                        for s in range(0, n - g + 1, g)])


def mean_pairwise_distance(x, metric: str = "l2", group_size: int | None = None) -> float:
    """Mean distance over pairs i < j within consecutive groups (None: one group), averaged over groups."""
    return float(pairwise_distance_per_group(x, metric, group_size).mean())


def vendi_score(x=None, *, K=None, kernel: str = "cosine", q: float = 1.0) -> float:
    """Vendi score of items x [n, ...] (kernel 'cosine' or 'iou' similarity) or of a similarity matrix K."""
    if K is None:
        f = _flat(x)
        n = f.shape[0]
        if kernel == "cosine":
            f = f / f.norm(dim=1, keepdim=True).clamp_min(1e-12)
            M = (f.T @ f) / n if f.shape[1] < n else (f @ f.T) / n  # same nonzero eigenvalues
        elif kernel == "iou":
            M = (1 - iou_distance_matrix(x)) / n
        else:
            raise ValueError(f"unknown kernel {kernel!r}; use cosine or iou")
    else:
        K = torch.as_tensor(np.asarray(K), dtype=torch.float64)
        M = K / K.shape[0]
    lam = torch.linalg.eigvalsh((M + M.T) / 2).clamp_min(0)
    lam = lam[lam > 1e-12]
    lam = lam / lam.sum()
    if q == 1:
        return float(torch.exp(-(lam * lam.log()).sum()))
    if q == float("inf"):
        return float(1 / lam.max())
    return float(torch.exp(torch.log((lam ** q).sum()) / (1 - q)))


def _kth_nn_radii(f: torch.Tensor, k: int, chunk: int = 2048) -> torch.Tensor:
    # k + 1: the point itself is its own nearest neighbour. Chunked so 10k x 10k never sits in memory at once.
    return torch.cat([torch.cdist(f[i:i + chunk], f).kthvalue(k + 1, dim=1).values for i in range(0, len(f), chunk)])


def prdc(real, fake, k: int = 5) -> dict:
    """Precision, recall, density and coverage of fake features against real ones (Naeem et al. 2020)."""
    r, f = _flat(real), _flat(fake)
    if r.shape[0] <= k or f.shape[0] <= k:
        raise ValueError(f"prdc needs more than k={k} points per set, got {r.shape[0]} real and {f.shape[0]} fake")
    r_rad, f_rad = _kth_nn_radii(r, k), _kth_nn_radii(f, k)
    d = torch.cdist(r, f)  # [n_real, n_fake]
    inside = d <= r_rad[:, None]
    return {"precision": float(inside.any(0).double().mean()),
            "recall": float((d <= f_rad[None, :]).any(1).double().mean()),
            "density": float(inside.double().sum(0).mean() / k),
            "coverage": float((d.min(1).values <= r_rad).double().mean()),
            "k": k, "n_real": int(r.shape[0]), "n_fake": int(f.shape[0])}


__all__ = ["iou_distance_matrix", "mean_pairwise_distance", "pairwise_distances", "prdc", "vendi_score"]

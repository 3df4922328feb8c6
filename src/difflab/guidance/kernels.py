"""Pairwise quantities and kernels for particle guidance, vectorised over groups of particles.

Every function takes ``a`` of shape [G, n, F] (G independent groups of n particles with F features) and
``b`` of shape [G, m, F] and returns a [G, n, m] matrix. A kernel is ``k = exp(-q / h)`` where q is one of

- ``sq_l2``:   squared Euclidean distance ||a_i - b_j||^2 (the RBF kernel of Corso et al. 2023),
- ``l2``:      plain Euclidean distance ||a_i - b_j|| (what the thesis' code puts into exp(-d / h)),
- ``iou``:     the Jaccard distance 1 - sum_p min(a_ip, b_jp) / sum_p max(a_ip, b_jp) of non-negative images,
- ``angle_sq``: the squared wrapped angle difference of 2-D points, (atan2 a - atan2 b mod 2 pi in [-pi, pi])^2.

The min / max in the IoU use the subgradient convention "ties get 0": where a_ip == b_jp neither side
receives a gradient (torch.minimum would split it 1/2 : 1/2), so a particle's IoU with itself is constant.
"""

from __future__ import annotations

import math

import torch

_EXPLICIT_LIMIT = 1 << 22


def sq_l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """||a_i - b_j||^2.

    Small problems use explicit differences (exactly 0, with a zero gradient, for coincident points). Large
    ones ([G, n, m, F] over 4M elements, e.g. many 1024-pixel images) use |a|^2 + |b|^2 - 2 a.b in float64
    after centring each group (a constant shift, so distances and gradients are unchanged) to avoid
    cancellation."""
    G, n, F = a.shape
    if G * n * b.shape[1] * F <= _EXPLICIT_LIMIT:
        return ((a[:, :, None, :] - b[:, None, :, :]) ** 2).sum(-1)
    c = a.detach().double().mean(1, keepdim=True)
    a_, b_ = a.double() - c, b.double() - c
    sq = (a_**2).sum(-1)[:, :, None] + (b_**2).sum(-1)[:, None, :] - 2 * a_ @ b_.transpose(1, 2)
    return sq.clamp_min(0)


def l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """||a_i - b_j||; the gradient is 0 where the distance is 0 (instead of NaN)."""
    d2 = sq_l2(a, b)
    return torch.where(d2 > 0, d2.clamp_min(1e-30).sqrt(), torch.zeros_like(d2))


def _min_max_ties_zero(a: torch.Tensor, b: torch.Tensor):
    """Elementwise min and max whose (sub)gradient is 0 for both arguments where a == b."""
    lt, gt = a < b, a > b
    tie = a.detach()
    mn = torch.where(lt, a, torch.where(gt, b, tie))
    mx = torch.where(gt, a, torch.where(lt, b, tie))
    return mn, mx


def iou_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU_ij = sum_p min(a_ip, b_jp) / sum_p max(a_ip, b_jp) for non-negative inputs ([G, n, m]).

    Two all-zero images have IoU 1 (identical); the union is clamped away from 0 otherwise."""
    ai, bj = a[:, :, None, :], b[:, None, :, :]
    ai, bj = torch.broadcast_tensors(ai, bj)
    mn, mx = _min_max_ties_zero(ai, bj)
    inter, union = mn.sum(-1), mx.sum(-1)
    empty = union <= 0
    iou = inter / torch.where(empty, torch.ones_like(union), union)
    return torch.where(empty, torch.ones_like(iou), iou)


def iou_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The Jaccard distance 1 - IoU (in [0, 1] for non-negative inputs)."""
    return 1 - iou_similarity(a, b)


def angle_sq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared wrapped angle difference of 2-D points (F must be 2): the cyclic kernel's distance."""
    if a.shape[-1] != 2 or b.shape[-1] != 2:
        raise ValueError(f"kernel='cyclic' needs 2-D points, got {a.shape[-1]} features per particle")
    ta = torch.atan2(a[..., 1], a[..., 0])
    tb = torch.atan2(b[..., 1], b[..., 0])
    diff = ta[:, :, None] - tb[:, None, :]
    wrapped = torch.remainder(diff + math.pi, 2 * math.pi) - math.pi
    return wrapped**2


def angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|wrapped angle difference| (the plain distance the thesis variant uses with kernel='cyclic')."""
    d2 = angle_sq(a, b)
    return torch.where(d2 > 0, d2.clamp_min(1e-30).sqrt(), torch.zeros_like(d2))


# kernel name -> (q for the paper's exp(-q/h), plain distance d for the thesis' exp(-d/h))
KERNEL_DISTANCES = {
    "rbf": (sq_l2, l2),
    "feature": (sq_l2, l2),
    "iou": (iou_distance, iou_distance),
    "cyclic": (angle_sq, angle),
}


def iou_distance_reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Slow reference: Python loops over pairs (as in the thesis' code), for tests. a: [n, F], b: [m, F]."""
    out = torch.zeros(a.shape[0], b.shape[0], dtype=a.dtype)
    for i in range(a.shape[0]):
        for j in range(b.shape[0]):
            inter = torch.min(a[i], b[j]).sum()
            union = torch.max(a[i], b[j]).sum()
            out[i, j] = 1 - (inter / union if union > 0 else torch.ones(()))
    return out


def median_bandwidth(q_pairs: torch.Tensor, n_points: int, squared: bool = False) -> torch.Tensor:
    """Median heuristic per group: h = median(q) / log n, or median(q)^2 / log n with ``squared``.

    ``q_pairs`` is [G, P] (the distinct pairs of each group); torch's median is the lower median, like the
    thesis' code. Clamped away from 0 so that coincident particles do not divide by zero."""
    med = q_pairs.median(dim=1).values
    h = (med**2 if squared else med) / math.log(n_points)
    return h.clamp_min(1e-12)

"""Frame metrics for next-frame prediction on Stochastic Moving MNIST (the thesis' chapter 4).

Evaluation (all on frames mapped from [-1, 1] to [0, 1] and clamped):

- centroid (eq. 4.2): the intensity-weighted mean pixel position ``(row, col)``; with ``otsu=True`` only the
  pixels above the image's Otsu threshold count (the thesis masks the background of generated frames so).
- direction (eq. 4.3-4.4): ``v = c(generated t+1) - c(frame t)``, classified as the reference direction with
  the largest cosine similarity (8 for circle and free, left/right for horizontal); a displacement shorter
  than ``min_disp`` (0.5 px) has no direction (index -1).
- quality score (eq. 4.5, made precise): the generated frame is shifted (integer pixels, zero fill, no
  wrap-around) so that its centroid lands on the conditioning frame's centroid, i.e. by ``round(c_t - c_gen)``,
  and also by that shift +-1 px on each axis (``search=1``: centroids of noisy samples are off by a fraction
  of a pixel); the score is the smallest sum of squared differences over those 9 shifts,
  ``q = min_s sum_ij (I_t(i, j) - I_gen(i - s_1, j - s_2))^2`` on [0, 1] images: the thesis' scale (its good
  samples score 3-4, unreadable ones 7-8). An exact shifted copy scores 0.
- unusable: ``q > UNUSABLE_THRESHOLD`` = 8. Calibrated on real MNIST test frames
  (:func:`calibrate_unusable_threshold`, 2000 random 16x16 test digits, seed 0): the same digit re-rendered
  with a sub-pixel shift (bilinear, up to half a pixel per axis, which also blurs it) scores median 1.3,
  90% quantile 2.9, max 7.0 (none above 8); a digit of another class median 19.5, 1% quantile 7.3 (98.6%
  above 8); an empty frame median 20.9 (97% above 8); another instance of the same class median 13.8
  (84% above 8). So a sample above 8 is further from the conditioning digit than any re-rendering of that
  digit and about as far as a different digit: it no longer shows the same digit. This matches the thesis'
  visual judgement (unreadable from 7-8, good samples 3-4). Exact shifted copies (every real next frame of
  these datasets) score 0.
- direction classifier on real frames (2000 test histories of each kind, seed 0): 100% correct for circle,
  horizontal and free, branch and unimode histories, with and without Otsu.
- modes per batch: the number of distinct directions among the samples of one history (circle: of 8).
"""


from __future__ import annotations

import numpy as np
import torch

UNUSABLE_THRESHOLD = 8.0   # quality score above which a sample is unusable (see the module docstring)
MIN_DISP = 0.5             # px; shorter centroid displacements have no direction




def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped, float32."""
    return ((torch.as_tensor(x).float() + 1) / 2).clamp(0, 1)


def _as_bhw(img: torch.Tensor, name: str) -> torch.Tensor:
    img = torch.as_tensor(img).float()
    if img.ndim == 2:
        img = img[None]
    if img.ndim == 4 and img.shape[1] == 1:
        img = img[:, 0]
    if img.ndim != 3:
        raise ValueError(f"{name} must be images [B, H, W] (or [B, 1, H, W]), got shape {tuple(img.shape)}")
    return img


def otsu_threshold(img: torch.Tensor) -> torch.Tensor:
    """Otsu's threshold (1979) of each image ``[B, ...]`` in [0, 1] -> [B], by
    :func:`skimage.filters.threshold_otsu` (the level maximising the between-class variance of the grey-level
    histogram); a constant image gets its own value (nothing lies above it). Foreground = pixels > threshold.
    The one Otsu of difflab: the classifier's background mask (:func:`difflab.eval.classifier.otsu_mask`) and
    the Otsu centroids use it."""
    from skimage.filters import threshold_otsu

    u = torch.as_tensor(img).detach().float()
    flat = u.reshape(u.shape[0], -1).clamp(0, 1).cpu().numpy()
    t = [float(threshold_otsu(r)) if r.max() > r.min() else float(r.max()) for r in flat]
    return torch.tensor(t, dtype=torch.float32, device=u.device)


def centroids(img: torch.Tensor, otsu: bool = False) -> torch.Tensor:
    """Intensity-weighted centroids (thesis eq. 4.2) of images [B, H, W] in [0, 1] -> [B, 2] (row, col), in
    pixels; NaN for an empty image. ``otsu``: weight only the pixels above the image's Otsu threshold."""
    img = _as_bhw(img, "img").clamp(0, 1)
    if otsu:
        img = img * (img > otsu_threshold(img)[:, None, None])
    H, W = img.shape[-2:]
    rows = torch.arange(H, dtype=torch.float64, device=img.device)
    cols = torch.arange(W, dtype=torch.float64, device=img.device)
    m = img.double().sum((1, 2))
    r = (img.double().sum(2) * rows).sum(1) / m
    c = (img.double().sum(1) * cols).sum(1) / m
    out = torch.stack([r, c], 1)
    out[m <= 0] = float("nan")
    return out.float()


def direction_of(prev: torch.Tensor, nxt: torch.Tensor, otsu: bool = False) -> torch.Tensor:
    """Centroid displacement v = c(nxt) - c(prev) (eq. 4.3) of [0, 1] images -> [B, 2] (drow, dcol)."""
    return centroids(nxt, otsu) - centroids(prev, otsu)


def classify_directions(v: torch.Tensor, refs, min_disp: float = MIN_DISP) -> tuple[torch.Tensor, torch.Tensor]:
    """(index [B], cosine [B]): the reference direction (rows of ``refs`` [D, 2], (drow, dcol)) with the largest
    cosine similarity to each displacement v (eq. 4.4); index -1 where |v| < min_disp or v is NaN."""
    v = torch.as_tensor(v, dtype=torch.float64).reshape(-1, 2)
    d = torch.as_tensor(np.asarray(refs), dtype=torch.float64).reshape(-1, 2)
    d = d / d.norm(dim=1, keepdim=True)
    norm = v.norm(dim=1)
    cos = (v @ d.T) / norm.clamp_min(1e-12)[:, None]
    best, idx = cos.max(1)
    bad = ~torch.isfinite(norm) | (norm < min_disp)
    idx = torch.where(bad, torch.full_like(idx, -1), idx)
    best = torch.where(bad, torch.zeros_like(best), best)
    return idx, best.float()


def shift_images(img: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """out[b, i, j] = img[b, i - shifts[b, 0], j - shifts[b, 1]], zero outside (no wrap-around)."""
    img = _as_bhw(img, "img")
    B, H, W = img.shape
    s = torch.as_tensor(shifts, device=img.device).long().reshape(B, 2)
    rows = torch.arange(H, device=img.device)[None] - s[:, :1]
    cols = torch.arange(W, device=img.device)[None] - s[:, 1:]
    valid = ((rows >= 0) & (rows < H))[:, :, None] & ((cols >= 0) & (cols < W))[:, None, :]
    b = torch.arange(B, device=img.device)[:, None, None]
    out = img[b, rows.clamp(0, H - 1)[:, :, None], cols.clamp(0, W - 1)[:, None, :]]
    return out * valid


def quality_score(ref: torch.Tensor, gen: torch.Tensor, search: int = 1, otsu: bool = False) -> torch.Tensor:
    """Quality score (thesis eq. 4.5, see the module docstring) of generated frames ``gen`` against the
    conditioning frames ``ref`` (both [B, H, W] in [0, 1]) -> [B]; 0 for an exact shifted copy, lower is
    better. ``otsu`` only affects the centroids used for the alignment."""
    ref, gen = _as_bhw(ref, "ref").clamp(0, 1), _as_bhw(gen, "gen").clamp(0, 1)
    if ref.shape != gen.shape:
        raise ValueError(f"ref and gen must have the same shape, got {tuple(ref.shape)} and {tuple(gen.shape)}")
    base = torch.nan_to_num(centroids(ref, otsu) - centroids(gen, otsu), nan=0.0).round().long()
    best = None
    for dr in range(-search, search + 1):
        for dc in range(-search, search + 1):
            moved = shift_images(gen, base + torch.tensor([dr, dc], device=gen.device))
            sse = ((ref - moved) ** 2).sum((1, 2))
            best = sse if best is None else torch.minimum(best, sse)
    return best


def count_modes(idx: torch.Tensor) -> torch.Tensor:
    """Distinct directions (ignoring -1) per row of direction indices [G, M] -> [G]."""
    from difflab.eval.modes import modes_per_group

    idx = torch.as_tensor(idx).reshape(idx.shape[0], -1)
    return torch.from_numpy(modes_per_group(idx, idx.shape[1]))


def calibrate_unusable_threshold(n: int = 2000, seed: int = 0, digits=None, digit_size: int = 16,
                                 frame: int = 32) -> dict:
    """Quality scores of real test digits against: another instance of the same class, a digit of another
    class, an empty frame, and themselves shifted by sub-pixel amounts (bilinear, |shift| <= 0.5 px); returns
    quantiles of each (what :data:`UNUSABLE_THRESHOLD` was chosen from) and each one's share above it."""
    from difflab.data.moving_mnist import load_digits

    imgs, labels, _ = load_digits("test", digits, digit_size)
    rng = np.random.default_rng(seed)
    c = (frame - digit_size) // 2

    def place(ix):
        out = np.zeros((len(ix), frame, frame), dtype=np.float32)
        out[:, c:c + digit_size, c:c + digit_size] = imgs[ix] / 255.0
        return torch.from_numpy(out)

    a = rng.integers(len(imgs), size=n)
    same, other = [], []
    for i in a:
        pool_same = np.flatnonzero(labels == labels[i])
        pool_same = pool_same[pool_same != i]
        same.append(rng.choice(pool_same) if len(pool_same) else i)
        other.append(rng.choice(np.flatnonzero(labels != labels[i])) if (labels != labels[i]).any() else i)
    ref = place(a)
    sub = torch.from_numpy(rng.uniform(-0.5, 0.5, size=(n, 2))).float()
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, :, 2] = -sub.flip(1) * 2 / frame   # grid offset in normalised coordinates (x = col, y = row)
    grid = torch.nn.functional.affine_grid(theta, (n, 1, frame, frame), align_corners=False)
    shifted = torch.nn.functional.grid_sample(ref[:, None], grid, mode="bilinear", align_corners=False)[:, 0]
    scores = {"same_class": quality_score(ref, place(np.array(same))),
              "other_class": quality_score(ref, place(np.array(other))),
              "empty": quality_score(ref, torch.zeros_like(ref)),
              "subpixel_shift": quality_score(ref, shifted)}
    qs = (0.01, 0.05, 0.1, 0.2, 0.5, 0.9)
    return {k: {**{f"q{int(q * 100):02d}": float(v.quantile(q)) for q in qs}, "mean": float(v.mean()),
                "max": float(v.max()), "share_above_threshold": float((v > UNUSABLE_THRESHOLD).float().mean())}
            for k, v in scores.items()} | {"threshold": UNUSABLE_THRESHOLD, "n": n}


__all__ = ["MIN_DISP", "UNUSABLE_THRESHOLD", "calibrate_unusable_threshold", "centroids", "classify_directions",
           "count_modes", "direction_of", "otsu_threshold", "quality_score", "shift_images", "to_unit"]

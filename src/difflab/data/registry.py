"""Dataset construction from a DataConfig: one place that maps names to dataset classes."""

from __future__ import annotations

IMAGE_SETS = ("mnist", "fashion-mnist", "synthetic")


def build_dataset(data_cfg, seed: int = 0):
    """mnist | fashion-mnist | synthetic | smmnist-{centre,free,circle,horizontal} -> a map-style dataset."""
    name = data_cfg.name
    if name in IMAGE_SETS:
        from difflab.data.mnist import get_dataset

        return get_dataset(f"{name}:{data_cfg.split}", size=data_cfg.size, limit=data_cfg.limit)
    if name.endswith("-captions"):  # mnist-captions, fashion-mnist-captions (difflab.data.captions)
        from difflab.data.captions import captioned_dataset

        return captioned_dataset(name, data_cfg.split, size=data_cfg.size, limit=data_cfg.limit, seed=seed)
    if name.startswith("smmnist-"):
        from difflab.data.moving_mnist import make_frame_dataset

        return make_frame_dataset(name[len("smmnist-"):], data_cfg, seed=seed)
    raise ValueError(f"unknown dataset {name!r}; choose one of {list(IMAGE_SETS)} or smmnist-<variant>")

"""Ship a trained run as a named model: ``export_shipped(run_dir, name)`` writes
``src/difflab/models/NAME/{config.json, model.safetensors}`` (the EMA weights in fp16 by default) so that
``difflab.load(NAME)`` works (load() converts back to float32).

Floating tensors are cast to ``dtype``; integer buffers (BatchNorm's ``num_batches_tracked``) are kept. The folder
is written as ``NAME.tmp`` and renamed. ``config.json`` is the run's config with ``out`` set to the shipped name;
the source run, checkpoint step and any ``extra`` (e.g. the measured test accuracy) go into the safetensors
metadata."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from difflab.checkpoint import CheckpointError, load_checkpoint, nonfinite_tensor
from difflab.models import SHIPPED_DIR, resolve


def export_shipped(run_dir, name: str, *, dest_root=None, dtype=torch.float16, ema: bool = True,
                   extra: dict | None = None, unconditional: bool = False) -> Path:
    """Convert a run's newest checkpoint (or a checkpoint folder) into a shipped model folder; returns it.
    ``unconditional=True`` exports a CFG-trained class-conditional U-Net as the unconditional model it is with
    the null label (see :func:`fold_null_label`)."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad model name {name!r}")
    ck = resolve(run_dir)
    data = load_checkpoint(ck)
    state = data["ema"] if ema and data["ema"] is not None else data["model"]
    if ema and data["ema"] is None:
        raise CheckpointError(f"{ck}: no ema.safetensors (pass ema=False to export the raw weights)")
    config = dict(data["config"])
    if unconditional:
        state, config = fold_null_label(state, config)
    out_state = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    part = "ema" if ema else "model"
    if (bad := nonfinite_tensor(state)) is not None:
        raise CheckpointError(f"{ck / (part + '.safetensors')}: tensor {bad!r} holds non-finite values; not exporting")
    if (bad := nonfinite_tensor(out_state)) is not None:
        raise CheckpointError(f"{ck / (part + '.safetensors')}: tensor {bad!r} overflows {dtype}; export in float32")
    config["out"] = name
    root = Path(dest_root) if dest_root is not None else SHIPPED_DIR
    dest = root / name
    tmp = root / f"{name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    meta = {"source": str(ck), "weights": "ema" if ema else "model", "dtype": str(dtype).replace("torch.", ""),
            **{k: str(v) for k, v in (extra or {}).items()}}
    save_file(out_state, str(tmp / "model.safetensors"), metadata=meta)
    (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return dest


def fold_null_label(state: dict, config: dict) -> tuple[dict, dict]:
    """A class-conditional U-Net called with the null label is an unconditional network: its embedding is
    ``map_layer1(...) + map_label(null)``, so adding the null row of the label table to ``map_layer1``'s bias
    gives the same function with ``num_classes = 0`` (exactly, up to float rounding)."""
    model = dict(config["model"])
    k = int(model.get("num_classes", 0))
    if k <= 0:
        raise ValueError("fold_null_label: the model is already unconditional")
    prefix = next((key[: -len("map_label.weight")] for key in state if key.endswith("map_label.weight")), None)
    if prefix is None:
        raise ValueError("fold_null_label: no map_label.weight in the weights (only the difflab U-Net is supported)")
    state = dict(state)
    null_row = state.pop(prefix + "map_label.weight")[k]
    state[prefix + "map_layer1.bias"] = state[prefix + "map_layer1.bias"] + null_row.to(state[prefix + "map_layer1.bias"])
    model["num_classes"] = 0
    config = {**config, "model": model}
    return state, config


DIFFUSERS_PREFIX = "net.unet."   # the keys of a DiffusersUNet (difflab.interop) inside a preconditioner


def export_diffusers(run_dir, dest, *, ema: bool = True) -> Path:
    """Save the network of a run whose network is a diffusers ``UNet2DModel`` (a preconditioner around
    :class:`difflab.interop.DiffusersUNet`, with the U-Net's config in ``model.net.diffusers``) as a diffusers
    model folder, loadable with ``UNet2DModel.from_pretrained(dest)``; returns ``dest``.

    difflab's own U-Net (every shipped model and preset) has no diffusers counterpart: it is refused with one line
    pointing to docs/models.md ("Using difflab models from other code"), which says what to do instead."""
    ck = resolve(run_dir)
    data = load_checkpoint(ck)
    part = "ema" if ema and data["ema"] is not None else "model"
    state = data[part]
    unet_cfg = (data["config"].get("model", {}).get("net") or {}).get("diffusers")
    keys = {k[len(DIFFUSERS_PREFIX):]: v for k, v in state.items() if k.startswith(DIFFUSERS_PREFIX)}
    if not isinstance(unet_cfg, dict) or not keys:
        preset = data["config"].get("model", {}).get("preset")
        raise ValueError(f"{ck}: the network is difflab's own U-Net (model.preset={preset!r}), not a diffusers "
                         "UNet2DModel; load it with difflab.load (docs/models.md, 'Using difflab models from other code')")
    if (bad := nonfinite_tensor(state)) is not None:
        raise CheckpointError(f"{ck / (part + '.safetensors')}: tensor {bad!r} holds non-finite values; not exporting")
    from diffusers import UNet2DModel

    unet = UNet2DModel.from_config({k: v for k, v in unet_cfg.items() if not k.startswith("_")})
    missing, unexpected = unet.load_state_dict(keys, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{ck}: weights do not match model.net.diffusers (missing {sorted(missing)[:3]}, "
                              f"unexpected {sorted(unexpected)[:3]})")
    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    unet.save_pretrained(str(tmp), safe_serialization=True)
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return dest


__all__ = ["export_diffusers", "export_shipped", "fold_null_label"]

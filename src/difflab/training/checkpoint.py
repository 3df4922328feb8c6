"""Checkpoints as folders, never pickle: ``config.json`` + ``model.safetensors`` (+ ``ema.safetensors``,
``train_state.safetensors``). Written to ``NAME.tmp/`` and renamed, so a crash never leaves a half-written
checkpoint under a real name; leftover ``*.tmp`` folders are ignored and cleaned."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

CKPT_PREFIX = "ckpt-"
REQUIRED = ("config.json", "model.safetensors")
LFS_MAGIC = b"version https://git-lfs"


class CheckpointError(ValueError):
    """A checkpoint or weights file is missing, truncated, foreign or incompatible; the message names it."""


def _contiguous(state: dict) -> dict:
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def save_checkpoint(ckpt_dir: str | Path, *, config: dict, model: dict, ema: dict | None = None,
                    train_state: dict | None = None, meta: dict | None = None, fail_before_rename=False) -> Path:
    """Write a checkpoint folder atomically (``ckpt_dir.tmp`` then ``os.replace``)."""
    ckpt_dir = Path(ckpt_dir)
    tmp = ckpt_dir.with_name(ckpt_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    meta = {k: str(v) for k, v in (meta or {}).items()}
    save_file(_contiguous(model), str(tmp / "model.safetensors"), metadata=meta)
    if ema is not None:
        save_file(_contiguous(ema), str(tmp / "ema.safetensors"), metadata=meta)
    if train_state is not None:
        tensors, extra = train_state.get("tensors", {}), train_state.get("json", {})
        save_file(_contiguous(tensors), str(tmp / "train_state.safetensors"),
                  metadata={"json": json.dumps(extra), **meta})
    (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    for f in tmp.iterdir():  # flush file contents before the rename makes them visible
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if fail_before_rename:  # test hook: simulate a crash between writing and renaming
        raise RuntimeError("injected failure before rename")
    if ckpt_dir.exists():
        shutil.rmtree(ckpt_dir)
    os.replace(tmp, ckpt_dir)
    return ckpt_dir


def list_checkpoints(run_dir: str | Path, clean_tmp: bool = False) -> list[Path]:
    """Complete checkpoints under run_dir/checkpoints, oldest first (``*.tmp`` ignored, or removed)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    out = []
    for p in sorted(root.iterdir()):
        if p.name.endswith(".tmp"):
            if clean_tmp:
                shutil.rmtree(p, ignore_errors=True)
            continue
        if p.is_dir() and p.name.startswith(CKPT_PREFIX):
            out.append(p)
    return out


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def prune_checkpoints(run_dir: str | Path, keep_last: int):
    ckpts = list_checkpoints(run_dir, clean_tmp=True)
    for p in ckpts[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(p, ignore_errors=True)


def read_tensors(path: str | Path) -> tuple[dict, dict]:
    """Load a safetensors file, refusing pickles, LFS pointers and truncated files with a clear message."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: file is missing")
    if path.suffix in (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt"):
        raise CheckpointError(f"{path}: refusing to load a pickle-based file (difflab loads safetensors only; "
                              "see difflab.training.checkpoint.import_pickle_weights for an explicit import)")
    with open(path, "rb") as fh:
        head = fh.read(64)
    if head.startswith(LFS_MAGIC):
        raise CheckpointError(f"{path}: this is a git-LFS pointer, not the weights (run `git lfs pull`)")
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupted): {e}") from e
    return tensors, meta


def load_checkpoint(ckpt_dir: str | Path, need_train_state: bool = False) -> dict:
    """Read a checkpoint folder: {'config', 'model', 'ema', 'train_state', 'json', 'path'}."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        raise CheckpointError(f"{ckpt_dir}: checkpoint folder does not exist")
    for name in REQUIRED:
        if not (ckpt_dir / name).exists():
            raise CheckpointError(f"{ckpt_dir / name}: file is missing from the checkpoint")
    try:
        config = json.loads((ckpt_dir / "config.json").read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{ckpt_dir / 'config.json'}: not valid JSON: {e}") from e
    out = {"config": config, "path": ckpt_dir, "json": {}}
    out["model"], _ = read_tensors(ckpt_dir / "model.safetensors")
    out["ema"] = read_tensors(ckpt_dir / "ema.safetensors")[0] if (ckpt_dir / "ema.safetensors").exists() else None
    ts = ckpt_dir / "train_state.safetensors"
    if ts.exists():
        out["train_state"], meta = read_tensors(ts)
        out["json"] = json.loads(meta.get("json", "{}"))
    elif need_train_state:
        raise CheckpointError(f"{ts}: train state file is missing; cannot resume from this checkpoint")
    else:
        out["train_state"] = None
    return out


def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Flatten an optimizer state_dict into tensors (state) + JSON (param_groups)."""
    sd = opt.state_dict()
    tensors = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            tensors[f"opt.{idx}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    return tensors, {"param_groups": sd["param_groups"]}


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict, extra: dict):
    state: dict = {}
    for key, v in tensors.items():
        if not key.startswith("opt."):
            continue
        _, idx, k = key.split(".", 2)
        state.setdefault(int(idx), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": extra["param_groups"]})


def import_pickle_weights(path: str | Path, *, allow_pickle: bool = False) -> dict:
    """Import weights from a .pt/.pth file. Needs ``allow_pickle=True`` and uses ``weights_only=True``, so no
    code runs even then (a file that needs arbitrary objects is refused)."""
    if not allow_pickle:
        raise CheckpointError(f"{path}: importing from a pickle needs an explicit "
                              "import_pickle_weights(path, allow_pickle=True); difflab itself loads safetensors only")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{path}: refused to unpickle (only plain tensors are allowed): {e}") from e
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a mapping of names to tensors")
    return obj

"""Checkpoint storage, never pickle: a folder with ``config.json`` + ``model.safetensors`` (+ ``ema.safetensors``,
``train_state.safetensors``). Written to ``NAME.tmp/`` and renamed, so a crash never leaves a half-written
checkpoint under a real name; leftover ``*.tmp`` folders are ignored and cleaned.

Also here, below training and eval (DESIGN.md section 2): the checks every loaded state dict goes through
(:func:`check_weights`: floating point where the network has floating point, finite, keys and shapes summarised
in one line), and the resume policy (:func:`resume_checkpoint`: which checkpoint a run resumes from and whether
it may). Every checkpoint records in its metadata whether its model and EMA weights were finite
(``finite``); :func:`prune_checkpoints` never deletes the newest finite one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

CKPT_PREFIX = "ckpt-"
REQUIRED = ("config.json", "model.safetensors")
LFS_MAGIC = b"version https://git-lfs"


class CheckpointError(ValueError):
    """A checkpoint or weights file is missing, truncated, foreign or incompatible; the message names it."""


class TrainingDiverged(RuntimeError):
    """Too many consecutive non-finite losses or gradients, or non-finite weights; the message names the
    checkpoint to resume from."""


def _contiguous(state: dict) -> dict:
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def nonfinite_tensor(state: dict) -> str | None:
    """The name of the first floating-point tensor of a state dict holding a NaN or an infinity, else None."""
    for k, v in state.items():
        if v.is_floating_point() and not bool(v.isfinite().all()):
            return k
    return None


def save_checkpoint(ckpt_dir: str | Path, *, config: dict, model: dict, ema: dict | None = None,
                    train_state: dict | None = None, meta: dict | None = None, fail_before_rename=False) -> Path:
    """Write a checkpoint folder atomically (``ckpt_dir.tmp`` then ``os.replace``)."""
    ckpt_dir = Path(ckpt_dir)
    tmp = ckpt_dir.with_name(ckpt_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    finite = nonfinite_tensor(model) is None and (ema is None or nonfinite_tensor(ema) is None)
    meta = {"finite": str(finite).lower(), **{k: str(v) for k, v in (meta or {}).items()}}
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


def is_finite_checkpoint(ckpt_dir: str | Path) -> bool:
    """Whether a checkpoint's model and EMA weights are finite: the ``finite`` flag save_checkpoint writes into
    the metadata (read from the header alone), or for checkpoints without it, the tensors themselves."""
    ckpt_dir = Path(ckpt_dir)
    try:
        with safe_open(str(ckpt_dir / "model.safetensors"), framework="pt") as f:
            flag = (f.metadata() or {}).get("finite")
        if flag is not None:
            return flag == "true"
        data = load_checkpoint(ckpt_dir)
    except (CheckpointError, SafetensorError, OSError, ValueError):
        return False
    return all(nonfinite_tensor(data[part]) is None for part in ("model", "ema") if data[part] is not None)


def latest_finite_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint whose weights are finite (the one to resume from after a divergence)."""
    return next((p for p in reversed(list_checkpoints(run_dir)) if is_finite_checkpoint(p)), None)


def prune_checkpoints(run_dir: str | Path, keep_last: int):
    """Delete all but the ``keep_last`` newest checkpoints, never the newest finite one (and leftover ``*.tmp``)."""
    ckpts = list_checkpoints(run_dir, clean_tmp=True)
    if keep_last <= 0 or len(ckpts) <= keep_last:
        return
    finite = next((p for p in reversed(ckpts) if is_finite_checkpoint(p)), None)
    for p in ckpts[:-keep_last]:
        if p != finite:
            shutil.rmtree(p, ignore_errors=True)


def read_tensors(path: str | Path) -> tuple[dict, dict]:
    """Load a safetensors file, refusing pickles, LFS pointers and truncated files with a clear message."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: file is missing")
    if path.suffix in (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt"):
        raise CheckpointError(f"{path}: refusing to load a pickle-based file (difflab loads safetensors only; "
                              "see difflab.checkpoint.import_pickle_weights for an explicit import)")
    with open(path, "rb") as fh:
        head = fh.read(64)
    if head.startswith(LFS_MAGIC):
        raise CheckpointError(f"{path}: this is a git-LFS pointer, not the weights (run `git lfs pull`)")
    try:
        tensors = load_file(str(path))
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


def _few(names: list, n: int = 3) -> str:
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "")


def check_weights(state: dict, expected: dict, file, what: str = "the network") -> dict:
    """Validate a loaded state dict against the module's own ``expected`` one; return it cast to its dtypes.

    Refused, with one line naming ``file`` (and the tensor): different keys or shapes (counts of missing /
    unexpected / mis-shaped tensors and the first few names), an integer tensor where the network has floating
    point or the reverse (never cast silently), a NaN or infinity. Floating-point tensors are cast to the
    network's dtype (fp16 weights on disk load into a float32 network)."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {list(state[k].shape)} vs {list(expected[k].shape)}" for k in state
              if k in expected and state[k].shape != expected[k].shape]
    if missing or unexpected or shapes:
        parts = [f"{len(v)} {name} ({_few(v)})" for name, v in (("missing keys", missing),
                 ("unexpected keys", unexpected), ("shape mismatches", shapes)) if v]
        raise CheckpointError(f"{file}: weights do not match {what}: {'; '.join(parts)}")
    out = {}
    for k, v in state.items():
        ref = expected[k]
        if v.is_floating_point() != ref.is_floating_point():
            want = "floating point" if ref.is_floating_point() else str(ref.dtype)
            raise CheckpointError(f"{file}: tensor {k!r} has dtype {v.dtype}, expected {want} (not cast silently)")
        if v.is_floating_point():
            if not bool(v.isfinite().all()):
                raise CheckpointError(f"{file}: tensor {k!r} holds non-finite values (NaN or inf)")
            v = v.to(ref.dtype)
        out[k] = v
    return out


def load_into(module: torch.nn.Module, state: dict, file, what: str = "the network") -> torch.nn.Module:
    """``module.load_state_dict`` after :func:`check_weights`."""
    module.load_state_dict(check_weights(state, module.state_dict(), file, what))
    return module


def resume_hint(run_dir: str | Path, ckpt: Path) -> str:
    """`` (delete CKPT to resume from the previous checkpoint PREV)`` when there is an older one, else ''."""
    older = [p for p in list_checkpoints(run_dir) if p.name < ckpt.name]
    return f" (delete {ckpt} to resume from the previous checkpoint {older[-1].name})" if older else ""


def resume_checkpoint(run_dir: str | Path, config: dict, clean_tmp: bool = True) -> dict | None:
    """The resume policy: the newest complete checkpoint of ``run_dir`` (``*.tmp`` leftovers removed when
    ``clean_tmp``), read with its train state and validated against the current run's ``config`` (a dict):
    a config this difflab reads, the same model / loss / data sections, EMA and optimizer state present, finite
    weights. Returns :func:`load_checkpoint`'s dict, or None when there is no checkpoint. Every refusal is a
    CheckpointError naming the file, plus which older checkpoint deleting this one would resume from."""
    from difflab.config import ConfigError, from_dict

    list_checkpoints(run_dir, clean_tmp=clean_tmp)
    ck = latest_checkpoint(run_dir)
    if ck is None:
        return None
    hint = resume_hint(run_dir, ck)
    try:
        data = load_checkpoint(ck, need_train_state=True)
    except CheckpointError as e:
        raise CheckpointError(f"{e}{hint}") from e
    if data["ema"] is None:
        raise CheckpointError(f"{ck / 'ema.safetensors'}: file is missing; cannot resume exactly{hint}")
    try:
        from_dict(data["config"])
    except ConfigError as e:
        raise CheckpointError(f"{ck / 'config.json'}: incompatible config: {e}") from e
    saved = json.loads(json.dumps(data["config"]))
    for section in ("model", "loss", "data"):
        if saved.get(section) != config.get(section):
            raise CheckpointError(f"{ck / 'config.json'}: the run was trained with a different {section} "
                                  f"config; refusing to resume")
    for part in ("model", "ema"):
        bad = nonfinite_tensor(data[part])
        if bad is not None:
            raise CheckpointError(f"{ck / (part + '.safetensors')}: tensor {bad!r} holds non-finite values{hint}")
    ts, ts_file = data["train_state"], ck / "train_state.safetensors"
    missing = [k for k in ("step", "bad_steps", "images_seen") if k not in ts]
    if missing:
        raise CheckpointError(f"{ts_file}: train state lacks {missing}; cannot resume")
    have = {k.split(".")[1] for k in ts if k.startswith("opt.")}
    expected = data["json"].get("n_opt_states")
    if (expected is not None and len(have) != int(expected)) or (int(ts["step"]) > 0 and not have):
        raise CheckpointError(f"{ts_file}: optimizer state covers {len(have)} parameters, expected "
                              f"{expected if expected is not None else 'some'}; refusing a partial resume")
    return data


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


__all__ = ["CKPT_PREFIX", "LFS_MAGIC", "REQUIRED", "CheckpointError", "TrainingDiverged", "check_weights",
           "import_pickle_weights", "is_finite_checkpoint", "latest_checkpoint", "latest_finite_checkpoint",
           "list_checkpoints", "load_checkpoint", "load_into", "nonfinite_tensor", "optimizer_from_tensors",
           "optimizer_to_tensors", "prune_checkpoints", "read_tensors", "resume_checkpoint", "resume_hint",
           "save_checkpoint"]

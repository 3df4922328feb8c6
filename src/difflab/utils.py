"""Small shared helpers: broadcasting, sigma handling, argument checks, atomic JSON, device choice."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch


def append_dims(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """Append trailing singleton dims so a [B] tensor broadcasts against a rank-`ndim` tensor."""
    if v.ndim > ndim:
        raise ValueError(f"cannot broadcast a tensor of rank {v.ndim} to rank {ndim}")
    return v.reshape(*v.shape, *([1] * (ndim - v.ndim)))


_FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def _sigma_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def as_sigma(sigma, x: torch.Tensor) -> torch.Tensor:
    """Return sigma as a float [B] tensor on x's device (a float or a 0-d tensor is broadcast), float64 when x
    is float64 (so a float64 solve keeps sigma's digits) and float32 otherwise.

    A Python number is filled in on the device: ``torch.as_tensor(float, device='cuda')`` copies from pageable
    host memory, which synchronises the stream once per network evaluation and stalls an asynchronous sampler."""
    if isinstance(sigma, (int, float)) and not isinstance(sigma, bool):
        v = float(sigma)
        if abs(v) > _FLOAT32_MAX:  # as float32 conversion does: overflow to +-inf (torch.full would raise)
            v = math.copysign(math.inf, v)
        return torch.full((x.shape[0],), v, dtype=_sigma_dtype(x), device=x.device)
    s = torch.as_tensor(sigma, dtype=_sigma_dtype(x), device=x.device)
    if s.ndim == 0:
        s = s.expand(x.shape[0])
    if s.ndim != 1 or s.shape[0] != x.shape[0]:
        raise ValueError(f"sigma must be a scalar or a [B]={x.shape[0]} tensor, got shape {tuple(s.shape)}")
    return s


INT32_MAX = 2**31 - 1


def check_int(name: str, value, lo: int = 0, hi: int = 2**63 - 1) -> int:
    """``value`` as an int in [lo, hi] (bools refused); the error names ``name`` and the range. The one integer
    check behind the CLI's flags, SamplingSpec and the library's arguments."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_float(name: str, value, lo: float = -math.inf, hi: float = math.inf, *, lo_open: bool = False,
                allow_inf: bool = False) -> float:
    """``value`` as a float in [lo, hi] ((lo, hi] with ``lo_open``), finite unless ``allow_inf``; the error names
    ``name`` and the range."""
    if math.isinf(hi) and not allow_inf and not lo_open and math.isfinite(lo):
        rng = f"finite and >= {lo:g}"
        what = "a finite number >= " + f"{lo:g}"
    else:
        rng = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
        what = f"a number in {rng}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    v = float(value)
    ok = (v > lo if lo_open else v >= lo) and v <= hi and (allow_inf or math.isfinite(v))
    if not ok:
        raise ValueError(f"{name} must be {what}, got {v:g}")
    return v


def _json_default(v):
    if isinstance(v, Path):
        return str(v)
    if hasattr(v, "tolist"):  # numpy / torch scalars and arrays
        return v.tolist()
    try:
        return float(v)
    except (TypeError, ValueError):
        return repr(v)


def write_json(obj, path, *, indent: int = 2, sort_keys: bool = True) -> Path | None:
    """Write ``obj`` as JSON atomically (a per-process ``.tmp`` file, then ``os.replace``): a reader never sees a
    half-written file, and two writers never share a temporary file. ``path`` None: nothing is written. The one
    JSON writer of difflab (results, sweep points, tables, summaries)."""
    if not path:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=indent, sort_keys=sort_keys, default=_json_default))
    os.replace(tmp, path)
    return path


def check_output_path(path, flag: str = "--out", suffixes: tuple = ()) -> Path:
    """Validate an output file before any work: not an existing folder, a wanted suffix, and a parent folder that
    exists or can be created and is writable. The error names the flag and the path."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{flag} {p}: is a folder; give a file name")
    if suffixes and p.suffix.lower() not in suffixes:
        raise ValueError(f"{flag} {p}: the file must end in {' or '.join(suffixes)}")
    parent = p.resolve().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{flag} {p}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"{flag} {p}: cannot write in {parent}")
    return p
def pick_device(name: str) -> torch.device:
    """``'auto'`` -> CUDA when available, else the CPU; ``'cuda'`` without a CUDA device is a ValueError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device=cuda but no CUDA device is available")
    return torch.device(name)


def shard_indices(n: int, rank: int, world: int) -> list[int]:
    """The indices of ``range(n)`` that process ``rank`` of ``world`` owns: ``rank, rank + world, ...``.

    Every index belongs to exactly one rank, shares differ in size by at most one, and the assignment
    depends on (n, rank, world) only, so a rerun or resumed run redoes exactly the missing indices."""
    for name, v in (("n", n), ("rank", rank), ("world", world)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"{name} must be an integer, got {v!r}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if world < 1:
        raise ValueError(f"world (number of processes) must be >= 1, got {world}")
    if not 0 <= rank < world:
        raise ValueError(f"rank must be in [0, {world - 1}], got {rank}")
    return list(range(rank, n, world))

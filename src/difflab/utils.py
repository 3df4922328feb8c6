"""Small shared helpers: broadcasting and sigma handling."""

from __future__ import annotations

import math

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


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value

"""Explicit randomness. Every draw comes from a generator derived from a seed.

Independent samples get one generator each, seeded from (seed, index), so sample i is the same alone or
in any batch (the idea of EDM's StackedRandomGenerator)."""

from __future__ import annotations

import numpy as np
import torch


def derive_seed(*keys: int) -> int:
    """A 63-bit seed derived from integer keys, e.g. (seed, index) or (seed, epoch, step)."""
    for k in keys:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ValueError(f"seed keys must be non-negative integers, got {keys!r}")
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def make_generator(*keys: int, device="cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(derive_seed(*keys))


def make_generators(seed: int, n: int, offset: int = 0, device="cpu") -> list[torch.Generator]:
    """One generator per sample, sample i seeded from (seed, offset + i)."""
    return [make_generator(seed, offset + i, device=device) for i in range(n)]


def randn(shape, generator=None, device=None, dtype=torch.float32) -> torch.Tensor:
    """Standard normal noise. ``generator`` is None, one torch.Generator, or a list with one per sample
    (then row i is drawn from generator i alone)."""
    shape = tuple(shape)
    if isinstance(generator, (list, tuple)):
        if len(generator) != shape[0]:
            raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]}")
        rows = [torch.randn(shape[1:], generator=g, device=g.device, dtype=dtype) for g in generator]
        out = torch.stack(rows)
        return out.to(device) if device is not None else out
    gen_device = generator.device if generator is not None else device
    out = torch.randn(shape, generator=generator, device=gen_device, dtype=dtype)
    return out.to(device) if device is not None else out


def randn_like(x: torch.Tensor, generator=None) -> torch.Tensor:
    return randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def rand_like(x: torch.Tensor, generator=None) -> torch.Tensor:
    """Uniform [0, 1) noise with the same per-sample convention as :func:`randn`."""
    if isinstance(generator, (list, tuple)):
        if len(generator) != x.shape[0]:
            raise ValueError(f"got {len(generator)} generators for a batch of {x.shape[0]}")
        return torch.stack([torch.rand(x.shape[1:], generator=g, device=g.device, dtype=x.dtype)
                            for g in generator]).to(x.device)
    gen_device = generator.device if generator is not None else x.device
    return torch.rand(x.shape, generator=generator, device=gen_device, dtype=x.dtype).to(x.device)

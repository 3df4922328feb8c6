"""Sampling from scratch: per-sample noise from seeds, a grid by name, a sampler by name, in batches.

Reproducibility (DESIGN.md §3): sample ``k`` of a call with ``seed`` and ``offset`` owns the generator seeded
from ``(seed, offset + k)``; its initial noise and every noise draw of a stochastic sampler come from that
generator alone, so sample ``k`` is the same whether it is drawn alone, in any batch, or with any ``batch_size``
(for independent samples; particle guidance couples a batch, see :func:`generate`).
"""

from __future__ import annotations

import math

import torch

from difflab.sampling.base import check_sigmas, device_of, member
from difflab.sampling.rng import make_generators, randn
from difflab.sampling.schedules import sigma_grid
from difflab.utils import INT32_MAX, check_int


def resolve_generator(generator, seed, x: torch.Tensor):
    """The generator(s) a stochastic sampler draws from: ``generator`` as given, or, with ``seed`` (an int) and
    no generator, one generator per sample seeded from ``(seed, index)``. With neither, None (torch's global
    RNG; pass a seed or generators for reproducible runs)."""
    if seed is None:
        return generator
    if generator is not None:
        raise ValueError("pass either generator or seed, not both")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return make_generators(seed, x.shape[0], device=x.device if x.device.type == "cuda" else "cpu")


def _slice_cond(cond: dict, n: int, start: int, stop: int) -> dict:
    """Per-sample entries of cond (tensors / lists whose first dim is n) are sliced to the batch; others are kept."""
    out = {}
    for k, v in cond.items():
        if isinstance(v, torch.Tensor) and v.ndim > 0 and v.shape[0] == n:
            out[k] = v[start:stop]
        elif isinstance(v, (list, tuple)) and len(v) == n:
            out[k] = v[start:stop]
        else:
            out[k] = v
    return out


def generate(D, n: int, shape, *, sampler: str = "heun", steps: int = 18, sigma_min: float = 0.002,
             sigma_max: float = 80.0, rho: float = 7.0, grid="karras", seed: int = 0, offset: int = 0,
             cond: dict | None = None, guidance=None, init_noise_scale: float = 1.0, callback=None,
             batch_size: int | None = None, device=None, **options) -> torch.Tensor:
    """Draw ``n`` samples of per-sample ``shape`` (e.g. ``(1, 28, 28)``) with ``SAMPLERS[sampler]``.

    - grid: a name for :func:`difflab.sampling.schedules.sigma_grid` ('karras', 'uniform', 'loguniform', 'vp',
      'ddpm_leading', 'ddpm_trailing', 'ddpm_linspace'; the DDPM grids use ``D.T`` and ``D.beta_schedule`` when
      D has them, else T=1000, linear) or an explicit decreasing sigma grid ending in 0.
    - noise: sample k draws ``z_k`` from the generator seeded ``(seed, offset + k)``, starts at
      ``x = sigmas[0] * init_noise_scale * z_k`` and keeps using that generator for the sampler's noise.
      ``init_noise_scale`` != 1 reproduces the thesis' start ``latents * sigma_max * 0.1`` (DESIGN.md §4):
      the network is still told ``sigmas[0]`` on the first step, so it sees less noise than it is told.
      Keep the default 1.0 except to rerun that experiment.
    - cond: passed to D on every call; tensors (or lists) whose first dim is ``n`` are sliced per batch.
    - batch_size: split the ``n`` samples into chunks run one after the other. This is only valid for
      independent samples: a guidance that couples a batch (particle guidance) sees each chunk as its own
      group of particles, so set ``batch_size`` to the particle-group size (or None: one batch) and record it.
    - callback: gets the sampler's per-step dict plus ``batch_start`` (the index of the chunk's first sample).
    - options: passed to the sampler (e.g. ``S_churn``, ``eta``, ``variance``, ``snr``).
    Returns a float tensor ``[n, *shape]``.
    """
    from difflab.sampling import get_sampler

    fn = get_sampler(sampler)
    check_int("n", n, 0, INT32_MAX)
    check_int("steps", steps, 1, INT32_MAX)
    if batch_size is not None:
        check_int("batch_size", batch_size, 1, INT32_MAX)
    if not (init_noise_scale > 0 and math.isfinite(init_noise_scale)):
        raise ValueError(f"init_noise_scale must be a finite number > 0, got {init_noise_scale}")
    check_int("seed", seed)
    check_int("offset", offset)
    device = device_of(D, device)
    if isinstance(grid, str):
        sigmas = sigma_grid(grid, steps, sigma_min, sigma_max, rho, T=int(member(D, "T", 1000)),
                            beta_schedule=member(D, "beta_schedule", "linear"))
    else:
        sigmas = torch.as_tensor(grid, dtype=torch.float32)
    sigmas = check_sigmas(sigmas)  # validated here once, and kept on the CPU (read as floats every step)
    shape = tuple(int(s) for s in shape)
    cond = cond or {}
    num_classes = member(D, "num_classes", 0)
    labels = cond.get("class_labels")
    if torch.is_tensor(labels) and isinstance(num_classes, int) and num_classes > 0:
        # Once here, with a clear error on any device: the network itself only queues the check on a GPU.
        from difflab.nets.unet import check_class_labels

        check_class_labels(labels, num_classes, sync=True)
    gen_device = device if device.type == "cuda" else "cpu"
    bs = n if batch_size is None else batch_size
    out = []
    for start in range(0, n, max(bs, 1)):
        stop = min(start + bs, n)
        gens = make_generators(seed, stop - start, offset=offset + start, device=gen_device)
        # Initial noise: sample k from its own generator (seed, offset + k).
        x = randn((stop - start, *shape), generator=gens, device=device) * (float(sigmas[0]) * init_noise_scale)
        cb = None
        if callback is not None:
            cb = (lambda s: (lambda fields: callback({**fields, "batch_start": s})))(start)
        out.append(fn(D, x, sigmas, generator=gens, callback=cb, guidance=guidance,
                      cond=_slice_cond(cond, n, start, stop), **options))
    if not out:
        return torch.zeros((0, *shape), device=device)
    return torch.cat(out)

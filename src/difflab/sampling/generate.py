"""Sampling from scratch: per-sample noise from seeds, a grid by name, a sampler by name, in batches.

Reproducibility (DESIGN.md §3): sample ``k`` of a call with ``seed`` and ``offset`` owns the generator seeded
from ``(seed, offset + k)``; its initial noise and every noise draw of a stochastic sampler come from that
generator alone, so sample ``k`` is the same whether it is drawn alone, in any batch, or with any ``batch_size``
(for independent samples; particle guidance couples a batch, see :func:`generate`).
"""

from __future__ import annotations

import math
import os

import torch

from difflab.progress import _NoBar, bar
from difflab.sampling.base import check_sigmas, device_of, member, start_noise
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


def _counting(cb, pbar):
    """The sampler's per-step callback, also advancing the progress bar by one step."""
    def step(fields):
        pbar.update(1)
        if cb is not None:
            cb(fields)
    return step


class NonFiniteSamples(ValueError):
    """A sampler produced NaN or Inf: a user error (bad options or weights), reported instead of written."""


def _first_nonfinite_step(fn, D, x, sigmas, gens, guidance, cond, options) -> str:
    """Where a batch first went non-finite: 'at step i (sigma s)' from the sampler's per-step callback."""
    seen = {}

    def watch(fields):
        if "at" in seen:
            return
        bad = [k for k in ("x", "denoised") if torch.is_tensor(fields.get(k)) and not torch.isfinite(fields[k]).all()]
        if bad:
            seen["at"] = (f"at step {fields.get('i')} (sigma {float(fields.get('sigma', float('nan'))):.4g}, "
                          f"in {' and '.join(bad)})")

    fn(D, x, sigmas, generator=gens, callback=watch, guidance=guidance, cond=cond, **options)
    return seen.get("at", "in the last step")


def available_memory(device: torch.device) -> int | None:
    """Bytes free on ``device`` (CUDA: free device memory; CPU: available physical memory on Linux), or None."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(n: int, shape, batch_size: int, steps: int, device) -> None:
    """Refuse sizes that cannot fit before allocating anything: the output (twice: batches and their concatenation),
    a batch's working set (about 16 copies of it) and the sigma grid, in float32, against :func:`available_memory`."""
    numel = math.prod(int(s) for s in shape)
    need = 4 * (2 * n * numel + 16 * min(batch_size, max(n, 1)) * numel) + 16 * (steps + 1)
    free = available_memory(torch.device(device))
    if free is not None and need > free:
        raise ValueError(f"n={n} samples of shape {tuple(shape)} in batches of {batch_size} with {steps} steps need "
                         f"about {need / 2**30:.3g} GiB, more than the {free / 2**30:.3g} GiB free on {device}; "
                         "use a smaller --n, --batch-size or --steps")


def generate(D, n: int, shape, *, sampler: str = "heun", steps: int = 18, sigma_min: float = 0.002,
             sigma_max: float = 80.0, rho: float | None = None, grid="karras", seed: int = 0, offset: int = 0,
             cond: dict | None = None, guidance=None, init_noise_scale: float = 1.0, callback=None,
             batch_size: int | None = None, device=None, check_finite: bool = True, progress: bool | None = None,
             **options) -> torch.Tensor:
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
    - check_finite: a batch with a NaN or Inf raises :class:`NonFiniteSamples` naming the first step and sigma
      where it appeared and the options that made it (one device read per batch; the batch is replayed only to
      write the message). Sizes are checked against memory before anything is allocated (:func:`check_memory`).
    - progress: a tqdm bar over all steps of all batches (postfix: the batch), off by default; None follows
      :func:`difflab.progress.default`, which the CLI switches on for a terminal without ``--quiet``.
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
    check_memory(n, shape, n if batch_size is None else batch_size, steps if isinstance(grid, str) else 0, device)
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
    n_batches, n_steps = -(-n // max(bs, 1)), len(sigmas) - 1
    pbar = bar(progress=progress, total=n_batches * n_steps, desc=f"sampling ({sampler})", unit="step")
    for b, start in enumerate(range(0, n, max(bs, 1))):
        stop = min(start + bs, n)
        pbar.set_postfix(batch=f"{b + 1}/{n_batches}")
        gens = make_generators(seed, stop - start, offset=offset + start, device=gen_device)
        # Initial noise: sample k from its own generator (seed, offset + k).
        # (through the guidances' starting-state hook, sampling.base.start_noise: coupled starts for diversity)
        x = start_noise(guidance, randn((stop - start, *shape), generator=gens, device=device))
        x = x * (float(sigmas[0]) * init_noise_scale)
        cb = None
        if callback is not None:
            cb = (lambda s: (lambda fields: callback({**fields, "batch_start": s})))(start)
        if not isinstance(pbar, _NoBar):
            cb = _counting(cb, pbar)
        batch_cond = _slice_cond(cond, n, start, stop)
        xb = fn(D, x, sigmas, generator=gens, callback=cb, guidance=guidance, cond=batch_cond, **options)
        if check_finite and xb.device.type != "meta" and not bool(torch.isfinite(xb).all()):  # one read per batch
            # Replay the batch (same generators, so the same draws) to name the first step that went non-finite.
            gens = make_generators(seed, stop - start, offset=offset + start, device=gen_device)
            x = start_noise(guidance, randn((stop - start, *shape), generator=gens, device=device))
            x = x * (float(sigmas[0]) * init_noise_scale)
            first = _first_nonfinite_step(fn, D, x, sigmas, gens, guidance, batch_cond, options)
            opts = ", ".join(f"{k}={v}" for k, v in {"sampler": sampler, "steps": steps, **options,
                                                      "init_noise_scale": init_noise_scale}.items())
            if guidance is not None:
                opts += f", guidance={guidance!r}"
            pbar.close()
            raise NonFiniteSamples(f"sampling produced non-finite values (NaN or Inf) in samples {offset + start}.."
                                   f"{offset + stop - 1} (seed {seed}) {first}; nothing was written ({opts})")
        out.append(xb)
        pbar.update(max(0, (b + 1) * n_steps - pbar.n))  # samplers that skip the callback on a step still end the batch
    pbar.close()
    if not out:
        return torch.zeros((0, *shape), device=device)
    return torch.cat(out)

"""What every sampler shares: argument checks, guidance wrapping, churn, callbacks."""

from __future__ import annotations

import math
from typing import Protocol

import torch

from difflab.sampling.rng import randn_like
from difflab.utils import as_sigma


class Denoiser(Protocol):
    """The one contract (DESIGN.md section 1): ``D(x, sigma, **cond) -> x0_hat`` with x ``[B, ...]`` and sigma a
    ``[B]`` tensor (or a number, broadcast); ``cond`` holds conditioning such as ``class_labels`` or
    ``cond_frames``.

    Optional members, declared here once and read only through :func:`member` (guidance wrappers forward them):

    - ``num_classes`` (int): a class-conditional D reserves label ``num_classes`` for "no label" (CFG's null);
    - ``T`` (int) and ``beta_schedule`` (str): a discrete-time (DDPM) model's schedule, for the DDPM grids;
    - ``host_sigma`` (bool): D accepts sigma as a Python number, so guidance windows are decided on the host
      without reading the device back (:func:`denoise` passes the number);
    - ``decode`` (callable ``decode(z, cond=, sample=, noise=) -> images``): D denoises latents (or low-resolution
      images), and its samples become images through ``decode`` (difflab.nets.latent: latent diffusion, a
      cascade whose decode samples a super-resolution stage with ``sample(D, shape, cond)``); samplers never call
      it, :func:`difflab.recipe.sample` does.
    A loaded model (``difflab.load``) also carries ``difflab_config`` and ``difflab_path``; samplers never need
    them."""

    def __call__(self, x: torch.Tensor, sigma, **cond) -> torch.Tensor: ...


MEMBERS = {"num_classes": None, "T": None, "beta_schedule": None, "host_sigma": False, "decode": None}


def member(D, name: str, default=None):
    """An optional member of the :class:`Denoiser` protocol (``num_classes``, ``T``, ``beta_schedule``,
    ``host_sigma``, ``decode``), or ``default`` when D does not declare it."""
    if name not in MEMBERS:
        raise AttributeError(f"{name!r} is not a declared member of the Denoiser protocol ({sorted(MEMBERS)})")
    v = getattr(D, name, None)
    return default if v is None else v


def device_of(D, device=None) -> torch.device:
    """``device`` if given, else the device of D's first parameter (a module), else the CPU."""
    if device is not None:
        return torch.device(device)
    params = getattr(D, "parameters", None)
    p = next(params(), None) if callable(params) else None
    return p.device if p is not None else torch.device("cpu")


def check_sigmas(sigmas) -> torch.Tensor:
    """Validate a sampling grid: 1-D, at least 2 values, finite, non-negative, non-increasing, ending in 0.

    The grid is returned on the CPU whatever the images' device: samplers read it as Python floats every step, and
    reading a CUDA tensor back (``float(sigmas[i])``) would synchronise the stream once per step, so the host
    could no longer queue the next network call while the GPU runs this one (as diffusers' schedulers, which
    keep their sigmas on the CPU for the same reason)."""
    sigmas = torch.as_tensor(sigmas).detach().to("cpu", torch.float32)
    if sigmas.ndim != 1 or sigmas.numel() < 2:
        raise ValueError(f"sigmas must be a 1-D grid of at least 2 values (steps >= 1), got shape {tuple(sigmas.shape)}")
    if not torch.isfinite(sigmas).all() or (sigmas < 0).any():
        raise ValueError("sigmas must be finite and non-negative")
    if float(sigmas[-1]) != 0.0:
        raise ValueError(f"sigmas must end in 0, got {float(sigmas[-1]):g}")
    if (sigmas[1:] > sigmas[:-1]).any():
        raise ValueError("sigmas must be non-increasing")
    if float(sigmas[-2]) <= 0:
        raise ValueError("only the last sigma may be 0")
    return sigmas


def check_options(name: str, options: dict, allowed: set[str]):
    """Reject unknown keyword options with a message naming them (catches typos such as s_churn)."""
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(f"{name}: unknown option(s) {sorted(unknown)}; allowed: {sorted(allowed)}")


def check_churn(S_churn: float, S_noise: float, S_tmin: float, S_tmax: float):
    if not (S_churn >= 0 and math.isfinite(S_churn)):
        raise ValueError(f"S_churn must be a finite number >= 0, got {S_churn}")
    if not S_noise >= 0:
        raise ValueError(f"S_noise must be >= 0, got {S_noise}")
    if not (0 <= S_tmin <= S_tmax):
        raise ValueError(f"need 0 <= S_tmin <= S_tmax, got S_tmin={S_tmin}, S_tmax={S_tmax}")


def guided(D, guidance):
    """Wrap D with a guidance or a list of them (applied in order: the first wraps D itself)."""
    if guidance is None:
        return D
    for g in guidance if isinstance(guidance, (list, tuple)) else [guidance]:
        if not hasattr(g, "wrap"):
            raise TypeError(f"guidance must provide .wrap(D), got {type(g).__name__}")
        D = g.wrap(D)
    return D


def guidance_info(guidance) -> dict:
    """Per-step statistics a guidance recorded during its last call (e.g. gradient norms), on the host: 0-d
    tensors become floats, others CPU tensors. Guidances keep them on the device, so this read-back (a GPU
    synchronisation) happens only when a callback asks for them."""
    info = {}
    if guidance is None:
        return info
    for g in guidance if isinstance(guidance, (list, tuple)) else [guidance]:
        for key, v in (getattr(g, "last_info", None) or {}).items():
            if torch.is_tensor(v):
                v = float(v) if v.ndim == 0 else v.detach().cpu()
            info[key] = v
    return info


def denoise(D, x, sigma, cond):
    """Call D at a scalar noise level for the whole batch. A guidance wrapper marked ``host_sigma`` gets the
    number itself, so it can decide sigma windows on the host rather than read the device back."""
    if member(D, "host_sigma", False) and isinstance(sigma, (int, float)):
        return D(x, float(sigma), **cond)
    return D(x, as_sigma(sigma, x), **cond)


def gamma_for(sigma: float, S_churn: float, n_steps: int, S_tmin: float, S_tmax: float) -> float:
    """Karras et al. 2022, Algorithm 2: gamma_i = min(S_churn/N, sqrt(2) - 1) if S_tmin <= t_i <= S_tmax."""
    if S_churn <= 0 or not (S_tmin <= sigma <= S_tmax):
        return 0.0
    return min(S_churn / n_steps, math.sqrt(2) - 1)


def _guidances(guidance) -> list:
    if guidance is None:
        return []
    return list(guidance) if isinstance(guidance, (list, tuple)) else [guidance]


def start_noise(guidance, z: torch.Tensor) -> torch.Tensor:
    """The starting-state hook. ``z`` [B, ...] is the i.i.d. standard normal noise a run starts from (before
    scaling by ``sigmas[0]``); every guidance in ``guidance`` that defines ``start_noise(z) -> z'`` transforms it
    in turn (e.g. :class:`difflab.guidance.structured.StructuredNoise` makes each group's rows negatively
    dependent while each row stays exactly N(0, I)). Others leave it alone.

    :func:`difflab.sampling.generate.generate` calls it on every batch. A sampler called directly receives its
    starting ``x`` from the caller, who calls this hook (``x = sigmas[0] * start_noise(guidance, z)``); without it
    a starting-noise method is a no-op (i.i.d. starts), never wrong."""
    for g in _guidances(guidance):
        fn = getattr(g, "start_noise", None)
        if callable(fn):
            z = fn(z)
    return z


def churn_noise(guidance, eps: torch.Tensor) -> torch.Tensor:
    """The churn-noise hook: the fresh standard normal noise ``eps`` [B, ...] that :func:`churn` adds (Karras et
    al. 2022, Algorithm 2, line 5) goes through ``churn_noise(eps) -> eps'`` of every guidance that defines it
    (coupled churn noise: each row stays N(0, I), rows of a group are negatively dependent)."""
    for g in _guidances(guidance):
        fn = getattr(g, "churn_noise", None)
        if callable(fn):
            eps = fn(eps)
    return eps


def churn(x, sigma: float, gamma: float, S_noise: float, generator, guidance=None):
    """Increase noise temporarily: sigma_hat = sigma (1 + gamma), x_hat = x + sqrt(sigma_hat^2 - sigma^2) S_noise eps,
    with eps passed through the guidances' churn-noise hook (:func:`churn_noise`)."""
    sigma_hat = sigma * (1 + gamma)
    if gamma > 0:
        eps = churn_noise(guidance, randn_like(x, generator))
        x = x + math.sqrt(sigma_hat**2 - sigma**2) * S_noise * eps
    return x, sigma_hat


def report(callback, guidance, **fields):
    if callback is not None:
        fields.update(guidance_info(guidance))
        callback(fields)

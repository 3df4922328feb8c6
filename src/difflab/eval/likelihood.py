"""Exact log-likelihood of a denoiser's probability-flow ODE, and bits per dimension for 8-bit images.

The model. D(x; sigma) defines noised densities p_sigma (VE scaling, x = x0 + sigma n) and the
probability-flow ODE (Song et al. 2021, eq. 13; Karras et al. 2022, eq. 3)

    dx/dsigma = f(x, sigma) = (x - D(x; sigma)) / sigma.

Instantaneous change of variables (Chen et al. 2018, Theorem 1; Song et al. 2021, App. D.2): along a solution,
d log p_sigma(x(sigma)) / dsigma = -div_x f = -(d - tr dD/dx) / sigma, with d the number of dimensions. We
integrate in u = ln sigma (dx/du = x - D, smooth down to small sigma) from sigma_min to sigma_max:

    log p_{sigma_min}(x0) = log N(x(sigma_max); 0, sigma_max^2 I) + int (d - tr dD/dx) du,

the integral over u from ln sigma_min to ln sigma_max.

Two approximations, both small. (1) The prior at sigma_max is N(0, sigma_max^2 I), while the true p_sigma_max
is the data convolved with it. For data of mean mu the per-sample error is about (||mu||^2/2 - mu . x_T) /
sigma_max^2, i.e. ~ ||mu|| / sigma_max, with mean -||mu||^2 / (2 sigma_max^2) over the data (plus
~ d v / (2 sigma_max^2) for data variance v per dim); e.g. up to 0.009 nats for d = 2, mu = (0.3, 0.3),
sigma_max = 80. (2) The result is the density of the data smoothed by N(0, sigma_min^2 I) (it tends to
log p_data as sigma_min -> 0). tr dD/dx is exact (d vector-Jacobian products) or Hutchinson's estimate E[v^T (dD/dx) v]
with Rademacher or Gaussian probes v, fixed for the whole solve (Grathwohl et al. 2019, FFJORD); the estimate
of log p is then unbiased, with a variance that n_probes reduces.

Bits per dimension with uniform dequantisation (Theis et al. 2016; Ho et al. 2019; Song et al. 2021 App. D.2).
An 8-bit image k in {0..255}^d becomes y = (k + u) / 256, u ~ U[0, 1)^d, then z = 2 y - 1 in [-1, 1)^d. The
discrete model is P(k) = int_{[0,1)^d} p_Y((k + u)/256) 256^{-d} du with p_Y(y) = 2^d p_Z(2y - 1), so by Jensen

    log P(k) >= E_u[log p_Z(z)] + d log 2 - d log 256 = E_u[log p_Z(z)] + d log(2/256),

and  bits/dim = -log2 P(k) / d <= -E_u[log p_Z(z)] / (d ln 2) + 7   (log2(256/2) = 7).

Note the scale: z = (2k + 1 + 2(u - 1/2)) / 256 - 1, i.e. pixels at (k + 1/2)/128 - 1, while training usually
maps k to k/127.5 - 1; the 255/256 mismatch is the standard convention and is kept.
"""

from __future__ import annotations

import math

import torch

from difflab.sampling.ode import ADAPTIVE_METHODS, FIXED_METHODS
from difflab.sampling.rng import rand_like, randn_like
from difflab.utils import as_sigma

_HUTCHINSON = ("rademacher", "gaussian", "exact")


def _probes(x, hutchinson: str, n_probes: int, generator):
    if hutchinson == "exact":
        return []
    out = []
    for _ in range(n_probes):
        if hutchinson == "gaussian":
            out.append(randn_like(x, generator))
        else:
            out.append((rand_like(x, generator) < 0.5).to(x.dtype) * 2 - 1)
    return out


def _trace_jacobian(den: torch.Tensor, x: torch.Tensor, probes) -> torch.Tensor:
    """tr(dD/dx) per sample: exact (one VJP per dimension) when probes is empty, else Hutchinson's mean."""
    B = x.shape[0]
    if not probes:
        d = x[0].numel()
        tr = torch.zeros(B, dtype=x.dtype, device=x.device)
        for j in range(d):
            e = torch.zeros_like(x).reshape(B, d)
            e[:, j] = 1
            (g,) = torch.autograd.grad(den, x, grad_outputs=e.reshape(x.shape), retain_graph=True)
            tr = tr + g.reshape(B, d)[:, j]
        return tr
    tr = torch.zeros(B, dtype=x.dtype, device=x.device)
    for v in probes:
        (g,) = torch.autograd.grad(den, x, grad_outputs=v, retain_graph=True)
        tr = tr + (g * v).flatten(1).sum(1)
    return tr / len(probes)


def ode_log_likelihood(D, x0: torch.Tensor, sigma_min: float = 0.002, sigma_max: float = 80.0, *,
                       hutchinson: str = "rademacher", n_probes: int = 1, generator=None, solver: str = "dopri5",
                       rtol: float = 1e-5, atol: float = 1e-5, steps: int = 100, cond: dict | None = None,
                       return_details: bool = False):
    """Per-sample log p_{sigma_min}(x0) in nats under the probability-flow ODE of D (see the module docstring).

    - hutchinson: 'rademacher' (default), 'gaussian' or 'exact' (d VJPs per evaluation; small d only).
    - n_probes: probes averaged at every evaluation (ignored for 'exact').
    - generator: one torch.Generator or a list with one per sample (for the probes).
    - solver: a torchdiffeq method, adaptive ('dopri5', ... with rtol/atol) or fixed-step ('rk4', ... with
      ``steps`` equal steps in ln sigma).
    - The computation runs in x0's dtype; pass float64 for tight tolerances.
    Returns a [B] tensor, or (logp, dict(prior=..., delta=..., nfe=..., x_T=...)) with ``return_details``.
    """
    import torchdiffeq

    if hutchinson not in _HUTCHINSON:
        raise ValueError(f"hutchinson must be one of {_HUTCHINSON}, got {hutchinson!r}")
    if isinstance(n_probes, bool) or not isinstance(n_probes, int) or n_probes < 1:
        raise ValueError(f"n_probes must be an integer >= 1, got {n_probes!r}")
    if not (0 < sigma_min < sigma_max and math.isfinite(sigma_max)):
        raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
    if solver not in ADAPTIVE_METHODS + FIXED_METHODS:
        raise ValueError(f"solver must be one of {ADAPTIVE_METHODS + FIXED_METHODS}, got {solver!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if not x0.is_floating_point():
        raise ValueError(f"x0 must be a floating-point tensor, got {x0.dtype} (use bits_per_dim for 8-bit images)")
    cond = cond or {}
    B, d = x0.shape[0], x0[0].numel()
    probes = _probes(x0, hutchinson, n_probes, generator)
    nfe = 0

    def f(u, state):
        nonlocal nfe
        nfe += 1
        x = state[0].detach()
        sigma = as_sigma(math.exp(float(u)), x)
        with torch.enable_grad():
            x = x.requires_grad_(True)
            den = D(x, sigma, **cond)
            tr = _trace_jacobian(den, x, probes)
        # dx/du = x - D(x; sigma); d(delta)/du = d - tr dD/dx (= sigma * div_x f).
        return (x - den).detach(), (d - tr).detach().to(x.dtype)

    u = torch.tensor([math.log(sigma_min), math.log(sigma_max)], dtype=x0.dtype, device=x0.device)
    kw = dict(rtol=rtol, atol=atol) if solver in ADAPTIVE_METHODS else dict(options=dict(step_size=float(u[1] - u[0]) / steps))
    state0 = (x0.detach(), torch.zeros(B, dtype=x0.dtype, device=x0.device))
    with torch.no_grad():
        xs, deltas = torchdiffeq.odeint(f, state0, u, method=solver, **kw)
    x_T, delta = xs[-1], deltas[-1]
    # Prior N(0, sigma_max^2 I) at sigma_max.
    prior = -0.5 * (x_T.double().flatten(1) ** 2).sum(1) / sigma_max**2 - 0.5 * d * math.log(2 * math.pi * sigma_max**2)
    logp = prior + delta.double()
    if return_details:
        return logp, dict(prior=prior, delta=delta.double(), nfe=nfe, x_T=x_T)
    return logp


def dequantize(images: torch.Tensor, generator=None, dtype=torch.float32) -> torch.Tensor:
    """z = 2 (k + u) / 256 - 1 with u ~ U[0, 1) per pixel; ``images`` are uint8 (0..255) or floats in [-1, 1]
    on the grid k / 127.5 - 1 (they are rounded back to k)."""
    k = to_uint8_levels(images).to(dtype)
    u = rand_like(k, generator)
    return 2 * (k + u) / 256 - 1


def to_uint8_levels(images: torch.Tensor) -> torch.Tensor:
    """Integer levels k in {0..255} from uint8 images or floats in [-1, 1] (k = round((x + 1) * 127.5))."""
    if images.dtype == torch.uint8:
        return images.to(torch.int64)
    if not images.is_floating_point():
        k = images.to(torch.int64)
    else:
        if float(images.min()) < -1 - 1e-6 or float(images.max()) > 1 + 1e-6:
            raise ValueError("float images must lie in [-1, 1] (pass uint8 for 0..255)")
        k = torch.round((images.double() + 1) * 127.5).to(torch.int64)
    if int(k.min()) < 0 or int(k.max()) > 255:
        raise ValueError("integer images must lie in 0..255")
    return k


def bits_per_dim(D, images: torch.Tensor, sigma_min: float = 0.002, sigma_max: float = 80.0, *,
                 n_dequant: int = 1, generator=None, dtype=torch.float32, **kwargs) -> torch.Tensor:
    """Per-sample upper bound on bits/dim of 8-bit ``images`` (uint8 0..255, or floats in [-1, 1]) under D:

        bpd = -(E_u[log p_Z(z)] + d log(2/256)) / (d ln 2) = -E_u[log p_Z(z)] / (d ln 2) + 7,

    with z the uniform dequantisation of the module docstring, E_u estimated with ``n_dequant`` draws, and
    log p_Z from :func:`ode_log_likelihood` (``kwargs``: hutchinson, n_probes, solver, rtol, atol, steps, cond).
    ``generator`` (one or one per sample) drives the dequantisation noise and then the probes.
    Average the result over a data set for the usual figure."""
    if isinstance(n_dequant, bool) or not isinstance(n_dequant, int) or n_dequant < 1:
        raise ValueError(f"n_dequant must be an integer >= 1, got {n_dequant!r}")
    d = images[0].numel()
    total = torch.zeros(images.shape[0], dtype=torch.float64)
    for _ in range(n_dequant):
        z = dequantize(images, generator, dtype)
        logp = ode_log_likelihood(D, z, sigma_min, sigma_max, generator=generator, **kwargs)
        total = total + (-(logp.cpu() + d * math.log(2 / 256)) / (d * math.log(2)))
    return total / n_dequant


def run_likelihood(model, *, n: int = 64, data: str = "mnist:test", seed: int = 0, hutchinson: str = "rademacher",
                   solver: str = "dopri5", rtol: float = 1e-5, atol: float = 1e-5, batch_size: int = 16) -> dict:
    """``difflab eval likelihood MODEL --n N --data SPEC``: bits/dim of the first N images of SPEC under MODEL.

    Each image gets its own generator, seeded ``(seed, 7, i)``, for its dequantisation noise and probes, so the
    noise does not depend on ``--batch-size``; an adaptive solver picks its steps per batch, so results for
    different batch sizes agree to the solver tolerance only. A class-conditional model is scored conditionally on the images'
    true labels (log p(x | y)); frame-conditioned models and classifiers are refused."""
    import time

    import difflab
    from difflab.eval.features import dataset_images
    from difflab.sampling.rng import make_generator

    D = difflab.load(model)
    cfg = D.difflab_config
    if cfg.model.task != "diffusion" or cfg.data.cond_frames:
        raise ValueError(f"{model}: bits/dim needs an unconditional or class-conditional diffusion model "
                         f"(task={cfg.model.task}, cond_frames={cfg.data.cond_frames})")
    images, labels = dataset_images(data, n)
    want = (cfg.model.channels, cfg.data.size, cfg.data.size)
    if tuple(images.shape[1:]) != want:
        raise ValueError(f"--data {data} gives images of shape {tuple(images.shape[1:])}, the model takes {want}")
    t0, bpd = time.time(), []
    for i in range(0, images.shape[0], batch_size):
        x = images[i:i + batch_size]
        gens = [make_generator(seed, 7, i + j) for j in range(x.shape[0])]
        cond = {"class_labels": labels[i:i + x.shape[0]].long()} if cfg.model.num_classes else None
        bpd.append(bits_per_dim(D, x, cfg.model.sigma_min, cfg.model.sigma_max, generator=gens, cond=cond,
                                hutchinson=hutchinson, solver=solver, rtol=rtol, atol=atol))
    b = torch.cat(bpd)
    res = {"model": str(model), "data": data, "n": int(b.numel()),
           "bits_per_dim": float(b.mean()), "bits_per_dim_se": float(b.std() / math.sqrt(b.numel())) if b.numel() > 1
           else None, "conditional_on_labels": bool(cfg.model.num_classes), "hutchinson": hutchinson,
           "solver": solver, "rtol": rtol, "atol": atol, "seed": seed,
           "wall_s": time.time() - t0}
    se = f" +- {res['bits_per_dim_se']:.3f}" if res["bits_per_dim_se"] is not None else ""
    print(f"bits/dim of {res['n']} images of {data} under {model}: {res['bits_per_dim']:.3f}{se} "
          f"({solver}, Hutchinson {hutchinson}, {res['wall_s']:.1f} s)")
    return res

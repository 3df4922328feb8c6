"""Interoperability with diffusers and k-diffusion: run the same weights under both libraries.

- :class:`DiffusersUNet` wraps a diffusers ``UNet2DModel`` as a difflab network
  ``F(x_in, c_noise, class_labels=None, cond_frames=None)``. ``c_noise`` is passed to the U-Net as its
  ``timestep``: under :class:`~difflab.diffusion.precond.VPEpsPrecond` / ``VPrecond`` that is the (fractional)
  DDPM timestep t(sigma), under ``EDMPrecond`` it is ln(sigma)/4, which is exactly what diffusers'
  ``EDMEulerScheduler`` feeds the network. So ``VPEpsPrecond(DiffusersUNet(unet), T=1000)`` is the denoiser
  ``D(x; sigma) = x - sigma eps(x / sqrt(1 + sigma^2), t(sigma))`` of a diffusers DDPM model.
- :func:`from_diffusers` builds the right preconditioner from a ``DDPMScheduler``-style config
  (``num_train_timesteps``, ``beta_schedule``, ``beta_start``/``beta_end``, ``prediction_type``).
- :class:`KDiffusionDenoiser` accepts k-diffusion-style denoisers ``model(x, sigma, **extra) -> denoised``.
  That is difflab's own contract (DESIGN.md §1); the adapter only normalises sigma to a [B] tensor on x's
  device and checks the output's shape, so a wrong wrapper fails loudly instead of broadcasting silently.

Schedules. diffusers' ``squaredcos_cap_v2`` is the cosine schedule of Nichol & Dhariwal 2021 (eq. 17, betas
capped at 0.999), the same formula as difflab's ``cosine``: the betas agree to float32 round-off (diffusers
stores them in float32; measured max |d beta| = 2.2e-8 for T = 1000, checked in ``tests/test_interop.py``). ``linear`` agrees for
T = 1000 with the default beta_start = 1e-4, beta_end = 0.02. They differ for other T: difflab rescales the
endpoints by 1000 / T (Nichol & Dhariwal), diffusers keeps them as given; and for non-default endpoints.
diffusers also accumulates abar in float32 (relative sigma differences up to 2.6e-4 for cosine, T = 1000).
:func:`from_diffusers` therefore loads the scheduler's own ``alphas_cumprod`` into the preconditioner's sigma
table by default (so t(sigma) is the one the weights were trained with) and records the difference.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from difflab.diffusion.precond import EDMPrecond, VPEpsPrecond, VPrecond
from difflab.diffusion.schedules import ddpm_sigmas
from difflab.utils import as_sigma

PREDICTION_TYPES = ("epsilon", "v_prediction")
BETA_SCHEDULES = {"linear": "linear", "squaredcos_cap_v2": "cosine"}


class DiffusersUNet(nn.Module):
    """A diffusers ``UNet2DModel`` as a difflab network ``F(x_in, c_noise, class_labels=None, cond_frames=None)``.

    - ``c_noise`` ([B] or a scalar tensor) goes to the U-Net as ``timestep`` unchanged (a float: fractional DDPM
      timesteps between table entries are fine, the sinusoidal embedding takes any real t).
    - ``prediction_type`` says what the U-Net outputs ('epsilon' or 'v_prediction'); it does not change the
      output, it tells :func:`from_diffusers` / :meth:`precond` which preconditioner interprets it
      (``VPEpsPrecond`` or ``VPrecond``).
    - class labels: a U-Net with ``num_class_embeds = K + 1`` is a K-class model whose last embedding, index K,
      is the null label (difflab's convention, used by classifier-free guidance); ``num_classes`` overrides K.
      Missing labels become the null label.
    - ``cond_frames`` are concatenated to x_in as extra channels (a U-Net with
      ``in_channels = out_channels + cond channels``).
    """

    def __init__(self, unet: nn.Module, prediction_type: str = "epsilon", num_classes: int | None = None):
        super().__init__()
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r} "
                             "('sample' prediction has no difflab preconditioner yet)")
        cfg = getattr(unet, "config", None)
        if cfg is None or not hasattr(cfg, "in_channels"):
            raise TypeError(f"expected a diffusers UNet2DModel (with .config), got {type(unet).__name__}")
        self.unet = unet
        self.prediction_type = prediction_type
        n_embeds = getattr(cfg, "num_class_embeds", None)
        if num_classes is None:
            num_classes = (n_embeds - 1) if n_embeds else 0
        if num_classes and (not n_embeds or num_classes >= n_embeds):
            raise ValueError(f"num_classes={num_classes} needs a U-Net with num_class_embeds > {num_classes} "
                             f"(got {n_embeds}); the null label is index num_classes")
        self.num_classes = int(num_classes)
        self.in_channels = int(cfg.in_channels)
        self.out_channels = int(cfg.out_channels)

    @property
    def config(self):
        return self.unet.config

    def forward(self, x, c_noise, class_labels=None, cond_frames=None, **kwargs):
        if kwargs:
            raise TypeError(f"DiffusersUNet: unexpected argument(s) {sorted(kwargs)}")
        if x.ndim != 4:
            raise ValueError(f"expected images [B, C, H, W], got shape {tuple(x.shape)}")
        B = x.shape[0]
        if cond_frames is not None:
            x = torch.cat([x, cond_frames.to(x.dtype)], dim=1)
        if x.shape[1] != self.in_channels:
            extra = "" if cond_frames is None else f" (x_in plus {cond_frames.shape[1]} cond_frames channels)"
            raise ValueError(f"the U-Net takes {self.in_channels} input channels, got {x.shape[1]}{extra}")
        t = torch.as_tensor(c_noise, device=x.device)
        t = t.reshape(-1).expand(B) if t.numel() == 1 else t.reshape(-1)
        if t.shape[0] != B:
            raise ValueError(f"c_noise must have one value per sample ({B}), got {t.shape[0]} values")
        labels = None
        if getattr(self.unet.config, "num_class_embeds", None):
            labels = (torch.full((B,), self.num_classes, dtype=torch.long, device=x.device) if class_labels is None
                      else torch.as_tensor(class_labels, device=x.device).long().reshape(-1).expand(B))
        elif class_labels is not None and self.num_classes == 0:
            raise ValueError("class_labels given, but the U-Net has no class embedding (num_class_embeds=None)")
        return self.unet(x, t, class_labels=labels).sample

    def precond(self, T: int = 1000, beta_schedule: str = "linear", **kwargs):
        """The preconditioner that turns this network into D: ``VPEpsPrecond`` or ``VPrecond``."""
        cls = VPEpsPrecond if self.prediction_type == "epsilon" else VPrecond
        return cls(self, T=T, beta_schedule=beta_schedule, **kwargs)


def _get(config, key, default=None):
    if isinstance(config, dict):
        return config.get(key, default)
    return getattr(config, key, default)


def scheduler_sigmas(scheduler) -> torch.Tensor:
    """sigma_t = sqrt((1 - abar_t) / abar_t), t = 0..T-1, from a diffusers scheduler's ``alphas_cumprod`` (float64)."""
    abar = getattr(scheduler, "alphas_cumprod", None)
    if abar is None:
        raise TypeError(f"{type(scheduler).__name__} has no alphas_cumprod (need a DDPM-family scheduler)")
    abar = torch.as_tensor(abar).double().cpu()
    if float(abar[-1]) <= 0:
        raise ValueError("abar_T = 0 (rescale_betas_zero_snr): sigma_max is infinite, which sigma-space samplers "
                         "cannot start from")
    return ((1 - abar) / abar).sqrt()


def from_diffusers(unet: nn.Module, scheduler, table: str = "diffusers", num_classes: int | None = None):
    """A difflab denoiser D for a diffusers DDPM model: ``VPEpsPrecond`` ('epsilon') or ``VPrecond``
    ('v_prediction') over :class:`DiffusersUNet`, with T and the beta schedule taken from the scheduler's config
    ('linear' -> 'linear', 'squaredcos_cap_v2' -> 'cosine').

    ``table='diffusers'`` (default) loads the scheduler's own ``alphas_cumprod`` (float32, as the weights were
    trained with) into the preconditioner's sigma table, so t(sigma) and every sigma of the schedule are exactly
    diffusers'; ``table='difflab'`` keeps difflab's float64 schedule (only sensible when they agree: T = 1000
    and default beta endpoints). ``D.schedule_max_rel_diff`` records the largest relative difference between
    the two sigma tables (cosine, T = 1000: 2.6e-4, from diffusers' float32 cumulative product near t = T-1;
    linear, T = 1000: 8e-5; linear with T != 1000: different schedules, see the module docstring).
    difflab's named DDPM grids (``ddpm_sigma_grid``) come from difflab's schedule; :func:`diffusers_sigma_grid`
    gives the scheduler's own sub-sequence from D's table.
    """
    if table not in ("diffusers", "difflab"):
        raise ValueError(f"table must be 'diffusers' or 'difflab', got {table!r}")
    cfg = scheduler.config
    schedule = _get(cfg, "beta_schedule", "linear")
    if schedule not in BETA_SCHEDULES:
        raise ValueError(f"beta_schedule {schedule!r} is not supported; difflab has {sorted(BETA_SCHEDULES)}")
    if _get(cfg, "trained_betas") is not None:
        raise ValueError("schedulers with trained_betas are not supported")
    if _get(cfg, "thresholding", False):
        raise ValueError("dynamic thresholding (thresholding=True) has no difflab equivalent; pass clip_x0 to the "
                         "DDPM/DDIM samplers for plain clipping")
    prediction_type = _get(cfg, "prediction_type", "epsilon")
    T = int(_get(cfg, "num_train_timesteps", 1000))
    net = DiffusersUNet(unet, prediction_type=prediction_type, num_classes=num_classes)
    D = net.precond(T=T, beta_schedule=BETA_SCHEDULES[schedule])
    ours = ddpm_sigmas(T, BETA_SCHEDULES[schedule])
    theirs = scheduler_sigmas(scheduler)
    D.schedule_max_rel_diff = float(((ours - theirs).abs() / theirs).max())
    D.schedule_source = table
    if table == "diffusers":
        D.set_sigma_table(theirs)
    return D


def set_sigma_table(D, sigmas: torch.Tensor):
    """Deprecated alias of ``D.set_sigma_table(sigmas)`` (a method of the discrete-time preconditioners)."""
    return D.set_sigma_table(sigmas)


def diffusers_sigma_grid(D, timesteps) -> torch.Tensor:
    """The sigma grid of a diffusers discrete-timestep schedule (``scheduler.timesteps``, decreasing integers)
    read from D's own sigma table, then 0 (the last step lands on abar = 1, diffusers' ``set_alpha_to_one``)."""
    t = torch.as_tensor(timesteps).long().cpu()
    s = D.sigmas_table.cpu()[t]
    return torch.cat([s.float(), s.new_zeros(1)])


class KDiffusionDenoiser(nn.Module):
    """A k-diffusion-style denoiser ``model(x, sigma, **extra) -> denoised`` (e.g. ``k_diffusion.external.
    CompVisDenoiser``, ``DiscreteEpsDDPMDenoiser``, ``karras_diffusion`` wrappers) as a difflab D.

    Same contract as difflab's; this only (1) turns a float / 0-d sigma into a [B] float tensor on x's device,
    (2) checks that the model returns a tensor shaped like x, (3) exposes ``sigma_min`` / ``sigma_max`` /
    ``num_classes`` when the model has them (k-diffusion's DiscreteSchedule has ``sigma_min``/``sigma_max``),
    and (4) renames conditioning keys via ``cond_map`` (e.g. ``{"class_labels": "class_labels"}`` is the
    default identity; k-diffusion image models often want ``{"class_labels": "class_cond"}``)."""

    def __init__(self, model, cond_map: dict | None = None, sigma_dtype=torch.float32):
        super().__init__()
        if not callable(model):
            raise TypeError(f"model must be callable as model(x, sigma, **extra), got {type(model).__name__}")
        self.model = model
        self.cond_map = dict(cond_map or {})
        self.sigma_dtype = sigma_dtype
        for name in ("sigma_min", "sigma_max"):
            v = getattr(model, name, None)
            if v is not None:
                setattr(self, name, float(v))
        n = getattr(model, "num_classes", None)
        if isinstance(n, int) and not isinstance(n, bool):
            self.num_classes = n

    def forward(self, x, sigma, **cond):
        if not torch.is_tensor(x):
            raise TypeError(f"x must be a tensor, got {type(x).__name__}")
        sigma = as_sigma(sigma, x).to(self.sigma_dtype)
        extra = {self.cond_map.get(k, k): v for k, v in cond.items() if v is not None}
        out = self.model(x, sigma, **extra)
        if not torch.is_tensor(out) or out.shape != x.shape:
            got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
            raise ValueError(f"the k-diffusion model returned {got}, expected a tensor shaped like x {tuple(x.shape)}")
        return out


def edm_from_diffusers(unet: nn.Module, sigma_data: float = 0.5, sigma_min: float = 0.002, sigma_max: float = 80.0):
    """``EDMPrecond`` over a U-Net2DModel trained with EDM preconditioning (diffusers' ``EDMEulerScheduler`` /
    ``EDMDPMSolverMultistepScheduler`` convention: timestep = ln(sigma)/4, c_in, c_skip, c_out of Karras et al.)."""
    for name, v in (("sigma_data", sigma_data), ("sigma_min", sigma_min), ("sigma_max", sigma_max)):
        if not (v > 0 and math.isfinite(v)):
            raise ValueError(f"{name} must be a finite number > 0, got {v}")
    return EDMPrecond(DiffusersUNet(unet), sigma_data=sigma_data, sigma_min=sigma_min, sigma_max=sigma_max)


__all__ = ["DiffusersUNet", "KDiffusionDenoiser", "diffusers_sigma_grid", "edm_from_diffusers", "from_diffusers",
           "scheduler_sigmas", "set_sigma_table"]

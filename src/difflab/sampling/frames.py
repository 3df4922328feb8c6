"""Next-frame prediction (the thesis' chapter 4): sample futures of a frame history with any sampler / guidance.

Prediction: :func:`predict_next` draws ``n_samples`` next frames per history with any sampler / guidance;
:func:`rollout` predicts several frames autoregressively (each prediction, clamped to [-1, 1], is fed back as
the newest conditioning frame). The ``n_samples`` futures of one history are consecutive in the batch, so
particle guidance with ``group_size = n_samples`` (or a divisor of it) couples exactly the futures of one
history.
"""

from __future__ import annotations

import torch

from difflab.models import model_shape
from difflab.sampling.base import device_of


def next_frame_config(D):
    """The config of a next-frame model D (one trained with conditioning frames), or a ValueError saying why not."""
    cfg = getattr(D, "difflab_config", None)
    if cfg is None:
        raise ValueError("D has no difflab_config; load it with difflab.load(...)")
    if not cfg.data.cond_frames:
        raise ValueError(f"this model ({cfg.data.name}) has no conditioning frames (data.cond_frames = 0); "
                         f"next-frame prediction needs a model trained on smmnist-<variant> with cond_frames >= 1")
    return cfg


def predict_next(D, history: torch.Tensor, n_samples: int = 1, *, seed: int = 0, offset: int = 0,
                 class_labels=None, batch_size: int | None = None, device=None, **sampling) -> torch.Tensor:
    """Sample ``n_samples`` next frames for each history [B, K, H, W] (or [K, H, W]) in [-1, 1].

    Returns [B, n_samples, C * P, H, W] (P predicted frames of C channels; C = 1 here). The B * n_samples
    samples are drawn by :func:`difflab.sampling.generate` in one call (history b's samples are consecutive,
    sample k of the call seeded from (seed, offset + k)); ``sampling``: its keyword arguments (sampler, steps,
    S_churn, guidance, ...); sigma_min / sigma_max default to the model's. ``batch_size``: chunks run one after
    the other; with particle guidance keep it a multiple of the guidance's group size."""
    from difflab.sampling.generate import generate

    cfg = next_frame_config(D)
    device = device_of(D, device)
    h = torch.as_tensor(history).float()
    if h.ndim == 3:
        h = h[None]
    K = cfg.data.cond_frames * cfg.model.channels
    if h.ndim != 4 or h.shape[1] != K:
        raise ValueError(f"history must be [B, K={K}, H, W] (the model conditions on {K} frames), "
                         f"got shape {tuple(h.shape)}")
    if h.shape[-1] != cfg.data.size or h.shape[-2] != cfg.data.size:
        raise ValueError(f"history frames must be {cfg.data.size}x{cfg.data.size}, got {tuple(h.shape[-2:])}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be an integer >= 1, got {n_samples!r}")
    B, n = h.shape[0], n_samples
    cond = {"cond_frames": h.to(device).repeat_interleave(n, 0)}
    if cfg.model.num_classes:
        labels = (torch.full((B,), cfg.model.num_classes, dtype=torch.long) if class_labels is None
                  else torch.as_tensor(class_labels).long().reshape(B))
        cond["class_labels"] = labels.to(device).repeat_interleave(n, 0)
    sampling.setdefault("sigma_min", cfg.model.sigma_min)
    sampling.setdefault("sigma_max", cfg.model.sigma_max)
    shape = model_shape(D)
    x = generate(D, B * n, shape, seed=seed, offset=offset, cond=cond, batch_size=batch_size, device=device,
                 **sampling)
    return x.reshape(B, n, *shape)


def rollout(D, history: torch.Tensor, n_frames: int, n_samples: int = 1, *, seed: int = 0, class_labels=None,
            batch_size: int | None = None, device=None, **sampling) -> torch.Tensor:
    """Predict ``n_frames`` frames autoregressively for each history [B, K, H, W] in [-1, 1], ``n_samples``
    trajectories each -> [B, n_samples, n_frames, H, W]. Step s draws its noise from (seed, s * B * n_samples + k)
    for trajectory k; each prediction is clamped to [-1, 1] and becomes the newest conditioning frame."""
    cfg = next_frame_config(D)
    if isinstance(n_frames, bool) or not isinstance(n_frames, int) or n_frames < 1:
        raise ValueError(f"n_frames must be an integer >= 1, got {n_frames!r}")
    h = torch.as_tensor(history).float()
    if h.ndim == 3:
        h = h[None]
    B, n, K = h.shape[0], n_samples, h.shape[1]
    traj = h.repeat_interleave(n, 0)
    labels = None if class_labels is None else torch.as_tensor(class_labels).long().reshape(B).repeat_interleave(n)
    out, step = [], 0
    while sum(o.shape[1] for o in out) < n_frames:
        y = predict_next(D, traj, 1, seed=seed, offset=step * B * n, class_labels=labels, batch_size=batch_size,
                         device=device, **dict(sampling))[:, 0].clamp(-1, 1)
        y = y.reshape(B * n, cfg.data.pred_frames, cfg.model.channels, *y.shape[-2:])[:, :, 0].to(traj.device)
        out.append(y)
        traj = torch.cat([traj, y], 1)[:, -K:]
        step += 1
    frames = torch.cat(out, 1)[:, :n_frames]
    return frames.reshape(B, n, n_frames, *frames.shape[-2:])


__all__ = ["next_frame_config", "predict_next", "rollout"]

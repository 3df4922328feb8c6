"""Denoising trajectories: record x_i and D(x_i) from any sampler's callback, save them as a PNG strip and a GIF.

    rec = TrajectoryRecorder(indices=[0, 1, 2], every=2)
    x0 = SAMPLERS["heun"](D, x, sigmas, callback=rec)          # or generate(..., callback=rec)
    save_trajectory(rec.frames, "traj.png", "traj.gif")

Layout: one row per recorded step (top = first step, highest sigma); in each row, for every chosen sample,
x_i and D(x_i) side by side. x_i is shown as x_i / sqrt(1 + sigma_i^2) (the VP-scaled state, so a pure-noise
image stays visible instead of saturating) unless ``x_display='clip'``; both are clipped to ``value_range``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch


class TrajectoryRecorder:
    """A sampler callback that keeps ``x`` and ``denoised`` of chosen samples.

    indices: None (all samples), an int k (the first k) or a list of sample indices; with ``generate`` (which
    adds ``batch_start`` to the callback fields) the indices are global sample indices across batches.
    every: keep every ``every``-th step (the last step is always kept). Frames are dicts with
    ``i``, ``sigma``, ``sigma_hat``, ``x``, ``denoised`` (CPU float tensors ``[k, ...]``) and ``indices``.
    """

    def __init__(self, indices=None, every: int = 1):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an integer >= 1, got {every!r}")
        if isinstance(indices, int) and not isinstance(indices, bool):
            if indices < 1:
                raise ValueError(f"indices must be >= 1 when an int, got {indices}")
            indices = list(range(indices))
        self.indices = None if indices is None else [int(i) for i in indices]
        self.every = every
        self.frames: list[dict] = []

    def __call__(self, fields: dict):
        x, den = fields["x"], fields["denoised"]
        start = int(fields.get("batch_start", 0))
        n = x.shape[0]
        if self.indices is None:
            local, glob = list(range(n)), [start + j for j in range(n)]
        else:
            glob = [i for i in self.indices if start <= i < start + n]
            local = [i - start for i in glob]
        if not local:
            return
        frame = dict(i=int(fields["i"]), sigma=float(fields["sigma"]),
                     sigma_hat=float(fields.get("sigma_hat", fields["sigma"])), indices=glob,
                     x=x[local].detach().float().cpu().clone(), denoised=den[local].detach().float().cpu().clone())
        # A later batch of generate(): merge into the frame of the same step.
        if start > 0:
            for f in reversed(self.frames):
                if f["i"] == frame["i"]:
                    f["indices"] = f["indices"] + glob
                    f["x"] = torch.cat([f["x"], frame["x"]])
                    f["denoised"] = torch.cat([f["denoised"], frame["denoised"]])
                    return
        self.frames.append(frame)

    def thinned(self) -> list[dict]:
        """The frames kept by ``every`` (steps 0, every, 2 every, ... and the last)."""
        if not self.frames:
            return []
        last = self.frames[-1]["i"]
        return [f for f in self.frames if f["i"] % self.every == 0 or f["i"] == last]


def _to_image(t: torch.Tensor) -> np.ndarray:
    """One sample -> HxW or HxWxC float array. Accepts [H, W], [C, H, W] (C = 1 or 3) and [F, C, H, W] (frames
    tiled left to right)."""
    if t.ndim == 2:
        return t.numpy()
    if t.ndim == 3:
        if t.shape[0] not in (1, 3):
            raise ValueError(f"expected 1 or 3 channels, got shape {tuple(t.shape)}")
        return t[0].numpy() if t.shape[0] == 1 else t.permute(1, 2, 0).numpy()
    if t.ndim == 4:
        pad = torch.zeros(*t.shape[1:-1], 1) + t.min()
        parts = []
        for f in t:
            parts += [f, pad]
        return _to_image(torch.cat(parts[:-1], dim=-1))
    raise ValueError(f"trajectory frames must be images ([H,W], [C,H,W] or [F,C,H,W] per sample), got "
                     f"shape {tuple(t.shape)}; plot low-dimensional data as points instead")


def _row(frame: dict, x_display: str, value_range, pad: int) -> np.ndarray:
    lo, hi = value_range
    scale = 1.0 / math.sqrt(1 + frame["sigma"] ** 2) if x_display == "vp" else 1.0
    tiles = []
    for x, den in zip(frame["x"], frame["denoised"], strict=True):
        tiles += [_to_image(x * scale), _to_image(den)]
    h, w = tiles[0].shape[:2]
    chans = tiles[0].shape[2:] if tiles[0].ndim == 3 else ()
    row = np.full((h + 2 * pad, len(tiles) * (w + pad) + pad, *chans), 0.5, dtype=np.float32)
    for j, tile in enumerate(tiles):
        # Extra gap between samples, none between a sample's x_i and D(x_i).
        x0 = pad + j * (w + pad)
        row[pad:pad + h, x0:x0 + w] = (np.clip(tile, lo, hi) - lo) / (hi - lo)
    return (row * 255 + 0.5).astype(np.uint8)


def save_trajectory(frames, path_png=None, path_gif=None, *, x_display: str = "vp", value_range=(-1.0, 1.0),
                    pad: int = 2, scale: int = 1, gif_ms: int = 150) -> np.ndarray:
    """Save frames (a list of callback dicts, or a :class:`TrajectoryRecorder`) as a PNG strip (rows = steps,
    x_i and D(x_i) side by side per sample) and/or a GIF (one step per GIF frame, Pillow). ``scale`` enlarges
    pixels (nearest). Returns the strip as a uint8 array (H, W) or (H, W, 3)."""
    from PIL import Image

    if isinstance(frames, TrajectoryRecorder):
        frames = frames.thinned()
    frames = list(frames)
    if not frames:
        raise ValueError("no frames to save (did the sampler get the recorder as callback?)")
    if x_display not in ("vp", "clip"):
        raise ValueError(f"x_display must be 'vp' or 'clip', got {x_display!r}")
    lo, hi = value_range
    if not hi > lo:
        raise ValueError(f"value_range must be (lo, hi) with hi > lo, got {value_range!r}")
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be an integer >= 1, got {scale!r}")
    rows = [_row(f, x_display, value_range, pad) for f in frames]
    strip = np.concatenate(rows, axis=0)
    if scale > 1:
        strip = strip.repeat(scale, 0).repeat(scale, 1)
        rows = [r.repeat(scale, 0).repeat(scale, 1) for r in rows]
    if path_png is not None:
        Path(path_png).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(strip).save(path_png)
    if path_gif is not None:
        Path(path_gif).parent.mkdir(parents=True, exist_ok=True)
        imgs = [Image.fromarray(r) for r in rows]
        imgs[0].save(path_gif, save_all=True, append_images=imgs[1:], duration=gif_ms, loop=0)
    return strip

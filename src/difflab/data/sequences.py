"""Stochastic Moving MNIST sequences: the variants' trajectories with their ground truth, and the digit sources.

The variants, the ground-truth fields and the determinism rules are described in :mod:`difflab.data.moving_mnist`
(which re-exports everything here); the frame datasets built on these sequences are in :mod:`difflab.data.frames`."""

from __future__ import annotations

import os
import random
from functools import lru_cache

import numpy as np
import torch

__all__ = [
    "CIRCLE_DIRECTIONS",
    "DIRECTIONS",
    "DIRECTION_NAMES",
    "ENV_DIGITS",
    "HORIZONTAL_DIRECTIONS",
    "MovingMNIST",
    "VARIANTS",
    "check_p_right",
    "check_variant",
    "item_rng",
    "load_digits",
]

VARIANTS = ("centre", "free", "circle", "horizontal")
_ALIASES = {"center": "centre"}
ENV_DIGITS = "DIFFLAB_SMMNIST_DIGITS"

# Unit moves as (drow, dcol); rows grow downwards. The thesis' circle order (its [dx, dy] list).
CIRCLE_DIRECTIONS = np.array([[0, -1], [1, -1], [1, 0], [1, 1], [0, 1], [-1, 1], [-1, 0], [-1, -1]], dtype=np.int64)
CIRCLE_NAMES = ("left", "down-left", "down", "down-right", "right", "up-right", "up", "up-left")
HORIZONTAL_DIRECTIONS = np.array([[0, -1], [0, 1]], dtype=np.int64)
HORIZONTAL_NAMES = ("left", "right")
# The reference directions per variant (free: the 8 compass sectors of the circle's list).
DIRECTIONS = {"circle": CIRCLE_DIRECTIONS, "horizontal": HORIZONTAL_DIRECTIONS, "free": CIRCLE_DIRECTIONS,
              "centre": np.zeros((0, 2), dtype=np.int64)}
DIRECTION_NAMES = {"circle": CIRCLE_NAMES, "horizontal": HORIZONTAL_NAMES, "free": CIRCLE_NAMES, "centre": ()}

CIRCLE_STEP = 4        # px per axis
HORIZONTAL_STEP = 2    # px per frame
FREE_MAX_SPEED = 4     # velocity components in {-4, ..., 4}


def check_variant(variant: str) -> str:
    v = _ALIASES.get(str(variant).strip().lower(), str(variant).strip().lower())
    if v not in VARIANTS:
        raise ValueError(f"unknown Stochastic Moving MNIST variant {variant!r}; choose one of {', '.join(VARIANTS)} "
                         f"(data.name smmnist-<variant>)")
    return v


def check_p_right(p_right) -> float:
    try:
        p = float(p_right)
    except (TypeError, ValueError):
        raise ValueError(f"p_right must be a probability in [0, 1], got {p_right!r}") from None
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p_right must be a probability in [0, 1], got {p_right!r}")
    return p


# ----------------------------------------------------------------------------------------------------
# Digit sources
# ----------------------------------------------------------------------------------------------------


def _resize_u8(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 [N, h, w] -> uint8 [N, size, size], bilinear with antialiasing (torchvision Resize's filter)."""
    x = np.asarray(images)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3:
        raise ValueError(f"digit images must be [N, H, W], got shape {x.shape}")
    if x.shape[1:] == (size, size):
        return np.ascontiguousarray(x.astype(np.uint8))
    out = np.empty((x.shape[0], size, size), dtype=np.uint8)
    for s in range(0, x.shape[0], 8192):
        t = torch.from_numpy(x[s:s + 8192].astype(np.float32))[:, None]
        r = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", antialias=True,
                                            align_corners=False)
        out[s:s + 8192] = r[:, 0].round().clamp(0, 255).to(torch.uint8).numpy()
    return out


@lru_cache(maxsize=8)
def _load_named(source: str, split: str, digit_size: int) -> tuple[np.ndarray, np.ndarray]:
    if source == "mnist":
        from difflab.data.mnist import load_arrays

        images, labels = load_arrays("mnist", split)
    elif source == "synthetic" or source.startswith("synthetic:"):
        from difflab.data.mnist import SyntheticDigits

        n = 1024 if split == "train" else 256
        if ":" in source:
            part = source.split(":", 1)[1]
            if not part.isdigit() or int(part) < 1:
                raise ValueError(f"digit source {source!r}: expected 'synthetic:N' with a positive N")
            n = int(part)
        ds = SyntheticDigits(n, size=28, seed=0 if split == "train" else 1)
        images, labels = ds.images[:, 0].numpy(), ds.labels.numpy()
    else:
        raise ValueError(f"unknown digit source {source!r} (digits= or ${ENV_DIGITS}); use 'mnist', 'synthetic' "
                         f"or 'synthetic:N'")
    out = _resize_u8(images, digit_size)
    out.setflags(write=False)
    labels = np.asarray(labels, dtype=np.int64)
    labels.setflags(write=False)
    return out, labels


def load_digits(split: str = "train", digits=None, digit_size: int = 16) -> tuple[np.ndarray, np.ndarray, str]:
    """(uint8 digits [N, digit_size, digit_size], int64 labels [N], a name for the source).

    ``digits``: None (``$DIFFLAB_SMMNIST_DIGITS`` or "mnist"), "mnist", "synthetic[:N]", or (images, labels)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if digits is None:
        digits = os.environ.get(ENV_DIGITS, "").strip() or "mnist"
    if isinstance(digits, str):
        source = digits.strip().lower()
        images, labels = _load_named(source, split, int(digit_size))
        return images, labels, f"{source}:{split}"
    try:
        images, labels = digits
    except (TypeError, ValueError):
        raise ValueError("digits must be 'mnist', 'synthetic[:N]' or a pair (images [N, h, w] uint8, labels [N])") \
            from None
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"digits: images must be uint8 in [0, 255], got {images.dtype}")
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(labels) != len(images) or len(images) == 0:
        raise ValueError(f"digits: {len(images)} images but {len(labels)} labels (need as many, at least one)")
    return _resize_u8(images, int(digit_size)), labels, f"custom({len(images)})"


# ----------------------------------------------------------------------------------------------------
# Sequences
# ----------------------------------------------------------------------------------------------------


class MovingMNIST:
    """Sequences of one moving digit: ``sequence(i) -> (frames uint8 [T, frame, frame], info)``.

    ``n``: the number of sequences (default: the number of digits of the split); sequence i draws its digit
    at random from the split. ``seq_len``: T. See the module docstring for the variants and the info fields.
    """

    def __init__(self, variant: str = "horizontal", n: int | None = None, seq_len: int = 16, split: str = "train",
                 p_right: float = 0.5, seed: int = 0, digit_size: int = 16, frame: int = 32, digits=None):
        self.variant = check_variant(variant)
        self.p_right = check_p_right(p_right)
        if isinstance(seq_len, bool) or not isinstance(seq_len, (int, np.integer)) or seq_len < 1:
            raise ValueError(f"seq_len must be an integer >= 1, got {seq_len!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        digit_size, frame = int(digit_size), int(frame)
        if digit_size < 1 or frame < digit_size:
            raise ValueError(f"frame ({frame}) must be at least digit_size ({digit_size})")
        self.hi = frame - digit_size          # largest top-left coordinate
        self.centre = self.hi // 2
        if self.variant == "horizontal" and (self.hi % 2 or self.centre % HORIZONTAL_STEP):
            raise ValueError(f"horizontal: frame - digit_size ({self.hi}) must be a multiple of "
                             f"{2 * HORIZONTAL_STEP} so that the digit passes the centre exactly")
        if self.variant == "circle" and self.centre < CIRCLE_STEP:
            raise ValueError(f"circle: frame - digit_size ({self.hi}) must be >= {2 * CIRCLE_STEP}")
        self.seq_len, self.split, self.seed = int(seq_len), split, int(seed)
        self.digit_size, self.frame = digit_size, frame
        self.digits, self.labels, self.source = load_digits(split, digits, digit_size)
        self.n = len(self.digits) if n is None else int(n)
        if self.n < 1:
            raise ValueError(f"n (the number of sequences) must be >= 1, got {n!r}")
        self.directions = DIRECTIONS[self.variant]
        self.direction_names = DIRECTION_NAMES[self.variant]

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return (f"MovingMNIST({self.variant!r}, n={self.n}, seq_len={self.seq_len}, split={self.split!r}, "
                f"p_right={self.p_right}, seed={self.seed}, digits={self.source!r})")

    def _check_index(self, i) -> int:
        i = int(i)
        if not 0 <= i < self.n:
            raise IndexError(f"sequence index {i} out of range [0, {self.n})")
        return i

    # -- trajectories ---------------------------------------------------------------------------------
    def trajectory(self, i: int) -> dict:
        """The ground truth of sequence i without rendering: positions [T, 2], velocities [T, 2] (move t -> t+1),
        directions [T] (index into the variant's directions; -1 if none), branch [T], label, digit_index."""
        i = self._check_index(i)
        rng = item_rng(self.seed, i, 0)
        digit_index = rng.randrange(len(self.digits))
        T = self.seq_len
        branch = [False] * T
        directions = [-1] * T
        pos = getattr(self, f"_traj_{self.variant}")(rng, branch, directions)  # T + 1 positions (one after)
        pos = np.asarray(pos, dtype=np.int64).reshape(T + 1, 2)
        vel = pos[1:] - pos[:-1]
        directions = np.asarray(directions, dtype=np.int64)
        if self.variant == "free":  # the sector of the actual displacement; -1 when standing still
            directions = _sector(vel)
        return {"positions": pos[:T], "next_position": pos[T], "velocities": vel, "directions": directions,
                "branch": np.asarray(branch, dtype=bool), "label": int(self.labels[digit_index]),
                "digit_index": digit_index, "variant": self.variant, "index": i}

    def _traj_centre(self, rng, branch, directions):
        return [(self.centre, self.centre)] * (self.seq_len + 1)

    def _traj_circle(self, rng, branch, directions):
        c, pos, k = self.centre, [], 0
        for t in range(self.seq_len + 1):
            if t % 2 == 0:
                pos.append((c, c))
                if t < self.seq_len:  # leave the centre in a new uniform direction
                    k = rng.randrange(8)
                    directions[t], branch[t] = k, True
            else:
                dr, dc = CIRCLE_DIRECTIONS[k]
                pos.append((c + CIRCLE_STEP * int(dr), c + CIRCLE_STEP * int(dc)))
                if t < self.seq_len:
                    directions[t] = (k + 4) % 8  # back to the centre
        return pos

    def _traj_horizontal(self, rng, branch, directions):
        step, hi, c, p = HORIZONTAL_STEP, self.hi, self.centre, self.p_right
        col = rng.randrange(hi // step + 1) * step
        d = 1 if rng.random() < p else -1   # the initial direction, drawn with p(right)
        pos = []
        for t in range(self.seq_len):
            pos.append((c, col))
            if col == c:                    # at the centre: a new direction with p(right)
                d = 1 if rng.random() < p else -1
                branch[t] = True
            elif col <= 0:                  # bounce at the borders
                d = 1
            elif col >= hi:
                d = -1
            elif t == 0:
                branch[t] = True            # the initial draw
            directions[t] = 1 if d > 0 else 0
            col += step * d
        pos.append((c, col))
        return pos

    def _traj_free(self, rng, branch, directions):
        hi, m = self.hi, FREE_MAX_SPEED
        r, c = rng.randrange(hi + 1), rng.randrange(hi + 1)
        vr, vc = rng.randrange(-m, m + 1), rng.randrange(-m, m + 1)
        branch[0] = True
        pos = [(r, c)]
        for t in range(self.seq_len):
            r, c = r + vr, c + vc
            hit_r, hit_c = not 0 <= r <= hi, not 0 <= c <= hi
            if hit_r or hit_c:
                # Stop at the wall and draw a new velocity: inwards on the axis that hit, free on the other.
                r, c = min(max(r, 0), hi), min(max(c, 0), hi)
                vr, vc = rng.randrange(-m, m + 1), rng.randrange(-m, m + 1)
                if hit_r:
                    vr = rng.randrange(1, m + 1) * (1 if r == 0 else -1)
                if hit_c:
                    vc = rng.randrange(1, m + 1) * (1 if c == 0 else -1)
                if t + 1 < self.seq_len:
                    branch[t + 1] = True
            pos.append((r, c))
        return pos

    # -- rendering ------------------------------------------------------------------------------------
    def render(self, digit_index: int, positions) -> np.ndarray:
        """uint8 frames [F, frame, frame] with digit ``digit_index`` at the top-left ``positions`` [F, 2]."""
        positions = np.asarray(positions, dtype=np.int64).reshape(-1, 2)
        out = np.zeros((len(positions), self.frame, self.frame), dtype=np.uint8)
        self._paste(out, self.digits[digit_index], positions)
        return out

    def _paste(self, out, digit, positions):
        s = self.digit_size
        for f, (r, c) in enumerate(positions):
            out[f, r:r + s, c:c + s] = digit

    def sequence(self, i: int):
        """(frames uint8 [T, frame, frame], info) for sequence i; info as :meth:`trajectory`."""
        info = self.trajectory(i)
        return self.render(info["digit_index"], info["positions"]), info

    # -- windows --------------------------------------------------------------------------------------
    def windows(self, info: dict, K: int, P: int = 1, kind: str = "any") -> list[int]:
        """Start indices s of windows (K conditioning + P predicted frames) in a sequence; ``kind``: "any",
        "branch" (the last conditioning frame s + K - 1 is a branch point; for horizontal that is the centre,
        for circle the centre) or "unimode" (it is not: the next frame follows from the history)."""
        starts = range(0, self.seq_len - K - P + 1)
        if kind == "any":
            return list(starts)
        if K < 1:
            raise ValueError(f"kind={kind!r} windows need cond_frames K >= 1")
        b = info["branch"]
        if kind == "branch":
            out = [s for s in starts if b[s + K - 1]]
            if self.variant == "horizontal":  # the initial draw at t = 0 is no centre crossing
                out = [s for s in out if info["positions"][s + K - 1][1] == self.centre]
            return out
        if kind == "unimode":
            out = [s for s in starts if not b[s + K - 1]]
            if self.variant == "free":  # a digit standing still has no direction to score
                out = [s for s in out if info["directions"][s + K - 1] >= 0]
            return out
        raise ValueError(f"kind must be 'any', 'branch' or 'unimode', got {kind!r}")


# ----------------------------------------------------------------------------------------------------
# Random streams and directions
# ----------------------------------------------------------------------------------------------------


def item_rng(seed: int, i: int, stream: int) -> random.Random:
    """The random stream ``stream`` of item ``i`` (Mersenne Twister seeded from the integer (seed, i, stream);
    the same on every platform and Python >= 3.2)."""
    return random.Random((int(seed) << 42) | (int(i) << 2) | stream)


def _sector(vel: np.ndarray) -> np.ndarray:
    """Index of the nearest of the 8 circle directions by cosine similarity; -1 for a zero move."""
    vel = np.asarray(vel, dtype=np.float64).reshape(-1, 2)
    d = CIRCLE_DIRECTIONS / np.linalg.norm(CIRCLE_DIRECTIONS, axis=1, keepdims=True)
    idx = (vel @ d.T).argmax(1)
    return np.where(np.abs(vel).sum(1) > 0, idx, -1).astype(np.int64)


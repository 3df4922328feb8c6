"""Stochastic Moving MNIST (the thesis' variants), generated on the fly from MNIST digits, seeded.

One digit, resized to ``digit_size`` x ``digit_size`` (16; bilinear with antialiasing, like torchvision's
``Resize``), moves inside ``frame`` x ``frame`` frames (32). Positions are the digit box's top-left corner
``(row, col)`` in ``[0, frame - digit_size]`` (= [0, 16]), so the digit never leaves the frame; the frame's
centre is position ``(8, 8)``. Variants (DESIGN.md §4, the thesis' ``moving_mnist.py``):

- ``centre``: the digit in the middle of every frame (unconditional generation).
- ``free``: a random start, velocity components drawn from {-4, ..., 4} px/frame; when a move would leave
  the frame the digit stops at the wall and draws a new random velocity (the component normal to the wall
  points inwards, 1..4 px; the other one -4..4), as the thesis' non-deterministic mode does.
  (The thesis can also draw (0, 0), a digit standing still; kept, and left out of direction scores.)
- ``circle``: frame 0 at the centre, frame 1 moved by 4 px per axis to one of 8 directions 45 degrees apart
  (left, down-left, down, down-right, right, up-right, up, up-left: the thesis' order), frame 2 back at the
  centre, and so on; a new uniform direction each time the digit leaves the centre. The diagonal moves are
  4 * sqrt(2) = 5.7 px long (4 px per axis, as in the thesis).
- ``horizontal``: vertically centred, 2 px/frame left or right, turning round at the borders (columns 0 and
  16); whenever the digit is at the frame's centre (column 8, the crossing point: starts are even columns, so
  every crossing lands on it) the direction of the next move is drawn anew, right with probability
  ``p_right``. The initial direction is also drawn with ``p_right``.

Every sequence records its ground truth: ``directions[t]`` is the index (into :data:`DIRECTIONS`) of the
move from frame t to frame t + 1 (also for the last frame: the move that would follow), ``velocities[t]`` the
displacement (drow, dcol), and ``branch[t]`` whether that move was drawn at random at frame t (circle: at the
centre; horizontal: at the centre, or the initial draw; free: after a wall hit, or the initial draw), i.e.
whether the next frame is *not* determined by the history.

Frame datasets (:func:`make_frame_dataset`, what ``data.name: smmnist-<variant>`` trains on): item ``i`` is one
window of K conditioning frames and P predicted frames taken from sequence ``i`` (its own random digit).
The thesis iterates over whole sequences; here the window is drawn at random from (seed, i), and with
probability ``branch_share`` it is drawn among the windows whose last conditioning frame is a branch point,
so the multi-modal case is not rare: circle 1.0 (the thesis trains on centre -> direction pairs only),
horizontal 0.5 (a plain uniform window has the digit at the centre in the last conditioning frame only about
1 time in 8; with 0.5 it is about 56%), free 0 (uniform windows, as the thesis). This does not bias
p(right): the centre visits of a sequence are 8 frames apart whatever the directions (every excursion to a
wall and back takes 8 frames on either side), so choosing a branch window never looks at the draw it ends on.

Digits: the MNIST train split for ``split="train"``, the test split for ``split="test"``. ``digits=`` picks the
source: ``"mnist"`` (default), ``"synthetic"`` or ``"synthetic:N"`` (:class:`difflab.data.mnist.SyntheticDigits`,
no download; N digits, default 1024 for train and 256 for test), or a pair ``(images uint8 [N, h, w], labels)``.
The environment variable ``DIFFLAB_SMMNIST_DIGITS`` sets the default source (``synthetic`` for tests and smoke
runs: training from a config then never touches MNIST).

Determinism: sequence ``i`` depends only on (seed, i) and the digit source (its random draws come from a
``random.Random`` seeded with the integer (seed, i, 0), the window choice from (seed, i, 1)).
"""

from __future__ import annotations

import os
import random
from functools import lru_cache

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = [
    "CIRCLE_DIRECTIONS",
    "DIRECTIONS",
    "DIRECTION_NAMES",
    "ENV_DIGITS",
    "FrameDataset",
    "HORIZONTAL_DIRECTIONS",
    "MovingMNIST",
    "VARIANTS",
    "eval_histories",
    "load_digits",
    "make_frame_dataset",
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
DEFAULT_BRANCH_SHARE = {"centre": 0.0, "free": 0.0, "circle": 1.0, "horizontal": 0.5}
WINDOWS_PER_DIGIT = {"train": 4, "test": 1}   # default dataset length = this x the number of digits


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
        rng = _rng(self.seed, i, 0)
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
# Frame datasets
# ----------------------------------------------------------------------------------------------------


def _rng(seed: int, i: int, stream: int) -> random.Random:
    """The random stream ``stream`` of item ``i`` (Mersenne Twister seeded from the integer (seed, i, stream);
    the same on every platform and Python >= 3.2)."""
    return random.Random((int(seed) << 42) | (int(i) << 2) | stream)


def _sector(vel: np.ndarray) -> np.ndarray:
    """Index of the nearest of the 8 circle directions by cosine similarity; -1 for a zero move."""
    vel = np.asarray(vel, dtype=np.float64).reshape(-1, 2)
    d = CIRCLE_DIRECTIONS / np.linalg.norm(CIRCLE_DIRECTIONS, axis=1, keepdims=True)
    idx = (vel @ d.T).argmax(1)
    return np.where(np.abs(vel).sum(1) > 0, idx, -1).astype(np.int64)


def _to_float(u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(u8.astype(np.float32) / 127.5 - 1.0)


class FrameDataset(Dataset):
    """Next-frame windows: item i = {x: [P, H, W], cond_frames: [K, H, W] (K > 0), class_labels, direction,
    branch} in [-1, 1], from sequence i of ``gen``. ``direction``: the true direction index of the move from the
    last conditioning frame to the first predicted one (-1 if none); ``branch``: whether it was drawn there."""

    def __init__(self, gen: MovingMNIST, cond_frames: int, pred_frames: int = 1, branch_share: float | None = None):
        K, P = int(cond_frames), int(pred_frames)
        if K < 0 or P < 1:
            raise ValueError(f"cond_frames must be >= 0 and pred_frames >= 1, got {K} and {P}")
        if K + P > gen.seq_len:
            raise ValueError(f"cond_frames (K={K}) + pred_frames ({P}) exceeds seq_len ({gen.seq_len}); "
                             f"use a longer data.seq_len or fewer frames")
        share = DEFAULT_BRANCH_SHARE[gen.variant] if branch_share is None else float(branch_share)
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"branch_share must be in [0, 1], got {branch_share!r}")
        if K == 0:
            share = 0.0
        self.gen, self.K, self.P, self.branch_share = gen, K, P, share

    def __len__(self) -> int:
        return len(self.gen)

    def __repr__(self) -> str:
        return f"FrameDataset({self.gen!r}, K={self.K}, P={self.P}, branch_share={self.branch_share})"

    @property
    def num_classes(self) -> int:
        return 10

    def window(self, i: int) -> tuple[int, dict]:
        """(start s, trajectory info) of item i: frames s .. s+K-1 condition, s+K .. s+K+P-1 are predicted."""
        info = self.gen.trajectory(i)
        rng = _rng(self.gen.seed, int(i), 1)
        candidates = None
        if self.branch_share > 0 and rng.random() < self.branch_share:
            candidates = self.gen.windows(info, self.K, self.P, "branch")
        if not candidates:
            candidates = self.gen.windows(info, self.K, self.P, "any")
        return int(candidates[rng.randrange(len(candidates))]), info

    def _item_arrays(self, i: int):
        s, info = self.window(i)
        frames = self.gen.render(info["digit_index"], info["positions"][s:s + self.K + self.P])
        last = s + self.K - 1
        direction = int(info["directions"][last]) if self.K else -1
        branch = bool(info["branch"][last]) if self.K else False
        return frames, info["label"], direction, branch

    def __getitem__(self, i: int) -> dict:
        if not 0 <= int(i) < len(self):
            raise IndexError(f"index {i} out of range [0, {len(self)})")
        frames, label, direction, branch = self._item_arrays(int(i))
        x = _to_float(frames)
        item = {"x": x[self.K:], "class_labels": torch.tensor(label, dtype=torch.int64),
                "direction": torch.tensor(direction, dtype=torch.int64), "branch": torch.tensor(branch)}
        if self.K:
            item["cond_frames"] = x[:self.K]
        return item

    def get_batch(self, idx) -> dict:
        """A batch of items as stacked tensors (what the trainer calls)."""
        idx = [int(i) for i in (idx.tolist() if hasattr(idx, "tolist") else idx)]
        frames = np.empty((len(idx), self.K + self.P, self.gen.frame, self.gen.frame), dtype=np.uint8)
        labels, dirs, branches = [], [], []
        for b, i in enumerate(idx):
            frames[b], label, d, br = self._item_arrays(i)
            labels.append(label)
            dirs.append(d)
            branches.append(br)
        x = _to_float(frames)
        out = {"x": x[:, self.K:], "class_labels": torch.tensor(labels, dtype=torch.int64),
               "direction": torch.tensor(dirs, dtype=torch.int64), "branch": torch.tensor(branches)}
        if self.K:
            out["cond_frames"] = x[:, :self.K]
        return out


def make_frame_dataset(variant: str, data_cfg, seed: int = 0, *, digits=None, branch_share: float | None = None,
                       n: int | None = None) -> FrameDataset:
    """The dataset behind ``data.name: smmnist-<variant>``: windows of K = ``data_cfg.cond_frames`` conditioning
    frames and P = ``data_cfg.pred_frames`` predicted frames from sequences of ``data_cfg.seq_len`` frames of
    ``data_cfg.size`` pixels, digits from ``data_cfg.split``, p(right) = ``data_cfg.p_right``.

    Length: ``n``, else ``data_cfg.limit``, else 4 x the number of digits for train (240,000 windows on MNIST,
    each from its own sequence) and 1 x for test."""
    variant = check_variant(variant)
    split = getattr(data_cfg, "split", "train")
    K, P = int(getattr(data_cfg, "cond_frames", 0)), int(getattr(data_cfg, "pred_frames", 1))
    seq_len = int(getattr(data_cfg, "seq_len", 16))
    if K + P > seq_len:
        raise ValueError(f"data.cond_frames (K={K}) + data.pred_frames ({P}) exceeds data.seq_len ({seq_len})")
    p_right = check_p_right(getattr(data_cfg, "p_right", 0.5))
    gen = MovingMNIST(variant, n=1, seq_len=seq_len, split=split, p_right=p_right, seed=seed,
                      frame=int(getattr(data_cfg, "size", 32)), digits=digits)
    limit = getattr(data_cfg, "limit", None)
    gen.n = int(n if n is not None else (limit if limit is not None else
                                         WINDOWS_PER_DIGIT.get(split, 1) * len(gen.digits)))
    if gen.n < 1:
        raise ValueError(f"the dataset needs at least one sequence, got n={gen.n}")
    return FrameDataset(gen, K, P, branch_share=branch_share)


# ----------------------------------------------------------------------------------------------------
# Evaluation histories
# ----------------------------------------------------------------------------------------------------


def eval_histories(variant: str, n: int, cond_frames: int, kind: str = "branch", *, pred_frames: int = 1,
                   seq_len: int = 16, p_right: float = 0.5, seed: int = 0, split: str = "test", frame: int = 32,
                   digits=None, max_tries: int | None = None) -> dict:
    """``n`` histories from the ``split`` digits for evaluation, one per sequence (sequences without a window of
    that kind are skipped). ``kind="branch"``: the last conditioning frame is a branch point (horizontal: the
    digit at the centre, the two frames before it approaching from the left or the right; circle: the centre);
    ``"unimode"``: it is not (the next frame is determined); ``"any"``.

    Returns tensors: history [n, K, H, W] and next_frames [n, P, H, W] in [-1, 1]; direction [n] (true direction
    index of the next move), velocity [n, 2], branch [n], label [n], sequence [n], start [n] and the generator."""
    K = int(cond_frames)
    if K < 1:
        raise ValueError(f"cond_frames must be >= 1 for histories, got {cond_frames}")
    if K + pred_frames > seq_len:
        raise ValueError(f"cond_frames (K={K}) + pred_frames ({pred_frames}) exceeds seq_len ({seq_len})")
    gen = MovingMNIST(variant, n=1, seq_len=seq_len, split=split, p_right=p_right, seed=seed, frame=frame,
                      digits=digits)
    gen.n = max_tries or max(100 * n, 1000)
    rows = {k: [] for k in ("frames", "direction", "velocity", "branch", "label", "sequence", "start")}
    i = 0
    while len(rows["frames"]) < n:
        if i >= gen.n:
            raise ValueError(f"found only {len(rows['frames'])} of {n} {kind!r} histories of {variant} in {gen.n} "
                             f"sequences (K={K}, seq_len={seq_len})")
        info = gen.trajectory(i)
        starts = gen.windows(info, K, pred_frames, kind)
        if starts:
            s = starts[0] if kind == "branch" else starts[_rng(seed, i, 2).randrange(len(starts))]
            last = s + K - 1
            rows["frames"].append(gen.render(info["digit_index"], info["positions"][s:s + K + pred_frames]))
            rows["direction"].append(int(info["directions"][last]))
            rows["velocity"].append(info["velocities"][last])
            rows["branch"].append(bool(info["branch"][last]))
            rows["label"].append(info["label"])
            rows["sequence"].append(i)
            rows["start"].append(s)
        i += 1
    x = _to_float(np.stack(rows["frames"]))
    return {"history": x[:, :K], "next_frames": x[:, K:], "direction": torch.tensor(rows["direction"]),
            "velocity": torch.tensor(np.stack(rows["velocity"])), "branch": torch.tensor(rows["branch"]),
            "label": torch.tensor(rows["label"]), "sequence": torch.tensor(rows["sequence"]),
            "start": torch.tensor(rows["start"]), "generator": gen}

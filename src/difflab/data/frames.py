"""Stochastic Moving MNIST frame datasets (``data.name: smmnist-<variant>``) and evaluation histories.

Built on the sequences of :mod:`difflab.data.sequences`; the window choice (``branch_share``) is described in
:mod:`difflab.data.moving_mnist`, which re-exports everything here."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from difflab.data.sequences import MovingMNIST, check_p_right, check_variant, item_rng

__all__ = ["DEFAULT_BRANCH_SHARE", "WINDOWS_PER_DIGIT", "FrameDataset", "eval_histories", "make_frame_dataset"]

DEFAULT_BRANCH_SHARE = {"centre": 0.0, "free": 0.0, "circle": 1.0, "horizontal": 0.5}
WINDOWS_PER_DIGIT = {"train": 4, "test": 1}   # default dataset length = this x the number of digits


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
        rng = item_rng(self.gen.seed, int(i), 1)
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
            s = starts[0] if kind == "branch" else starts[item_rng(seed, i, 2).randrange(len(starts))]
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

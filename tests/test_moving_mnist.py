"""Stochastic Moving MNIST (difflab.data.moving_mnist) and next-frame evaluation (difflab.eval.motion).

Synthetic digits throughout (digits="synthetic" / DIFFLAB_SMMNIST_DIGITS=synthetic): nothing is downloaded."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from difflab.config import DataConfig, load_config
from difflab.data.moving_mnist import (
    CIRCLE_DIRECTIONS,
    DIRECTIONS,
    MovingMNIST,
    eval_histories,
    make_frame_dataset,
)
from difflab.eval.motion import (
    UNUSABLE_THRESHOLD,
    classify_directions,
    count_modes,
    direction_of,
    predict_next,
    quality_score,
    rollout,
    shift_images,
    to_unit,
)

SYN = "synthetic"


def _cfg(variant, **kw):
    return DataConfig(name=f"smmnist-{variant}", size=32, **kw)


# ----------------------------------------------------------------------------------------------------
# Dynamics
# ----------------------------------------------------------------------------------------------------


def test_horizontal_p_right_at_centre_matches_setting():
    p = 0.7
    gen = MovingMNIST("horizontal", n=300, seq_len=64, p_right=p, seed=3, digits=SYN)
    right = []
    for i in range(gen.n):
        info = gen.trajectory(i)
        at_centre = info["positions"][:, 1] == gen.centre
        right += info["directions"][1:][at_centre[1:]].tolist()  # t >= 1: real centre crossings
    n = len(right)
    assert n > 1500
    assert abs(np.mean(right) - p) < 4 * math.sqrt(p * (1 - p) / n)
    # The training windows that end at the centre are not biased by the window choice (branch_share 0.5).
    ds = make_frame_dataset("horizontal", _cfg("horizontal", cond_frames=3, p_right=p), seed=1, digits=SYN, n=1200)
    b = ds.get_batch(range(len(ds)))
    at = b["branch"]
    assert 0.45 < float(at.float().mean()) < 0.7  # a good share of windows branch
    m = int(at.sum())
    assert abs(float((b["direction"][at] == 1).float().mean()) - p) < 4 * math.sqrt(p * (1 - p) / m)


def test_circle_directions_uniform_over_8():
    gen = MovingMNIST("circle", n=400, seq_len=20, seed=0, digits=SYN)
    dirs = []
    for i in range(gen.n):
        info = gen.trajectory(i)
        pos = info["positions"]
        assert (pos[::2] == gen.centre).all()  # even frames at the centre
        out = pos[1::2] - gen.centre
        k = info["directions"][::2]
        np.testing.assert_array_equal(out, 4 * CIRCLE_DIRECTIONS[k[: len(out)]])
        dirs += k.tolist()
    counts = np.bincount(dirs, minlength=8)
    expected = len(dirs) / 8
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 30, counts  # 7 degrees of freedom: P(chi2 > 30) < 1e-4


@pytest.mark.parametrize("variant", ["free", "horizontal"])
def test_bouncing_keeps_digit_inside(variant):
    gen = MovingMNIST(variant, n=40, seq_len=300, p_right=0.5, seed=1, digits=SYN)
    for i in range(gen.n):
        info = gen.trajectory(i)
        pos = np.concatenate([info["positions"], info["next_position"][None]])
        assert pos.min() >= 0 and pos.max() <= gen.hi
        v = info["velocities"]
        if variant == "horizontal":
            assert (v[:, 0] == 0).all() and (np.abs(v[:, 1]) == 2).all()
        else:
            assert np.abs(v).max() <= 4
    frames, info = gen.sequence(0)
    digit_mass = int(gen.digits[info["digit_index"]].astype(np.int64).sum())
    assert (frames.reshape(len(frames), -1).astype(np.int64).sum(1) == digit_mass).all()  # never clipped


def test_determinism_and_batch_equals_items():
    a = MovingMNIST("free", n=10, seed=5, digits=SYN)
    b = MovingMNIST("free", n=10, seed=5, digits=SYN)
    c = MovingMNIST("free", n=10, seed=6, digits=SYN)
    fa, ia = a.sequence(7)
    fb, ib = b.sequence(7)
    np.testing.assert_array_equal(fa, fb)
    assert ia["label"] == ib["label"]
    assert not np.array_equal(fa, c.sequence(7)[0])
    ds = make_frame_dataset("horizontal", _cfg("horizontal", cond_frames=3), seed=2, digits=SYN, n=20)
    batch = ds.get_batch([5, 3])
    for j, i in enumerate([5, 3]):
        item = ds[i]
        for k in ("x", "cond_frames", "class_labels", "direction", "branch"):
            assert torch.equal(batch[k][j], item[k])
    assert batch["x"].shape == (2, 1, 32, 32) and batch["cond_frames"].shape == (2, 3, 32, 32)
    assert batch["x"].min() >= -1 and batch["x"].max() <= 1
    assert torch.equal(ds.get_batch([5])["x"], make_frame_dataset(
        "horizontal", _cfg("horizontal", cond_frames=3), seed=2, digits=SYN, n=20).get_batch([5])["x"])


def test_bad_inputs_name_the_parameter():
    with pytest.raises(ValueError, match="p_right"):
        MovingMNIST("horizontal", p_right=1.5, digits=SYN)
    with pytest.raises(ValueError, match="p_right"):
        make_frame_dataset("horizontal", _cfg("horizontal", cond_frames=3, p_right=-0.1), digits=SYN)
    with pytest.raises(ValueError, match="cond_frames"):
        make_frame_dataset("free", _cfg("free", cond_frames=16, seq_len=16), digits=SYN)
    with pytest.raises(ValueError, match="variant"):
        make_frame_dataset("diagonal", _cfg("diagonal", cond_frames=1), digits=SYN)
    from difflab.data.registry import build_dataset

    with pytest.raises(ValueError, match="variant"):
        build_dataset(_cfg("spiral", cond_frames=1))


# ----------------------------------------------------------------------------------------------------
# Evaluation measures on real frames
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant,K,kind", [("circle", 1, "branch"), ("horizontal", 3, "branch"),
                                            ("horizontal", 3, "unimode")])
def test_direction_classifier_on_real_frames(variant, K, kind):
    h = eval_histories(variant, 300, K, kind, seed=0, digits=SYN)
    prev, nxt = to_unit(h["history"][:, -1]), to_unit(h["next_frames"][:, 0])
    for otsu in (False, True):
        idx, cos = classify_directions(direction_of(prev, nxt, otsu), DIRECTIONS[variant])
        assert (idx == h["direction"]).float().mean() >= 0.99
    if variant == "horizontal" and kind == "branch":  # the last history frame has the digit at the centre
        assert (h["start"] >= 0).all() and h["branch"].all()


def test_quality_score_zero_for_shifted_copy():
    gen = MovingMNIST("centre", n=4, digits=SYN)
    frames = torch.from_numpy(np.stack([gen.sequence(i)[0][0] for i in range(4)])).float() / 255
    moved = shift_images(frames, torch.tensor([[3, -5], [-8, 8], [0, 2], [7, 0]]))
    assert torch.equal(quality_score(frames, moved), torch.zeros(4))
    assert (quality_score(frames, frames.roll(1, 0)) > 0).all()  # another digit
    assert (quality_score(frames, torch.zeros_like(frames)) > 0).all()
    assert UNUSABLE_THRESHOLD > 0
    assert count_modes(torch.tensor([[0, 1, 1, -1], [2, 2, 2, 2]])).tolist() == [2, 1]


class _Mover(torch.nn.Module):
    """A denoiser that predicts the last conditioning frame moved 2 px right (a perfect 'right' model)."""

    def __init__(self, cfg):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.difflab_config = cfg

    def forward(self, x, sigma, cond_frames=None, **kw):
        last = cond_frames[:, -1:]
        return torch.cat([torch.full_like(last[..., :2], -1.0), last[..., :-2]], dim=-1) + 0 * x


def test_predict_next_and_rollout_feed_predictions_back():
    cfg = load_config("configs/smmnist_horizontal.yaml")
    D = _Mover(cfg)
    h = eval_histories("horizontal", 2, 3, "branch", seed=0, digits=SYN)["history"]
    y = predict_next(D, h, 3, steps=2)
    assert y.shape == (2, 3, 1, 32, 32)
    r = rollout(D, h, 3, 2, steps=2)
    assert r.shape == (2, 2, 3, 32, 32)
    prev = to_unit(torch.cat([h[:, -1:], r[:, 0, :2]], 1)).flatten(0, 1)
    idx, _ = classify_directions(direction_of(prev, to_unit(r[:, 0]).flatten(0, 1)), DIRECTIONS["horizontal"])
    assert (idx == 1).all()
    with pytest.raises(ValueError, match="K=3"):
        predict_next(D, h[:, :2], 1)


# ----------------------------------------------------------------------------------------------------
# CLI smoke: train a tiny model for 2 steps, eval prior, sample
# ----------------------------------------------------------------------------------------------------


def test_cli_train_prior_sample(tmp_path, monkeypatch, capsys):
    from difflab.cli import main

    monkeypatch.setenv("DIFFLAB_SMMNIST_DIGITS", "synthetic")
    run = tmp_path / "run"
    assert main(["train", "configs/smmnist_horizontal.yaml", "preset=tiny", "max_steps=2", f"out={run}", "threads=1",
                 "progress=false", "batch_size=4"]) == 0
    out = tmp_path / "prior.json"
    assert main(["eval", "prior", str(run), "--sequences", "2", "--samples", "2", "--steps", "2",
                 "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    for key in ("p_hat_right", "quality_mean", "unusable_share", "p_true", "n_sequences", "n_samples", "sampler",
                "S_churn", "pg_weight", "pg_batch", "wall_s", "per_sequence"):
        assert key in res, key
    assert res["p_true"] == 0.5 and res["n_sequences"] == 2 and res["n_samples"] == 2
    assert 0 <= res["p_hat_right"] <= 1 and len(res["per_sequence"]) == 2
    png = tmp_path / "f.png"
    assert main(["sample", str(run), "--cond-seq", "smmnist-horizontal:0", "--n", "2", "--steps", "2",
                 "--out", str(png)]) == 0
    assert png.exists() and png.with_suffix(".npz").exists()
    with np.load(png.with_suffix(".npz")) as z:
        assert z["history"].shape == (3, 32, 32) and z["samples"].shape == (2, 1, 32, 32)
    assert main(["eval", "prior", str(run), "--sequences", "2", "--samples", "3", "--steps", "1",
                 "--pg-weight", "1", "--pg-batch", "2"]) == 2  # groups would mix histories
    assert "--pg-batch" in capsys.readouterr().err

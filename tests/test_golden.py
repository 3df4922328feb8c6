"""Golden slices recorded before the architecture redesign (issue 15): for a fixed seed, outputs must stay
bit-identical while code moves. They catch change, not wrong math (the analytic and oracle tests do that).

Regenerate only for an intended behaviour change: ``python tests/test_golden.py --record``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

GOLDEN = Path(__file__).parent / "golden" / "slices.json"


def _mnist_cond():
    import difflab

    try:
        return difflab.load("mnist-cond")
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"shipped mnist-cond not available: {e}")


def _cases():
    from difflab.guidance import ClassifierFreeGuidance, ParticleGuidance
    from difflab.sampling.generate import generate

    D = _mnist_cond()
    labels = torch.arange(4) % 10

    def run(**kw):
        kw.setdefault("cond", {"class_labels": labels})
        return generate(D, 4, (1, 28, 28), seed=7, steps=kw.pop("steps", 4), sigma_min=0.002, sigma_max=80.0, **kw)

    yield "heun", lambda: run(sampler="heun")
    yield "heun_churn", lambda: run(sampler="heun", S_churn=0.7)
    yield "ddpm", lambda: run(sampler="ddpm", steps=6)
    yield "dpmpp_2m", lambda: run(sampler="dpmpp_2m", steps=5)
    yield "pg", lambda: run(sampler="heun", guidance=ParticleGuidance(weight=1.0, kernel="rbf", group_size=4))
    yield "cfg", lambda: run(sampler="heun", guidance=ClassifierFreeGuidance(weight=0.5))
    yield "train_loss", _train_loss


def _train_loss():
    import tempfile

    from difflab.config import load_config
    from difflab.training.trainer import Trainer

    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as d:
        cfg = load_config(root / "configs" / "tiny.yaml", [f"out={d}/run", "train.progress=false"])
        tr = Trainer(cfg, log=lambda *a, **k: None)
        rec = tr.train_step()
        rec2 = tr.train_step()
    return torch.tensor([float(rec["loss"]), float(rec2["loss"])])


def _slice(t: torch.Tensor) -> list[float]:
    flat = t.detach().double().flatten()
    idx = torch.linspace(0, flat.numel() - 1, 16).long()
    return [float(v) for v in flat[idx]] + [float(flat.sum()), float(flat.abs().sum())]


@pytest.mark.parametrize("name", ["heun", "heun_churn", "ddpm", "dpmpp_2m", "pg", "cfg", "train_loss"])
def test_golden_slice(name):
    golden = json.loads(GOLDEN.read_text())
    fn = dict(_cases())[name]
    got = _slice(fn())
    assert got == golden[name], f"{name}: output changed\n got {got}\nwant {golden[name]}"


if __name__ == "__main__" and "--record" in sys.argv:
    torch.set_num_threads(1)
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps({k: _slice(fn()) for k, fn in _cases()}, indent=1) + "\n")
    print("recorded", GOLDEN)

"""Inpainting (difflab.guidance.inpaint, sampler 'repaint', `difflab sample --inpaint`): known pixels come out
exactly with every sampler, masks are what their names say, and the CLI writes completions in order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from difflab.guidance.inpaint import Inpainting, make_mask
from difflab.sampling import SAMPLERS, karras_sigmas


def _gauss(x, sigma, **cond):
    """The exact denoiser of N(0, I) data."""
    s = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, *[1] * (x.ndim - 1))
    return x / (1 + s**2)


@pytest.mark.parametrize("sampler,opts", [("heun", {}), ("heun", {"S_churn": 2.0}), ("euler", {}), ("dpmpp_2m", {}),
                                          ("ipndm", {}), ("unipc", {}), ("ddim", {"eta": 1.0}), ("repaint", {"resample": 3}),
                                          ("dpmpp_2m_sde", {})])
def test_known_pixels_come_out_exactly(sampler, opts):
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(6, 1, 8, 8, generator=g) * 2 - 1
    keep = 1 - make_mask("bottom-half", 6, (8, 8))
    sig = karras_sigmas(8, 0.002, 80.0)
    x = sig[0] * torch.randn(6, 1, 8, 8, generator=g)
    gens = [torch.Generator().manual_seed(i) for i in range(6)]
    out = SAMPLERS[sampler](_gauss, x, sig, generator=gens, guidance=Inpainting(),
                            cond={"inpaint_x0": x0, "inpaint_keep": keep}, **opts)
    assert float(((out - x0) * keep).abs().max()) <= 1e-4, sampler  # the target is 1e-3
    assert torch.isfinite(out).all() and float(((out - x0) * (1 - keep)).abs().mean()) > 0.05  # the rest is generated


def test_masks_by_name():
    H = W = 28
    assert make_mask("bottom-half", 1, (H, W))[0, 0, 14:].min() == 1 and make_mask("bottom-half", 1, (H, W))[0, 0, :14].max() == 0
    assert make_mask("top-half", 1, (H, W))[0, 0, :14].min() == 1 and make_mask("top-half", 1, (H, W)).sum() == 14 * 28
    assert make_mask("left-half", 1, (H, W))[0, 0, :, :14].min() == 1 and make_mask("right-half", 1, (H, W)).sum() == 14 * 28
    assert make_mask("center", 1, (H, W)).sum() == 14 * 14
    r = make_mask("random-pixels:0.3", 50, (H, W), seed=1)
    assert abs(float(r.mean()) - 0.3) < 0.02
    assert torch.equal(make_mask("random-pixels:0.3", 5, (H, W), seed=1, offset=10), r[10:15])  # per image, not per call
    with pytest.raises(ValueError, match="unknown mask"):
        make_mask("bottom", 1, (H, W))
    with pytest.raises(ValueError, match=r"P must be a number in \(0, 1\)"):
        make_mask("random-pixels:2", 1, (H, W))


def test_png_mask(tmp_path):
    from PIL import Image

    a = np.zeros((28, 28), np.uint8)
    a[:, :7] = 255
    Image.fromarray(a).save(tmp_path / "m.png")
    m = make_mask(str(tmp_path / "m.png"), 2, (28, 28))
    assert m.shape == (2, 1, 28, 28) and m[:, :, :, :7].min() == 1 and m[:, :, :, 7:].max() == 0


def test_repaint_without_resampling_is_heun():
    g = torch.Generator().manual_seed(3)
    sig = karras_sigmas(6, 0.002, 80.0)
    x = sig[0] * torch.randn(4, 3, generator=g)
    assert torch.allclose(SAMPLERS["repaint"](_gauss, x, sig, resample=1), SAMPLERS["heun"](_gauss, x, sig))


def test_cli_inpaint_writes_the_completions_in_order(tmp_path, monkeypatch):
    from difflab.cli import main
    from difflab.data import get_dataset

    monkeypatch.chdir(tmp_path)
    assert main(["sample", "mnist-uncond", "--inpaint", "mnist:test", "--mask", "top-half", "--n", "3", "--steps", "2",
                 "--inpaint-offset", "2", "--seed", "0", "--out", "c.png"]) == 0
    z = np.load(tmp_path / "c.npz")
    x0, _ = get_dataset("mnist:test", limit=5).as_tensors()
    keep = 1 - z["regenerated"]
    assert z["samples"].shape == (3, 1, 28, 28)
    assert np.abs((z["samples"] - x0[2:5].numpy()) * keep).max() <= 1e-3
    assert main(["sample", "mnist-uncond", "--inpaint", "mnist:test", "--n", "2", "--out", "d.png"]) == 2


@pytest.mark.parametrize("steps,resample", [(3, 1), (3, 2), (6, 5)])
def test_repaint_nfe(steps, resample):
    """2 R (N - 1) + 1 evaluations of D for N steps (the last step, to sigma 0, is one Euler step, not resampled)."""
    calls = []

    def D(x, sigma, **cond):
        calls.append(1)
        return _gauss(x, sigma)

    sig = karras_sigmas(steps, 0.002, 80.0)
    SAMPLERS["repaint"](D, torch.randn(2, 3), sig, resample=resample, generator=torch.Generator().manual_seed(0))
    assert len(calls) == 2 * resample * (steps - 1) + 1


def test_inpaint_agreement_columns_keep_the_first_column():
    """A RePaint column completes the same digits with known pixels exact, and adding it leaves the Heun column as
    it was (the published numbers stay reproducible)."""
    from difflab.experiments.inpaint import inpaint_agreement
    from difflab.recipe import SamplingSpec

    spec = SamplingSpec(steps=3, seed=0, batch_size=4)
    plain = inpaint_agreement("mnist-uncond", spec, n=4, masks=("center",))["rows"]["center"]
    r = inpaint_agreement("mnist-uncond", spec, n=4, masks=("center",),
                          variants={"repaint R2": {"sampler": "repaint", "resample": 2}})["rows"]["center"]
    assert {k: v for k, v in r.items() if k not in ("wall_s", "repaint R2")} == {
        k: v for k, v in plain.items() if k != "wall_s"}
    assert r["repaint R2"]["known_max_abs_diff"] <= 1e-4 and 0 <= r["repaint R2"]["completed"] <= 1

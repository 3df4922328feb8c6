"""Cascaded diffusion (#19): a 14x14 base model, a super-resolution model conditioned on the noised upsampled
low-resolution image, composed into one model that recipe.sample decodes by sampling the second stage."""

import json

import pytest
import torch

from difflab.config import load_config
from difflab.diffusion.losses import objective_from_config
from difflab.latent import export_cascade
from difflab.models import build_model, load, model_shape, output_shape
from difflab.nets.latent import downsample, sr_condition, upsample
from difflab.recipe import SamplingSpec, sample
from test_latent import run


@pytest.fixture(scope="module")
def cascade(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cascade")
    base = run(tmp, "configs/cascade_base.yaml", "base", "max_steps=2", "preset=tiny", "sample.steps=2",
               "n_preview=4")
    sr = run(tmp, "configs/cascade_sr.yaml", "sr", "max_steps=2", "model.net.model_channels=8")
    return export_cascade(base, sr, "mnist-cascade", aug_sigma=0.2, dest_root=tmp, dtype=torch.float32), base, sr


def test_sr_condition_noises_the_image_and_carries_the_level():
    low, noise = torch.zeros(2, 1, 4, 4), torch.ones(2, 1, 4, 4)
    c = sr_condition(low, torch.tensor([0.0, 0.3]), noise)
    assert c.shape == (2, 2, 4, 4)
    assert torch.equal(c[0], torch.zeros(2, 4, 4))
    assert torch.allclose(c[1], torch.full((2, 4, 4), 0.3))


def test_superres_batch_levels_lie_in_the_training_range():
    cfg = load_config("configs/cascade_sr.yaml", ["model.net.model_channels=8", "model.aug_max=0.5"])
    model = build_model(cfg)
    x = torch.rand(64, 1, 28, 28) * 2 - 1
    x0, cond = model.prepare_batch(x, torch.Generator().manual_seed(0))
    assert torch.equal(x0, x) and cond["cond_frames"].shape == (64, 2, 28, 28)
    levels = cond["cond_frames"][:, 1, 0, 0]
    assert float(levels.min()) >= 0 and float(levels.max()) <= 0.5 and float(levels.std()) > 0.05
    clean = upsample(downsample(x, 2), (28, 28))
    resid = (cond["cond_frames"][:, :1] - clean).flatten(1).std(1)
    assert torch.allclose(resid, levels, atol=0.05)  # the conditioning image is noised at its level
    loss = objective_from_config(cfg)(model, {"x": x, "class_labels": torch.zeros(64, dtype=torch.long)},
                                      torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)


def test_base_model_works_at_14x14(cascade):
    _, base, _ = cascade
    D = load(base)
    assert model_shape(D) == (1, 14, 14) and output_shape(D) == (1, 28, 28)
    x, _ = sample(D, SamplingSpec(steps=2), 3)
    assert x.shape == (3, 1, 28, 28)


def test_cascade_samples_28x28_records_the_level_and_ignores_batching(cascade):
    dest, _, _ = cascade
    assert json.loads((dest / "config.json").read_text())["model"]["aug_sigma"] == 0.2
    D = load(dest)
    assert D.codec.aug_sigma == 0.2 and model_shape(D) == (1, 14, 14)
    spec = SamplingSpec(steps=2, seed=5, label=7)
    x, labels = sample(D, spec, 3)
    assert x.shape == (3, 1, 28, 28) and float(x.abs().max()) <= 1.0 and labels.tolist() == [7, 7, 7]
    assert torch.allclose(sample(D, spec.replace(batch_size=1), 3)[0], x, atol=1e-6)
    # sample 2 alone (offset 2) equals sample 2 of the batch: both stages' noise is per sample
    assert torch.allclose(sample(D, spec, 1, offset=2)[0], x[2:], atol=1e-6)
    assert not torch.allclose(sample(D, spec.replace(seed=6), 3)[0], x)


def test_the_level_changes_the_second_stage(cascade):
    dest, _, _ = cascade
    D = load(dest)
    spec = SamplingSpec(steps=2, seed=1)
    a = sample(D, spec, 2)[0]
    D.codec.aug_sigma = 0.0
    assert not torch.allclose(sample(D, spec, 2)[0], a)


def test_export_cascade_refuses_swapped_runs(cascade):
    _, base, sr = cascade
    with pytest.raises(ValueError, match="base"):
        export_cascade(sr, base, "x", dest_root=base.parent)

"""Latent diffusion (#19): the KL autoencoder (task vae), the latent model with its stored scale factor, decoding in
recipe.sample, export as a shipped folder."""

import json

import pytest
import torch

from difflab.config import ConfigError, load_config
from difflab.diffusion.losses import kl_to_standard_normal, objective_from_config
from difflab.models import build_model, load, model_shape, output_shape
from difflab.nets.vae import AutoEncoder
from difflab.recipe import SamplingSpec, sample
from difflab.training.trainer import Trainer

TINY = ["progress=false", "limit=64", "batch_size=16", "ckpt_every=100", "log_every=1", "threads=1"]


def run(tmp_path, config, name, *extra):
    cfg = load_config(config, [f"out={tmp_path / name}", "data.name=synthetic", *TINY, *extra])
    Trainer(cfg).run()
    return tmp_path / name


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    return run(tmp_path_factory.mktemp("vae"), "configs/vae_mnist.yaml", "vae", "max_steps=3",
               "model.net.model_channels=8")


@pytest.fixture(scope="module")
def latent_run(tmp_path_factory, vae_run):
    return run(tmp_path_factory.mktemp("latent"), "configs/latent_mnist.yaml", "latent", "max_steps=2",
               f"model.autoencoder={vae_run}", "preset=tiny", "sample.steps=2", "n_preview=4")


def test_autoencoder_shapes_and_latent_shape_4x7x7():
    ae = AutoEncoder(latent_channels=4, model_channels=8)
    x = torch.randn(3, 1, 28, 28)
    rec, mean, logvar = ae(x)
    assert rec.shape == x.shape and mean.shape == logvar.shape == (3, 4, 7, 7)
    assert ae.latent_shape == (4, 7, 7)
    assert AutoEncoder(channel_mult=(1, 2), model_channels=8).latent_shape == (4, 14, 14)


def test_kl_matches_the_closed_form_of_a_univariate_gaussian():
    mean, logvar = torch.tensor([[0.5, -1.0]]), torch.tensor([[0.2, -0.4]])
    var = logvar.exp()
    want = (0.5 * (var + mean**2 - 1 - logvar)).mean()
    assert torch.allclose(kl_to_standard_normal(mean, logvar), want[None])
    assert float(kl_to_standard_normal(torch.zeros(1, 3), torch.zeros(1, 3))) == 0.0


def test_vae_objective_is_mse_plus_weighted_kl():
    cfg = load_config("configs/vae_mnist.yaml", ["model.net.model_channels=8", "loss.kl_weight=0.5"])
    model, obj = build_model(cfg), objective_from_config(cfg)
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    got = obj(model, {"x": x, "class_labels": torch.zeros(4, dtype=torch.long)},
              torch.Generator().manual_seed(0))
    mse, kl = obj.loss.terms(model, x, torch.Generator().manual_seed(0))
    assert torch.allclose(got, (mse + 0.5 * kl).mean())
    assert float(kl.detach().mean()) > 0


@pytest.mark.parametrize("task,loss", [("vae", "edm"), ("latent", "vae"), ("diffusion", "vae")])
def test_task_and_loss_must_agree(task, loss):
    with pytest.raises(ConfigError):
        load_config("configs/tiny.yaml", [f"model.task={task}", f"loss.name={loss}", "model.autoencoder=pool"])


def test_latent_needs_an_autoencoder():
    with pytest.raises(ConfigError, match="autoencoder"):
        load_config("configs/tiny.yaml", ["model.task=latent"])


def test_vae_training_lowers_the_loss(vae_run):
    log = [json.loads(line) for line in (vae_run / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    assert load(vae_run).difflab_config.model.task == "vae"


def test_latent_scale_gives_unit_variance_on_the_first_batch(latent_run, vae_run):
    D = load(latent_run)
    scale = float(D.codec.scale)
    assert scale > 0
    # the scale is 1 / std of the first training batch's codes: recompute it from that batch
    cfg = D.difflab_config
    tr = Trainer(load_config("configs/latent_mnist.yaml", [f"out={latent_run}-again", "data.name=synthetic", *TINY,
                                                           f"model.autoencoder={vae_run}", "preset=tiny"]))
    try:
        mean, _ = load(vae_run, ema=False).encode(tr.get_batch(0)["x"])  # the trained weights, not the EMA
    finally:
        tr.close()
    assert scale == pytest.approx(1 / float(mean.std()), rel=1e-5)
    assert model_shape(D) == (4, 7, 7) and output_shape(D) == (1, 28, 28) and model_shape(cfg) == (4, 7, 7)


def test_latent_samples_decode_to_images_and_export_round_trips(latent_run, tmp_path):
    from difflab.latent import export_latent

    D = load(latent_run)
    spec = SamplingSpec(steps=2, seed=3)
    x, labels = sample(D, spec, 4)
    assert x.shape == (4, 1, 28, 28) and float(x.abs().max()) <= 1.0
    assert labels.tolist() == [0, 1, 2, 3]
    dest = export_latent(latent_run, "mnist-latent", dest_root=tmp_path, dtype=torch.float32)
    cfg = json.loads((dest / "config.json").read_text())
    assert cfg["model"]["autoencoder"] is None and cfg["model"]["codec"]["task"] == "vae"
    S = load(dest)  # builds without the VAE run
    assert float(S.codec.scale) == float(D.codec.scale)
    assert torch.equal(sample(S, spec, 4)[0], x)
    # batching does not change a sample
    assert torch.allclose(sample(S, spec.replace(batch_size=1), 4)[0], x, atol=1e-6)


def test_every_sampler_and_cfg_apply_to_latents(latent_run):
    D = load(latent_run)
    for spec in (SamplingSpec(sampler="euler", steps=2), SamplingSpec(sampler="dpmpp_2m", steps=3),
                 SamplingSpec(steps=2, cfg_weight=2.0)):
        x, _ = sample(D, spec, 2)
        assert x.shape == (2, 1, 28, 28) and torch.isfinite(x).all()


def test_shipped_latent_model_samples_through_the_cli(tmp_path):
    from difflab.cli import main

    out = tmp_path / "s.png"
    try:
        main(["sample", "mnist-latent", "--label", "3", "--n", "2", "--seed", "0", "--steps", "4", "--out", str(out)])
    except SystemExit as e:
        assert e.code in (0, None)
    x = torch.from_numpy(__import__("numpy").load(out.with_suffix(".npz"))["samples"])
    assert x.shape[-2:] == (28, 28) and float(x.abs().max()) <= 1.0


class _LatentGauss:
    """The exact denoiser of N(0, I) latents, with a ``decode`` member (a linear map to 'images')."""

    def __init__(self, decode):
        self.decode = decode

    def __call__(self, z, sigma, **cond):
        return z / (1 + torch.as_tensor(sigma, dtype=z.dtype).reshape(-1, *[1] * (z.ndim - 1)) ** 2)


def _pg_delta(D, features=None, kernel="rbf"):
    """D' - D of particle guidance (k_PG = 1) on one group of 6 latents [6, 2, 3, 3] at sigma 1."""
    from difflab.guidance import ParticleGuidance

    z = torch.randn(6, 2, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sigma = torch.ones(6, dtype=torch.float64)
    pg = ParticleGuidance(1.0, kernel=kernel, features=features, schedule="constant")
    return pg.wrap(D)(z, sigma) - D(z, sigma)


def test_pg_feature_kernel_on_decoded_images_sees_only_what_the_decoder_keeps():
    """decode = keep latent channel 0 only: the decoded-image kernel cannot see channel 1, so PG leaves it alone
    (D is diagonal), while the RBF kernel on the latents moves both channels."""
    from difflab.guidance.particle import decoded_features
    from difflab.models import embedding

    D = _LatentGauss(lambda z: z[:, :1])
    on_decoded = _pg_delta(D, decoded_features(D, embedding("pixels")), kernel="feature")
    on_latents = _pg_delta(D)
    assert float(on_decoded[:, 1].abs().max()) == 0.0 and float(on_decoded[:, 0].abs().max()) > 1e-3
    assert float(on_latents[:, 1].abs().max()) > 1e-3


def test_pg_on_images_decoded_by_nearest_upsampling_equals_pg_on_latents():
    """Nearest 2x upsampling scales every squared distance by 4, and the median bandwidth with it: the kernel,
    hence the guidance, is the same as the RBF kernel on the latents."""
    from difflab.guidance.particle import decoded_features
    from difflab.models import embedding

    D = _LatentGauss(lambda z: z.repeat_interleave(2, -1).repeat_interleave(2, -2))
    on_decoded = _pg_delta(D, decoded_features(D, embedding("pixels")), kernel="feature")
    assert torch.allclose(on_decoded, _pg_delta(D), atol=1e-12) and float(on_decoded.abs().max()) > 1e-3
    assert decoded_features(lambda x, s: x, embedding("pixels"))(torch.ones(2, 1, 2, 2)).shape == (2, 4)  # no decode


def test_shipped_latent_model_pg_kernel_on_decoded_images():
    """`--pg-kernel feature` on mnist-latent compares the decoded 28x28 images (pixels, or the digit-features
    embedding of them), with a gradient that reaches the latents through the VAE decoder."""
    from difflab.guidance import ParticleGuidance

    D = load("mnist-latent")
    z = torch.randn(4, *model_shape(D), generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    for features, width in (("pixels", 28 * 28), (None, None)):
        spec = SamplingSpec(steps=3, pg_weight=3.0, pg_kernel="feature", pg_features=features, pg_batch=2)
        (pg,) = [g for g in spec.guidance(D) if isinstance(g, ParticleGuidance)]
        f = pg.features(z)
        assert f.shape[0] == 4 and (width is None or f.shape[1] == width)
        (grad,) = torch.autograd.grad(f.square().sum(), z)
        assert float(grad.abs().max()) > 0
        x, _ = sample(D, spec, 4, cond={"class_labels": torch.tensor([3, 3, 5, 5])})
        assert x.shape == (4, 1, 28, 28) and torch.isfinite(x).all()


def test_unpack_shipped_cascade_round_trips_and_latent_vae_decodes_as_shipped(tmp_path):
    """The stages unpacked from the shipped models rebuild them: exporting the unpacked cascade gives the shipped
    tensors bit for bit, and the unpacked VAE decodes latents exactly as the shipped latent model's codec does."""
    from safetensors.torch import load_file

    from difflab.latent import export_cascade, unpack_shipped
    from difflab.models import resolve

    parts = unpack_shipped("mnist-cascade", tmp_path)
    dest = export_cascade(parts["base"], parts["sr"], "again", aug_sigma=0.2, dest_root=tmp_path)
    a, b = load_file(str(dest / "model.safetensors")), load_file(str(resolve("mnist-cascade") / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    vae = load(unpack_shipped("mnist-latent", tmp_path)["vae"], ema=False)
    D = load("mnist-latent")
    z = torch.randn(2, 4, 7, 7, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(vae.decode(z), D.codec.ae.decode(z).float(), atol=1e-5)
    with pytest.raises(ValueError, match="not a shipped latent model"):
        unpack_shipped("mnist-cond-xs", tmp_path)

"""Build models from configs and load trained runs or shipped reference models by name; the cached classifier
and embedding loaders the evaluation and guidance code share (moved here from difflab.eval.classifier)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from pathlib import Path

import torch

from difflab.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, load_into, read_tensors
from difflab.config import DIFFUSION_TASKS, Config, ConfigError, ModelConfig, from_dict
from difflab.diffusion.precond import make_precond
from difflab.nets.classifier import DigitClassifier
from difflab.nets.latent import LatentDiffusion, PoolCodec, SRCodec, SuperResolution, VAECodec
from difflab.nets.text import ContrastiveModel, TextUNet
from difflab.nets.unet import build_unet
from difflab.nets.vae import AutoEncoder

SHIPPED_DIR = Path(__file__).parent / "models"
SHIPPED = ["mnist-cond", "mnist-uncond", "smmnist-horizontal-0.5", "smmnist-horizontal-0.7",
           "smmnist-horizontal-0.9", "smmnist-circle", "digit-classifier", "digit-features", "mnist-clip",
           "mnist-clip-eval", "mnist-text", "mnist-cond-xs", "mnist-uncond-xs", "mnist-latent", "mnist-cascade"]


def image_resolution(cfg: Config) -> int:
    return cfg.data.size


def build_model(cfg: Config) -> torch.nn.Module:
    """A diffusion denoiser D (a Precond wrapping a U-Net; ``model.net.text`` = {dim, layers}: a text-conditional
    :class:`TextUNet`), a classifier, a contrastive text-image model (``task: clip``), an autoencoder (``vae``), or a
    latent / super-resolution / cascade model (difflab.nets.latent), from the config."""
    m = cfg.model
    if m.task == "clip":
        return ContrastiveModel(sigma_data=m.sigma_data, **m.net)
    if m.task in ("classifier", "noisy_classifier"):
        return DigitClassifier(num_classes=m.num_classes or 10, in_channels=m.channels,
                               noise_conditional=m.task == "noisy_classifier", sigma_data=m.sigma_data,
                               **m.net)
    if m.task == "vae":
        return AutoEncoder(in_channels=m.channels, img_resolution=cfg.data.size, **m.net)
    if m.task in ("latent", "cascade"):
        shape = model_shape(cfg)
        if m.task == "cascade":
            codec = SRCodec(build_model(_with_model(cfg, m.codec)), aug_sigma=m.aug_sigma, size=cfg.data.size)
        elif m.autoencoder == "pool":
            codec = PoolCodec(m.factor, cfg.data.size)
        else:
            codec = VAECodec(_autoencoder(cfg))
        return LatentDiffusion(_denoiser(cfg, shape[0], shape[-1]), codec, shape)
    if m.task == "superres":
        return SuperResolution(_denoiser(cfg, m.channels, cfg.data.size, cond_channels=2 * m.channels), m.factor,
                               m.aug_max)
    return _denoiser(cfg, m.channels * cfg.data.pred_frames, image_resolution(cfg),
                     cond_channels=cfg.data.cond_frames * m.channels)


def _with_model(cfg: Config, section: dict) -> Config:
    """``cfg`` with its model section replaced (a stage of a latent model or cascade)."""
    try:
        return dataclasses.replace(cfg, model=ModelConfig(**section))
    except TypeError as e:
        raise ConfigError(f"model.codec is not a model section: {e}") from None


def _codec_section(cfg: Config) -> dict:
    """The VAE's model section: ``model.codec``, else the config of the ``model.autoencoder`` run."""
    if cfg.model.codec:
        return cfg.model.codec
    return json.loads((resolve(cfg.model.autoencoder) / "config.json").read_text())["model"]


def _autoencoder(cfg: Config) -> AutoEncoder:
    """The first stage of a latent model; with ``model.autoencoder`` a run, its trained weights (not the EMA:
    first stages use none in the LDM code, and a short run's EMA still holds much of the initialisation)."""
    ae = build_model(_with_model(cfg, _codec_section(cfg)))
    if not cfg.model.codec:
        data = load_checkpoint(resolve(cfg.model.autoencoder))
        load_into(ae, data["model"], data["path"] / "model.safetensors", "the autoencoder")
    return ae


def codec_config(cfg: Config) -> dict:
    """A latent model's config as a dict with the VAE's model section copied into ``model.codec`` (so that the
    model builds without the VAE run: shipped models)."""
    d = cfg.to_dict()
    if cfg.model.task == "latent" and cfg.model.autoencoder != "pool":
        d["model"]["codec"], d["model"]["autoencoder"] = _codec_section(cfg), None
    return d


def _denoiser(cfg: Config, channels: int, resolution: int, cond_channels: int = 0) -> torch.nn.Module:
    m = cfg.model
    net_kw = dict(m.net)
    text = net_kw.pop("text", None)
    kw = dict(in_channels=channels, out_channels=channels, cond_channels=cond_channels,
              num_classes=m.num_classes, **net_kw)
    if m.preset != "ntnu":
        kw["img_resolution"] = resolution
    net = build_unet(m.preset, **kw)
    if text is not None:
        net = TextUNet(net, **text)
    if m.precond == "edm":
        return make_precond("edm", net, sigma_data=m.sigma_data, sigma_min=m.sigma_min, sigma_max=m.sigma_max,
                            P_mean=cfg.loss.P_mean, P_std=cfg.loss.P_std)
    if m.precond in ("vp_eps", "v"):
        return make_precond(m.precond, net, T=m.T, beta_schedule=m.beta_schedule)
    return make_precond("ve", net, sigma_min=m.sigma_min, sigma_max=m.sigma_max, sigma_data=m.sigma_data)


_WARNED: set = set()


def _warn_once(msg: str):
    if msg not in _WARNED:
        _WARNED.add(msg)
        print(msg, file=sys.stderr)


def resolve(model: str | Path) -> Path:
    """A run directory, a checkpoint folder, or a shipped model name -> a checkpoint folder."""
    p = Path(model)
    if str(model) in SHIPPED and p.exists() and (SHIPPED_DIR / str(model) / "config.json").exists():
        _warn_once(f"difflab: warning: the local folder {p.resolve()} shadows the shipped model {str(model)!r}; "
                   f"loading the local folder (pass {SHIPPED_DIR / str(model)} for the shipped one)")
    if str(model) in SHIPPED and not p.exists():
        p = SHIPPED_DIR / str(model)
        if not (p / "config.json").exists():
            raise CheckpointError(f"shipped model {model!r} is not included in this installation ({p})")
        return p
    if not p.exists():
        raise CheckpointError(f"{p}: no such run directory, checkpoint or shipped model "
                              f"(shipped: {', '.join(SHIPPED)})")
    if (p / "model.safetensors").exists():
        return p
    ck = latest_checkpoint(p)
    if ck is None:
        raise CheckpointError(f"{p}: no complete checkpoint found under {p / 'checkpoints'}")
    return ck


def load(model: str | Path, ema: bool = True, device="cpu", dtype=torch.float32, compile: bool = False):
    """Load a trained model by run directory, checkpoint folder or shipped name.

    Returns the denoiser ``D(x, sigma, **cond)`` (a Precond in eval mode) or the classifier, with its
    ``config`` (a difflab.config.Config) attached as ``.difflab_config``. ``compile=True`` compiles it in place
    with ``torch.compile`` (``nn.Module.compile``: the state dict keeps its keys): the first call of each batch
    shape pays the compilation (minutes on a small CPU the first time, seconds once torch's cache holds it), later
    calls run faster (docs/benchmarks.md, "torch.compile")."""
    ck = resolve(model)
    data = load_checkpoint(ck)
    try:
        cfg = from_dict(data["config"])
    except ConfigError as e:
        raise CheckpointError(f"{ck / 'config.json'}: incompatible config: {e}") from e
    net = build_model(cfg)
    part = "ema" if (ema and data["ema"] is not None) else "model"
    load_into(net, data[part], ck / f"{part}.safetensors", "the config's network")
    net = net.to(device=device, dtype=dtype).eval()
    net.requires_grad_(False)
    net.difflab_config = cfg
    net.difflab_path = str(ck)
    if compile:
        net.compile()
    return net


def model_shape(D) -> tuple:
    """The per-sample shape ``(C * P, H, W)`` a loaded diffusion model D (or a Config) generates (P predicted
    frames of C channels; P = 1 for images); for a latent model or cascade, the shape of its latents (or
    low-resolution images), which its ``decode`` maps to :func:`output_shape`."""
    cfg = D if isinstance(D, Config) else getattr(D, "difflab_config", None)
    if cfg is None:
        raise ValueError("this denoiser has no difflab_config: load it with difflab.load(...) or give the shape")
    m = cfg.model
    if m.task == "latent" and m.autoencoder != "pool":
        vae = _codec_section(cfg)
        net = {**vae.get("net", {})}
        f = 2 ** (len(net.get("channel_mult", (1, 2, 2))) - 1)
        return (int(net.get("latent_channels", 4)), -(-cfg.data.size // f), -(-cfg.data.size // f))
    if m.task in ("latent", "cascade"):
        f = m.factor if m.task == "latent" else int(m.codec.get("factor", 2))
        return (m.channels, -(-cfg.data.size // f), -(-cfg.data.size // f))
    return output_shape(cfg)


def output_shape(D) -> tuple:
    """The per-sample shape of the images D's samples are (after its ``decode``, for latent models)."""
    cfg = D if isinstance(D, Config) else getattr(D, "difflab_config", None)
    if cfg is None:
        raise ValueError("this denoiser has no difflab_config: load it with difflab.load(...) or give the shape")
    return (cfg.model.channels * cfg.data.pred_frames, cfg.data.size, cfg.data.size)


def num_classes(D) -> int:
    """The number of classes a denoiser is conditioned on (0: unconditional), from the Denoiser protocol's
    optional ``num_classes`` member or the loaded model's config."""
    k = getattr(D, "num_classes", None)
    if k is None:
        cfg = getattr(D, "difflab_config", None)
        k = cfg.model.num_classes if cfg is not None else 0
    return int(k or 0)


# -- cached loaders for evaluation and guidance ------------------------------------------------------------

_CACHE: dict = {}


def load_classifier(model="digit-classifier", device=None):
    """A classifier by shipped name / run directory (cached per process), or a module passed through.
    ``device=None`` loads a named classifier on CUDA when there is one (a module stays where it is)."""
    if isinstance(model, torch.nn.Module):
        return (model if device is None else model.to(device)).eval()
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    key = (str(model), str(device))
    if key not in _CACHE:
        net = load(model, device=device)
        cfg = getattr(net, "difflab_config", None)
        if cfg is not None and cfg.model.task in DIFFUSION_TASKS:
            raise ValueError(f"{model} is a diffusion model, not a classifier")
        _CACHE[key] = net
    return _CACHE[key]


def param_device(model) -> torch.device:
    """The device of a module's first parameter (the CPU for a module without parameters)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def embedding(model="digit-features", device=None):
    """A differentiable ``features(x) -> [B, F]`` for particle guidance's feature kernel (Corso et al. 2023 compare
    particles in a learned embedding, DINO there): the classifier's penultimate embedding of images in [-1, 1].
    Unlike :func:`difflab.eval.classifier.prepare` nothing is clamped, so the gradient reaches every pixel.
    Parameters are frozen. ``model="pixels"``: the flattened pixels themselves (the RBF kernel, e.g. on a latent
    model's decoded images)."""
    if model == "pixels":
        return lambda x: x.flatten(1)
    net = load_classifier(model, device)
    if not hasattr(net, "features"):
        raise ValueError(f"{model}: a feature kernel needs a classifier with a .features(x) embedding")
    net.requires_grad_(False)

    def features(x: torch.Tensor) -> torch.Tensor:
        x = x[:, None] if x.ndim == 3 else x
        return net.features(x.to(param_device(net), torch.float32)).flatten(1).to(x.device)

    return features


def model_id(model) -> str:
    """A short identity for caches: the shipped/run name plus a hash of the weights."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().float().numpy().tobytes())
    path = getattr(model, "difflab_path", None)
    name = Path(path).name if path else type(model).__name__.lower()
    if name.startswith("ckpt-") and path:
        name = Path(path).parent.parent.name + "-" + name
    return f"{name}-{h.hexdigest()[:10]}"


__all__ = ["SHIPPED", "build_model", "codec_config", "embedding", "load", "load_classifier", "model_id", "model_shape",
           "num_classes", "output_shape", "param_device", "read_tensors", "resolve"]

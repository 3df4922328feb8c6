"""Build models from configs and load trained runs or shipped reference models by name."""

from __future__ import annotations

from pathlib import Path

import torch

from difflab.config import Config, ConfigError, from_dict
from difflab.diffusion.precond import make_precond
from difflab.nets.classifier import DigitClassifier
from difflab.nets.unet import build_unet
from difflab.training.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, read_tensors

SHIPPED_DIR = Path(__file__).parent / "models"
SHIPPED = ["mnist-cond", "mnist-uncond", "smmnist-horizontal-0.5", "smmnist-horizontal-0.7",
           "smmnist-horizontal-0.9", "smmnist-circle", "digit-classifier", "digit-features"]


def image_resolution(cfg: Config) -> int:
    return cfg.data.size


def build_model(cfg: Config) -> torch.nn.Module:
    """A diffusion denoiser D (a Precond wrapping a U-Net) or a classifier, from the config."""
    m = cfg.model
    if m.task in ("classifier", "noisy_classifier"):
        return DigitClassifier(num_classes=m.num_classes or 10, in_channels=m.channels,
                               noise_conditional=m.task == "noisy_classifier", sigma_data=m.sigma_data,
                               **m.net)
    cond_channels = cfg.data.cond_frames * m.channels
    out_channels = m.channels * cfg.data.pred_frames
    kw = dict(in_channels=out_channels, out_channels=out_channels, cond_channels=cond_channels,
              num_classes=m.num_classes, **m.net)
    if m.preset != "ntnu":
        kw["img_resolution"] = image_resolution(cfg)
    net = build_unet(m.preset, **kw)
    if m.precond == "edm":
        return make_precond("edm", net, sigma_data=m.sigma_data, sigma_min=m.sigma_min, sigma_max=m.sigma_max,
                            P_mean=cfg.loss.P_mean, P_std=cfg.loss.P_std)
    if m.precond in ("vp_eps", "v"):
        return make_precond(m.precond, net, T=m.T, beta_schedule=m.beta_schedule)
    return make_precond("ve", net, sigma_min=m.sigma_min, sigma_max=m.sigma_max, sigma_data=m.sigma_data)


def resolve(model: str | Path) -> Path:
    """A run directory, a checkpoint folder, or a shipped model name -> a checkpoint folder."""
    p = Path(model)
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
    state = data["ema"] if (ema and data["ema"] is not None) else data["model"]
    state = {k: v.float() for k, v in state.items()}
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{ck}: weights do not match the config's network: {str(e)[:300]}") from e
    net = net.to(device=device, dtype=dtype).eval()
    net.requires_grad_(False)
    net.difflab_config = cfg
    net.difflab_path = str(ck)
    if compile:
        net.compile()
    return net


def model_shape(D) -> tuple:
    """The per-sample shape ``(C * P, H, W)`` a loaded diffusion model D generates (P predicted frames of C
    channels; P = 1 for images)."""
    cfg = getattr(D, "difflab_config", None)
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


__all__ = ["SHIPPED", "build_model", "load", "model_shape", "num_classes", "read_tensors", "resolve"]

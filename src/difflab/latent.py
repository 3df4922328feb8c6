"""Latent diffusion and cascades as shipped models, and the autoencoder's reconstruction report.

- :func:`export_latent` ships a ``model.task: latent`` run (its denoiser, the frozen VAE and the latent scale
  factor in one safetensors file; the VAE's model section copied into ``model.codec`` so the model builds without
  the VAE run);
- :func:`export_cascade` composes a low-resolution base run (``task: latent``, ``autoencoder: pool``) and a
  super-resolution run (``task: superres``) into one ``task: cascade`` model, with the conditioning
  augmentation level used at sampling (``model.aug_sigma``) recorded in its config;
- :func:`unpack_shipped` is their inverse: a shipped latent model's VAE, or a cascade's base and super-resolution
  stages, as weight folders that ``train.init_from`` (or ``model.autoencoder``) accepts, so that training can
  continue from shipped weights when the runs behind them are gone;
- :func:`reconstruction_report`: MSE, PSNR and classifier-FID of a VAE's reconstructions of a test set.
The models themselves are difflab.nets.latent; ``difflab.load(NAME)`` builds them (difflab.models.build_model).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from difflab.checkpoint import load_checkpoint, save_checkpoint
from difflab.config import from_dict
from difflab.export import export_shipped
from difflab.models import codec_config, load, resolve


def _rewrite(dest: Path, config: dict, extra_state: dict | None = None):
    """Replace a shipped folder's config (and add tensors to its weights, keeping the metadata)."""
    if extra_state:
        from safetensors import safe_open

        with safe_open(str(dest / "model.safetensors"), "pt") as f:
            meta = f.metadata()
        state = {**load_file(str(dest / "model.safetensors")), **extra_state}
        save_file(state, str(dest / "model.safetensors"), metadata=meta)
    config["out"] = dest.name
    (dest / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    return dest


def export_latent(run_dir, name: str = "mnist-latent", *, dest_root=None, dtype=torch.float16) -> Path:
    """Ship a latent-diffusion run (its EMA weights, with the VAE and the scale factor)."""
    dest = export_shipped(run_dir, name, dest_root=dest_root, dtype=dtype)
    cfg = from_dict(json.loads((resolve(run_dir) / "config.json").read_text()))
    return _rewrite(dest, codec_config(cfg))


def export_cascade(base_run, sr_run, name: str = "mnist-cascade", *, aug_sigma: float = 0.0, dest_root=None,
                   dtype=torch.float16) -> Path:
    """Ship a cascade: the base run's EMA denoiser and the super-resolution run's EMA weights (as ``codec.sr.*``);
    ``aug_sigma`` is the conditioning augmentation level at sampling (``model.aug_sigma``)."""
    base = load_checkpoint(resolve(base_run))
    sr = load_checkpoint(resolve(sr_run))
    if base["config"]["model"]["task"] != "latent" or base["config"]["model"]["autoencoder"] != "pool":
        raise ValueError(f"{base_run}: not a low-resolution base run (model.task latent, model.autoencoder pool)")
    if sr["config"]["model"]["task"] != "superres":
        raise ValueError(f"{sr_run}: not a super-resolution run (model.task superres)")
    dest = export_shipped(base_run, name, dest_root=dest_root, dtype=dtype)
    config = dict(base["config"])
    config["model"] = {**config["model"], "task": "cascade", "autoencoder": None, "codec": sr["config"]["model"],
                       "aug_sigma": float(aug_sigma)}
    state = sr["ema"] if sr["ema"] is not None else sr["model"]
    extra = {f"codec.sr.{k}": (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    return _rewrite(dest, config, extra)


def _write_stage(dest: Path, config: dict, state: dict) -> Path:
    """A checkpoint folder (difflab.checkpoint.save_checkpoint: config.json, the weights in float32 as both model and
    EMA); refuses to overwrite."""
    if dest.exists():
        raise FileExistsError(f"{dest}: already exists; not overwriting")
    w = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    return save_checkpoint(dest, config={**config, "out": str(dest)}, model=w, ema=w)


def unpack_shipped(name: str, dest_root) -> dict:
    """Split a shipped ``task: latent`` (VAE) or ``task: cascade`` model into its stages' weight folders under
    ``dest_root``: ``{"vae": ...}`` or ``{"base": ..., "sr": ...}`` (float32; the inverse of :func:`export_latent` /
    :func:`export_cascade` up to the weights' dtype). A latent model is itself a valid ``init_from``; its VAE
    folder is what ``model.autoencoder`` names."""
    src = resolve(name)
    cfg = json.loads((src / "config.json").read_text())
    w = load_file(str(src / "model.safetensors"))
    m, root = cfg["model"], Path(dest_root)

    def stage(prefix):
        return {k[len(prefix):]: v for k, v in w.items() if k.startswith(prefix)}

    if m["task"] == "latent" and m.get("codec"):
        vae = {**cfg, "model": m["codec"], "loss": {**cfg["loss"], "name": "vae"}}
        return {"vae": _write_stage(root / f"{src.name}-vae", vae, stage("codec.ae."))}
    if m["task"] == "cascade":
        base = {**cfg, "model": {**m, "task": "latent", "autoencoder": "pool", "codec": {}, "aug_sigma": 0.0}}
        return {"base": _write_stage(root / f"{src.name}-base", base,
                                     {k: v for k, v in w.items() if not k.startswith("codec.")}),
                "sr": _write_stage(root / f"{src.name}-sr", {**cfg, "model": m["codec"]}, stage("codec.sr."))}
    raise ValueError(f"{name}: not a shipped latent model with a VAE or a cascade (model.task {m['task']!r})")


@torch.no_grad()
def reconstruction_report(vae, data: str = "mnist:test", n: int = 10000, batch_size: int = 500,
                          fid: bool = True, classifier: str = "digit-classifier") -> dict:
    """Reconstruction quality of an autoencoder (a run directory or loaded module) on the first ``n`` images of
    ``data``: per-pixel MSE in [-1, 1], PSNR = 10 log10(2^2 / MSE) (peak-to-peak range 2), and the
    classifier-FID of the reconstructions against the same images in ``classifier``'s features (difflab.eval.fid;
    a Fashion-MNIST classifier run for Fashion-MNIST)."""
    from difflab.data import get_dataset
    from difflab.eval.run import evaluate_images

    ae = load(vae, ema=False) if isinstance(vae, (str, Path)) else vae  # the weights a latent model uses
    x, _ = get_dataset(data, limit=n).as_tensors()
    rec = torch.cat([ae(x[i:i + batch_size])[0].clamp(-1, 1) for i in range(0, x.shape[0], batch_size)])
    mse = float(((rec - x) ** 2).mean())
    out = {"n": int(x.shape[0]), "mse": mse, "psnr_db": 10 * math.log10(4.0 / mse)}
    if fid:
        real = evaluate_images(x, "fid_classifier", ref=data, classifier=classifier)["fid_classifier"]
        out["fid_classifier"] = evaluate_images(rec, "fid_classifier", ref=data, classifier=classifier)["fid_classifier"]
        out["fid_classifier_of_originals"] = real
    return out


__all__ = ["export_cascade", "export_latent", "reconstruction_report", "unpack_shipped"]

"""Handlers behind the CLI (difflab.cli parses; these do the work)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from difflab.cli import write_json


def data_fetch(args):
    from difflab.data.mnist import fetch

    path = fetch(args.name, cache_dir=args.cache_dir)
    print(f"{args.name}: verified files in {path}")


def train(args):
    from difflab.config import load_config
    from difflab.training.launcher import train as run_train

    cfg = load_config(args.config, args.overrides)
    summary = run_train(cfg, resume=args.resume, overwrite=getattr(args, "overwrite", False))
    if summary is not None:
        print(json.dumps(summary, indent=2))


# -- sampling set-up shared by sample / eval / sweep ------------------------------------------------------

def model_shape(D) -> tuple:
    cfg = D.difflab_config
    return (cfg.model.channels * cfg.data.pred_frames, cfg.data.size, cfg.data.size)


def build_guidance(args, D):
    """Guidance objects from CLI flags (CFG, particle guidance)."""
    guidance = []
    if getattr(args, "cfg_weight", None) is not None:
        from difflab.guidance import ClassifierFreeGuidance

        kw = {"convention": args.cfg_convention} if args.cfg_convention else {}
        guidance.append(ClassifierFreeGuidance(weight=args.cfg_weight, **kw))
    if getattr(args, "cg_model", None):
        import difflab
        from difflab.guidance import ClassifierGuidance

        C = difflab.load(args.cg_model, device=getattr(args, "device", "cpu"))
        if getattr(C.difflab_config.model, "task", "") != "noisy_classifier":
            raise ValueError(f"--cg-model {args.cg_model} is not a noise-conditional classifier "
                             "(train one with configs/noisy_classifier.yaml)")
        guidance.append(ClassifierGuidance(C, scale=args.cg_scale, labels=getattr(args, "label", None)))
    if getattr(args, "pg_weight", 0.0):
        from difflab.guidance import ParticleGuidance

        features = None
        if args.pg_kernel == "feature":
            from difflab.eval.classifier import embedding

            features = embedding(getattr(args, "pg_features", None) or "digit-features",
                                 device=getattr(args, "device", None))
        elif getattr(args, "pg_features", None):
            raise ValueError("--pg-features needs --pg-kernel feature")
        guidance.append(ParticleGuidance(weight=args.pg_weight, kernel=args.pg_kernel, variant=args.pg_variant,
                                         group_size=args.pg_batch, features=features))
    return guidance or None


def sampler_options(args) -> dict:
    """Options for SAMPLERS[name] from CLI flags: churn for the EDM samplers, eta for DDIM."""
    from difflab.sampling import CHURN_SAMPLERS

    opts = {}
    if args.sampler in CHURN_SAMPLERS:
        opts.update(S_churn=args.S_churn, S_noise=args.S_noise, S_tmin=args.S_tmin, S_tmax=args.S_tmax)
    elif args.S_churn:
        raise ValueError(f"--S-churn applies to the heun and euler samplers, not {args.sampler!r}")
    if args.eta is not None:
        if args.sampler != "ddim":
            raise ValueError("--eta applies to the ddim sampler only")
        opts["eta"] = args.eta
    return opts


def sampling_kwargs(args, D) -> dict:
    """Keyword arguments for difflab.sampling.generate from CLI flags and the model's config."""
    cfg = D.difflab_config
    return dict(sampler=args.sampler, steps=args.steps, grid=args.grid, rho=args.rho,
                sigma_min=args.sigma_min if args.sigma_min is not None else cfg.model.sigma_min,
                sigma_max=args.sigma_max if args.sigma_max is not None else cfg.model.sigma_max,
                init_noise_scale=args.init_noise_scale, guidance=build_guidance(args, D),
                **sampler_options(args))


def class_labels_for(D, n, label=None, device="cpu"):
    k = D.difflab_config.model.num_classes
    if not k:  # unconditional: --label only steers classifier guidance (--cg-model)
        return None
    if label is not None:
        if not 0 <= label < k:
            raise ValueError(f"--label must be in [0, {k - 1}], got {label}")
        return torch.full((n,), label, dtype=torch.long, device=device)
    return torch.arange(n, device=device) % k


def sample(args):
    import difflab
    from difflab.sampling.generate import generate
    from difflab.viz.grids import save_grid

    D = difflab.load(args.model, device=args.device, compile=getattr(args, "compile", False))
    cfg = D.difflab_config
    if cfg.model.task != "diffusion":
        raise ValueError(f"{args.model} is a classifier, not a diffusion model")
    out = Path(args.out)
    if cfg.data.cond_frames:
        from difflab.eval.motion import sample_next_frames

        return sample_next_frames(D, args)
    cond = {}
    labels = class_labels_for(D, args.n, args.label, args.device)
    if labels is not None:
        cond["class_labels"] = labels
    recorder = None
    if args.trajectory:
        from difflab.viz.trajectory import TrajectoryRecorder

        recorder = TrajectoryRecorder(indices=list(range(min(args.n, 8))))
    t0 = time.time()
    x = generate(D, args.n, model_shape(D), seed=args.seed, cond=cond, callback=recorder,
                 batch_size=args.batch_size, device=args.device, **sampling_kwargs(args, D))
    wall = time.time() - t0
    nrow = args.nrow or (cfg.model.num_classes if labels is not None and args.label is None else None)
    save_grid(x[:, : cfg.model.channels], out, nrow=nrow)
    npz = out.with_suffix(".npz")
    np.savez_compressed(npz, samples=x.cpu().numpy().astype(np.float32),
                        labels=(labels.cpu().numpy() if labels is not None else np.zeros(0)),
                        seed=args.seed, index=np.arange(args.n))
    if recorder is not None:
        from difflab.viz.trajectory import save_trajectory

        tdir = Path(args.trajectory)
        tdir.mkdir(parents=True, exist_ok=True)
        save_trajectory(recorder.frames, tdir / "trajectory.png", tdir / "trajectory.gif")
        print(f"trajectory: {tdir / 'trajectory.png'}, {tdir / 'trajectory.gif'}")
    print(f"wrote {out} and {npz} ({args.n} samples, {args.sampler}, {args.steps} steps, {wall:.1f}s)")


def eval(args):  # noqa: A001 - the CLI verb
    from difflab.eval.run import run_eval

    res = run_eval(args)
    write_json(res, args.json)


def eval_prior(args):
    from difflab.eval.motion import run_prior

    write_json(run_prior(args), args.json)


def eval_motion(args):
    from difflab.eval.motion import run_motion

    write_json(run_motion(args), args.json)


def eval_likelihood(args):
    from difflab.eval.likelihood import run_likelihood

    write_json(run_likelihood(args), args.json)


def sweep(args):
    from difflab.eval.sweep import run_sweep

    run_sweep(args)


def toy_gmm(args):
    from difflab.guidance.toy import run_cli

    run_cli(args)


def demo(args):
    from difflab.demo import run_demo

    run_demo(args)


def reproduce(args):
    from difflab.reproduce import run_reproduce

    run_reproduce(args)

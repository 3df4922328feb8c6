"""Handlers behind the CLI: difflab.cli parses flags (and builds the SamplingSpec); these call the library and
the experiments with plain values and print or write what they return. Nothing below this module sees argv."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from difflab.config import DIFFUSION_TASKS
from difflab.recipe import SamplingSpec
from difflab.utils import check_output_path, write_json


def data_fetch(args):
    from difflab.data.mnist import fetch

    path = fetch(args.name, cache_dir=args.cache_dir)
    print(f"{args.name}: verified files in {path}")


def data_verify(args):
    from difflab.data.cache import verify_cached

    verify_cached(args.name, cache_dir=args.cache_dir, report=print)


def train(args):
    from difflab import progress
    from difflab.config import load_config
    from difflab.training.launcher import train as run_train

    cfg = load_config(args.config, args.overrides)
    if not progress.default():  # no bar off a terminal or with --quiet (config.json records it)
        cfg.train.progress = False
    summary = run_train(cfg, resume=args.resume, overwrite=getattr(args, "overwrite", False))
    if summary is not None:
        print(json.dumps(summary, indent=2))


def sample(args, spec: SamplingSpec):
    from difflab.models import load
    from difflab.recipe import sample as draw
    from difflab.viz.grids import save_grid

    out = check_output_path(args.out, "--out", (".png", ".jpg", ".jpeg"))
    if args.trajectory and Path(args.trajectory).exists() and not Path(args.trajectory).is_dir():
        raise ValueError(f"--trajectory {args.trajectory}: is a file; give a folder")
    D = load(args.model, device=spec.device, compile=spec.compile)
    cfg = D.difflab_config
    if cfg.model.task not in DIFFUSION_TASKS:
        raise ValueError(f"{args.model} is a {cfg.model.task}, not a diffusion model")
    if cfg.data.cond_frames:
        from difflab.experiments.motion import sample_next_frames

        return sample_next_frames(D, spec, args.cond_seq, args.n, args.rollout, out)
    recorder = None
    if args.trajectory:
        from difflab.viz.trajectory import TrajectoryRecorder

        recorder = TrajectoryRecorder(indices=list(range(min(args.n, 8))))
    t0 = time.time()
    known = spec.inpaint_cond(D, args.n)[0] if spec.inpaint else {}  # loaded once: sampled from, and saved
    x, labels = draw(D, spec, args.n, cond=known, callback=recorder)
    wall = time.time() - t0
    nrow = args.nrow or (cfg.model.num_classes if labels is not None and spec.label is None else None)
    save_grid(x[:, : cfg.model.channels], out, nrow=nrow)
    npz = out.with_suffix(".npz")
    extra = {}
    if spec.inpaint:  # the images completed and the region regenerated, beside the completions
        extra = {"originals": known["inpaint_x0"].cpu().numpy(), "regenerated": (1 - known["inpaint_keep"]).cpu().numpy(),
                 "inpaint": spec.inpaint, "mask": spec.inpaint_mask, "offset": spec.inpaint_offset}
    np.savez_compressed(npz, samples=x.cpu().numpy().astype(np.float32),
                        labels=(labels.cpu().numpy() if labels is not None else np.zeros(0)),
                        seed=spec.seed, index=np.arange(args.n), **extra)
    if recorder is not None:
        from difflab.viz.trajectory import save_trajectory

        tdir = Path(args.trajectory)
        tdir.mkdir(parents=True, exist_ok=True)
        save_trajectory(recorder.frames, tdir / "trajectory.png", tdir / "trajectory.gif")
        print(f"trajectory: {tdir / 'trajectory.png'}, {tdir / 'trajectory.gif'}")
    steps = len(spec.grid) - 1 if isinstance(spec.grid, tuple) else spec.steps
    print(f"wrote {out} and {npz} ({args.n} samples, {spec.sampler}, {steps} steps, {wall:.1f}s)")


def eval(args, spec: SamplingSpec):  # noqa: A001 - the CLI verb
    from difflab.eval.run import run_eval

    if args.json:
        check_output_path(args.json, "--json")
    res = run_eval(args.model, spec, args.metrics, n=args.n, real=args.real, ref=args.ref, mask=args.mask)
    if res is not None:  # None on the ranks other than 0 of a sharded (torchrun) eval
        write_json(res, args.json)


def eval_prior(args, spec: SamplingSpec):
    from difflab.experiments.motion import run_prior

    if args.json:
        check_output_path(args.json, "--json")
    write_json(run_prior(args.model, spec, args.sequences, args.samples, p_right=args.p_right), args.json)


def eval_motion(args, spec: SamplingSpec):
    from difflab.experiments.motion import run_motion

    if args.json:
        check_output_path(args.json, "--json")
    write_json(run_motion(args.model, spec, args.sequences, args.samples, out=args.out), args.json)


def eval_likelihood(args):
    from difflab.eval.likelihood import run_likelihood

    if args.json:
        check_output_path(args.json, "--json")
    write_json(run_likelihood(args.model, n=args.n, data=args.data, seed=args.seed, hutchinson=args.hutchinson,
                              solver=args.solver, rtol=args.rtol, atol=args.atol, batch_size=args.batch_size), args.json)


def schedule(args):
    from difflab.models import load, model_shape
    from difflab.sampling.optimize import optimize_grid

    out = check_output_path(args.out, "--out", (".json",))
    D = load(args.model, device=args.device)
    cfg = D.difflab_config
    if cfg.model.task != "diffusion" or cfg.data.cond_frames:
        raise ValueError(f"{args.model}: difflab schedule needs an image diffusion model")
    cond = SamplingSpec(device=args.device).class_labels(D, args.batch)
    res = optimize_grid(D, args.nfe, model_shape(D), sigma_min=cfg.model.sigma_min, sigma_max=cfg.model.sigma_max,
                        fine=args.fine, batch=args.batch, seed=args.seed, device=args.device,
                        cond={"class_labels": cond} if cond is not None else None)
    res["model"] = str(args.model)
    write_json(res, out, sort_keys=False)
    karras = f", Karras {res['cost_karras']:.4g}" if res["cost_karras"] is not None else ""
    print(f"wrote {out}: {args.nfe} steps, sigmas {', '.join(f'{v:.3g}' for v in res['sigmas'])} "
          f"(summed Euler error {res['cost']:.4g}{karras})")


def sweep(args):
    from difflab.eval.sweep import run_sweep
    from difflab.experiments.motion import SWEEP_RUNNERS

    run_sweep(args.config, args.overrides, out=args.out, shard=args.shard, runners=SWEEP_RUNNERS)


def toy_gmm(args):
    from difflab.experiments.ring import run_ring

    run_ring(args.out, runs=args.runs, seed=args.seed, quick=args.quick)


def demo(args):
    from difflab.experiments.demo import run_demo

    run_demo(args.out, train=args.train, budget_s=args.budget_s)


def reproduce(args):
    from difflab.experiments.reproduce import run_reproduce

    run_reproduce(args.name, out=args.out, quick=args.quick, device=args.device, n=args.n, models=args.models,
                  metrics=args.metrics, rows=args.rows)


def report(args):
    from difflab.viz.report import build_report

    samplers = tuple(s.strip() for s in args.samplers.split(",") if s.strip())
    path = build_report(args.source, args.out, samplers=samplers, n=args.n, device=args.device)
    print(f"wrote {path}")


def configs(args):
    from difflab.config import presets, read_yaml

    for name, path in presets().items():
        first = next((ln[1:].strip() for ln in path.read_text().splitlines() if ln.startswith("#")), "")
        kind = "sweep" if "grid" in (read_yaml(path) or {}) else "train"
        print(f"{name:20s} {kind:6s} {first}")
    print("use: difflab train NAME [key=value ...] | difflab sweep NAME (files: "
          f"{next(iter(presets().values())).parent})")


def export(args):
    from difflab.export import export_diffusers

    dest = export_diffusers(args.run, args.diffusers, ema=not args.raw)
    print(f"wrote {dest} (load it with diffusers.UNet2DModel.from_pretrained({str(dest)!r}))")

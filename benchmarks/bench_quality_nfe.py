"""Sample quality per network evaluation: classifier-feature FID vs NFE, and the frontier plot.

Samplers and step counts (full run):
  DDPM ancestral: 1000 steps; DDIM (eta = 0): 10, 20, 50, 100; EDM Heun: 5 .. 50 steps (NFE = 2 n - 1);
  DPM-Solver++(2M): 5 .. 20 steps.
Grids: a discrete-time model (VPEpsPrecond / VPrecond, it has ``T``) uses its own DDPM sub-sequences
('ddpm_leading') for DDPM and DDIM; an EDM / VE model has no discrete schedule, so DDPM and DDIM run on the Karras
grid of its [sigma_min, sigma_max] (ancestral / deterministic updates on that grid). Heun and DPM-Solver++ always use
the Karras grid (rho = 7). Class-conditional models get balanced labels (k mod 10), no guidance.

FID: ``difflab.eval.fid.compute_fid`` on the digit classifier's features (``--extractor classifier``; fast, only
comparable with itself) against the MNIST test set. FID is biased upwards at small n: compare numbers with the same
``--n`` only. The frontier is the lower envelope: the best FID reachable with at most a given NFE.

    python benchmarks/bench_quality_nfe.py [--model mnist-cond] [--n 5000] [--quick] [--json OUT] [--png OUT]
        [--device cuda] [--inception] [--deadline-s S]

``--inception`` adds the standard (TF-Inception) FID of every configuration; ``--deadline-s`` stops starting new
configurations after S seconds (the JSON is rewritten after each one, so a stopped run keeps what it measured).

``--quick``: 64 samples and one step count per sampler (DDPM 20, DDIM 10, Heun 5, DPM-Solver++ 5): checks the
pipeline end to end, the FIDs are not meaningful. The full run takes hours on a CPU (DDPM alone is 1000 NFE per
batch); run it on a GPU or with a smaller ``--n``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

# DDPM-1000 last: it costs as much as all the others together (and --deadline-s may skip it)
FULL = {"ddim": [10, 20, 50, 100], "heun": [5, 8, 12, 18, 25, 35, 50], "dpmpp_2m": [5, 8, 10, 15, 20], "ddpm": [1000]}
QUICK = {"ddpm": [20], "ddim": [10], "heun": [5], "dpmpp_2m": [5]}
LABELS = {"ddpm": "DDPM (ancestral)", "ddim": "DDIM", "heun": "EDM Heun", "dpmpp_2m": "DPM-Solver++(2M)"}


TWO_STAGE = ("heun", "dpm_2", "dpmpp_2s_ancestral", "dpmpp_sde", "ode_heun")  # 2 evaluations a step, 1 in the last


def nfe_of(sampler: str, steps: int) -> int:
    return 2 * steps - 1 if sampler in TWO_STAGE else steps


def steps_for(sampler: str, nfe: int) -> int:
    """The most steps whose NFE does not exceed ``nfe``."""
    return max(1, (nfe + 1) // 2) if sampler in TWO_STAGE else nfe


def load_model(name: str):
    import difflab
    from difflab.training.checkpoint import CheckpointError

    try:
        return difflab.load(name)
    except (CheckpointError, FileNotFoundError) as first:
        run = common.ROOT / "runs" / name
        if run.exists():
            return difflab.load(str(run))
        raise SystemExit(f"bench_quality_nfe: cannot load model {name!r}: {first}") from None


def fid_module():
    try:
        from difflab.eval import fid
    except ImportError as e:
        raise SystemExit(f"bench_quality_nfe: difflab.eval.fid is not available ({e}); the FID-vs-NFE frontier needs "
                         "the evaluation suite (difflab.eval.fid.compute_fid)") from None
    if not hasattr(fid, "compute_fid"):
        raise SystemExit("bench_quality_nfe: difflab.eval.fid has no compute_fid(images, extractor=..., ref=...)")
    return fid


def load_extractor(name: str, classifier: str):
    """The feature extractor, loaded before any sampling so a missing classifier fails fast and clearly."""
    try:
        from difflab.eval.features import get_extractor
    except ImportError as e:
        raise SystemExit(f"bench_quality_nfe: difflab.eval.features is not available ({e})") from None
    candidates = [classifier]
    if (common.ROOT / "runs" / classifier).exists():
        candidates.append(str(common.ROOT / "runs" / classifier))
    errors = []
    for c in candidates:
        try:
            return get_extractor(name, classifier=c) if name in ("classifier", "fid_classifier", "clf") \
                else get_extractor(name)
        except Exception as e:  # noqa: BLE001 - report every attempt
            errors.append(f"{c}: {type(e).__name__}: {e}")
    raise SystemExit("bench_quality_nfe: cannot load the feature extractor for FID (" + "; ".join(errors) + "). "
                     "Train or ship the digit classifier first (difflab train configs/digit_classifier.yaml), "
                     "or pass --classifier RUN_DIR / --extractor inception.")


def frontier(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """Lower envelope: for each NFE (ascending), the best FID reachable with at most that many evaluations."""
    out, best = [], float("inf")
    for nfe, f in sorted(points):
        if f < best:
            best = f
            out.append((nfe, f))
    return out


def plot(results: list[dict], front: list, path: Path, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for s in LABELS:
        pts = sorted((r["nfe"], r["fid"]) for r in results if r["sampler"] == s)
        if pts:
            ax.plot(*zip(*pts, strict=True), "o-", label=LABELS[s])
    if front:
        ax.step(*zip(*front, strict=True), where="post", color="k", lw=1, ls="--", label="frontier")
    ax.set_xscale("log")
    ax.set_xlabel("network evaluations (NFE)")
    ax.set_ylabel("FID (classifier features)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = common.parser("bench_quality_nfe", __doc__)
    p.add_argument("--model", default="mnist-cond", help="a run directory or a shipped model name")
    p.add_argument("--n", type=int, default=None, help="samples per configuration (default 5000; --quick 64)")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--extractor", default="classifier", help="'classifier' (digit classifier features) or 'inception'")
    p.add_argument("--classifier", default="digit-classifier", help="classifier model name or run directory")
    p.add_argument("--ref", default="mnist:test")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--png", default=None, help="frontier plot (default: next to the JSON)")
    p.add_argument("--inception", action="store_true", help="also the standard Inception FID per configuration")
    p.add_argument("--deadline-s", type=float, default=None, help="start no new configuration after this")
    p.add_argument("--samplers", default=None, help="comma list: run only these samplers of the plan, in this order "
                   "(with --nfe: any names of difflab.sampling.SAMPLERS)")
    p.add_argument("--nfe", default=None, help="comma list of NFE budgets (e.g. 5,10,20): each sampler of --samplers runs "
                   "with the most steps within each budget, on --grid")
    p.add_argument("--grid", default="karras", help="with --nfe: the sigma grid (karras, loguniform, polyexponential, "
                   "or a .json file from `difflab schedule`, which fixes the steps)")
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    common.setup(args)
    fid = fid_module()
    extractor = load_extractor(args.extractor, args.classifier)
    from difflab.sampling import generate

    D = load_model(args.model).to(args.device)
    n = args.n or (64 if args.quick else 5000)
    plan = QUICK if args.quick else FULL
    if args.nfe:
        budgets = [int(v) for v in args.nfe.split(",")]
        plan = {name: sorted({steps_for(name, b) for b in budgets}) for name in (args.samplers or "heun").split(",")}
    elif args.samplers:
        wanted = args.samplers.split(",")
        unknown = sorted(set(wanted) - set(plan))
        if unknown:
            raise SystemExit(f"bench_quality_nfe: unknown sampler(s) {unknown}; the plan has {sorted(plan)}")
        plan = {k: plan[k] for k in dict.fromkeys(wanted)}  # in the order given (the most wanted first)
    discrete = hasattr(D, "T")
    cfg = getattr(D, "difflab_config", None)
    shape = (cfg.model.channels, cfg.data.size, cfg.data.size) if cfg is not None else (1, 28, 28)
    num_classes = int(getattr(D, "num_classes", 0) or 0)
    cond = {"class_labels": torch.arange(n, device=args.device) % num_classes} if num_classes else {}
    out = {"benchmark": "bench_quality_nfe", "quick": args.quick, "machine": common.machine(), "model": args.model,
           "model_path": getattr(D, "difflab_path", None), "n": n, "extractor": getattr(extractor, "name", args.extractor),
           "ref": args.ref,
           "seed": args.seed, "discrete_time_model": discrete, "plan": plan, "device": str(args.device),
           "results": []}
    for sampler, step_list in plan.items():
        for steps in step_list:
            if args.deadline_s is not None and time.perf_counter() - t_start > args.deadline_s:
                print(f"deadline reached: skipping {sampler} {steps}", flush=True)
                out.setdefault("skipped", []).append({"sampler": sampler, "steps": steps})
                continue
            grid = ("ddpm_leading" if discrete else "karras") if sampler in ("ddpm", "ddim") else "karras"
            if args.nfe:
                grid = args.grid
                if grid.endswith(".json"):  # a grid file from `difflab schedule` (its own number of steps)
                    from difflab.recipe import read_grid

                    grid = list(read_grid(grid))
                    steps = len(grid) - 1
            t0 = time.perf_counter()
            x = generate(D, n, shape, sampler=sampler, steps=steps, grid=grid, sigma_min=D.sigma_min,
                         sigma_max=D.sigma_max, seed=args.seed, cond=cond, batch_size=args.batch_size,
                         device=args.device)
            common.sync()
            t_sample = time.perf_counter() - t0
            x = x.clamp(-1, 1).cpu()
            r = fid.compute_fid(x, extractor=extractor, ref=args.ref)
            row = {"sampler": sampler, "steps": steps, "nfe": nfe_of(sampler, steps),
                   "grid": args.grid if isinstance(grid, list) else grid, "fid": r["fid"],
                   "n": r.get("n", n), "n_ref": r.get("n_ref"), "sample_s": t_sample, "load1": common.loadavg()[0]}
            if args.inception:
                ri = fid.compute_fid(x, extractor="inception", ref=args.ref)
                row.update(fid_inception=ri["fid"], fid_inception_n_ref=ri.get("n_ref"))
            out["results"].append(row)
            print(row, flush=True)
            if args.json:
                common.write_json(args.json, out)
    front = frontier([(r["nfe"], r["fid"]) for r in out["results"]])
    if args.inception:
        out["frontier_inception"] = [{"nfe": a, "fid_inception": b} for a, b in
                                     frontier([(r["nfe"], r["fid_inception"]) for r in out["results"]])]
    out["frontier"] = [{"nfe": a, "fid": b} for a, b in front]
    png = Path(args.png) if args.png else Path(args.json).with_suffix(".png")
    plot(out["results"], front, png, f"{args.model}: FID ({args.extractor} features, n={n}) vs NFE")
    out["png"] = str(png)
    cols = ["sampler", "steps", "nfe", "grid", "fid"] + (["fid_inception"] if args.inception else []) + ["sample_s"]
    return common.finish(args, out, out["results"], f"FID vs NFE, {args.model}, n={n}", cols)


if __name__ == "__main__":
    sys.exit(main())

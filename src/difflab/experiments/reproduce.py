"""`difflab reproduce NAME`: one command per published table or figure we build on.

Each experiment calls the same library functions as the CLI commands a user would run (``difflab eval`` /
``eval prior`` with the flags named in each row, so the numbers can be rerun piece by piece), with a
:class:`~difflab.recipe.SamplingSpec` per row, and writes
``results.json`` + ``results.md`` under ``--out`` (default ``outputs/reproduce/NAME``). ``--quick`` runs
a smaller version (fewer sequences / samples); the size used is always recorded next to the numbers.

- ``pg-gmm``: Particle Guidance paper, 2-D ring of 10 Gaussians (modes vs PG weight x noise), exact score.
- ``thesis-modes``: ETH thesis Figure 3.1, distinct digits per batch of 10 for {deterministic, stochastic
  S_churn 0.7} x {no PG, PG k_PG 1}, 22 Heun steps, on ``mnist-uncond`` scored by ``digit-classifier``.
- ``thesis-prior``: ETH thesis Table 4.1, p_hat(right) on ``smmnist-horizontal-{0.9,0.7,0.5}`` for
  deterministic Heun, stochastic (S_churn 0.9) and PG (k_PG 3, B 2), plus the thesis' 0.1 start-noise scale.
- ``thesis-heatmaps``: ETH thesis Figure 3.2, the k_PG x S_churn sweep (configs/sweep_pg_mnist.yaml).
- ``inpainting``: per mask, how often the digit classifier reads the original label in the completion of
  mnist:test digits by ``mnist-uncond`` (Heun, 10 steps; RePaint R = 2 and 5 on the same grid and seed, and Heun 46
  steps at RePaint R5's NFE: ``difflab.experiments.inpaint.VARIANTS``), against the originals and the kept part alone.
- ``ntnu``: NTNU MNIST paper Tables 1-3 on four models trained with configs/ntnu_ddpm.yaml (linear / cosine
  betas x T = 1000 / 4000; ``--models DIR`` holds ``ntnu-{linear,cosine}-T{1000,4000}``, run dirs or exported
  folders): DDPM ancestral over all T steps with CFG w in {0, 0.2, 0.5} ('ntnu' convention,
  (1 + w) eps_c - w eps_u), Inception FID against the MNIST test set and IS with the digit classifier, plus our
  fast samplers at <= 35 network evaluations on the linear T = 1000 model (a CFG step costs 2 evaluations).

- ``diversity``: issue 16's benchmark (:mod:`difflab.experiments.diversity`): every diversity method against
  i.i.d. on exact 2-D mixtures (modes per group, on-mode share, TV of pooled frequencies to the true weights
  with the i.i.d. floor) and on mnist-uncond (modes per 10, classifier-FID, class KL, IS, PRDC, Vendi),
  smmnist-circle (directions per 8 futures, quality score) and mnist-cond per class (Vendi, classifier-FID),
  resumable, with ``frontier.png``; ``--rows c,d`` picks parts (a toys, b mnist-uncond, c circle, d mnist-cond).
- ``thesis-figures``: ETH thesis Figures 3.3 / 5.1 (norm of the PG term against the ODE direction per step, L2 and
  IoU kernels) and 3.1 (UMAP of digit features: i.i.d., ``ortho``, PG), PNGs + results.json
  (:mod:`difflab.experiments.thesis_figures`; needs umap-learn).

``--device cuda`` runs the sampling (and the Inception network) on a GPU; ``--n`` overrides the sample count.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from difflab.eval.run import run_eval
from difflab.experiments.motion import run_prior
from difflab.progress import bar
from difflab.recipe import SamplingSpec
from difflab.utils import write_json

EXPERIMENTS = ("pg-gmm", "thesis-modes", "thesis-prior", "thesis-heatmaps", "ntnu", "diversity", "inpainting",
               "thesis-figures")

THESIS_TABLE_41 = {  # true p(right) -> (deterministic, stochastic S_churn 0.9, PG k_PG 3 B 2)
    "0.9": (0.9944, 0.9598, 0.5), "0.7": (0.7933, 0.7294, 0.5004), "0.5": (0.4168, 0.5253, 0.5006)}
NTNU_TABLES = {"linear T1000 w0.2": (16.19, 9.56), "linear T4000 w0.2": (20.91, 8.68),
               "cosine T1000 w0.2": (26.82, 9.00), "cosine T4000 w0.2": (21.70, 8.73),
               "linear T1000 w0": (21.12, 9.13), "linear T1000 w0.5": (24.67, 9.14)}


def _spec(device: str, batch_size: int, **options) -> SamplingSpec:
    """A row's recipe: the seed 0 of the published runs, ``device`` and a batch size that suits it (a GPU takes
    thousands of small images per call)."""
    return SamplingSpec(seed=0, device=device, batch_size=batch_size if device == "cpu" else 2000, **options)


def thesis_modes(quick: bool, device: str = "cpu", n: int | None = None) -> dict:
    n = n or (30 if quick else 1000)  # batches of 10 (pg_batch 10 couples each ten)
    rows = {}
    for name, extra in bar([("deterministic", {}), ("stochastic S_churn 0.7", {"S_churn": 0.7}),
                            ("deterministic + PG k_PG 1", {"pg_weight": 1.0}),
                            ("stochastic S_churn 0.7 + PG k_PG 1", {"S_churn": 0.7, "pg_weight": 1.0}),
                            # beyond the thesis: PG in the digit-features embedding (the PG paper's feature kernel)
                            ("deterministic + PG feature kernel k_PG 10", {"pg_weight": 10.0, "pg_kernel": "feature"})],
                           desc="thesis-modes rows", unit="row"):
        r = run_eval("mnist-uncond", _spec(device, 10, steps=22, pg_batch=10, **extra), "modes,quality", n=n)
        rows[name] = {"modes_per_10": r["modes_per_10"], "quality": r.get("quality"), "n": r["n"]}
    return {"experiment": "thesis Figure 3.1", "model": "mnist-uncond", "steps": 22, "rows": rows,
            "iid_expected_modes": 10 * (1 - 0.9**10)}


def thesis_prior(quick: bool, device: str = "cpu") -> dict:
    seq, samples = (20, 20) if quick else (200, 100)
    rows = {}
    for p in ("0.9", "0.7", "0.5"):
        model = f"smmnist-horizontal-{p}"
        for name, extra in [("deterministic", {}), ("stochastic S_churn 0.9", {"S_churn": 0.9}),
                            ("PG k_PG 3 B 2", {"pg_weight": 3.0, "pg_batch": 2}),
                            ("deterministic, thesis start x0.1", {"init_noise_scale": 0.1})]:
            r = run_prior(model, _spec(device, 64, **extra), seq, samples)
            rows[f"{p} / {name}"] = {k: r.get(k) for k in ("p_hat_right", "quality_mean", "unusable_share", "p_true")}
    return {"experiment": "thesis Table 4.1", "sequences": seq, "samples": samples, "rows": rows,
            "published": THESIS_TABLE_41}


NTNU_PLAN = [  # (row, model, CFG weight); every row samples with DDPM ancestral over the model's T steps
    ("linear T1000 w0.2", "ntnu-linear-T1000", 0.2), ("linear T4000 w0.2", "ntnu-linear-T4000", 0.2),
    ("cosine T1000 w0.2", "ntnu-cosine-T1000", 0.2), ("cosine T4000 w0.2", "ntnu-cosine-T4000", 0.2),
    ("linear T1000 w0", "ntnu-linear-T1000", 0.0), ("linear T1000 w0.5", "ntnu-linear-T1000", 0.5)]
NTNU_FAST = [  # our samplers at <= 35 network evaluations on the linear T1000 model, CFG w 0.2 (2 evaluations a step)
    ("heun 9 steps (34 NFE)", {"sampler": "heun", "steps": 9}),
    ("dpmpp_2m 17 steps (34 NFE)", {"sampler": "dpmpp_2m", "steps": 17}),
    ("ddim 17 steps (34 NFE)", {"sampler": "ddim", "steps": 17, "grid": "ddpm_trailing"})]


def _ntnu_model(root: Path, name: str) -> str:
    path = root / name
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing; train it with `difflab train configs/ntnu_ddpm.yaml "
                                f"beta_schedule=... T=... out={path}` (see docs/results.md) or pass --models DIR")
    return str(path)


def ntnu(out: Path, quick: bool = False, device: str = "cpu", n: int | None = None, models=None,
         metrics: str | None = None, rows_wanted: str | None = None) -> dict:
    """NTNU MNIST paper Tables 1-3 (and our fast samplers on the same model); rows are written as they finish."""
    from difflab.models import load

    root = Path(models or "runs")
    n = n or (200 if quick else 10000)
    metrics = metrics or "fid_inception,is"
    plan = NTNU_PLAN[:1] + NTNU_PLAN[4:] if quick else NTNU_PLAN
    rows: dict = {}
    result = {"experiment": "NTNU MNIST Tables 1-3", "n": n, "metrics": metrics, "rows": rows,
              "published": {k: {"fid_inception": v[0], "is": v[1]} for k, v in NTNU_TABLES.items()}}
    jobs = [(row, model, w, None) for row, model, w in plan]  # sampling None: DDPM over the model's T steps
    jobs[1:1] = [(f"fast: {k}", "ntnu-linear-T1000", 0.2, s) for k, s in NTNU_FAST]  # the cheap rows early
    wanted = [w.strip() for w in (rows_wanted or "").split(",") if w.strip()]
    if wanted:  # --rows: run only the named rows (e.g. to finish a partial table)
        unknown = [w for w in wanted if w not in {j[0] for j in jobs}]
        if unknown:
            raise ValueError(f"unknown ntnu row(s) {unknown}; choose from {[j[0] for j in jobs]}")
        jobs = [j for j in jobs if j[0] in wanted]
    for row, model, w, sampling in bar(jobs, desc="ntnu rows", unit="row"):
        path = _ntnu_model(root, model)
        if sampling is None:
            sampling = {"sampler": "ddpm", "steps": load(path).difflab_config.model.T, "grid": "ddpm_leading"}
        t0 = time.time()
        spec = _spec(device, 250, cfg_weight=w, **sampling)
        r = run_eval(path, spec, metrics, n=n)
        rows[row] = {k: r.get(k) for k in ("fid_inception", "fid_inception_n_ref", "is", "fid_classifier", "n")
                     if k in r}
        flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in sampling.items())
        rows[row].update(model=model, cfg_weight=w, sampling=flags, wall_s=round(time.time() - t0, 1))
        print(row, rows[row], flush=True)
        write_json(result, out / "results.json", sort_keys=False)
    return result


def diversity(out: Path, quick: bool = False, n: int | None = None, parts: str | None = None) -> dict:
    """Issue 16's diversity benchmark (parts a-d: toys, mnist-uncond, smmnist-circle, mnist-cond per class; ``parts``
    e.g. 'c,d', default all), written to OUT/diversity.json and OUT/frontier.png."""
    from difflab.experiments.diversity import run_diversity

    return run_diversity(str(out), quick=quick, n=n, parts=parts)


def run_reproduce(name: str, out=None, quick: bool = False, device: str = "cpu", n: int | None = None,
                  models=None, metrics: str | None = None, rows: str | None = None) -> dict | None:
    """``difflab reproduce NAME``: run one experiment, write OUT/results.json and results.md."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}")
    out = Path(out or f"outputs/reproduce/{name}")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if name == "pg-gmm":
        from difflab.experiments.ring import run_ring

        return run_ring(str(out), runs=20 if quick else 100, seed=0, quick=quick)
    if name == "diversity":
        return diversity(out, quick, n, rows)
    if name == "thesis-figures":
        from difflab.experiments.thesis_figures import run_thesis_figures

        return run_thesis_figures(out, quick=quick)
    if name == "thesis-heatmaps":
        from difflab.eval.sweep import run_sweep

        return run_sweep("configs/sweep_tiny.yaml" if quick else "configs/sweep_pg_mnist.yaml", out=str(out))
    if name == "ntnu":
        result = ntnu(out, quick, device, n, models, metrics, rows)
    elif name == "inpainting":
        from difflab.experiments.inpaint import VARIANTS, inpaint_agreement

        result = inpaint_agreement("mnist-uncond", _spec(device, 100, steps=10), n=n or (20 if quick else 200),
                                   variants=VARIANTS)
    else:
        result = thesis_modes(quick, device, n) if name == "thesis-modes" else thesis_prior(quick, device)
    result["wall_s"] = time.time() - t0
    result["quick"] = bool(quick)
    write_json(result, out / "results.json", sort_keys=False)
    lines = [f"# {result['experiment']}", "", "| setting | result |", "| --- | --- |"]
    lines += [f"| {k} | {json.dumps(v, default=float)} |" for k, v in result["rows"].items()]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return result

"""``difflab eval MODEL --metrics ...``: sample from a model (or take real data) and score it.

Python API: :func:`evaluate_images` scores a tensor of images; :func:`run_eval` is the CLI handler (it prints a
table and returns the dict that ``commands.eval`` writes to ``--json``).

Metrics (comma list; every result also has ``n``):

===============  =====================================================================================
is               Inception Score with the digit classifier -> ``is``, ``is_std``
fid_classifier   FID on digit-classifier features vs ``--ref`` -> ``fid_classifier`` (+ ``_n_ref``)
fid_inception    standard FID, TF-Inception 2048-d, vs ``--ref`` -> ``fid_inception`` (+ ``_n_ref``)  (slow on CPU)
kid              KID on Inception features -> ``kid``, ``kid_std``; ``kid_classifier``: on classifier features
modes            classes per batch of 10 and class histogram -> ``modes_per_10``, ``classes_covered``,
                 ``class_kl_uniform``, ``class_tv_uniform``, ``class_hist`` (+ ``modes_per_10_true`` for real data)
quality          mean max-softmax probability of the classifier -> ``quality``
diversity        mean pairwise distance within batches of 10 -> ``pairwise_l2``, ``pairwise_iou``,
                 ``pairwise_features``
prdc             precision/recall/density/coverage, classifier features, k = 5, vs the first n of ``--ref``
vendi            Vendi score of classifier features (cosine) -> ``vendi`` (all n), ``vendi_per_10``
===============  =====================================================================================

Samples of a class-conditional model use cycling labels 0..K-1 (or ``--label``); with particle guidance set
``--pg-batch 10`` so that each batch of 10 counted by ``modes_per_10`` is one group of particles.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from difflab.eval import classifier as clf
from difflab.eval.features import ClassifierFeatures, dataset_images, extract, get_extractor, reference_features

METRICS = ("is", "fid_classifier", "fid_inception", "kid", "kid_classifier", "modes", "quality", "diversity", "prdc",
           "vendi")
ALIASES = {"modes_per_10": "modes", "fid": "fid_inception", "inception_score": "is", "fid_clf": "fid_classifier",
           "precision": "prdc", "recall": "prdc", "density": "prdc", "coverage": "prdc"}


def parse_metrics(metrics) -> list[str]:
    items = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    out = []
    for m in (s.strip() for s in items):
        if not m:
            continue
        m = ALIASES.get(m, m)
        if m not in METRICS:
            raise ValueError(f"unknown metric {m!r}; choose from {', '.join(METRICS)}")
        if m not in out:
            out.append(m)
    if not out:
        raise ValueError("no metrics given")
    return out


def evaluate_images(images: torch.Tensor, metrics="is,fid_classifier,modes", *, ref: str = "mnist:test",
                    ref_n: int | None = None, classifier="digit-classifier", mask=None, group_size: int = 10,
                    true_labels=None, cache: bool = True, progress: bool = False, batch_size: int = 100,
                    num_classes: int = 10, timings: bool = False) -> dict:
    """Score images [N, 1, H, W] in [-1, 1]; returns a flat dict of numbers (see the module doc)."""
    metrics = parse_metrics(metrics)
    n = int(images.shape[0])
    res: dict = {"n": n}
    secs: dict = {}
    cache_f: dict = {}

    def feats(kind):
        if kind not in cache_f:
            ext = ClassifierFeatures(classifier, mask=mask) if kind == "classifier" else get_extractor(kind)
            cache_f[kind] = (ext, extract(ext, images, batch_size, progress))
        return cache_f[kind]

    p = None
    need_p = {"is", "modes", "quality"} & set(metrics)
    if need_p:
        p = clf.probs(classifier, images, mask=mask)
    for m in metrics:
        t0 = time.time()
        if m == "is":
            from difflab.eval.inception_score import inception_score

            res["is"], res["is_std"] = inception_score(p)
        elif m == "quality":
            from difflab.eval.inception_score import quality

            res["quality"] = quality(p)
        elif m == "modes":
            from difflab.eval.modes import mode_coverage, modes_per_10

            res.update(mode_coverage(p.argmax(1), num_classes, group_size))
            if true_labels is not None and n >= group_size:
                res["modes_per_10_true"] = modes_per_10(true_labels, group_size)
        elif m in ("fid_classifier", "fid_inception", "kid", "kid_classifier"):
            from difflab.eval.fid import fid_from_features, kid_from_features

            kind = "classifier" if m.endswith("classifier") else "inception"
            ext, f = feats(kind)
            r = reference_features(ext, ref, ref_n, cache=cache, batch_size=batch_size, progress=progress)
            if m.startswith("fid"):
                res[m] = fid_from_features(f, r)
            else:
                res[m], res[m + "_std"] = kid_from_features(r, f, subsets=100, subset_size=1000)
            res[m + "_n_ref"] = int(r.shape[0])
        elif m == "diversity":
            from difflab.eval.diversity import mean_pairwise_distance

            g = min(group_size, n)
            res["pairwise_l2"] = mean_pairwise_distance(images, "l2", g)
            res["pairwise_iou"] = mean_pairwise_distance(images, "iou", g)
            res["pairwise_features"] = mean_pairwise_distance(feats("classifier")[1], "l2", g)
        elif m == "prdc":
            from difflab.eval.diversity import prdc

            ext, f = feats("classifier")
            r = reference_features(ext, ref, ref_n, cache=cache, batch_size=batch_size)
            r = r[: max(n, 6)]  # equal sizes, as Naeem et al. recommend
            res.update({k if k in ("precision", "recall", "density", "coverage") else f"prdc_{k}": v
                        for k, v in prdc(r, f, k=5).items()})
        elif m == "vendi":
            from difflab.eval.diversity import vendi_score

            f = feats("classifier")[1]
            res["vendi"] = vendi_score(f)
            g = min(group_size, n)
            res["vendi_per_10"] = float(np.mean([vendi_score(f[s:s + g]) for s in range(0, n - g + 1, g)]))
        secs[m] = time.time() - t0
    if timings:
        res["seconds"] = secs
    return res


def sample_model(model, spec, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``n`` samples [n, C, H, W] (float, CPU) of ``model`` (a loaded D, a shipped name or a run directory) as
    ``spec`` (a :class:`~difflab.recipe.SamplingSpec`) says, and the class labels used (or None).

    Under ``torchrun`` (WORLD_SIZE > 1) each rank draws a contiguous share of the n seeds (aligned to the particle
    group, so no group spans two ranks) and every rank receives all n samples in seed order: since sample k comes
    from the generator seeded (seed, k) alone, the result equals one process's."""
    from difflab.models import load
    from difflab.recipe import sample
    from difflab.training.distributed import dist_env

    D = load(model, device=spec.device, compile=spec.compile) if isinstance(model, (str, Path)) else model
    cfg = D.difflab_config
    if cfg.data.cond_frames:
        raise ValueError(f"{getattr(D, 'difflab_path', model)} predicts frames; use `difflab eval motion` or "
                         "`eval prior`")
    rank, world, _ = dist_env()
    if world == 1:
        x, labels = sample(D, spec, n)
        return x[:, : cfg.model.channels].float().cpu(), labels
    import torch.distributed as dist

    unit = (spec.pg_batch or n) if spec.pg_weight else 1
    if n % unit:
        raise ValueError(f"--n {n} must be a multiple of the particle group (--pg-batch {unit}) to shard it")
    groups = n // unit
    start, stop = (unit * (groups * r // world) for r in (rank, rank + 1))
    x, _ = sample(D, spec, stop - start, offset=start)
    parts = [None] * world
    dist.all_gather_object(parts, x[:, : cfg.model.channels].float().cpu())
    return torch.cat(parts), spec.class_labels(D, n)


def _distributed(device: str):
    """Join torchrun's process group for a sharded eval (gloo on the CPU, NCCL on CUDA); None without torchrun."""
    import torch.distributed as dist

    from difflab.training.distributed import dist_env

    rank, world, local_rank = dist_env()
    if world == 1 or dist.is_initialized():
        return None
    if str(device).startswith("cuda"):
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if str(device).startswith("cuda") else "gloo", rank=rank, world_size=world)
    return dist


def format_table(res: dict, ref: str | None = None) -> str:
    n = res.get("n")
    rows = []
    for k, v in res.items():
        if k in ("n", "seed", "seconds", "class_hist", "source", "sampling") or k.startswith("prdc_") \
                or k.endswith(("_n_ref", "_std", "_sem")):
            continue
        if not isinstance(v, (int, float)):
            continue
        note = ""
        if k.startswith(("fid", "kid")):
            note = f"n={n} vs n_ref={res.get(k + '_n_ref')} ({ref})"
        if k + "_std" in res:
            note = (note + " " if note else "") + f"+- {res[k + '_std']:.4g}"
        rows.append((k, f"{v:.4f}" if isinstance(v, float) else str(v), note))
    w = max([len(r[0]) for r in rows] + [6])
    lines = [f"{'metric':<{w}}  {'value':>10}  note", "-" * (w + 30)]
    lines += [f"{k:<{w}}  {v:>10}  {note}" for k, v, note in rows]
    return "\n".join(lines)


def run_eval(model, spec, metrics="is,fid_classifier,modes", *, n: int = 1000, real: str | None = None,
             ref: str = "mnist:test", mask=None) -> dict:
    """The ``difflab eval`` back end: score ``n`` samples of ``model`` drawn as ``spec`` says (or ``n`` real
    images of ``real``); prints a table and returns {metric: value, ..., 'n', 'seed', 'ref', 'sampling'}, where
    'sampling' is ``spec.to_dict()`` (the exact recipe, replayable with ``SamplingSpec.from_dict``).

    Under ``torchrun --nproc_per_node=N -m difflab eval ...`` the sampling is split across the N processes
    (:func:`sample_model`); rank 0 scores the gathered samples and returns the result, the other ranks None."""
    metrics = parse_metrics(metrics)
    dist = _distributed(spec.device) if model and not real else None
    try:
        res = _run_eval(model, spec, metrics, n, real, ref, mask)
    finally:
        if dist is not None:
            dist.destroy_process_group()
    return res


def _run_eval(model, spec, metrics, n, real, ref, mask) -> dict | None:
    from difflab.training.distributed import dist_env

    t0 = time.time()
    true_labels = None
    if real:
        if model:
            raise ValueError("give either MODEL or --real, not both")
        images, true_labels = dataset_images(real, n, seed=spec.seed)
        source = {"real": real}
        if real.split(":")[:2] == ref.split(":")[:2]:
            print(f"note: --real {real} and --ref {ref} are the same split; FID measures a subset "
                  "against its own set (use --ref mnist:train for a fair real-data baseline)")
    elif model:
        images, labels = sample_model(model, spec, n)
        if dist_env()[0] != 0:
            return None  # rank 0 scores the gathered samples
        source = {"model": str(model), "labels": "cycling" if labels is not None and spec.label is None
                  else spec.label, "sampling": spec.to_dict()}
    else:
        raise ValueError("give a MODEL (run directory or shipped name) or --real DATASET, e.g. --real mnist:test")
    t_sample = time.time() - t0
    res = evaluate_images(images, metrics, ref=ref, true_labels=true_labels, progress=None, timings=True, mask=mask)
    res["seconds"]["sampling"] = t_sample
    res.update(source)
    res["seed"], res["ref"], res["metrics"] = spec.seed, ref, metrics  # metrics: as asked (replayable)
    print(format_table(res, ref))
    return res


__all__ = ["METRICS", "evaluate_images", "format_table", "parse_metrics", "run_eval", "sample_model"]

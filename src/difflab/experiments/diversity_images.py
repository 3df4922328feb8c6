"""The diversity benchmark (issue 16), parts (c) and (d): trained models, i.i.d. on the same seeds in every table.

(c) smmnist-circle: a digit moving in one of 8 directions; the model predicts the next frame. N test histories
    at a branch point (``eval_histories``, seed = the row's seed), 8 futures per history, one coupled group per
    history. Per method: distinct directions per 8 futures (thesis eq. 4.3-4.4), the quality score (thesis
    eq. 4.5, :func:`difflab.eval.frames.quality_score`; lower is better, > 8 unusable), the share of moves
    within 1.5 px of one of the 8 true moves and the TV of the direction shares to uniform: all by
    :func:`difflab.experiments.motion.run_motion`, the ``difflab eval motion`` measurement.
(d) mnist-cond per class: groups of 10 samples of one class (labels 0..9, ``per_class`` samples each, Heun).
    Per class: within-class diversity (Vendi score of the digit classifier's features, cosine kernel, over the
    class's samples and per group of 10), classifier-FID against that class's mnist:test images, and the share
    the classifier assigns to the asked class; overall: classifier-FID of all samples against all of mnist:test.
    A ``real`` row (the first ``per_class`` mnist:train images of each class) is the same measurement on real
    data: FID at small n is biased upwards, so rows are only comparable at equal n, against that floor.
"""

from __future__ import annotations

import contextlib
import io
import time

import numpy as np
import torch

CIRCLE_GROUP = 8
# (row name, SamplingSpec changes). PG: the H100 table's setting (docs/results.md, "Circle: 8 directions":
# k_PG 3, B 8, L2 kernel) and the CPU sweep's best cells (IoU kernel, k_PG 31.6 and 100, S_churn 0), the latter
# also on top of ortho (structured starting noise and PG compose: one guidance list).
CIRCLE_ROWS = [
    ("iid", {}),
    ("ortho", {"diversity": "ortho", "diversity_strength": 1.0, "group_size": CIRCLE_GROUP}),
    ("pg rbf k3", {"pg_weight": 3.0, "pg_batch": CIRCLE_GROUP}),
    ("pg iou k31.6", {"pg_weight": 31.6, "pg_kernel": "iou", "pg_batch": CIRCLE_GROUP}),
    ("ortho + pg iou k31.6", {"diversity": "ortho", "diversity_strength": 1.0, "group_size": CIRCLE_GROUP,
                              "pg_weight": 31.6, "pg_kernel": "iou", "pg_batch": CIRCLE_GROUP}),
    ("ortho + pg iou k100", {"diversity": "ortho", "diversity_strength": 1.0, "group_size": CIRCLE_GROUP,
                             "pg_weight": 100.0, "pg_kernel": "iou", "pg_batch": CIRCLE_GROUP}),
]
CIRCLE_KEYS = ("modes_per_history", "modes_per_history_sem", "quality_mean", "quality_sem", "quality_median",
               "unusable_share", "valid_move_share", "tv_to_uniform", "no_direction_share")


def _fits(row: dict, config: dict) -> bool:
    return all(row.get(k) == v for k, v in config.items())


def run_circle(sequences: int = 40, steps: int = 18, seed: int = 0, rows=None, done=None, save=None, log=print,
               model="smmnist-circle") -> dict:
    """Part (c): every row of :data:`CIRCLE_ROWS` on the same ``sequences`` histories and the same noise seeds
    (``seed``), 8 futures each; ``done`` rows with the same settings are kept (resumable)."""
    from difflab.experiments.motion import run_motion
    from difflab.models import load
    from difflab.recipe import SamplingSpec

    D = load(model) if isinstance(model, str) else model
    out = {} if done is None else done
    config = {"sequences": int(sequences), "samples": CIRCLE_GROUP, "steps": int(steps), "seed": int(seed)}
    for row, changes in rows or CIRCLE_ROWS:
        if row in out and _fits(out[row], config):
            continue
        spec = SamplingSpec(sampler="heun", steps=steps, seed=seed, batch_size=8 * CIRCLE_GROUP, **changes)
        t0 = time.time()
        with contextlib.redirect_stdout(io.StringIO()):  # run_motion prints its own table
            res = run_motion(D, spec, sequences, CIRCLE_GROUP)
        m = res["multimode"]
        r = {k: m[k] for k in CIRCLE_KEYS}
        r.update(config, sampling={k: list(v) if isinstance(v, tuple) else v for k, v in changes.items()},
                 wall_s=round(time.time() - t0, 1))
        out[row] = r
        log(f"smmnist-circle {row:22s} directions/8 {r['modes_per_history']:.2f} +- {r['modes_per_history_sem']:.2f}"
            f"  quality {r['quality_mean']:.3f} +- {r['quality_sem']:.3f} (median {r['quality_median']:.3f})"
            f"  unusable {r['unusable_share']:.3f}  valid moves {r['valid_move_share']:.3f}"
            f"  TV {r['tv_to_uniform']:.3f} ({r['wall_s']:.0f} s)")
        if save:
            save()
    return out


COND_GROUP = 10
# (row name, SamplingSpec changes): CADS at the paper's noise scale s = 0.25 (Sadat et al. 2024) and twice it;
# PG with the feature kernel as in part (b) (weight 10, groups of 10)
COND_ROWS = [
    ("iid", {}),
    ("ortho", {"diversity": "ortho", "diversity_strength": 1.0, "group_size": COND_GROUP}),
    ("cads s0.25", {"diversity": "cads", "diversity_strength": 0.25, "group_size": COND_GROUP}),
    ("cads s0.5", {"diversity": "cads", "diversity_strength": 0.5, "group_size": COND_GROUP}),
    ("pg feature w10", {"pg_weight": 10.0, "pg_kernel": "feature", "pg_batch": COND_GROUP}),
]


# mnist-latent (PG in latent space or on the decoded images; docs/results.md "Diversity on latents vs decoded images"):
# the RBF kernel on the denoised latents, the same kernel on their decoded images, and the digit-features kernel
# on the decoded images (part (d)'s feature kernel), each at k_PG 1, 3 and 10, groups of 10 of one class.
_PG = {"pg_batch": COND_GROUP}
LATENT_ROWS = COND_ROWS[:2] + [
    (f"pg {name} w{w:g}", {"pg_weight": w, **kernel, **_PG})
    for name, kernel in [("rbf on latents", {}), ("rbf on decoded", {"pg_kernel": "feature", "pg_features": "pixels"}),
                         ("digit-features on decoded", {"pg_kernel": "feature"})]
    for w in (1.0, 3.0, 10.0)]


def class_scores(f: np.ndarray, labels, ref_f: np.ndarray, ref_labels, predicted=None, classes=None,
                 group: int = COND_GROUP) -> dict:
    """Per class c (of ``classes``, default every label present): Vendi of the features ``f`` of class c (all of
    them, and the mean over consecutive groups of ``group``), the mean pairwise L2 distance of the features
    within those groups, classifier-FID against ``ref_f[ref_labels == c]`` and, with ``predicted``, the share
    classified as c; plus the means over classes and the overall FID of all of ``f`` against all of ``ref_f``."""
    from difflab.eval.diversity import mean_pairwise_distance, vendi_score
    from difflab.eval.fid import fid_from_features

    labels, ref_labels = np.asarray(labels).reshape(-1), np.asarray(ref_labels).reshape(-1)
    classes = sorted(set(labels.tolist())) if classes is None else list(classes)
    per = {}
    for c in classes:
        fc = f[labels == c]
        if len(fc) < 2:
            raise ValueError(f"class {c}: need at least 2 samples, got {len(fc)}")
        g = min(group, len(fc))
        per[str(c)] = {"n": int(len(fc)), "vendi": vendi_score(fc),
                       "vendi_per_group": float(np.mean([vendi_score(fc[s:s + g])
                                                         for s in range(0, len(fc) - g + 1, g)])),
                       "distance_per_group": mean_pairwise_distance(torch.as_tensor(fc), group_size=g),
                       "fid_classifier": fid_from_features(fc, ref_f[ref_labels == c])}
        if predicted is not None:
            per[str(c)]["class_accuracy"] = float((np.asarray(predicted).reshape(-1)[labels == c] == c).mean())
    keys = [k for k in next(iter(per.values())) if k != "n"]
    mean = {f"{k}_mean": float(np.mean([p[k] for p in per.values()])) for k in keys}
    return {**mean, "fid_classifier_overall": fid_from_features(f, ref_f), "per_class": per}


def _real_row(per_class: int, classes, subset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``subset * per_class`` .. ``(subset + 1) * per_class - 1`` of each class of mnist:train, class by
    class (subset 0: the first ``per_class``; subsets are disjoint)."""
    from difflab.eval.features import dataset_images

    x, y = dataset_images("mnist:train")
    lo = subset * per_class
    idx = torch.cat([torch.nonzero(y == c).flatten()[lo:lo + per_class] for c in classes])
    return x[idx], y[idx]


def real_floor(per_class: int, classes, ext, ref_f, ref_y, subsets: int = 8) -> dict:
    """Mean and standard deviation over ``subsets`` disjoint real subsets (``per_class`` mnist:train images per
    class) of the class-mean Vendi and FID and the overall FID: the scatter of these numbers at this n."""
    from difflab.eval.features import extract

    vals = {"vendi_mean": [], "fid_classifier_mean": [], "fid_classifier_overall": []}
    for k in range(subsets):
        x, y = _real_row(per_class, classes, k)
        r = class_scores(extract(ext, x), y.numpy(), ref_f, ref_y)
        for key in vals:
            vals[key].append(r[key])
    return {key: {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1))} for key, v in vals.items()} | {
        "subsets": subsets}


def run_cond(per_class: int = 50, steps: int = 10, seed: int = 0, classes=tuple(range(10)), rows=None, done=None,
             save=None, log=print, model="mnist-cond", floor_subsets: int = 8) -> dict:
    """Part (d): every row of :data:`COND_ROWS` (and ``real``) with ``per_class`` samples of each class in
    ``classes``, as consecutive groups of 10 of one class; the same seed (so the same starting noise draws) for
    every row; ``done`` rows with the same settings are kept (resumable). The real row also holds ``floor``
    (:func:`real_floor` over ``floor_subsets`` disjoint real subsets)."""
    from difflab.eval import classifier as clf
    from difflab.eval.features import dataset_images, extract, get_extractor, reference_features
    from difflab.models import load
    from difflab.recipe import SamplingSpec, sample

    if per_class % COND_GROUP:
        raise ValueError(f"per_class must be a multiple of the group size {COND_GROUP}, got {per_class}")
    D = load(model) if isinstance(model, str) else model
    out = {} if done is None else done
    classes = [int(c) for c in classes]
    config = {"n_per_class": int(per_class), "classes": classes, "steps": int(steps), "seed": int(seed)}
    ext = get_extractor("classifier")
    ref_f = reference_features(ext, "mnist:test")
    _, ref_y = dataset_images("mnist:test")
    labels = torch.tensor(classes).repeat_interleave(per_class)
    for row, changes in [("real mnist:train", None)] + list(rows or COND_ROWS):
        if row in out and _fits(out[row], config) and (changes is not None or "floor" in out[row]):
            continue
        t0 = time.time()
        if changes is None:
            images, labels_used = _real_row(per_class, classes)
            floor = real_floor(per_class, classes, ext, ref_f, ref_y.numpy(), subsets=floor_subsets)
        else:
            spec = SamplingSpec(sampler="heun", steps=steps, seed=seed, batch_size=100, **changes)
            images, _ = sample(D, spec, len(labels), cond={"class_labels": labels})
            images, labels_used = images.float().cpu(), labels
        t_s = time.time() - t0
        f = extract(ext, images)
        pred = clf.predict("digit-classifier", images).numpy()
        r = class_scores(f, labels_used.numpy(), ref_f, ref_y.numpy(), pred, classes)
        r.update(config, sampling=None if changes is None else dict(changes), sample_s=round(t_s, 1))
        if changes is None:
            r["floor"] = floor
        out[row] = r
        log(f"{model if isinstance(model, str) else 'model'} {row:18s} vendi/class {r['vendi_mean']:.3f}  "
            f"vendi/10 {r['vendi_per_group_mean']:.3f}  dist/10 {r['distance_per_group_mean']:.2f}  "
            f"FID_clf/class {r['fid_classifier_mean']:.2f}  FID_clf all {r['fid_classifier_overall']:.3f}  "
            f"class acc {r['class_accuracy_mean']:.3f} ({t_s:.0f} s)")
        if save:
            save()
    return out


def table_rows(result: dict) -> list[dict]:
    """Flat rows of parts (c) and (d) for the benchmark's table."""
    rows = [{"data": "smmnist-circle", "row": k, "directions_per_8": v["modes_per_history"],
             "quality": v["quality_mean"], "unusable": v["unusable_share"]} for k, v in result.get("circle", {}).items()]
    rows += [{"data": "mnist-cond", "row": k, "vendi_class": v["vendi_mean"], "fid_class": v["fid_classifier_mean"],
              "fid_all": v["fid_classifier_overall"], "class_acc": v["class_accuracy_mean"]}
             for k, v in result.get("cond", {}).items()]
    return rows


def circle_markdown(rows: dict) -> str:
    """The part (c) table of docs/results.md."""
    lines = ["| method | directions per 8 | quality mean (median) | unusable | valid moves | TV to uniform |",
             "| --- | --- | --- | --- | --- | --- |"]
    for k, r in rows.items():
        lines.append(f"| {k} | {r['modes_per_history']:.2f} +- {r['modes_per_history_sem']:.2f} | "
                     f"{r['quality_mean']:.3f} +- {r['quality_sem']:.3f} ({r['quality_median']:.3f}) | "
                     f"{100 * r['unusable_share']:.1f}% | "
                     f"{100 * r['valid_move_share']:.0f}% | {r['tv_to_uniform']:.3f} |")
    return "\n".join(lines)


def cond_markdown(rows: dict) -> str:
    """The part (d) tables of docs/results.md: means over classes, then Vendi / FID per class."""
    lines = ["| row | Vendi per class | Vendi per 10 | feature distance per 10 | classifier-FID per class (mean) | "
             "classifier-FID overall | class accuracy |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for k, r in rows.items():
        dist = f"{r['distance_per_group_mean']:.2f}" if "distance_per_group_mean" in r else "-"
        lines.append(f"| {k} | {r['vendi_mean']:.3f} | {r['vendi_per_group_mean']:.3f} | {dist} | "
                     f"{r['fid_classifier_mean']:.2f} | {r['fid_classifier_overall']:.3f} | "
                     f"{r['class_accuracy_mean']:.3f} |")
    classes = list(next(iter(rows.values()))["per_class"]) if rows else []
    lines += ["", "| row | " + " | ".join(f"class {c}" for c in classes) + " |",
              "| --- |" + " --- |" * len(classes)]
    for k, r in rows.items():
        cells = [f"{r['per_class'][c]['vendi']:.2f} / {r['per_class'][c]['fid_classifier']:.1f}" for c in classes]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


__all__ = ["CIRCLE_ROWS", "COND_ROWS", "LATENT_ROWS", "circle_markdown", "class_scores", "cond_markdown", "real_floor",
           "run_circle", "run_cond", "table_rows"]

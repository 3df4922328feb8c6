"""Next-frame experiments on Stochastic Moving MNIST (the thesis' chapter 4): ``difflab eval prior`` (Table 4.1,
p(right) calibration at the branch point), ``difflab eval motion`` (direction accuracy, modes, quality, mean
images) and ``difflab sample --cond-seq`` (futures of one history). Each is a plain function over a model and a
:class:`~difflab.recipe.SamplingSpec`; the measurements live in :mod:`difflab.eval.frames`, the prediction in
:mod:`difflab.sampling.frames`."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from difflab.data.moving_mnist import CIRCLE_DIRECTIONS, DIRECTION_NAMES, DIRECTIONS, check_variant, eval_histories
from difflab.eval.frames import (
    UNUSABLE_THRESHOLD,
    centroids,
    classify_directions,
    count_modes,
    direction_of,
    quality_score,
    to_unit,
)
from difflab.models import load
from difflab.recipe import SamplingSpec
from difflab.sampling.frames import next_frame_config, predict_next, rollout


def _load(model, spec: SamplingSpec):
    """A loaded D as given, or the model of a shipped name / run directory."""
    if isinstance(model, (str, Path)):
        return load(model, device=spec.device, compile=spec.compile)
    return model


def _variant(cfg) -> str:
    name = cfg.data.name
    if not name.startswith("smmnist-"):
        raise ValueError(f"this model was trained on {name!r}, not on Stochastic Moving MNIST (smmnist-<variant>)")
    return check_variant(name[len("smmnist-"):])


def _sampling(spec, D, samples_per_history: int) -> tuple[dict, int | None, int]:
    """(generate kwargs, group size, chunk size) for ``spec``. Particle guidance and the diversity methods couple
    the futures of one history: ``pg_batch`` / ``group_size`` (default: all samples of a history) must divide the
    samples per history; chunks of the batch are multiples of it, so every group holds futures of one history."""
    group = None
    if spec.pg_weight or spec.diversity:
        flag, group = ("--group-size", spec.group_size) if spec.diversity else ("--pg-batch", spec.pg_batch)
        group = group or samples_per_history
        if samples_per_history % group:
            raise ValueError(f"{flag} ({group}) must divide the number of samples per history "
                             f"({samples_per_history}) so that particle groups do not mix histories")
        if spec.pg_weight and spec.pg_batch not in (None, group):
            raise ValueError(f"--pg-batch ({spec.pg_batch}) must equal --group-size ({group}) with --diversity")
        spec = spec.replace(pg_batch=group if spec.pg_weight else None,
                            group_size=group if spec.diversity else None)
    unit = group or 1
    chunk = max(unit, spec.batch_size - spec.batch_size % unit)
    return spec.generate_kwargs(D), group, chunk


def _print_table(title: str, rows: list[tuple[str, object]]):
    print(title)
    width = max((len(k) for k, _ in rows), default=0)
    for k, v in rows:
        if isinstance(v, float):
            v = "nan" if math.isnan(v) else f"{v:.4f}"
        print(f"  {k:<{width}}  {v}")


def _guidance_info(spec, group) -> dict:
    pg = bool(spec.pg_weight)
    return {"pg_weight": float(spec.pg_weight), "pg_batch": group if pg else None,
            "pg_kernel": spec.pg_kernel if pg else None, "pg_variant": spec.pg_variant if pg else None,
            "diversity": spec.diversity, "diversity_strength": spec.diversity_strength,
            "group_size": group if spec.diversity else None}


def _score(prev_u: torch.Tensor, gen_u: torch.Tensor, refs, otsu: bool = False) -> dict:
    """Directions, cosine, displacement and quality of generated frames against their conditioning frames."""
    v = direction_of(prev_u, gen_u, otsu)
    idx, cos = classify_directions(v, refs)
    q = quality_score(prev_u, gen_u)
    return {"v": v, "idx": idx, "cos": cos, "quality": q}


def run_prior(model, spec: SamplingSpec, sequences: int = 200, samples: int = 100,
              p_right: float | None = None) -> dict:
    """``difflab eval prior MODEL``: does the model reproduce p(right) at the centre (thesis Table 4.1)?

    N test sequences whose last conditioning frame has the digit at the centre (the frames before it approach
    from the left or the right), M samples each, all drawn by one :func:`predict_next` call; p_hat(right) is the
    share of samples (with a direction) that moved right. For a circle model the same is done over its 8
    directions (``direction_probs``; p_hat_right is then None)."""
    t0 = time.time()
    D = _load(model, spec)
    cfg = next_frame_config(D)
    variant = _variant(cfg)
    if variant not in ("horizontal", "circle"):
        raise ValueError(f"eval prior needs a smmnist-horizontal (or smmnist-circle) model, got {cfg.data.name}")
    N, M, seed = int(sequences), int(samples), int(spec.seed)
    p_true = cfg.data.p_right if p_right is None else float(p_right)
    if variant == "horizontal" and not 0 <= p_true <= 1:
        raise ValueError(f"--p-right must be in [0, 1], got {p_true}")
    hist = eval_histories(variant, N, cfg.data.cond_frames, "branch", pred_frames=cfg.data.pred_frames,
                          seq_len=cfg.data.seq_len, p_right=cfg.data.p_right, seed=seed, frame=cfg.data.size)
    kw, group, chunk = _sampling(spec, D, M)
    x = predict_next(D, hist["history"], M, seed=seed, batch_size=chunk, class_labels=hist["label"], **kw)
    prev_u = to_unit(hist["history"][:, -1]).repeat_interleave(M, 0)
    gen_u = to_unit(x[:, :, 0]).reshape(N * M, *x.shape[-2:]).cpu()
    s = _score(prev_u, gen_u, DIRECTIONS[variant])
    idx = s["idx"].reshape(N, M)
    q = s["quality"].reshape(N, M)
    unusable = q > UNUSABLE_THRESHOLD
    has_dir = idx >= 0
    res = {"model": str(getattr(D, "difflab_path", model)), "variant": variant, "n_sequences": N, "n_samples": M,
           "sampler": spec.sampler, "steps": spec.steps, "S_churn": float(spec.S_churn),
           **_guidance_info(spec, group), "init_noise_scale": float(spec.init_noise_scale),
           "seed": seed, "batch_size": chunk, "quality_mean": float(q.mean()), "quality_median": float(q.median()),
           "unusable_threshold": UNUSABLE_THRESHOLD, "unusable_share": float(unusable.float().mean()),
           "no_direction_share": float((~has_dir).float().mean())}
    per_seq = []
    if cfg.data.cond_frames >= 2:  # the column move into the centre: > 0 from the left, < 0 from the right
        approach = direction_of(to_unit(hist["history"][:, -2]), to_unit(hist["history"][:, -1]))[:, 1]
    else:
        approach = torch.full((N,), float("nan"))
    if variant == "horizontal":
        right = (idx == 1).float()
        n_dir = has_dir.float().sum(1)
        p_seq = right.sum(1) / n_dir.clamp_min(1)
        p_hat = float(right.sum() / has_dir.float().sum().clamp_min(1))
        usable = has_dir & ~unusable
        from_left, from_right = approach > 0, approach < 0
        res.update({
            "p_true": p_true, "p_hat_right": p_hat, "abs_error": abs(p_hat - p_true),
            "p_hat_se": float(p_seq.std(unbiased=True) / math.sqrt(N)) if N > 1 else float("nan"),
            "p_hat_right_usable": float(((idx == 1) & usable).float().sum() / usable.float().sum().clamp_min(1)),
            "p_hat_right_from_left": float(right[from_left].sum() / has_dir[from_left].float().sum().clamp_min(1))
            if from_left.any() else None,
            "p_hat_right_from_right": float(right[from_right].sum() / has_dir[from_right].float().sum().clamp_min(1))
            if from_right.any() else None,
        })
    else:
        counts = torch.bincount(idx[has_dir].flatten(), minlength=8).double()
        probs = (counts / counts.sum().clamp_min(1)).tolist()
        res.update({"p_true": 1 / 8, "p_hat_right": None, "direction_probs": dict(zip(DIRECTION_NAMES["circle"], probs,
                                                                                       strict=True)),
                    "tv_to_uniform": 0.5 * sum(abs(p - 1 / 8) for p in probs),
                    "modes_per_history": float(count_modes(idx).float().mean())})
        p_seq = None
    for i in range(N):
        row = {"sequence": int(hist["sequence"][i]), "label": int(hist["label"][i]),
               "quality_mean": float(q[i].mean()), "unusable_share": float(unusable[i].float().mean())}
        if variant == "horizontal":
            a = float(approach[i])
            row.update({"approach": "from_left" if a > 0 else ("from_right" if a < 0 else None),
                        "p_hat_right": float(p_seq[i])})
        else:
            row["modes"] = int(count_modes(idx[i:i + 1])[0])
        per_seq.append(row)
    res["per_sequence"] = per_seq
    res["wall_s"] = time.time() - t0
    rows = [("model", res["model"]), ("sampler", f"{spec.sampler}, {spec.steps} steps, S_churn={res['S_churn']}"),
            ("particle guidance", f"k_PG={res['pg_weight']}, group={group}" if group else "off"),
            ("sequences x samples", f"{N} x {M}")]
    if variant == "horizontal":
        rows += [("p_true(right)", p_true), ("p_hat(right)", res["p_hat_right"]),
                 ("  +- (se over sequences)", res["p_hat_se"])]
    else:
        rows += [("TV distance to uniform", res["tv_to_uniform"]), ("modes per history", res["modes_per_history"])]
    rows += [("quality mean", res["quality_mean"]), (f"unusable share (q > {UNUSABLE_THRESHOLD})", res["unusable_share"]),
             ("wall time [s]", res["wall_s"])]
    _print_table(f"prior calibration ({variant})", rows)
    return res


def _mean_image_rows(history: torch.Tensor, samples: torch.Tensor, n_show: int = 4) -> torch.Tensor:
    """One grid row: the K history frames, the mean of the samples (thesis Figure 4.1), and n_show samples."""
    mean = to_unit(samples).mean(0, keepdim=True) * 2 - 1
    parts = [history.clamp(-1, 1), mean, samples[:n_show].clamp(-1, 1)]
    pad = n_show - min(n_show, samples.shape[0])
    if pad:
        parts.append(torch.full((pad, *history.shape[-2:]), -1.0))
    return torch.cat(parts)


def run_motion(model, spec: SamplingSpec, sequences: int = 50, samples: int = 8, out=None) -> dict:
    """``difflab eval motion RUN_DIR``: direction accuracy, modes, quality and mean images of a next-frame model.

    - unimode histories (the next move follows from the history; horizontal and free): direction accuracy of
      the samples against the true move, centroid error against the true next frame (px);
    - multimode histories (the last conditioning frame is a branch point): circle: modes per history, share
      of each of the 8 directions, share of samples whose move is one of the 8 allowed ones (within 1.5 px);
      horizontal: p_hat(right); free: the share of samples moving away from the wall;
    - quality score and unusable share for both; the classifier's accuracy on the real next frames;
    - with --out: mean_images.png (rows: unimode, multimode history; history | mean of samples | samples)."""
    from difflab.viz.grids import save_grid

    t0 = time.time()
    D = _load(model, spec)  # a sweep passes the model it loaded once
    cfg = next_frame_config(D)
    variant = _variant(cfg)
    N, M, seed = int(sequences), int(samples), int(spec.seed)
    K = cfg.data.cond_frames
    refs = DIRECTIONS[variant]
    kw, group, chunk = _sampling(spec, D, M)
    res = {"model": str(getattr(D, "difflab_path", model)), "variant": variant, "n_sequences": N,
           "n_samples": M, "sampler": spec.sampler, "steps": spec.steps,
           "S_churn": float(spec.S_churn), **_guidance_info(spec, group), "seed": seed,
           "unusable_threshold": UNUSABLE_THRESHOLD}
    kinds = ["multimode"] if variant == "circle" else ["unimode", "multimode"]
    rows, mean_rows = [], []
    for kind in kinds:
        hist = eval_histories(variant, N, K, "branch" if kind == "multimode" else "unimode",
                              pred_frames=cfg.data.pred_frames, seq_len=cfg.data.seq_len, p_right=cfg.data.p_right,
                              seed=seed, frame=cfg.data.size)
        x = predict_next(D, hist["history"], M, seed=seed, batch_size=chunk, class_labels=hist["label"], **kw)
        gen = x[:, :, 0].cpu()
        prev_u = to_unit(hist["history"][:, -1]).repeat_interleave(M, 0)
        gen_u = to_unit(gen).reshape(N * M, *gen.shape[-2:])
        s = _score(prev_u, gen_u, refs)
        real = _score(to_unit(hist["history"][:, -1]), to_unit(hist["next_frames"][:, 0]), refs)
        q = s["quality"]
        q_hist = q.double().reshape(N, M).mean(1)  # per history: its futures are coupled under PG / ortho
        r = {"quality_mean": float(q.mean()), "quality_median": float(q.median()),
             "quality_sem": float(q_hist.std() / math.sqrt(N)) if N > 1 else float("nan"),
             "unusable_share": float((q > UNUSABLE_THRESHOLD).float().mean()),
             "no_direction_share": float((s["idx"] < 0).float().mean())}
        true_dir = hist["direction"].repeat_interleave(M)
        ok = hist["direction"] >= 0
        r["classifier_accuracy_real"] = float((real["idx"][ok] == hist["direction"][ok]).float().mean())
        if kind == "unimode":
            r["direction_accuracy"] = float((s["idx"] == true_dir).float().mean())
            true_next = centroids(to_unit(hist["next_frames"][:, 0])).repeat_interleave(M, 0)
            err = (centroids(gen_u) - true_next).norm(dim=1)
            r["position_error_px"] = float(torch.nan_to_num(err, nan=float(cfg.data.size)).mean())
            rows += [("unimode direction accuracy", r["direction_accuracy"]),
                     ("unimode centroid error [px]", r["position_error_px"])]
        else:
            idx = s["idx"].reshape(N, M)
            modes = count_modes(idx).double()
            r["modes_per_history"] = float(modes.mean())
            r["modes_per_history_sem"] = float(modes.std() / math.sqrt(N)) if N > 1 else float("nan")
            if variant == "horizontal":
                has = s["idx"] >= 0
                r["p_true"] = cfg.data.p_right
                r["p_hat_right"] = float((s["idx"] == 1).float().sum() / has.float().sum().clamp_min(1))
                rows += [("multimode p_hat(right)", r["p_hat_right"]), ("p_true(right)", r["p_true"])]
            elif variant == "circle":
                allowed = torch.as_tensor(CIRCLE_DIRECTIONS * 4, dtype=torch.float32)
                dist = (s["v"][:, None, :] - allowed[None]).norm(dim=2).min(1).values
                r["valid_move_share"] = float(torch.nan_to_num(dist, nan=1e9).le(1.5).float().mean())
                counts = torch.bincount(s["idx"][s["idx"] >= 0], minlength=8).double()
                probs = (counts / counts.sum().clamp_min(1)).tolist()
                r["direction_probs"] = dict(zip(DIRECTION_NAMES["circle"], probs, strict=True))
                r["tv_to_uniform"] = 0.5 * sum(abs(p - 1 / 8) for p in probs)
                rows += [(f"modes per history (of {M} samples)", r["modes_per_history"]),
                         ("valid move share (8 directions)", r["valid_move_share"]),
                         ("TV distance to uniform", r["tv_to_uniform"])]
            else:  # free: after a wall hit the new velocity points away from the wall
                pos = hist["history"][:, -1]
                c = centroids(to_unit(pos))
                centre = (cfg.data.size - 1) / 2
                inward = (centre - c)  # points from the wall side towards the middle
                moved_in = ((s["v"] * inward.repeat_interleave(M, 0)).sum(1) > 0).float()
                r["inward_share"] = float(moved_in.mean())
                rows += [("multimode modes per history", r["modes_per_history"]),
                         ("multimode moves away from the wall", r["inward_share"])]
        rows += [(f"{kind} quality mean", r["quality_mean"]), (f"{kind} unusable share", r["unusable_share"])]
        res[kind] = r
        mean_rows.append(_mean_image_rows(hist["history"][0], gen[0]))
    out = out
    if out:
        out = Path(out)
        grid = torch.cat(mean_rows)[:, None]
        path = save_grid(grid, out / "mean_images.png", nrow=K + 1 + 4)
        res["mean_images"] = str(path)
        rows.append(("mean images", str(path)))
    res["wall_s"] = time.time() - t0
    rows.append(("wall time [s]", res["wall_s"]))
    _print_table(f"motion evaluation ({variant}, {N} histories x {M} samples, {spec.sampler})", rows)
    return res


def _load_cond_seq(spec: str, cfg) -> tuple[torch.Tensor, dict]:
    """History [K, H, W] in [-1, 1] from 'smmnist-VARIANT:INDEX[:START]' or an .npz file."""
    K = cfg.data.cond_frames
    p = Path(spec)
    if spec.endswith(".npz") or p.is_file():
        if not p.is_file():
            raise FileNotFoundError(f"--cond-seq file {spec!r} does not exist")
        with np.load(p) as z:
            key = next((k for k in ("history", "frames", "cond_frames") if k in z.files), None) or z.files[0]
            a = np.asarray(z[key])
        while a.ndim > 3 and a.shape[0] == 1:
            a = a[0]
        if a.ndim == 4 and a.shape[1] == 1:
            a = a[:, 0]
        if a.ndim != 3 or a.shape[0] < K or a.shape[1:] != (cfg.data.size, cfg.data.size):
            raise ValueError(f"--cond-seq {spec}: array {key!r} must be frames [T >= {K}, {cfg.data.size}, "
                             f"{cfg.data.size}], got shape {a.shape}")
        if a.dtype == np.uint8 or a.max() > 1.5:
            x = torch.from_numpy(a.astype(np.float32) / 127.5 - 1)
        elif a.min() < -0.01:
            x = torch.from_numpy(a.astype(np.float32)).clamp(-1, 1)
        else:
            x = torch.from_numpy(a.astype(np.float32) * 2 - 1)
        return x[-K:], {"source": str(p), "key": key}
    name, _, rest = spec.partition(":")
    if not name.startswith("smmnist-") or not rest:
        raise ValueError(f"--cond-seq must be 'smmnist-VARIANT:INDEX[:START]' or an .npz file, got {spec!r}")
    variant = check_variant(name[len("smmnist-"):])
    parts = rest.split(":")
    if not all(q.isdigit() for q in parts) or len(parts) > 2:
        raise ValueError(f"--cond-seq {spec!r}: INDEX and START must be non-negative integers")
    index = int(parts[0])
    from difflab.data.moving_mnist import MovingMNIST

    p_right = cfg.data.p_right if _variant(cfg) == variant else 0.5
    gen = MovingMNIST(variant, n=index + 1, seq_len=cfg.data.seq_len, split="test", p_right=p_right, seed=0,
                      frame=cfg.data.size)
    frames, info = gen.sequence(index)
    if len(parts) == 2:
        start = int(parts[1])
        if start + K > gen.seq_len:
            raise ValueError(f"--cond-seq {spec!r}: START + K ({start} + {K}) exceeds the sequence length "
                             f"{gen.seq_len}")
    else:
        starts = gen.windows(info, K, 0, "branch")
        start = starts[0] if starts else 0
    x = torch.from_numpy(frames[start:start + K].astype(np.float32) / 127.5 - 1)
    return x, {"source": spec, "variant": variant, "sequence": index, "start": start, "label": info["label"]}


def sample_next_frames(D, spec: SamplingSpec, cond_seq: str | None, n: int, rollout_frames: int = 1,
                       out="samples.png"):
    """``difflab sample RUN_DIR --cond-seq smmnist-horizontal:INDEX|file.npz --n N --rollout R --out F.png``.

    The history: test sequence INDEX (test digits, data seed 0, the model's seq_len and p_right), K frames
    ending at its first branch point (the multi-modal case; 'smmnist-horizontal:INDEX:START' picks frames
    START..START+K-1 instead), or the last K frames of an .npz file (key 'history', 'frames', 'cond_frames' or
    the first array; uint8 [0, 255], float [0, 1] or [-1, 1]). Draws N futures of R frames (one PG group:
    --pg-batch defaults to N), writes a grid (one row per future: history | predictions) and an .npz."""
    from difflab.viz.grids import save_grid

    cfg = next_frame_config(D)
    if not cond_seq:
        raise ValueError(f"this model conditions on {cfg.data.cond_frames} frames: pass --cond-seq "
                         f"smmnist-<variant>:INDEX or a .npz file of frames")
    history, meta = _load_cond_seq(cond_seq, cfg)
    n, R = int(n), int(rollout_frames)
    kw, group, chunk = _sampling(spec, D, n)
    t0 = time.time()
    labels = torch.tensor([meta["label"]]) if "label" in meta else None
    y = rollout(D, history[None], R, n, seed=spec.seed, class_labels=labels, batch_size=chunk,
                device=spec.device, **kw)[0].cpu()  # [n, R, H, W]
    wall = time.time() - t0
    K = history.shape[0]
    grid = torch.cat([torch.cat([history, y[i]]) for i in range(n)])[:, None]
    out = Path(out)
    save_grid(grid, out, nrow=K + R)
    npz = out.with_suffix(".npz")
    np.savez_compressed(npz, history=history.numpy().astype(np.float32), samples=y.numpy().astype(np.float32),
                        seed=spec.seed, cond_seq=str(cond_seq))
    print(f"wrote {out} and {npz} ({n} futures x {R} frame(s) after {K} history frames from {meta['source']}, "
          f"{spec.sampler}, {spec.steps} steps, {wall:.1f}s)")


def motion_point(model, sampling: SamplingSpec, spec: dict) -> dict:
    """A ``task: motion`` sweep point (difflab.eval.sweep runners): ``batches`` test histories x ``batch_size``
    futures, one particle-guidance group per history; returns the multimode numbers."""
    res = run_motion(model, sampling, spec["batches"], spec["batch_size"])
    return {k: v for k, v in res["multimode"].items() if isinstance(v, (int, float))}


SWEEP_RUNNERS = {"motion": motion_point}

__all__ = ["SWEEP_RUNNERS", "motion_point", "run_motion", "run_prior", "sample_next_frames"]

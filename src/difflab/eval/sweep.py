"""``difflab sweep CONFIG``: a grid over sampler options, one result file per grid point, heatmaps.

A sweep YAML (see configs/sweep_pg_mnist.yaml; every key can be overridden as ``key=value`` or
``section.key=value`` on the command line)::

    name: pg_mnist
    model: mnist-uncond            # run directory or shipped name
    out: outputs/sweeps/pg_mnist
    seed: 0                        # the same seed at every grid point (common random numbers)
    batches: 10                    # batches per grid point
    batch_size: 10                 # samples per batch = one particle-guidance group (modes are counted per batch)
    ref: mnist:test                # reference split for fid_classifier
    classifier: digit-classifier
    base: {sampler: heun, steps: 18, pg_kernel: rbf}   # sampler options named like the CLI flags
    grid:                          # axis 1 -> heatmap rows (y), axis 2 -> columns (x)
      pg_weight: {logspace: [-1, 1, 9]}                 # 10^c, c = -1, -0.75, ..., 1
      S_churn: {values: [0], logspace: [-2, 0, 5]}      # {0} U {10^c: c = -2, -1.5, ..., 0}
    metrics: [modes_per_10, quality, fid_classifier]

``task: motion`` sweeps a next-frame model instead (`difflab eval motion` per grid point, e.g. the thesis' circle
heatmaps, configs/sweep_pg_circle.yaml): ``batches`` is the number of test histories, ``batch_size`` the samples
per history (one particle-guidance group), and ``metrics`` are keys of the motion evaluation's multimode result
(``MOTION_METRICS``: modes_per_history, valid_move_share, tv_to_uniform, quality_mean, unusable_share, p_hat_right,
inward_share); ``ref`` and ``classifier`` are not used.

An axis is a list of values or a mapping with ``values`` (a list), ``logspace: [start, stop, num]`` (10^c) and/or
``linspace: [start, stop, num]``, concatenated in that order. Grid point ``i`` (row-major over the axes in their
order) writes ``OUT/points/IIII.json`` atomically (``.tmp`` then rename): its parameters, a fingerprint of
everything that determines the result, and the metrics. A rerun skips every point whose file exists with the
same fingerprint, so an interrupted sweep resumes where it stopped; ``--shard I/N`` computes only the points
with ``i % N == I`` (run N shards side by side on N machines/cores, then any one of them, or a rerun, writes
the full table). After each run ``OUT/table.json`` (axes, one 2-D table per metric with null where a point
is missing, nested in the order ``axis_names``, and the points) and ``OUT/heatmap_<metric>.png`` are rewritten
from the point files.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import time
from pathlib import Path

import numpy as np
import yaml

from difflab.eval.run import evaluate_images, parse_metrics, sample_model
from difflab.recipe import SamplingSpec
from difflab.utils import shard_indices, write_json

TITLE_KEYS = ("sampler", "steps", "pg_kernel", "pg_variant", "cfg_weight", "S_churn", "pg_weight")
DEFAULTS = {"name": "sweep", "model": None, "out": None, "seed": 0, "batches": 10, "batch_size": 10,
            "ref": "mnist:test", "ref_n": None, "classifier": "digit-classifier", "mask": None, "base": {},
            "grid": {}, "metrics": ["modes_per_10", "quality", "fid_classifier"], "device": "cpu", "task": "images"}
TASKS = ("images", "motion")
MOTION_METRICS = ("modes_per_history", "valid_move_share", "tv_to_uniform", "quality_mean", "unusable_share",
                  "p_hat_right", "inward_share")
HEAT_KEY = {"modes": "modes_per_10", "diversity": "pairwise_iou", "prdc": "coverage", "vendi": "vendi_per_10",
            "kid": "kid", "is": "is"}
LOWER_IS_BETTER = ("fid", "kid", "class_kl", "class_tv")


# -- config ------------------------------------------------------------------------------------------------

def _set_dotted(d: dict, key: str, value):
    parts = key.split(".")
    for p in parts[:-1]:
        if not isinstance(d.get(p), dict):
            d[p] = {}
        d = d[p]
    d[parts[-1]] = value


def load_sweep_config(path, overrides=()) -> dict:
    """Read a sweep YAML, apply ``key=value`` overrides (dotted keys reach into base/grid), validate."""
    from difflab.config import read_yaml

    spec = read_yaml(path, "sweep config")
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value")
        k, raw = item.split("=", 1)
        _set_dotted(spec, k.strip(), yaml.safe_load(raw) if raw.strip() else None)
    return normalize(spec)


def normalize(spec: dict) -> dict:
    if not isinstance(spec, dict):
        raise ValueError(f"a sweep config must be a mapping, got {type(spec).__name__}")
    unknown = set(spec) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown sweep config key(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    s = {**copy.deepcopy(DEFAULTS), **copy.deepcopy(spec)}
    if not s["model"]:
        raise ValueError("sweep config: 'model' (a run directory or shipped name) is required")
    if not isinstance(s["grid"], dict) or not s["grid"]:
        raise ValueError("sweep config: 'grid' must map at least one option to its values")
    for k in ("batches", "batch_size"):
        if isinstance(s[k], bool) or not isinstance(s[k], int) or s[k] < 1:
            raise ValueError(f"sweep config: {k} must be a positive integer, got {s[k]!r}")
    if isinstance(s["metrics"], str):
        s["metrics"] = [m.strip() for m in s["metrics"].split(",") if m.strip()]
    if s["task"] not in TASKS:
        raise ValueError(f"sweep config: unknown task {s['task']!r}; choose one of {list(TASKS)}")
    if s["task"] == "motion":
        bad = [m for m in s["metrics"] if m not in MOTION_METRICS]
        if bad or not s["metrics"]:
            raise ValueError(f"sweep config: motion metrics must be among {list(MOTION_METRICS)}, got {bad or '[]'}")
    else:
        parse_metrics(s["metrics"])  # validates the names
    s["axes"] = {k: axis_values(k, v) for k, v in s["grid"].items()}
    if s["out"] is None:
        s["out"] = f"outputs/sweeps/{s['name']}"
    return s


def _clean(v: float) -> float:
    return float(f"{float(v):.12g}")


def axis_values(name: str, spec) -> list:
    """Values of one grid axis (see the module doc)."""
    if isinstance(spec, (list, tuple)):
        vals = list(spec)
    elif isinstance(spec, dict):
        unknown = set(spec) - {"values", "logspace", "linspace"}
        if unknown:
            raise ValueError(f"grid.{name}: unknown key(s) {sorted(unknown)}; use values, logspace, linspace")
        vals = list(spec.get("values", []))
        for kind, fn in (("logspace", lambda a, b, n: 10.0 ** np.linspace(a, b, n)), ("linspace", np.linspace)):
            if kind in spec:
                try:
                    a, b, n = spec[kind]
                    vals += [_clean(v) for v in fn(float(a), float(b), int(n))]
                except (TypeError, ValueError):
                    raise ValueError(f"grid.{name}.{kind} must be [start, stop, num], got {spec[kind]!r}") from None
    else:
        vals = [spec]
    if not vals:
        raise ValueError(f"grid.{name} has no values")
    return [_clean(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v for v in vals]


def grid_points(spec: dict) -> list[dict]:
    names = list(spec["axes"])
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*spec["axes"].values())]


def parse_shard(shard) -> tuple[int, int]:
    if shard is None:
        return 0, 1
    if isinstance(shard, (tuple, list)):
        i, n = shard
    else:
        try:
            i, n = (int(v) for v in str(shard).split("/"))
        except ValueError:
            raise ValueError(f"--shard must look like I/N (e.g. 0/4), got {shard!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"--shard I/N needs 0 <= I < N, got {i}/{n}")
    return int(i), int(n)


def fingerprint(spec: dict, params: dict) -> str:
    """What determines a point's result: model, sampling options, sizes, seed, metrics, reference, point."""
    keys = ("model", "seed", "batches", "batch_size", "ref", "ref_n", "classifier", "mask", "base", "metrics")
    fields = {k: spec[k] if not hasattr(spec[k], "state_dict") else "module" for k in keys}
    if spec.get("task", "images") != "images":  # (image sweeps keep the fingerprints they had before tasks)
        fields["task"] = spec["task"]
    blob = json.dumps({**fields, "params": params}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# -- running -----------------------------------------------------------------------------------------------

def point_spec(spec: dict, params: dict) -> SamplingSpec:
    """The SamplingSpec of one grid point: the sweep's ``base`` options, then the point's, as
    ``dataclasses.replace`` would (option names as in the CLI flags, e.g. pg_weight, S_churn). The sweep fixes the
    seed and device, and one sampler call per batch: a batch is one particle-guidance group (pg_batch default)."""
    options = {k.replace("-", "_"): v for k, v in {**spec["base"], **params}.items()}
    images = spec["task"] == "images"
    fixed = {"seed", "device", "compile"} | ({"batch_size"} if images else set())
    valid = {f.name for f in dataclasses.fields(SamplingSpec)} - fixed
    bad = sorted(set(options) - valid)
    if bad:
        raise ValueError(f"sweep: {bad[0]!r} is not a sampler option; valid: {', '.join(sorted(valid))}")
    base = SamplingSpec(seed=spec["seed"], device=spec["device"])
    if images:
        base = dataclasses.replace(base, batch_size=spec["batch_size"], pg_batch=spec["batch_size"])
    return dataclasses.replace(base, **options)


def _read_point(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def image_point(model, sampling: SamplingSpec, spec: dict) -> dict:
    """The metrics of one image grid point: ``batches x batch_size`` samples scored by :func:`evaluate_images`."""
    images, _ = sample_model(model, sampling, spec["batches"] * spec["batch_size"])
    return evaluate_images(images, spec["metrics"], ref=spec["ref"], ref_n=spec["ref_n"],
                           classifier=spec["classifier"], mask=spec["mask"], group_size=spec["batch_size"])


def run_point(spec: dict, params: dict, D=None, runners: dict | None = None) -> dict:
    """One grid point's metrics. ``runners`` maps a task to ``fn(model, sampling_spec, sweep_spec) -> metrics``;
    ``images`` is built in, other tasks (``motion``) are supplied by the caller (difflab.experiments.motion),
    since the evaluation layer does not import the experiments."""
    fn = {"images": image_point, **(runners or {})}.get(spec["task"])
    if fn is None:
        raise ValueError(f"sweep task {spec['task']!r} needs a runner (run it through `difflab sweep`)")
    return fn(D if D is not None else spec["model"], point_spec(spec, params), spec)


def run_sweep_config(spec: dict, out=None, shard=None, limit: int | None = None, log=print,
                     runners: dict | None = None) -> dict:
    """Run (or resume) a normalised sweep spec; returns the table dict (also written to OUT/table.json).

    ``limit``: compute at most this many new points, then stop (the table is still written)."""
    import difflab

    spec = dict(spec)
    if "axes" not in spec:
        spec = normalize(spec)
    out = Path(out or spec["out"])
    si, sn = parse_shard(shard)
    points = grid_points(spec)
    (out / "points").mkdir(parents=True, exist_ok=True)
    write_json({k: v for k, v in spec.items() if k != "classifier" or isinstance(v, str)}, out / "sweep.json")
    D, done_now, skipped = None, 0, 0
    from difflab.progress import bar

    mine = shard_indices(len(points), si, sn)  # the same split as DDP training and sharded sampling
    for i in bar(mine, total=len(mine), desc=f"sweep {spec['name']}", unit="point"):
        params = points[i]
        path = out / "points" / f"{i:04d}.json"
        fp = fingerprint(spec, params)
        old = _read_point(path) if path.exists() else None
        if old is not None and old.get("fingerprint") == fp:
            skipped += 1
            continue
        if old is not None:
            log(f"point {i}: the stored result was computed with other settings; recomputing")
        if limit is not None and done_now >= limit:
            log(f"stopping after {limit} new point(s) (limit)")
            break
        if D is None:
            D = difflab.load(spec["model"], device=spec["device"])
        t0 = time.time()
        res = run_point(spec, params, D=D, runners=runners)
        wall = time.time() - t0
        write_json({"index": i, "params": params, "fingerprint": fp, "metrics": res, "seconds": wall}, path)
        done_now += 1
        shown = ", ".join(f"{k}={res[_heat_key(k)]:.4g}" for k in spec["metrics"] if _heat_key(k) in res)
        log(f"[{i + 1}/{len(points)}] {params}: {shown} ({wall:.1f}s)")
    log(f"{done_now} point(s) computed, {skipped} already done" + (f" (shard {si}/{sn})" if sn > 1 else ""))
    return write_table(spec, out, log=log)


def _heat_key(metric: str) -> str:
    """The result key a metric's heatmap shows (a group like 'modes' -> 'modes_per_10'; a key -> itself)."""
    return "fid_inception" if metric == "fid" else HEAT_KEY.get(metric, metric)


def _nan_to_none(v):
    if isinstance(v, list):
        return [_nan_to_none(x) for x in v]
    return None if not np.isfinite(v) else float(v)


def collect(spec: dict, out) -> list:
    out = Path(out)
    rows = []
    for i, params in enumerate(grid_points(spec)):
        rec = _read_point(out / "points" / f"{i:04d}.json")
        ok = rec is not None and rec.get("fingerprint") == fingerprint(spec, params)
        rows.append({"index": i, "params": params, "metrics": rec["metrics"] if ok else None})
    return rows


def write_table(spec: dict, out, heatmaps: bool = True, log=print) -> dict:
    """Build OUT/table.json and the heatmaps from the point files present."""
    out = Path(out)
    rows = collect(spec, out)
    names = list(spec["axes"])
    keys = [_heat_key(m) for m in spec["metrics"]]
    shape = [len(v) for v in spec["axes"].values()]
    tables = {}
    for key in keys:
        arr = np.full(int(np.prod(shape)), np.nan)
        for r in rows:
            if r["metrics"] is not None and isinstance(r["metrics"].get(key), (int, float)):
                arr[r["index"]] = r["metrics"][key]
        tables[key] = arr.reshape(shape)
    table = {"name": spec["name"], "model": str(spec["model"]), "base": spec["base"], "axes": spec["axes"],
             "axis_names": names,  # the tables are nested in this order: tables[key][i_axis0][i_axis1]...
             "metrics": keys,
             "n_per_point": spec["batches"] * spec["batch_size"], "batch_size": spec["batch_size"],
             "complete": all(r["metrics"] is not None for r in rows),
             "done": sum(r["metrics"] is not None for r in rows), "total": len(rows),
             "tables": {k: _nan_to_none(t.tolist()) for k, t in tables.items()},
             "points": [{"index": r["index"], "params": r["params"],
                         "metrics": None if r["metrics"] is None else {k: r["metrics"].get(k) for k in keys}}
                        for r in rows]}
    write_json(table, out / "table.json")
    if heatmaps and len(names) <= 2:
        from difflab.viz.plots import heatmap

        ys, xs = (spec["axes"][names[0]], spec["axes"][names[1]]) if len(names) == 2 else ([""], spec["axes"][names[0]])
        # The fixed settings that tell two runs of one config apart (e.g. base.pg_kernel=iou on the command line).
        fixed = ", ".join(f"{k}={v}" for k, v in spec["base"].items() if k in TITLE_KEYS and k not in names)
        for key, t in tables.items():
            v = t.reshape(len(ys), len(xs))
            heatmap(v, xs, ys, out / f"heatmap_{key}.png", xlabel=names[-1], ylabel=names[0] if len(names) == 2 else "",
                    title=f"{spec['name']}: {key} (n={table['n_per_point']} per cell)" + (f"\n{fixed}" if fixed else ""),
                    reverse=key.startswith(LOWER_IS_BETTER), fmt=".2f" if "modes" in key or "fid" in key else ".3f")
    elif heatmaps:
        log(f"{len(names)} grid axes: heatmaps are drawn for 1 or 2 axes only; see {out / 'table.json'}")
    log(f"table: {out / 'table.json'} ({table['done']}/{table['total']} points)")
    return table


def run_sweep(config, overrides=(), out=None, shard=None, runners: dict | None = None) -> dict:
    """The ``difflab sweep`` back end: load the sweep YAML with overrides, run or resume it, return the table."""
    return run_sweep_config(load_sweep_config(config, overrides or ()), out=out, shard=shard, runners=runners)


__all__ = ["axis_values", "grid_points", "load_sweep_config", "normalize", "run_sweep", "run_sweep_config",
           "point_spec", "write_table"]

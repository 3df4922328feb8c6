"""Sweeps: grid axes, overrides, one result file per point, resume after an interruption, shards, heatmaps.

The model is the `tiny` network trained for 2 steps (configs/tiny.yaml) and the classifier a fixed random
DigitClassifier, so nothing here needs MNIST or the shipped models."""

import json

import pytest
import torch

from difflab.eval.sweep import axis_values, grid_points, load_sweep_config, parse_shard, run_sweep_config
from difflab.nets.classifier import DigitClassifier


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from difflab.config import load_config
    from difflab.training.trainer import Trainer

    out = tmp_path_factory.mktemp("tiny") / "run"
    cfg = load_config("configs/tiny.yaml", [f"out={out}", "max_steps=2", "progress=false", "limit=64"])
    t = Trainer(cfg)
    t.preview = lambda: None
    t.run()
    return out


@pytest.fixture
def spec(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFLAB_FID_CACHE", str(tmp_path / "fid_stats"))
    s = load_sweep_config("configs/sweep_tiny.yaml", [f"model={tiny_run}"])
    torch.manual_seed(0)
    s["classifier"] = DigitClassifier(width=8).eval().requires_grad_(False)
    return s


def _quiet(*a, **k):
    pass


def test_axis_values_and_the_thesis_grid():
    full = load_sweep_config("configs/sweep_pg_mnist.yaml")
    pg, churn = full["axes"]["pg_weight"], full["axes"]["S_churn"]
    assert len(pg) == 9 and pg[0] == pytest.approx(0.1) and pg[4] == pytest.approx(1.0) and pg[-1] == pytest.approx(10)
    assert churn == pytest.approx([0, 0.01, 10 ** -1.5, 0.1, 10 ** -0.5, 1.0])
    assert len(grid_points(full)) == 54
    assert axis_values("a", [1, 2]) == [1, 2] and axis_values("a", {"linspace": [0, 1, 3]}) == [0, 0.5, 1]
    with pytest.raises(ValueError, match="logspace"):
        axis_values("a", {"logspace": [1, 2]})
    assert parse_shard("1/3") == (1, 3)
    with pytest.raises(ValueError):
        parse_shard("3/3")


def test_overrides_and_errors():
    s = load_sweep_config("configs/sweep_tiny.yaml", ["base.steps=3", "batches=2", "grid.pg_weight=[0, 2]"])
    assert s["base"]["steps"] == 3 and s["batches"] == 2 and s["axes"]["pg_weight"] == [0, 2]
    with pytest.raises(ValueError, match="unknown sweep config key"):
        load_sweep_config("configs/sweep_tiny.yaml", ["bogus=1"])
    with pytest.raises(ValueError, match="unknown metric"):
        load_sweep_config("configs/sweep_tiny.yaml", ["metrics=[nope]"])


def test_interrupted_sweep_resumes_to_the_same_table(spec, tmp_path):
    full = run_sweep_config(spec, out=tmp_path / "full", log=_quiet)
    assert full["complete"] and full["total"] == 4
    assert set(full["tables"]) == {"modes_per_10", "quality", "fid_classifier"}
    assert all(v is not None for row in full["tables"]["quality"] for v in row)
    for key in full["tables"]:
        assert (tmp_path / "full" / f"heatmap_{key}.png").stat().st_size > 1000

    out = tmp_path / "resumed"
    part = run_sweep_config(spec, out=out, limit=1, log=_quiet)  # "interrupted" after one point
    assert part["done"] == 1 and not part["complete"]
    first = out / "points" / "0000.json"
    stamp = first.stat().st_mtime_ns
    (out / "points" / "0001.json.999.tmp").write_text("{half written")  # a crash mid-write leaves only a tmp
    logs = []
    done = run_sweep_config(spec, out=out, log=logs.append)
    assert first.stat().st_mtime_ns == stamp  # not recomputed
    assert any("3 point(s) computed, 1 already done" in m for m in logs)
    assert done["tables"] == full["tables"] and done["points"] == full["points"]
    assert json.loads((out / "table.json").read_text())["tables"] == full["tables"]


def test_shards_compose_to_the_full_table(spec, tmp_path):
    out = tmp_path / "sharded"
    a = run_sweep_config(spec, out=out, shard="0/2", log=_quiet)
    assert a["done"] == 2 and [p["metrics"] is not None for p in a["points"]] == [True, False, True, False]
    b = run_sweep_config(spec, out=out, shard="1/2", log=_quiet)
    assert b["complete"]
    ref = run_sweep_config(spec, out=tmp_path / "one", log=_quiet)
    assert b["tables"] == ref["tables"]


def test_changed_settings_recompute(spec, tmp_path):
    out = tmp_path / "s"
    run_sweep_config(spec, out=out, limit=1, log=_quiet)
    spec2 = dict(spec, seed=1)
    t = run_sweep_config(spec2, out=out, limit=0, log=_quiet)
    assert t["done"] == 0  # the stored point belongs to seed 0


def test_motion_sweep_over_the_shipped_circle_model(tmp_path, monkeypatch):
    """task: motion runs `eval motion` per point (histories x futures); the table and heatmaps come out, a rerun
    resumes, and image metrics are refused."""
    from difflab.models import SHIPPED_DIR

    if not (SHIPPED_DIR / "smmnist-circle" / "model.safetensors").exists():
        pytest.skip("shipped smmnist-circle not installed")
    monkeypatch.setenv("DIFFLAB_SMMNIST_DIGITS", "synthetic:64")
    s = load_sweep_config("configs/sweep_pg_circle.yaml", [f"out={tmp_path / 'c'}", "batches=2", "batch_size=2",
                                                           "base.steps=2", "grid.S_churn=[0]",
                                                           "grid.pg_weight=[0, 1]", "base.pg_kernel=iou"])
    import difflab.viz.plots as plots

    titles, heatmap = [], plots.heatmap
    monkeypatch.setattr(plots, "heatmap", lambda *a, **kw: titles.append(kw["title"]) or heatmap(*a, **kw))
    from difflab.experiments.motion import SWEEP_RUNNERS

    with pytest.raises(ValueError, match="needs a runner"):  # the eval layer does not import the experiments
        run_sweep_config(s, log=_quiet)
    table = run_sweep_config(s, log=_quiet, runners=SWEEP_RUNNERS)
    # Two runs of one config differ in their fixed settings: the titles (and table.json) name them.
    assert titles and all("pg_kernel=iou" in t and "steps=2" in t and "pg_weight" not in t for t in titles)
    assert table["base"]["pg_kernel"] == "iou"
    assert table["complete"] and table["n_per_point"] == 4 and table["axis_names"] == ["pg_weight", "S_churn"]
    modes = [row[0] for row in table["tables"]["modes_per_history"]]
    assert all(1 <= m <= 2 for m in modes)
    assert all(0 <= row[0] <= 1 for row in table["tables"]["valid_move_share"])
    assert (tmp_path / "c" / "heatmap_modes_per_history.png").exists()
    lines = []
    run_sweep_config(s, log=lines.append, runners=SWEEP_RUNNERS)
    assert any("0 point(s) computed, 2 already done" in line for line in lines)
    with pytest.raises(ValueError, match="motion metrics must be among"):
        load_sweep_config("configs/sweep_pg_circle.yaml", ["metrics=[modes_per_10]"])

"""`difflab reproduce thesis-figures` (thesis Figures 3.1, 3.3, 5.1): the quick run end to end, and the one-line
error without umap-learn."""

import importlib.util
import json
import math

import numpy as np
import pytest

from difflab.cli import main
from difflab.experiments import thesis_figures as tf


def test_within_group_distance_is_the_mean_pairwise_distance():
    from scipy.spatial.distance import pdist

    f = np.random.default_rng(0).normal(size=(3 * tf.GROUP + 4, 5))  # the incomplete last group is dropped
    got = tf._within_group_distance(f)
    want = [pdist(f[g * tf.GROUP:(g + 1) * tf.GROUP]).mean() for g in range(3)]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_spanning_tree_joins_every_member_of_a_group():
    p = np.random.default_rng(1).normal(size=(tf.GROUP, 2))
    edges = tf._mst_edges(p)
    assert len(edges) == tf.GROUP - 1
    reached, frontier = {0}, [0]
    while frontier:
        a = frontier.pop()
        for u, v in edges:
            for s, t in ((u, v), (v, u)):
                if s == a and t not in reached:
                    reached.add(t)
                    frontier.append(t)
    assert reached == set(range(tf.GROUP))


def test_missing_umap_is_one_line_before_any_work(monkeypatch, tmp_path, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "umap" else real(name, *a))
    monkeypatch.setattr(tf, "norm_trajectory", lambda *a, **k: pytest.fail("sampled before checking for umap"))
    assert main(["reproduce", "thesis-figures", "--quick", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "umap-learn" in err and "pip install" in err


@pytest.mark.slow
def test_reproduce_thesis_figures_quick(tmp_path):
    pytest.importorskip("umap")
    assert main(["reproduce", "thesis-figures", "--quick", "--out", str(tmp_path)]) == 0
    r = json.loads((tmp_path / "results.json").read_text())
    for fig in ("3.3", "5.1"):
        block = r[f"fig{fig}"]
        assert (tmp_path / block["png"]).stat().st_size > 10_000
        for variant, by_w in block["steps"].items():
            lo, hi = by_w["w=1"], by_w["w=10"]
            assert len(lo) == tf.QUICK["norm_steps"]
            sig = [s["sigma"] for s in lo]
            assert sig[0] == pytest.approx(80.0) and all(a > b for a, b in zip(sig, sig[1:], strict=False))
            # First step: the same start x for both weights, so the ODE directions agree and the PG term is
            # exactly linear in w (k_PG = w sigma); ||d|| = ||z - D/80|| ~ ||z|| ~ sqrt(784) for z ~ N(0, I).
            assert hi[0]["ode"]["mean"] == pytest.approx(lo[0]["ode"]["mean"], rel=1e-6)
            assert hi[0]["pg"]["mean"] == pytest.approx(10 * lo[0]["pg"]["mean"], rel=1e-4), variant
            assert abs(lo[0]["ode"]["mean"] - math.sqrt(784)) < 3
    rows = r["fig3.1"]["rows"]
    assert (tmp_path / r["fig3.1"]["png"]).stat().st_size > 10_000
    assert list(rows) == [row for row, *_ in tf.UMAP_ROWS]
    assert rows["i.i.d."]["within_group_distance_vs_iid"] == pytest.approx(1.0)
    assert all(1 <= v["modes_per_10"] <= 10 and v["n"] == tf.QUICK["umap_n"] for v in rows.values())

"""Issue 16 parts (c) smmnist-circle and (d) mnist-cond per class: the per-class scores on analytic features, and
the quick paths of both parts on the shipped models (rows on the same seeds, counts in range)."""

import math

import numpy as np
import pytest
import torch

from difflab.experiments.diversity import CIRCLE_SIZES, COND_SIZES, parse_parts
from difflab.experiments.diversity_images import CIRCLE_ROWS, LATENT_ROWS, class_scores, run_circle, run_cond, table_rows

ORTHO0 = {"diversity": "ortho", "diversity_strength": 0.0}  # strength 0 = i.i.d.: the same samples on the same seeds


def test_class_scores_analytic():
    # features of class c ~ N(3 c e_c, I) in 4-D; the reference has 4000 per class from the same law
    g = np.random.default_rng(0)
    mu = lambda c: 3 * c * np.eye(4)[c]  # noqa: E731
    ref = np.concatenate([mu(c) + g.standard_normal((4000, 4)) for c in range(3)])
    ref_y = np.repeat(np.arange(3), 4000)
    fake = np.concatenate([mu(c) + g.standard_normal((2000, 4)) for c in range(3)])
    y = np.repeat(np.arange(3), 2000)
    fake[y == 1] += np.array([0, 0, 2.0, 0])  # class 1 only: mean off by 2 -> FID about 4
    r = class_scores(fake, y, ref, ref_y, predicted=np.where(y == 2, 0, y), group=10)
    fid = {c: r["per_class"][str(c)]["fid_classifier"] for c in range(3)}
    assert fid[0] < 0.05 and fid[2] < 0.05 and abs(fid[1] - 4.0) < 0.3
    assert r["per_class"]["2"]["class_accuracy"] == 0.0 and r["per_class"]["0"]["class_accuracy"] == 1.0
    assert math.isclose(r["class_accuracy_mean"], 2 / 3)
    assert r["fid_classifier_overall"] > 0  # pooled classes: FID of the mixture, finite
    for p in r["per_class"].values():
        assert 1 <= p["vendi_per_group"] <= 10 and 1 <= p["vendi"] <= 4  # cosine kernel in 4-D: at most 4
    # Vendi: a class of identical features scores 1, of orthogonal ones its size
    same = np.tile(np.eye(4)[:1], (20, 1))
    orth = np.tile(np.eye(4), (5, 1))
    r2 = class_scores(np.concatenate([same, orth]), np.repeat([0, 1], 20), ref, ref_y, group=4)
    assert math.isclose(r2["per_class"]["0"]["vendi"], 1.0, abs_tol=1e-6)
    assert math.isclose(r2["per_class"]["1"]["vendi"], 4.0, rel_tol=1e-6)
    assert math.isclose(r2["per_class"]["1"]["vendi_per_group"], 4.0, rel_tol=1e-6)
    # mean pairwise distance within groups of 4: 0 for identical features, sqrt 2 for orthonormal ones
    assert r2["per_class"]["0"]["distance_per_group"] == 0.0
    assert math.isclose(r2["per_class"]["1"]["distance_per_group"], math.sqrt(2), rel_tol=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        class_scores(fake[:1], y[:1], ref, ref_y)


def test_parse_parts():
    assert parse_parts(None) == ["a", "b", "c", "d", "latent"] and parse_parts("c, d") == ["c", "d"]
    with pytest.raises(ValueError, match="comma list"):
        parse_parts("c,e")
    assert CIRCLE_SIZES[True]["rows"][0][0] == "iid" and COND_SIZES[True]["rows"][0][0] == "iid"


def test_circle_quick_rows_share_seeds():
    torch.set_num_threads(1)
    rows = [("iid", {}), ("ortho s0", {**ORTHO0, "group_size": 8}), CIRCLE_ROWS[1], CIRCLE_ROWS[2]]
    out = run_circle(sequences=2, steps=4, rows=rows, log=lambda s: None)
    assert list(out) == ["iid", "ortho s0", "ortho", "pg rbf k3"]
    for r in out.values():
        assert 1 <= r["modes_per_history"] <= 8 and r["quality_mean"] >= 0 and math.isfinite(r["quality_mean"])
        assert 0 <= r["unusable_share"] <= 1 and (r["sequences"], r["seed"], r["samples"]) == (2, 0, 8)
    keys = ("modes_per_history", "quality_mean", "tv_to_uniform")
    assert [out["ortho s0"][k] for k in keys] == [out["iid"][k] for k in keys]  # same histories, same noise
    assert out["pg rbf k3"]["quality_mean"] != out["iid"]["quality_mean"]  # the guidance acts
    again = run_circle(sequences=2, steps=4, rows=rows[:1], log=lambda s: None)
    assert again["iid"]["quality_mean"] == out["iid"]["quality_mean"]
    kept = run_circle(sequences=2, steps=4, rows=rows[:1], done={"iid": {**out["iid"], "quality_mean": -1.0}},
                      log=lambda s: None)
    assert kept["iid"]["quality_mean"] == -1.0  # resumable: a finished row with the same settings is kept
    assert {r["data"] for r in table_rows({"circle": out})} == {"smmnist-circle"}


def test_cond_quick_rows_share_seeds():
    torch.set_num_threads(1)
    rows = [("iid", {}), ("ortho s0", {**ORTHO0, "group_size": 10}),
            ("cads s0.5", {"diversity": "cads", "diversity_strength": 0.5, "group_size": 10})]
    out = run_cond(per_class=10, steps=6, classes=(0, 1), rows=rows, log=lambda s: None)
    assert list(out) == ["real mnist:train", "iid", "ortho s0", "cads s0.5"]
    for r in out.values():
        assert set(r["per_class"]) == {"0", "1"} and r["seed"] == 0 and r["n_per_class"] == 10
        assert all(1 <= p["vendi"] <= 10 and p["fid_classifier"] >= 0 for p in r["per_class"].values())
    assert out["real mnist:train"]["class_accuracy_mean"] >= 0.9
    floor = out["real mnist:train"]["floor"]  # 8 disjoint real subsets: their scatter, > 0
    assert floor["subsets"] == 8 and floor["fid_classifier_mean"]["sd"] > 0 and floor["vendi_mean"]["mean"] >= 1
    assert out["iid"]["class_accuracy_mean"] >= 0.7  # the class asked for is the class drawn (labels aligned)
    assert out["ortho s0"]["per_class"] == out["iid"]["per_class"]  # same seeds and labels in every row
    assert out["cads s0.5"]["per_class"]["0"]["vendi"] != out["iid"]["per_class"]["0"]["vendi"]
    with pytest.raises(ValueError, match="multiple of the group"):
        run_cond(per_class=15, rows=rows[:1])


def test_motion_groups_follow_the_diversity_group():
    from difflab.experiments.motion import run_motion
    from difflab.recipe import SamplingSpec

    with pytest.raises(ValueError, match=r"--group-size \(3\) must divide"):
        run_motion("smmnist-circle", SamplingSpec(steps=2, diversity="ortho", group_size=3), 1, 8)
    with pytest.raises(ValueError, match=r"--pg-batch \(4\) must equal --group-size \(8\)"):
        run_motion("smmnist-circle", SamplingSpec(steps=2, diversity="ortho", group_size=8, pg_weight=1.0,
                                                  pg_batch=4), 1, 8)


def test_latent_quick_rows_pg_on_latents_and_on_decoded_images():
    """Part "latent": mnist-latent per class, i.i.d. and PG with the kernel on the latents and on the decoded
    images, on the same seeds and labels; the two kernels act differently."""
    torch.set_num_threads(1)
    rows = dict(LATENT_ROWS)
    rows = [("iid", {}), ("ortho s0", {**ORTHO0, "group_size": 10})] + [
        (k, rows[k]) for k in ("pg rbf on latents w10", "pg rbf on decoded w10")]
    out = run_cond(per_class=10, steps=6, classes=(0, 1), rows=rows, log=lambda s: None, model="mnist-latent",
                   floor_subsets=2)
    assert out["ortho s0"]["per_class"] == out["iid"]["per_class"]  # same seeds and labels in every row
    assert out["iid"]["class_accuracy_mean"] >= 0.7
    lat, dec = out["pg rbf on latents w10"], out["pg rbf on decoded w10"]
    assert len({lat["distance_per_group_mean"], dec["distance_per_group_mean"], out["iid"]["distance_per_group_mean"]}) == 3

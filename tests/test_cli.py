"""CLI smoke tests on synthetic data (no download): train -> sample with guidance flags."""

import numpy as np
import pytest

from difflab.cli import main


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    assert main(["train", "configs/tiny.yaml", "max_steps=2", f"out={d / 'tiny'}", "progress=false", "limit=64"]) == 0
    assert main(["train", "configs/noisy_classifier.yaml", "max_steps=2", f"out={d / 'clf'}", "data.name=synthetic",
                 "limit=64", "batch_size=8", "progress=false", "threads=1"]) == 0
    return d


def test_sample_writes_png_and_npz(runs, tmp_path):
    out = tmp_path / "g.png"
    assert main(["sample", str(runs / "tiny"), "--n", "3", "--steps", "2", "--out", str(out), "--label", "4"]) == 0
    data = np.load(out.with_suffix(".npz"), allow_pickle=False)
    assert data["samples"].shape == (3, 1, 28, 28) and (data["labels"] == 4).all()


@pytest.mark.parametrize("flags", [
    ["--cfg-weight", "0.2"],
    ["--pg-weight", "1", "--S-churn", "0.5"],
    ["--sampler", "ddim", "--eta", "0.5"],
    ["--sampler", "dpmpp_2m"],
    ["--cg-model", "CLF", "--cg-scale", "2"],
    ["--pg-weight", "1", "--pg-kernel", "feature", "--pg-features", "digit-classifier"],
])
def test_sample_with_guidance_and_samplers(runs, tmp_path, flags):
    flags = [str(runs / "clf") if f == "CLF" else f for f in flags]
    assert main(["sample", str(runs / "tiny"), "--n", "2", "--steps", "2", "--out", str(tmp_path / "g.png"), *flags]) == 0


def test_classifier_guidance_needs_a_noisy_classifier(runs, tmp_path, capsys):
    code = main(["sample", str(runs / "tiny"), "--n", "2", "--steps", "2", "--out", str(tmp_path / "g.png"),
                 "--cg-model", str(runs / "tiny")])
    assert code == 2 and "not a noise-conditional classifier" in capsys.readouterr().err


def test_pg_features_needs_the_feature_kernel(runs, tmp_path, capsys):
    code = main(["sample", str(runs / "tiny"), "--n", "2", "--steps", "2", "--out", str(tmp_path / "g.png"),
                 "--pg-weight", "1", "--pg-features", "digit-classifier"])
    assert code == 2 and "--pg-features needs --pg-kernel feature" in capsys.readouterr().err

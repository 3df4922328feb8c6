"""Evaluation metrics: FID (ours vs torchmetrics), KID, IS bounds, mode counting, Vendi, PRDC, Otsu masking,
shipping a classifier, and `difflab eval` end to end on small data. Inception on real images is a benchmark
(benchmarks/bench_eval.py), plus one slow-marked smoke test here."""

import numpy as np
import pytest
import torch

from difflab.eval import classifier as clf
from difflab.eval.diversity import iou_distance_matrix, mean_pairwise_distance, prdc, vendi_score
from difflab.eval.fid import fid_from_features, fid_torchmetrics, frechet_distance, kid_from_features, mmd2_unbiased
from difflab.eval.inception_score import inception_score, quality
from difflab.eval.modes import expected_modes, kl_to_uniform, mode_coverage, modes_per_10, tv_to_uniform
from difflab.nets.classifier import DigitClassifier


def _feats(n=400, d=8, seed=0, shift=0.0, scale=1.0, mix=None):
    """Correlated Gaussian features; the mixing matrix comes from ``mix`` (default: the seed itself)."""
    a = np.random.default_rng(1000 + (seed if mix is None else mix)).normal(size=(d, d)) / np.sqrt(d)
    return np.random.default_rng(seed).normal(size=(n, d)) @ a * scale + shift


def _mnist_or_skip(split="test"):
    from difflab.data import get_dataset

    try:
        return get_dataset(f"mnist:{split}", download=False, verbose=False)
    except Exception as e:  # noqa: BLE001 - any missing/unverified file means: not cached here
        pytest.skip(f"MNIST is not cached: {e}")


def _shipped_classifier_or_skip():
    from difflab.models import SHIPPED_DIR

    if not (SHIPPED_DIR / "digit-classifier" / "model.safetensors").exists():
        pytest.skip("the shipped digit-classifier is not present")
    return clf.load_classifier("digit-classifier")


def _random_classifier(width=8, seed=0):
    torch.manual_seed(seed)
    return DigitClassifier(width=width).eval().requires_grad_(False)


# -- FID / KID ---------------------------------------------------------------------------------------------

def test_fid_of_a_set_with_itself_is_zero_and_grows_with_noise():
    f = _feats(500, 16)
    assert abs(fid_from_features(f, f)) < 1e-6
    g = np.random.default_rng(1).normal(size=f.shape)
    fids = [fid_from_features(f, f + s * g) for s in (0.05, 0.2, 0.5, 1.0)]
    assert all(b > a for a, b in zip(fids, fids[1:], strict=False)), fids
    assert fids[0] < 0.1 < fids[-1]


def test_frechet_distance_of_known_gaussians():
    # 1-D: (m1 - m2)^2 + s1^2 + s2^2 - 2 s1 s2 = (m1 - m2)^2 + (s1 - s2)^2
    assert frechet_distance([0.0], [[4.0]], [3.0], [[1.0]]) == pytest.approx(9 + 1)
    # diagonal covariances: sum over dims
    assert frechet_distance(np.zeros(3), np.diag([1.0, 4, 9]), np.ones(3), np.diag([4.0, 4, 4])) \
        == pytest.approx(3 + 1 + 0 + 1)


def test_ours_and_torchmetrics_frechet_agree_on_random_features():
    for seed, (shift, scale) in enumerate([(0.0, 1.0), (0.3, 1.5), (2.0, 0.5)]):
        a, b = _feats(300, 12, seed=seed), _feats(250, 12, seed=seed + 10, shift=shift, scale=scale)
        ours, tm = fid_from_features(a, b), fid_torchmetrics(a, b)
        assert ours == pytest.approx(tm, rel=1e-5, abs=1e-7), (ours, tm)


def test_kid_matches_torchmetrics_and_is_near_zero_for_one_distribution():
    from torchmetrics.image.kid import poly_mmd

    a, b = _feats(120, 6, seed=0), _feats(120, 6, seed=1, shift=0.5)
    tm = float(poly_mmd(torch.as_tensor(a), torch.as_tensor(b)))
    assert mmd2_unbiased(a, b) == pytest.approx(tm, rel=1e-9)
    same, _ = kid_from_features(_feats(400, 6, seed=2, mix=0), _feats(400, 6, seed=3, mix=0), subsets=20,
                                subset_size=200)
    far, _ = kid_from_features(_feats(400, 6, seed=2, mix=0), _feats(400, 6, seed=3, mix=0, shift=1.0), subsets=20,
                               subset_size=200)
    assert abs(same) < 0.1 and far > 3  # (x.y/d + 1)^3 on a unit shift in 6-D: ~9.5; same law: +-0.03


# -- Inception Score, modes ---------------------------------------------------------------------------------

def test_inception_score_bounds():
    perfect = torch.eye(10).repeat(30, 1)  # confident and balanced
    assert inception_score(perfect)[0] == pytest.approx(10.0, rel=1e-6)
    constant = torch.zeros(300, 10)
    constant[:, 3] = 1
    assert inception_score(constant)[0] == pytest.approx(1.0, abs=1e-6)
    uniform = torch.full((300, 10), 0.1)  # unsure about everything: also 1
    assert inception_score(uniform)[0] == pytest.approx(1.0, abs=1e-6)
    half = torch.eye(10)[torch.arange(300) % 5]  # 5 balanced classes
    assert inception_score(half)[0] == pytest.approx(5.0, rel=1e-6)
    assert quality(perfect) == 1.0 and quality(uniform) == pytest.approx(0.1)


def test_mode_counting_and_class_histogram():
    assert modes_per_10(torch.arange(20) % 10) == 10
    assert modes_per_10(torch.zeros(20)) == 1
    assert expected_modes() == pytest.approx(10 * (1 - 0.9 ** 10))
    g = np.random.default_rng(0)
    iid = g.integers(0, 10, size=100_000)
    assert modes_per_10(iid) == pytest.approx(expected_modes(), abs=0.02)
    h = np.bincount(iid, minlength=10)
    assert kl_to_uniform(h) < 1e-3 and tv_to_uniform(h) < 0.01
    assert kl_to_uniform([5, 0, 0, 0]) == pytest.approx(np.log(4)) and tv_to_uniform([5, 0, 0, 0]) == 0.75
    cov = mode_coverage([0, 1, 1, 2, 2, 2, 3, 3, 3, 3], num_classes=10)
    assert cov["classes_covered"] == 4 and cov["modes_per_10"] == 4 and cov["class_hist"][3] == 4


def test_modes_of_true_mnist_labels_is_about_6_5():
    ds = _mnist_or_skip("test")
    # Random batches of 10 (the test file's own order is not i.i.d.: consecutive labels give 6.86).
    labels = ds.labels[torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))]
    m = modes_per_10(labels)
    p = np.bincount(ds.labels.numpy(), minlength=10) / len(ds)
    assert m == pytest.approx(expected_modes(probs=p), abs=0.08)
    assert 6.4 < m < 6.6


def test_shipped_classifier_on_real_mnist():
    model = _shipped_classifier_or_skip()
    ds = _mnist_or_skip("test")
    x, y = ds.as_tensors()
    x, y = x[:1000], y[:1000]
    pred = clf.predict(model, x)
    assert float((pred == y).float().mean()) > 0.98
    assert modes_per_10(pred) == pytest.approx(modes_per_10(y), abs=0.05)
    masked = clf.predict(model, x, mask="otsu")
    assert float((masked == y).float().mean()) > 0.97


# -- diversity -----------------------------------------------------------------------------------------------

def test_vendi_identical_is_one_orthogonal_is_n():
    x = torch.randn(1, 16).repeat(7, 1)
    assert vendi_score(x) == pytest.approx(1.0, abs=1e-6)
    assert vendi_score(torch.eye(7)) == pytest.approx(7.0, rel=1e-6)
    assert vendi_score(torch.eye(30)[:12]) == pytest.approx(12.0, rel=1e-6)  # n < d path
    assert vendi_score(K=np.eye(5)) == pytest.approx(5.0)
    two = torch.cat([torch.eye(4)[:1].repeat(5, 1), torch.eye(4)[1:2].repeat(5, 1)])
    assert vendi_score(two) == pytest.approx(2.0, rel=1e-6)


def test_prdc_sanity():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(600, 4, generator=g), torch.randn(600, 4, generator=g)
    r = prdc(real, fake, k=5)
    assert r["precision"] > 0.8 and r["recall"] > 0.8 and r["coverage"] > 0.8 and 0.7 < r["density"] < 1.3
    far = prdc(real, fake + 20, k=5)
    assert far["precision"] == far["recall"] == far["density"] == far["coverage"] == 0
    collapsed = prdc(real, torch.zeros(600, 4) + 0.01 * fake, k=5)  # good quality, no diversity
    assert collapsed["precision"] > 0.9 and collapsed["recall"] < 0.2 and collapsed["coverage"] < 0.2


def test_pairwise_distances_and_iou():
    a = -torch.ones(2, 1, 4, 4)
    a[0, 0, :2] = 1
    a[1, 0, 2:] = 1
    d = iou_distance_matrix(a)
    assert d[0, 1] == pytest.approx(1.0) and d[0, 0] == 0
    same = torch.randn(10, 1, 4, 4).clamp(-1, 1)[:1].repeat(10, 1, 1, 1)
    assert mean_pairwise_distance(same, "l2", 10) == pytest.approx(0, abs=1e-6)
    assert mean_pairwise_distance(same, "iou", 5) == pytest.approx(0, abs=1e-6)
    assert mean_pairwise_distance(torch.eye(4), "l2") == pytest.approx(np.sqrt(2))


def test_otsu_mask_removes_background_haze():
    x = torch.full((2, 1, 8, 8), -0.8)  # faint grey background
    x[:, :, 2:6, 3:5] = 0.9  # a bright stroke
    m = clf.otsu_mask(x)
    assert (m[:, :, 2:6, 3:5] == 0.9).all()
    assert (m[:, :, 0] == -1).all() and (m == -1).sum() == 2 * (64 - 8)
    flat = torch.zeros(1, 1, 4, 4)
    assert torch.equal(clf.otsu_mask(flat), flat)  # a constant image is left alone


# -- classifier shipping and end-to-end evaluation ----------------------------------------------------------

def test_export_shipped_round_trip(tmp_path):
    import difflab
    from difflab.config import load_config
    from difflab.export import export_shipped
    from difflab.training.checkpoint import save_checkpoint

    cfg = load_config(None, ["model.task=classifier", "loss.name=ce", "model.net.width=8", "data.name=synthetic"])
    net = _random_classifier(8, seed=3)
    with torch.no_grad():
        for b in net.modules():
            if isinstance(b, torch.nn.BatchNorm2d):
                b.running_mean.normal_(0, 0.1)
                b.running_var.uniform_(0.5, 2)
    save_checkpoint(tmp_path / "run" / "checkpoints" / "ckpt-00000005", config=cfg.to_dict(),
                    model=net.state_dict(), ema=net.state_dict())
    dest = export_shipped(tmp_path / "run", "my-classifier", dest_root=tmp_path / "models", extra={"acc": 0.5})
    assert sorted(p.name for p in dest.iterdir()) == ["config.json", "model.safetensors"]
    loaded = difflab.load(dest)
    assert loaded.difflab_config.model.task == "classifier"
    x = torch.rand(16, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(loaded(x), net(x), atol=2e-2, rtol=1e-2)
        assert loaded.state_dict()["stem.0.weight"].dtype == torch.float32


def test_evaluate_images_all_fast_metrics(tmp_path, monkeypatch):
    from difflab.eval.run import evaluate_images, format_table

    monkeypatch.setenv("DIFFLAB_CACHE", str(tmp_path / "cache"))
    from difflab.data import get_dataset

    x = get_dataset("synthetic:train:60").as_tensors()[0]
    net = _random_classifier()
    res = evaluate_images(x, "is,fid_classifier,kid_classifier,modes,quality,diversity,prdc,vendi",
                          ref="synthetic:test:50", classifier=net)
    for k in ("is", "fid_classifier", "kid_classifier", "modes_per_10", "classes_covered", "quality", "pairwise_l2",
              "pairwise_iou", "pairwise_features", "precision", "recall", "density", "coverage", "vendi",
              "vendi_per_10"):
        assert k in res and np.isfinite(res[k]), k
    assert res["n"] == 60 and res["fid_classifier_n_ref"] == 50
    assert 1 <= res["is"] <= 10 and 1 <= res["modes_per_10"] <= 10
    cached = list((tmp_path / "cache" / "fid_stats").glob("clf-*__synthetic-test-50__n50.npz"))
    assert len(cached) == 1
    again = evaluate_images(x, "fid_classifier", ref="synthetic:test:50", classifier=net)
    assert again["fid_classifier"] == pytest.approx(res["fid_classifier"])
    self_fid = evaluate_images(get_dataset("synthetic:test:50").as_tensors()[0], "fid_classifier",
                               ref="synthetic:test:50", classifier=net)
    assert abs(self_fid["fid_classifier"]) < 1e-4
    assert "fid_classifier" in format_table(res, "synthetic:test:50")


def test_cli_eval_real_data(tmp_path, monkeypatch):
    _shipped_classifier_or_skip()
    _mnist_or_skip("test")
    import json

    from difflab.cli import main

    monkeypatch.setenv("DIFFLAB_FID_CACHE", str(tmp_path / "fid_stats"))
    out = tmp_path / "r.json"
    rc = main(["eval", "--real", "mnist:test", "--n", "200", "--metrics", "is,fid_classifier,modes",
               "--ref", "mnist:train:500", "--json", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["n"] == 200 and res["real"] == "mnist:test" and res["fid_classifier_n_ref"] == 500
    assert res["is"] > 8.5 and res["modes_per_10"] > 5.5 and "modes_per_10_true" in res
    assert main(["eval", "--metrics", "nope", "--real", "mnist:test"]) == 2


@pytest.mark.slow
def test_inception_features_smoke():
    from difflab.eval.features import InceptionFeatures

    try:
        net = InceptionFeatures()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    f = net(x)
    assert f.shape == (2, 2048) and torch.isfinite(f).all() and (f >= 0).all()


def test_heatmap_and_embedding_plots(tmp_path):
    from difflab.viz.plots import heatmap, umap_plot

    p = heatmap(np.array([[1.0, np.nan], [2.0, 3.0]]), [0, 0.1], [1, 10], tmp_path / "h.png", xlabel="S_churn",
                ylabel="pg_weight", title="t")
    assert p.stat().st_size > 1000
    g = np.random.default_rng(0)
    real, gen = g.normal(size=(200, 8)), g.normal(size=(30, 8)) + 1
    info = umap_plot(real, gen, tmp_path / "u.png", real_labels=g.integers(0, 10, 200), batch=range(10),
                     gen_labels=g.integers(0, 10, 30), method="pca")
    assert info["method"] == "pca" and (tmp_path / "u.png").stat().st_size > 1000


def test_fold_null_label_gives_the_same_unconditional_denoiser(tmp_path, monkeypatch):
    import torch

    import difflab
    from difflab.config import load_config
    from difflab.export import export_shipped
    from difflab.training.trainer import Trainer

    monkeypatch.setattr(Trainer, "preview", lambda self: None)
    Trainer(load_config("configs/tiny.yaml", [f"out={tmp_path / 'run'}", "max_steps=2", "limit=32", "progress=false"])).run()
    export_shipped(tmp_path / "run", "unc", dest_root=tmp_path / "ship", dtype=torch.float32, unconditional=True)
    cond = difflab.load(tmp_path / "run")
    unc = difflab.load(tmp_path / "ship" / "unc")
    assert unc.difflab_config.model.num_classes == 0
    x, sigma = torch.randn(3, 1, 28, 28), torch.tensor([0.1, 1.0, 10.0])
    null = torch.full((3,), 10)
    torch.testing.assert_close(unc(x, sigma), cond(x, sigma, class_labels=null), rtol=1e-5, atol=1e-5)


def test_embedding_is_differentiable_and_matches_the_fid_features():
    """The PG feature kernel's embedding: the classifier's penultimate features, with a gradient to every pixel."""
    from difflab.eval.features import ClassifierFeatures

    f = clf.embedding("digit-classifier")
    x = (torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 1.8 - 0.9).requires_grad_(True)
    z = f(x)
    assert z.shape == (3, ClassifierFeatures("digit-classifier").num_features)
    torch.testing.assert_close(z.detach(), ClassifierFeatures("digit-classifier")(x.detach()), rtol=1e-5, atol=1e-5)
    (g,) = torch.autograd.grad(z.square().sum(), x)
    assert g.abs().sum(dim=(1, 2, 3)).min() > 0
    assert not any(p.requires_grad for p in clf.load_classifier("digit-classifier").parameters())


def test_load_classifier_keeps_a_module_where_it_is_and_picks_the_default_device():
    net = DigitClassifier(width=8)
    assert clf.load_classifier(net) is net and not net.training
    named = clf.load_classifier("digit-classifier")
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert next(named.parameters()).device.type == want
    assert clf.load_classifier("digit-classifier", device="cpu") is clf.load_classifier("digit-classifier", "cpu")

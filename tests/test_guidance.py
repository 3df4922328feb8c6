"""Guidance: CFG and classifier guidance against exact mixture denoisers, particle guidance's sign, kernels,
grouping and errors. Everything runs on tiny 1-D / 2-D problems with exact denoisers."""

from __future__ import annotations

import math

import pytest
import torch

from difflab.data.toy import GaussianMixture, ring_mixture
from difflab.experiments.ring import count_modes, mean_pairwise_distance, run_gmm_experiment, sample_runs
from difflab.guidance import ClassifierFreeGuidance, ClassifierGuidance, Guidance, ParticleGuidance
from difflab.guidance.kernels import angle_sq, iou_distance, iou_distance_reference, iou_similarity
from difflab.sampling import SAMPLERS, karras_sigmas


class CondMixture:
    """Exact conditional denoiser of a mixture: label k < K -> component k alone, label K (null) -> mixture."""

    def __init__(self, gm: GaussianMixture):
        self.gm = gm
        self.num_classes = gm.means.shape[0]
        self.parts = [GaussianMixture(gm.means[k:k + 1], gm.stds[k]) for k in range(self.num_classes)]
        self.calls = []

    def __call__(self, x, sigma, class_labels=None, **cond):
        self.calls.append(x.shape[0])
        out = self.gm(x, sigma)
        for k, part in enumerate(self.parts):
            m = class_labels == k
            if m.any():
                out[m] = part(x[m], sigma[m])
        return out



@pytest.fixture
def two_modes():
    return GaussianMixture([[-1.5, 0.0], [1.5, 0.0]], 0.3)


def _x(B=6, dim=2, seed=0, scale=1.0):
    return scale * torch.randn(B, dim, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------------------
# Classifier-free guidance


def test_cfg_conventions_on_exact_mixture(two_modes):
    D = CondMixture(two_modes)
    x, sigma = _x(6), torch.full((6,), 0.8)
    labels = torch.tensor([0, 1, 0, 1, 1, 0])
    d_c = D(x, sigma, class_labels=labels)
    d_u = D(x, sigma, class_labels=torch.full((6,), 2))
    assert not torch.allclose(d_c, d_u)
    cases = [("ntnu", 0.0, d_c), ("ntnu", -1.0, d_u), ("ho", 1.0, d_c), ("ho", 0.0, d_u),
             ("ntnu", 0.2, 1.2 * d_c - 0.2 * d_u), ("ho", 1.2, 1.2 * d_c - 0.2 * d_u)]
    for convention, w, want in cases:
        D.calls.clear()
        got = ClassifierFreeGuidance(w, convention=convention).wrap(D)(x, sigma, class_labels=labels)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        assert D.calls == [12], "conditional and unconditional halves must go through D in one batched call"
    assert ClassifierFreeGuidance(weight=0.2).convention == "ntnu"


def test_cfg_sigma_window_and_errors(two_modes):
    D = CondMixture(two_modes)
    x, labels = _x(4), torch.tensor([0, 1, 1, 0])
    cfg = ClassifierFreeGuidance(2.0, sigma_window=(0.1, 1.0))
    D.calls.clear()
    out = cfg.wrap(D)(x, torch.full((4,), 5.0), class_labels=labels)  # outside: conditional alone
    torch.testing.assert_close(out, D(x, torch.full((4,), 5.0), class_labels=labels))
    assert D.calls[0] == 4
    inside = cfg.wrap(D)(x, torch.full((4,), 0.5), class_labels=labels)
    s = torch.full((4,), 0.5)
    torch.testing.assert_close(inside, 3 * D(x, s, class_labels=labels) - 2 * D(x, s, class_labels=torch.full((4,), 2)))
    with pytest.raises(ValueError, match="null_label"):
        ClassifierFreeGuidance(0.2).wrap(lambda x, s, **c: x)
    with pytest.raises(ValueError, match="convention"):
        ClassifierFreeGuidance(0.2, convention="foo")
    with pytest.raises(ValueError, match="class_labels"):
        ClassifierFreeGuidance(0.2).wrap(D)(x, torch.ones(4))
    # An explicit null label works for plain functions.
    ClassifierFreeGuidance(0.2, null_label=2).wrap(lambda x, s, **c: x)(x, torch.ones(4), class_labels=labels)


def test_cfg_in_sampler_reaches_the_labelled_component(two_modes):
    D = CondMixture(two_modes)
    sig = karras_sigmas(12, sigma_max=10.0)
    x = sig[0] * _x(40, seed=1)
    labels = torch.arange(40) % 2
    out = SAMPLERS["heun"](D, x, sig, guidance=ClassifierFreeGuidance(0.2), cond={"class_labels": labels})
    assert (two_modes.nearest_mode(out) == labels).all()


# ---------------------------------------------------------------------------------------------------------
# Classifier guidance


def test_classifier_guidance_with_exact_classifier_is_the_conditional_denoiser(two_modes):
    classifier = lambda x, sigma: two_modes.log_resp(x, sigma)  # log p(c | x, sigma), exact
    parts = CondMixture(two_modes).parts
    x = _x(8, scale=2.0)
    for s in (0.05, 0.5, 3.0):
        sigma = torch.full((8,), s)
        for c in (0, 1):
            got = ClassifierGuidance(classifier, scale=1.0, labels=c).wrap(two_modes)(x, sigma)
            torch.testing.assert_close(got, parts[c](x, sigma), rtol=1e-4, atol=1e-4)


def test_classifier_guidance_reaches_target_component(two_modes):
    classifier = lambda x, sigma: two_modes.log_resp(x, sigma)
    sig = karras_sigmas(16, sigma_max=10.0)
    x = sig[0] * _x(60, seed=2)
    cg = ClassifierGuidance(classifier, scale=1.0, labels=1)
    seen = []
    out = SAMPLERS["heun"](two_modes, x, sig, guidance=cg, callback=lambda f: seen.append(f["cg_grad_norm"]))
    assert (two_modes.nearest_mode(out) == 1).all()
    assert len(seen) == 16 and seen[0].shape == (60,)
    free = SAMPLERS["heun"](two_modes, x, sig)
    assert 0 < (two_modes.nearest_mode(free) == 1).float().mean() < 1
    with pytest.raises(ValueError, match="labels"):
        ClassifierGuidance(classifier, 1.0).wrap(two_modes)(x, torch.ones(60))


# ---------------------------------------------------------------------------------------------------------
# Particle guidance: sign and effect


def test_pg_paper_raises_modes_and_spread_on_the_ring():
    gm = ring_mixture(10, 1.0, 0.005)
    runs, P, steps = 30, 10, 20
    iid = sample_runs(gm, runs, P, steps, None, seed=3)
    m_iid = count_modes(iid, gm, P).mean()
    assert 5.8 < m_iid < 7.3  # 10 (1 - 0.9^10) = 6.51
    for kernel in ("rbf", "cyclic"):
        pg = sample_runs(gm, runs, P, steps, ParticleGuidance(1.0, kernel=kernel, group_size=P), seed=3)
        assert count_modes(pg, gm, P).mean() > m_iid + 1.0, kernel
        assert mean_pairwise_distance(pg, P).mean() > mean_pairwise_distance(iid, P).mean(), kernel
    # the angle kernel repels along the ring only, so its samples stay on the modes
    assert (torch.cdist(pg.double(), gm.means).min(1).values < 0.25).float().mean() > 0.95


def test_pg_thesis_sign_attracts_in_2d():
    """DESIGN §4: the thesis' update (d <- d - k_PG grad sum k, h through the median) ends in ~3 modes on
    the 2-D ring: the attraction wins."""
    gm = ring_mixture(10, 1.0, 0.005)
    runs, P, steps = 30, 10, 40
    iid = count_modes(sample_runs(gm, runs, P, steps, None, seed=3), gm, P).mean()
    th = count_modes(sample_runs(gm, runs, P, steps, ParticleGuidance(1.0, variant="thesis", group_size=P),
                                 seed=3), gm, P).mean()
    assert th < iid - 1.5


def _one_step(pg, z):
    """With D = 0 (and on='x'), D' is the PG displacement that the sampler moves x along."""
    return pg.wrap(lambda x, s: torch.zeros_like(x))(z, torch.ones(z.shape[0], dtype=z.dtype))


def _mean_dist(z):
    n = z.shape[0]
    return torch.cdist(z, z).sum() / (n * (n - 1))


@pytest.mark.parametrize("dim", [2, 256])
def test_pg_one_step_direction(dim):
    """Paper: repels (mean distance grows). Thesis with h through the median: the mean distance grows too,
    with the median detached it attracts -- the repulsion comes from the bandwidth's gradient."""
    for t in range(5):
        g = torch.Generator().manual_seed(t)
        n = int(torch.randint(2, 30, (1,), generator=g))
        z = torch.rand(n, dim, generator=g, dtype=torch.float64) * 2 - 1
        for kw, grows in [({}, True), ({"variant": "thesis"}, True),
                          ({"variant": "thesis", "detach_bandwidth": True}, False),
                          ({"variant": "thesis", "bandwidth": 0.5}, False)]:
            step = _one_step(ParticleGuidance(1.0, schedule="constant", on="x", **kw), z)
            z1 = z + 1e-5 * step / step.norm(dim=1).max()
            assert (_mean_dist(z1) > _mean_dist(z)) == grows, (kw, n)


def test_pg_splits_a_pair_between_two_symmetric_modes():
    gm = GaussianMixture([[-1.0], [1.0]], 0.1)
    runs = 100
    split = lambda x: (gm.nearest_mode(x).reshape(runs, 2).diff(dim=1) != 0).float().mean()
    iid = sample_runs(gm, runs, 2, 16, None, seed=0, sigma_max=20.0)
    pg = sample_runs(gm, runs, 2, 16, ParticleGuidance(1.0, group_size=2), seed=0, sigma_max=20.0)
    assert 0.3 < split(iid) < 0.7
    assert split(pg) >= 0.95


def test_pg_reproduces_the_thesis_code():
    """variant='thesis' == compute_particle_guidance_grad of the thesis (transcribed), scaled by k_PG = w t."""

    def thesis_grad(xs, distance):
        with torch.enable_grad():
            xs = (xs.detach().clone() + 1) * 0.5
            xs.requires_grad = True
            n = xs.shape[0]
            if distance == "l2":
                dm = torch.cdist(xs.flatten(1), xs.flatten(1), p=2)
            else:
                dm = torch.stack([1 - iou_distance_reference(xs.flatten(1), xs.flatten(1))[i] for i in range(n)])
                dm = 1 - dm
            iu = torch.triu_indices(n, n, offset=1)
            dl = dm[iu[0], iu[1]]
            h = dl.median() ** 2 / math.log(n)
            (-dl / h).exp().sum().backward()
            return xs.grad

    g = torch.Generator().manual_seed(0)
    den = torch.rand(7, 1, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    x = torch.randn(7, 1, 4, 4, generator=g, dtype=torch.float64)
    sigma, w = 0.7, 1.3
    for kernel, distance in [("rbf", "l2"), ("iou", "iou")]:
        pg = ParticleGuidance(w, kernel=kernel, variant="thesis")
        got = pg.wrap(lambda x, s: den.clone())(x, torch.full((7,), sigma, dtype=torch.float64))
        d_thesis = (x - den) / sigma - w * sigma * thesis_grad(den, distance)
        torch.testing.assert_close((x - got) / sigma, d_thesis, rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------------------------------------------------
# Kernels


def test_iou_kernel_matches_slow_reference_and_ties_have_zero_gradient():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(5, 12, generator=g, dtype=torch.float64)
    a[a < 0.3] = 0.0  # images with background
    a[3] = a[1]  # an exact duplicate
    b = torch.rand(4, 12, generator=g, dtype=torch.float64)
    torch.testing.assert_close(iou_distance(a[None], b[None])[0], iou_distance_reference(a, b))
    torch.testing.assert_close(iou_distance(a[None], a[None])[0], iou_distance_reference(a, a))
    z = torch.zeros(2, 6, dtype=torch.float64)
    assert iou_similarity(z[None], z[None]).eq(1).all()  # two empty images are identical
    # ties (a particle with itself, exact duplicates) get a zero subgradient
    leaf = a.clone().requires_grad_(True)
    iou_similarity(leaf[None], leaf[None])[0].diagonal().sum().backward()
    assert leaf.grad.abs().max() == 0


def test_pg_iou_kernel_energy():
    g = torch.Generator().manual_seed(1)
    imgs = torch.rand(4, 1, 3, 3, generator=g) * 2 - 1
    pg = ParticleGuidance(weight=1.0, kernel="iou", bandwidth=0.5, schedule="constant")
    u = ((imgs + 1) / 2).reshape(4, -1)
    E, h = pg.energy(u)
    k = torch.exp(-iou_distance_reference(u.double(), u.double()) / 0.5)
    torch.testing.assert_close(E.double(), 0.5 * k.sum(), rtol=1e-5, atol=1e-6)
    out = pg.wrap(lambda x, s: x.clone())(imgs, torch.ones(4))
    assert torch.isfinite(out).all() and not torch.equal(out, imgs)


def test_cyclic_kernel_wraps_and_feature_kernel_matches_rbf():
    a = torch.tensor([[[math.cos(3.1), math.sin(3.1)], [2 * math.cos(-3.1), 2 * math.sin(-3.1)]]],
                     dtype=torch.float64)
    q = angle_sq(a, a)[0]
    assert abs(float(q[0, 1]) - (2 * math.pi - 6.2) ** 2) < 1e-9 and float(q[0, 0]) == 0.0
    # A linear feature map f(z) = 3 z leaves the median-bandwidth RBF and its gradient unchanged.
    x = _x(6, dim=3, seed=4, scale=2.0)
    s = torch.full((6,), 0.5)
    D = lambda x, s: 0.5 * x
    rbf = ParticleGuidance(1.0, kernel="rbf").wrap(D)(x, s)
    feat = ParticleGuidance(1.0, kernel="feature", features=lambda z: 3 * z).wrap(D)(x, s)
    torch.testing.assert_close(rbf, feat, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="2-D points"):
        ParticleGuidance(1.0, kernel="cyclic").wrap(D)(x, s)


# ---------------------------------------------------------------------------------------------------------
# Groups, reference set, schedules, samplers, errors


def test_group_size_isolates_groups():
    D = lambda x, s: 0.3 * x
    x = _x(8, seed=5, scale=3.0)
    s = torch.full((8,), 2.0)
    pg = ParticleGuidance(1.0, group_size=4)
    out = pg.wrap(D)(x, s)
    alone = ParticleGuidance(1.0).wrap(D)(x[:4], s[:4])
    torch.testing.assert_close(out[:4], alone)
    x2 = x.clone()
    x2[4:] += 10.0
    torch.testing.assert_close(pg.wrap(D)(x2, s)[:4], out[:4])
    assert pg.last_info["pg_bandwidth"].shape == (2,)
    with pytest.raises(ValueError, match="group_size"):
        pg.wrap(D)(x[:6], s[:6])


def test_reference_set_repels_a_single_particle():
    ref = torch.tensor([[0.0, 0.0]])
    pg = ParticleGuidance(1.0, on="x", schedule="constant", bandwidth=1.0, reference=ref)
    x = torch.tensor([[0.5, 0.2]])
    out = pg.wrap(lambda x, s: x.clone())(x, torch.ones(1))
    assert float(((out - x) * x).sum()) > 0  # pushed away from the reference point
    with pytest.raises(ValueError, match="at least 2 particles"):
        ParticleGuidance(1.0).wrap(lambda x, s: x)(x, torch.ones(1))


def test_schedules():
    s = torch.tensor([0.05, 0.5, 5.0])
    torch.testing.assert_close(ParticleGuidance(2.0, schedule="sigma").weight_at(s), 2 * s.double())
    torch.testing.assert_close(ParticleGuidance(2.0, schedule="constant").weight_at(s), torch.full((3,), 2.0).double())
    w = ParticleGuidance(2.0, schedule="window", sigma_window=(0.1, 1.0)).weight_at(s)
    torch.testing.assert_close(w, torch.tensor([0.0, 1.0, 0.0]).double())
    w = ParticleGuidance(2.0, schedule="constant", sigma_window=(1.0, 10.0)).weight_at(s)
    torch.testing.assert_close(w, torch.tensor([0.0, 0.0, 2.0]).double())


@pytest.mark.parametrize("kwargs, match", [
    ({"bandwidth": -1.0}, "bandwidth"), ({"bandwidth": 0.0}, "bandwidth"), ({"bandwidth": "mean"}, "bandwidth"),
    ({"kernel": "cosine"}, "kernel"), ({"schedule": "cosine"}, "schedule"), ({"variant": "other"}, "variant"),
    ({"on": "eps"}, "on"), ({"schedule": "window"}, "sigma_window"), ({"sigma_window": (2.0, 1.0)}, "sigma_window"),
    ({"kernel": "feature"}, "features"), ({"group_size": 1}, "group_size"), ({"weight": float("nan")}, "weight"),
])
def test_pg_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ParticleGuidance(**{"weight": 1.0, **kwargs})


def test_contract_constructors():
    ParticleGuidance(weight=1.0, kernel="rbf", bandwidth="median", schedule="sigma")
    ParticleGuidance(weight=1.0, kernel="iou", bandwidth=0.5, schedule="constant")
    ClassifierFreeGuidance(weight=0.2)
    assert isinstance(ParticleGuidance(), Guidance)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_pg_works_with_every_sampler(name):
    gm = ring_mixture(10, 1.0, 0.005)
    sig = karras_sigmas(6, sigma_min=0.002, sigma_max=10.0)
    x = sig[0] * _x(8, seed=6)
    pg = ParticleGuidance(1.0, group_size=4)
    infos = []
    out = SAMPLERS[name](gm, x, sig, generator=torch.Generator().manual_seed(0), guidance=[pg],
                         callback=infos.append)
    ref = SAMPLERS[name](gm, x, sig, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert not torch.allclose(out, ref)
    if infos and "pg_grad_norm" in infos[0]:
        assert infos[0]["pg_grad_norm"].shape == (8,) and "ode_grad_norm" in infos[0]
    if name in ("heun", "euler"):
        assert infos and infos[0]["pg_grad_norm"].shape == (8,) and infos[0]["pg_weight"] > 0


def test_gmm_experiment_tiny(tmp_path):
    res = run_gmm_experiment(pg_weights=(0.0, 1.0), churns=(0.0, 10.0), runs=3, particles=4, steps=4)
    assert set(res["kernels"]) == {"rbf", "cyclic"}
    assert len(res["kernels"]["rbf"]["modes"]) == 2 and len(res["kernels"]["rbf"]["modes"][0]) == 2
    pytest.importorskip("matplotlib")
    from difflab.experiments.ring import plot_heatmaps

    paths = plot_heatmaps(res, str(tmp_path))
    assert all((tmp_path / p.split("/")[-1]).stat().st_size > 0 for p in paths)

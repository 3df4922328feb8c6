"""Issue 22: autoguidance, guidance intervals, APG and CFG++ against exact Gaussian class-conditional denoisers."""

import pytest
import torch

from difflab.data.toy import GaussianMixture
from difflab.experiments.guidance_toy import ClassMixture
from difflab.guidance import AdaptiveProjectedGuidance, AutoGuidance, CFGPlusPlus, ClassifierFreeGuidance
from difflab.recipe import SamplingSpec
from difflab.sampling import karras_sigmas, sample_euler, sample_heun


class CondGaussians(ClassMixture):
    """Exact class-conditional denoiser: class c is N(mu_c, s^2 I) in 2-D; label K (null) is their equal mixture
    (the toy's ClassMixture, counting the batch size of every call)."""

    def __init__(self, s=0.3, calls=None):
        mus = torch.tensor([[1.0, 0.5], [-1.0, 0.2]])
        super().__init__([GaussianMixture(mus[k: k + 1], s) for k in range(2)])
        self.calls = calls if calls is not None else []

    def __call__(self, x, sigma, class_labels=None):
        self.calls.append(x.shape[0])
        return super().__call__(x, sigma, class_labels)


def _x(n=6, seed=0):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed)) * 1.5


LABELS = torch.tensor([0, 1, 0, 1, 0, 1])


def test_autoguidance_weight_one_is_the_good_model_exactly_and_zero_the_guide():
    good, bad = CondGaussians(0.3), CondGaussians(0.6)
    x = _x()
    for w, want in ((1.0, good), (0.0, bad)):
        Dw = AutoGuidance(bad, weight=w).wrap(good)
        assert torch.equal(Dw(x, 0.7, class_labels=LABELS), want(x, 0.7, class_labels=LABELS))
    Dw = AutoGuidance(bad, weight=2.5).wrap(good)
    d_g, d_b = good(x, 0.7, class_labels=LABELS), bad(x, 0.7, class_labels=LABELS)
    torch.testing.assert_close(Dw(x, 0.7, class_labels=LABELS), d_b + 2.5 * (d_g - d_b))
    assert not torch.allclose(d_g, d_b)


def test_autoguidance_outside_its_interval_is_unguided_and_skips_the_guide():
    calls = []
    good, bad = CondGaussians(0.3), CondGaussians(0.6, calls=calls)
    x = _x()
    Dw = AutoGuidance(bad, weight=3.0, sigma_window=(0.5, 2.0)).wrap(good)
    assert torch.equal(Dw(x, 5.0, class_labels=LABELS), good(x, 5.0, class_labels=LABELS))
    assert calls == [] and Dw.guidance.last_info["ag_active"] == 0.0
    assert not torch.allclose(Dw(x, 1.0, class_labels=LABELS), good(x, 1.0, class_labels=LABELS))
    assert calls == [6]
    # A per-sample sigma tensor: samples outside the window get the good model, the others the guided one.
    sig = torch.tensor([0.1, 1.0, 5.0, 1.5, 0.3, 2.0])
    out = Dw(x, sig, class_labels=LABELS)
    full = AutoGuidance(bad, weight=3.0).wrap(good)(x, sig, class_labels=LABELS)
    inside = (sig >= 0.5) & (sig <= 2.0)
    torch.testing.assert_close(out[inside], full[inside])
    torch.testing.assert_close(out[~inside], good(x, sig, class_labels=LABELS)[~inside])


def test_autoguidance_composes_after_cfg():
    good, bad = CondGaussians(0.3), CondGaussians(0.6)
    x = _x()
    cfg = ClassifierFreeGuidance(0.5)
    Dw = AutoGuidance(bad, weight=2.0).wrap(cfg.wrap(good))
    d_cfg = cfg.wrap(good)(x, 0.8, class_labels=LABELS)
    d_b = bad(x, 0.8, class_labels=LABELS)
    torch.testing.assert_close(Dw(x, 0.8, class_labels=LABELS), d_b + 2.0 * (d_cfg - d_b))


def test_autoguidance_rejects_a_guide_with_other_conditioning():
    class Uncond(CondGaussians):
        def __init__(self, s):
            super().__init__(s)
            self.num_classes = None  # declares no conditioning

    with pytest.raises(ValueError, match="num_classes"):
        AutoGuidance(Uncond(0.6)).wrap(CondGaussians())


def test_cfg_interval_outside_is_the_conditional_model():
    D, x = CondGaussians(), _x()
    g = ClassifierFreeGuidance(2.0, sigma_window=(0.2, 1.0)).wrap(D)
    assert torch.equal(g(x, 3.0, class_labels=LABELS), D(x, 3.0, class_labels=LABELS))
    assert not torch.allclose(g(x, 0.5, class_labels=LABELS), D(x, 0.5, class_labels=LABELS))


def _cfg_parts(D, x, sigma):
    return D(x, sigma, class_labels=LABELS), D(x, sigma, class_labels=torch.full_like(LABELS, 2))


def test_apg_with_eta_one_and_no_extras_is_cfg():
    D, x = CondGaussians(), _x()
    a = AdaptiveProjectedGuidance(1.5, eta=1.0).wrap(D)(x, 0.9, class_labels=LABELS)
    c = ClassifierFreeGuidance(1.5).wrap(D)(x, 0.9, class_labels=LABELS)
    torch.testing.assert_close(a, c)


def test_apg_removes_the_parallel_component_and_rescales():
    D, x = CondGaussians(), _x()
    d_c, d_u = _cfg_parts(D, x, 0.9)
    out = AdaptiveProjectedGuidance(2.0).wrap(D)(x, 0.9, class_labels=LABELS)
    upd = out - d_c
    torch.testing.assert_close((upd * d_c).sum(1), torch.zeros(6), atol=1e-5, rtol=0)
    assert upd.norm(dim=1).max() > 1e-3
    # Rescaling: the update is at most w * r per sample, and untouched where ||Delta|| <= r.
    r = float((d_c - d_u).norm(dim=1).median())
    upd_r = AdaptiveProjectedGuidance(2.0, norm_threshold=r, eta=1.0).wrap(D)(x, 0.9, class_labels=LABELS) - d_c
    assert (upd_r.norm(dim=1) <= 2.0 * r * (1 + 1e-5)).all()
    small = (d_c - d_u).norm(dim=1) <= r
    torch.testing.assert_close(upd_r[small], 2.0 * (d_c - d_u)[small])


def test_apg_reverse_momentum_accumulates_and_resets_per_trajectory():
    D, x = CondGaussians(), _x()
    d_c, d_u = _cfg_parts(D, x, 1.0)
    delta = d_c - d_u
    g = AdaptiveProjectedGuidance(1.0, eta=1.0, momentum=-0.5)
    Dg = g.wrap(D)
    torch.testing.assert_close(Dg(x, 1.0, class_labels=LABELS), d_c + delta)
    d_c2, d_u2 = _cfg_parts(D, x, 0.5)
    torch.testing.assert_close(Dg(x, 0.5, class_labels=LABELS), d_c2 + (d_c2 - d_u2) - 0.5 * delta)
    # sigma back up at the trajectory's first sigma: a new trajectory, the average starts again.
    torch.testing.assert_close(Dg(x, 1.0, class_labels=LABELS), d_c + delta)


def test_cfgpp_with_euler_is_the_papers_update():
    """x_{i+1} = D_lam + sigma_{i+1} eps_u, D_lam = D_u + lam (D_c - D_u) (Chung et al. 2024, Algorithm 1)."""
    D, lam = CondGaussians(), 0.6
    sig = karras_sigmas(8, 0.02, 10.0)
    x0 = _x(6, 1) * 10.0
    out = sample_euler(D, x0.clone(), sig, guidance=CFGPlusPlus(lam, sigmas=sig), cond={"class_labels": LABELS})
    x = x0.clone()
    for i in range(len(sig) - 1):
        s, s_next = float(sig[i]), float(sig[i + 1])
        d_c, d_u = _cfg_parts(D, x, s)
        x = d_u + lam * (d_c - d_u) + s_next * (x - d_u) / s
    torch.testing.assert_close(out, x, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="grid"):
        CFGPlusPlus(0.5)


def test_every_transform_runs_under_heun_and_stays_finite():
    D, sig = CondGaussians(), karras_sigmas(6, 0.02, 10.0)
    x0 = _x(6, 2) * 10.0
    for g in (AdaptiveProjectedGuidance(1.0, norm_threshold=0.5, momentum=-0.5), CFGPlusPlus(0.5, sigmas=sig),
              [ClassifierFreeGuidance(0.5, sigma_window=(0.1, 3.0)), AutoGuidance(CondGaussians(0.6), 2.0)]):
        out = sample_heun(D, x0.clone(), sig, guidance=g, cond={"class_labels": LABELS})
        assert torch.isfinite(out).all() and out.abs().max() < 5


def test_spec_fields_validate_round_trip_and_build():
    spec = SamplingSpec(cfg_weight=1.0, cfg_method="apg", apg_norm=2.0, apg_momentum=-0.5, cfg_interval=[0.3, 5])
    assert spec.cfg_interval == (0.3, 5.0)
    assert SamplingSpec.from_dict(spec.to_dict()) == spec
    (g,) = spec.guidance(CondGaussians())
    assert isinstance(g, AdaptiveProjectedGuidance) and g.sigma_window == (0.3, 5.0) and g.momentum == -0.5
    (g,) = SamplingSpec(cfg_weight=0.5, cfg_method="cfgpp", steps=5, sampler="euler").guidance(CondGaussians())
    assert isinstance(g, CFGPlusPlus) and len(g.grid) == 6
    for bad, msg in ((dict(cfg_method="apg"), "needs --cfg-weight"), (dict(cfg_method="nope"), "--cfg-method"),
                     (dict(ag_weight=2.0), "needs --autoguidance"), (dict(cfg_interval=(0.1, 1)), "needs"),
                     (dict(cfg_weight=1.0, cfg_interval=(2, 1)), "lo <= hi"),
                     (dict(cfg_weight=1.0, apg_eta=0.5), "--cfg-method apg")):
        with pytest.raises(ValueError, match=msg):
            SamplingSpec(**bad)


def test_recommended_needs_a_known_model():
    with pytest.raises(ValueError, match="no shipped guide"):
        SamplingSpec(autoguidance="recommended").guidance(CondGaussians())


def test_cli_flags_map_onto_the_spec():
    from difflab.cli import build_parser, spec_from_args

    args = build_parser().parse_args(["sample", "mnist-cond", "--cfg-weight", "1", "--cfg-interval", "0.5,2",
                                      "--autoguidance", "recommended", "--ag-weight", "1.5"])
    spec = spec_from_args(args)
    assert (spec.cfg_interval, spec.autoguidance, spec.ag_weight) == ((0.5, 2.0), "recommended", 1.5)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sample", "mnist-cond", "--cfg-interval", "2"])


def test_shipped_guide_loads_and_recommended_uses_it():
    import difflab
    from difflab.guidance.autoguidance import RECOMMENDED

    G = difflab.load("mnist-cond-xs")
    assert G.difflab_config.model.num_classes == 10
    assert sum(p.numel() for p in G.parameters()) < 1_000_000

    class Named:  # a stand-in for the loaded mnist-cond: only its config name and num_classes are read
        num_classes = 10
        difflab_config = type("C", (), {"name": "mnist-cond"})()

    (ag,) = SamplingSpec(autoguidance="recommended").guidance(Named())
    assert isinstance(ag, AutoGuidance) and ag.weight == RECOMMENDED["mnist-cond"]["weight"]
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    out = ag.guide(x, 1.0, class_labels=torch.tensor([3, 7]))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_toy_cfg_drops_shared_modes_and_autoguidance_keeps_them():
    from difflab.experiments.guidance_toy import make_problem, summarize
    from difflab.sampling.generate import generate

    good, bad, m0 = make_problem()
    sig = karras_sigmas(16, 0.002, 10.0).tolist()
    labels = torch.zeros(600, dtype=torch.long)

    def run(g):
        x = generate(good, 600, (2,), sampler="heun", grid=sig, seed=0, guidance=g, cond={"class_labels": labels})
        return summarize(x, m0, 0.06, 3)

    plain, cfg, ag = run(None), run([ClassifierFreeGuidance(3.0)]), run([AutoGuidance(bad, 3.0)])
    assert abs(plain["shared_mass"] - 0.5) < 0.08 and plain["modes_kept"] == 6
    assert cfg["shared_mass"] < 0.25 and cfg["modes_kept"] <= 4
    assert abs(ag["shared_mass"] - 0.5) < 0.08 and ag["modes_kept"] == 6
    assert ag["mean_dist"] < 0.5 * plain["mean_dist"]  # autoguidance sharpens every mode alike


def test_unconditional_guide_is_the_cond_guide_with_its_null_label():
    import difflab

    U, C = difflab.load("mnist-uncond-xs"), difflab.load("mnist-cond-xs")
    assert not U.difflab_config.model.num_classes
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(U(x, 0.8), C(x, 0.8, class_labels=torch.full((3,), 10)), atol=3e-3, rtol=0)


def test_recommended_for_mnist_uncond_uses_its_interval():
    class Named:
        num_classes = None
        difflab_config = type("C", (), {"name": "mnist-uncond"})()

    (ag,) = SamplingSpec(autoguidance="recommended").guidance(Named())
    assert ag.sigma_window == (0.3, 5.0) and ag.weight == 2.0
    (ag,) = SamplingSpec(autoguidance="recommended", cfg_interval=(0.1, 1.0), ag_weight=3).guidance(Named())
    assert ag.sigma_window == (0.1, 1.0) and ag.weight == 3.0

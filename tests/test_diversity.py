"""Diversity methods (issue 16): the factory, the start/churn hooks, exact marginals of structured noise,
coverage on exact mixtures, SPELL, CADS, DPP/Vendi and the improved PG."""

import math

import pytest
import torch

from difflab.data.toy import GaussianMixture, ring_mixture
from difflab.eval.modes import modes_per_group
from difflab.guidance import DIVERSITY_METHODS, diversity
from difflab.guidance.spell import SparseRepellency
from difflab.guidance.structured import StructuredNoise, couple
from difflab.sampling import SAMPLERS, generate, karras_sigmas
from difflab.sampling.base import churn_noise, start_noise

TOY_D = lambda x, sigma, **c: 0.5 * x / (1 + torch.as_tensor(sigma).reshape(-1, *[1] * (x.ndim - 1)) ** 2) ** 0.5  # noqa: E731


def test_factory_every_method_with_every_sampler():
    assert "pg" in DIVERSITY_METHODS and "ortho" in DIVERSITY_METHODS
    sig = karras_sigmas(4, sigma_min=0.002, sigma_max=10.0, rho=7.0)
    ran = 0
    for name in DIVERSITY_METHODS:
        if name == "cads":
            continue
        for sname, fn in SAMPLERS.items():
            g = torch.Generator().manual_seed(0)
            x = sig[0] * torch.randn(8, 2, generator=g)
            try:
                ref = fn(TOY_D, x, sig, generator=torch.Generator().manual_seed(1))
            except (ValueError, TypeError):
                continue  # a sampler that does not take this grid / denoiser at all
            opts = {"classifier": ring_mixture(4).classifier} if name == "strata" else {}
            out = fn(TOY_D, x, sig, generator=torch.Generator().manual_seed(1),
                     guidance=diversity(name, group_size=4, strength=1.0, **opts))
            assert out.shape == ref.shape and torch.isfinite(out).all(), (name, sname)
            ran += 1
    assert ran >= 7 * 5


def test_bad_arguments_are_one_line_value_errors():
    for kw in [dict(group_size=0, strength=1.0), dict(group_size=4, strength=-1.0),
               dict(group_size=4, strength=float("nan"))]:
        with pytest.raises(ValueError):
            diversity("pg", **kw)
    with pytest.raises(ValueError, match="unknown diversity method"):
        diversity("nope", group_size=4, strength=1.0)
    with pytest.raises(ValueError, match="class-conditional"):
        diversity("cads", group_size=4, strength=1.0)
    with pytest.raises(ValueError, match="unconditional"):
        diversity("cads", group_size=4, strength=1.0, model=ring_mixture(10))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        diversity("ortho", group_size=4, strength=2.0)


@pytest.mark.parametrize("name", ["ortho", "pg", "spell", "dpp", "vendi"])
def test_strength_zero_is_iid(name):
    gm = ring_mixture(10)
    kw = dict(sampler="heun", steps=8, sigma_max=80.0, seed=3, S_churn=2.0)
    a = generate(gm, 20, (2,), **kw)
    b = generate(gm, 20, (2,), guidance=diversity(name, group_size=10, strength=0.0), **kw)
    assert torch.equal(a, b)


def test_structured_noise_each_particle_is_exactly_standard_normal():
    from scipy import stats

    g = torch.Generator().manual_seed(0)
    for F, n in [(2, 10), (16, 10), (3, 5)]:
        z = couple(torch.randn(4000 * n, F, generator=g), n)
        zg = z.reshape(4000, n, F).double()
        for i in (0, n - 1):  # each position in the group: mean 0, covariance I, N(0, 1) coordinates (KS)
            zi = zg[:, i]
            assert zi.mean(0).abs().max() < 4 / math.sqrt(4000)
            assert (torch.cov(zi.T) - torch.eye(F, dtype=torch.float64)).abs().max() < 0.12
            assert stats.kstest(zi[:, 0].numpy(), "norm").pvalue > 1e-3
        # and the group is spread: simplex directions (n <= F) or an evenly spread polygon (F = 2)
        u = zg / zg.norm(dim=-1, keepdim=True)
        cos = (u[:, 0] * u[:, 1]).sum(-1)
        if n <= F:
            assert torch.allclose(cos, torch.full_like(cos, -1 / (n - 1)), atol=1e-6)
        elif F == 2:
            assert torch.allclose(cos, torch.full_like(cos, math.cos(2 * math.pi / n)), atol=1e-6)
    iid = torch.randn(20, 2, generator=g)
    assert torch.equal(couple(iid, 10, 0.0), iid)
    with pytest.raises(ValueError, match="multiple of group_size"):
        couple(torch.randn(15, 2, generator=g), 10)


def test_hooks_are_called_by_generate_and_churn():
    calls = {"start": 0, "churn": 0}

    class Spy(StructuredNoise):
        def start_noise(self, z):
            calls["start"] += 1
            return super().start_noise(z)

        def churn_noise(self, eps):
            calls["churn"] += 1
            return super().churn_noise(eps)

    gm = ring_mixture(10)
    generate(gm, 20, (2,), steps=5, sigma_max=80.0, seed=0, S_churn=5.0, guidance=[Spy(10)], batch_size=10)
    assert calls["start"] == 2 and calls["churn"] == 2 * 5
    z = torch.randn(10, 2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(start_noise(None, z), z) and torch.equal(churn_noise([], z), z)


def _mixtures():
    w = torch.arange(1, 11, dtype=torch.float64)
    return ring_mixture(10), ring_mixture(10, weights=w / w.sum())


def _pool(gm: GaussianMixture, guidance, groups=200, seed=0, **kw):
    x = generate(gm, groups * 10, (2,), steps=40, sigma_max=80.0, seed=seed, guidance=guidance, **kw)
    k = gm.nearest_mode(x)
    f = torch.bincount(k, minlength=10).double() / len(k)
    near = torch.cdist(x.double(), gm.means).min(1).values < 0.25
    return float(modes_per_group(k, 10).mean()), 0.5 * float((f - gm.weights).abs().sum()), float(near.double().mean())


def test_structured_noise_raises_coverage_without_moving_the_pooled_frequencies():
    from difflab.experiments.diversity import tv_floor

    for gm in _mixtures():
        m0, tv0, on0 = _pool(gm, None)
        m1, tv1, on1 = _pool(gm, diversity("ortho", group_size=10, strength=1.0))
        floor = tv_floor(gm.weights, 2000, trials=200)
        assert m1 >= m0 + 0.5, (m0, m1)
        assert tv1 <= floor["p95"], (tv1, floor)  # pooled frequencies within the i.i.d. noise of the truth
        assert on1 >= on0 - 0.01


def test_pg_distorts_unequal_weights_where_structured_noise_does_not():
    _, gm = _mixtures()
    _, tv_pg, _ = _pool(gm, diversity("pg", group_size=10, strength=1.0), groups=100)
    _, tv_or, _ = _pool(gm, diversity("ortho", group_size=10, strength=1.0), groups=100)
    assert tv_pg > 0.1 > tv_or


def test_improved_pg_window_and_churn_keep_samples_on_modes():
    gm, _ = _mixtures()
    m_plain, _, on_plain = _pool(gm, diversity("pg", group_size=10, strength=1.0), groups=60)
    m_win, _, on_win = _pool(gm, diversity("pg", group_size=10, strength=30.0, sigma_window=(0.3, 10.0)), groups=60,
                             S_churn=5.0)
    assert on_win > on_plain + 0.1 and m_win > 8.5


@pytest.mark.parametrize("name", ["dpp", "vendi"])
def test_determinantal_potentials_raise_coverage(name):
    gm, _ = _mixtures()
    m0, _, _ = _pool(gm, None, groups=60)
    m1, _, _ = _pool(gm, diversity(name, group_size=10, strength=1.0), groups=60)
    assert m1 > m0 + 0.8


def test_spell_is_sparse_and_pushes_to_the_radius():
    sp = SparseRepellency(group_size=3, strength=1.0, radius=1.0)
    x0 = torch.tensor([[0.0, 0.0], [0.4, 0.0], [5.0, 5.0]])
    d = sp.correction(x0)
    assert torch.equal(d[0], torch.zeros(2)) and torch.equal(d[2], torch.zeros(2))  # first / far: untouched
    assert torch.allclose((x0[1] + d[1]).norm(), torch.tensor(1.0))  # exactly onto the sphere of radius r
    ref = SparseRepellency(group_size=1, strength=1.0, radius=1.0, reference=torch.zeros(1, 2))
    assert torch.allclose(ref.correction(torch.tensor([[0.5, 0.0]])), torch.tensor([[0.5, 0.0]]))
    gm, _ = _mixtures()
    m0, _, _ = _pool(gm, None, groups=60)
    m1, _, _ = _pool(gm, diversity("spell", group_size=10, strength=1.0, radius=0.5,
                                   sigma_window=(0.5, 80.0)), groups=60)
    assert m1 > m0 + 0.3


def test_cads_on_a_class_conditional_model():
    from difflab.models import load

    D = load("mnist-cond")
    cads = diversity("cads", group_size=2, strength=0.25, model=D)
    assert cads.gamma(80.0) == 0.0 and cads.gamma(0.002) == 1.0 and 0 < cads.gamma(3.0) < 1
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 10
    labels = torch.tensor([3, 10])  # a label and the null label
    plain = D(x, torch.full((2,), 10.0), class_labels=labels)
    out = cads.wrap(D)(x, 10.0, class_labels=labels)
    assert not torch.allclose(out[0], plain[0]) and torch.allclose(out[1], plain[1], atol=1e-5)
    low = cads.wrap(D)(x / 100, 0.01, class_labels=labels)
    assert torch.allclose(low, D(x / 100, torch.full((2,), 0.01), class_labels=labels))


def test_spec_cli_and_group_batches():
    from difflab.cli import build_parser, spec_from_args
    from difflab.recipe import SamplingSpec

    spec = spec_from_args(build_parser().parse_args(["sample", "mnist-uncond", "--diversity", "ortho",
                                                      "--diversity-strength", "0.5", "--group-size", "8"]))
    assert (spec.diversity, spec.diversity_strength, spec.group_size) == ("ortho", 0.5, 8)
    assert spec.batch_for_groups() == 64 and spec.replace(batch_size=60).batch_for_groups() == 56
    assert SamplingSpec(diversity="recommended").group() == 10
    assert SamplingSpec(pg_weight=1.0, pg_batch=10).batch_for_groups() == 60
    (g,) = SamplingSpec(diversity="ortho", diversity_strength=0.5).guidance(TOY_D)
    assert isinstance(g, StructuredNoise) and g.strength == 0.5 and g.group_size == 10
    assert SamplingSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="--diversity must be"):
        SamplingSpec(diversity="bogus")
    with pytest.raises(ValueError, match="need --diversity"):
        SamplingSpec(group_size=4)

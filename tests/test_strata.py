"""Class-stratified sampling (``diversity("strata", ...)``, issue 16): systematic class assignment with exact
per-position marginals, the exact posterior classifier of a toy mixture, and sampling on exact mixtures."""

import math

import pytest
import torch

from difflab.data.toy import GaussianMixture, ring_mixture
from difflab.eval.modes import modes_per_group
from difflab.guidance import diversity
from difflab.guidance.strata import ClassStrata, systematic_classes
from difflab.sampling import generate, get_sampler, karras_sigmas


def _unequal_ring():
    w = torch.arange(1, 11, dtype=torch.float64)
    return ring_mixture(10, weights=w / w.sum())


@pytest.mark.parametrize("G", [3, 7, 10])
def test_each_position_has_the_class_marginal_and_groups_are_stratified(G):
    p = torch.tensor([0.5, 0.27, 0.15, 0.05, 0.03], dtype=torch.float64)
    n = 20000
    for seed in (0, 1):
        c = systematic_classes(p, n, G, torch.Generator().manual_seed(seed)).reshape(n, G)
        for i in range(G):  # every position of the group: P(c_i = c) = p_c (binomial 5-sigma band)
            f = torch.bincount(c[:, i], minlength=5).double() / n
            assert ((f - p).abs() <= 5 * (p * (1 - p) / n).sqrt() + 1e-12).all(), (seed, i, f)
        counts = torch.stack([(c == k).sum(1) for k in range(5)], 1).double()  # [n, K] per-group counts
        assert ((counts >= (G * p).floor()) & (counts <= (G * p).ceil())).all()  # floor or ceil of G p_c
        assert (counts.var(0) < G * p * (1 - p)).all()  # lower variance than i.i.d. (binomial)


def test_pooled_counts_are_exact_when_group_times_weight_is_integer():
    g = torch.Generator().manual_seed(0)
    c = systematic_classes(torch.full((10,), 0.1, dtype=torch.float64), 500, 10, g).reshape(500, 10)
    assert (c.sort(1).values == torch.arange(10)).all()  # every group is a permutation of the 10 classes
    c = systematic_classes(torch.tensor([0.3, 0.2, 0.5, 0.0]), 500, 10, g).reshape(500, 10)
    assert (torch.stack([(c == k).sum(1) for k in range(4)], 1) == torch.tensor([3, 2, 5, 0])).all()
    assert len({tuple(r.tolist()) for r in c}) > 100  # random order within the group


def test_exact_posterior_classifier_turns_the_denoiser_into_the_component_denoiser():
    gm = _unequal_ring()
    g = torch.Generator().manual_seed(0)
    x = 1.5 * torch.randn(64, 2, generator=g, dtype=torch.float64)
    for sigma in (0.05, 0.5, 3.0):
        c = torch.randint(0, 10, (64,), generator=g)
        cg = diversity("strata", group_size=8, strength=1.0, classifier=gm.classifier, weights=gm.weights)
        cg.labels = c
        out = cg.wrap(gm)(x, sigma)
        ref = torch.stack([GaussianMixture(gm.means[k:k + 1], gm.stds[k]).denoiser(x[j:j + 1], sigma)[0]
                           for j, k in enumerate(c.tolist())])
        assert torch.allclose(out, ref, atol=1e-9), sigma
        assert torch.allclose(gm.classifier(x, sigma).exp().sum(1), torch.ones(64, dtype=torch.float64))


def _pool(gm, guidance, groups=200, sampler="heun", steps=40, seed=0, **kw):
    x = generate(gm, groups * 10, (2,), sampler=sampler, steps=steps, sigma_max=80.0, seed=seed, guidance=guidance,
                 **kw)
    k = gm.nearest_mode(x)
    f = torch.bincount(k, minlength=len(gm.weights)).double() / len(k)
    return k, float(modes_per_group(k, 10).mean()), 0.5 * float((f - gm.weights).abs().sum())


@pytest.mark.parametrize("sampler", ["heun", "euler", "dpmpp_2m"])
def test_strata_on_exact_mixtures_keeps_unequal_weights_and_adds_modes(sampler):
    from difflab.experiments.diversity import tv_floor

    for gm in (ring_mixture(10), _unequal_ring()):
        _, m0, _ = _pool(gm, None, sampler=sampler)
        st = diversity("strata", group_size=10, strength=1.0, classifier=gm.classifier, weights=gm.weights, seed=1)
        k, m1, tv1 = _pool(gm, st, sampler=sampler)
        assert (k == st.labels).double().mean() > 0.99  # each particle lands on the mode it was assigned
        # pooled frequencies: within the i.i.d. noise of the truth (exact for the equal ring: G p_c = 1)
        assert tv1 <= tv_floor(gm.weights, 2000, trials=200)["p95"], (sampler, tv1)
        # expected modes per group: sum_c min(1, G p_c) (10 for the equal ring, 150/55 + 5 = 7.73 unequal)
        best = float((10 * gm.weights).clamp_max(1).sum())
        assert m1 >= m0 + 1.0 and abs(m1 - best) < 0.2, (sampler, m0, m1, best)


def test_strength_zero_is_iid_bit_for_bit():
    gm = _unequal_ring()
    for sampler, kw in [("heun", {"S_churn": 2.0}), ("euler", {}), ("dpmpp_2m", {})]:
        a = generate(gm, 20, (2,), sampler=sampler, steps=8, sigma_max=80.0, seed=3, **kw)
        st = diversity("strata", group_size=10, strength=0.0, classifier=gm.classifier, weights=gm.weights)
        b = generate(gm, 20, (2,), sampler=sampler, steps=8, sigma_max=80.0, seed=3, guidance=st, **kw)
        assert torch.equal(a, b), sampler


def test_assignment_is_recorded_seeded_and_fresh_per_batch():
    gm = ring_mixture(10)
    seen = []
    st = diversity("strata", group_size=10, strength=1.0, classifier=gm.classifier, seed=7)  # uniform weights
    generate(gm, 40, (2,), steps=6, sigma_max=80.0, seed=0, guidance=st, batch_size=20,
             callback=lambda f: seen.append((f["batch_start"], f["strata_class"])))
    first = {s: c for s, c in reversed(seen)}
    assert set(first) == {0, 20} and all(c.shape == (20,) for c in first.values())
    assert not torch.equal(first[0], first[20]) and torch.equal(st.labels, first[20])
    again = diversity("strata", group_size=10, strength=1.0, classifier=gm.classifier, seed=7, weights=[0.1] * 10)
    again.start_noise(torch.zeros(20, 2))
    assert torch.equal(again.labels, first[0])  # the assignment comes from the guidance's own seeded generator
    # a sampler called directly (no start hook) draws the assignment at its first call
    direct = diversity("strata", group_size=10, strength=1.0, classifier=gm.classifier, seed=7)
    sig = karras_sigmas(6, sigma_min=0.002, sigma_max=80.0)
    get_sampler("heun")(gm, sig[0] * torch.randn(20, 2, generator=torch.Generator().manual_seed(0)), sig,
                        guidance=direct)
    assert torch.equal(direct.labels, first[0])


def test_missing_classifier_and_bad_options_are_value_errors():
    with pytest.raises(ValueError, match="classifier="):
        diversity("strata", group_size=10, strength=1.0)
    with pytest.raises(ValueError, match="weights"):
        ClassStrata(10, 1.0, classifier=ring_mixture(3).classifier, weights=[0.5, -0.1, 0.6])
    gm = ring_mixture(10)
    st = diversity("strata", group_size=10, strength=1.0, classifier=gm.classifier, weights=[0.5, 0.5])
    with pytest.raises(ValueError, match="10 classes but weights has 2"):
        generate(gm, 10, (2,), steps=2, guidance=st)
    st = diversity("strata", group_size=10, strength=1.0, classifier=gm.classifier)
    with pytest.raises(ValueError, match="multiple of group_size"):
        generate(gm, 15, (2,), steps=2, guidance=st)
    st = diversity("strata", group_size=5, strength=1.0, classifier=gm.classifier, weights=torch.arange(1.0, 11.0))
    assert math.isclose(float(st.weights.sum()), 1.0) and st.num_classes == 10  # weights are normalised


def test_zero_shot_classifier_is_the_contrastive_models_own_logits():
    from difflab.guidance.clip import zero_shot_classifier
    from difflab.nets.text import ContrastiveModel

    torch.manual_seed(0)
    M = ContrastiveModel(embed_dim=8, width=8, text_dim=8).eval()
    prompts = [f"a photo of the digit {k}" for k in range(3)]
    clf = zero_shot_classifier(M, prompts)
    x, sigma = torch.randn(4, 1, 28, 28), torch.full((4,), 0.7)
    with torch.no_grad():
        assert torch.allclose(clf(x, sigma), M(x, sigma, M.tokenize(prompts)), atol=1e-5)
        assert clf(x, 0.7).shape == (4, 3)
    st = diversity("strata", group_size=2, strength=1.0, classifier=clf, seed=0)  # K = 3 read from the classifier
    st.wrap(lambda x, s, **c: 0.5 * x)(x, 0.7)
    assert st.num_classes == 3 and st.labels.shape == (4,) and st.last_info["cg_grad_norm"].gt(0).all()


def test_recipe_wires_strata_to_a_zero_shot_classifier_and_refuses_other_models():
    """``SamplingSpec(diversity='strata')`` (CLI ``--diversity strata``) steers by mnist-clip zero-shot by default,
    without adding a second classifier guidance for ``cg_model``; a model that is no classifier is refused."""
    from difflab.models import load
    from difflab.recipe import SamplingSpec

    D = load("mnist-uncond")
    (g,) = SamplingSpec(diversity="strata", diversity_strength=3.0).guidance(D)
    assert isinstance(g, ClassStrata) and g.scale == 3.0 and g.group_size == 10
    x = torch.randn(10, 1, 28, 28)
    assert g.classifier(x, torch.full((10,), 1.0)).shape == (10, 10)
    (g2,) = SamplingSpec(diversity="strata", cg_model="mnist-clip").guidance(D)
    assert isinstance(g2, ClassStrata)
    with pytest.raises(ValueError, match="not a noise-conditional classifier"):
        SamplingSpec(diversity="strata", cg_model="digit-features").guidance(D)

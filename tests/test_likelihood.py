"""Exact log-likelihood from the probability-flow ODE against closed forms (Gaussian, Gaussian mixture), and
bits/dim with uniform dequantisation."""

from __future__ import annotations

import math

import pytest
import torch

from difflab.data.toy import GaussianMixture, gaussian
from difflab.eval.likelihood import bits_per_dim, dequantize, ode_log_likelihood

SMIN, SMAX = 0.002, 80.0



def gauss_logp(x, mean, var):
    d = x[0].numel()
    return -0.5 * ((x.double() - mean) ** 2).flatten(1).sum(1) / var - 0.5 * d * math.log(2 * math.pi * var)


@pytest.mark.parametrize("hutchinson,solver", [("exact", "dopri5"), ("rademacher", "dopri5"), ("exact", "rk4")])
def test_gaussian_log_likelihood_matches_closed_form(hutchinson, solver):
    G = gaussian(dim=2, std=0.7, mean=0.3)
    x0 = G.sample(16, generator=torch.Generator().manual_seed(0)).double()
    logp, info = ode_log_likelihood(G, x0, SMIN, SMAX, hutchinson=hutchinson, solver=solver, rtol=1e-7, atol=1e-7,
                                    steps=200, generator=torch.Generator().manual_seed(1), return_details=True)
    true = gauss_logp(x0, 0.3, 0.7**2 + SMIN**2)
    rel = ((logp - true).abs() / true.abs()).max()
    print(f"{hutchinson}/{solver}: max rel err {rel:.2e}, max abs err {(logp - true).abs().max():.2e}, nfe {info['nfe']}")
    # Rademacher probes are exact for an isotropic Jacobian (v^T c I v = c d).
    assert rel < 0.01
    # Most of what is left is the prior: N(0, SMAX^2) instead of the true p_SMAX = N(0.3, 0.49 + SMAX^2)
    # (about 0.3 |x_T| / SMAX^2 per dim). With the true prior, the ODE part is exact to ~1e-5.
    exact_prior = gauss_logp(info["x_T"], 0.3, 0.7**2 + SMAX**2) + info["delta"]
    print(f"  with the exact prior: max abs err {(exact_prior - true).abs().max():.2e}")
    assert (exact_prior - true).abs().max() < 1e-4


def test_gaussian_probes_are_unbiased():
    G = gaussian(dim=2, std=0.7)
    x0 = G.sample(200, generator=torch.Generator().manual_seed(0)).double()
    gens = [torch.Generator().manual_seed(i) for i in range(200)]
    logp = ode_log_likelihood(G, x0, SMIN, SMAX, hutchinson="gaussian", n_probes=2, generator=gens, rtol=1e-6,
                              atol=1e-6)
    err = logp - gauss_logp(x0, 0.0, 0.7**2 + SMIN**2)
    print(f"gaussian probes: mean err {err.mean():.3f} +- {err.std() / math.sqrt(200):.3f}, per-sample sd {err.std():.2f}")
    assert abs(float(err.mean())) < 4 * float(err.std()) / math.sqrt(200)


def test_mixture_log_likelihood_matches_closed_form():
    gmm = GaussianMixture([[-1.0, 0.5], [1.0, -0.5], [0.0, 1.2]], [0.3, 0.5, 0.4], [0.2, 0.5, 0.3])
    x0 = gmm.sample(12, generator=torch.Generator().manual_seed(3)).double()
    logp, info = ode_log_likelihood(gmm, x0, SMIN, SMAX, hutchinson="exact", rtol=1e-7, atol=1e-7,
                                    return_details=True)
    true = gmm.log_prob(x0, SMIN)
    rel = ((logp - true).abs() / true.abs().clamp_min(1.0)).max()
    exact_prior = gmm.log_prob(info["x_T"], SMAX) + info["delta"]
    print(f"mixture: max rel err {rel:.2e}; with the exact prior max abs err {(exact_prior - true).abs().max():.2e}")
    assert rel < 0.01
    assert (exact_prior - true).abs().max() < 1e-4


def test_bits_per_dim_dequantisation_formula():
    """bpd = -(log p_Z(z) + d log(2/256)) / (d ln 2) with z = 2(k+u)/256 - 1; the same u (same generator) gives
    the closed form, and uint8 and [-1, 1] inputs give the same result."""
    G = gaussian(dim=4, std=0.6, mean=-0.1)
    imgs = torch.randint(0, 256, (3, 1, 2, 2), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    bpd = bits_per_dim(G, imgs, SMIN, SMAX, hutchinson="exact", generator=torch.Generator().manual_seed(5),
                       dtype=torch.float64, rtol=1e-6, atol=1e-6)
    z = dequantize(imgs, torch.Generator().manual_seed(5), torch.float64)
    assert z.min() >= -1 and z.max() < 1
    d = 4
    true = -(gauss_logp(z, -0.1, 0.36 + SMIN**2) + d * math.log(2 / 256)) / (d * math.log(2))
    print(f"bpd {bpd.tolist()} vs closed form {true.tolist()}")
    torch.testing.assert_close(bpd, true, rtol=1e-3, atol=1e-3)
    as_float = imgs.double() / 127.5 - 1
    bpd2 = bits_per_dim(G, as_float, SMIN, SMAX, hutchinson="exact", generator=torch.Generator().manual_seed(5),
                        dtype=torch.float64, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(bpd, bpd2)


def test_likelihood_bad_input():
    G = gaussian(dim=2)
    x = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="hutchinson"):
        ode_log_likelihood(G, x, hutchinson="nope")
    with pytest.raises(ValueError, match="sigma_min"):
        ode_log_likelihood(G, x, 1.0, 0.5)
    with pytest.raises(ValueError, match="n_probes"):
        ode_log_likelihood(G, x, n_probes=0)
    with pytest.raises(ValueError, match="solver"):
        ode_log_likelihood(G, x, solver="magic")
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        bits_per_dim(G, torch.full((1, 2), 3.0))


def test_cli_eval_likelihood_matches_bits_per_dim(tmp_path, capsys):
    """`difflab eval likelihood` on a tiny class-conditional run equals bits_per_dim with the same per-image
    generators, batches and true labels."""
    import json

    import difflab
    from difflab.cli import main
    from difflab.eval.features import dataset_images
    from difflab.sampling.rng import make_generator

    run = tmp_path / "tiny"
    assert main(["train", "configs/tiny.yaml", "max_steps=2", f"out={run}", "progress=false", "limit=64"]) == 0
    out = tmp_path / "bpd.json"
    flags = ["--n", "3", "--data", "synthetic:test:8", "--rtol", "1e-3", "--atol", "1e-3", "--batch-size", "2"]
    assert main(["eval", "likelihood", str(run), *flags, "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    D = difflab.load(str(run))
    x, y = dataset_images("synthetic:test:8", 3)
    cfg = D.difflab_config.model
    want = torch.cat([bits_per_dim(D, x[i:i + 2], cfg.sigma_min, cfg.sigma_max,
                                   generator=[make_generator(0, 7, j) for j in range(i, min(i + 2, 3))],
                                   cond={"class_labels": y[i:i + 2].long()}, rtol=1e-3, atol=1e-3)
                      for i in (0, 2)])
    assert res["n"] == 3 and res["conditional_on_labels"] is True
    assert res["bits_per_dim"] == pytest.approx(float(want.mean()), rel=1e-9)
    assert 0 < res["bits_per_dim"] < 100

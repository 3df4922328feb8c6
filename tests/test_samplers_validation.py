"""Bad input gets a clear ValueError naming the parameter; trajectory recording and saving."""

from __future__ import annotations

import pytest
import torch

from difflab.data.toy import gaussian
from difflab.sampling import SAMPLERS, generate, get_sampler, karras_sigmas, sigma_grid
from difflab.sampling.ode import sample_ode
from difflab.viz.trajectory import TrajectoryRecorder, save_trajectory

D = gaussian(2, std=0.5)
X = torch.zeros(3, 2)
SIG = karras_sigmas(4, 0.002, 10.0)


def test_unknown_sampler_name():
    with pytest.raises(ValueError, match="unknown sampler 'nope'"):
        get_sampler("nope")
    with pytest.raises(ValueError, match="unknown sampler"):
        generate(D, 2, (2,), sampler="nope")


def test_steps_below_one():
    with pytest.raises(ValueError, match="steps"):
        karras_sigmas(0)
    with pytest.raises(ValueError, match="steps"):
        sigma_grid("ddpm_leading", 0)
    with pytest.raises(ValueError, match="steps"):
        generate(D, 2, (2,), steps=0)
    for fn in SAMPLERS.values():
        with pytest.raises(ValueError, match="steps >= 1"):
            fn(D, X, torch.tensor([0.0]))


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_sigmas_must_end_in_zero(name):
    with pytest.raises(ValueError, match="sigmas must end in 0, got 0.002"):
        SAMPLERS[name](D, X, SIG[:-1])


@pytest.mark.parametrize("eta", [-0.1, 1.5, float("nan")])
def test_eta_outside_unit_interval(eta):
    # eta > 1 is allowed where eq. 16 is defined (issue 17); 1.5 is not on SIG (its bound is ~1.01).
    with pytest.raises(ValueError, match="eta"):
        SAMPLERS["ddim"](D, X, SIG, eta=eta)


@pytest.mark.parametrize("name", ["heun", "euler"])
def test_negative_churn(name):
    with pytest.raises(ValueError, match="S_churn"):
        SAMPLERS[name](D, X, SIG, S_churn=-1.0)
    with pytest.raises(ValueError, match="S_churn"):
        generate(D, 2, (2,), sampler=name, steps=3, S_churn=-1.0)


@pytest.mark.parametrize("name,opts,word", [
    ("ddpm", {"variance": "fixed_small"}, "variance"),
    ("ddpm", {"clip_x0": 0.0}, "clip_x0"),
    ("ddim", {"clip_x0": -1.0}, "clip_x0"),
    ("euler_maruyama", {"sde": "subvp"}, "sde"),
    ("pc", {"sde": "x"}, "sde"),
    ("pc", {"predictor": "ancestral"}, "predictor"),
    ("pc", {"snr": 0.0}, "snr"),
    ("pc", {"n_corrector": -1}, "n_corrector"),
    ("pc", {"snr_norm": "global"}, "snr_norm"),
    ("ddpm", {"S_churn": 1.0}, "unknown option"),
    ("dpmpp_2m", {"eta": 0.5}, "unknown option"),
    ("ode_dopri5", {"method": "rk4"}, "unknown option"),
    ("ddim", {"seed": 1, "generator": torch.Generator()}, "either generator or seed"),
    ("pc", {"seed": -1}, "seed"),
])
def test_bad_options_are_named(name, opts, word):
    with pytest.raises(ValueError, match=word):
        SAMPLERS[name](D, X, SIG, **opts)


def test_bad_generate_and_grid_arguments():
    with pytest.raises(ValueError, match="unknown grid"):
        generate(D, 2, (2,), grid="cosine")
    with pytest.raises(ValueError, match="batch_size"):
        generate(D, 2, (2,), batch_size=0)
    with pytest.raises(ValueError, match="init_noise_scale"):
        generate(D, 2, (2,), init_noise_scale=0.0)
    with pytest.raises(ValueError, match="method"):
        sample_ode(D, X, SIG, method="euler_maruyama")
    with pytest.raises(ValueError, match="strictly decreasing"):
        sample_ode(D, X, torch.tensor([1.0, 1.0, 0.0]))


def test_trajectory_recorder_and_files(tmp_path):
    from PIL import Image

    img = gaussian(16, std=0.5)  # an exact denoiser for 1x4x4 "images"
    rec = TrajectoryRecorder(indices=[0, 2], every=2)
    x = 10.0 * torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    SAMPLERS["heun"](img, x, karras_sigmas(5, 0.002, 10.0), callback=rec)
    assert [f["i"] for f in rec.frames] == [0, 1, 2, 3, 4]
    assert [f["i"] for f in rec.thinned()] == [0, 2, 4]
    assert rec.frames[0]["x"].shape == (2, 1, 4, 4)
    torch.testing.assert_close(rec.frames[0]["x"], x[[0, 2]])
    strip = save_trajectory(rec, tmp_path / "t.png", tmp_path / "t.gif", pad=1)
    # 3 rows of (4 + 2 pad) px; 4 tiles (x_i, D(x_i) for 2 samples) of (4 + 1 pad) px + 1.
    assert strip.shape == (3 * 6, 4 * 5 + 1) and strip.dtype.name == "uint8"
    assert Image.open(tmp_path / "t.png").size == (21, 18)
    gif = Image.open(tmp_path / "t.gif")
    assert gif.n_frames == 3 and gif.size == (21, 6)
    with pytest.raises(ValueError, match="no frames"):
        save_trajectory([], tmp_path / "x.png")
    with pytest.raises(ValueError, match="every"):
        TrajectoryRecorder(every=0)


def test_trajectory_recorder_across_generate_batches():
    img = gaussian(16, std=0.5)
    rec = TrajectoryRecorder(indices=[1, 4])
    out = generate(img, 5, (1, 4, 4), sampler="ddim", steps=3, sigma_max=10.0, batch_size=2, callback=rec)
    assert len(rec.frames) == 3 and all(f["indices"] == [1, 4] for f in rec.frames)
    torch.testing.assert_close(rec.frames[-1]["denoised"], out[[1, 4]])  # last step of DDIM returns D


def test_ddpm_timesteps_are_always_n_distinct_steps():
    """diffusers' 'trailing' (np.arange(T, 0, -T/n) - 1) returns n + 1 values ending in -1 for e.g. T=1000,
    n=61; difflab computes each value directly and matches diffusers wherever diffusers is right."""
    import numpy as np

    from difflab.sampling import ddpm_timesteps

    for T in (50, 1000):
        for n in range(1, T + 1, 3):
            for spacing in ("leading", "trailing", "linspace"):
                t = ddpm_timesteps(n, T, spacing)
                assert len(t) == n and int(t.min()) >= 0 and int(t.max()) <= T - 1
                assert n == 1 or bool((t[1:] < t[:-1]).all())
    t = ddpm_timesteps(61, 1000, "trailing")
    assert len(t) == 61 and int(t[0]) == 999 and int(t[-1]) == 15
    for n in (7, 10, 50, 333):
        ref = np.round(np.arange(1000, 0, -1000 / n)) - 1
        assert (ddpm_timesteps(n, 1000, "trailing").numpy() == ref).all()

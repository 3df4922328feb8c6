"""Issue 18, the sampling side: no silent wrong result and no traceback from `sample` / `eval` flags.

Non-finite samples are an error naming the step and sigma; impossible sizes are refused before allocating;
--label on an unconditional model is an error; --out / --json mistakes are reported before any work; and a
hypothesis fuzz of SamplingSpec: every combination is either a clean ValueError or a spec that round-trips."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from difflab.cli import main
from difflab.recipe import SamplingSpec
from difflab.sampling.generate import NonFiniteSamples, generate


def _run(argv, capsys):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    return code, err


def one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("difflab: error: "), err
    assert "Traceback" not in err
    return lines[-1]


class _NaNBelow:
    """N(0, I) data's exact denoiser, except that it returns NaN once sigma drops below ``at``."""

    def __init__(self, at: float):
        self.at = at

    def __call__(self, x, sigma, **cond):
        s = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, *[1] * (x.ndim - 1))
        out = x / (1 + s**2)
        return torch.where(s < self.at, torch.full_like(out, math.nan), out)


def test_non_finite_samples_name_the_step_and_sigma():
    with pytest.raises(NonFiniteSamples) as e:
        generate(_NaNBelow(1.0), 3, (1, 2, 2), steps=6, seed=0, sigma_min=0.01, sigma_max=10.0, S_churn=0.5)
    msg = str(e.value)
    assert "non-finite" in msg and "at step " in msg and "sigma 0." in msg and "S_churn=0.5" in msg, msg
    assert "\n" not in msg
    # the same model above the NaN region is fine: no false alarm
    x = generate(_NaNBelow(1e-9), 3, (1, 2, 2), steps=6, seed=0, sigma_min=0.01, sigma_max=10.0)
    assert torch.isfinite(x).all()


def test_impossible_sizes_are_refused_before_allocating():
    with pytest.raises(ValueError, match="GiB"):
        generate(_NaNBelow(0.0), 10**9, (1, 28, 28), steps=2, seed=0)
    with pytest.raises(ValueError, match="GiB"):
        generate(_NaNBelow(0.0), 1, (1, 2, 2), steps=2**31 - 1, seed=0)


@pytest.mark.parametrize("argv,msg", [
    (["--S-noise", "1e30"], "--S-noise must be a number in [0, 1000]"),
    (["--init-noise-scale", "1e30"], "--init-noise-scale must be a number in (0, 1000]"),
    (["--n", "1000000000"], "GiB"),
    (["--steps", "2147483647"], "GiB"),
    (["--label", "3"], "--label 3 needs a class-conditional model"),
    (["--out", "grid.txt"], "--out grid.txt: the file must end in .png"),
    (["--out", "."], "is a folder"),
])
def test_sample_flags_are_user_errors(argv, msg, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, err = _run(["sample", "mnist-uncond", "--n", "2", "--steps", "1", *argv], capsys)
    assert code == 2
    assert msg in one_line(err), err
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob("*.npz"))


def test_json_path_checked_before_sampling(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    code, err = _run(["eval", "mnist-cond", "--n", "2", "--steps", "1", "--metrics", "modes",
                      "--json", tmp_path / "afile" / "r.json"], capsys)
    assert code == 2 and "is a file, not a folder" in one_line(err)


_FIELDS = {
    "sampler": st.sampled_from(["heun", "euler", "ddim", "dpmpp_2m", "nope"]),
    "steps": st.one_of(st.integers(-2, 50), st.floats(allow_nan=True)),
    "S_churn": st.floats(allow_nan=True, allow_infinity=True),
    "S_noise": st.floats(-1, 1e31),
    "eta": st.one_of(st.none(), st.floats(-1, 3)),
    "init_noise_scale": st.floats(-1, 1e31),
    "pg_weight": st.floats(-1, 10),
    "pg_kernel": st.sampled_from(["rbf", "iou", "feature", "x"]),
    "pg_batch": st.one_of(st.none(), st.integers(-1, 20)),
    "label": st.one_of(st.none(), st.integers(-3, 20), st.booleans()),
    "seed": st.integers(-5, 2**64),
    "grid": st.one_of(st.sampled_from(["karras", "loguniform"]), st.lists(st.floats(0, 10), max_size=4)),
}


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(kw=st.fixed_dictionaries({}, optional=_FIELDS))
def test_fuzz_sampling_spec(kw):
    """Any combination of option values: a one-line ValueError, or a valid spec that round-trips through strict
    JSON unchanged."""
    try:
        spec = SamplingSpec(**kw)
    except ValueError as e:
        assert str(e) and "\n" not in str(e)
        return
    back = SamplingSpec.from_dict(json.loads(json.dumps(spec.to_dict(), allow_nan=False)))
    assert back == spec

"""Every benchmark script's --quick run completes and writes the JSON the docs quote (slow: ~3-4 minutes in all;
``make test-slow``). The numbers themselves are measurements, not assertions; the names are the contract."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(p.stem for p in (ROOT / "benchmarks").glob("bench_*.py"))
NEEDS = {"bench_train_vs_diffusers": "diffusers", "bench_sampling_vs_diffusers": "diffusers",
         "bench_diffusers_on_model": "diffusers"}
# The keys the docs and the contract read from each script's JSON.
KEYS = {
    "bench_train_vs_diffusers": ["train_images_per_s_ratio", "same_loss_check"],
    "bench_sampling_vs_diffusers": ["samplers"],
    "bench_hardware": ["matmul_gflops", "flops_per_image", "train", "sample"],
    "bench_sampler_overhead": ["samplers", "guidance", "summary"],
    "bench_presets": ["presets"],
    "bench_quality_nfe": ["results"],
    "bench_eval": ["classifier_accuracy"],
    "bench_low_nfe": ["results", "summary", "geomean"],
    "bench_diversity": ["toys", "table"],
    "bench_latent": ["models"],
    "bench_diffusers_on_model": ["results"],
}


def finite_numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from finite_numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from finite_numbers(v)
    elif isinstance(obj, float):
        yield obj


def test_every_script_is_listed():
    assert set(SCRIPTS) == set(KEYS)


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_quick_run_writes_its_json(script, tmp_path):
    if script in NEEDS:
        pytest.importorskip(NEEDS[script])
    out = tmp_path / f"{script}.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{script}.py"), "--quick", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    for key in KEYS[script]:
        assert key in data, f"{script}: missing {key!r}"
    if script == "bench_sampling_vs_diffusers":
        for name, r in data["samplers"].items():
            assert data[f"{name}_ratio"] > 0 and r["max_abs_diff"] >= 0
    if script == "bench_diffusers_on_model":  # honest NFE: every contender made the network calls it was given
        assert all(r["nfe"] == r["nfe_budget"] for r in data["results"])
    assert not any(math.isnan(v) for v in finite_numbers(data) if v is not None)

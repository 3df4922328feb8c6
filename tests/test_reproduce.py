"""`difflab reproduce ntnu` end to end on tiny discrete-time models, the trainer's preview with the DDPM sampler,
and the Inception extractor's handling of weights stored in fp16."""

import json

import pytest
import torch
from torch import nn

from difflab.cli import main
from difflab.config import load_config
from difflab.export import export_shipped
from difflab.training.trainer import Trainer

DDPM_TINY = ["model.precond=vp_eps", "model.T=50", "sample.sampler=ddpm", "sample.steps=50", "sample.n_preview=4",
             "max_steps=2", "ckpt_every=100", "progress=false", "limit=64"]


@pytest.fixture(scope="module")
def ntnu_models(tmp_path_factory):
    """A folder with a tiny class-conditional eps-prediction model exported as ``ntnu-linear-T1000``."""
    root = tmp_path_factory.mktemp("ntnu")
    summary = Trainer(load_config("configs/tiny.yaml", [f"out={root / 'run'}", *DDPM_TINY])).run()
    export_shipped(root / "run", "ntnu-linear-T1000", dest_root=root / "models")
    return root, summary


def test_preview_with_the_ddpm_sampler_writes_a_grid(ntnu_models):
    """The preview passes S_churn only to the samplers that take it (the DDPM sampler refuses it)."""
    _, summary = ntnu_models
    assert summary["grid"] is not None and summary["grid"].endswith(".png")


def test_reproduce_ntnu_quick_rows(ntnu_models, tmp_path):
    root, _ = ntnu_models
    out = tmp_path / "ntnu"
    assert main(["reproduce", "ntnu", "--quick", "--n", "4", "--models", str(root / "models"), "--metrics", "is",
                 "--out", str(out)]) == 0
    result = json.loads((out / "results.json").read_text())
    rows = result["rows"]
    assert list(rows)[:2] == ["linear T1000 w0.2", "fast: heun 9 steps (34 NFE)"]
    assert set(rows) == {"linear T1000 w0.2", "linear T1000 w0", "linear T1000 w0.5", "fast: heun 9 steps (34 NFE)",
                         "fast: dpmpp_2m 17 steps (34 NFE)", "fast: ddim 17 steps (34 NFE)"}
    for row in rows.values():
        assert row["n"] == 4 and 1.0 <= row["is"] <= 4.0 + 1e-6  # 4 samples, labels 0..3: IS is at most 4
    # DDPM runs over the model's own T = 50 steps; the weights of the table are the published ones
    assert rows["linear T1000 w0"]["sampling"] == "--sampler ddpm --steps 50 --grid ddpm_leading"
    assert rows["linear T1000 w0.5"]["cfg_weight"] == 0.5
    assert result["published"]["linear T1000 w0.2"] == {"fid_inception": 16.19, "is": 9.56}


def test_reproduce_ntnu_rows_runs_only_the_named_rows(ntnu_models, tmp_path, capsys):
    root, _ = ntnu_models
    out = tmp_path / "ntnu"
    assert main(["reproduce", "ntnu", "--n", "2", "--models", str(root / "models"), "--metrics", "is",
                 "--rows", "linear T1000 w0.5", "--out", str(out)]) == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert list(rows) == ["linear T1000 w0.5"] and rows["linear T1000 w0.5"]["cfg_weight"] == 0.5
    assert main(["reproduce", "ntnu", "--n", "2", "--models", str(root / "models"), "--rows", "linear T9 w0",
                 "--out", str(out)]) == 2
    assert "unknown ntnu row(s) ['linear T9 w0']" in capsys.readouterr().err


def test_reproduce_ntnu_names_a_missing_model(tmp_path, capsys):
    code = main(["reproduce", "ntnu", "--quick", "--n", "2", "--models", str(tmp_path), "--out", str(tmp_path / "o")])
    assert code == 2
    assert "ntnu-linear-T1000: missing" in capsys.readouterr().err


def test_inception_file_with_fp16_weights_is_named_and_run_in_float32(tmp_path):
    from difflab.eval.features import InceptionFeatures

    class Pool(nn.Module):  # a stand-in with Inception's interface: [N, 3, S, S] -> [N, d]
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 5, 3)

        def forward(self, x):
            return self.conv(x).mean(dim=(2, 3))

    torch.manual_seed(0)
    net = torch.jit.script(Pool())
    torch.jit.save(net, str(tmp_path / "full.pt"))
    torch.jit.save(net.half(), str(tmp_path / "half.pt"))
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    full = InceptionFeatures(tmp_path / "full.pt", size=12, device="cpu")
    half = InceptionFeatures(tmp_path / "half.pt", size=12, device="cpu")
    assert full.name == "inception-tf2048" and half.name == "inception-tf2048-fp16w"
    a, b = full(x), half(x)
    assert a.dtype == b.dtype == torch.float32 and a.shape == (3, 5)
    assert torch.allclose(a, b, atol=1e-2) and not torch.equal(a, b)  # fp16-rounded weights: close, not equal

"""Packaging and the CLI around the core: presets shipped in the package, `difflab configs`, optional extras
checked before any work, a help line for every flag, the wheel installed outside the checkout, export to diffusers."""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import torch

from difflab import cli
from difflab.cli import main
from difflab.config import ConfigError, find_preset, load_config, presets

ROOT = Path(__file__).resolve().parents[1]


def test_presets_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert {"tiny", "mnist_cond", "sweep_tiny"} <= set(presets())
    assert load_config("tiny").name == "tiny" and load_config("mnist_cond.yaml").model.num_classes == 10
    assert find_preset("configs/tiny.yaml") == presets()["tiny"]  # the README's paths work outside the checkout
    (tmp_path / "tiny.yaml").write_text("name: mine\n")
    assert load_config("tiny.yaml").name == "mine"  # a file that exists wins over the preset
    with pytest.raises(ConfigError, match="shipped presets: .*tiny"):
        load_config("nope")


def test_configs_lists_presets(capsys):
    assert main(["configs"]) == 0
    out = capsys.readouterr().out
    assert "tiny " in out and "sweep_tiny" in out and "sweep " in out


def test_missing_extra_is_one_line_before_any_work(tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    assert main(["toy", "gmm", "--quick", "--out", str(tmp_path / "gmm")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "difflab: error: `difflab toy gmm` needs matplotlib, which is not installed: pip install 'difflab[eval]'"
    assert not (tmp_path / "gmm").exists()


def _parsers():
    ap = cli.build_parser()
    out = [("difflab", ap)]
    stack = [ap]
    while stack:
        for a in stack.pop()._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sp in a.choices.items():
                    out.append((name, sp))
                    stack.append(sp)
    return out + [(f"eval {w}", cli.build_eval_subparser(w)) for w in cli.EVAL_SUBCOMMANDS]


def test_every_flag_has_help_and_every_command_an_example():
    parsers = _parsers()
    assert len(parsers) > 15
    for name, p in parsers:
        for a in p._actions:
            if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
                assert a.help, f"{name}: {a.option_strings or a.dest} has no help"
    top = cli.build_parser().format_help()
    for command in cli.EXAMPLES:
        assert f"difflab {command}" in top.split("examples:")[1]
        assert "example: difflab" in dict(parsers)[command].format_help()


def test_pyproject_license_and_extras():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["license"] == "MIT"
    extras = meta["optional-dependencies"]
    assert {"eval", "report", "tensorboard", "all"} <= set(extras)
    assert "configs/*.yaml" in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["difflab"]


def test_wheel_installs_and_trains_outside_the_checkout(tmp_path):
    """Build the wheel (no network: the venv's setuptools), install it into a folder with pip --target (no
    dependencies: torch & co. come from this venv) and train the `tiny` preset by name from another folder.
    About 9 s here (2 slow cores, loaded), so not marked slow."""
    py = sys.executable
    wheels, site, work = tmp_path / "wheels", tmp_path / "site", tmp_path / "work"
    work.mkdir()
    subprocess.run([py, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(ROOT)],
                   check=True, timeout=600, cwd=tmp_path)
    wheel = next(wheels.glob("difflab-*.whl"))
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)], check=True,
                   timeout=600)
    assert (site / "difflab" / "configs" / "tiny.yaml").is_file()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(site)}
    r = subprocess.run([py, "-m", "difflab", "train", "tiny", "max_steps=2", f"out={work / 'run'}"], cwd=work, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert (work / "run" / "checkpoints" / "ckpt-00000002").is_dir()
    where = subprocess.run([py, "-c", "import difflab; print(difflab.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(site))


def test_export_diffusers_round_trip(tmp_path, capsys):
    """A run whose network is a diffusers UNet2DModel (inside difflab's VP eps preconditioner) exports to a folder
    that UNet2DModel.from_pretrained loads, with the same outputs; difflab's own U-Net is refused in one line."""
    diffusers = pytest.importorskip("diffusers")
    from difflab.checkpoint import save_checkpoint
    from difflab.config import Config
    from difflab.interop import DiffusersUNet

    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
                                 block_out_channels=(8, 16), down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4)
    D = DiffusersUNet(unet).precond(T=1000)
    cfg = Config().to_dict()
    cfg["model"].update(precond="vp_eps", preset="diffusers", net={"diffusers": dict(unet.config)})
    run = tmp_path / "run"
    save_checkpoint(run / "checkpoints" / "ckpt-00000001", config=cfg, model=D.state_dict(), ema=D.state_dict())
    assert main(["export", str(run), "--diffusers", str(tmp_path / "hf")]) == 0
    back = diffusers.UNet2DModel.from_pretrained(str(tmp_path / "hf"))
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([10, 500])
    with torch.no_grad():
        assert torch.allclose(back(x, t).sample, unet(x, t).sample, atol=1e-6)
    capsys.readouterr()
    own = tmp_path / "own"
    assert main(["train", "tiny", "max_steps=1", f"out={own}", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["export", str(own), "--diffusers", str(tmp_path / "hf2")]) == 2
    err = capsys.readouterr().err.strip()
    assert "difflab's own U-Net" in err and "docs/models.md" in err and "\n" not in err

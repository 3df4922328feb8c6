"""difflab report (a static page, checked in headless Chromium), logger=tensorboard, progress bars on a terminal."""

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from difflab.cli import main

SRC = str(Path(__file__).resolve().parents[1] / "src")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    import importlib.util

    out = tmp_path_factory.mktemp("eco") / "tiny"
    logger = "jsonl,tensorboard" if importlib.util.find_spec("tensorboard") else "jsonl"  # a dev extra
    assert main(["train", "tiny", "max_steps=3", f"out={out}", f"logger={logger}", "sample_every=2",
                 "log_every=1", "--quiet"]) == 0
    return out


def test_tensorboard_logger_writes_events(run):
    pytest.importorskip("tensorboard")
    events = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2, 3]
    assert "samples" in acc.Tags()["images"]
    assert json.loads((run / "config.json").read_text())["train"]["logger"] == "jsonl,tensorboard"


def test_logger_value_is_checked_and_tensorboard_missing_is_one_line(tmp_path, monkeypatch, capsys):
    assert main(["train", "tiny", "max_steps=1", f"out={tmp_path / 'a'}", "logger=wandb"]) == 2
    assert "train.logger must be jsonl, tensorboard or both" in capsys.readouterr().err
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    assert main(["train", "tiny", "max_steps=1", f"out={tmp_path / 'b'}", "logger=tensorboard"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install 'difflab[tensorboard]'" in err
    assert not (tmp_path / "b" / "log.jsonl").exists()


def _sweep_dir(root: Path) -> Path:
    d = root / "sweep"
    (d / "points").mkdir(parents=True)
    (d / "sweep.json").write_text(json.dumps({"name": "t", "seed": 0, "batches": 2, "batch_size": 4,
                                              "grid": {"pg_weight": [0, 1], "S_churn": [0, 1, 2]}}))
    table = {"axis_names": ["pg_weight", "S_churn"], "axes": {"pg_weight": [0, 1], "S_churn": [0, 1, 2]},
             "tables": {"modes_per_10": [[3.0, 4.0, None], [5.5, 6.0, 7.0]]}, "done": 5, "total": 6}
    (d / "table.json").write_text(json.dumps(table))
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) % 255).astype(np.uint8)).save(d / "heatmap_modes_per_10.png")
    return d


def _eval_json(root: Path) -> Path:
    p = root / "eval.json"
    p.write_text(json.dumps({"n": 100, "seed": 3, "ref": "mnist:test", "model": "mnist-cond", "is": 9.1,
                             "fid_classifier": 0.4, "seconds": {"sampling": 1.0}, "metrics": ["is", "fid_classifier"],
                             "sampling": {"sampler": "euler", "steps": 10, "seed": 3}}))
    return p


def test_report_of_a_run_a_sweep_and_an_eval(run, tmp_path):
    page = tmp_path / "r_run"
    assert main(["report", str(run), "--out", str(page)]) == 0
    html = (page / "index.html").read_text()
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert len(srcs) == 2 and all((page / s).is_file() for s in srcs)  # the two preview grids, copied beside
    assert html.count("<svg") >= 3 and "difflab train" in html and "http" not in html
    sweep = _sweep_dir(tmp_path)
    assert main(["report", str(sweep), "--out", str(tmp_path / "r_sweep")]) == 0
    html = (tmp_path / "r_sweep" / "index.html").read_text()
    assert "rgb(" in html and "5/6 points" in html and "heatmap_modes_per_10.png" in html
    assert main(["report", str(_eval_json(tmp_path)), "--out", str(tmp_path / "r_eval")]) == 0
    html = (tmp_path / "r_eval" / "index.html").read_text()
    assert "n = 100, seed = 3" in html and "--sampler euler --steps 10" in html and "--seed 3" in html
    assert "difflab eval mnist-cond --n 100 --metrics is,fid_classifier" in html


def test_report_errors_are_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(e.startswith("difflab: error:") for e in err)


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"), reason="no chromium (apt-get install chromium)")
def test_report_renders_in_headless_chromium(run, tmp_path):
    assert CHROMIUM is not None, "CI must have chromium (.ci/run installs it)"
    pages = [tmp_path / "a", tmp_path / "b"]
    main(["report", str(run), "--out", str(pages[0])])
    main(["report", str(_sweep_dir(tmp_path)), "--out", str(pages[1])])
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000"]
    for page in pages:
        url = (page / "index.html").resolve().as_uri()
        dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
        body = re.search(r"<body[^>]*>", dom).group(0)
        n = int(re.search(r'data-images="(\d+)"', body).group(1))
        assert n >= 1 and 'data-broken-images="0"' in body, body
        shot = page / "shot.png"
        subprocess.run([CHROMIUM, *flags, "--window-size=1000,1200", f"--screenshot={shot}", url],
                       capture_output=True, timeout=120, check=True)
        a = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
        assert a.std() > 5 and (a < 128).mean() > 0.005  # text, curves and images, not a blank page


def _run_in_pty(args, cwd) -> str:
    """Run ``python -m difflab ARGS`` with stdout/stderr on a pseudo-terminal; returns what it printed."""
    import pty

    env = {**os.environ, "PYTHONPATH": SRC, "COLUMNS": "120", "OMP_NUM_THREADS": "1"}
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "difflab", *args], stdin=slave, stdout=slave, stderr=slave,
                            cwd=cwd, env=env, close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=120)
    os.close(master)
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode(errors="replace")


class _FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_sampling_shows_a_tqdm_bar_on_a_terminal_only(run, tmp_path, monkeypatch, capsys):
    args = ["sample", str(run), "--n", "2", "--steps", "2", "--batch-size", "1", "--out", str(tmp_path / "s.png")]
    shown = _run_in_pty(args, tmp_path)  # a real terminal: one subprocess on a pty
    assert "sampling (heun)" in shown and "/4 [" in shown and "batch=1/2" in shown  # 2 batches x 2 steps
    assert main(args) == 0  # standard error captured by pytest: not a terminal
    assert "sampling (heun)" not in capsys.readouterr().err
    tty = _FakeTTY()
    monkeypatch.setattr(sys, "stderr", tty)
    assert main(args + ["--quiet"]) == 0 and "sampling (heun)" not in tty.getvalue()
    assert main(args) == 0 and "sampling (heun)" in tty.getvalue()  # the same fake terminal without --quiet


def test_generate_progress_is_off_by_default_and_results_do_not_depend_on_it(capsys):
    import torch

    from difflab.sampling.generate import generate

    D = lambda x, sigma, **c: x / (1 + sigma.reshape(-1, 1, 1, 1) ** 2)
    a = generate(D, 3, (1, 4, 4), sampler="euler", steps=4, seed=1, batch_size=2, S_churn=0.5)
    assert capsys.readouterr().err == ""
    b = generate(D, 3, (1, 4, 4), sampler="euler", steps=4, seed=1, batch_size=2, S_churn=0.5, progress=True)
    assert "sampling (euler)" in capsys.readouterr().err
    assert torch.equal(a, b)


def test_report_draws_a_grid_per_sampler(run, tmp_path):
    from difflab.viz.report import build_report

    page = build_report(run, tmp_path / "r", samplers=("heun", "euler"), n=4)
    html = page.read_text()
    assert "heun, 18 steps, seed 0, n=4" in html and "euler, 18 steps" in html
    assert (tmp_path / "r" / "drawn" / "euler.png").is_file()
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text((run / "config.json").read_text())
    with pytest.raises(ValueError, match="no checkpoints"):
        build_report(bare, tmp_path / "r2", samplers=("heun",))

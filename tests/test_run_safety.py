"""Run-folder safety (issue 18): one trainer per folder (OS lock), no silent reuse of an old run (--resume /
--overwrite), only finite checkpoints and pruning that keeps one, checked weights on load, a strict JSON log
that a resume does not repeat. docs/reliability.md maps each guarantee to its test here."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import difflab
from difflab import cli
from difflab.checkpoint import (
    CheckpointError,
    is_finite_checkpoint,
    latest_checkpoint,
    latest_finite_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from difflab.config import load_config
from difflab.training.rundir import RunFolderInUse
from difflab.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "configs" / "tiny.yaml")
SMALL = ["limit=64", "batch_size=8", "threads=1", "progress=false", "sample.n_preview=1", "sample.steps=1"]


def tiny_cfg(out, *extra):
    return load_config(CONFIG, [f"out={out}", *SMALL, *extra])


@pytest.fixture(autouse=True)
def no_preview(monkeypatch):
    monkeypatch.setattr(Trainer, "preview", lambda self: None)


def run_cli(argv, capsys) -> tuple[int, str]:
    code = cli.main([str(a) for a in argv])
    return code, capsys.readouterr().err


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("difflab: error: ") and "Traceback" not in err, err
    return lines[0]


def strict_lines(path: Path) -> list[dict]:
    """Every line parses as RFC 8259 JSON (no NaN / Infinity tokens)."""
    def refuse(tok):
        raise AssertionError(f"non-standard JSON constant {tok} in {path}")

    return [json.loads(ln, parse_constant=refuse) for ln in path.read_text().splitlines()]


# -- 1. one trainer per run folder ------------------------------------------------------------------------

HOLDER = """
import sys, time
from difflab.training.rundir import RunLock
lock = RunLock(sys.argv[1]).acquire()  # held while referenced
print("locked", flush=True)
time.sleep(120)
"""


def test_a_second_trainer_is_refused_while_the_first_lives_and_a_killed_holder_releases(tmp_path, capsys):
    out = tmp_path / "run"
    # In one process: the first trainer holds the folder from set-up to the end of run().
    first = Trainer(tiny_cfg(out, "max_steps=1"))
    with pytest.raises(RunFolderInUse, match=rf"pid {os.getpid()} on .*, started 20"):
        Trainer(tiny_cfg(out, "max_steps=2"), resume=True)
    first.run()
    assert (out / ".lock").read_text() == ""  # released on a clean end
    # Another process holds it: refused with one line naming that process; SIGKILL frees it.
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        code, err = run_cli(["train", CONFIG, f"out={out}", *SMALL, "max_steps=2", "--resume"], capsys)
        assert code == 2
        line = one_error_line(err)
        assert f"{out}: another training process is using this run folder (pid {proc.pid} on " in line
        assert latest_checkpoint(out).name == "ckpt-00000001"  # nothing trained
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert "pid" in (out / ".lock").read_text()  # the stale text stays, the kernel's lock does not
    code, err = run_cli(["train", CONFIG, f"out={out}", *SMALL, "max_steps=2", "--resume"], capsys)
    assert code == 0, err
    assert latest_checkpoint(out).name == "ckpt-00000002"


# -- 2. a fresh run never reuses an old run ----------------------------------------------------------------

def test_fresh_run_into_an_existing_run_is_refused_and_overwrite_moves_it_aside(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", CONFIG, f"out={out}", *SMALL, "max_steps=2"]
    assert run_cli(args, capsys)[0] == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".lock"}
    code, err = run_cli(args, capsys)
    assert code == 2
    line = one_error_line(err)
    assert f"{out}: already holds a run" in line and "--resume" in line and "--overwrite" in line
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == before  # untouched
    code, err = run_cli([*args, "--resume", "--overwrite"], capsys)
    assert code == 2 and "exclude each other" in one_error_line(err)
    code, err = run_cli([*args, "max_steps=1", "--overwrite"], capsys)
    assert code == 0, err
    (old,) = tmp_path.glob("run.old-*")  # moved aside, never deleted
    assert {p.relative_to(old): p.read_bytes() for p in old.rglob("*")
            if p.is_file() and p.name != ".lock"} == before
    assert [p.name for p in list_checkpoints(out)] == ["ckpt-00000001"]
    assert [r.get("step") for r in strict_lines(out / "log.jsonl") if "event" not in r] == [1]
    # A folder with only leftovers (no checkpoint, no log) is not a run: a fresh run may use it.
    (tmp_path / "empty" / "checkpoints" / "ckpt-00000009.tmp").mkdir(parents=True)
    assert run_cli(["train", CONFIG, f"out={tmp_path / 'empty'}", *SMALL, "max_steps=1"], capsys)[0] == 0


# -- 3. only finite checkpoints; pruning keeps the newest finite one ---------------------------------------

def test_pruning_never_deletes_the_newest_finite_checkpoint(tmp_path):
    ck = tmp_path / "checkpoints"
    good = {"w": torch.ones(3)}
    bad = {"w": torch.tensor([1.0, float("nan"), 0.0])}
    save_checkpoint(ck / "ckpt-00000001", config={}, model=good, ema=good)
    save_checkpoint(ck / "ckpt-00000002", config={}, model=good, ema=good)
    save_checkpoint(ck / "ckpt-00000003", config={}, model=good, ema=bad)
    save_checkpoint(ck / "ckpt-00000004", config={}, model=bad)
    assert [is_finite_checkpoint(p) for p in list_checkpoints(tmp_path)] == [True, True, False, False]
    assert latest_finite_checkpoint(tmp_path).name == "ckpt-00000002"
    prune_checkpoints(tmp_path, keep_last=1)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-00000002", "ckpt-00000004"]
    # A checkpoint without the metadata flag (older difflab, other tools) is judged by its tensors.
    from safetensors.torch import save_file

    save_file({"w": torch.full((2,), float("inf"))}, str(ck / "ckpt-00000004" / "model.safetensors"))
    save_file({"w": torch.ones(2)}, str(ck / "ckpt-00000002" / "model.safetensors"))
    assert [is_finite_checkpoint(p) for p in list_checkpoints(tmp_path)] == [True, False]
    prune_checkpoints(tmp_path, keep_last=1)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-00000002", "ckpt-00000004"]


# -- 4. loaded weights: dtype, finiteness, one-line mismatch, shadowed shipped names -----------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("safety") / "run"
    with pytest.MonkeyPatch.context() as m:
        m.setattr(Trainer, "preview", lambda self: None)
        Trainer(tiny_cfg(out, "max_steps=2")).run()
    return out


def _rewrite(ck: Path, part: str, fn):
    from safetensors.torch import save_file

    data = load_checkpoint(ck)
    save_file(fn(dict(data[part])), str(ck / f"{part}.safetensors"))


@pytest.mark.parametrize("case,msg", [
    ("int", r"ema\.safetensors: tensor 'net\.[^']+' has dtype torch\.int64, expected floating point"),
    ("nan", r"ema\.safetensors: tensor 'net\.[^']+' holds non-finite values"),
    ("keys", r"ema\.safetensors: weights do not match the config's network: 2 missing keys \(net\.[^)]*\); "
             r"1 unexpected keys \(bogus\.weight\)"),
])
def test_loaded_weights_are_checked_and_named(trained, tmp_path, case, msg):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    ck = latest_checkpoint(run)

    def corrupt(state):
        k = sorted(state)[0]
        if case == "int":
            state[k] = state[k].round().long()
        elif case == "nan":
            state[k] = state[k].clone().fill_(float("nan"))
        else:
            for k in sorted(state)[:2]:
                del state[k]
            state["bogus.weight"] = torch.zeros(1)
        return state

    _rewrite(ck, "ema", corrupt)
    with pytest.raises(CheckpointError, match=msg) as e:
        difflab.load(run)
    assert "\n" not in str(e.value) and len(str(e.value)) < 400
    with pytest.raises(CheckpointError, match=msg.replace("the config's network", "the network")):
        Trainer(tiny_cfg(run, "max_steps=3"), resume=True)


def test_a_local_folder_shadowing_a_shipped_model_warns(trained, tmp_path, monkeypatch, capsys):
    from difflab.models import SHIPPED_DIR

    if not (SHIPPED_DIR / "mnist-cond" / "config.json").exists():
        pytest.skip("shipped mnist-cond not installed")
    shutil.copytree(trained, tmp_path / "mnist-cond")
    monkeypatch.chdir(tmp_path)
    D = difflab.load("mnist-cond")
    assert Path(D.difflab_path).resolve().is_relative_to(tmp_path.resolve())  # the local folder wins, as before
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "shadows the shipped model 'mnist-cond'" in lines[0]


# -- 5. log.jsonl: strict JSON; a resume writes a record and repeats no step -------------------------------

def test_log_is_strict_json_and_a_resume_logs_each_step_once(tmp_path, monkeypatch):
    out = tmp_path / "run"
    real = Trainer.compute_loss
    monkeypatch.setattr(Trainer, "compute_loss",
                        lambda self, b, g: real(self, b, g) * (float("nan") if self.step == 2 else 1.0))
    Trainer(tiny_cfg(out, "max_steps=6", "ckpt_every=4", "log_every=1")).run()
    shutil.rmtree(out / "checkpoints" / "ckpt-00000006")  # as if killed after logging step 6, before saving it
    with open(out / "log.jsonl", "a") as f:
        f.write('{"step": 7, "lo')  # and half-way through a line
    Trainer(tiny_cfg(out, "max_steps=8", "ckpt_every=4", "log_every=1"), resume=True).run()
    log = strict_lines(out / "log.jsonl")
    steps = [r["step"] for r in log if "event" not in r]
    assert steps == [1, 2, 3, 4, 5, 6, 7, 8]  # each step once
    nan_step = next(r for r in log if r.get("step") == 3 and "event" not in r)
    assert nan_step["loss"] is None and "loss" in nan_step["nonfinite"] and nan_step["finite"] is False
    events = [r["event"] for r in log if "event" in r]
    assert events == ["nonfinite_skipped", "resumed", "done"]  # the first run's 'done' (6 steps) is dropped
    resumed = next(r for r in log if r.get("event") == "resumed")
    assert resumed["step"] == 4 and resumed["checkpoint"] == "ckpt-00000004"
    assert resumed["dropped_records"] == 4  # steps 5, 6, the first 'done', the torn line
    assert log.index(resumed) == 5  # right after step 4's record


def test_export_refuses_nonfinite_weights_and_float16_overflow(tmp_path):
    from difflab.export import export_shipped

    ck = save_checkpoint(tmp_path / "ck", config={}, model={"w": torch.tensor([1.0, 1e6])})
    with pytest.raises(CheckpointError, match=r"model\.safetensors: tensor 'w' overflows torch\.float16"):
        export_shipped(ck, "m", dest_root=tmp_path / "ship", ema=False)
    assert (export_shipped(ck, "m", dest_root=tmp_path / "ship", ema=False, dtype=torch.float32) / "config.json").exists()
    bad = save_checkpoint(tmp_path / "bad", config={}, model={"w": torch.tensor([float("nan")])})
    with pytest.raises(CheckpointError, match=r"model\.safetensors: tensor 'w' holds non-finite values"):
        export_shipped(bad, "b", dest_root=tmp_path / "ship", ema=False)
    assert not (tmp_path / "ship" / "b").exists()

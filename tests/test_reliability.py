"""Reliability: nothing lost (kill/resume, atomic checkpoints), nothing executed (no unpickling), clear
errors (bad files, bad values), numerical guards. docs/reliability.md maps each guarantee to its test here."""

from __future__ import annotations

import ast
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import difflab
from difflab import cli
from difflab.checkpoint import (
    CheckpointError,
    import_pickle_weights,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    read_tensors,
    save_checkpoint,
)
from difflab.config import ConfigError, load_config
from difflab.training.trainer import Trainer, TrainingDiverged

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "configs" / "tiny.yaml")
STEPS = 10  # length of the reference run
SMALL = ["limit=64", "batch_size=8", "threads=1", "progress=false", "sample.n_preview=1", "sample.steps=1"]


def overrides(out, *extra):
    return [f"out={out}", *SMALL, *extra]


def tiny_cfg(out, *extra):
    return load_config(CONFIG, overrides(out, *extra))


def ckpt_step(path: Path) -> int:
    return int(path.name.split("-")[1])


class Recorder:
    """Wraps Trainer.batch_indices to record the data order (step, indices) actually trained on."""

    def __init__(self):
        self.calls: list[tuple[int, list[int]]] = []
        self._orig = Trainer.batch_indices
        rec = self

        def batch_indices(trainer, step):
            idx = rec._orig(trainer, step)
            rec.calls.append((step, idx.tolist()))
            return idx

        self.fn = batch_indices


def assert_same_checkpoint(a: Path, b: Path):
    """Bit-identical parameters, EMA, optimizer state, step counters and optimizer hyper-parameters."""
    da, db = load_checkpoint(a, need_train_state=True), load_checkpoint(b, need_train_state=True)
    for part in ("model", "ema", "train_state"):
        assert da[part].keys() == db[part].keys(), part
        for k in da[part]:
            assert torch.equal(da[part][k], db[part][k]), f"{part}/{k} differs"
    assert da["json"] == db["json"]
    assert int(da["train_state"]["step"]) == int(db["train_state"]["step"])


@pytest.fixture
def no_preview(monkeypatch):
    monkeypatch.setattr(Trainer, "preview", lambda self: None)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of STEPS steps: its final checkpoint and its data order."""
    out = tmp_path_factory.mktemp("reference")
    rec = Recorder()
    with pytest.MonkeyPatch.context() as m:
        m.setattr(Trainer, "preview", lambda self: None)
        m.setattr(Trainer, "batch_indices", rec.fn)
        Trainer(tiny_cfg(out, f"max_steps={STEPS}", "ckpt_every=2")).run()
    final = latest_checkpoint(out)
    assert ckpt_step(final) == STEPS
    return {"ckpt": final, "calls": rec.calls}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny run of 4 steps with checkpoints at steps 2 and 4 (copy it before breaking it)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    with pytest.MonkeyPatch.context() as m:
        m.setattr(Trainer, "preview", lambda self: None)
        Trainer(tiny_cfg(out, "max_steps=4", "ckpt_every=2")).run()
    assert [p.name for p in list_checkpoints(out)] == ["ckpt-00000002", "ckpt-00000004"]
    return out


@pytest.fixture
def run_copy(trained_run, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(trained_run, dst)
    return dst


def run_cli(argv, capsys) -> tuple[int, str]:
    """cli.main's exit code (argparse's SystemExit included) and its stderr."""
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, capsys.readouterr().err


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    assert lines[0].startswith("difflab: error: "), err
    return lines[0]


# ---------------------------------------------------------------------------------------------------------
# 1. Nothing lost: SIGKILL mid-run, resume, bit-identical to the uninterrupted run
# ---------------------------------------------------------------------------------------------------------

def test_sigkill_then_resume_is_bit_identical(tmp_path, reference, monkeypatch, capsys):
    out = tmp_path / "killed"
    args = overrides(out, f"max_steps={STEPS}", "ckpt_every=2")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(tmp_path / "stderr.txt", "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "difflab", "train", CONFIG, *args], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.time() + 180
            while latest_checkpoint(out) is None:  # kill as soon as the first complete checkpoint exists
                assert proc.poll() is None, f"training ended before its first checkpoint: " \
                                            f"{(tmp_path / 'stderr.txt').read_text()}"
                assert time.time() < deadline, "no checkpoint after 180 s"
                time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = ckpt_step(latest_checkpoint(out))
    assert 0 < killed_at < STEPS, "the kill must land mid-run"

    rec = Recorder()
    monkeypatch.setattr(Trainer, "batch_indices", rec.fn)
    monkeypatch.setattr(Trainer, "preview", lambda self: None)
    code, err = run_cli(["train", CONFIG, *args, "--resume"], capsys)
    assert code == 0, err
    # The resumed run starts at the checkpoint's step and sees exactly the remaining batches, in order.
    assert rec.calls[0][0] == killed_at
    assert rec.calls == reference["calls"][killed_at:]
    assert_same_checkpoint(reference["ckpt"], latest_checkpoint(out))
    assert not list((out / "checkpoints").glob("*.tmp"))


# ---------------------------------------------------------------------------------------------------------
# 2. Atomic checkpoints, *.tmp leftovers, keep_last
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["before_rename", "mid_write"])
def test_crash_while_checkpointing_keeps_previous_and_resume_is_exact(tmp_path, reference, no_preview,
                                                                      monkeypatch, mode):
    import difflab.checkpoint as ckmod
    import difflab.training.trainer as trmod

    out = tmp_path / mode
    cfg = tiny_cfg(out, f"max_steps={STEPS}", "ckpt_every=2")
    with monkeypatch.context() as m:
        if mode == "before_rename":  # every file written and fsynced, then the process dies
            real = trmod.save_checkpoint
            m.setattr(trmod, "save_checkpoint",
                      lambda path, **kw: real(path, **kw, fail_before_rename=path.name == "ckpt-00000004"))
            expected = RuntimeError
        else:  # the disk fills up half-way through ema.safetensors
            real_save_file = ckmod.save_file

            def save_file(tensors, filename, metadata=None):
                real_save_file(tensors, filename, metadata=metadata)
                if "ckpt-00000004.tmp" in filename and filename.endswith("ema.safetensors"):
                    p = Path(filename)
                    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
                    raise OSError(28, "No space left on device", filename)

            m.setattr(ckmod, "save_file", save_file)
            expected = OSError
        with pytest.raises(expected):
            Trainer(cfg).run()
    assert latest_checkpoint(out).name == "ckpt-00000002"  # the half-written one is invisible
    assert (out / "checkpoints" / "ckpt-00000004.tmp").is_dir()
    load_checkpoint(latest_checkpoint(out), need_train_state=True)  # the previous one loads
    resumed = Trainer(cfg, resume=True)
    assert resumed.step == 2
    assert not (out / "checkpoints" / "ckpt-00000004.tmp").exists()  # cleaned on resume
    resumed.run()
    assert_same_checkpoint(reference["ckpt"], latest_checkpoint(out))


def test_keep_last_and_tmp_cleanup(tmp_path, no_preview):
    out = tmp_path / "keep"
    stale = out / "checkpoints" / "ckpt-00000099.tmp"
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"half")
    assert latest_checkpoint(out) is None  # ignored
    Trainer(tiny_cfg(out, "max_steps=5", "ckpt_every=1", "keep_last=2")).run()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["ckpt-00000004", "ckpt-00000005"]
    assert latest_checkpoint(out).name == "ckpt-00000005"


# ---------------------------------------------------------------------------------------------------------
# 3. Bad files: each error names the file and the problem; no silent partial resume
# ---------------------------------------------------------------------------------------------------------

def test_truncated_safetensors_on_load_and_resume(run_copy):
    f = run_copy / "checkpoints" / "ckpt-00000004" / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"ckpt-00000004/model\.safetensors: .*truncated"):
        difflab.load(run_copy)
    with pytest.raises(CheckpointError, match=r"ckpt-00000004/model\.safetensors: .*truncated.*ckpt-00000002"):
        Trainer(tiny_cfg(run_copy, "max_steps=6", "ckpt_every=2"), resume=True)


def test_git_lfs_pointer_is_named(run_copy):
    f = run_copy / "checkpoints" / "ckpt-00000004" / "ema.safetensors"
    f.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + "\nsize 123456\n")
    with pytest.raises(CheckpointError, match=r"ema\.safetensors: this is a git-LFS pointer"):
        difflab.load(run_copy)


def test_missing_train_state_on_resume_is_an_error(run_copy, capsys, no_preview):
    ck = run_copy / "checkpoints" / "ckpt-00000004"
    (ck / "train_state.safetensors").unlink()
    before = sorted(p.name for p in (run_copy / "checkpoints").iterdir())
    log_before = (run_copy / "log.jsonl").read_text()
    code, err = run_cli(["train", CONFIG, *overrides(run_copy, "max_steps=6", "ckpt_every=2"), "--resume"], capsys)
    assert code == 2
    line = one_error_line(err)
    assert "ckpt-00000004/train_state.safetensors" in line and "missing" in line
    # Nothing trained, nothing written: no silent restart from step 0 or from weights alone.
    assert sorted(p.name for p in (run_copy / "checkpoints").iterdir()) == before
    assert (run_copy / "log.jsonl").read_text() == log_before


def test_partial_optimizer_state_is_refused(run_copy):
    ts = run_copy / "checkpoints" / "ckpt-00000004" / "train_state.safetensors"
    tensors, meta = read_tensors(ts)
    from safetensors.torch import save_file

    save_file({k: v for k, v in tensors.items() if not k.startswith("opt.")}, str(ts), metadata=meta)
    with pytest.raises(CheckpointError, match=r"train_state\.safetensors: optimizer state .*partial resume"):
        Trainer(tiny_cfg(run_copy, "max_steps=6"), resume=True)


def test_incompatible_config_version(run_copy, tmp_path, capsys):
    cj = run_copy / "checkpoints" / "ckpt-00000004" / "config.json"
    cj.write_text(json.dumps({**json.loads(cj.read_text()), "version": 99}))
    with pytest.raises(CheckpointError, match=r"ckpt-00000004/config\.json: incompatible config: .*version 99"):
        difflab.load(run_copy)
    with pytest.raises(CheckpointError, match=r"config\.json: incompatible config: .*version 99"):
        Trainer(tiny_cfg(run_copy, "max_steps=6"), resume=True)
    y = tmp_path / "v99.yaml"
    y.write_text("version: 99\n")
    code, err = run_cli(["train", y], capsys)
    assert code == 2 and "version 99" in one_error_line(err)


def test_resume_with_a_different_model_is_refused(run_copy):
    with pytest.raises(CheckpointError, match=r"config\.json: .*different model config"):
        Trainer(tiny_cfg(run_copy, "max_steps=6", "model.sigma_data=0.6"), resume=True)


def test_data_file_with_wrong_hash(tmp_path, monkeypatch, capsys):
    from difflab.data.idx import DataFileError, idx_bytes
    from difflab.data.mnist import DATASETS, load_arrays

    cache = tmp_path / "cache"
    root = cache / "mnist"
    root.mkdir(parents=True)
    spec = DATASETS["mnist"].files
    # Well-formed IDX files of the right size whose contents (all zeros) are not MNIST's.
    (root / spec["test-images"].filename).write_bytes(idx_bytes(np.zeros(spec["test-images"].shape, np.uint8)))
    (root / spec["test-labels"].filename).write_bytes(idx_bytes(np.zeros(spec["test-labels"].shape, np.uint8)))
    with pytest.raises(DataFileError, match=r"t10k-images-idx3-ubyte: SHA-256 [0-9a-f]{64} does not match"):
        load_arrays("mnist", "test", cache_dir=cache, download=False, verbose=False)
    monkeypatch.setenv("DIFFLAB_CACHE", str(cache))
    monkeypatch.setenv("DIFFLAB_OFFLINE", "1")
    code, err = run_cli(["train", CONFIG, *overrides(tmp_path / "r", "data.name=mnist", "data.split=test")], capsys)
    assert code == 2
    line = one_error_line(err)
    assert "t10k-images-idx3-ubyte" in line and "SHA-256" in line


def test_cli_sample_truncated_weights_one_line(run_copy, tmp_path):
    """The real entry point in a fresh process: exit code 2, one stderr line naming the file, no traceback."""
    f = run_copy / "checkpoints" / "ckpt-00000004" / "model.safetensors"
    f.write_bytes(f.read_bytes()[:100])
    p = subprocess.run([sys.executable, "-m", "difflab", "sample", str(run_copy), "--n", "2", "--steps", "1",
                        "--out", str(tmp_path / "s.png")], cwd=tmp_path, capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert p.returncode == 2, p.stderr
    line = one_error_line(p.stderr)
    assert str(f) in line and "truncated" in line
    assert not (tmp_path / "s.png").exists()


# ---------------------------------------------------------------------------------------------------------
# 4. Nothing executed: difflab never unpickles
# ---------------------------------------------------------------------------------------------------------

class _Evil:
    """Unpickling this creates a marker file (a stand-in for arbitrary code)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def evil_files(tmp_path):
    marker = tmp_path / "PWNED"
    folder = tmp_path / "model_dir"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(load_config(CONFIG).to_dict()))
    torch.save({"w": torch.ones(2), "payload": _Evil(marker)}, folder / "model.pt")
    with open(folder / "model.pkl", "wb") as f:
        pickle.dump({"w": _Evil(marker)}, f)
    shutil.copy(folder / "model.pt", folder / "renamed.safetensors")
    # Sanity check: the files really do run code when unpickled the unsafe way.
    with open(folder / "model.pkl", "rb") as f:
        pickle.load(f)["w"].close()
    assert marker.exists()
    marker.unlink()
    return folder, marker


def test_pickles_are_refused_and_never_run(evil_files):
    folder, marker = evil_files
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        difflab.load(folder)
    for name in ("model.pt", "model.pkl"):
        with pytest.raises(CheckpointError, match=rf"{name}: refusing to load a pickle-based file"):
            read_tensors(folder / name)
    with pytest.raises(CheckpointError, match=r"renamed\.safetensors: not a readable safetensors file"):
        read_tensors(folder / "renamed.safetensors")
    with pytest.raises(CheckpointError, match="allow_pickle=True"):
        import_pickle_weights(folder / "model.pt")
    assert not marker.exists()


def test_explicit_pickle_import_uses_weights_only(evil_files, tmp_path, monkeypatch):
    folder, marker = evil_files
    seen = []
    real_load = torch.load

    def spy(*a, **kw):
        seen.append(kw.get("weights_only"))
        return real_load(*a, **kw)

    monkeypatch.setattr(torch, "load", spy)
    with pytest.raises(CheckpointError, match=r"model\.pt: refused to unpickle"):
        import_pickle_weights(folder / "model.pt", allow_pickle=True)
    assert not marker.exists()
    good = tmp_path / "good.pt"
    torch.save({"state_dict": {"w": torch.arange(3.0)}}, good)
    assert torch.equal(import_pickle_weights(good, allow_pickle=True)["w"], torch.arange(3.0))
    assert seen == [True, True]


def _unsafe_loader_calls(tree: ast.AST) -> list[tuple[int, str]]:
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
            if any(n and n.split(".")[0] in ("pickle", "cPickle", "dill", "joblib", "cloudpickle") for n in names):
                bad.append((node.lineno, "imports a pickle module"))
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        base, attr = node.func.value, node.func.attr
        owner = base.id if isinstance(base, ast.Name) else None
        kw = {k.arg: (k.value.value if isinstance(k.value, ast.Constant) else "<expr>") for k in node.keywords}
        if owner == "torch" and attr == "load" and kw.get("weights_only", "<unset>") is not True:
            bad.append((node.lineno, "torch.load without weights_only=True"))
        # numpy >= 1.16.3 defaults to allow_pickle=False: an np.load without it is safe, one with it must say False.
        if owner in ("np", "numpy") and attr == "load" and kw.get("allow_pickle", False) is not False:
            bad.append((node.lineno, "np.load with allow_pickle not False"))
        if owner in ("pickle", "dill", "joblib") and attr in ("load", "loads"):
            bad.append((node.lineno, f"{owner}.{attr}"))
    return bad


def test_source_has_no_unsafe_loaders():
    """Static guard: every torch.load has weights_only=True, no np.load allows pickles, no pickle module."""
    assert tuple(int(v) for v in np.__version__.split(".")[:2]) >= (1, 17)  # np.load's safe default
    found = []
    for py in sorted((ROOT / "src" / "difflab").rglob("*.py")):
        for line, what in _unsafe_loader_calls(ast.parse(py.read_text(), filename=str(py))):
            found.append(f"{py.relative_to(ROOT)}:{line}: {what}")
    assert not found, "\n".join(found)
    # The checker itself catches what it should.
    assert len(_unsafe_loader_calls(ast.parse(
        "import pickle\ntorch.load(f)\nnp.load(f, allow_pickle=True)\nnp.load(f, allow_pickle=flag)\n"
        "torch.load(f, weights_only=True)\nnp.load(f, allow_pickle=False)\nnp.load(f)\n"))) == 4


# ---------------------------------------------------------------------------------------------------------
# 5. Numerical guards
# ---------------------------------------------------------------------------------------------------------

def test_nan_loss_skips_steps_then_stops_without_overwriting(tmp_path, no_preview, monkeypatch, capsys):
    out = tmp_path / "nan"
    real = Trainer.compute_loss

    def compute_loss(self, batch, gen):
        loss = real(self, batch, gen)
        return loss * float("nan") if self.step >= 4 else loss

    monkeypatch.setattr(Trainer, "compute_loss", compute_loss)
    code, err = run_cli(["train", CONFIG, *overrides(out, "max_steps=20", "ckpt_every=2", "max_bad_steps=3")], capsys)
    assert code == 2
    line = one_error_line(err)
    assert "3 consecutive non-finite steps at step 6" in line
    assert f"resume from {out / 'checkpoints' / 'ckpt-00000006'} with --resume" in line
    events = [json.loads(ln) for ln in (out / "log.jsonl").read_text().splitlines()]
    skipped = [e for e in events if e.get("event") == "nonfinite_skipped"]
    # log.jsonl is strict JSON: the NaN loss is written as null and named in "nonfinite".
    assert [e["step"] for e in skipped] == [4, 5, 6] and all(e["loss"] is None for e in skipped)
    assert all("loss" in e["nonfinite"] for e in skipped)
    assert not any(e.get("event") == "done" for e in events)
    ckpts = list_checkpoints(out)
    assert [p.name for p in ckpts] == ["ckpt-00000004", "ckpt-00000006"]  # no final save after stopping
    good, last = load_checkpoint(ckpts[0]), load_checkpoint(ckpts[1])
    for k, v in good["model"].items():  # skipped steps changed nothing; the weights are finite
        assert torch.isfinite(v).all() and torch.equal(v, last["model"][k])
        assert torch.equal(good["ema"][k], last["ema"][k])


def test_nan_gradient_with_finite_loss_is_skipped(tmp_path, no_preview):
    t = Trainer(tiny_cfg(tmp_path / "g", "max_steps=2", "ckpt_every=100"))
    t.train_step()
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    ema_before = {k: v.clone() for k, v in t.ema.state_dict().items()}
    opt_step = [int(s["step"]) for s in t.opt.state.values()]
    hook = next(t.model.parameters()).register_hook(lambda g: torch.full_like(g, float("nan")))
    stats = t.train_step()
    hook.remove()
    assert not stats["finite"] and np.isfinite(stats["loss"]) and not np.isfinite(stats["grad_norm"])
    assert t.bad_steps == 1 and t.step == 2
    for k, v in t.model.state_dict().items():
        assert torch.equal(v, before[k]) and torch.equal(t.ema.state_dict()[k], ema_before[k])
    assert [int(s["step"]) for s in t.opt.state.values()] == opt_step
    ev = [json.loads(ln) for ln in (tmp_path / "g" / "log.jsonl").read_text().splitlines()]
    assert ev[-1]["event"] == "nonfinite_skipped" and ev[-1]["step"] == 1


def test_nonfinite_weights_are_never_checkpointed(tmp_path, no_preview):
    t = Trainer(tiny_cfg(tmp_path / "w", "max_steps=1", "ckpt_every=1"))
    t.run()
    with torch.no_grad():
        next(t.model.parameters()).fill_(float("inf"))
    t.step += 1
    with pytest.raises(TrainingDiverged, match="non-finite") as e:
        t.save()
    assert [p.name for p in list_checkpoints(tmp_path / "w")] == ["ckpt-00000001"]
    # The save is skipped and logged, and the error names the checkpoint to resume from.
    assert f"resume from {tmp_path / 'w' / 'checkpoints' / 'ckpt-00000001'} with --resume" in str(e.value)
    last = json.loads((tmp_path / "w" / "log.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "checkpoint_skipped" and last["step"] == 2 and last["tensor"].startswith("model/")


def test_reduced_precision_sampling_has_no_nan(trained_run, tmp_path):
    from difflab.sampling.generate import generate

    cond = {"class_labels": torch.arange(4)}
    D = difflab.load(trained_run)
    ref = generate(D, 4, (1, 28, 28), steps=4, seed=0, cond=cond)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x = generate(D, 4, (1, 28, 28), steps=4, seed=0, cond=cond)
    assert torch.isfinite(x).all()
    assert (x.float() - ref).abs().max() < 0.5
    # fp16 weights on disk, loaded as float32.
    data = load_checkpoint(latest_checkpoint(trained_run))
    half = save_checkpoint(tmp_path / "half", config=data["config"],
                           model={k: v.half() for k, v in data["model"].items()},
                           ema={k: v.half() for k, v in data["ema"].items()})
    Dh = difflab.load(half)
    assert all(p.dtype == torch.float32 for p in Dh.parameters())
    xh = generate(Dh, 4, (1, 28, 28), steps=4, seed=0, cond=cond)
    assert torch.isfinite(xh).all()
    assert (xh - ref).abs().max() < 0.1


# ---------------------------------------------------------------------------------------------------------
# 6. Input validation: one-line errors naming the value and the allowed range
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("override,msg", [
    ("sample.steps=0", r"sample\.steps=0 is out of range \[1, "),
    ("batch_size=0", r"train\.batch_size=0 is out of range \[1, "),
    ("sigma_min=-1", r"model\.sigma_min=-1\.0 is out of range \["),
    ("sigma_max=0", r"model\.sigma_max=0\.0 is out of range \["),
    ("S_churn=-1", r"sample\.S_churn=-1\.0 is out of range \[0, "),
    ("label_dropout=1.5", r"train\.label_dropout=1\.5 is out of range \[0, 1\]"),
    ("size=30", r"data\.size must be one of \[28, 32\], got 30"),
    ("channels=0", r"model\.channels=0 is out of range \[1, 64\]"),
    ("num_classes=-1", r"model\.num_classes=-1 is out of range"),
    ("train.betas=[0.9, 1.5]", r"train\.betas must be two numbers in \[0, 1\)"),
    ("lr=.nan", r"train\.lr must be a finite number, got nan"),
    ("max_bad_steps=0", r"train\.max_bad_steps=0 is out of range \[1, "),
])
def test_config_values_name_value_and_range(override, msg):
    with pytest.raises(ConfigError, match=msg) as e:
        load_config(CONFIG, [override])
    assert "\n" not in str(e.value)


def test_sigma_range_order_is_checked():
    with pytest.raises(ConfigError, match=r"model\.sigma_min \(100\.0\) must be < model\.sigma_max \(1\.0\)"):
        load_config(CONFIG, ["sigma_min=100", "sigma_max=1"])


def test_network_options_from_the_config_give_config_errors(tmp_path, capsys):
    code, err = run_cli(["train", CONFIG, *overrides(tmp_path / "n", "model.net.model_channels=abc")], capsys)
    assert code == 2 and "model.net" in one_error_line(err)


@pytest.mark.parametrize("argv,msg", [
    (["--steps", "0"], "--steps must be an integer in [1, "),
    (["--n", "0"], "--n must be an integer in [1, "),
    (["--batch-size", "0"], "--batch-size must be an integer in [1, "),
    (["--S-churn", "-1"], "--S-churn must be a finite number >= 0"),
    (["--S-churn", "inf"], "--S-churn must be a finite number >= 0"),
    (["--pg-weight", "-0.5"], "--pg-weight must be a finite number >= 0"),
    (["--eta", "-1"], "--eta must be a number in [0, 100]"),
    (["--cfg-weight", "nan"], "--cfg-weight must be a number in [-1000, 1000]"),
    (["--sigma-min", "0"], "--sigma-min must be a number in (0, "),
    (["--sigma-max", "-3"], "--sigma-max must be a number in (0, "),
    (["--rho", "0"], "--rho must be a number in (0, "),
    (["--seed", "-1"], "--seed must be an integer in [0, "),
    (["--label", "-1"], "--label must be an integer in [0, "),
    (["--label", "10"], "--label must be in [0, 9], got 10"),
    (["--sigma-min", "5", "--sigma-max", "1"], "sigma_min=5.0, sigma_max=1.0"),
    (["--S-tmin", "5", "--S-tmax", "1"], "S_tmin=5.0, S_tmax=1.0"),
    (["--eta", "0.5"], "--eta applies to the ddim, dpmpp_2s_ancestral, "),
    (["--sampler", "nope"], "unknown sampler 'nope'"),
    (["--device", "gpu0"], "--device must be cpu, cuda or cuda:N, got 'gpu0'"),
])
def test_cli_sampling_values(trained_run, tmp_path, monkeypatch, capsys, argv, msg):
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(["sample", trained_run, "--n", "2", "--steps", "1", *argv], capsys)
    assert code == 2
    assert msg in err.strip().splitlines()[-1], err
    assert "Traceback" not in err
    assert not (tmp_path / "samples.png").exists()


def test_cli_missing_model_and_config(tmp_path, capsys):
    code, err = run_cli(["sample", tmp_path / "nope"], capsys)
    assert code == 2 and "nope: no such run directory" in one_error_line(err)
    code, err = run_cli(["train", tmp_path / "nope.yaml"], capsys)
    assert code == 2 and "nope.yaml" in one_error_line(err)
    code, err = run_cli(["train", CONFIG, "max_stepz=3"], capsys)
    assert code == 2 and "did you mean 'max_steps'" in one_error_line(err)

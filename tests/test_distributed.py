"""Multi-process training: DDP over 2 CPU processes (gloo, launched by torchrun) equals single-process training
on the same global batch; the noise of sample j does not depend on the number of processes; seeds are sharded
so that each is drawn exactly once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from difflab.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from difflab.config import load_config
from difflab.diffusion.losses import BatchShare, EDMLoss, EpsLoss, drop_labels, randn_rows
from difflab.diffusion.precond import EDMPrecond, VPEpsPrecond
from difflab.sampling.rng import make_generator
from difflab.training.distributed import dist_env, shard_indices, train_distributed
from difflab.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "configs" / "tiny.yaml")
SMALL = ["limit=64", "batch_size=8", "threads=1", "progress=false", "sample.n_preview=1", "sample.steps=1",
         "max_steps=3", "ckpt_every=100", "log_every=1"]


# -- sharding ---------------------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 500), world=st.integers(1, 17))
def test_shard_indices_cover_each_index_exactly_once(n, world):
    shards = [shard_indices(n, r, world) for r in range(world)]
    flat = sorted(i for s in shards for i in s)
    assert flat == list(range(n))  # each exactly once
    assert max(map(len, shards)) - min(map(len, shards)) <= 1  # balanced
    assert shards == [shard_indices(n, r, world) for r in range(world)]  # deterministic: resumable


@pytest.mark.parametrize("n,rank,world,msg", [(-1, 0, 1, "n must be >= 0"), (5, 2, 2, r"rank must be in \[0, 1\]"),
                                              (5, 0, 0, "world"), (5, -1, 2, "rank"), (5.0, 0, 1, "integer")])
def test_shard_indices_bad_arguments(n, rank, world, msg):
    with pytest.raises(ValueError, match=msg):
        shard_indices(n, rank, world)


def test_dist_env_and_batch_divisibility(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert dist_env() == (1, 3, 1)
    cfg = load_config(CONFIG, ["out=unused", *SMALL])  # batch 8 over 3 processes: refused before any set-up
    with pytest.raises(ValueError, match=r"train\.batch_size=8 must be divisible .*WORLD_SIZE=3"):
        train_distributed(cfg)
    monkeypatch.setenv("RANK", "3")
    with pytest.raises(ValueError, match="RANK=3"):
        dist_env()


# -- noise does not depend on the number of processes -------------------------------------------------------

@pytest.mark.parametrize("world", [2, 4])
def test_rank_shares_draw_the_global_batch_noise(world):
    torch.manual_seed(0)
    B = 8
    x0 = torch.randn(B, 1, 6, 6)
    labels = torch.arange(B) % 3
    net_e = _TinyNet()
    cases = [(EDMLoss(), EDMPrecond(net_e)), (EpsLoss(2), VPEpsPrecond(net_e, T=50))]
    for loss, D in cases:
        full = loss(D, x0, {}, generator=make_generator(5, 2, 7, 0))
        for r in range(world):
            share = BatchShare(make_generator(5, 2, 7, 0), r, world, B)
            assert torch.allclose(loss(D, x0[r::world], {}, generator=share), full[r::world], atol=1e-6)
    dropped = drop_labels(labels, 0.5, 3, generator=make_generator(1))
    for r in range(world):
        mine = drop_labels(labels[r::world], 0.5, 3, generator=BatchShare(make_generator(1), r, world, B))
        assert torch.equal(mine, dropped[r::world])
    with pytest.raises(ValueError, match="holds 4 of the global batch of 8"):
        randn_rows((3, 2), BatchShare(make_generator(1), 0, 2, 8))


class _TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x, c_noise, class_labels=None, cond_frames=None):
        return self.conv(x) * (1 + c_noise.view(-1, 1, 1, 1).float() * 0.01)


# -- DDP end to end ---------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, cfg, err_dir: str):
    import traceback

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    if Path("/sys/class/net/lo").exists():
        os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    torch.set_num_threads(1)
    try:
        from difflab.training.launcher import train

        train(cfg, log=lambda *a: None)  # WORLD_SIZE > 1: dispatches to train_distributed
    except BaseException:
        Path(err_dir, f"rank{rank}.txt").write_text(traceback.format_exc())
        raise


def _compare_with_single_process(ddp_out: Path, single: Trainer):
    assert [c.name for c in list_checkpoints(ddp_out)] == ["ckpt-00000003"]  # rank 0 wrote, once
    d = load_checkpoint(latest_checkpoint(ddp_out), need_train_state=True)
    for part, ref in (("model", single.model.state_dict()), ("ema", single.ema.state_dict())):
        for k, v in ref.items():
            torch.testing.assert_close(d[part][k], v, rtol=1e-5, atol=1e-6, msg=f"{part}/{k}")
    for i, st_ in single.opt.state_dict()["state"].items():
        for k, v in st_.items():
            torch.testing.assert_close(d["train_state"][f"opt.{i}.{k}"], torch.as_tensor(v), rtol=1e-4, atol=1e-7)
    assert int(d["train_state"]["step"]) == 3 and int(d["train_state"]["images_seen"]) == 24
    ddp_log = [json.loads(ln) for ln in (ddp_out / "log.jsonl").read_text().splitlines()]
    single_log = [json.loads(ln) for ln in (single.run_dir / "log.jsonl").read_text().splitlines()]
    assert len(ddp_log) == len(single_log) == 4  # steps 1..3 and 'done', written once (rank 0)
    for a, b in zip(ddp_log[:3], single_log[:3], strict=True):
        assert a["step"] == b["step"]
        assert abs(a["loss"] - b["loss"]) <= 1e-5 * abs(b["loss"])  # the all-reduced (global) loss
        assert abs(a["grad_norm"] - b["grad_norm"]) <= 1e-4 * abs(b["grad_norm"])


@pytest.fixture
def single_process_run(tmp_path, monkeypatch):
    monkeypatch.setattr(Trainer, "preview", lambda self: None)
    single = Trainer(load_config(CONFIG, [f"out={tmp_path / 'single'}", *SMALL]))
    single.run()
    return single


@pytest.mark.skipif("fork" not in __import__("multiprocessing").get_all_start_methods(), reason="needs fork")
def test_ddp_two_processes_equals_single_process(tmp_path, single_process_run):
    """2 processes (gloo on CPU) through launcher.train -> train_distributed equal single-process training on
    the same global batch within float tolerance. The workers are forked, so they reuse this process's imports
    (the torchrun end-to-end test below is the slow variant)."""
    import multiprocessing as mp

    ddp_out = tmp_path / "ddp"
    cfg = load_config(CONFIG, [f"out={ddp_out}", *SMALL])
    ctx = mp.get_context("fork")
    port = _free_port()
    procs = [ctx.Process(target=_ddp_worker, args=(r, 2, port, cfg, str(tmp_path))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    hung = [p for p in procs if p.is_alive()]
    for p in hung:
        p.kill()
        p.join()
    errors = "".join(f.read_text() for f in sorted(tmp_path.glob("rank*.txt")))
    assert not hung, f"DDP workers hung: {errors}"
    assert [p.exitcode for p in procs] == [0, 0], errors
    _compare_with_single_process(ddp_out, single_process_run)


@pytest.mark.slow
def test_torchrun_cli_two_processes_equals_single_process(tmp_path, single_process_run):
    """`torchrun --nproc_per_node=2 -m difflab train ...` end to end (fresh processes, ~45 s on 2 busy cores)."""
    ddp_out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    if Path("/sys/class/net/lo").exists():
        env["GLOO_SOCKET_IFNAME"] = "lo"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", "-m", "difflab", "train", CONFIG, f"out={ddp_out}", *SMALL]
    p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=500)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert p.stdout.count('"steps": 3') == 1  # one summary: rank 0 only
    _compare_with_single_process(ddp_out, single_process_run)


def test_torchrun_eval_two_processes_equals_one(tmp_path):
    """`torchrun --nproc_per_node=2 -m difflab eval ...` splits the seeds across two gloo processes, gathers the
    samples and writes one JSON equal to one process's (per-sample generators; the network's batch composition
    differs, so floats agree to rounding, discrete results exactly)."""
    import json
    import subprocess
    import sys

    argv = ["-m", "difflab", "eval", "mnist-cond", "--metrics", "modes,fid_classifier", "--num-samples", "20",
            "--steps", "4", "--batch-size", "8"]
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    p = subprocess.run([sys.executable, *argv, "--json", str(one)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", *argv, "--json", str(two)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    a, b = json.loads(one.read_text()), json.loads(two.read_text())
    assert a["class_hist"] == b["class_hist"] and a["modes_per_10"] == b["modes_per_10"] and b["n"] == 20
    assert abs(a["fid_classifier"] - b["fid_classifier"]) <= 1e-4 * abs(a["fid_classifier"])

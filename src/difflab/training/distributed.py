"""Multi-process training with torch's DistributedDataParallel, and sharding work across processes.

Launch with torchrun (it sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)::

    torchrun --nproc_per_node=2 -m difflab train configs/mnist_cond.yaml train.batch_size=128

``difflab.training.launcher.train`` sees WORLD_SIZE > 1 and calls :func:`train_distributed`: one process per
rank, gloo on the CPU and NCCL on CUDA (one GPU per local rank). ``train.batch_size`` is the *global* batch:
rank r trains on rows ``r::world_size`` of it (so it must divide evenly), draws the global batch's noise and
keeps the same rows, and DDP averages the gradients. With equal shares one DDP step therefore equals one
single-process step on the same global batch, up to float summation order (tests/test_distributed.py).
Only rank 0 writes checkpoints, logs, previews and config.json; the logged loss is all-reduced.

Sampling and sweeps split their seeds with :func:`shard_indices`: rank r of w takes ``r, r + w, r + 2w, ...``,
so every seed is drawn exactly once, by the same rank on every rerun (resumable per seed)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from difflab.training.trainer import Trainer
from difflab.utils import pick_device, shard_indices

__all__ = ["dist_env", "shard_indices", "train_distributed"]


def dist_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from the variables torchrun sets (1 process when unset)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as e:
        raise ValueError(f"RANK / WORLD_SIZE / LOCAL_RANK must be integers: {e}") from None
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} must be in [0, WORLD_SIZE-1] with WORLD_SIZE={world} >= 1")
    return rank, world, local_rank


def train_distributed(cfg, resume: bool = False, dataset=None, log=print, overwrite: bool = False) -> dict | None:
    """Run :class:`~difflab.training.trainer.Trainer` on this rank under DDP; rank 0 returns the summary.
    Rank 0 locks the run folder and applies the fresh-run / ``overwrite`` policy (difflab.training.rundir)."""
    rank, world, local_rank = dist_env()
    if cfg.train.batch_size % world:
        raise ValueError(f"train.batch_size={cfg.train.batch_size} must be divisible by the number of processes "
                         f"(WORLD_SIZE={world}): it is the global batch, split evenly across ranks")
    device = pick_device(cfg.train.device)
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} CUDA devices are visible")
        torch.cuda.set_device(local_rank)
        backend = "nccl"
    else:
        backend = "gloo"
    started_here = not dist.is_initialized()
    if started_here:
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world)
    quiet = (lambda *a, **k: None)
    try:
        trainer = Trainer(cfg, dataset=dataset, resume=resume, rank=rank, world_size=world,
                          log=log if rank == 0 else quiet, overwrite=overwrite)
        if rank == 0:
            log(f"DDP: {world} processes, backend {backend}, global batch {cfg.train.batch_size} "
                f"({cfg.train.batch_size // world} per rank)")
        summary = trainer.run()
        dist.barrier()  # rank 0 may still be writing its final checkpoint
    finally:
        if started_here and dist.is_initialized():
            dist.destroy_process_group()
    return summary if rank == 0 else None

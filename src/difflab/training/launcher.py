"""The one entry point for training: ``train(cfg, resume=..., overwrite=...)`` runs single-process training, or
DDP on this rank when launched by torchrun (``WORLD_SIZE > 1``; see difflab.training.distributed).

    difflab train CONFIG [key=value ...] [--resume | --overwrite]
    torchrun --nproc_per_node=2 -m difflab train CONFIG ...
"""

from __future__ import annotations

from difflab.config import Config
from difflab.training.distributed import dist_env, train_distributed
from difflab.training.trainer import Trainer

__all__ = ["train"]


def train(cfg: Config, resume: bool = False, dataset=None, log=print, overwrite: bool = False) -> dict | None:
    """Train from a config. ``resume``: continue from the run folder's newest checkpoint (exact on the CPU);
    ``overwrite``: move an existing run in the folder aside to ``RUN.old-<timestamp>`` and start afresh (without
    either, a folder that already holds a run is refused). Returns the summary (None on DDP ranks other than 0)."""
    if dist_env()[1] > 1:
        return train_distributed(cfg, resume=resume, dataset=dataset, log=log, overwrite=overwrite)
    return Trainer(cfg, dataset=dataset, resume=resume, log=log, overwrite=overwrite).run()

"""TensorBoard logging beside log.jsonl (``train.logger=tensorboard`` or ``jsonl,tensorboard``).

Scalars of every logged step (loss, grad_norm, lr, images_per_s) and the preview sample grids go to
``RUN/tensorboard/events.out.tfevents.*`` through ``torch.utils.tensorboard.SummaryWriter`` (``tensorboard
--logdir RUN/tensorboard``). ``log.jsonl`` stays the record of the run (resume reads it); TensorBoard is a view.
The ``tensorboard`` package is an optional extra, checked when the trainer starts, before any training."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from difflab.config import Config, ConfigError

SCALARS = ("loss", "grad_norm", "lr", "images_per_s")


def wants_tensorboard(cfg: Config) -> bool:
    return "tensorboard" in [x.strip() for x in cfg.train.logger.split(",")]


class TensorBoardLog:
    """A SummaryWriter on ``run_dir/tensorboard`` fed with the trainer's log records and preview grids."""

    def __init__(self, run_dir: str | Path):
        if importlib.util.find_spec("tensorboard") is None:
            raise ConfigError("train.logger=tensorboard needs the tensorboard package, which is not installed: "
                              "pip install 'difflab[tensorboard]'")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))

    def write(self, record: dict):
        """A log.jsonl record: step records become scalars ``train/<key>``; events are skipped."""
        if "event" in record or "step" not in record:
            return
        for key in SCALARS:
            v = record.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                self.writer.add_scalar(f"train/{key}", v, int(record["step"]))

    def image(self, grid, step: int, tag: str = "samples"):
        """A uint8 grid [H, W] or [H, W, 3] (difflab.viz.grids.make_grid)."""
        self.writer.add_image(tag, grid, step, dataformats="HW" if grid.ndim == 2 else "HWC")

    def close(self):
        self.writer.flush()
        self.writer.close()


def open_log(cfg: Config, run_dir, enabled: bool = True) -> TensorBoardLog | None:
    return TensorBoardLog(run_dir) if enabled and wants_tensorboard(cfg) else None


__all__ = ["TensorBoardLog", "open_log", "wants_tensorboard"]

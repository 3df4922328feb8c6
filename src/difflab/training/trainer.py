"""The training loop: AdamW, LR warm-up, gradient clipping, EMA, bf16 autocast on CUDA only, JSONL logs,
periodic sample grids, atomic checkpoints and exact resume.

Everything random comes from (seed, epoch, step): the data order of epoch e from (seed, 1, e), the noise of
step s from (seed, 2, s, 0), and dropout from a global seed set from (seed, 3, s) before each step. A run
killed at any point and resumed from its newest complete checkpoint reproduces the uninterrupted run
bit-for-bit on the CPU. With ``world_size > 1`` (set up by difflab.training.distributed; the launcher,
difflab.training.launcher, picks single process or DDP) rank r trains on rows r::world_size of the global batch,
and every rank draws the global batch's noise and keeps the same rows, so sample j's noise does not depend on the
number of processes (dropout masks do; presets use none).

The run folder is locked for the trainer's life and a fresh run never reuses an old one
(difflab.training.rundir); the loss of each task is difflab.diffusion.losses.Objective; which checkpoint a
resume starts from, and whether it may, is difflab.checkpoint.resume_checkpoint.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import torch

from difflab.checkpoint import (
    CheckpointError,
    TrainingDiverged,
    latest_checkpoint,
    latest_finite_checkpoint,
    load_checkpoint,
    load_into,
    nonfinite_tensor,
    optimizer_from_tensors,
    optimizer_to_tensors,
    prune_checkpoints,
    resume_checkpoint,
    save_checkpoint,
)
from difflab.config import DIFFUSION_TASKS, Config, ConfigError
from difflab.diffusion.losses import BatchShare, objective_from_config
from difflab.models import build_model, model_shape
from difflab.sampling.rng import derive_seed, make_generator
from difflab.training.rundir import RunLog, claim_run_dir
from difflab.training.tblog import open_log
from difflab.utils import pick_device

__all__ = ["Trainer", "TrainingDiverged", "as_batch", "pick_device", "train"]


def as_batch(items) -> dict:
    """Collate dataset items ((x, label) tuples, or dicts with x / class_labels / cond_frames) into a dict."""
    first = items[0]
    if isinstance(first, dict):
        return {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in first}
    if isinstance(first, (tuple, list)):
        out = {"x": torch.stack([torch.as_tensor(it[0]) for it in items])}
        if len(first) > 1:
            out["class_labels"] = torch.stack([torch.as_tensor(it[1]) for it in items]).long()
        return out
    return {"x": torch.stack([torch.as_tensor(it) for it in items])}


class Trainer:
    def __init__(self, cfg: Config, dataset=None, resume: bool = False, rank: int = 0, world_size: int = 1,
                 log=print, overwrite: bool = False):
        self.cfg, self.rank, self.world_size, self.log = cfg, rank, world_size, log
        self.run_dir = Path(cfg.out)
        self.runlog = RunLog(self.run_dir, enabled=rank == 0)
        self.tb = None  # TensorBoard view of the log (train.logger), opened in _setup
        self.lock = claim_run_dir(self.run_dir, resume, overwrite, log) if rank == 0 else None
        try:
            self._setup(dataset, resume)
        except BaseException:
            self.close()
            raise

    def _setup(self, dataset, resume: bool):
        cfg = self.cfg
        self.tb = open_log(cfg, self.run_dir, enabled=self.rank == 0)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        self.device = pick_device(cfg.train.device)
        if dataset is None:
            from difflab.data.registry import build_dataset

            dataset = build_dataset(cfg.data, seed=cfg.seed)
        self.dataset = dataset
        if len(dataset) < cfg.train.batch_size:
            raise ValueError(f"train.batch_size={cfg.train.batch_size} exceeds the dataset size {len(dataset)}")
        torch.manual_seed(derive_seed(cfg.seed, 0))  # the initial weights depend on the seed alone
        try:
            self.model = build_model(cfg).to(self.device)
        except (TypeError, ValueError) as e:  # e.g. model.net.model_channels=abc reaches the network's checks
            raise ConfigError(f"cannot build the network from model.* (model.preset={cfg.model.preset!r}, "
                              f"model.net={cfg.model.net}): {e}") from e
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.train.lr, betas=tuple(cfg.train.betas),
                                     weight_decay=cfg.train.weight_decay)
        self.is_diffusion = cfg.model.task in DIFFUSION_TASKS and cfg.model.task != "superres"  # previews
        self.objective = objective_from_config(cfg)
        self.step, self.bad_steps, self.images_seen = 0, 0, 0
        if cfg.train.compile:  # in place: parameters, state dict and the EMA copy above stay as they are
            self.model.compile()
        self.ddp_model = self.model
        if self.world_size > 1:
            self.ddp_model = torch.nn.parallel.DistributedDataParallel(self.model)
        if resume and latest_checkpoint(self.run_dir) is not None:
            self._resume()
        elif cfg.train.init_from:
            if resume:  # no checkpoint yet: cut back the log of a run that never reached one
                self.runlog.resumed(0, None)
            self._init_from(cfg.train.init_from)
        elif resume:
            self._resume()

    def close(self):
        """Release the run folder (also done at the end of :meth:`run`, and by the OS if the process dies)."""
        if getattr(self, "tb", None) is not None:
            self.tb.close()
            self.tb = None
        if getattr(self, "lock", None) is not None:
            self.lock.release()

    # -- data ---------------------------------------------------------------------------------------------
    def steps_per_epoch(self) -> int:
        return len(self.dataset) // self.cfg.train.batch_size

    def batch_indices(self, step: int) -> torch.Tensor:
        spe = self.steps_per_epoch()
        epoch, k = divmod(step, spe)
        perm = torch.randperm(len(self.dataset), generator=make_generator(self.cfg.seed, 1, epoch))
        bs = self.cfg.train.batch_size
        idx = perm[k * bs:(k + 1) * bs]
        return idx[self.rank::self.world_size]  # DDP: each rank takes its share of the global batch

    def get_batch(self, step: int) -> dict:
        idx = self.batch_indices(step)
        if hasattr(self.dataset, "as_tensors"):  # in-memory image sets: index the tensors directly
            if not hasattr(self, "_tensors"):
                self._tensors = self.dataset.as_tensors()
            x, y = self._tensors
            batch = {"x": x[idx], "class_labels": y[idx].long()}
        elif hasattr(self.dataset, "get_batch"):
            batch = self.dataset.get_batch(idx)
        else:
            batch = as_batch([self.dataset[int(i)] for i in idx])
        return {k: v.to(self.device) for k, v in batch.items()}

    # -- one step -----------------------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        w = self.cfg.train.warmup_steps
        return self.cfg.train.lr * min(1.0, (step + 1) / w) if w > 0 else self.cfg.train.lr

    def compute_loss(self, batch: dict, gen: torch.Generator) -> torch.Tensor:
        return self.objective(self.ddp_model, batch, gen)

    def train_step(self) -> dict:
        cfg, step = self.cfg, self.step
        torch.manual_seed(derive_seed(cfg.seed, 3, step))
        gen = make_generator(cfg.seed, 2, step, 0, device=self.device)
        if self.world_size > 1:  # DDP: draw the global batch's noise and keep this rank's rows (as the data)
            gen = BatchShare(gen, self.rank, self.world_size, cfg.train.batch_size)
        batch = self.get_batch(step)
        self.model.train()
        for g in self.opt.param_groups:
            g["lr"] = self.lr_at(step)
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda"
                    else torch.autocast("cpu", enabled=False))
        with autocast:
            loss = self.compute_loss(batch, gen)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                                   cfg.train.grad_clip if cfg.train.grad_clip > 0 else math.inf)
        loss_value = loss.detach().float()
        if self.world_size > 1:  # the global batch's mean loss (equal shares); NaN anywhere is NaN everywhere
            torch.distributed.all_reduce(loss_value)
            loss_value = loss_value / self.world_size
        finite = bool(torch.isfinite(loss_value)) and bool(torch.isfinite(grad_norm))
        if finite:
            self.opt.step()
            self.update_ema()
            self.bad_steps = 0
        else:
            self.opt.zero_grad(set_to_none=True)
            self.bad_steps += 1
            self.log_event({"event": "nonfinite_skipped", "step": step, "loss": loss_value.item(),
                            "grad_norm": float(grad_norm), "consecutive": self.bad_steps})
            self.log(f"step {step}: non-finite loss ({loss_value.item()}) or gradient norm ({float(grad_norm)}); "
                     f"step skipped ({self.bad_steps} in a row, train.max_bad_steps={cfg.train.max_bad_steps})")
            if self.bad_steps >= cfg.train.max_bad_steps:
                raise TrainingDiverged(f"{self.bad_steps} consecutive non-finite steps at step {step}; "
                                       f"stopping (the last good checkpoint is kept{self._resume_from()})")
        self.step += 1
        self.images_seen += cfg.train.batch_size
        return {"loss": loss_value.item(), "grad_norm": grad_norm.item(), "lr": self.lr_at(step), "finite": finite}

    @torch.no_grad()
    def update_ema(self):
        d = self.cfg.train.ema_decay
        for pe, pm in zip(self.ema.parameters(), self.model.parameters(), strict=True):
            pe.lerp_(pm.detach(), 1 - d)
        for be, bm in zip(self.ema.buffers(), self.model.buffers(), strict=True):
            be.copy_(bm)

    # -- checkpoints --------------------------------------------------------------------------------------
    def _resume_from(self) -> str:
        ck = latest_finite_checkpoint(self.run_dir)
        return f"; resume from {ck} with --resume" if ck else "; there is no checkpoint to resume from"

    def save(self):
        """Write ckpt-STEP (rank 0) and prune to train.keep_last. Non-finite model or EMA weights are never
        written: the save is skipped and logged (event checkpoint_skipped), and the run stops with
        TrainingDiverged naming the newest finite checkpoint (training cannot recover from such weights)."""
        if self.rank != 0:
            return None
        for name, net in (("model", self.model), ("ema", self.ema)):
            bad = nonfinite_tensor(net.state_dict())
            if bad is not None:  # never replace a good checkpoint by a broken one
                self.log_event({"event": "checkpoint_skipped", "step": self.step, "reason": "nonfinite",
                                "tensor": f"{name}/{bad}"})
                raise TrainingDiverged(f"step {self.step}: {name} weights are non-finite ({bad}, ...); not "
                                       f"writing a checkpoint (the last good one is kept{self._resume_from()})")
        opt_t, opt_j = optimizer_to_tensors(self.opt)
        opt_j["n_opt_states"] = len(self.opt.state)
        tensors = {**opt_t, "step": torch.tensor(self.step), "bad_steps": torch.tensor(self.bad_steps),
                   "images_seen": torch.tensor(self.images_seen)}
        path = self.run_dir / "checkpoints" / f"ckpt-{self.step:08d}"
        save_checkpoint(path, config=self.cfg.to_dict(), model=self.model.state_dict(),
                        ema=self.ema.state_dict(), train_state={"tensors": tensors, "json": opt_j},
                        meta={"step": self.step, "difflab": "0.1.0"})
        prune_checkpoints(self.run_dir, self.cfg.train.keep_last)
        return path

    def _resume(self):
        data = resume_checkpoint(self.run_dir, self.cfg.to_dict(), clean_tmp=self.rank == 0)
        if data is None:
            self.log(f"no checkpoint under {self.run_dir}; starting from step 0")
            self.runlog.resumed(0, None)
            return
        ck, ts = data["path"], data["train_state"]
        load_into(self.model, data["model"], ck / "model.safetensors")
        load_into(self.ema, data["ema"], ck / "ema.safetensors")
        try:
            optimizer_from_tensors(self.opt, ts, data["json"])
        except (RuntimeError, KeyError, ValueError, TypeError) as e:
            raise CheckpointError(f"{ck}: checkpoint does not match this model/optimizer: {e}") from e
        self.step, self.bad_steps = int(ts["step"]), int(ts["bad_steps"])
        self.images_seen = int(ts["images_seen"])
        self.runlog.resumed(self.step, ck)
        self.log(f"resumed from {ck} at step {self.step}")

    def _any_rank(self, flag: bool) -> bool:
        """True on every rank if it is true on any (DDP ranks must stop at the same step)."""
        if self.world_size == 1:
            return flag
        t = torch.tensor([float(flag)], device=self.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item() > 0)

    def _init_from(self, source: str):
        """Fine-tuning: copy model and EMA weights from another run; the optimizer and step start fresh."""
        from difflab.models import resolve

        data = load_checkpoint(resolve(source))
        ck = data["path"]
        load_into(self.model, data["model"], ck / "model.safetensors", "this config's network (init_from)")
        ema, part = (data["ema"], "ema") if data["ema"] is not None else (data["model"], "model")
        load_into(self.ema, ema, ck / f"{part}.safetensors", "this config's network (init_from)")
        self.log(f"initialised from {ck}")

    # -- logging and previews -----------------------------------------------------------------------------
    def log_event(self, record: dict):
        self.runlog.write(record)
        if self.tb is not None:
            self.tb.write(record)

    @torch.no_grad()
    def preview(self):
        if self.rank != 0 or not self.is_diffusion or self.cfg.data.cond_frames:
            return None
        from difflab.sampling import CHURN_SAMPLERS
        from difflab.sampling.generate import generate
        from difflab.viz.grids import make_grid, save_grid

        cfg, n = self.cfg, self.cfg.sample.n_preview
        cond = {}
        if cfg.model.num_classes:
            cond["class_labels"] = torch.arange(n, device=self.device) % cfg.model.num_classes
        shape = model_shape(cfg)
        churn = {"S_churn": cfg.sample.S_churn} if cfg.sample.sampler in CHURN_SAMPLERS else {}
        x = generate(self.ema, n, shape, sampler=cfg.sample.sampler, steps=cfg.sample.steps,
                     sigma_min=cfg.model.sigma_min, sigma_max=cfg.model.sigma_max, rho=cfg.sample.rho,
                     seed=cfg.seed, cond=cond, device=self.device, **churn)
        if cfg.model.task == "latent":  # latents (or low-resolution images) -> images
            x = self.ema.decode(x)
        nrow = cfg.model.num_classes or None
        path = save_grid(x[:, : cfg.model.channels], self.run_dir / "samples" / f"step-{self.step:08d}.png", nrow=nrow)
        if self.tb is not None:
            self.tb.image(make_grid(x[:, : cfg.model.channels], nrow), self.step)
        return path

    def run(self) -> dict:
        cfg = self.cfg
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.json").write_text(cfg.to_json())
        start_step, t0 = self.step, time.time()
        bar = None
        if cfg.train.progress and self.rank == 0:
            from tqdm import tqdm

            bar = tqdm(total=cfg.train.max_steps, initial=self.step, dynamic_ncols=True, mininterval=1.0)
        stopped_by_budget = False
        try:
            while self.step < cfg.train.max_steps:
                stats = self.train_step()
                elapsed = time.time() - t0
                ips = (self.step - start_step) * cfg.train.batch_size / max(elapsed, 1e-9)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{stats['loss']:.4f}", img_s=f"{ips:.0f}")
                if self.step % cfg.train.log_every == 0 or self.step == cfg.train.max_steps:
                    self.log_event({"step": self.step, "images_per_s": ips, "images_seen": self.images_seen,
                                    **stats})
                if self.step % cfg.train.ckpt_every == 0:
                    self.save()
                if cfg.train.sample_every and self.step % cfg.train.sample_every == 0:
                    self.preview()
                if cfg.train.time_budget_s and self._any_rank(elapsed >= cfg.train.time_budget_s):
                    stopped_by_budget = True
                    break
        except BaseException:
            self.close()
            raise
        finally:
            if bar is not None:
                bar.close()
        elapsed = time.time() - t0
        try:
            ck = latest_checkpoint(self.run_dir)
            if ck is None or int(ck.name[5:]) != self.step:
                self.save()
            grid = self.preview()
            summary = {"steps": self.step, "images_seen": self.images_seen, "wall_s": elapsed,
                       "images_per_s": (self.step - start_step) * cfg.train.batch_size / max(elapsed, 1e-9),
                       "stopped_by_time_budget": stopped_by_budget, "run_dir": str(self.run_dir),
                       "grid": str(grid) if grid else None}
            self.log_event({"event": "done", **summary})
        finally:
            self.close()
        return summary


def train(cfg: Config, resume: bool = False, dataset=None, log=print, overwrite: bool = False) -> dict:
    """Deprecated: single-process training. Use difflab.training.launcher.train, which also launches DDP."""
    return Trainer(cfg, dataset=dataset, resume=resume, log=log, overwrite=overwrite).run()

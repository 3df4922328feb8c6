"""difflab's training step vs diffusers' unconditional training loop, on the same UNet2DModel and the same data.

- difflab: ``Trainer.train_step`` (per-step seeding, random batch, eps-MSE loss ``EpsLoss(p=2)`` on
  ``VPEpsPrecond(DiffusersUNet(unet), T=1000)``, backward, grad-norm clip 1.0, AdamW, difflab's EMA).
- peer: the loop of diffusers' ``examples/unconditional_image_generation/train_unconditional.py`` without
  accelerate: random batch, ``DDPMScheduler.add_noise``, ``unet(noisy, t).sample``, ``F.mse_loss`` against the
  noise, backward, clip 1.0, AdamW, cosine LR schedule (``diffusers.optimization.get_scheduler``),
  ``diffusers.training_utils.EMAModel`` (warm-up EMA, as in the example).

Both start from identical weights and the same AdamW settings (lr 1e-4, betas (0.95, 0.999), weight decay 1e-6,
eps 1e-8). Steps are interleaved (difflab, diffusers, diffusers, difflab, ...) and the ratio is the median over
rounds. ``train_images_per_s_ratio`` = difflab images/s over diffusers images/s (> 1: difflab faster).
A correctness check computes both losses (and gradients) for the same x0, noise and timesteps.

``--compile``: both under torch.compile, each the way its users would do it: difflab's denoiser compiled in
place (what ``train.compile=true`` does), diffusers' ``unet.compile()``. The warm-up round then includes the
compilation and is not timed.

    python benchmarks/bench_train_vs_diffusers.py [--quick] [--json OUT] [--threads 1] [--reps N] [--compile]
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from difflab.config import load_config  # noqa: E402
from difflab.diffusion.losses import EpsLoss  # noqa: E402
from difflab.interop import from_diffusers  # noqa: E402
from difflab.training.trainer import Trainer  # noqa: E402

FULL_UNET = dict(sample_size=28, in_channels=1, out_channels=1, block_out_channels=(32, 64, 64), layers_per_block=1,
                 norm_num_groups=8, down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
                 up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"))
QUICK_UNET = dict(sample_size=28, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                  norm_num_groups=4, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                  up_block_types=("AttnUpBlock2D", "UpBlock2D"))
ADAMW = dict(lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8)


class Images:
    """A map-style image set exposing ``as_tensors`` (the Trainer's fast path)."""

    def __init__(self, x):
        self.x = x
        self.y = torch.zeros(len(x), dtype=torch.long)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]

    def as_tensors(self):
        return self.x, self.y


def load_images(n: int) -> torch.Tensor:
    from difflab.data.mnist import get_dataset

    ds = get_dataset("synthetic:train", size=28, limit=n)
    x = ds.as_tensors()[0] if hasattr(ds, "as_tensors") else torch.stack([ds[i][0] for i in range(n)])
    return x.float()


def difflab_trainer(unet, scheduler, data, batch, tmp, device="cpu"):
    cfg = load_config(common.ROOT / "configs" / "tiny.yaml",
                      ["model.num_classes=0", f"train.batch_size={batch}", "train.grad_clip=1.0", f"train.device={device}",
                       f"train.lr={ADAMW['lr']}", "train.warmup_steps=500", "train.ema_decay=0.9999",
                       "loss.name=eps_mse", "model.precond=vp_eps", f"out={tmp}/difflab", "train.progress=false"])
    cfg.train.threads = None
    tr = Trainer(cfg, dataset=Images(data), log=lambda *a: None)
    D = from_diffusers(unet, scheduler).to(device)
    tr.model = tr.ddp_model = D
    tr.ema = copy.deepcopy(D).eval().requires_grad_(False)
    tr.opt = torch.optim.AdamW(D.parameters(), **ADAMW)
    tr.loss_fn = EpsLoss(p=2)
    return tr


class DiffusersLoop:
    """train_unconditional.py's inner loop (epsilon prediction), without accelerate."""

    def __init__(self, unet, scheduler, data, batch, total_steps=10_000):
        from diffusers.optimization import get_scheduler
        from diffusers.training_utils import EMAModel

        self.unet, self.sch, self.data, self.batch = unet, scheduler, data, batch
        self.opt = torch.optim.AdamW(unet.parameters(), **ADAMW)
        self.lr = get_scheduler("cosine", optimizer=self.opt, num_warmup_steps=500, num_training_steps=total_steps)
        self.ema = EMAModel(unet.parameters(), decay=0.9999, use_ema_warmup=True, inv_gamma=1.0, power=3 / 4,
                            model_cls=type(unet), model_config=unet.config)

    def autocast(self):
        on_cuda = self.data.device.type == "cuda"
        return torch.autocast("cuda" if on_cuda else "cpu", dtype=torch.bfloat16, enabled=on_cuda)

    def step(self):
        unet, sch = self.unet, self.sch
        unet.train()
        idx = torch.randperm(len(self.data), device=self.data.device)[: self.batch]
        clean = self.data[idx]
        noise = torch.randn(clean.shape, dtype=clean.dtype, device=clean.device)
        t = torch.randint(0, sch.config.num_train_timesteps, (clean.shape[0],), device=clean.device).long()
        noisy = sch.add_noise(clean, noise, t)
        with self.autocast():  # on CUDA, bf16 autocast as difflab's trainer (accelerate's mixed_precision="bf16")
            out = unet(noisy, t).sample
        loss = F.mse_loss(out.float(), noise.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        self.opt.step()
        self.lr.step()
        self.opt.zero_grad()
        self.ema.step(unet.parameters())
        return loss.item()


def same_loss_check(unet, scheduler, data) -> dict:
    """The two losses (and gradients) for identical x0, noise and timesteps."""
    D = from_diffusers(unet, scheduler)
    g = torch.Generator().manual_seed(1)
    x0 = data[:8]
    n = torch.randn(x0.shape, generator=g)
    t = torch.randint(0, 1000, (8,), generator=g)
    unet.zero_grad()
    ref = F.mse_loss(unet(scheduler.add_noise(x0, n, t), t).sample, n)
    ref.backward()
    g_ref = torch.cat([p.grad.flatten() for p in unet.parameters()]).clone()
    unet.zero_grad()
    sigma = D.sigmas_table[t]
    x = x0 + sigma[:, None, None, None] * n
    eps_hat = (x - D(x, sigma)) / sigma[:, None, None, None]
    ours = ((eps_hat - n) ** 2).mean()
    ours.backward()
    g_ours = torch.cat([p.grad.flatten() for p in unet.parameters()])
    unet.zero_grad()
    return {"loss_difflab": ours.item(), "loss_diffusers": ref.item(), "loss_abs_diff": abs(ours.item() - ref.item()),
            "grad_rel_diff": float((g_ours - g_ref).norm() / g_ref.norm())}


def main(argv=None) -> int:
    p = common.parser("bench_train_vs_diffusers", __doc__)
    p.add_argument("--batch", type=int, default=None, help="batch size (default 64; --quick: 16)")
    p.add_argument("--compile", action="store_true", help="torch.compile both networks (see above)")
    args = p.parse_args(argv)
    common.setup(args)
    import tempfile

    from diffusers import DDPMScheduler, UNet2DModel

    batch = args.batch or (16 if args.quick else 64)
    reps = args.reps or (6 if args.quick else 12)
    ucfg = QUICK_UNET if args.quick else FULL_UNET
    torch.manual_seed(0)
    unet0 = UNet2DModel(**ucfg)
    sch = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    data = load_images(max(512, 4 * batch)) if not args.quick else load_images(256)
    out = {"benchmark": "bench_train_vs_diffusers", "quick": args.quick, "machine": common.machine(), "batch": batch,
           "device": args.device, "precision": "bf16 autocast, both loops" if args.device != "cpu" else "float32",
           "reps": reps, "compile": args.compile, "unet_config": ucfg, "unet_params": sum(p.numel() for p in unet0.parameters()),
           "optimizer": {"AdamW": ADAMW, "grad_clip": 1.0}}
    out["same_loss_check"] = same_loss_check(copy.deepcopy(unet0), sch, data)
    with tempfile.TemporaryDirectory() as tmp:
        tr = difflab_trainer(copy.deepcopy(unet0), sch, data, batch, tmp, args.device)
        peer = DiffusersLoop(copy.deepcopy(unet0).to(args.device), sch, data.to(args.device), batch)
        if args.compile:
            tr.model.compile()
            peer.unet.compile()
        timer = common.interleave({"difflab": tr.train_step, "diffusers": peer.step}, reps=reps, warmup=1)
    r = common.ratio(timer, "difflab", "diffusers")
    out["difflab"] = {**timer.summary("difflab"), "images_per_s": batch / timer.median("difflab")}
    out["diffusers"] = {**timer.summary("diffusers"), "images_per_s": batch / timer.median("diffusers")}
    out["train_images_per_s_ratio"] = r["wall"]
    out["ratio_detail"] = r
    out["loadavg_rounds"] = timer.load
    rows = [{"loop": k, "images/s": out[k]["images_per_s"], "median step s": out[k]["median_s"],
             "cpu step s": out[k]["cpu_median_s"], "min s": out[k]["min_s"], "max s": out[k]["max_s"]}
            for k in ("difflab", "diffusers")]
    title = f"training step, UNet2DModel {out['unet_params']} params, batch {batch}, {reps} rounds"
    print(f"train_images_per_s_ratio (difflab/diffusers) = {r['wall']:.3f}  (paired median {r['paired_wall_median']:.3f},"
          f" cpu-time ratio {r['cpu']:.3f}); same-loss check: {out['same_loss_check']}")
    return common.finish(args, out, rows, title)


if __name__ == "__main__":
    sys.exit(main())

"""How much of the CPU's matmul rate the U-Net reaches in training and in sampling.

- matmul rate: ``torch.mm`` of two n x n float32 matrices (n = 2048; --quick 1024), 2 n^3 FLOP per call, measured
  at the benchmark's thread count (3 calls before each round of model timings and after the last; the share
  uses the median, the same statistic as the model timings; the best call is recorded too) and with two threads.
  Also a nominal peak from the clock and the SIMD flags (AVX2 + FMA: 2 FMA units x 8 float32 lanes x 2
  = 32 FLOP/cycle/core), labelled as an estimate.
- FLOPs per image: ``torch.utils.flop_counter.FlopCounterMode`` on one denoiser call D(x, sigma) (forward) and on
  one EDM training loss + backward (forward + backward), per image. The counter counts matmuls and
  convolutions (and attention) only, not normalisation, activations or the optimizer.
- achieved share: images/s x FLOPs per image / matmul rate, for the training step (``Trainer.train_step``:
  EDM loss, AdamW, clipping, EMA; batch 64, --quick 8) and for sampling (one no-grad D call on batch 64).

``--device cuda``: the same on a GPU (batch 512 by default). The matmul rate is measured in float32 (cuBLAS
default: no TF32 for matmuls) and in bfloat16 (n = 8192); training runs under bf16 autocast as the trainer does on
CUDA, so its share is against the bfloat16 rate; sampling is timed in float32 (share against the float32 rate)
and under bf16 autocast (against the bfloat16 rate). No nominal peak is estimated for a GPU.

    python benchmarks/bench_hardware.py [--quick] [--json OUT] [--threads 1] [--preset small] [--device cuda]
"""

from __future__ import annotations

import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from difflab.diffusion.losses import EDMLoss  # noqa: E402
from difflab.diffusion.precond import EDMPrecond  # noqa: E402
from difflab.nets.unet import build_unet, count_parameters  # noqa: E402

PRESETS = ["tiny", "mini", "small", "base", "ntnu"]


def matmul_gflops(n: int, reps: int = 3, threads: int | None = None, device="cpu",
                  dtype=torch.float32) -> list[float]:
    """GFLOP/s of each of ``reps`` timed calls (after one warm-up call); on a GPU each call is timed to its end."""
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        torch.mm(a, b)
        times = []
        for _ in range(reps):
            common.sync()
            t0 = time.perf_counter()
            torch.mm(a, b)
            common.sync()
            times.append(time.perf_counter() - t0)
        return [2 * n**3 / t / 1e9 for t in times]
    finally:
        torch.set_num_threads(old)


def nominal_peak(cpu: dict) -> dict:
    try:
        text = Path("/proc/cpuinfo").read_text()
        mhz = statistics.median(float(v) for v in re.findall(r"cpu MHz\s*:\s*([\d.]+)", text))
    except (OSError, ValueError, statistics.StatisticsError):
        return {}
    simd = cpu.get("simd", [])
    per_cycle = 64 if "avx512f" in simd else (32 if {"avx2", "fma"} <= set(simd) else 8)
    return {"mhz": mhz, "flop_per_cycle_per_core": per_cycle, "gflops_per_core": mhz * 1e-3 * per_cycle,
            "note": "nominal estimate (clock x SIMD width x FMA units), not measured"}


def flops_per_image(preset: str, batch: int = 2) -> dict:
    net = build_unet(preset, num_classes=10, **({} if preset == "ntnu" else {"img_resolution": 28}))
    D = EDMPrecond(net)
    x = torch.randn(batch, 1, 28, 28)
    y = torch.arange(batch) % 10
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        D(x, torch.ones(batch), class_labels=y)
    fwd = fc.get_total_flops() / batch
    with FlopCounterMode(display=False) as fc:
        EDMLoss()(D, x, {"class_labels": y}, generator=torch.Generator().manual_seed(0)).mean().backward()
    return {"params": count_parameters(net), "forward_flops": fwd, "train_flops": fc.get_total_flops() / batch}


def main(argv=None) -> int:
    p = common.parser("bench_hardware", __doc__)
    p.add_argument("--preset", default=None, help="U-Net for the achieved share (default small; --quick: tiny)")
    p.add_argument("--batch", type=int, default=None, help="default 64; --quick: 8")
    args = p.parse_args(argv)
    common.setup(args)
    from difflab.config import load_config
    from difflab.training.trainer import Trainer

    dev = torch.device(args.device)
    gpu = dev.type == "cuda"
    preset = args.preset or ("tiny" if args.quick else "small")
    batch = args.batch or (8 if args.quick else (512 if gpu else 64))
    n = (2048 if gpu else 1024) if args.quick else (8192 if gpu else 2048)
    reps = args.reps or (2 if args.quick else 3)
    machine = common.machine()
    out = {"benchmark": "bench_hardware", "quick": args.quick, "machine": machine, "device": str(dev),
           "preset": preset, "batch": batch, "matmul_n": n, "nominal_peak": {} if gpu else nominal_peak(machine["cpu"])}
    presets = [preset] if args.quick else PRESETS
    out["flops_per_image"] = {s: flops_per_image(s) for s in presets}
    rows = [{"preset": s, "params": f["params"], "fwd MFLOP/img": f["forward_flops"] / 1e6,
             "fwd+bwd MFLOP/img": f["train_flops"] / 1e6, "bwd/fwd": f["train_flops"] / f["forward_flops"] - 1}
            for s, f in out["flops_per_image"].items()]
    out["flops_table"] = common.table(rows, list(rows[0]), "FLOPs per 28x28 image (FlopCounterMode: matmul/conv only)")

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(common.ROOT / "configs" / "tiny.yaml",
                          [f"model.preset={preset}", "model.num_classes=10", f"train.batch_size={batch}",
                           f"data.limit={max(4 * batch, 256)}", f"out={tmp}/run", "train.progress=false",
                           f"train.device={dev.type}"])
        cfg.train.threads = None
        tr = Trainer(cfg, log=lambda *a: None)
        x = torch.randn(batch, 1, 28, 28, device=dev)
        y = torch.arange(batch, device=dev) % 10
        s = torch.ones(batch, device=dev)

        def sample():
            with torch.no_grad():
                tr.ema(x, s, class_labels=y)

        def sample_bf16():
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
                tr.ema(x, s, class_labels=y)

        fns = {"train": tr.train_step, "sample": sample, **({"sample_bf16": sample_bf16} if gpu else {})}
        mm, mm16 = [], []
        timer = common.Timer()
        for fn in fns.values():
            fn()
        for r in range(reps):
            mm += matmul_gflops(n, device=dev)
            mm16 += matmul_gflops(n, device=dev, dtype=torch.bfloat16) if gpu else []
            timer.load.append(common.loadavg())
            for name in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
                timer.time(name, fns[name])
        mm += matmul_gflops(n, device=dev)
        mm16 += matmul_gflops(n, device=dev, dtype=torch.bfloat16) if gpu else []
    rate = statistics.median(mm) * 1e9  # the same statistic (median under the same load) as the model timings
    rate16 = statistics.median(mm16) * 1e9 if gpu else rate
    f = out["flops_per_image"][preset]
    train_ips = batch / timer.median("train")
    samp_ips = batch / timer.median("sample")
    out["matmul_gflops"] = {"threads": args.threads, "samples": mm, "median": rate / 1e9, "best": max(mm)}
    if gpu:
        out["matmul_gflops_bf16"] = {"samples": mm16, "median": rate16 / 1e9, "best": max(mm16)}
    else:
        out["matmul_gflops"]["two_threads"] = statistics.median(matmul_gflops(n, reps=2, threads=2))
    # Training runs under bf16 autocast on CUDA (the trainer's setting), in float32 on the CPU.
    out["train"] = {**timer.summary("train"), "images_per_s": train_ips, "gflops": train_ips * f["train_flops"] / 1e9,
                    "share_of_matmul_rate": train_ips * f["train_flops"] / rate16,
                    "reference_rate": "bf16" if gpu else "float32"}
    out["sample"] = {**timer.summary("sample"), "image_evals_per_s": samp_ips,
                     "gflops": samp_ips * f["forward_flops"] / 1e9,
                     "share_of_matmul_rate": samp_ips * f["forward_flops"] / rate}
    out["loadavg_rounds"] = timer.load
    where = "GPU" if gpu else f"{args.threads} thread(s)"
    rows = [{"what": "torch.mm float32", "GFLOP/s": rate / 1e9, "share": 1.0, "note": f"n={n}, {where}"}]
    if gpu:
        ips16 = batch / timer.median("sample_bf16")
        out["sample_bf16"] = {**timer.summary("sample_bf16"), "image_evals_per_s": ips16,
                              "gflops": ips16 * f["forward_flops"] / 1e9,
                              "share_of_matmul_rate": ips16 * f["forward_flops"] / rate16}
        rows.append({"what": "torch.mm bfloat16", "GFLOP/s": rate16 / 1e9, "share": 1.0, "note": f"n={n}, GPU"})
    else:
        rows.append({"what": "torch.mm 2 threads", "GFLOP/s": out["matmul_gflops"]["two_threads"],
                     "share": out["matmul_gflops"]["two_threads"] * 1e9 / rate,
                     "note": "oversubscribed if the machine is busy"})
    rows += [{"what": f"train ({preset}, b{batch}{', bf16 autocast' if gpu else ''})", "GFLOP/s": out["train"]["gflops"],
              "share": out["train"]["share_of_matmul_rate"], "note": f"{train_ips:.1f} img/s"},
             {"what": f"sample ({preset}, b{batch}, float32)", "GFLOP/s": out["sample"]["gflops"],
              "share": out["sample"]["share_of_matmul_rate"], "note": f"{samp_ips:.1f} img-evals/s"}]
    if gpu:
        rows.append({"what": f"sample ({preset}, b{batch}, bf16 autocast)", "GFLOP/s": out["sample_bf16"]["gflops"],
                     "share": out["sample_bf16"]["share_of_matmul_rate"],
                     "note": f"{out['sample_bf16']['image_evals_per_s']:.1f} img-evals/s"})
    if out["nominal_peak"]:
        rows.append({"what": "nominal peak / core", "GFLOP/s": out["nominal_peak"]["gflops_per_core"],
                     "share": out["nominal_peak"]["gflops_per_core"] * 1e9 / rate, "note": "estimate, not measured"})
    return common.finish(args, out, rows, "achieved share of the measured matmul rate")


if __name__ == "__main__":
    sys.exit(main())

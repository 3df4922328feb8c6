"""U-Net presets on 28x28 MNIST-shaped data: parameters, training images/s, sampling network evaluations/s.

Training: difflab's own ``Trainer.train_step`` (EDM loss, AdamW, gradient clipping, EMA; class-conditional with
label dropout, as configs/mnist_cond.yaml) at batch 64 on the synthetic 28x28 digit set. Sampling: one call of
the EMA denoiser D (EDMPrecond over the U-Net) on a batch of 64 under ``torch.no_grad``: NFE/s counts such
batched calls, image-evals/s multiplies by the batch.

Each preset is measured in three variants, interleaved round by round so they share the load:
``base`` (``--threads`` threads, contiguous), ``channels_last`` (model and inputs in channels_last), and
``threads2`` (torch.set_num_threads(2) during the call; only for ``--threads2-presets``, default tiny,mini,
because on a loaded 2-core machine two threads are many times slower and would blow the time budget), and
``compiled`` (``train.compile=true``: the trained network and the EMA under ``torch.compile``; only for
``--compile-presets``, default tiny,mini,small: the first call of each compiles, timed separately as
``compile_s``, and is a warm-up, not a timed round; torch's compile cache makes later processes compile faster).
``--quick``: presets tiny and mini (threads2 for tiny only, no compiled variant), batch 8, one timed round.

    python benchmarks/bench_presets.py [--quick] [--json OUT] [--threads 1] [--presets tiny,small]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from difflab.config import load_config  # noqa: E402
from difflab.nets.unet import count_parameters  # noqa: E402
from difflab.training.trainer import Trainer  # noqa: E402

PRESETS = ["tiny", "mini", "small", "base", "ntnu"]
VARIANTS = ["base", "channels_last", "threads2", "compiled"]


def make_trainer(preset: str, batch: int, tmp: Path, channels_last: bool, compiled: bool = False) -> Trainer:
    cfg = load_config(common.ROOT / "configs" / "tiny.yaml",
                      [f"model.preset={preset}", "model.num_classes=10", f"train.batch_size={batch}",
                       "data.name=synthetic", f"data.limit={max(4 * batch, 256)}", "train.warmup_steps=10",
                       "train.ema_decay=0.999", f"out={tmp / preset}", "train.progress=false",
                       f"train.compile={str(compiled).lower()}"])
    cfg.train.threads = None  # keep the thread count this script sets
    tr = Trainer(cfg, log=lambda *a: None)
    if compiled:
        tr.ema.compile()
    if channels_last:
        tr.model.to(memory_format=torch.channels_last)
        tr.ema.to(memory_format=torch.channels_last)
        x, y = tr.dataset.as_tensors() if hasattr(tr.dataset, "as_tensors") else (None, None)
        if x is not None:
            tr._tensors = (x.contiguous(memory_format=torch.channels_last), y)
    return tr


def first_call_s(fn) -> float:
    """Wall time of one call: for a compiled function's first call, mostly the compilation."""
    t = common.Timer()
    t.time("first", fn)
    return t.wall["first"][0]


def with_threads(n: int, fn):
    def run():
        old = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            return fn()
        finally:
            torch.set_num_threads(old)
    return run


def measure_preset(preset: str, batch: int, tmp: Path, args, threads2: bool, compiled: bool = False) -> dict:
    trainers = {"base": make_trainer(preset, batch, tmp, False), "channels_last": make_trainer(preset, batch, tmp, True)}
    trainers["threads2"] = trainers["base"]
    if compiled:
        trainers["compiled"] = make_trainer(preset, batch, tmp, False, compiled=True)
    variants = [v for v in VARIANTS if (v != "threads2" or threads2) and (v != "compiled" or compiled)]
    # Repetitions: fewer for the big preset so the full run stays within ~5 minutes on this CPU.
    big = preset == "base"
    r_train = args.reps or (1 if args.quick else (1 if big else 2))
    r_samp = args.reps or (1 if args.quick else (2 if big else 3))
    train_fns = {"base": trainers["base"].train_step, "channels_last": trainers["channels_last"].train_step,
                 "threads2": with_threads(2, trainers["threads2"].train_step)}
    compile_s = {}
    if compiled:
        train_fns["compiled"] = trainers["compiled"].train_step
        compile_s["train"] = first_call_s(train_fns["compiled"])
    tt = common.interleave({v: train_fns[v] for v in variants}, reps=r_train, warmup=1)

    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 1, 28, 28, generator=g)
    inputs = {"base": x, "threads2": x, "channels_last": x.contiguous(memory_format=torch.channels_last)}
    y = torch.arange(batch) % 10
    sigma = torch.full((batch,), 1.0)

    def sample_fn(v):
        D, xx = trainers[v].ema, inputs[v]

        @torch.no_grad()
        def run():
            return D(xx, sigma, class_labels=y)
        return run

    samp_fns = {"base": sample_fn("base"), "channels_last": sample_fn("channels_last"),
                "threads2": with_threads(2, sample_fn("threads2"))}
    if compiled:
        inputs["compiled"] = x
        samp_fns["compiled"] = sample_fn("compiled")
        compile_s["sample"] = first_call_s(samp_fns["compiled"])
    ts = common.interleave({v: samp_fns[v] for v in variants}, reps=r_samp, warmup=1)
    res = {"params": count_parameters(trainers["base"].model.net), "train_reps": r_train, "sample_reps": r_samp,
           "loadavg": tt.load + ts.load}
    if compiled:
        res["compile_s"] = compile_s
    for v in variants:
        res[v] = {"train_images_per_s": batch / tt.median(v), "train_step": tt.summary(v),
                  "sample_nfe_per_s": 1 / ts.median(v), "sample_image_evals_per_s": batch / ts.median(v),
                  "sample_call": ts.summary(v)}
    for v in variants[1:]:
        res[f"{v}_speedup"] = {"train": common.ratio(tt, v, "base"), "sample": common.ratio(ts, v, "base")}
    return res


def main(argv=None) -> int:
    p = common.parser("bench_presets", __doc__)
    p.add_argument("--presets", default=",".join(PRESETS))
    p.add_argument("--batch", type=int, default=None, help="batch size (default 64; --quick: 8)")
    p.add_argument("--threads2-presets", default="tiny,mini", help="presets that also get the threads2 variant")
    p.add_argument("--compile-presets", default="tiny,mini,small", help="presets that also get the compiled variant")
    args = p.parse_args(argv)
    common.setup(args)
    common.cpu_only(args, "bench_presets")
    import tempfile

    batch = args.batch or (8 if args.quick else 64)
    presets = [s for s in args.presets.split(",") if s]
    if args.quick and args.presets == ",".join(PRESETS):
        presets = ["tiny", "mini"]
    t2 = {s for s in args.threads2_presets.split(",") if s}
    if args.quick and args.threads2_presets == "tiny,mini":
        t2 = {"tiny"}
    tc = {s for s in args.compile_presets.split(",") if s}
    if args.quick and args.compile_presets == "tiny,mini,small":
        tc = set()  # compiling takes minutes here: not in the one-minute quick run
    out = {"benchmark": "bench_presets", "quick": args.quick, "machine": common.machine(), "batch": batch,
           "image_shape": [1, 28, 28], "threads": args.threads, "variants": VARIANTS, "threads2_presets": sorted(t2),
           "compile_presets": sorted(tc), "presets": {}}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in presets:
            res = measure_preset(preset, batch, Path(tmp), args, preset in t2, preset in tc)
            out["presets"][preset] = res
            row = {"preset": preset, "params": res["params"],
                   "train img/s": res["base"]["train_images_per_s"],
                   "sample NFE/s": res["base"]["sample_nfe_per_s"],
                   "img-evals/s": res["base"]["sample_image_evals_per_s"],
                   "CL train x": res["channels_last_speedup"]["train"]["paired_wall_median"],
                   "CL sample x": res["channels_last_speedup"]["sample"]["paired_wall_median"],
                   "2thr train x": res.get("threads2_speedup", {}).get("train", {}).get("paired_wall_median", "-"),
                   "2thr sample x": res.get("threads2_speedup", {}).get("sample", {}).get("paired_wall_median", "-"),
                   "compiled train x": res.get("compiled_speedup", {}).get("train", {}).get("paired_wall_median", "-"),
                   "compiled sample x": res.get("compiled_speedup", {}).get("sample", {}).get("paired_wall_median", "-"),
                   "compile s": (f"{res['compile_s']['train']:.0f}+{res['compile_s']['sample']:.0f}"
                                 if "compile_s" in res else "-"),
                   "load1": common.loadavg()[0]}
            rows.append(row)
            print(row, flush=True)
    out["notes"] = ("speed-ups are medians of per-round paired ratios (each round runs all variants back to back); "
                    "with one timed round (quick, or the base preset) they are single paired measurements")
    return common.finish(args, out, rows, f"U-Net presets, batch {batch}, 28x28, {args.threads} thread(s); "
                         "'x' columns: speed-up over the base variant (median of paired rounds, > 1 helps)")


if __name__ == "__main__":
    sys.exit(main())

"""Shared helpers for the benchmark scripts: argument parsing, machine info, interleaved timing, tables, JSON.

Timings on a shared, loaded CPU are noisy. Every comparison here interleaves its contenders
(A, B, B, A, A, B, ...: alternating order cancels a linear drift in load), reports medians, and records the load
average and torch's thread count next to the numbers. Each timing also records the process CPU time, which is
much less sensitive to other processes than the wall time (with one thread it is the work done).

Run directly (``python benchmarks/common.py --quick --json OUT``) it writes the machine description only.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from difflab.utils import write_json as write_json_atomic

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def parser(name: str, doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, finishes in under a minute")
    p.add_argument("--json", default=str(RESULTS / f"{name}.json"), help="where to write the results (JSON)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions per contender (default: per script)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (scripts that run a network)")
    return p


def cpu_only(args, name: str) -> None:
    """Refuse --device for the scripts that measure the CPU itself (bench_presets: threads, channels_last)."""
    if str(getattr(args, "device", "cpu")) != "cpu":
        raise SystemExit(f"{name} measures the CPU; --device {args.device} is not supported by this script "
                         "(bench_train_vs_diffusers, bench_sampling_vs_diffusers, bench_quality_nfe, bench_hardware and "
                         "bench_sampler_overhead take it)")


def sync() -> None:
    """Wait for queued GPU work, so a wall-clock reading covers it (no-op without CUDA)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def setup(args) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = getattr(args, "device", "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {device}: no CUDA device is available")


def loadavg() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover - not on Linux
        return []


def lscpu_summary() -> dict:
    info = {}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return info
    keep = {"Model name", "CPU(s)", "Thread(s) per core", "Core(s) per socket", "L2 cache", "L3 cache",
            "Hypervisor vendor", "Architecture"}
    for line in out.splitlines():
        k, _, v = line.partition(":")
        if k.strip() in keep:
            info[k.strip()] = v.strip()
    flags = next((ln.split(":", 1)[1].split() for ln in out.splitlines() if ln.startswith("Flags")), [])
    info["simd"] = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    return info


def machine() -> dict:
    import importlib.metadata as md

    versions = {}
    for pkg in ("torch", "diffusers", "numpy", "difflab"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return {"cpu": lscpu_summary(), "nproc": os.cpu_count(), "python": platform.python_version(),
            "versions": versions, "torch_num_threads": torch.get_num_threads(),
            "torch_num_interop_threads": torch.get_num_interop_threads(), "cuda": torch.cuda.is_available(),
            "loadavg_start": loadavg(), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


class Timer:
    """Collects (wall, cpu) seconds per named contender."""

    def __init__(self):
        self.wall: dict[str, list[float]] = {}
        self.cpu: dict[str, list[float]] = {}
        self.load: list[list[float]] = []

    def time(self, name: str, fn, *args, **kwargs):
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn(*args, **kwargs)
        sync()
        t1, c1 = time.perf_counter(), time.process_time()
        self.wall.setdefault(name, []).append(t1 - t0)
        self.cpu.setdefault(name, []).append(c1 - c0)
        return out

    def median(self, name: str, cpu: bool = False) -> float:
        return statistics.median((self.cpu if cpu else self.wall)[name])

    def summary(self, name: str) -> dict:
        w, c = self.wall[name], self.cpu[name]
        return {"median_s": statistics.median(w), "min_s": min(w), "max_s": max(w), "cpu_median_s": statistics.median(c),
                "reps": len(w)}


def interleave(fns: dict, reps: int, warmup: int = 1, timer: Timer | None = None) -> Timer:
    """Run each contender ``warmup`` times, then ``reps`` timed rounds in alternating order (A B, B A, ...)."""
    timer = timer or Timer()
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    for r in range(reps):
        timer.load.append(loadavg())
        for n in (names if r % 2 == 0 else names[::-1]):
            timer.time(n, fns[n])
    return timer


def ratio(timer: Timer, ours: str, peer: str) -> dict:
    """Speed ratio ours/peer (= peer time over our time; > 1 means ours is faster), by median wall and CPU time,
    plus the per-round paired ratios' median (each round runs both back to back, under the same load)."""
    paired = [p / o for o, p in zip(timer.wall[ours], timer.wall[peer], strict=True)]
    paired_cpu = [p / o for o, p in zip(timer.cpu[ours], timer.cpu[peer], strict=True)]
    return {"wall": timer.median(peer) / timer.median(ours), "cpu": timer.median(peer, True) / timer.median(ours, True),
            "paired_wall_median": statistics.median(paired), "paired_cpu_median": statistics.median(paired_cpu),
            "paired_wall_min": min(paired), "paired_wall_max": max(paired)}


def table(rows: list[dict], cols: list[str], title: str | None = None) -> str:
    def fmt(v):
        if isinstance(v, float):
            if v == 0:
                return "0"
            if abs(v) >= 1e4 or abs(v) < 1e-3:
                return f"{v:.3g}"
            return f"{v:.4g}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(cols)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)),
             "-|-".join("-" * w for w in widths)]
    lines += [" | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    text = "\n".join(lines)
    if title:
        text = f"\n{title}\n{text}"
    print(text, flush=True)
    return text


def write_json(path, data: dict) -> None:
    """Record the machine's load at the end, then write atomically (difflab.utils.write_json)."""
    data.setdefault("machine", {})["loadavg_end"] = loadavg()
    data["machine"]["torch_num_threads_end"] = torch.get_num_threads()
    print(f"wrote {write_json_atomic(data, path, sort_keys=False)}", flush=True)


def finish(args, out: dict, rows: list[dict], title: str, cols: list | None = None) -> int:
    """The tail every benchmark shares: print the table, keep it under ``out['table']``, write ``--json``."""
    out["table"] = table(rows, cols or list(rows[0]), title)
    write_json(args.json, out)
    return 0


def main(argv=None) -> int:
    args = parser("machine", __doc__).parse_args(argv)
    setup(args)
    write_json(args.json, {"benchmark": "machine", "quick": args.quick, "machine": machine()})
    return 0


if __name__ == "__main__":
    sys.exit(main())

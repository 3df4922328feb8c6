"""The samplers' own overhead per network evaluation, and the cost of particle guidance and CFG per step.

Samplers: every entry of ``SAMPLERS`` on the ``small`` U-Net (EDMPrecond, class-conditional) at batch 64 on a
5-step Karras grid (``--quick``: ``tiny`` at batch 8). Two estimates of the sampler's share of a step:

- direct (the definition): (T_run - NFE x t_D) / T_run, with t_D the median of bare ``D(x, sigma, **cond)``
  calls made right before and after the run (same batch, under torch.no_grad), by wall time and by process
  CPU time (CPU time is far less disturbed by other processes on a shared machine). On a loaded CPU the wall
  number carries several percent of noise either way, so it can come out negative.
- free-D (low noise): the same sampler with a denoiser that returns a precomputed tensor, so the run's time
  is the sampler's own work (its tensor arithmetic, argument checks, RNG draws, ...): per NFE
  ``o = T_free / NFE``; share = o / (o + t_D). This resolves shares well below 1%.

NFE: counted on the free-D run (the grid fixes it), except for ``ode_dopri5`` (adaptive; ``stats['nfe']``
of the timed run; rtol = atol = 1e-3 here). Stochastic samplers are also timed with one generator per sample
(``generate``'s reproducible default), which draws noise row by row.

Guidance (same network, ``small``; quick: ``tiny``): the time of one guided denoiser call vs one plain call
at batch B = 10 and B = 100, for particle guidance with the RBF kernel on x, on the denoised estimate without
differentiating through D (``through_denoiser=False``, the thesis' choice), and on the denoised estimate
through D (the paper variant's default: one backward pass through the network), and for classifier-free
guidance (one call on [x; x]; compared with the plain call at B and at 2B). Direct overhead share = (t_guided -
t_plain) / t_guided (wall and CPU). Own share (free-D, low noise): the guidance wrapped around a free denoiser
takes t_own; share = t_own / (t_own + t_plain) (CFG: + t_plain at 2B, i.e. excluding the doubled batch that
CFG needs by definition). For PG through D the extra cost is the network's backward pass, so only the direct
measurement applies.

``--device cuda``: the same on a GPU (per-sample generators live on the GPU, as ``generate`` makes them there).
Every clock waits for the GPU's queue before it starts and stops. With a free denoiser the run is the host's
launch work plus the sampler's own kernels; the direct estimate shows whether that overlaps with the network.

    python benchmarks/bench_sampler_overhead.py [--quick] [--json OUT] [--threads 1] [--device cuda]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from difflab.diffusion.precond import EDMPrecond  # noqa: E402
from difflab.guidance import ClassifierFreeGuidance, ParticleGuidance  # noqa: E402
from difflab.nets.unet import build_unet, count_parameters  # noqa: E402
from difflab.sampling import SAMPLERS, karras_sigmas  # noqa: E402

STOCHASTIC = {"ddpm", "euler_maruyama", "pc"}
SAMPLER_OPTS = {"ode_dopri5": {"rtol": 1e-3, "atol": 1e-3}}


def make_D(preset: str) -> EDMPrecond:
    torch.manual_seed(0)
    net = build_unet(preset, num_classes=10, img_resolution=28)
    with torch.no_grad():  # the zero-initialised output layers would make D trivial: give them weights
        for p in net.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.02)
    return EDMPrecond(net).eval().requires_grad_(False)


def clock(fn):
    common.sync()
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    common.sync()
    return time.perf_counter() - t0, time.process_time() - c0, out


class Setup:
    """The fixed inputs of the sampler measurements."""

    def __init__(self, D, batch, steps, device="cpu"):
        g = torch.Generator().manual_seed(0)
        self.D, self.batch, self.device = D, batch, torch.device(device)
        self.sig = karras_sigmas(steps, 0.002, 80.0)
        self.x_init = (torch.randn(batch, 1, 28, 28, generator=g) * float(self.sig[0])).to(device)
        self.cond = {"class_labels": torch.arange(batch, device=device) % 10}
        self.s_vec = torch.full((batch,), 1.0, device=device)
        self.const = (torch.randn(batch, 1, 28, 28, generator=g) * 0.5).to(device)
        self.count = 0

    def bare(self):
        with torch.no_grad():
            return self.D(self.x_init, self.s_vec, **self.cond)

    def free_D(self, x, sigma, **c):
        return self.const

    def counted_D(self, x, sigma, **c):
        self.count += 1
        return self.const

    def gen(self, per_sample: bool):
        device = self.device if self.device.type == "cuda" else "cpu"  # where generate() puts them
        if per_sample:
            return [torch.Generator(device=device).manual_seed(i) for i in range(self.batch)]
        return torch.Generator(device=device).manual_seed(1)

    def run(self, fn, D, per_sample, opts):
        return fn(D, self.x_init.clone(), self.sig, generator=self.gen(per_sample), cond=self.cond, **opts)


def measure_sampler(st: Setup, name: str, per_sample: bool, reps_free: int) -> dict:
    fn = SAMPLERS[name]
    opts = dict(SAMPLER_OPTS.get(name, {}))
    # NFE from a counted free-D run.
    st.count = 0
    st.run(fn, st.counted_D, per_sample, opts)
    nfe_free = st.count
    # Free-D timing: the sampler's own work per NFE.
    free = [clock(lambda: st.run(fn, st.free_D, per_sample, opts))[:2] for _ in range(reps_free)]
    free_w = statistics.median(w for w, _ in free) / nfe_free
    free_c = statistics.median(c for _, c in free) / nfe_free
    # Direct timing: the real run bracketed by bare D calls.
    pre = [clock(st.bare)[:2] for _ in range(2)]
    stats = {}
    run_opts = dict(opts, stats=stats) if name in ("ode_dopri5", "ode_rk4") else opts
    w_run, c_run, _ = clock(lambda: st.run(fn, st.D, per_sample, run_opts))
    post = [clock(st.bare)[:2] for _ in range(2)]
    nfe = stats.get("nfe", nfe_free) if name == "ode_dopri5" else nfe_free
    t_D = statistics.median(w for w, _ in pre + post)
    c_D = statistics.median(c for _, c in pre + post)
    return {"nfe": nfe, "nfe_free_run": nfe_free, "run_s": w_run, "run_cpu_s": c_run, "t_D_s": t_D, "t_D_cpu_s": c_D,
            "t_D_samples_s": [w for w, _ in pre + post], "wall_per_nfe_s": w_run / nfe,
            "direct_share_wall": (w_run - nfe * t_D) / w_run, "direct_share_cpu": (c_run - nfe * c_D) / c_run,
            "free_overhead_per_nfe_s": free_w, "free_overhead_per_nfe_cpu_s": free_c,
            "free_share": free_w / (free_w + t_D), "free_share_cpu": free_c / (free_c + c_D),
            "options": opts, "per_sample_generators": per_sample, "loadavg": common.loadavg()}


def sampler_rows(D, batch, steps, reps_free, log, device="cpu"):
    st = Setup(D, batch, steps, device)
    for _ in range(2):
        st.bare()
    results, rows = {}, []
    variants = [(n, False) for n in SAMPLERS] + [(n, True) for n in SAMPLERS if n in STOCHASTIC]
    for name, per_sample in variants:
        label = f"{name}[per-sample rng]" if per_sample else name
        r = results[label] = measure_sampler(st, name, per_sample, reps_free)
        row = {"sampler": label, "NFE": r["nfe"], "s/NFE": r["wall_per_nfe_s"], "t_D s": r["t_D_s"],
               "own ms/NFE": 1e3 * r["free_overhead_per_nfe_s"], "share (free-D)": r["free_share"],
               "share direct wall": r["direct_share_wall"], "share direct cpu": r["direct_share_cpu"],
               "load1": r["loadavg"][0] if r["loadavg"] else ""}
        rows.append(row)
        log(row)
    return results, rows


def no_grad(f):
    def run():
        with torch.no_grad():  # samplers run under no_grad; guidances switch autograd on themselves
            return f()
    return run


def call(D, x, sigma, y):
    return no_grad(lambda: D(x, sigma, class_labels=y))


def measure_guidance(D, B: int, reps: int, device="cpu") -> tuple[dict, list]:
    g = torch.Generator().manual_seed(2)
    x = (torch.randn(B, 1, 28, 28, generator=g) * 2.0).to(device)
    y = torch.arange(B, device=device) % 10
    sigma = torch.full((B,), 2.0, device=device)
    guides = {
        "pg_rbf_on_x": ParticleGuidance(weight=1.0, kernel="rbf", on="x"),
        "pg_rbf_on_denoised_no_backprop": ParticleGuidance(weight=1.0, kernel="rbf", on="denoised",
                                                            through_denoiser=False),
        "pg_rbf_on_denoised_through_D": ParticleGuidance(weight=1.0, kernel="rbf", on="denoised",
                                                          through_denoiser=True),
        "cfg": ClassifierFreeGuidance(0.2),
    }
    fns = {"plain": call(D, x, sigma, y)}
    for k, gd in guides.items():
        fns[k] = call(gd.wrap(D), x, sigma, y)
    fns["plain_2B"] = call(D, torch.cat([x, x]), torch.cat([sigma, sigma]), torch.cat([y, y]))
    timer = common.interleave(fns, reps=reps, warmup=1)
    # The guidance's own work, with a denoiser that costs nothing (returns a fixed tensor): the kernel,
    # bandwidth, autograd of the kernel sum, CFG's concatenation and combination. Not defined for
    # through_denoiser=True, whose extra cost is the backward pass through the network itself.
    const = torch.randn(2 * B, 1, 28, 28, generator=g).to(device)

    def free_D(xx, ss, **c):
        return const[: xx.shape[0]]

    free_D.num_classes = 10
    own = {}
    for k, gd in guides.items():
        if k.endswith("through_D"):
            continue
        f = call(gd.wrap(free_D), x, sigma, y)
        f()
        own[k] = statistics.median(clock(f)[0] for _ in range(max(3, reps)))
    t_plain = timer.median("plain")
    results, rows = {}, []
    for k in guides:
        t = timer.median(k)
        ref = "plain_2B" if k == "cfg" else "plain"
        r = {"B": B, "t_guided_s": t, "t_plain_s": t_plain, "step_ratio": t / t_plain,
             "overhead_share": (t - t_plain) / t, "overhead_share_cpu":
             (timer.median(k, True) - timer.median("plain", True)) / timer.median(k, True),
             "paired": common.ratio(timer, "plain", k)}
        if k in own:
            r["own_s"] = own[k]
            r["own_share"] = own[k] / (own[k] + timer.median(ref))
        if k == "cfg":
            r["t_plain_2B_s"] = timer.median(ref)
            r["own_overhead_share_vs_2B"] = (t - timer.median(ref)) / t
        results[f"{k}@B={B}"] = r
        rows.append({"guidance": k, "B": B, "t_plain s": t_plain, "t_guided s": t, "x plain": t / t_plain,
                     "share direct wall": r["overhead_share"], "share direct cpu": r["overhead_share_cpu"],
                     "own ms (free-D)": 1e3 * own[k] if k in own else "-",
                     "own share (free-D)": r.get("own_share", "-")})
    results[f"loadavg@B={B}"] = timer.load
    return results, rows


def guidance_rows(D, batches, reps, log, device="cpu"):
    results, rows = {}, []
    for B in batches:
        res, rr = measure_guidance(D, B, reps, device)
        results.update(res)
        rows += rr
        for r in rr:
            log(r)
    return results, rows


def main(argv=None) -> int:
    p = common.parser("bench_sampler_overhead", __doc__)
    p.add_argument("--preset", default=None, help="U-Net preset (default small; --quick: tiny)")
    p.add_argument("--batch", type=int, default=None, help="sampler batch (default 64; --quick: 8)")
    p.add_argument("--steps", type=int, default=5)
    args = p.parse_args(argv)
    common.setup(args)
    dev = torch.device(args.device)
    preset = args.preset or ("tiny" if args.quick else "small")
    batch = args.batch or (8 if args.quick else 64)
    D = make_D(preset).to(dev)
    log = lambda r: print(r, flush=True)  # noqa: E731
    out = {"benchmark": "bench_sampler_overhead", "quick": args.quick, "machine": common.machine(), "device": str(dev),
           "preset": preset, "params": count_parameters(D.net), "batch": batch, "steps": args.steps,
           "grid": "karras(0.002, 80, rho 7)"}
    s_res, s_rows = sampler_rows(D, batch, args.steps, reps_free=args.reps or 3, log=log, device=dev)
    out["samplers"] = s_res
    out["sampler_table"] = common.table(s_rows, list(s_rows[0]), f"sampler overhead, {preset} U-Net, batch {batch}, "
                                        f"{args.steps} Karras steps (target: share < 2%)")
    g_res, g_rows = guidance_rows(D, (10, 100), reps=args.reps or 3, log=log, device=dev)
    out["guidance"] = g_res
    out["guidance_table"] = common.table(g_rows, list(g_rows[0]), f"guidance cost per denoiser call, {preset} U-Net "
                                         "(target: PG < 5% of the step)")
    shares = [r["free_share"] for k, r in s_res.items() if "[" not in k]
    out["summary"] = {
        "max_sampler_share_free": max(shares),
        "median_sampler_share_free": statistics.median(shares),
        "samplers_over_2pct_free": sorted(k for k, r in s_res.items() if r["free_share"] > 0.02),
        "median_sampler_share_direct_cpu": statistics.median(r["direct_share_cpu"] for r in s_res.values()),
        "pg_overhead_share_direct": {k: r["overhead_share"] for k, r in g_res.items() if k.startswith("pg")},
        "pg_own_share_free": {k: r["own_share"] for k, r in g_res.items() if k.startswith("pg") and "own_share" in r},
        "cfg_own_share_free_vs_2B": {k: r["own_share"] for k, r in g_res.items() if k.startswith("cfg")},
        "cfg_step_ratio": {k: r["step_ratio"] for k, r in g_res.items() if k.startswith("cfg")},
    }
    print(out["summary"])
    common.write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

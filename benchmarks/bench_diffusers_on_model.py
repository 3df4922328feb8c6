"""diffusers' few-step schedulers on the shipped ``mnist-cond`` (issue 17), scored like ``difflab eval``, paired with
difflab's DPM-Solver++(2M) at the same NFE.

The model is EDM-preconditioned (Karras et al. 2022): a denoiser D(x; sigma, class_labels) -> x0 for sigma in
[0.002, 80], x = x0 + sigma n (variance-exploding, "VE"). Each scheduler gets what it asks for:

- VP schedulers (DPMSolverMultistepScheduler order 2 and 3, DPMSolverSinglestepScheduler, UniPCMultistepScheduler,
  DEISMultistepScheduler; prediction_type='epsilon') work on x_VP = alpha x0 + s eps with abar_t = alpha^2 from
  their ``alphas_cumprod``. The two are one process: sigma = sqrt((1 - abar) / abar) = s / alpha and
  x_VP = x / sqrt(1 + sigma^2). The adapter reads the scheduler's current sigma (``sched.sigmas[i]``, which it
  keeps in exactly these VE units), evaluates D at x = x_VP sqrt(1 + sigma^2) and returns
  eps = (x - D(x; sigma)) / sigma. The sigma a scheduler covers is set by its training table: the DDPM linear
  table (beta 1e-4 .. 0.02, T = 1000) spans sigma in [0.0100, 157], i.e. beyond the model's sigma_max = 80 and
  stopping short of its sigma_min. By default (``--vp-table model``) each VP scheduler therefore gets
  ``trained_betas`` whose table is log-uniform in sigma over exactly [0.002, 80] (abar_t = 1 / (1 + sigma_t^2),
  beta_t = 1 - abar_t / abar_{t-1}; diffusers accumulates abar in float32, so the ends move by < 1%); with
  ``use_karras_sigmas=True`` (diffusers' recommendation for few steps) its grid is then the Karras grid (rho = 7)
  on the model's range, the one difflab uses: the timesteps only label the steps, the adapter evaluates D at the
  scheduler's sigma. ``--vp-table ddpm`` runs the default DDPM table instead (Karras grid on [0.0100, 157]).
  All end at sigma = 0 (final_sigmas_type='zero', lower_order_final) except DEIS, which stops at the table's
  smallest sigma (0.002; no final_sigmas_type option).
- IPNDMScheduler (v-prediction in its own trigonometric VP schedule, whose first step is at alpha = 0, sigma = inf,
  where the model is never evaluated and x0 is taken as 0) is given ``trained_betas`` = the VP noise levels
  s_i = sigma_i / sqrt(1 + sigma_i^2) of the Karras grid on [0.002, 80] (ending at 0) and v = (eps - s x_VP) / alpha.
- EDM schedulers (EDMDPMSolverMultistepScheduler order 2, EDMEulerScheduler; Karras grid on [0.002, 80], rho = 7,
  sigma_data = 0.5) share the model's preconditioning, so they get the network itself:
  F = D.net(scheduler.scale_model_input(x), scheduler.precondition_noise(sigma), class_labels).

Samples: sample k starts from z_k drawn from the generator seeded (seed, k) (difflab's per-sample rule) and gets the
label k mod 10, as ``difflab eval mnist-cond --seed 0`` draws them; a scheduler starts at
x = z * init_noise_sigma. Score: classifier-feature FID against mnist:test with ``difflab.eval.run.evaluate_images``
(``difflab eval --metrics fid_classifier``). The paired baseline is ``difflab.recipe.sample`` with dpmpp_2m on the
Karras grid (``difflab eval mnist-cond --sampler dpmpp_2m --steps NFE --seed 0``); ``mean_abs_diff_vs_difflab`` is the
mean |x - x_difflab| over pixels of the paired samples (images in [-1, 1]). NFE counts the network calls made (a
forward hook on the U-Net, per batch). FID is biased upwards at small n: compare rows of one run only.

    python benchmarks/bench_diffusers_on_model.py [--quick] [--n 200] [--nfe 5,10] [--full-nfe] [--json OUT]
        [--vp-table model|ddpm] [--batch-size 100] [--seed 0]

``--quick``: n = 64 at NFE 5 (the pipeline end to end; the FIDs are not meaningful). ``--full-nfe`` adds NFE 20.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from difflab.diffusion.precond import EDMPrecond  # noqa: E402
from difflab.sampling import karras_sigmas, make_generators  # noqa: E402
from difflab.sampling.rng import randn  # noqa: E402

KARRAS = {"use_karras_sigmas": True}
# name: (kind, diffusers class, options). kind: 'vp' (eps on x_VP), 'ipndm' (v on x_VP), 'edm' (the network F).
SCHEDULERS = {
    "dpmsolver++_2m": ("vp", "DPMSolverMultistepScheduler", {"solver_order": 2, "algorithm_type": "dpmsolver++",
                                                             "final_sigmas_type": "zero", **KARRAS}),
    "dpmsolver++_3m": ("vp", "DPMSolverMultistepScheduler", {"solver_order": 3, "algorithm_type": "dpmsolver++",
                                                             "final_sigmas_type": "zero", **KARRAS}),
    "dpmsolver++_2s": ("vp", "DPMSolverSinglestepScheduler", {"solver_order": 2, "algorithm_type": "dpmsolver++",
                                                              "final_sigmas_type": "zero", "lower_order_final": True,
                                                              **KARRAS}),
    "unipc_bh2": ("vp", "UniPCMultistepScheduler", {"solver_order": 2, "final_sigmas_type": "zero", **KARRAS}),
    "deis_2": ("vp", "DEISMultistepScheduler", {"solver_order": 2, **KARRAS}),
    "ipndm": ("ipndm", "IPNDMScheduler", {}),
    "edm_dpmsolver++_2m": ("edm", "EDMDPMSolverMultistepScheduler", {"solver_order": 2,
                                                                     "algorithm_type": "dpmsolver++"}),
    "edm_euler": ("edm", "EDMEulerScheduler", {}),
}
DIFFLAB = "difflab dpmpp_2m"


def model_table_betas(sigma_min: float, sigma_max: float, T: int = 1000) -> list[float]:
    """Betas of a T-step VP table whose sigma_t = sqrt((1 - abar_t)/abar_t) is log-uniform on [sigma_min, sigma_max]."""
    sigma = torch.logspace(math.log10(sigma_min), math.log10(sigma_max), T, dtype=torch.float64)
    abar = 1 / (1 + sigma**2)
    prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    return (1 - abar / prev).tolist()


def make_scheduler(name: str, nfe: int, D, vp_table: str):
    import diffusers

    kind, cls, opts = SCHEDULERS[name]
    opts = dict(opts)
    if kind == "vp" and vp_table == "model":
        opts["trained_betas"] = model_table_betas(D.sigma_min, D.sigma_max)
    elif kind == "ipndm":
        s = karras_sigmas(nfe, D.sigma_min, D.sigma_max).double()
        opts["trained_betas"] = (s / (1 + s**2).sqrt()).tolist()
    elif kind == "edm":
        opts.update(sigma_min=D.sigma_min, sigma_max=D.sigma_max, sigma_data=D.sigma_data, rho=7.0)
    sched = getattr(diffusers, cls)(**opts)
    sched.set_timesteps(nfe)
    return sched


def sigma_at(sched, kind: str, i: int) -> float:
    """The VE sigma of step i (IPNDM: its VP noise level over its signal level)."""
    if kind == "ipndm":
        return float(sched.betas[i] / sched.alphas[i])
    return float(sched.sigmas[i])


def run_scheduler(sched, kind: str, D, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """A pipeline-style loop: x = z * init_noise_sigma, then per timestep the model output the scheduler expects
    (module docstring) and ``sched.step``. Returns the sample in data units (x_VP = x at sigma = 0)."""
    x = z * sched.init_noise_sigma
    B = x.shape[0]
    for i, t in enumerate(sched.timesteps):
        sigma = sigma_at(sched, kind, i)
        if kind == "edm":
            x_in = sched.scale_model_input(x, t)
            c_noise = sched.precondition_noise(torch.tensor(sigma)).reshape(1).expand(B)
            out = D.net(x_in, c_noise, class_labels=labels)
        else:
            x_ve = x * math.sqrt(1 + sigma**2)
            eps = (x_ve - D(x_ve, torch.full((B,), sigma), class_labels=labels)) / sigma
            if kind == "ipndm":
                s_vp, alpha = float(sched.betas[i]), float(sched.alphas[i])
                out = (eps - s_vp * x) / alpha
            else:
                out = eps
        x = sched.step(out, t, x).prev_sample
    if kind == "vp":  # DEIS stops at sigma_min > 0: its x_VP there, in data units
        x = x * math.sqrt(1 + float(sched.sigmas[-1]) ** 2)
    return x


class CallCounter:
    """Counts forward calls of the U-Net (one per batch per network evaluation)."""

    def __init__(self, net):
        self.calls = 0
        self.handle = net.register_forward_hook(lambda *_: self._hit())

    def _hit(self):
        self.calls += 1


def sample_diffusers(name, nfe, D, z, labels, batch_size, vp_table):
    kind = SCHEDULERS[name][0]
    outs, grid = [], None
    for start in range(0, z.shape[0], batch_size):
        sched = make_scheduler(name, nfe, D, vp_table)
        grid = [sigma_at(sched, kind, i) for i in range(len(sched.timesteps))]
        stop = min(start + batch_size, z.shape[0])
        outs.append(run_scheduler(sched, kind, D, z[start:stop], labels[start:stop]))
    last = float(sched.sigmas[-1]) if kind != "ipndm" else 0.0
    return torch.cat(outs), {"sigma_max": grid[0], "sigma_min": min(s for s in grid + [last] if s > 0), "end": last}


def sample_difflab(nfe, D, n, seed, batch_size):
    from difflab.recipe import SamplingSpec, sample

    spec = SamplingSpec(sampler="dpmpp_2m", steps=nfe, grid="karras", seed=seed, batch_size=batch_size)
    x, _ = sample(D, spec, n)
    s = karras_sigmas(nfe, D.sigma_min, D.sigma_max)
    return x, {"sigma_max": float(s[0]), "sigma_min": float(s[-2]), "end": 0.0}


def main(argv=None) -> int:
    p = common.parser("bench_diffusers_on_model", __doc__)
    p.add_argument("--model", default="mnist-cond", help="an EDM-preconditioned class-conditional model")
    p.add_argument("--n", type=int, default=None, help="samples per configuration (default 2000; --quick 64)")
    p.add_argument("--nfe", default=None, help="comma list of NFE (default 5,10; --quick 5)")
    p.add_argument("--full-nfe", action="store_true", help="add NFE 20")
    p.add_argument("--schedulers", default=None, help=f"comma list of {', '.join(SCHEDULERS)} (default all)")
    p.add_argument("--vp-table", choices=("model", "ddpm"), default="model", help="the VP schedulers' table")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ref", default="mnist:test")
    args = p.parse_args(argv)
    common.setup(args)
    import difflab
    from difflab.eval.run import evaluate_images

    D = difflab.load(args.model).to(args.device).eval()
    if not isinstance(D, EDMPrecond):
        raise SystemExit(f"bench_diffusers_on_model: {args.model} is a {type(D).__name__}; the adapters here need an "
                         "EDM-preconditioned model (EDMPrecond)")
    n = args.n or (64 if args.quick else 2000)
    nfes = [int(v) for v in (args.nfe or ("5" if args.quick else "5,10")).split(",")]
    if args.full_nfe and 20 not in nfes:
        nfes.append(20)
    names = args.schedulers.split(",") if args.schedulers else list(SCHEDULERS)
    unknown = sorted(set(names) - set(SCHEDULERS))
    if unknown:
        raise SystemExit(f"bench_diffusers_on_model: unknown scheduler(s) {unknown}; choose from {list(SCHEDULERS)}")
    cfg = D.difflab_config
    shape = (cfg.model.channels, cfg.data.size, cfg.data.size)
    z = randn((n, *shape), generator=make_generators(args.seed, n)).to(args.device)
    labels = torch.arange(n, device=args.device) % D.num_classes
    counter = CallCounter(D.net)
    out = {"benchmark": "bench_diffusers_on_model", "quick": args.quick, "machine": common.machine(),
           "model": args.model, "n": n, "seed": args.seed, "ref": args.ref, "vp_table": args.vp_table,
           "batch_size": args.batch_size, "schedulers": {k: {"class": SCHEDULERS[k][1], "kind": SCHEDULERS[k][0],
                                                            "options": SCHEDULERS[k][2]} for k in names},
           "results": []}
    n_batches = math.ceil(n / args.batch_size)
    for nfe in nfes:
        x_difflab = None
        for name in [DIFFLAB, *names]:
            counter.calls = 0
            t0 = time.perf_counter()
            with torch.no_grad():
                if name == DIFFLAB:
                    x, grid = sample_difflab(nfe, D, n, args.seed, args.batch_size)
                else:
                    x, grid = sample_diffusers(name, nfe, D, z, labels, args.batch_size, args.vp_table)
            common.sync()
            t_sample = time.perf_counter() - t0
            x = x.float().cpu()
            x_difflab = x if x_difflab is None else x_difflab
            r = evaluate_images(x, "fid_classifier", ref=args.ref)
            row = {"nfe_budget": nfe, "sampler": name, "nfe": counter.calls / n_batches, "fid": r["fid_classifier"],
                   "mean_abs_diff_vs_difflab": float((x - x_difflab).abs().mean()),
                   "sigma_max": grid["sigma_max"], "sigma_min": grid["sigma_min"], "end": grid["end"],
                   "sample_s": t_sample}
            out["results"].append(row)
            print(row, flush=True)
            common.write_json(args.json, out)
    for nfe in nfes:
        base = next(r["fid"] for r in out["results"] if r["nfe_budget"] == nfe and r["sampler"] == DIFFLAB)
        for r in out["results"]:
            if r["nfe_budget"] == nfe:
                r["fid_vs_difflab"] = r["fid"] / base
    counter.handle.remove()
    cols = ["nfe_budget", "sampler", "nfe", "fid", "fid_vs_difflab", "mean_abs_diff_vs_difflab", "sigma_max",
            "sigma_min", "sample_s"]
    return common.finish(args, out, out["results"], f"diffusers schedulers on {args.model}, classifier FID "
                         f"vs {args.ref}, n={n}, seed {args.seed}, VP table: {args.vp_table}", cols)


if __name__ == "__main__":
    sys.exit(main())

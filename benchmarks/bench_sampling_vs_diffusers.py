"""difflab samplers vs diffusers on the same UNet2DModel, the same steps and the same noise.

- DDPM: difflab ``SAMPLERS['ddpm']`` on ``ddpm_sigma_grid(n)`` over ``from_diffusers(unet, scheduler)`` vs
  ``DDPMPipeline`` (DDPMScheduler, clip_sample=False, 'leading' spacing, fixed_small = posterior variance);
  the same torch.Generator feeds the initial noise and every step's noise in both.
- DDIM (eta = 0): ``SAMPLERS['ddim']`` vs ``DDIMPipeline`` (DDIMScheduler, clip_sample=False, set_alpha_to_one=True).
- Heun: ``SAMPLERS['heun']`` on the Karras grid between the model's sigma_min and sigma_max vs a pipeline-style
  loop over ``HeunDiscreteScheduler(use_karras_sigmas=True, timestep_spacing='linspace')`` with the DDPM model's
  betas (its defaults are Stable Diffusion's 0.00085 .. 0.012) (same 2n-1 NFE).
- Euler: the same UNet2DModel read as an EDM network (timestep = ln(sigma)/4), ``EDMPrecond`` via
  ``edm_from_diffusers`` and ``SAMPLERS['euler']`` on ``karras_sigmas(n, 0.002, 80)`` vs a loop over
  ``EDMEulerScheduler`` (scale_model_input, unet, step).

Each timed call includes building the grid, drawing the initial noise and mapping the output to the pipeline's
format ((x/2 + 1/2) clamped to [0, 1], returned as a tensor: ``output_type='pt'``). Contenders are interleaved
(difflab, diffusers, diffusers, difflab, ...). ``*_ratio`` = diffusers time / difflab time (> 1: difflab faster);
``max_abs_diff`` compares the outputs. k-diffusion is recorded as not importable when it is not.

``--compile``: the shared UNet2DModel is compiled in place (``unet.compile()``) before either library uses it, so
both run the same compiled network and the ratio measures what each library adds around it.

    python benchmarks/bench_sampling_vs_diffusers.py [--quick] [--json OUT] [--threads 1] [--reps N] [--compile]
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from bench_train_vs_diffusers import FULL_UNET, QUICK_UNET  # noqa: E402

from difflab.interop import edm_from_diffusers, from_diffusers  # noqa: E402
from difflab.sampling import SAMPLERS, ddpm_sigma_grid, karras_sigmas  # noqa: E402


def kdiffusion_status() -> dict:
    try:
        import k_diffusion  # noqa: F401
    except Exception as e:  # noqa: BLE001 - record whatever goes wrong
        return {"importable": False, "error": f"{type(e).__name__}: {e}",
                "note": "k-diffusion needs torchvision (and more), which this CPU-only environment does not provide; "
                        "difflab's k-diffusion-style adapter is tested against a re-implementation of "
                        "k_diffusion.external.DiscreteEpsDDPMDenoiser in tests/test_interop.py"}
    return {"importable": True, "version": getattr(k_diffusion, "__version__", None)}


def to_image(x):
    return (x / 2 + 0.5).clamp(0, 1)


def main(argv=None) -> int:
    p = common.parser("bench_sampling_vs_diffusers", __doc__)
    p.add_argument("--batch", type=int, default=None, help="batch size (default 8; --quick: 4)")
    p.add_argument("--compile", action="store_true", help="torch.compile the shared UNet2DModel (see above)")
    args = p.parse_args(argv)
    common.setup(args)
    from diffusers import (
        DDIMPipeline,
        DDIMScheduler,
        DDPMPipeline,
        DDPMScheduler,
        EDMEulerScheduler,
        HeunDiscreteScheduler,
        UNet2DModel,
    )

    batch = args.batch or (4 if args.quick else 8)
    reps = args.reps or (3 if args.quick else 6)
    # Step counts are modest so that six interleaved rounds fit in ~5 minutes on a loaded 2-core CPU: a few long
    # runs give a noisier ratio than more, shorter ones (the per-step cost does not depend on the step count).
    steps = ({"ddpm": 20, "ddim": 10, "heun": 5, "euler": 5} if args.quick
             else {"ddpm": 50, "ddim": 25, "heun": 10, "euler": 10})
    ucfg = QUICK_UNET if args.quick else FULL_UNET
    torch.manual_seed(0)
    dev = torch.device(args.device)
    unet = UNet2DModel(**ucfg).eval().requires_grad_(False).to(dev)
    if args.compile:
        unet.compile()
    shape = (batch, ucfg["in_channels"], ucfg["sample_size"], ucfg["sample_size"])
    seed = 1234

    ddpm_sch = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False)
    ddim_sch = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False,
                             set_alpha_to_one=True)
    # HeunDiscreteScheduler defaults to Stable Diffusion's betas (0.00085 .. 0.012): give it the DDPM model's.
    heun_sch = HeunDiscreteScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                                     use_karras_sigmas=True, timestep_spacing="linspace")
    edm_sch = EDMEulerScheduler(sigma_min=0.002, sigma_max=80.0, sigma_data=0.5)
    D = from_diffusers(unet, ddpm_sch).to(dev)
    D_edm = edm_from_diffusers(unet).to(dev)
    ddpm_pipe = DDPMPipeline(unet=unet, scheduler=ddpm_sch).to(dev)
    ddim_pipe = DDIMPipeline(unet=unet, scheduler=ddim_sch).to(dev)
    for pipe in (ddpm_pipe, ddim_pipe):
        pipe.set_progress_bar_config(disable=True)

    # -- difflab --------------------------------------------------------------------------------------------
    def ours_ddpm():
        g = torch.Generator().manual_seed(seed)
        sig = ddpm_sigma_grid(steps["ddpm"], 1000, "linear", "leading")
        z = torch.randn(shape, generator=g).to(dev)
        return to_image(SAMPLERS["ddpm"](D, z * math.sqrt(1 + float(sig[0]) ** 2), sig, generator=g))

    def ours_ddim():
        g = torch.Generator().manual_seed(seed)
        sig = ddpm_sigma_grid(steps["ddim"], 1000, "linear", "leading")
        z = torch.randn(shape, generator=g).to(dev)
        return to_image(SAMPLERS["ddim"](D, z * math.sqrt(1 + float(sig[0]) ** 2), sig))

    def ours_heun():
        g = torch.Generator().manual_seed(seed)
        sig = karras_sigmas(steps["heun"], D.sigma_min, D.sigma_max)
        z = torch.randn(shape, generator=g).to(dev)
        return SAMPLERS["heun"](D, z * float(sig[0]), sig)

    def ours_euler():
        g = torch.Generator().manual_seed(seed)
        sig = karras_sigmas(steps["euler"], 0.002, 80.0)
        z = torch.randn(shape, generator=g).to(dev)
        return SAMPLERS["euler"](D_edm, z * float(sig[0]), sig)

    # -- diffusers ------------------------------------------------------------------------------------------
    def peer_ddpm():
        return ddpm_pipe(batch_size=batch, generator=torch.Generator().manual_seed(seed),
                         num_inference_steps=steps["ddpm"], output_type="pt").images

    def peer_ddim():
        return ddim_pipe(batch_size=batch, generator=torch.Generator().manual_seed(seed), eta=0.0,
                         num_inference_steps=steps["ddim"], output_type="pt").images

    @torch.no_grad()
    def scheduler_loop(sch, n):
        g = torch.Generator().manual_seed(seed)
        sch.set_timesteps(n, device=dev)
        x = torch.randn(shape, generator=g).to(dev) * sch.init_noise_sigma
        for t in sch.timesteps:
            x = sch.step(unet(sch.scale_model_input(x, t), t).sample, t, x).prev_sample
        return x

    def peer_heun():
        return scheduler_loop(heun_sch, steps["heun"])

    def peer_euler():
        # EDMEulerScheduler.init_noise_sigma is sqrt(sigma_max^2 + 1); start both at sigma_max z instead.
        g = torch.Generator().manual_seed(seed)
        edm_sch.set_timesteps(steps["euler"], device=dev)
        x = torch.randn(shape, generator=g).to(dev) * edm_sch.sigmas[0]
        with torch.no_grad():
            for t in edm_sch.timesteps:
                x = edm_sch.step(unet(edm_sch.scale_model_input(x, t), t).sample, t, x).prev_sample
        return x

    pairs = {"ddpm": (ours_ddpm, peer_ddpm), "ddim": (ours_ddim, peer_ddim), "heun": (ours_heun, peer_heun),
             "euler": (ours_euler, peer_euler)}
    peer_names = {"ddpm": "DDPMPipeline", "ddim": "DDIMPipeline", "heun": "HeunDiscreteScheduler loop",
                  "euler": "EDMEulerScheduler loop"}
    nfe = {"ddpm": steps["ddpm"], "ddim": steps["ddim"], "heun": 2 * steps["heun"] - 1, "euler": steps["euler"]}
    out = {"benchmark": "bench_sampling_vs_diffusers", "quick": args.quick, "machine": common.machine(),
           "device": str(dev),
           "batch": batch, "reps": reps, "compile": args.compile, "steps": steps, "nfe": nfe, "unet_config": ucfg,
           "unet_params": sum(p.numel() for p in unet.parameters()), "k_diffusion": kdiffusion_status(),
           "schedulers": {"ddpm": dict(ddpm_sch.config), "ddim": dict(ddim_sch.config),
                          "heun": dict(heun_sch.config), "euler": dict(edm_sch.config)},
           "samplers": {}}
    with torch.no_grad():
        unet(torch.zeros(shape, device=dev), torch.zeros(batch, device=dev))  # warm up allocations once
    rows = []
    for name, (ours, peer) in pairs.items():
        a, b = ours(), peer()  # the first calls also serve as warm-up
        diff = float((a.to(dev) - b.to(dev)).abs().max())
        timer = common.interleave({"difflab": ours, "diffusers": peer}, reps=reps, warmup=0)
        r = common.ratio(timer, "difflab", "diffusers")
        out["samplers"][name] = {"peer": peer_names[name], "steps": steps[name], "nfe": nfe[name],
                                 "difflab": timer.summary("difflab"), "diffusers": timer.summary("diffusers"),
                                 "ratio": r["wall"], "ratio_detail": r, "max_abs_diff": diff,
                                 "output": "image in [0, 1]" if name in ("ddpm", "ddim") else "raw x (sigma = 0)",
                                 "loadavg_rounds": timer.load}
        out[f"{name}_ratio"] = r["wall"]
        out[f"{name}_max_abs_diff"] = diff
        row = {"sampler": name, "peer": peer_names[name], "NFE": nfe[name], "difflab s": timer.median("difflab"),
               "diffusers s": timer.median("diffusers"), "ratio": r["wall"], "paired": r["paired_wall_median"],
               "cpu ratio": r["cpu"], "max_abs_diff": diff, "load1": common.loadavg()[0]}
        rows.append(row)
        print(row, flush=True)
    print(f"k-diffusion: {out['k_diffusion']}")
    return common.finish(args, out, rows, f"sampling, UNet2DModel {out['unet_params']} params, batch {batch}; "
                                "ratio = diffusers time / difflab time (> 1: difflab faster)")


if __name__ == "__main__":
    sys.exit(main())

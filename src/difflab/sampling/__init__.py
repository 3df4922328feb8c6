"""Samplers: stateless functions over a denoiser D(x, sigma, **cond) -> x0_hat.

Every entry of :data:`SAMPLERS` is called as
``fn(D, x, sigmas, *, generator=None, callback=None, guidance=None, **options)`` where x starts at noise
level ``sigmas[0]`` and ``sigmas`` ends in 0."""

from difflab.sampling.edm import sample_euler, sample_heun
from difflab.sampling.rng import make_generator, make_generators, randn
from difflab.sampling.schedules import (
    GRIDS,
    ddpm_sigma_grid,
    ddpm_timesteps,
    karras_sigmas,
    loguniform_sigmas,
    uniform_sigmas,
    vp_sigmas,
)

SAMPLERS = {
    "heun": sample_heun,
    "euler": sample_euler,
}


def get_sampler(name: str):
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}")
    return SAMPLERS[name]


__all__ = [
    "GRIDS", "SAMPLERS", "ddpm_sigma_grid", "ddpm_timesteps", "get_sampler", "karras_sigmas",
    "loguniform_sigmas", "make_generator", "make_generators", "randn", "sample_euler", "sample_heun",
    "uniform_sigmas", "vp_sigmas",
]

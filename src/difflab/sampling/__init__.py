"""Samplers: stateless functions over a denoiser D(x, sigma, **cond) -> x0_hat.

Every entry of :data:`SAMPLERS` is called as
``fn(D, x, sigmas, *, generator=None, callback=None, guidance=None, **options)`` where x starts at noise
level ``sigmas[0]`` and ``sigmas`` ends in 0."""

from difflab.sampling.ddim import sample_ddim
from difflab.sampling.ddpm import sample_ddpm
from difflab.sampling.dpm_solver import sample_dpmpp_2m
from difflab.sampling.dpmpp import sample_dpmpp_2m_sde, sample_dpmpp_3m, sample_dpmpp_3m_sde
from difflab.sampling.edm import sample_euler, sample_heun
from difflab.sampling.generate import generate
from difflab.sampling.multistep import sample_deis, sample_ipndm, sample_lms
from difflab.sampling.ode import sample_ode, sample_ode_dopri5, sample_ode_euler, sample_ode_heun, sample_ode_rk4
from difflab.sampling.repaint import sample_repaint
from difflab.sampling.rng import make_generator, make_generators, randn
from difflab.sampling.schedules import (
    GRIDS,
    ddpm_sigma_grid,
    ddpm_timesteps,
    karras_sigmas,
    loguniform_sigmas,
    polyexponential_sigmas,
    sigma_grid,
    uniform_sigmas,
    vp_sigmas,
)
from difflab.sampling.sde import sample_euler_maruyama, sample_pc
from difflab.sampling.singlestep import sample_dpm_2, sample_dpmpp_2s_ancestral, sample_dpmpp_sde
from difflab.sampling.unipc import sample_unipc

SAMPLERS = {
    "heun": sample_heun,
    "euler": sample_euler,
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "euler_maruyama": sample_euler_maruyama,
    "pc": sample_pc,
    "ode_euler": sample_ode_euler,
    "ode_heun": sample_ode_heun,
    "ode_dopri5": sample_ode_dopri5,
    "ode_rk4": sample_ode_rk4,
    "dpmpp_2m": sample_dpmpp_2m,
    "repaint": sample_repaint,
    "lms": sample_lms,
    "dpm_2": sample_dpm_2,
    "dpmpp_2s_ancestral": sample_dpmpp_2s_ancestral,
    "dpmpp_sde": sample_dpmpp_sde,
    "dpmpp_3m": sample_dpmpp_3m,
    "dpmpp_2m_sde": sample_dpmpp_2m_sde,
    "dpmpp_3m_sde": sample_dpmpp_3m_sde,
    "unipc": sample_unipc,
    "deis": sample_deis,
    "ipndm": sample_ipndm,
}

# Deterministic samplers (no noise drawn with their default options); the others take eta / churn noise.
DETERMINISTIC_SAMPLERS = ("heun", "euler", "ddim", "ode_euler", "ode_heun", "ode_dopri5", "ode_rk4", "dpmpp_2m",
                          "lms", "dpm_2", "dpmpp_3m", "unipc", "deis", "ipndm")

CHURN_SAMPLERS = ("heun", "euler", "dpm_2")  # the EDM samplers that take S_churn / S_noise / S_tmin / S_tmax (Algorithm 2)


def get_sampler(name: str):
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}")
    return SAMPLERS[name]


__all__ = [
    "CHURN_SAMPLERS", "DETERMINISTIC_SAMPLERS", "GRIDS", "SAMPLERS", "ddpm_sigma_grid", "ddpm_timesteps", "generate",
    "get_sampler", "karras_sigmas", "loguniform_sigmas", "make_generator", "make_generators",
    "polyexponential_sigmas", "randn", "sample_ddim", "sample_ddpm", "sample_deis", "sample_dpm_2", "sample_dpmpp_2m",
    "sample_dpmpp_2m_sde", "sample_dpmpp_2s_ancestral", "sample_dpmpp_3m", "sample_dpmpp_3m_sde", "sample_dpmpp_sde",
    "sample_euler", "sample_euler_maruyama", "sample_heun", "sample_ipndm", "sample_lms", "sample_ode",
    "sample_ode_dopri5", "sample_ode_euler", "sample_ode_heun", "sample_ode_rk4", "sample_pc", "sample_repaint", "sample_unipc",
    "sigma_grid", "uniform_sigmas", "vp_sigmas",
]

"""Multistep DPM-Solver++ of order 3 and the SDE variants (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided
Sampling of Diffusion Probabilistic Models", Sec. 4 and App. B; Gonzalez et al. 2023, "SEEDS", for the
exponential integrator of the data-prediction SDE), in sigma-space with lambda = -ln sigma, h = ln(sigma/sigma').

One step from sigma to sigma' with h_eta = (1 + eta) h (eta = 0: the probability-flow ODE; eta = 1: the reverse
SDE, SDE-DPM-Solver++):

    x' = (sigma'/sigma) e^{-eta h} x - expm1(-h_eta) D_0
         + phi_2 D_1 - phi_3 D_2 + sigma' sqrt(-expm1(-2 eta h)) s_noise z,
    phi_2 = expm1(-h_eta)/h_eta + 1,  phi_3 = phi_2/h_eta - 1/2,

with D_1 ~ h D'(lambda) and D_2 ~ h^2 D''(lambda) / 2 the divided differences of the denoised history (Lu et al.
2022, App. B), or the midpoint 2nd-order term 1/2 (-expm1(-h_eta)) D_1 (``solver_type='midpoint'``). The step
to sigma = 0 is x <- D (first order). The VE update equals the paper's VP one (alpha = 1/sqrt(1 + sigma^2)).

Third-order coefficient: integrating the quadratic interpolant exactly gives -2 phi_3 D_2 (= (h/3 + O(h^2)) D_2
for eta = 0), while the reference code of DPM-Solver++, diffusers' DPMSolverMultistepScheduler and
k-diffusion's dpmpp_3m_sde use -phi_3 D_2 (= h/6), which leaves an O(h^3) local error: their "3M" converges
with order 2 (tests/test_samplers_new.py measures slopes ~3.0 vs ~2.0). ``third_order='dpm_solver'`` (default)
reproduces the reference implementations; ``third_order='exact'`` is the true 3rd-order method. The smaller
reference coefficient damps the extrapolation and is often as good or better at <= 20 steps on Karras grids
(docs/benchmarks.md, low-NFE table), the exact one wins as the steps grow.
"""

from __future__ import annotations

import math

import torch

from difflab.sampling.base import check_options
from difflab.sampling.noise import denoise_and_report, sde_setup

_SOLVER_TYPES = ("heun", "midpoint")
_THIRD_ORDER = ("exact", "dpm_solver")


def _dpmpp_multistep(name, D, x, sigmas, order, eta, s_noise, solver_type, noise, generator, seed, callback,
                     guidance, cond, third_order="dpm_solver"):
    if third_order not in _THIRD_ORDER:
        raise ValueError(f"{name}: third_order must be one of {_THIRD_ORDER}, got {third_order!r}")
    if solver_type not in _SOLVER_TYPES:
        raise ValueError(f"{name}: solver_type must be one of {_SOLVER_TYPES}, got {solver_type!r}")
    sigmas, z, D, cond = sde_setup(name, D, x, sigmas, generator, seed, noise, eta, s_noise, guidance, cond)
    hist, hs = [], []  # newest first: denoised_{i-1}, denoised_{i-2}; h_{i-1}, h_{i-2}
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoise_and_report(D, x, sigma, cond, i, callback, guidance)
        # Last step: the first-order update to sigma = 0 is the denoiser's estimate.
        if sigma_next == 0:
            x = denoised
            continue
        h = math.log(sigma) - math.log(sigma_next)
        h_eta = h * (eta + 1)
        # First-order (DPM-Solver++(1) / SDE-DPM-Solver++(1)) part.
        x = (sigma_next / sigma) * math.exp(-eta * h) * x - math.expm1(-h_eta) * denoised
        k = min(order, len(hist) + 1)
        phi_2 = math.expm1(-h_eta) / h_eta + 1
        if k == 2:
            # Second-order multistep correction.
            d1 = (denoised - hist[0]) / (hs[0] / h)
            x = x + (-0.5 * math.expm1(-h_eta) if solver_type == "midpoint" else phi_2) * d1
        elif k == 3:
            # Third-order multistep correction (Lu et al. 2022, App. B, multistep DPM-Solver++(3)).
            r0, r1 = hs[0] / h, hs[1] / h
            d1_0, d1_1 = (denoised - hist[0]) / r0, (hist[0] - hist[1]) / r1
            d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
            d2 = (d1_0 - d1_1) / (r0 + r1)
            phi_3 = phi_2 / h_eta - 0.5
            x = x + phi_2 * d1 - (2 if third_order == "exact" else 1) * phi_3 * d2
        if z is not None:
            x = x + z(sigma, sigma_next) * (sigma_next * math.sqrt(-math.expm1(-2 * eta * h)) * s_noise)
        hist.insert(0, denoised)
        hs.insert(0, h)
        del hist[2:], hs[2:]
    return x


@torch.no_grad()
def sample_dpmpp_3m(D, x, sigmas, *, generator=None, callback=None, guidance=None, solver_type: str = "heun",
                    third_order: str = "dpm_solver", cond=None, **options):
    """Multistep DPM-Solver++(3M), Lu et al. 2022, App. B (data prediction, 3rd order; 1st and 2nd order while
    the history fills, ``solver_type`` 'heun' (phi_2, as k-diffusion's dpmpp_3m_sde) or 'midpoint' for the
    2nd-order warm-up step; diffusers' DPMSolverMultistepScheduler(solver_order=3)); ``third_order``: 'dpm_solver'
    (default, the reference coefficient) or 'exact' (true 3rd order), see the module docstring. Deterministic."""
    check_options("dpmpp_3m", options, set())
    return _dpmpp_multistep("dpmpp_3m", D, x, sigmas, 3, 0.0, 1.0, solver_type, "generator", None, None,
                            callback, guidance, cond, third_order)


@torch.no_grad()
def sample_dpmpp_2m_sde(D, x, sigmas, *, generator=None, callback=None, guidance=None, eta: float = 1.0,
                        s_noise: float = 1.0, noise: str = "generator", solver_type: str = "midpoint", cond=None,
                        seed: int | None = None, **options):
    """SDE-DPM-Solver++(2M), Lu et al. 2022, Sec. 4/App. B with the SDE exponential integrator (k-diffusion's
    ``sample_dpmpp_2m_sde``; diffusers' DPMSolverMultistepScheduler(algorithm_type='sde-dpmsolver++')).
    ``eta`` scales the injected noise (0: DPM-Solver++(2M) on the ODE, 1: the reverse SDE), ``s_noise`` its
    amplitude; ``noise='brownian'`` reads it from a seeded Brownian tree (torchsde) instead of fresh draws;
    ``seed`` (int) gives per-sample generators."""
    check_options("dpmpp_2m_sde", options, set())
    return _dpmpp_multistep("dpmpp_2m_sde", D, x, sigmas, 2, eta, s_noise, solver_type, noise, generator,
                            seed, callback, guidance, cond)


@torch.no_grad()
def sample_dpmpp_3m_sde(D, x, sigmas, *, generator=None, callback=None, guidance=None, eta: float = 1.0,
                        s_noise: float = 1.0, noise: str = "generator", solver_type: str = "heun",
                        third_order: str = "dpm_solver", cond=None, seed: int | None = None, **options):
    """SDE-DPM-Solver++(3M) (k-diffusion's ``sample_dpmpp_3m_sde``): the 3rd-order multistep data-prediction
    update with phi_2, phi_3 of h_eta = (1 + eta) h and noise sigma' sqrt(1 - e^{-2 eta h}) s_noise z; eta = 0
    is DPM-Solver++(3M). Options as :func:`sample_dpmpp_2m_sde`; ``third_order`` as :func:`sample_dpmpp_3m`.

    (diffusers' third-order sde-dpmsolver++ update has +[(1 - e^{-2h} - 2h)/(2h)^2 - 1/2] D_2 where
    k-diffusion's has -phi_3 D_2 = +[(1 - e^{-2h} - 2h)/(2h)^2 + 1/2] D_2, an O(1) rather than O(h)
    coefficient, so diffusers is no oracle for this sampler's 3rd-order SDE steps.)"""
    check_options("dpmpp_3m_sde", options, set())
    return _dpmpp_multistep("dpmpp_3m_sde", D, x, sigmas, 3, eta, s_noise, solver_type, noise, generator,
                            seed, callback, guidance, cond, third_order)

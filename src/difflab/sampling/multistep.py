"""Linear multistep samplers on the probability-flow ODE dx/dsigma = d(x; sigma) = (x - D(x; sigma)) / sigma
(Karras et al. 2022, eq. 3 with sigma(t) = t): each step reuses the derivatives of earlier steps, so it costs one
network evaluation whatever the order.

- ``lms``: linear multistep (Adams–Bashforth on a non-uniform grid): d is extrapolated by the Lagrange polynomial
  in sigma through the last ``order`` derivatives and integrated exactly over [sigma_i, sigma_{i+1}]
  (k-diffusion's ``sample_lms``, diffusers' LMSDiscreteScheduler).
- ``deis``: DEIS tAB (Zhang & Chen 2023, "Fast Sampling of Diffusion Models with Exponential Integrator",
  Sec. 4, eq. 14): the noise prediction eps = d is extrapolated by a Lagrange polynomial in the time
  t = ln sigma and integrated exactly in rho = sigma (the exponential integrator of the VP ODE in rho, eq. 13;
  the variant of diffusers' DEISMultistepScheduler).
- ``ipndm``: improved pseudo-numerical method (Zhang & Chen 2023, App. B; Liu et al. 2022 PNDM): Adams–Bashforth
  with the fixed uniform-step coefficients of order 1..4 applied to d (k-diffusion's ``sample_ipndm``, diffusers'
  IPNDMScheduler).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from difflab.sampling.base import check_options, check_sigmas, denoise, guided, report
from difflab.utils import check_positive_int

# Adams–Bashforth coefficients for a uniform step, newest derivative first (Hairer et al., Sec. III.1).
_AB = {1: (1.0,), 2: (3 / 2, -1 / 2), 3: (23 / 12, -16 / 12, 5 / 12), 4: (55 / 24, -59 / 24, 37 / 24, -9 / 24)}


def check_order(name: str, order, max_order: int) -> int:
    check_positive_int(f"{name}: order", order)
    if order > max_order:
        raise ValueError(f"{name}: order must be between 1 and {max_order}, got {order}")
    return order


def lagrange_basis(nodes: list[float], j: int) -> np.polynomial.Polynomial:
    """The Lagrange basis polynomial l_j with l_j(nodes[j]) = 1 and l_j(nodes[m]) = 0 for m != j."""
    p = np.polynomial.Polynomial([1.0])
    for m, node in enumerate(nodes):
        if m != j:
            p = p * np.polynomial.Polynomial([-node, 1.0]) / (nodes[j] - node)
    return p


def lms_coefficients(sigmas_hist: list[float], sigma: float, sigma_next: float) -> list[float]:
    """c_j = int_{sigma}^{sigma_next} l_j(tau) dtau, l_j the Lagrange basis on the nodes ``sigmas_hist``
    (newest first, sigmas_hist[0] = sigma): exact polynomial integration."""
    out = []
    for j in range(len(sigmas_hist)):
        P = lagrange_basis(sigmas_hist, j).integ()
        out.append(float(P(sigma_next) - P(sigma)))
    return out


def deis_coefficients(sigmas_hist: list[float], sigma: float, sigma_next: float) -> list[float]:
    """c_j = int_{sigma}^{sigma_next} l_j(ln tau) dtau, l_j the Lagrange basis on the nodes ln sigmas_hist.

    With u = ln tau - ln sigma the integral is sigma int_0^{u'} l_j(u) e^u du, and int p(u) e^u du =
    e^u (p - p' + p'' - ...) exactly for a polynomial p."""
    u_nodes = [math.log(s) - math.log(sigma) for s in sigmas_hist]
    u_next = math.log(sigma_next) - math.log(sigma)
    out = []
    for j in range(len(u_nodes)):
        p = lagrange_basis(u_nodes, j)
        F, sign, q = np.polynomial.Polynomial([0.0]), 1.0, p
        for _ in range(len(u_nodes)):
            F, sign, q = F + sign * q, -sign, q.deriv()
        out.append(sigma * float(math.exp(u_next) * F(u_next) - F(0.0)))
    return out


def _multistep(D, x, sigmas, coefficients, order, callback, guidance, cond, first_order_final):
    """The shared loop: d_i = (x_i - D(x_i; sigma_i)) / sigma_i, x_{i+1} = x_i + sum_j c_j d_{i-j} with the
    coefficients of ``coefficients(history sigmas, sigma_i, sigma_{i+1})`` (None: the fixed AB ones) over the
    last min(order, i + 1) derivatives. With ``first_order_final`` the step to sigma = 0 is Euler (x <- D)."""
    sigmas = check_sigmas(sigmas)
    D, cond, n = guided(D, guidance), cond or {}, len(sigmas) - 1
    ds, hist = [], []
    for i in range(n):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoise(D, x, sigma, cond)
        d = (x - denoised) / sigma
        report(callback, guidance, i=i, x=x, sigma=sigma, sigma_hat=sigma, denoised=denoised, d=d)
        ds.insert(0, d)
        hist.insert(0, sigma)
        del ds[order:], hist[order:]
        if sigma_next == 0 and first_order_final:
            x = denoised
            continue
        if coefficients is None:
            coeffs = [(sigma_next - sigma) * c for c in _AB[len(ds)]]
        else:
            coeffs = coefficients(hist, sigma, sigma_next)
        x = x + sum(c * dj for c, dj in zip(coeffs, ds, strict=True))
    return x


@torch.no_grad()
def sample_lms(D, x, sigmas, *, generator=None, callback=None, guidance=None, order: int = 4, cond=None, **options):
    """Linear multistep method of order ``order`` (default 4) on the PF-ODE in sigma (k-diffusion's
    ``sample_lms``; diffusers' LMSDiscreteScheduler): x_{i+1} = x_i + sum_j c_ij d_{i-j}, c_ij the integral over
    [sigma_i, sigma_{i+1}] of the Lagrange basis polynomial in sigma through sigma_i .. sigma_{i-order+1}
    (Adams–Bashforth on a variable grid; lower order while the history fills). Deterministic."""
    check_options("lms", options, set())
    check_order("lms", order, 4)
    return _multistep(D, x, sigmas, lms_coefficients, order, callback, guidance, cond, False)


@torch.no_grad()
def sample_deis(D, x, sigmas, *, generator=None, callback=None, guidance=None, order: int = 3, cond=None,
                **options):
    """DEIS tAB of order ``order`` (1..3, default 3), Zhang & Chen 2023, eq. 14: in VE variables
    x_{i+1} = x_i + sum_j C_ij eps_{i-j}, eps = (x - D)/sigma, C_ij = int_{sigma_i}^{sigma_{i+1}} l_j(ln rho) drho
    with l_j the Lagrange basis in t = ln sigma over the last ``order`` levels (diffusers' DEISMultistepScheduler,
    algorithm_type='deis'). Order 1 is DDIM. The step to sigma = 0 is the first-order one (x <- D), where
    ln sigma has no finite value. Deterministic."""
    check_options("deis", options, set())
    check_order("deis", order, 3)
    return _multistep(D, x, sigmas, deis_coefficients, order, callback, guidance, cond, True)


@torch.no_grad()
def sample_ipndm(D, x, sigmas, *, generator=None, callback=None, guidance=None, order: int = 4, cond=None,
                 **options):
    """Improved PNDM (Zhang & Chen 2023, App. B, "iPNDM"): x_{i+1} = x_i + (sigma_{i+1} - sigma_i) sum_j a_j
    d_{i-j} with the uniform-step Adams–Bashforth coefficients a of order min(order, i + 1) (1: [1];
    2: [3, -1]/2; 3: [23, -16, 5]/12; 4: [55, -59, 37, -9]/24), ignoring the grid's non-uniformity (k-diffusion's
    ``sample_ipndm``; diffusers' IPNDMScheduler). Deterministic."""
    check_options("ipndm", options, set())
    check_order("ipndm", order, 4)
    return _multistep(D, x, sigmas, None, order, callback, guidance, cond, False)

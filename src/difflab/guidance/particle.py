"""Particle guidance (Corso et al. 2023, "Particle Guidance: non-I.I.D. diverse sampling with diffusion
models"; the thesis' Algorithm 2).

The particles x_1..x_n of a batch are sampled jointly under the extra potential

    log Phi = -(alpha / 2) sum_{i,j} k(x_i, x_j)          (2.10 in the thesis)

so the score of particle i gains ``-alpha grad_{x_i} sum_j k(x_i, x_j)``. In the EDM ODE direction
``d = (x - D) / sigma`` that is ``d <- d + k_PG(sigma) grad_{x_i} sum_j k(x_i, x_j)`` with k_PG = alpha sigma,
and as a denoiser transform (D' = D + sigma^2 score-term)

    paper  (default):  D' = D - sigma k_PG(sigma) grad_x sum_j k(x_i, x_j)      -> particles repel
    thesis:            D' = D + sigma k_PG(sigma) grad_x sum_j k(x_i, x_j)      -> d <- d - k_PG grad sum k

Sign, proved by the tests: a sampler step goes from sigma to sigma_next < sigma, so x moves by
``(sigma_next - sigma) d' = -|dt| d'``; grad sum k points towards the other particles (k grows as they
approach), so ``d + k_PG grad`` moves x *away* from them. The thesis writes ``d - k_PG grad`` (Algorithm 2,
line 10), which with a constant bandwidth attracts. Its code still repels in high dimension only because it
differentiates through the median bandwidth h = median(d)^2 / log n (see DESIGN.md §4 and docs/results.md).

Schedules, as the direction's coefficient k_PG(sigma) (the thesis' convention):
``"sigma"``: k_PG = weight * sigma (the thesis; a constant alpha = weight in the potential),
``"constant"``: k_PG = weight, ``"window"``: weight * sigma inside ``sigma_window = (lo, hi)``, else 0.
A ``sigma_window`` given with the other schedules also switches PG off outside it.

Where the kernel is evaluated (``on``):
``"x"``: on the noisy particles themselves; ``"denoised"`` (default): on D(x), the thesis' choice. With
``through_denoiser=True`` the gradient w.r.t. x runs through D by autograd (one backward pass through the
network per evaluation); with ``False`` it is the gradient w.r.t. the denoised estimate itself, i.e. D's
Jacobian is taken as the identity, as the thesis' code does. The default (None) is True for the paper
variant and False for the thesis variant.

Kernels (``kernel``): ``"rbf"``: exp(-||a - b||^2 / h); ``"iou"``: exp(-(1 - IoU(a, b)) / h) on images
mapped from ``data_range`` to [0, 1] (clamped); ``"feature"``: exp(-||f(a) - f(b)||^2 / h) with a user
``features`` callable (e.g. a digit classifier's embedding); ``"cyclic"``: exp(-dtheta^2 / h) on the wrapped
angle difference of 2-D points (the ring experiment). ``bandwidth="median"``: h = median(q) / log n over the
distinct pairs of a group (q = the quantity in the exponent; for the RBF that is med(||.||)^2 / log n, the
SVGD heuristic), detached; or a fixed positive float.

``variant="thesis"`` reproduces ``compute_particle_guidance_grad`` of the thesis' code
(juliankleutgens/edm_mnist, generate_conditional_frames.py): the denoised estimate mapped from
``data_range`` to [0, 1] (not clamped), k = exp(-d / h) with the *plain* distance d (L2 for ``rbf``),
h = median(d)^2 / log n over the pairs i < j **with the gradient flowing through the median**, the gradient
taken w.r.t. the mapped estimate, and the thesis' sign. Kernel ``iou`` uses d = 1 - IoU the same way.
``detach_bandwidth`` (default: True for paper, False for thesis) switches the median's gradient on or off
independently, to show that the thesis' repulsion comes from it.

Differences from Algorithm 2 that the wrap protocol imposes (documented, not optional): the guidance acts at
every evaluation of D, so Heun's 2nd-order correction sees PG too (Algorithm 2 adds it in the first evaluation
only, and the thesis' code evaluates the correction at x_hat instead of x_next); k_PG uses the sigma that D
is called with (sigma_hat under churn), where the thesis' code uses t_cur. Because Heun averages the two
directions, the thesis' PG enters its final Heun step with weight 1/2 while ours enters with ~1, so our
``weight`` w with Heun corresponds to roughly 2 w in the thesis' code (with Euler they coincide).

With classifier-free guidance put CFG first (innermost): ``guidance=[cfg, pg]``. In the other order PG would
see CFG's doubled batch [x; x] and couple each particle with its own unconditional copy.

``group_size``: particles interact only within consecutive groups of that size (runs x particles in one
batch); ``reference``: a tensor of earlier samples the particles are also repelled from (they do not move;
with ``on="denoised"`` they are taken as clean samples).

Latent diffusion (a D with the protocol's ``decode`` member, e.g. ``mnist-latent``): the RBF kernel compares the
latents themselves; :func:`decoded_features` makes a feature kernel compare the *decoded images* (the features of
``decode(z)``), the gradient flowing back through the decoder to the latents.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from difflab.guidance.base import Guidance
from difflab.guidance.kernels import KERNEL_DISTANCES, median_bandwidth
from difflab.sampling.base import member
from difflab.utils import append_dims, as_sigma

KERNELS = ("rbf", "iou", "feature", "cyclic")
SCHEDULES = ("sigma", "constant", "window")
VARIANTS = ("paper", "thesis")
PLACES = ("denoised", "x")


def _check_window(window):
    if window is None:
        return None
    try:
        lo, hi = (float(v) for v in window)
    except (TypeError, ValueError):
        raise ValueError(f"sigma_window must be a pair (lo, hi), got {window!r}") from None
    if not (0 <= lo <= hi):
        raise ValueError(f"sigma_window must satisfy 0 <= lo <= hi, got {window!r}")
    return lo, hi


class ParticleGuidance(Guidance):
    """Repulsive particle guidance over the batch given to the sampler (see the module docstring)."""

    needs_grad = True

    def __init__(self, weight: float = 1.0, kernel: str = "rbf", bandwidth: str | float = "median",
                 schedule: str = "sigma", on: str = "denoised", variant: str = "paper",
                 reference: torch.Tensor | None = None, features: Callable | None = None,
                 sigma_window=None, group_size: int | None = None, through_denoiser: bool | None = None,
                 data_range: tuple[float, float] = (-1.0, 1.0), detach_bandwidth: bool | None = None):
        super().__init__()
        try:
            self.weight = float(weight)
        except (TypeError, ValueError):
            raise ValueError(f"weight must be a number, got {weight!r}") from None
        if not math.isfinite(self.weight):
            raise ValueError(f"weight must be finite, got {weight!r}")
        if kernel not in KERNELS:
            raise ValueError(f"unknown kernel {kernel!r}; choose one of {list(KERNELS)}")
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; choose one of {list(SCHEDULES)}")
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; choose one of {list(VARIANTS)}")
        if on not in PLACES:
            raise ValueError(f"unknown on={on!r}; choose one of {list(PLACES)}")
        if isinstance(bandwidth, str):
            if bandwidth != "median":
                raise ValueError(f"bandwidth must be 'median' or a positive number, got {bandwidth!r}")
        else:
            try:
                bw = float(bandwidth)
            except (TypeError, ValueError):
                raise ValueError(f"bandwidth must be 'median' or a positive number, got {bandwidth!r}") from None
            if not (bw > 0 and math.isfinite(bw)):
                raise ValueError(f"bandwidth must be 'median' or a positive number, got {bandwidth!r}")
            bandwidth = bw
        if kernel == "feature" and not callable(features):
            raise ValueError("kernel='feature' needs a callable features(x) -> [B, F]")
        if features is not None and not callable(features):
            raise ValueError(f"features must be callable, got {type(features).__name__}")
        self.sigma_window = _check_window(sigma_window)
        if schedule == "window" and self.sigma_window is None:
            raise ValueError("schedule='window' needs sigma_window=(lo, hi)")
        if reference is not None:
            reference = torch.as_tensor(reference)
            if reference.ndim < 1 or reference.shape[0] < 1:
                raise ValueError(f"reference must be a [R, ...] tensor with R >= 1, got shape {tuple(reference.shape)}")
        min_group = 1 if reference is not None else 2
        if group_size is not None and (isinstance(group_size, bool) or not isinstance(group_size, int)
                                       or group_size < min_group):
            raise ValueError(f"group_size must be an integer >= {min_group} (particles per interacting group), "
                             f"got {group_size!r}")
        lo, hi = (float(v) for v in data_range)
        if not hi > lo:
            raise ValueError(f"data_range must be (lo, hi) with hi > lo, got {data_range!r}")
        self.kernel, self.bandwidth, self.schedule, self.on, self.variant = kernel, bandwidth, schedule, on, variant
        self.reference, self.features, self.group_size = reference, features, group_size
        self.data_range = (lo, hi)
        self.through_denoiser = (variant == "paper") if through_denoiser is None else bool(through_denoiser)
        self.detach_bandwidth = (variant == "paper") if detach_bandwidth is None else bool(detach_bandwidth)

    def __repr__(self):
        return (f"ParticleGuidance(weight={self.weight}, kernel={self.kernel!r}, bandwidth={self.bandwidth!r}, "
                f"schedule={self.schedule!r}, on={self.on!r}, variant={self.variant!r}, "
                f"group_size={self.group_size})")

    # ---- schedule ---------------------------------------------------------------------------------------
    def weight_at(self, sigma: torch.Tensor) -> torch.Tensor:
        """k_PG(sigma) per sample ([B]), the coefficient of grad sum k in the ODE direction."""
        sigma = sigma.double()
        k = self.weight * (torch.ones_like(sigma) if self.schedule == "constant" else sigma)
        if self.sigma_window is not None:
            lo, hi = self.sigma_window
            k = torch.where((sigma >= lo) & (sigma <= hi), k, torch.zeros_like(k))
        return k

    # ---- kernel pieces ----------------------------------------------------------------------------------
    def _premap(self, v: torch.Tensor) -> torch.Tensor:
        """Map to [0, 1] where the kernel needs it (IoU always; RBF in the thesis variant, like its code)."""
        if self.kernel == "iou" or (self.variant == "thesis" and self.kernel == "rbf"):
            lo, hi = self.data_range
            u = (v - lo) / (hi - lo)
            return u.clamp(0, 1) if self.variant == "paper" else u
        return v

    def _embed(self, u: torch.Tensor) -> torch.Tensor:
        if self.kernel == "feature":
            f = self.features(u)
            if f.shape[0] != u.shape[0]:
                raise ValueError(f"features returned {f.shape[0]} rows for {u.shape[0]} particles")
            return f.reshape(f.shape[0], -1)
        return u.reshape(u.shape[0], -1)

    def _groups(self, B: int) -> int:
        n_ref = 0 if self.reference is None else self.reference.shape[0]
        n = self.group_size or B
        if B % n:
            raise ValueError(f"batch size {B} is not a multiple of group_size={n}")
        if n + n_ref < 2:
            raise ValueError(f"particle guidance needs at least 2 particles (batch size / group_size = {n}) "
                             "or a reference set")
        return n

    def energy(self, z: torch.Tensor, z_ref: torch.Tensor | None = None):
        """The kernel sum the gradient is taken of, and the bandwidth per group.

        z: [B, F] embedded particles, z_ref: [R, F] embedded reference points (fixed).
        paper:  E = 1/2 sum_{i,j in group} k(z_i, z_j) + sum_{i, r} k(z_i, r),  k = exp(-q / h), h detached.
        thesis: E = sum_{i<j} exp(-d_ij / h) (+ reference pairs), h = median(d)^2 / log n, not detached."""
        B = z.shape[0]
        n = self._groups(B)
        G = B // n
        zg = z.reshape(G, n, -1)
        allp = zg if z_ref is None else torch.cat([zg, z_ref.to(z).reshape(1, z_ref.shape[0], -1).expand(G, -1, -1)], 1)
        m = allp.shape[1]
        q_fn, d_fn = KERNEL_DISTANCES[self.kernel]
        q = (q_fn if self.variant == "paper" else d_fn)(zg, allp)  # [G, n, m]
        # The distinct pairs: i < j among the particles, and every particle-reference pair.
        iu = torch.triu_indices(n, n, offset=1, device=z.device)
        pairs = q[:, iu[0], iu[1]]
        if m > n:
            pairs = torch.cat([pairs, q[:, :, n:].reshape(G, -1)], 1)
        if self.bandwidth == "median":
            src = pairs.detach() if self.detach_bandwidth else pairs
            h = median_bandwidth(src, m, squared=self.variant == "thesis")
        else:
            h = torch.full((G,), self.bandwidth, dtype=q.dtype, device=q.device)
        if self.variant == "paper":
            k = torch.exp(-q / h[:, None, None])
            E = 0.5 * k[:, :, :n].sum() + k[:, :, n:].sum()
        else:
            E = torch.exp(-pairs / h[:, None]).sum()
        return E, h

    # ---- the transform ------------------------------------------------------------------------------------
    host_sigma = True  # samplers pass sigma as a number (see difflab.sampling.base.denoise)

    def apply(self, D, x, sigma, **cond):
        # With a number for sigma (what the samplers pass) whether k_PG is zero is decided on the host;
        # only a per-sample sigma tensor needs a read-back from the device.
        host = isinstance(sigma, (int, float))
        off = float(self.weight_at(torch.tensor([float(sigma)], dtype=torch.float64))[0]) == 0 if host else None
        sigma_in, sigma = sigma, as_sigma(sigma, x)
        # The inner denoiser gets the number too when it is a guidance that decides on the host (e.g. CFG).
        inner_sigma = sigma_in if host and member(D, "host_sigma", False) else sigma
        k_pg = self.weight_at(sigma)
        self._groups(x.shape[0])
        if off is None:
            off = not bool((k_pg != 0).any())
        if off:
            denoised = D(x, inner_sigma, **cond)
            self.last_info = {"pg_weight": 0.0, "pg_grad_norm": torch.zeros(x.shape[0], device=x.device),
                              "ode_grad_norm": self._norm((x - denoised) / append_dims(sigma, x.ndim))}
            return denoised
        z_ref = None
        with torch.enable_grad():
            if self.reference is not None:
                z_ref = self._embed(self._premap(self.reference.to(x.device, x.dtype))).detach()
            if self.on == "x":
                denoised = D(x, inner_sigma, **cond)
                leaf = x.detach().requires_grad_(True)
                z = self._embed(self._premap(leaf))
            elif self.through_denoiser:
                leaf = x.detach().requires_grad_(True)
                den = D(leaf, inner_sigma, **cond)
                denoised = den.detach()
                z = self._embed(self._premap(den))
            else:
                denoised = D(x, inner_sigma, **cond)
                if self.variant == "thesis":
                    # The thesis differentiates w.r.t. the [0, 1]-mapped estimate itself.
                    leaf = self._premap(denoised.detach()).requires_grad_(True)
                    z = self._embed(leaf)
                else:
                    leaf = denoised.detach().requires_grad_(True)
                    z = self._embed(self._premap(leaf))
            E, h = self.energy(z, z_ref)
            (grad,) = torch.autograd.grad(E, leaf, allow_unused=True)
        if grad is None:
            grad = torch.zeros_like(x)
        grad = grad.to(x.dtype)
        # Change of the ODE direction d = (x - D)/sigma: +k_PG grad (paper) or -k_PG grad (thesis).
        sign = 1.0 if self.variant == "paper" else -1.0
        delta_d = sign * append_dims(k_pg.to(x.dtype), x.ndim) * grad
        out = denoised - append_dims(sigma.to(x.dtype), x.ndim) * delta_d
        self.last_info = {
            "pg_weight": k_pg.abs().max(),
            "pg_grad_norm": self._norm(delta_d),
            "ode_grad_norm": self._norm((x - denoised) / append_dims(sigma.to(x.dtype), x.ndim)),
            "pg_bandwidth": h.detach(),
        }
        return out

    @staticmethod
    def _norm(v: torch.Tensor) -> torch.Tensor:
        return v.detach().reshape(v.shape[0], -1).norm(dim=1)


def decoded_features(D, features: Callable) -> Callable:
    """``features`` of D's decoded samples, ``z -> features(D.decode(z))``, for a feature kernel on a latent model
    (the decoder is differentiable, so PG's gradient reaches the latents); ``features`` itself when D has no
    ``decode`` member (pixel models). A cascade, whose decode samples a second model, cannot be decoded here."""
    dec = member(D, "decode")
    if dec is None:
        return features

    def through_decoder(z: torch.Tensor) -> torch.Tensor:
        return features(dec(z))

    return through_decoder

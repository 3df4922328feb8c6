"""Diversity methods behind one factory: ``diversity(name, *, group_size, strength, **options)``.

Every method couples consecutive groups of ``group_size`` samples of a batch, is passed to any sampler as
``guidance=`` (alone or after CFG: ``guidance=[cfg, diversity(...)]``), and takes ``strength >= 0``
(0 = i.i.d. sampling). The methods (:data:`DIVERSITY_METHODS`):

- ``iid``: no coupling (the baseline row of every table).
- ``ortho``: structured starting and churn noise (:mod:`difflab.guidance.structured`): each particle's noise is
  exactly N(0, I), so each sample keeps the model's law exactly, while a group's directions form a (shrunk)
  regular simplex. strength in [0, 1] (the simplex share). Options ``start``, ``churn`` (bools).
- ``pg``: particle guidance (Corso et al. 2023; :class:`~difflab.guidance.particle.ParticleGuidance`) with the
  improvements the ring frontier asks for: ``sigma_window=(lo, hi)`` (PG only there) and the churn of the EDM
  samplers (Karras et al. 2022, Algorithm 2) to re-equilibrate after the push; strength = the weight w
  (k_PG = w sigma). Options: every ParticleGuidance keyword (kernel, bandwidth, schedule, on, features, ...).
- ``spell``: sparse repellency (Kirchhof et al. 2024; :mod:`difflab.guidance.spell`), options ``radius``,
  ``reference``, ``sigma_window``.
- ``cads``: condition-annealed sampling (Sadat et al. 2024; :mod:`difflab.guidance.cads`); needs
  ``model=D`` of a class-conditional model, else ValueError. Options tau1, tau2, psi, sigma_min, sigma_max, seed.
- ``dpp``: the determinantal potential log Phi = w log det K (Kulesza & Taskar 2012) of the group's RBF kernel
  matrix K on the denoised estimates, and ``vendi``: log Phi = w log Vendi(K) (Friedman & Dieng 2023,
  the entropy of K/n's eigenvalues), both through the particle-guidance machinery (schedules, windows, ``on``,
  feature kernels): only the kernel sum of PG is replaced by the potential (:class:`DeterminantalGuidance`).
- ``strata``: class-stratified sampling (:mod:`difflab.guidance.strata`): each group's classes are drawn by
  systematic sampling from the class weights, and each particle is steered to its class by classifier guidance
  (strength = the guidance scale s); with s = 1 and the exact posterior classifier every particle keeps the
  model's law exactly. Needs ``classifier=classifier(x, sigma) -> logits``, else ValueError; options
  ``weights`` (default uniform), ``seed``.

``recommended`` (:data:`PRESETS`) resolves to the method, strength and options chosen from the measured
frontier on mnist-uncond (docs/results.md, "Diversity without distortion").
"""

from __future__ import annotations

import torch

from difflab.guidance.base import Guidance
from difflab.guidance.cads import ConditionAnnealing, check_conditional
from difflab.guidance.kernels import KERNEL_DISTANCES, median_bandwidth
from difflab.guidance.particle import ParticleGuidance
from difflab.guidance.spell import SparseRepellency
from difflab.guidance.strata import ClassStrata
from difflab.guidance.structured import StructuredNoise

DIVERSITY_METHODS = ("iid", "ortho", "pg", "spell", "cads", "dpp", "vendi", "strata")
# name -> (method, strength, options, sampler options it was measured with). "recommended": structured starting
# noise, the only method on the measured frontier (docs/results.md) that adds modes per group without moving the
# pooled frequencies (exact mixtures) or classifier-FID (mnist-uncond, n = 600: 6.85 vs 6.42 modes per 10,
# classifier-FID 2.95 vs 3.34); it keeps every sample's law exactly the model's, so it cannot cost fidelity.
PRESETS = {"recommended": ("ortho", 1.0, {}, {})}


class Independent(StructuredNoise):
    """The i.i.d. baseline as a guidance object (does nothing)."""

    def __init__(self, group_size: int | None = None):
        Guidance.__init__(self)
        self.group_size, self.strength, self.start, self.churn = group_size, 0.0, False, False

    def __repr__(self):
        return "Independent()"


class DeterminantalGuidance(ParticleGuidance):
    """Particle guidance with the kernel sum replaced by -log det K (``potential='dpp'``) or by
    -log Vendi(K) = sum_i l_i log l_i, l = eig(K / n) (``potential='vendi'``), per group; K_ij = exp(-q_ij / h)
    with PG's kernels and bandwidths, plus ``jitter`` on the diagonal. Everything else (the sign convention
    d <- d + k_PG grad E, schedules, windows, ``on``, ``through_denoiser``) is ParticleGuidance's."""

    def __init__(self, potential: str = "dpp", jitter: float = 1e-3, **kw):
        if potential not in ("dpp", "vendi"):
            raise ValueError(f"potential must be 'dpp' or 'vendi', got {potential!r}")
        if kw.get("reference") is not None:
            raise ValueError(f"{potential}: a reference set is not supported (use spell or pg)")
        if kw.get("variant", "paper") != "paper":
            raise ValueError(f"{potential}: only the paper variant is supported")
        super().__init__(**kw)
        if self.group_size is None or self.group_size < 2:
            raise ValueError(f"{potential}: group_size must be an integer >= 2")
        self.potential, self.jitter = potential, float(jitter)

    def __repr__(self):
        return f"DeterminantalGuidance({self.potential!r}, weight={self.weight}, group_size={self.group_size})"

    def energy(self, z: torch.Tensor, z_ref=None):
        n = self._groups(z.shape[0])
        G = z.shape[0] // n
        zg = z.reshape(G, n, -1)
        q = KERNEL_DISTANCES[self.kernel][0](zg, zg)
        iu = torch.triu_indices(n, n, offset=1, device=z.device)
        if self.bandwidth == "median":
            h = median_bandwidth(q[:, iu[0], iu[1]].detach(), n)
        else:
            h = torch.full((G,), self.bandwidth, dtype=q.dtype, device=q.device)
        K = torch.exp(-q.double() / h.double()[:, None, None])
        K = K + self.jitter * torch.eye(n, dtype=K.dtype, device=K.device)
        if self.potential == "dpp":
            E = -torch.logdet(K).sum()
        else:
            lam = torch.linalg.eigvalsh(K / n).clamp_min(1e-12)
            lam = lam / lam.sum(-1, keepdim=True)
            E = (lam * lam.log()).sum()
        return E, h


def _check_group(group_size):
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be a positive integer, got {group_size!r}")


def diversity(name: str, *, group_size: int, strength: float, model=None, **options):
    """A guidance object for diversity method ``name`` (see the module docstring) coupling consecutive groups of
    ``group_size`` samples; ``strength >= 0`` scales it (0 = i.i.d.; None: the preset's, else 1); ``model`` is the
    denoiser (CADS needs it to be class-conditional)."""
    if name in PRESETS:
        method, preset_strength, preset_options, _ = PRESETS[name]
        return diversity(method, group_size=group_size, strength=preset_strength if strength is None else strength,
                         model=model, **{**preset_options, **options})
    if name not in DIVERSITY_METHODS:
        raise ValueError(f"unknown diversity method {name!r}; choose one of {', '.join(DIVERSITY_METHODS + tuple(PRESETS))}")
    _check_group(group_size)
    strength = 1.0 if strength is None else strength
    try:
        strength = float(strength)
    except (TypeError, ValueError):
        raise ValueError(f"diversity strength must be a number >= 0, got {strength!r}") from None
    if not strength >= 0 or strength == float("inf"):
        raise ValueError(f"diversity strength must be a finite number >= 0, got {strength!r}")
    if name == "cads":
        check_conditional(model)
        return ConditionAnnealing(model, strength=strength, group_size=group_size, **options)
    if name == "strata":
        return ClassStrata(group_size, strength, **options)
    if name == "iid" or group_size < 2 and name != "spell":
        return Independent(group_size)
    if name == "ortho":
        return StructuredNoise(group_size, strength, **options)
    if name == "spell":
        return SparseRepellency(group_size, strength, **options)
    if name == "pg":
        return ParticleGuidance(weight=strength, group_size=group_size, **options)
    return DeterminantalGuidance(potential=name, weight=strength, group_size=group_size, **options)


__all__ = ["DIVERSITY_METHODS", "PRESETS", "DeterminantalGuidance", "Independent", "diversity"]

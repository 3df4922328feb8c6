"""Class-stratified sampling (``diversity("strata", ...)``): each group is assigned classes by systematic sampling
and each particle is steered to its class by classifier guidance, so a group covers the classes as evenly as
possible while every particle keeps the model's law.

Construction, for a group of G particles and class weights p = (p_1, ..., p_K) with F(c) = p_1 + ... + p_c and
F^{-1}(t) = min{c : F(c) > t} on [0, 1):

1. Systematic sampling (one uniform offset for the whole group; Madow & Madow 1944 in survey sampling, systematic
   resampling in particle filters: Kitagawa 1996, Carpenter, Clifford & Fearnhead 1999, compared in Douc & Cappe
   2005): u ~ U(0, 1), a_j = F^{-1}((j - 1 + u) / G) for j = 1..G.
2. A uniformly random permutation pi of the positions, independent of u: particle i gets c_i = a_pi(i).
3. Classifier guidance (Dhariwal & Nichol 2021, section 4 / Algorithm 1, in the denoiser form of
   :mod:`difflab.guidance.classifier`): particle i is sampled with
   D'(x; sigma) = D(x; sigma) + s sigma^2 grad_x log p(c_i | x, sigma), s = ``strength`` (0 = i.i.d.).

Proof that every particle has the model's law p(x) = sum_c p(c) p(x | c) when s = 1, the classifier is the exact
posterior p(c | x, sigma) of the model's own noised law and ``weights`` are its class prior p(c):

(i) Each position's class is distributed as p. J = pi(i) is uniform on {1..G} and independent of u, so
    t = (J - 1 + u) / G is uniform on [0, 1) (a uniformly chosen stratum of width 1/G, a uniform point inside it),
    and P(c_i = c) = P(F(c - 1) <= t < F(c)) = p_c, for every position i of every group.
(ii) Given c_i, particle i is an exact sample of p(x | c_i): by Bayes, grad log p_sigma(x) + grad log
    p(c | x, sigma) = grad log p_sigma(x | c), and with Tweedie (score = (D - x) / sigma^2) D' is exactly the
    denoiser of the class-conditional law, for every sigma; the sampler's own per-sample noise is independent of
    the assignment (it comes from the guidance's own generator, ``seed``). So the law of x_i is
    sum_c P(c_i = c) p(x | c) = sum_c p_c p(x | c) = p(x), exactly as for i.i.d. sampling (up to the same
    discretisation error of the sampler).
(iii) The group is stratified: the points (j - 1 + u) / G have spacing 1/G, so class c is given to
    floor(G p_c) or ceil(G p_c) particles of every group (exactly G p_c when that is an integer), where i.i.d.
    draws give a Binomial(G, p_c) count with variance G p_c (1 - p_c). Every class with p_c >= 1/G is in every
    group, and pooled class frequencies are unbiased with a much lower variance than i.i.d. (stratified sampling:
    Cochran 1977, ch. 5).

Only the particles' classes are coupled; the particles never interact otherwise. With weights other than the
classifier's prior the particles sample sum_c w_c p(x | c) (a deliberate reweighting); with s != 1 or a learned
classifier each particle samples p(x | c_i) only approximately, as classifier guidance does.

Options: ``classifier`` (callable ``classifier(x, sigma) -> logits [B, K]``, noise-conditional; required; for the
exact mixtures of :mod:`difflab.data.toy`: ``GaussianMixture.classifier``, the exact posterior), ``weights``
(p(c), default uniform over the classifier's K classes), ``seed`` (the assignment's generator). The assignment of
the current batch is the attribute ``labels`` ([B] class indices, row order) and ``last_info["strata_class"]``.
A fresh assignment is drawn at every batch's start (the :func:`difflab.sampling.base.start_noise` hook, called
by ``generate``); a sampler called directly without that hook draws one at the first call of a batch size and
keeps it until :meth:`ClassStrata.start_noise` or :meth:`ClassStrata.assign` is called.
"""

from __future__ import annotations

import math

import torch

from difflab.guidance.classifier import ClassifierGuidance
from difflab.sampling.base import denoise
from difflab.utils import as_sigma


def systematic_classes(weights: torch.Tensor, groups: int, group_size: int, generator=None) -> torch.Tensor:
    """Class indices [groups * group_size] (consecutive groups): per group, systematic sampling of ``group_size``
    classes from ``weights`` (one uniform offset) in a uniformly random order (steps 1-2 of the module docstring)."""
    w = weights.detach().to("cpu", torch.float64)
    cdf = torch.cumsum(w / w.sum(), 0)
    u = torch.rand(groups, 1, generator=generator, dtype=torch.float64)
    t = (torch.arange(group_size, dtype=torch.float64)[None] + u) / group_size  # [groups, G], stratum points
    a = torch.searchsorted(cdf, t.contiguous(), right=True).clamp_max(len(w) - 1)  # F^{-1}(t)
    perm = torch.rand(groups, group_size, generator=generator, dtype=torch.float64).argsort(1)  # uniform permutation
    return a.gather(1, perm).reshape(-1)


class ClassStrata(ClassifierGuidance):
    """Class-stratified sampling: classifier guidance (scale = ``strength``) towards classes assigned per group
    by systematic sampling. See the module docstring for the construction and the proof of exact marginals."""

    host_sigma = True  # strength 0 hands sigma to D exactly as an unguided sampler would (bit-for-bit i.i.d.)

    def __init__(self, group_size: int, strength: float = 1.0, classifier=None, weights=None, seed: int = 0):
        if classifier is None:
            raise ValueError("diversity method 'strata' needs classifier=...: a noise-conditional "
                             "classifier(x, sigma) -> logits [B, K] (for a difflab.data.toy mixture: "
                             "gm.classifier, its exact posterior)")
        super().__init__(classifier, scale=strength)
        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
            raise ValueError(f"strata: group_size must be a positive integer, got {group_size!r}")
        if not (self.scale >= 0 and math.isfinite(self.scale)):
            raise ValueError(f"strata: strength must be a finite number >= 0, got {strength!r}")
        self.group_size, self.strength = group_size, self.scale
        self.weights = None
        if weights is not None:
            w = torch.as_tensor(weights, dtype=torch.float64).detach().cpu()
            if w.ndim != 1 or len(w) < 1 or not torch.isfinite(w).all() or (w < 0).any() or float(w.sum()) <= 0:
                raise ValueError("strata: weights must be a 1-D vector of finite non-negative class weights with a "
                                 "positive sum")
            self.weights = w / w.sum()
        self.num_classes = None if self.weights is None else len(self.weights)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.labels = None

    def __repr__(self):
        return f"ClassStrata(group_size={self.group_size}, strength={self.strength}, classes={self.num_classes})"

    def assign(self, batch: int) -> torch.Tensor:
        """Draw (and keep as ``labels``) a fresh assignment for ``batch`` rows in groups of ``group_size``."""
        if batch % self.group_size:
            raise ValueError(f"strata: batch size {batch} is not a multiple of group_size={self.group_size}")
        w = self.weights if self.weights is not None else torch.full((self.num_classes,), 1.0 / self.num_classes,
                                                                     dtype=torch.float64)
        self.labels = systematic_classes(w, batch // self.group_size, self.group_size, self.generator)
        return self.labels

    def start_noise(self, z: torch.Tensor) -> torch.Tensor:
        """The start-of-batch hook: a fresh assignment (drawn at the first call when K is not known yet)."""
        self.labels = None
        if self.num_classes is not None:
            self.assign(z.shape[0])
        return z

    def _check_classes(self, x, sigma):
        """K from one classifier call (once): the default uniform weights need it, given weights must match it."""
        with torch.no_grad():
            K = int(self.classifier(x, as_sigma(sigma, x)).shape[1])
        if self.num_classes is not None and K != self.num_classes:
            raise ValueError(f"strata: the classifier has {K} classes but weights has {self.num_classes}")
        self.num_classes, self._checked = K, True

    def apply(self, D, x, sigma, **cond):
        if self.scale == 0:
            return denoise(D, x, sigma, cond)
        if not getattr(self, "_checked", False):
            self._check_classes(x, sigma)
        if self.labels is None or self.labels.shape[0] != x.shape[0]:
            self.assign(x.shape[0])
        out = super().apply(D, x, sigma, **cond)  # ClassifierGuidance towards self.labels
        self.last_info["strata_class"] = self.labels
        return out

"""Classifier-free guidance (Ho & Salimans 2022) as a denoiser transform.

Two conventions appear in our sources; with eps = (x - D) / sigma both are the same linear combination
of the conditional and unconditional denoisers D_c = D(x, sigma, c) and D_u = D(x, sigma, null):

    'ntnu' (default):  eps = (1 + w) eps_c - w eps_u     ->  D' = (1 + w) D_c - w D_u
    'ho':              eps = eps_u + w (eps_c - eps_u)   ->  D' = D_u + w (D_c - D_u)

so ntnu weight w equals ho weight w + 1: ntnu w = 0 (ho w = 1) is the plain conditional model, ntnu w = -1
(ho w = 0) the unconditional one. The default is 'ntnu' because its weight is the *extra* guidance on top
of the conditional model (w = 0 means "no guidance", any w > 0 strengthens the condition), and the value
this project reproduces, the NTNU MNIST paper's best w = 0.2, is stated in it: ``ClassifierFreeGuidance(0.2)``
is that paper's setting. (Read in the 'ho' convention, 0.2 would mean mostly unconditional.)

Both halves go through D in one batched call ([x; x] with [c; null]). The null label is ``null_label`` or
D's ``num_classes`` attribute (the networks reserve index num_classes for "no label"). One-hot / float
labels of shape [B, K] are also accepted; their null is the zero vector. Outside ``sigma_window = (lo, hi)``
the conditional D is used alone (guidance only in a band of noise levels, Kynkaanniemi et al. 2024).
"""

from __future__ import annotations

import torch

from difflab.guidance.base import Guidance
from difflab.sampling.base import member
from difflab.utils import append_dims, as_sigma

CONVENTIONS = ("ntnu", "ho")


class ClassifierFreeGuidance(Guidance):
    def __init__(self, weight: float = 0.2, convention: str = "ntnu", null_label: int | None = None,
                 sigma_window=None, label_key: str = "class_labels"):
        super().__init__()
        if convention not in CONVENTIONS:
            raise ValueError(f"unknown convention {convention!r}; choose 'ntnu' ((1+w) eps_c - w eps_u) "
                             "or 'ho' (eps_u + w (eps_c - eps_u))")
        self.weight = float(weight)
        self.convention = convention
        if null_label is not None and (isinstance(null_label, bool) or not isinstance(null_label, int)
                                       or null_label < 0):
            raise ValueError(f"null_label must be a non-negative integer, got {null_label!r}")
        self.null_label = null_label
        self.sigma_window = check_window(sigma_window)
        self.label_key = label_key

    @property
    def coefficients(self) -> tuple[float, float]:
        """(a, b) with D' = a D_c + b D_u."""
        w = self.weight
        return (1 + w, -w) if self.convention == "ntnu" else (w, 1 - w)

    def _null(self, D) -> int:
        if self.null_label is not None:
            return self.null_label
        n = member(D, "num_classes")
        if isinstance(n, int) and not isinstance(n, bool) and n > 0:
            return n
        raise ValueError("ClassifierFreeGuidance: null_label is required when D has no positive "
                         "num_classes attribute")

    host_sigma = True  # samplers pass sigma as a number (see difflab.sampling.base.denoise)

    def members(self, D) -> dict:
        return {"num_classes": member(D, "num_classes") or self._null(D)}

    def combine(self, d_c, d_u, sigma_host, sigma):
        """The guided denoiser from the conditional and unconditional ones: ``a D_c + b D_u``. Subclasses
        (APG, CFG++ in :mod:`difflab.guidance.projected`) change only this step; ``sigma_host`` is the noise
        level as a number when the sampler passed one (else None), ``sigma`` the [B] tensor."""
        a, b = self.coefficients
        return a * d_c + b * d_u

    def apply(self, D, x, sigma, **cond):
        null = self._null(D)
        # Whether sigma is in the window is decided on the host when the sampler passes a number (no GPU
        # read-back); only a per-sample sigma tensor with a window needs one.
        sigma_host = float(sigma) if isinstance(sigma, (int, float)) else None
        sigma = as_sigma(sigma, x)
        labels = cond.get(self.label_key)
        if labels is None:
            raise ValueError(f"{type(self).__name__} needs conditional labels ({self.label_key}=...)")
        labels = torch.as_tensor(labels, device=x.device)
        if labels.ndim == 0:
            labels = labels.expand(x.shape[0])
        B = x.shape[0]
        inside, active = window_mask(self.sigma_window, sigma_host, sigma)
        if not inside:
            self.last_info = {"cfg_active": 0.0}
            return D(x, sigma, **{**cond, self.label_key: labels})
        if labels.ndim == 1:
            uncond = torch.full_like(labels, null)
        else:
            uncond = torch.zeros_like(labels)
        both = {}
        for key, v in cond.items():
            if key == self.label_key:
                continue
            both[key] = torch.cat([v, v]) if torch.is_tensor(v) and v.ndim > 0 and v.shape[0] == B else v
        both[self.label_key] = torch.cat([labels, uncond])
        out = D(torch.cat([x, x]), torch.cat([sigma, sigma]), **both)
        d_c, d_u = out[:B], out[B:]
        guided = self.combine(d_c, d_u, sigma_host, sigma)
        if active is None:
            self.last_info = {"cfg_active": 1.0}
            return guided
        self.last_info = {"cfg_active": active.float().mean()}
        return torch.where(append_dims(active, x.ndim), guided, d_c)


def check_window(window, name: str = "sigma_window"):
    """``(lo, hi)`` as floats with ``0 <= lo <= hi`` (``hi`` may be inf), or None."""
    if window is None:
        return None
    lo, hi = (float(v) for v in window)
    if not 0 <= lo <= hi:
        raise ValueError(f"{name} must satisfy 0 <= lo <= hi, got {window!r}")
    return lo, hi


def window_mask(window, sigma_host, sigma):
    """Is a guidance active at this noise level (Kynkaanniemi et al. 2024: guidance only for sigma in
    [lo, hi])? Returns ``(inside, active)``: ``inside`` False means no sample is guided; ``active`` is None when
    every sample is, else a [B] bool mask (only a per-sample sigma tensor with a window gives one; a number from
    the sampler is decided on the host without a device read-back)."""
    if window is None:
        return True, None
    lo, hi = window
    if sigma_host is not None:
        return lo <= sigma_host <= hi, None
    active = (sigma >= lo) & (sigma <= hi)
    return bool(active.any()), active

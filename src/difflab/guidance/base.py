"""The guidance protocol: a guidance is an object with ``wrap(D) -> D'`` that returns a new denoiser.

Samplers call ``difflab.sampling.base.guided(D, guidance)`` once, so every sampler that consumes D gets
every guidance for free. A term g added to the score becomes ``D' = D + sigma^2 g`` (Tweedie: score =
(D - x)/sigma^2). Guidances that differentiate (classifier, particle) switch autograd on themselves, since
samplers run under ``torch.no_grad``. Per-step statistics (gradient norms, ...) go in ``last_info`` as
device tensors and reach the sampler's callback on the host (``difflab.sampling.base.guidance_info``): reading
them back synchronises a GPU, so it happens only when a callback asks for them."""

from __future__ import annotations

from difflab.sampling.base import MEMBERS


class Guidance:
    needs_grad = False
    host_sigma = False  # True: the guided denoiser takes sigma as a number (see GuidedDenoiser)

    def __init__(self):
        self.last_info: dict = {}

    def wrap(self, D):
        """The guided denoiser ``D'``: :meth:`apply` around D, as a :class:`GuidedDenoiser`."""
        return GuidedDenoiser(self, D)

    def apply(self, D, x, sigma, **cond):  # pragma: no cover - interface
        """D'(x, sigma, **cond) given the inner denoiser D."""
        raise NotImplementedError


class GuidedDenoiser:
    """A guidance applied to a denoiser: ``D'(x, sigma, **cond) = guidance.apply(D, x, sigma, **cond)``.

    It is a :class:`difflab.sampling.base.Denoiser` that forwards the protocol's optional members of the inner D
    (``num_classes``, ``T``, ``beta_schedule``); ``host_sigma`` is the guidance's own (it decides windows on the
    host). A guidance may override a member through ``guidance.members(D)``."""

    def __init__(self, guidance: Guidance, D):
        self.guidance, self.inner = guidance, D
        self.host_sigma = bool(guidance.host_sigma)
        members = guidance.members(D) if hasattr(guidance, "members") else {}
        for name in MEMBERS:
            if name == "host_sigma":
                continue
            v = members.get(name, getattr(D, name, None))
            if v is not None:
                setattr(self, name, v)

    def __call__(self, x, sigma, **cond):
        return self.guidance.apply(self.inner, x, sigma, **cond)

    def __repr__(self):
        return f"GuidedDenoiser({self.guidance!r})"

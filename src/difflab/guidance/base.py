"""The guidance protocol: a guidance is an object with ``wrap(D) -> D'`` that returns a new denoiser.

Samplers call ``difflab.sampling.base.guided(D, guidance)`` once, so every sampler that consumes D gets
every guidance for free. A term g added to the score becomes ``D' = D + sigma^2 g`` (Tweedie: score =
(D - x)/sigma^2). Guidances that differentiate (classifier, particle) switch autograd on themselves, since
samplers run under ``torch.no_grad``. Per-step statistics (gradient norms, ...) go in ``last_info`` as
device tensors and reach the sampler's callback on the host (``difflab.sampling.base.guidance_info``): reading
them back synchronises a GPU, so it happens only when a callback asks for them."""

from __future__ import annotations


class Guidance:
    needs_grad = False

    def __init__(self):
        self.last_info: dict = {}

    def wrap(self, D):  # pragma: no cover - interface
        raise NotImplementedError

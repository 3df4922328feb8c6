"""CLIP guidance (GLIDE, Nichol et al. 2022, Sec. 2.4) as a denoiser transform.

The gradient of the similarity between a text embedding h(c) and the image embedding g(x_t, sigma) of a
noise-aware contrastive model is added to the score, which by Tweedie (score = (D - x) / sigma^2) is

    'noisy' (GLIDE):   D'(x; sigma) = D(x; sigma) + s sigma^2 grad_x <h(c), g(x, sigma)>

and the variant on the denoised estimate (the image encoder sees the clean-looking D(x; sigma) and the gradient
flows back through the denoiser, as in "universal guidance", Bansal et al. 2023, eq. 5):

    'denoised':        D'(x; sigma) = D(x; sigma) + s sigma^2 grad_x <h(c), g(D(x; sigma), sigma_min)>

Both embeddings are unit vectors, so <.,.> is the cosine similarity. Generic over any model with
``encode_image(x[, sigma])`` and ``encode_text(tokens)`` (difflab's :class:`difflab.nets.text.ContrastiveModel`,
or an open_clip model where a user has one: sigma is passed only if ``encode_image`` takes a second argument, and
the prompt is tokenised by the model's ``tokenize`` or the ``tokenizer`` given).
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F

from difflab.guidance.base import Guidance
from difflab.utils import append_dims, as_sigma

VARIANTS = ("noisy", "denoised")


def _takes_sigma(fn) -> bool:
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return False
    return len(params) >= 2


class CLIPGuidance(Guidance):
    needs_grad = True

    def __init__(self, model, text, scale: float = 1.0, variant: str = "noisy", tokenizer=None,
                 sigma_eval: float = 1e-3):
        super().__init__()
        if not (hasattr(model, "encode_image") and hasattr(model, "encode_text")):
            raise ValueError("CLIP guidance needs a model with encode_image(x, sigma) and encode_text(tokens)")
        if variant not in VARIANTS:
            raise ValueError(f"CLIP guidance variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
        if isinstance(text, str) and not text.strip():
            raise ValueError("--clip-guidance needs a non-empty prompt")
        self.model, self.scale, self.variant, self.sigma_eval = model, float(scale), variant, float(sigma_eval)
        self.text, self.tokenizer = text, tokenizer
        self._with_sigma = _takes_sigma(model.encode_image)
        self._h = None

    def text_embedding(self, device) -> torch.Tensor:
        """h(c) [1 or B, E], unit length (computed once)."""
        if self._h is None:
            t = self.text
            if isinstance(t, str) or (isinstance(t, (list, tuple)) and t and isinstance(t[0], str)):
                tok = self.tokenizer or getattr(self.model, "tokenize", None)
                if tok is None:
                    raise ValueError("CLIP guidance: the model has no tokenize(); pass tokenizer=...")
                t = tok(t)
            with torch.no_grad():
                self._h = F.normalize(self.model.encode_text(torch.as_tensor(t).to(device)).float(), dim=-1)
        return self._h.to(device)

    def _image(self, x, sigma):
        g = self.model.encode_image(x, sigma) if self._with_sigma else self.model.encode_image(x)
        return F.normalize(g.float(), dim=-1)

    def similarity(self, x, sigma) -> torch.Tensor:
        """<h(c), g(x, sigma)> per sample."""
        return (self._image(x, sigma) * self.text_embedding(x.device)).sum(-1)

    def apply(self, D, x, sigma, **cond):
        sigma = as_sigma(sigma, x)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            if self.variant == "noisy":
                denoised = D(x, sigma, **cond)
                sim = self.similarity(xg, sigma)
            else:
                out = D(xg, sigma, **cond)
                denoised = out.detach()
                sim = self.similarity(out, torch.full_like(sigma, self.sigma_eval))
            (g,) = torch.autograd.grad(sim.sum(), xg)
        term = self.scale * append_dims(sigma.to(x.dtype), x.ndim) ** 2 * g.to(x.dtype)
        self.last_info = {"clip_sim": sim.detach(), "clip_grad_norm": term.detach().reshape(x.shape[0], -1).norm(dim=1)}
        return denoised + term


def zero_shot_classifier(model, prompts, tokenizer=None):
    """A noise-conditional zero-shot classifier from a contrastive model (CLIP's zero-shot rule, Radford et al.
    2021, section 3.1.2): ``classifier(x, sigma) -> logits [B, K] = exp(t) <g(x, sigma), h(prompt_k)>`` with t the
    model's learned ``logit_scale`` (clamped at 100 as in training; 1 without one). Differentiable in x, for
    classifier guidance or ``diversity("strata", classifier=...)``; e.g. prompts "a photo of the digit k"."""
    guide = CLIPGuidance(model, list(prompts), tokenizer=tokenizer)
    logit_scale = getattr(model, "logit_scale", None)

    def classifier(x, sigma):
        t = 1.0 if logit_scale is None else logit_scale.detach().exp().clamp(max=100.0)
        return t * guide._image(x, as_sigma(sigma, x)) @ guide.text_embedding(x.device).T

    return classifier


__all__ = ["VARIANTS", "CLIPGuidance", "zero_shot_classifier"]

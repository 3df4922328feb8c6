"""Models that sample in stages: the decode step of latent diffusion and cascades (issue 19), run with the same
recipe as the first stage."""

from __future__ import annotations

import torch


def decode(D, x, spec, cond: dict, offset: int = 0) -> torch.Tensor:
    """Samples of a model with the Denoiser protocol's ``decode`` member (latent diffusion, cascades) as images;
    x itself otherwise. A stage that samples (a cascade's super-resolution model) runs with ``spec``'s sampler
    and guidance; its noise, and the conditioning augmentation's, come from per-sample generators seeded
    ``(derive_seed(spec.seed, 1 or 2), offset + k)``, so sample k stays independent of the batching."""
    from difflab.sampling.base import member
    from difflab.sampling.generate import generate
    from difflab.sampling.rng import derive_seed, make_generators, randn

    dec = member(D, "decode")
    if dec is None:
        return x
    n = x.shape[0]

    def sample(stage, shape, stage_cond):
        return generate(stage, n, shape, seed=derive_seed(spec.seed, 1), offset=offset, cond=stage_cond,
                        batch_size=spec.batch_for_groups(), device=spec.device, **spec.generate_kwargs(stage))

    def noise(shape):
        gens = make_generators(derive_seed(spec.seed, 2), n, offset, device="cuda" if x.is_cuda else "cpu")
        return randn(shape, generator=gens, device=x.device)

    return dec(x, cond=cond, sample=sample, noise=noise)


__all__ = ["decode"]

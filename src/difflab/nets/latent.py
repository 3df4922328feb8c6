"""Diffusion in a space other than the pixels, behind the one contract ``D(x, sigma, **cond) -> x0_hat``.

- :class:`LatentDiffusion`: a denoiser over codes ``z = codec.encode(x)`` plus the codec's ``decode`` (the
  Denoiser protocol's optional ``decode`` member, applied by :func:`difflab.recipe.sample` after sampling).
  Codecs: :class:`VAECodec` (latent diffusion, Rombach et al. 2022: a KL autoencoder, latents multiplied by a
  scale factor ``1 / std(z)`` so that they have unit variance, Sec. 4.3.2 / App. G), :class:`PoolCodec` (the
  low-resolution base of a cascade: 2x2 average pooling, decoded by bilinear upsampling), :class:`SRCodec` (a
  cascade: the low-resolution sample is decoded by sampling a super-resolution model).
- :class:`SuperResolution`: the second stage of a cascade (Ho et al. 2022, "Cascaded Diffusion Models", Sec. 3):
  a denoiser of the full-resolution image conditioned, by channel concatenation, on the bilinearly upsampled
  low-resolution image with Gaussian conditioning augmentation: in training the low-resolution image is noised with
  a level ``s ~ U(0, aug_max)`` per sample (Sec. 4.1 "Gaussian augmentation"), and ``s`` is given to the network
  as a constant extra channel; at sampling ``s`` is fixed (``aug_sigma``, recorded in the model's config).

Training batches pass through ``prepare_batch(x, generator) -> (x0, cond)``
(:class:`difflab.diffusion.losses.Objective`): the target of the diffusion loss and extra conditioning.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from difflab.diffusion.losses import draw_rows, randn_rows


def downsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    return F.avg_pool2d(x, factor) if factor > 1 else x


def upsample(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class PoolCodec(nn.Module):
    """Images -> ``factor``x average-pooled images; decoded by bilinear upsampling to ``size``."""

    def __init__(self, factor: int = 2, size: int = 28):
        super().__init__()
        self.factor, self.size = int(factor), int(size)

    def encode(self, x):
        return downsample(x, self.factor)

    def decode(self, z, **_):
        return upsample(z, (self.size, self.size)).clamp(-1, 1)


class VAECodec(nn.Module):
    """A KL autoencoder (difflab.nets.vae.AutoEncoder); codes are the posterior mean times ``scale``. The scale is
    a buffer (saved with the weights): 0 until the first training batch sets it to 1 / std of that batch's codes,
    as the LDM code's ``scale_by_std`` does (Rombach et al. 2022, Sec. 4.3.2)."""

    def __init__(self, ae: nn.Module):
        super().__init__()
        self.ae = ae.requires_grad_(False)
        self.register_buffer("scale", torch.zeros(()))

    @torch.no_grad()
    def encode(self, x):
        mean, _ = self.ae.encode(x)
        if float(self.scale) == 0.0:
            self.scale.fill_(1.0 / float(mean.float().std()))
        return mean * self.scale

    def decode(self, z, **_):
        # Differentiable in z (a feature kernel of particle guidance on decoded images); the weights are frozen.
        if float(self.scale) == 0.0:
            raise ValueError("this latent model's scale factor is unset (it was never trained)")
        return self.ae.decode(z / self.scale).clamp(-1, 1)


def sr_condition(low_up: torch.Tensor, aug: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The super-resolution network's extra input: the upsampled low-resolution image noised at level ``aug``
    (per sample) and a constant channel holding ``aug``."""
    a = aug.to(low_up.dtype).reshape(-1, 1, 1, 1)
    return torch.cat([low_up + a * noise, a.expand_as(low_up)], dim=1)


class _Wrapper(nn.Module):
    """Forwards the contract and the members samplers/losses read to ``self.denoiser`` (a Precond)."""

    def forward(self, x, sigma, **cond):
        return self.denoiser(x, sigma, **cond)

    @property
    def num_classes(self):
        return getattr(self.denoiser, "num_classes", None)

    @property
    def sigma_data(self):
        return self.denoiser.sigma_data


class SuperResolution(_Wrapper):
    """``D(x, sigma, cond_frames=sr_condition(...), class_labels=...)``: x is the full-resolution image."""

    def __init__(self, denoiser: nn.Module, factor: int = 2, aug_max: float = 0.0):
        super().__init__()
        self.denoiser, self.factor, self.aug_max = denoiser, int(factor), float(aug_max)

    def prepare_batch(self, x, generator=None):
        low = upsample(downsample(x, self.factor), x.shape[-2:])
        aug = self.aug_max * draw_rows(lambda k, g: torch.rand(k, generator=g, device=x.device), generator,
                                       x.shape[0])
        noise = randn_rows(low.shape, generator, device=x.device, dtype=x.dtype)
        return x, {"cond_frames": sr_condition(low, aug, noise)}


class SRCodec(nn.Module):
    """Decodes a low-resolution sample by sampling :class:`SuperResolution` conditioned on it (noise level
    ``aug_sigma``); ``sample(D, shape, cond)`` and ``noise(shape)`` come from the caller (the sampler settings and
    per-sample random streams of :func:`difflab.recipe.sample`)."""

    def __init__(self, sr: SuperResolution, aug_sigma: float = 0.0, size: int = 28):
        super().__init__()
        self.sr, self.aug_sigma, self.size = sr, float(aug_sigma), int(size)

    def encode(self, x):
        return downsample(x, self.sr.factor)

    def decode(self, z, cond=None, sample=None, noise=None):
        if sample is None or noise is None:
            raise ValueError("a cascade decodes by sampling: pass sample= and noise= (difflab.recipe.sample does)")
        low = upsample(z.clamp(-1, 1), (self.size, self.size))
        aug = torch.full((z.shape[0],), self.aug_sigma, device=z.device)
        cf = sr_condition(low, aug, noise(low.shape).to(low))
        keep = {k: v for k, v in (cond or {}).items() if k == "class_labels"}
        return sample(self.sr, (low.shape[1], self.size, self.size), {**keep, "cond_frames": cf}).clamp(-1, 1)


class LatentDiffusion(_Wrapper):
    """A denoiser over ``codec.encode(x)`` with the protocol member ``decode(z, cond=, sample=, noise=)``."""

    def __init__(self, denoiser: nn.Module, codec: nn.Module, latent_shape: tuple):
        super().__init__()
        self.denoiser, self.codec, self.latent_shape = denoiser, codec, tuple(latent_shape)

    def prepare_batch(self, x, generator=None):
        with torch.no_grad():
            return self.codec.encode(x).detach(), {}

    def decode(self, z, cond=None, sample=None, noise=None):
        return self.codec.decode(z, cond=cond, sample=sample, noise=noise)

    def train(self, mode: bool = True):
        super().train(mode)
        if isinstance(self.codec, VAECodec):  # the first stage is frozen (and its GroupNorms have no state)
            self.codec.eval()
        return self

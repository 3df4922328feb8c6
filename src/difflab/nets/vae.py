"""A small KL-regularised convolutional autoencoder (the first stage of latent diffusion, Rombach et al. 2022,
Sec. 3 and App. G: an encoder to a downsampled latent with a diagonal Gaussian posterior, a KL penalty towards
N(0, I) of small weight, a convolutional decoder).

MNIST 28x28x1 -> 4x7x7 by default (``latent_channels=4``, two stride-2 stages, f = 4): 196 numbers per image, 4x
fewer than the pixels, the f = 4 the paper finds the best trade-off between compression and fidelity (Sec. 4.1,
LDM-4). A 7x7 grid keeps the stroke layout spatial, so a U-Net over the latent still sees local structure; with
f = 8 (4x4 after padding) reconstructions of thin strokes blur.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, ch), ch)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.n1, self.c1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.n2, self.c2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x):
        h = self.c1(F.silu(self.n1(x)))
        return self.skip(x) + self.c2(F.silu(self.n2(h)))


class AutoEncoder(nn.Module):
    """Encoder ``x [B, C, H, W] -> (mean, logvar) [B, latent_channels, H/f, W/f]`` (f = 2^(len(channel_mult)-1))
    and decoder back to images in about [-1, 1]."""

    def __init__(self, in_channels: int = 1, latent_channels: int = 4, model_channels: int = 32,
                 channel_mult: tuple = (1, 2, 2), img_resolution: int = 28):
        super().__init__()
        for k, v in (("in_channels", in_channels), ("latent_channels", latent_channels),
                     ("model_channels", model_channels)):
            if int(v) < 1:
                raise ValueError(f"{k} must be >= 1, got {v}")
        self.in_channels, self.latent_channels = int(in_channels), int(latent_channels)
        self.factor = 2 ** (len(channel_mult) - 1)
        self.img_resolution = int(img_resolution)
        chs = [model_channels * m for m in channel_mult]
        enc = [nn.Conv2d(in_channels, chs[0], 3, padding=1)]
        for i, ch in enumerate(chs):
            enc.append(ResBlock(chs[i - 1] if i else chs[0], ch))
            if i < len(chs) - 1:
                enc.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        enc += [_norm(chs[-1]), nn.SiLU(), nn.Conv2d(chs[-1], 2 * latent_channels, 1)]
        self.encoder = nn.Sequential(*enc)
        self.dec_in = nn.Conv2d(latent_channels, chs[-1], 3, padding=1)
        self.dec_blocks = nn.ModuleList()
        rev = chs[::-1]
        for i, ch in enumerate(rev):
            self.dec_blocks.append(ResBlock(rev[i - 1] if i else rev[0], ch))
        self.dec_convs = nn.ModuleList([nn.Conv2d(ch, ch, 3, padding=1) for ch in rev[:-1]])
        self.dec_out = nn.Sequential(_norm(rev[-1]), nn.SiLU(), nn.Conv2d(rev[-1], in_channels, 3, padding=1))

    @property
    def latent_shape(self) -> tuple:
        s = -(-self.img_resolution // self.factor)
        return (self.latent_channels, s, s)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior q(z|x) = N(mean, exp(logvar)) (logvar clamped to [-30, 20] as in the LDM code)."""
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = self.dec_in(z)
        sizes = [self.img_resolution]
        for _ in range(len(self.dec_convs)):
            sizes.append((sizes[-1] + 1) // 2)
        sizes = sizes[::-1]  # e.g. 7, 14, 28
        for i, block in enumerate(self.dec_blocks):
            h = block(h)
            if i < len(self.dec_convs):
                h = self.dec_convs[i](F.interpolate(h, size=(sizes[i + 1],) * 2, mode="nearest"))
        return self.dec_out(h)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None):
        """``(reconstruction, mean, logvar)``; z = mean + exp(logvar / 2) * noise (noise None: z = mean)."""
        mean, logvar = self.encode(x)
        z = mean if noise is None else mean + (0.5 * logvar).exp() * noise
        return self.decode(z), mean, logvar


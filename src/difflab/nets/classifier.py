"""A small ResNet digit classifier (for FID/IS features, mode counting and classifier guidance).

``DigitClassifier(x)`` takes images in [-1, 1] (the normalisation generated samples have) and returns
logits; ``features(x)`` returns the penultimate embedding. With ``noise_conditional=True`` it is
``p(c | x, sigma)`` for classifier guidance (Dhariwal & Nichol 2021): the noise level enters through a
FiLM embedding of ln(sigma)/4 and the input is scaled by 1/sqrt(sigma^2 + sigma_data^2) like EDM's c_in.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from difflab.nets.unet import PositionalEmbedding
from difflab.utils import append_dims, as_sigma


class _Block(nn.Module):
    def __init__(self, cin, cout, stride, emb_dim):
        super().__init__()
        self.c0 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.n0 = nn.BatchNorm2d(cout)
        self.c1 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.n1 = nn.BatchNorm2d(cout)
        self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())
        self.film = nn.Linear(emb_dim, 2 * cout) if emb_dim else None

    def forward(self, x, emb=None):
        h = F.relu(self.n0(self.c0(x)))
        if self.film is not None and emb is not None:
            scale, shift = self.film(emb)[:, :, None, None].chunk(2, 1)
            h = h * (1 + scale) + shift
        return F.relu(self.n1(self.c1(h)) + self.skip(x))


class DigitClassifier(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 32,
                 noise_conditional: bool = False, sigma_data: float = 0.5):
        super().__init__()
        self.num_classes, self.noise_conditional, self.sigma_data = num_classes, noise_conditional, sigma_data
        emb_dim = 4 * width if noise_conditional else 0
        if noise_conditional:
            self.map_noise = nn.Sequential(PositionalEmbedding(width), nn.Linear(width, emb_dim), nn.SiLU())
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU())
        w = [width, width * 2, width * 4]
        self.blocks = nn.ModuleList([_Block(w[0], w[0], 1, emb_dim), _Block(w[0], w[1], 2, emb_dim),
                                     _Block(w[1], w[1], 1, emb_dim), _Block(w[1], w[2], 2, emb_dim),
                                     _Block(w[2], w[2], 1, emb_dim)])
        self.head = nn.Linear(w[2], num_classes)
        self.feature_dim = w[2]

    def features(self, x, sigma=None):
        emb = None
        if self.noise_conditional:
            sigma = as_sigma(0.0 if sigma is None else sigma, x)
            x = x / append_dims((sigma**2 + self.sigma_data**2).sqrt() / self.sigma_data, x.ndim)
            emb = self.map_noise(sigma.clamp(min=1e-4).log() / 4)
        h = self.stem(x)
        for b in self.blocks:
            h = b(h, emb)
        return h.mean(dim=(2, 3))

    def forward(self, x, sigma=None):
        return self.head(self.features(x, sigma))

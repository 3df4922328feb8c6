"""U-Net noise-prediction network F(x_in, c_noise, class_labels=None, cond_frames=None).

A compact DDPM++-style U-Net (Ho et al. 2020; Song et al. 2021; Karras et al. 2022 appendix): sinusoidal or
random-Fourier noise embedding, residual blocks with the embedding added after the first convolution,
self-attention at chosen resolutions, a class embedding whose last index is the null label (classifier-free
guidance), and extra input channels for conditioning frames (concatenated, not scaled by c_in).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class UNetConfig:
    in_channels: int = 1
    out_channels: int = 1
    cond_channels: int = 0          # extra input channels (conditioning frames)
    num_classes: int = 0            # 0 = unconditional; labels in [0, num_classes), num_classes = null label
    model_channels: int = 32
    channel_mult: tuple = (1, 2, 2)
    num_blocks: int = 2
    attn_resolutions: tuple = ()    # feature-map sizes with self-attention, e.g. (7,) or (8,)
    dropout: float = 0.0
    embedding: str = "positional"   # 'positional' (sinusoidal) or 'fourier' (random Fourier features)
    img_resolution: int = 28

    def __post_init__(self):
        self.channel_mult = tuple(self.channel_mult)
        self.attn_resolutions = tuple(self.attn_resolutions)
        if self.embedding not in ("positional", "fourier"):
            raise ValueError(f"embedding must be 'positional' or 'fourier', got {self.embedding!r}")
        for k in ("in_channels", "out_channels", "model_channels", "num_blocks"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1, got {getattr(self, k)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


PRESETS = {
    # < 100k parameters: for tests and smoke runs.
    "tiny": dict(model_channels=16, channel_mult=(1, 1), num_blocks=1, attn_resolutions=()),
    # ~0.5M: the CPU demo network (recognisable class-conditional digits after ~10 minutes of training).
    "mini": dict(model_channels=20, channel_mult=(1, 2, 2), num_blocks=1, attn_resolutions=(7, 8)),
    # ~1.6M: trains on a CPU.
    "small": dict(model_channels=32, channel_mult=(1, 2, 2), num_blocks=2, attn_resolutions=(7, 8)),
    # ~6M: the scale of the ETH thesis' MNIST models.
    "base": dict(model_channels=64, channel_mult=(1, 2, 2), num_blocks=2, attn_resolutions=(7, 8)),
}


def check_class_labels(labels: torch.Tensor, num_classes: int, sync: bool = False) -> torch.Tensor:
    """Labels must lie in [0, num_classes] (num_classes is the null label). On the CPU, or with ``sync``, a
    ValueError; on an accelerator the check is queued on the device (``torch._assert_async``) instead of read
    back, which would synchronise the stream on every network call. generate() checks with ``sync`` once. Under
    torch.compile the check is queued too (a read-back would break the graph)."""
    msg = f"class_labels must be in [0, {num_classes}] ({num_classes} = null label)"
    if labels.numel() == 0:
        return labels
    if sync or (labels.device.type == "cpu" and not torch.compiler.is_compiling()):
        if int(labels.min()) < 0 or int(labels.max()) > num_classes:
            raise ValueError(msg)
    else:
        torch._assert_async(((labels >= 0) & (labels <= num_classes)).all(), msg)
    return labels


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=min(32, max(1, ch // 4)), num_channels=ch, eps=1e-6)


class PositionalEmbedding(nn.Module):
    """Sinusoidal embedding of a scalar (Vaswani et al. 2017; DDPM's timestep embedding)."""

    def __init__(self, dim: int, max_positions: int = 10000):
        super().__init__()
        self.dim, self.max_positions = dim, max_positions

    def forward(self, x):
        freqs = torch.arange(self.dim // 2, dtype=torch.float32, device=x.device) / (self.dim // 2)
        freqs = (1 / self.max_positions) ** freqs
        x = x.float().outer(freqs)
        return torch.cat([x.cos(), x.sin()], dim=1)


class FourierEmbedding(nn.Module):
    """Random Fourier features (Tancik et al. 2020; NCSN++ in Song et al. 2021)."""

    def __init__(self, dim: int, scale: float = 16.0):
        super().__init__()
        self.register_buffer("freqs", torch.randn(dim // 2, generator=torch.Generator().manual_seed(0)) * scale)

    def forward(self, x):
        x = x.float().outer(2 * math.pi * self.freqs)
        return torch.cat([x.cos(), x.sin()], dim=1)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float, attention: bool):
        super().__init__()
        self.norm0, self.conv0 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.affine = nn.Linear(emb_dim, cout * 2)
        self.norm1, self.conv1 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv1.weight)
        nn.init.zeros_(self.conv1.bias)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        self.attn = SelfAttention(cout) if attention else None

    def forward(self, x, emb):
        h = self.conv0(F.silu(self.norm0(x)))
        scale, shift = self.affine(emb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.norm1(h) * (1 + scale) + shift)
        h = self.conv1(self.dropout(h))
        x = (h + self.skip(x)) / math.sqrt(2)
        return self.attn(x) if self.attn is not None else x


class SelfAttention(nn.Module):
    def __init__(self, ch: int, heads: int = 1):
        super().__init__()
        self.heads = heads
        self.norm = _norm(ch)
        self.qkv = nn.Conv2d(ch, ch * 3, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x):
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W).unbind(1)
        h = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        h = h.transpose(-1, -2).reshape(B, C, H, W)
        return (x + self.proj(h)) / math.sqrt(2)


class UNet(nn.Module):
    """F(x_in, c_noise, class_labels=None, cond_frames=None) -> output like x_in (out_channels)."""

    def __init__(self, config: UNetConfig | None = None, **kwargs):
        super().__init__()
        cfg = config or UNetConfig(**kwargs)
        self.config = cfg
        self.num_classes = cfg.num_classes
        ch = cfg.model_channels
        emb_dim = ch * 4
        self.map_noise = PositionalEmbedding(ch) if cfg.embedding == "positional" else FourierEmbedding(ch)
        self.map_layer0, self.map_layer1 = nn.Linear(ch, emb_dim), nn.Linear(emb_dim, emb_dim)
        self.map_label = nn.Embedding(cfg.num_classes + 1, emb_dim) if cfg.num_classes > 0 else None
        self.conv_in = nn.Conv2d(cfg.in_channels + cfg.cond_channels, ch, 3, padding=1)
        self.down = nn.ModuleList()
        chans, cur, res = [ch], ch, cfg.img_resolution
        for level, mult in enumerate(cfg.channel_mult):
            if level > 0:
                self.down.append(nn.Conv2d(cur, cur, 3, stride=2, padding=1))
                res = (res + 1) // 2
                chans.append(cur)
            for _ in range(cfg.num_blocks):
                self.down.append(ResBlock(cur, ch * mult, emb_dim, cfg.dropout, res in cfg.attn_resolutions))
                cur = ch * mult
                chans.append(cur)
        self.mid = nn.ModuleList([ResBlock(cur, cur, emb_dim, cfg.dropout, True),
                                  ResBlock(cur, cur, emb_dim, cfg.dropout, False)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for _ in range(cfg.num_blocks + 1):
                self.up.append(ResBlock(cur + chans.pop(), ch * mult, emb_dim, cfg.dropout,
                                        res in cfg.attn_resolutions))
                cur = ch * mult
            if level > 0:
                self.up.append(Upsample(cur))
                res = res * 2
        self.norm_out, self.conv_out = _norm(cur), nn.Conv2d(cur, cfg.out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x, c_noise, class_labels=None, cond_frames=None, extra_emb=None):
        """``extra_emb`` [B, 4 * model_channels]: added to the noise (+ class) embedding, e.g. a projected text
        embedding (difflab.nets.text.TextUNet)."""
        cfg = self.config
        if x.ndim != 4 or x.shape[1] != cfg.in_channels:
            raise ValueError(f"expected images [B, {cfg.in_channels}, H, W], got shape {tuple(x.shape)}")
        emb = self.map_noise(c_noise.reshape(-1).expand(x.shape[0]) if c_noise.numel() == 1 else c_noise)
        emb = self.map_layer1(F.silu(self.map_layer0(emb.to(self.map_layer0.weight.dtype))))
        if self.map_label is not None:
            if class_labels is None:
                class_labels = torch.full((x.shape[0],), cfg.num_classes, dtype=torch.long, device=x.device)
            class_labels = check_class_labels(class_labels.long(), cfg.num_classes)
            emb = emb + self.map_label(class_labels)
        if extra_emb is not None:
            emb = emb + extra_emb.to(emb.dtype)
        emb = F.silu(emb).to(x.dtype)
        if cfg.cond_channels:
            if cond_frames is None or cond_frames.shape[1] != cfg.cond_channels:
                got = None if cond_frames is None else tuple(cond_frames.shape)
                raise ValueError(f"this network needs cond_frames with {cfg.cond_channels} channels, got {got}")
            x = torch.cat([x, cond_frames.to(x.dtype)], dim=1)
        h = self.conv_in(x)
        skips = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
            skips.append(h)
        for layer in self.mid:
            h = layer(h, emb)
        for layer in self.up:
            if isinstance(layer, ResBlock):
                h = layer(torch.cat([h, skips.pop()], dim=1), emb)
            else:
                h = layer(h, size=skips[-1].shape[-2:])
        return self.conv_out(F.silu(self.norm_out(h)))


class Upsample(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x, size):
        return self.conv(F.interpolate(x, size=tuple(size), mode="nearest"))


class NTNUUNet(nn.Module):
    """The NTNU MNIST paper's network: a 2-level U-Net, two 3x3 conv + ReLU per block, 2x2 max-pool down,
    transposed conv up, skip concatenation, time and label embeddings added in every block."""

    def __init__(self, in_channels=1, out_channels=1, num_classes=10, model_channels=64, cond_channels=0,
                 T=1000, **_):
        super().__init__()
        self.num_classes = num_classes
        c1, c2, c3 = model_channels, model_channels * 2, model_channels * 4
        self.emb = PositionalEmbedding(c3)
        self.label = nn.Embedding(num_classes + 1, c3) if num_classes > 0 else None
        self.cond_channels = cond_channels

        def block(cin, cout):
            return nn.ModuleDict({"c0": nn.Conv2d(cin, cout, 3, padding=1), "c1": nn.Conv2d(cout, cout, 3, padding=1),
                                  "e": nn.Linear(c3, cout)})

        self.b_down1, self.b_down2 = block(in_channels + cond_channels, c1), block(c1, c2)
        self.b_mid = block(c2, c3)
        self.up2, self.b_up2 = nn.ConvTranspose2d(c3, c2, 2, stride=2), block(c2 * 2, c2)
        self.up1, self.b_up1 = nn.ConvTranspose2d(c2, c1, 2, stride=2), block(c1 * 2, c1)
        self.out = nn.Conv2d(c1, out_channels, 1)

    @staticmethod
    def _run(b, x, emb):
        x = F.relu(b["c0"](x)) + b["e"](emb)[:, :, None, None]
        return F.relu(b["c1"](x))

    def forward(self, x, c_noise, class_labels=None, cond_frames=None):
        emb = self.emb(c_noise.reshape(-1).expand(x.shape[0]) if c_noise.numel() == 1 else c_noise)
        emb = emb.to(self.out.weight.dtype)
        if self.label is not None:
            if class_labels is None:
                class_labels = torch.full((x.shape[0],), self.num_classes, dtype=torch.long, device=x.device)
            emb = emb + self.label(check_class_labels(class_labels.long(), self.num_classes))
        if self.cond_channels:
            x = torch.cat([x, cond_frames.to(x.dtype)], dim=1)
        h1 = self._run(self.b_down1, x, emb)
        h2 = self._run(self.b_down2, F.max_pool2d(h1, 2), emb)
        h3 = self._run(self.b_mid, F.max_pool2d(h2, 2), emb)
        u2 = self._run(self.b_up2, torch.cat([self.up2(h3), h2], 1), emb)
        u1 = self._run(self.b_up1, torch.cat([self.up1(u2), h1], 1), emb)
        return self.out(u1)


def build_unet(preset: str = "small", **overrides) -> nn.Module:
    """Build a network by preset name ('tiny', 'small', 'base', 'ntnu') with field overrides."""
    if preset == "ntnu":
        return NTNUUNet(**overrides)
    if preset not in PRESETS:
        raise ValueError(f"unknown network preset {preset!r}; choose one of {sorted(PRESETS) + ['ntnu']}")
    fields = {**PRESETS[preset], **overrides}
    known = set(UNetConfig.__dataclass_fields__)
    unknown = set(fields) - known
    if unknown:
        raise ValueError(f"unknown network option(s) {sorted(unknown)}; allowed: {sorted(known)}")
    return UNet(UNetConfig(**fields))


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())



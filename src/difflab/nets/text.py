"""Text for text-guided generation: a word-level tokenizer that never fails, a small text encoder, a noise-aware
contrastive image-text model (CLIP, Radford et al. 2021; noised as GLIDE's CLIP, Nichol et al. 2022, Sec. 2.4)
and a U-Net conditioned on a pooled text embedding.

- :func:`tokenize`: lower-cased words and single digits, looked up in the fixed vocabulary :data:`VOCAB`; words
  outside it are dropped (ignored, never an error); an empty prompt is a ValueError. Multi-digit numerals are
  split into digits. Token 0 pads; a row of padding only is "no text" (the null condition of classifier-free
  guidance on text).
- :class:`TextEncoder`: token + position embeddings, a pre-norm Transformer encoder, masked mean pooling and a
  projection; "no text" maps to a learned null vector.
- :class:`ContrastiveModel`: ``encode_image(x, sigma)`` (the noise-conditional ResNet of
  :class:`difflab.nets.classifier.DigitClassifier`, its head as projection) and ``encode_text(tokens)``, both
  L2-normalised; ``forward(x, sigma, tokens)`` gives the [B, B] logits of InfoNCE (van den Oord et al. 2018).
- :class:`TextUNet`: a U-Net whose noise embedding gets the projected text embedding added (the same FiLM path as
  the class embedding: every residual block's scale/shift reads it); the projection starts at zero, so a U-Net
  initialised from an unconditional model starts as that model.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn

from difflab.nets.classifier import DigitClassifier

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_WORDS = """
a an the of digit number numeral figure handwritten written drawn image picture photo drawing sketch with
strokes stroke lines line pen that is and in to on its it showing shown at positioned placed sitting rather very
quite slightly somewhat fairly not which has
thick bold heavy fat wide chunky thin light skinny fine narrow slim delicate
slanted slanting italic leaning tilted sloping left right upright straight vertical
small tiny little large big huge tall short
top bottom upper lower centered centred center centre middle
dark bright pale dim faint
t shirt tshirt top tee trouser trousers pants jeans pullover sweater jumper dress coat jacket sandal sandals
sneaker sneakers trainer shoe shoes bag handbag purse ankle boot boots
""".split()
PAD, UNK = "<pad>", "<unk>"
VOCAB = tuple(dict.fromkeys([PAD, UNK, *DIGIT_WORDS, *(str(d) for d in range(10)), *_WORDS]))
WORD_ID = {w: i for i, w in enumerate(VOCAB)}
MAX_LEN = 16
_SPLIT = re.compile(r"[a-z]+|[0-9]")


def words(text: str) -> list[str]:
    """Lower-cased words and single digits of ``text`` (punctuation dropped; '17' -> '1', '7')."""
    return _SPLIT.findall(str(text).lower())


def tokenize(texts, max_len: int = MAX_LEN) -> torch.Tensor:
    """Token ids [B, max_len] (int64, 0-padded) of one text or a list. Words outside :data:`VOCAB` are ignored;
    an empty (or whitespace) prompt is a ValueError; a text longer than ``max_len`` known words is cut."""
    if isinstance(texts, str):
        texts = [texts]
    out = torch.zeros(len(texts), max_len, dtype=torch.long)
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            raise ValueError(f"a prompt must be a non-empty text, got {t!r}")
        ids = [WORD_ID[w] for w in words(t) if w in WORD_ID][:max_len]
        out[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


class TextEncoder(nn.Module):
    """Tokens [B, L] -> a pooled embedding [B, out_dim] (a small Transformer encoder, Vaswani et al. 2017)."""

    def __init__(self, dim: int = 64, layers: int = 1, heads: int = 4, max_len: int = MAX_LEN,
                 out_dim: int | None = None, vocab_size: int = len(VOCAB)):
        super().__init__()
        self.max_len = max_len
        self.tok = nn.Embedding(vocab_size, dim)
        self.pos = nn.Parameter(torch.randn(max_len, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.null = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, out_dim or dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens.long()[:, : self.max_len]
        mask = tokens != 0
        empty = ~mask.any(1)
        attend = mask.clone()
        attend[:, 0] |= empty  # an all-padding row would make attention NaN; its output is replaced below
        h = self.tok(tokens) + self.pos[: tokens.shape[1]]
        h = self.norm(self.layers(h, src_key_padding_mask=~attend))
        m = mask.to(h.dtype)[..., None]
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1)
        pooled = torch.where(empty[:, None], self.null.to(h.dtype).expand_as(pooled), pooled)
        return self.proj(pooled)


class ContrastiveModel(nn.Module):
    """A noise-aware CLIP: ``encode_image(x, sigma)`` and ``encode_text(tokens or texts)``, unit vectors of
    ``embed_dim``; ``forward(x, sigma, tokens)`` the logits ``exp(t) <g(x, sigma), h(c)>`` [B_img, B_text]."""

    def __init__(self, embed_dim: int = 64, width: int = 24, text_dim: int = 64, text_layers: int = 1,
                 sigma_data: float = 0.5, max_len: int = MAX_LEN):
        super().__init__()
        self.image = DigitClassifier(num_classes=embed_dim, width=width, noise_conditional=True,
                                     sigma_data=sigma_data)
        self.text = TextEncoder(text_dim, text_layers, max_len=max_len, out_dim=embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))

    def tokenize(self, texts) -> torch.Tensor:
        return tokenize(texts, self.text.max_len)

    def encode_image(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        return F.normalize(self.image(x, sigma).float(), dim=-1)

    def encode_text(self, tokens) -> torch.Tensor:
        if isinstance(tokens, (str, list, tuple)):
            tokens = self.tokenize(tokens).to(self.logit_scale.device)
        return F.normalize(self.text(tokens).float(), dim=-1)

    def forward(self, x, sigma, tokens) -> torch.Tensor:
        scale = self.logit_scale.exp().clamp(max=100.0)
        return scale * self.encode_image(x, sigma) @ self.encode_text(tokens).T


class TextUNet(nn.Module):
    """``F(x, c_noise, text_tokens=None, ...)``: the U-Net with a text embedding added to its noise embedding.
    Missing tokens (or rows of padding) are "no text"."""

    def __init__(self, unet: nn.Module, dim: int = 64, layers: int = 1, max_len: int = MAX_LEN):
        super().__init__()
        self.unet = unet
        self.num_classes = getattr(unet, "num_classes", 0)
        self.text = TextEncoder(dim, layers, max_len=max_len, out_dim=unet.map_layer1.out_features)
        nn.init.zeros_(self.text.proj.weight)
        nn.init.zeros_(self.text.proj.bias)

    def tokenize(self, texts) -> torch.Tensor:
        return tokenize(texts, self.text.max_len)

    def forward(self, x, c_noise, class_labels=None, cond_frames=None, text_tokens=None):
        if text_tokens is None:
            text_tokens = torch.zeros(x.shape[0], 1, dtype=torch.long, device=x.device)
        if text_tokens.shape[0] == 1 and x.shape[0] > 1:
            text_tokens = text_tokens.expand(x.shape[0], -1)
        extra = self.text(text_tokens.to(x.device))
        return self.unet(x, c_noise, class_labels=class_labels, cond_frames=cond_frames, extra_emb=extra)


__all__ = ["DIGIT_WORDS", "MAX_LEN", "VOCAB", "ContrastiveModel", "TextEncoder", "TextUNet", "tokenize", "words"]

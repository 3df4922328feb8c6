"""Text-guided generation (issue 20): tokenizer, prompt parsing, measured attributes and captions, the contrastive
objective, the text-conditional U-Net, CLIP guidance, and the SamplingSpec / CLI wiring. Tiny nets, no data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from difflab.config import from_dict, load_config
from difflab.data.captions import CaptionedImages, attribute_words, caption, measure, parse_digit
from difflab.diffusion.losses import objective_from_config, pick_captions
from difflab.guidance.clip import CLIPGuidance
from difflab.models import build_model
from difflab.nets.text import VOCAB, WORD_ID, ContrastiveModel, TextEncoder, tokenize, words
from difflab.recipe import SamplingSpec, sample

# -- tokenizer and prompts -----------------------------------------------------------------------------------

def test_tokenizer_ignores_unknown_words_and_splits_numerals():
    a = tokenize("a thick seven")
    b = tokenize("a supercalifragilistic THICK, seven!!")
    assert torch.equal(a, b)
    assert a[0, :3].tolist() == [WORD_ID["a"], WORD_ID["thick"], WORD_ID["seven"]] and a[0, 3:].eq(0).all()
    assert words("17 apples") == ["1", "7", "apples"]
    assert tokenize("xyzzy plugh").eq(0).all()  # only unknown words: no text, never an error
    assert tokenize(["one"] * 3).shape == (3, 16)
    assert tokenize("seven " * 40).ne(0).sum() == 16  # cut at max_len


@pytest.mark.parametrize("bad", ["", "   ", "\n"])
def test_empty_prompt_is_an_error(bad):
    with pytest.raises(ValueError, match="non-empty"):
        tokenize(bad)
    with pytest.raises(ValueError, match="non-empty"):
        SamplingSpec(prompt=bad)
    with pytest.raises(ValueError, match="non-empty"):
        SamplingSpec(clip_guidance=bad)


@pytest.mark.parametrize("text,digit", [("a thick slanted seven", 7), ("the number 3", 3), ("7", 7),
                                        ("draw me a Zero please", 0), ("an image of a bold 8, big", 8),
                                        ("NINE!", 9), ("a thick digit", None), ("qwerty", None)])
def test_parse_digit_any_phrasing(text, digit):
    assert parse_digit(text) == digit


# -- attributes and captions ---------------------------------------------------------------------------------

def _stroke(width=2, shear=0.0, size=28):
    x = -np.ones((size, size), dtype=np.float32)
    for r in range(4, 24):
        c = int(round(13 + shear * (13.5 - r)))
        x[r, c - width // 2: c - width // 2 + width] = 1.0
    return torch.from_numpy(x)[None]


def test_measure_thickness_and_slant():
    x = torch.stack([_stroke(1), _stroke(4), _stroke(2, 0.4), _stroke(2, -0.4)])
    a = measure(x)
    assert a["thickness"][1] > 2.5 * a["thickness"][0]
    assert abs(float(a["thickness"][0]) - 1.0) < 0.2
    assert a["slant"][2] > 0.3 and a["slant"][3] < -0.3 and abs(float(a["slant"][0])) < 0.05
    assert float(a["height"][0]) == 20.0


def test_captions_use_known_words_and_name_the_digit():
    x = torch.stack([_stroke(1), _stroke(4), _stroke(2, 0.4), _stroke(2, -0.4)] * 3)
    ds = CaptionedImages(x, torch.arange(12) % 10, k=6, seed=0)
    assert ds.captions.shape == (12, 6, 16) and ds.captions.ne(0).any(-1).all()
    rng = np.random.default_rng(0)
    for i in range(12):
        for _ in range(10):
            t = caption(i % 10, attribute_words(ds.attrs, i, ds.cuts), rng)
            assert parse_digit(t) == i % 10, t
            assert all(w in WORD_ID for w in words(t)), t
    assert "thick" in attribute_words(ds.attrs, 1, ds.cuts) and "thin" in attribute_words(ds.attrs, 0, ds.cuts)
    b = ds.get_batch([0, 3])
    assert b["x"].shape == (2, 1, 28, 28) and b["captions"].dtype == torch.long
    t = caption(9, [], np.random.default_rng(1), dataset="fashion-mnist")
    assert all(w in WORD_ID for w in words(t)) and parse_digit(t) is None


def test_pick_captions_is_seeded_and_drops():
    caps = torch.arange(1, 4 * 3 * 5 + 1).reshape(4, 3, 5)
    a = pick_captions(caps, 0.0, torch.Generator().manual_seed(0))
    b = pick_captions(caps, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == (4, 5)
    assert all(any(torch.equal(a[i], caps[i, k]) for k in range(3)) for i in range(4))
    d = pick_captions(caps.repeat(50, 1, 1), 0.5, torch.Generator().manual_seed(0))
    empty = d.eq(0).all(1).float().mean()
    assert 0.3 < empty < 0.7


# -- networks and objectives ---------------------------------------------------------------------------------

def test_text_encoder_null_and_padding():
    enc = TextEncoder(16, 1, out_dim=8)
    tok = tokenize(["a seven", "seven"])
    out = enc(torch.cat([tok, torch.zeros(1, 16, dtype=torch.long)]))
    assert torch.isfinite(out).all() and out.shape == (3, 8)
    assert torch.allclose(out[2], enc.proj(enc.norm.bias * 0 + enc.null), atol=1e-6)
    assert not torch.allclose(out[0], out[1])


def _clip_cfg(**kw):
    return from_dict({"data": {"name": "mnist-captions"}, "model": {"task": "clip", "net": {
        "embed_dim": 8, "width": 8, "text_dim": 16}}, "loss": {"name": "infonce"}, **kw})


def test_clip_config_builds_and_infonce_learns():
    cfg = _clip_cfg()
    torch.manual_seed(0)
    M = build_model(cfg)
    assert isinstance(M, ContrastiveModel)
    obj = objective_from_config(cfg)
    x = torch.stack([_stroke(1), _stroke(4)] * 4)
    caps = tokenize(["a thin one", "a thick one"] * 4)[:, None].repeat(1, 2, 1)
    batch = {"x": x, "class_labels": torch.ones(8, dtype=torch.long), "captions": caps}
    opt = torch.optim.Adam(M.parameters(), lr=3e-3)
    losses = []
    for step in range(25):
        loss = obj(M, batch, torch.Generator().manual_seed(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.1
    with pytest.raises(ValueError, match="infonce"):
        _clip_cfg(loss={"name": "ce"})


def _random_text_model():
    """A tiny text-conditional D with random weights everywhere (the U-Net's zero-initialised output layers too),
    the text projection kept at zero."""
    torch.manual_seed(0)
    D = build_model(_text_cfg()).eval()
    with torch.no_grad():
        for name, p in D.named_parameters():
            if not name.startswith("net.text.proj"):
                p.add_(torch.randn_like(p) * 0.1)
    D.difflab_config = _text_cfg()
    return D


def _text_cfg():
    return load_config("configs/text_mnist.yaml", ["model.preset=tiny", "model.net.text={dim: 16, layers: 1}"])


def test_text_unet_starts_as_the_unconditional_model_and_conditions():
    D = _random_text_model()
    x, s = torch.randn(2, 1, 28, 28), torch.tensor([1.0, 1.0])
    tok = tokenize(["a seven", "a thin one"])
    assert torch.allclose(D(x, s), D(x, s, text_tokens=tok))  # zero-initialised projection
    with torch.no_grad():
        D.net.text.proj.weight.normal_()
    assert not torch.allclose(D(x, s), D(x, s, text_tokens=tok))


def test_prompt_sampling_and_cfg_on_text():
    D = _random_text_model()
    with torch.no_grad():
        D.net.text.proj.weight.normal_(std=0.3)
    spec = SamplingSpec(steps=3, prompt="a thick seven", seed=0)
    x, labels = sample(D, spec, 2)
    assert x.shape == (2, 1, 28, 28) and labels is None
    y, _ = sample(D, spec.replace(prompt="a thin two"), 2)
    z, _ = sample(D, spec.replace(cfg_weight=2.0), 2)
    assert not torch.allclose(x, y) and not torch.allclose(x, z)
    u, _ = sample(D, spec.replace(cfg_weight=0.0), 2)  # ntnu w = 0: the conditional model alone
    assert (x - u).abs().max() < 1e-3 * x.abs().max()


# -- CLIP guidance -------------------------------------------------------------------------------------------

class LinearClip:
    """encode_image(x, sigma) = normalize(W x), encode_text = fixed unit vector: the gradient is known."""

    def __init__(self, W, h):
        self.W, self.h = W, h

    def encode_image(self, x, sigma):
        return self.W(x.flatten(1))

    def encode_text(self, tokens):
        return self.h.expand(tokens.shape[0], -1)

    def tokenize(self, texts):
        return tokenize(texts)


def test_clip_guidance_matches_the_analytic_gradient():
    torch.manual_seed(0)
    W = torch.nn.Linear(8, 3, bias=False)
    h = torch.nn.functional.normalize(torch.randn(1, 3), dim=-1)
    M = LinearClip(W, h)
    g = CLIPGuidance(M, "a seven", scale=2.0)
    x, sigma = torch.randn(4, 8), 0.7

    def D(x, s, **c):
        return 0.5 * x

    out = g.wrap(D)(x, sigma)
    xg = x.clone().requires_grad_(True)
    sim = (torch.nn.functional.normalize(W(xg), dim=-1) * h).sum()
    (grad,) = torch.autograd.grad(sim, xg)
    assert torch.allclose(out, 0.5 * x + 2.0 * sigma**2 * grad, atol=1e-5)
    # the denoised variant: the gradient flows through D (here D = x/2, so it halves)
    g2 = CLIPGuidance(M, "a seven", scale=2.0, variant="denoised")
    out2 = g2.wrap(D)(x, sigma)
    xg = x.clone().requires_grad_(True)
    sim = (torch.nn.functional.normalize(W(0.5 * xg), dim=-1) * h).sum()
    (grad2,) = torch.autograd.grad(sim, xg)
    assert torch.allclose(out2, 0.5 * x + 2.0 * sigma**2 * grad2, atol=1e-5)
    with pytest.raises(ValueError, match="encode_image"):
        CLIPGuidance(object(), "x")
    with pytest.raises(ValueError, match="variant"):
        CLIPGuidance(M, "x", variant="bogus")


def test_clip_guidance_raises_similarity_with_a_real_contrastive_model():
    torch.manual_seed(0)
    M = build_model(_clip_cfg()).eval()
    g = CLIPGuidance(M, "a thick seven", scale=50.0)
    x = torch.randn(3, 1, 28, 28) * 0.5
    before = g.similarity(x, torch.full((3,), 0.5))
    x2 = g.wrap(lambda x, s, **c: x)(x, 0.5)
    after = g.similarity(x2, torch.full((3,), 0.5))
    assert (after > before).all()
    assert len(VOCAB) == len(set(VOCAB))


def test_cli_flags_and_spec_round_trip(capsys):
    from difflab.cli import build_parser, main, spec_from_args

    args = build_parser().parse_args(["sample", "mnist-uncond", "--clip-guidance", "a seven", "--clip-scale", "3",
                                      "--clip-model", "runs/x"])
    spec = spec_from_args(args)
    assert (spec.clip_guidance, spec.clip_model, spec.clip_scale) == ("a seven", "runs/x", 3.0)
    assert SamplingSpec.from_dict(spec.to_dict()) == spec
    assert main(["sample", "mnist-uncond", "--prompt", " ", "--n", "1"]) == 2
    assert "--prompt" in capsys.readouterr().err
    assert main(["sample", "mnist-uncond", "--prompt", "a seven", "--n", "1", "--steps", "1"]) == 2
    assert "text-conditional" in capsys.readouterr().err


def test_inpainting_with_a_prompt_keeps_the_known_pixels():
    D = _random_text_model()
    with torch.no_grad():
        D.net.text.proj.weight.normal_(std=0.3)
    spec = SamplingSpec(steps=3, prompt="a thick seven", inpaint="synthetic:test:8", inpaint_mask="bottom-half")
    x, _ = sample(D, spec, 2)
    y, _ = sample(D, spec.replace(prompt="a thin one"), 2)
    known, _ = spec.inpaint_cond(D, 2)
    keep = known["inpaint_keep"]
    assert keep[:, :, :14].eq(1).all() and keep[:, :, 14:].eq(0).all()
    assert torch.allclose(x * keep, known["inpaint_x0"] * keep, atol=1e-5)  # the kept (top) half is exact
    assert not torch.allclose(x[:, :, 14:], y[:, :, 14:])  # the prompt changes the regenerated half


def test_shipped_text_models_sample_from_the_cli(tmp_path):
    from difflab.cli import main
    from difflab.models import SHIPPED_DIR, load

    if not (SHIPPED_DIR / "mnist-text" / "model.safetensors").exists():
        pytest.skip("mnist-text is not shipped in this checkout")
    M = load("mnist-clip")
    assert M.encode_text("a 7").shape == (1, M.text.proj.out_features)
    out = tmp_path / "s.png"
    assert main(["sample", "mnist-text", "--prompt", "a thick slanted seven", "--cfg-weight", "2", "--n", "2",
                 "--steps", "2", "--out", str(out)]) == 0 and out.exists()
    assert main(["sample", "mnist-uncond", "--clip-guidance", "a 3", "--n", "2", "--steps", "2",
                 "--out", str(out)]) == 0

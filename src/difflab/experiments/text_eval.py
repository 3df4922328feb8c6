"""The evaluation of issue 20 (``python -m difflab.experiments.text_eval eval``; ``... train-text CONFIG [key=value ...]`` trains
the text-conditional model with :func:`difflab.experiments.text.train_text`): writes ``results.json`` and one grid per
prompt under ``--out`` (default benchmarks/results/text). Metrics are defined in :mod:`difflab.experiments.text`.

Options: ``--text MODEL`` (default mnist-text), ``--clip MODEL`` (guides; default mnist-clip), ``--judge MODEL``
(the CLIP-score analogue; default mnist-clip-eval), ``--n K`` samples per prompt, ``--steps N`` Heun steps,
``--scales S,S`` CLIP guidance scales, ``--parts zero_shot,text,attributes,clip``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from difflab.data.captions import measure
from difflab.experiments.text import (
    PAIRS,
    PROMPTS,
    attribute_retrieval,
    clip_score,
    digit_agreement,
    train_text,
    zero_shot,
)
from difflab.models import load
from difflab.recipe import SamplingSpec, sample


def _grid(x, path):
    from difflab.viz.grids import save_grid

    return str(save_grid(x, path, nrow=min(len(x), 10)))


def fid(x) -> float:
    """Classifier-FID against MNIST test (biased upwards at these small n; compare rows, not papers)."""
    from difflab.eval.run import evaluate_images

    return float(evaluate_images(x, "fid_classifier")["fid_classifier"])


def part_zero_shot(models: dict, n: int = 2000) -> dict:
    from difflab.data import get_dataset

    x, y = get_dataset("mnist:test", limit=n).as_tensors()
    out = {}
    for name, M in models.items():
        row = {f"sigma={s}": zero_shot(M, x, y, sigma=s) for s in (0.0, 0.5, 1.0, 2.0)}
        row["thickness_retrieval"] = attribute_retrieval(M, x, y, "thickness", "a thick {}", "a thin {}")
        row["slant_retrieval"] = attribute_retrieval(M, x, y, "slant", "a {} slanted right", "a {} slanted left")
        out[name] = row
    return out


def part_text(D, judge, out: Path, n: int, steps: int, weights=(0.0, 3.0)) -> dict:
    rows = {}
    for w in weights:
        xs, ps = [], []
        for i, p in enumerate(PROMPTS):
            spec = SamplingSpec(steps=steps, prompt=p, cfg_weight=w if w else None, seed=i, batch_size=n)
            x, _ = sample(D, spec, n)
            xs.append(x)
            ps += [p] * n
            if w == weights[-1]:
                _grid(x, out / f"text_w{w:g}_{p.replace(' ', '_')}.png")
        x = torch.cat(xs)
        rows[f"cfg_w={w:g}"] = {"digit_agreement": digit_agreement(x, ps), "clip_score": clip_score(judge, x, ps),
                                 "fid_classifier": fid(x)}
    return rows


def part_attributes(D, out: Path, n: int, steps: int, w: float = 3.0) -> dict:
    """Paired comparisons: the same seeds with the high and the low prompt; the share moving the asked way."""
    rows = {}
    for attr, high, low in PAIRS:
        wins, total, grids = 0, 0, []
        for d in ("seven", "2", "four", "1", "nine"):
            kw = dict(steps=steps, cfg_weight=w, seed=100 + total, batch_size=n)
            xh, _ = sample(D, SamplingSpec(prompt=high.format(d), **kw), n)
            xl, _ = sample(D, SamplingSpec(prompt=low.format(d), **kw), n)
            a_h, a_l = measure(xh)[attr], measure(xl)[attr]
            wins += int((a_h > a_l).sum())
            total += n
            grids += [xh[:5], xl[:5]]
        rows[attr] = {"pairs": total, "moved_as_asked": wins / total, "prompts": [high, low]}
        _grid(torch.cat(grids), out / f"attr_{attr}.png")
    return rows


def part_clip(D, clip: str, judge, out: Path, n: int, steps: int, scales, variants=("noisy", "denoised")) -> dict:
    """CLIP guidance of an unconditional model towards 'a handwritten d' / 'the digit <word>' for d = 0..9."""
    from difflab.nets.text import DIGIT_WORDS

    rows = {}
    for variant in variants:
        for s in scales:
            if variant == "denoised" and s == 0:
                continue
            xs, ps, t = [], [], time.time()
            for d in range(10):
                p = f"a handwritten {d}" if d % 2 else f"the digit {DIGIT_WORDS[d]}"
                guide = dict(clip_guidance=p, clip_model=clip, clip_scale=s, clip_variant=variant) if s else {}
                x, _ = sample(D, SamplingSpec(steps=steps, seed=d, batch_size=n, **guide), n)
                xs.append(x)
                ps += [p] * n
            x = torch.cat(xs)
            rows[f"{variant} s={s:g}"] = {"digit_agreement": digit_agreement(x, ps),
                                          "clip_score": clip_score(judge, x, ps), "wall_s": time.time() - t,
                                          "fid_classifier": fid(x)}
            _grid(torch.cat([v[:4] for v in xs]), out / f"clip_{variant}_s{s:g}.png")
    return rows


def run(argv) -> dict:
    ap = argparse.ArgumentParser(prog="python -m difflab.experiments.text eval")
    ap.add_argument("--out", default="benchmarks/results/text")
    ap.add_argument("--text", default="mnist-text")
    ap.add_argument("--clip", default="mnist-clip")
    ap.add_argument("--judge", default="mnist-clip-eval")
    ap.add_argument("--uncond", default="mnist-uncond")
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--scales", default="0,4,16")
    ap.add_argument("--parts", default="zero_shot,text,attributes,clip")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    M, judge = load(a.clip), load(a.judge)
    path = out / "results.json"
    res = json.loads(path.read_text()) if path.exists() else {}
    res["settings"] = {"n_per_prompt": a.n, "steps": a.steps, "sampler": "heun", "text": a.text, "clip": a.clip,
                       "judge": a.judge}
    parts = a.parts.split(",")
    if "zero_shot" in parts:
        res["zero_shot"] = part_zero_shot({a.clip: M, a.judge: judge})
    if "text" in parts:
        res["text"] = part_text(load(a.text), judge, out, a.n, a.steps)
    if "attributes" in parts:
        res["attributes"] = part_attributes(load(a.text), out, a.n, a.steps)
    if "clip" in parts:
        scales = [float(s) for s in a.scales.split(",")]
        res.setdefault("clip_guidance", {}).update(part_clip(load(a.uncond), a.clip, judge, out, a.n, a.steps, scales))
    path.write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
    return res


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train-text":
        from difflab.config import load_config

        cfg = load_config(argv[1], [a for a in argv[2:] if "=" in a])
        print(json.dumps(train_text(cfg, resume="--resume" in argv, overwrite="--overwrite" in argv)))
        return 0
    if argv and argv[0] == "eval":
        run(argv[1:])
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The option rules behind SamplingSpec and the CLI's flags: one validation table (:data:`RULES`), the samplers'
own options, grid files, prompt tokens. Imported by :mod:`difflab.recipe` (and re-exported there)."""

from __future__ import annotations

import torch

from difflab.utils import INT32_MAX, check_float, check_int

# field -> (kind, keyword arguments of difflab.utils.check_int / check_float). One table behind the CLI's flag
# parsers and SamplingSpec's own validation.
RULES: dict[str, tuple[str, dict]] = {
    "steps": ("int", dict(lo=1, hi=INT32_MAX)),
    "rho": ("float", dict(lo=0, hi=1e3, lo_open=True)),
    "sigma_min": ("float", dict(lo=0, hi=1e8, lo_open=True)),
    "sigma_max": ("float", dict(lo=0, hi=1e8, lo_open=True)),
    "S_churn": ("float", dict(lo=0)),
    "S_noise": ("float", dict(lo=0, hi=1e3)),
    "S_tmin": ("float", dict(lo=0)),
    "S_tmax": ("float", dict(lo=0, allow_inf=True)),
    "eta": ("float", dict(lo=0, hi=100)),
    "order": ("int", dict(lo=1, hi=4)),
    "init_noise_scale": ("float", dict(lo=0, hi=1e3, lo_open=True)),
    "cfg_weight": ("float", dict(lo=-1e3, hi=1e3)),
    "cg_scale": ("float", dict(lo=-1e6, hi=1e6)),
    "ag_weight": ("float", dict(lo=-1e3, hi=1e3)),
    "apg_eta": ("float", dict(lo=-1e3, hi=1e3)),
    "apg_norm": ("float", dict(lo=0, hi=1e8, lo_open=True)),
    "apg_momentum": ("float", dict(lo=-0.99, hi=0.99)),
    "pg_weight": ("float", dict(lo=0)),
    "pg_batch": ("int", dict(lo=1, hi=INT32_MAX)),
    "diversity_strength": ("float", dict(lo=0, hi=1e6)),
    "group_size": ("int", dict(lo=1, hi=INT32_MAX)),
    "seed": ("int", dict(lo=0, hi=2**63 - 1)),
    "batch_size": ("int", dict(lo=1, hi=INT32_MAX)),
    "label": ("int", dict(lo=0, hi=100000)),
    "inpaint_offset": ("int", dict(lo=0, hi=INT32_MAX)),
    "resample": ("int", dict(lo=1, hi=1000)),
    "clip_scale": ("float", dict(lo=-1e6, hi=1e6)),
}
CLIP_SCALE = 64.0  # the default --clip-scale: 96% digit agreement on mnist-uncond (docs/results.md, text section)
PG_KERNELS = ("rbf", "iou", "feature")
PG_VARIANTS = ("paper", "thesis")
CFG_METHODS = ("cfg", "apg", "cfgpp")


def check_field(name: str, value, label: str | None = None):
    """Validate one numeric field of :data:`RULES`; errors name ``label`` (e.g. the CLI flag) or the field."""
    kind, kw = RULES[name]
    return (check_int if kind == "int" else check_float)(label or name, value, **kw)


def read_grid(path: str) -> tuple:
    """The sigmas of a grid file written by ``difflab schedule`` (JSON ``{"sigmas": [...]}`` or a bare list)."""
    import json
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--grid {path}: no such grid file (write one with `difflab schedule MODEL --nfe N --out {path}`)")
    try:
        data = json.loads(p.read_text())
        sigmas = data["sigmas"] if isinstance(data, dict) else data
        return tuple(float(v) for v in sigmas)
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"--grid {path}: not a grid file ({type(e).__name__}: {e})") from None


SAMPLER_OPTIONS = ("eta", "order", "variant", "noise", "resample")  # passed to the samplers whose signature names them


def _names(names) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _parameters(fn) -> set:
    import inspect

    return set(inspect.signature(fn).parameters)


def prompt_tokens(D, prompt: str, device="cpu") -> torch.Tensor:
    """The token ids [1, L] of a prompt for a text-conditional denoiser (its network's ``tokenize``)."""
    net = getattr(D, "net", None)
    if not hasattr(net, "tokenize"):
        raise ValueError(f"--prompt needs a text-conditional model (e.g. mnist-text); "
                         f"{getattr(D, 'difflab_path', 'this model')} is not one")
    return net.tokenize(prompt).to(device)


__all__ = ["CFG_METHODS", "CLIP_SCALE", "PG_KERNELS", "PG_VARIANTS", "RULES", "SAMPLER_OPTIONS", "check_field",
           "prompt_tokens", "read_grid"]

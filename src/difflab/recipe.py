"""SamplingSpec: one validated, JSON-able description of how to sample (DESIGN.md section 6).

The CLI maps its flags onto a SamplingSpec in one place (``difflab.cli``); sweeps, reproductions, the demo and
``eval`` build SamplingSpecs directly, e.g. a sweep point is ``dataclasses.replace(spec, **point)``, and every
eval JSON records ``spec.to_dict()``. Nothing below the CLI sees argv or an argparse Namespace.

    spec = SamplingSpec(sampler="heun", steps=18, pg_weight=1.0, pg_batch=10, seed=0)
    x, labels = sample(difflab.load("mnist-uncond"), spec, n=100)

Fields are named like the CLI flags (``--S-churn`` -> ``S_churn``, ``--pg-weight`` -> ``pg_weight``); ``None``
means "the model's value" (sigma_min, sigma_max) or "off" (guidances). Validation happens on construction, with
the errors the CLI gives (the CLI's flag parsers call :func:`check_field`)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields

import torch

from difflab.config import DIFFUSION_TASKS
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
    "pg_weight": ("float", dict(lo=0)),
    "pg_batch": ("int", dict(lo=1, hi=INT32_MAX)),
    "seed": ("int", dict(lo=0, hi=2**63 - 1)),
    "batch_size": ("int", dict(lo=1, hi=INT32_MAX)),
    "label": ("int", dict(lo=0, hi=100000)),
    "inpaint_offset": ("int", dict(lo=0, hi=INT32_MAX)),
    "resample": ("int", dict(lo=1, hi=1000)),
}
PG_KERNELS = ("rbf", "iou", "feature")
PG_VARIANTS = ("paper", "thesis")


def check_field(name: str, value, label: str | None = None):
    """Validate one numeric field of :data:`RULES`; errors name ``label`` (e.g. the CLI flag) or the field."""
    kind, kw = RULES[name]
    return (check_int if kind == "int" else check_float)(label or name, value, **kw)


@dataclass(frozen=True)
class SamplingSpec:
    """How to sample: the sampler and its options, guidances, seed, batch size and device (see the module doc).

    - sampler options: ``sampler`` (a name in ``difflab.sampling.SAMPLERS``), ``steps``, ``grid`` (a name of
      ``sigma_grid``, an explicit decreasing list ending in 0, or a ``.json`` file from ``difflab schedule``, read
      into the list, so ``to_dict`` records the sigmas themselves; ``steps`` is then ignored), ``rho``,
      ``sigma_min``/``sigma_max`` (None:
      the model's), the churn of Karras et al. 2022 Algorithm 2 (``S_churn``, ``S_noise``, ``S_tmin``,
      ``S_tmax``; EDM samplers only; ``S_noise`` is also the SDE samplers' ``s_noise``), ``init_noise_scale``,
      and the options of the samplers whose signature names them (:data:`SAMPLER_OPTIONS`): ``eta`` (DDIM and
      the SDE samplers), ``order`` (lms, deis, ipndm, unipc), ``variant`` (unipc: bh1 | bh2), ``noise`` (the SDE
      samplers: 'brownian' for a Brownian tree, needs torchsde).
    - classifier-free guidance: ``cfg_weight`` (None: off), ``cfg_convention`` ('ntnu' or 'ho').
    - classifier guidance: ``cg_model`` (a noise-conditional classifier, shipped name or run dir), ``cg_scale``.
    - particle guidance (Corso et al. 2023): ``pg_weight`` (0: off), ``pg_kernel``, ``pg_features`` (kernel
      'feature'), ``pg_batch`` (particles coupled per group; None: the whole batch), ``pg_variant``.
    - ``label``: one class label for every sample (None: cycle 0..K-1 on a class-conditional model).
    - inpainting (:mod:`difflab.guidance.inpaint`): ``inpaint`` (a dataset spec, e.g. 'mnist:test': sample k
      completes image ``inpaint_offset + k``), ``inpaint_mask`` (the region to regenerate: a mask name or a PNG);
      a class-conditional model completes each image with its true label unless ``label`` is given.
      ``sampler="repaint"`` with ``resample`` R adds RePaint's jumps back in noise.
    - run: ``seed``, ``batch_size``, ``device``, ``compile``.
    """

    sampler: str = "heun"
    steps: int = 18
    grid: str | tuple = "karras"
    rho: float | None = None
    sigma_min: float | None = None
    sigma_max: float | None = None
    S_churn: float = 0.0
    S_noise: float = 1.0
    S_tmin: float = 0.0
    S_tmax: float = math.inf
    eta: float | None = None
    order: int | None = None
    variant: str | None = None
    noise: str | None = None
    resample: int | None = None
    init_noise_scale: float = 1.0
    cfg_weight: float | None = None
    cfg_convention: str | None = None
    cg_model: str | None = None
    cg_scale: float = 1.0
    pg_weight: float = 0.0
    pg_kernel: str = "rbf"
    pg_features: str | None = None
    pg_batch: int | None = None
    pg_variant: str = "paper"
    label: int | None = None
    inpaint: str | None = None
    inpaint_mask: str | None = None
    inpaint_offset: int = 0
    seed: int = 0
    batch_size: int = 64
    device: str = "cpu"
    compile: bool = field(default=False, compare=False)

    def __post_init__(self):
        from difflab.sampling import CHURN_SAMPLERS, get_sampler
        from difflab.sampling.base import check_churn

        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in RULES and v is not None:
                if RULES[f.name][0] == "float" and isinstance(v, int) and not isinstance(v, bool):
                    object.__setattr__(self, f.name, float(v))  # 1 and 1.0 are the same spec
                check_field(f.name, v)
        fn = get_sampler(self.sampler)
        check_churn(self.S_churn, self.S_noise, self.S_tmin, self.S_tmax)
        if isinstance(self.grid, str) and self.grid.endswith(".json"):
            object.__setattr__(self, "grid", read_grid(self.grid))
        if isinstance(self.grid, list):
            object.__setattr__(self, "grid", tuple(float(s) for s in self.grid))
        elif not isinstance(self.grid, (str, tuple)):
            raise ValueError(f"grid must be a grid name or a list of sigmas, got {self.grid!r}")
        if self.S_churn and self.sampler not in CHURN_SAMPLERS:
            raise ValueError(f"--S-churn applies to the {_names(CHURN_SAMPLERS)} samplers, not {self.sampler!r}")
        for option in SAMPLER_OPTIONS:
            if getattr(self, option) is not None and option not in _parameters(fn):
                from difflab.sampling import SAMPLERS

                takes = [name for name, f in SAMPLERS.items() if option in _parameters(f)]
                raise ValueError(f"--{option} applies to the {_names(takes)} sampler{'s' if len(takes) > 1 else ''} "
                                 "only")
        if self.pg_kernel not in PG_KERNELS:
            raise ValueError(f"--pg-kernel must be one of {', '.join(PG_KERNELS)}, got {self.pg_kernel!r}")
        if self.pg_variant not in PG_VARIANTS:
            raise ValueError(f"--pg-variant must be one of {', '.join(PG_VARIANTS)}, got {self.pg_variant!r}")
        if self.pg_features and self.pg_kernel != "feature":
            raise ValueError("--pg-features needs --pg-kernel feature")
        if self.cfg_convention is not None:
            from difflab.guidance.cfg import CONVENTIONS

            if self.cfg_convention not in CONVENTIONS:
                raise ValueError(f"--cfg-convention must be one of {', '.join(CONVENTIONS)}, "
                                 f"got {self.cfg_convention!r}")
        if bool(self.inpaint) != bool(self.inpaint_mask):
            raise ValueError("inpainting needs both --inpaint DATASET (the images to complete) and --mask REGION")
        if self.inpaint_mask:
            from difflab.guidance.inpaint import make_mask

            make_mask(self.inpaint_mask, 1, (4, 4))  # validates the name (or that the PNG exists)
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"device must be a name such as 'cpu' or 'cuda:0', got {self.device!r}")

    # -- JSON ----------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain JSON types (an infinite S_tmax is written as the string 'inf'; a grid list as a list)."""
        d = dataclasses.asdict(self)
        d["grid"] = list(d["grid"]) if isinstance(d["grid"], tuple) else d["grid"]
        d["S_tmax"] = "inf" if math.isinf(d["S_tmax"]) else d["S_tmax"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SamplingSpec:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming them."""
        if not isinstance(d, dict):
            raise ValueError(f"a sampling spec must be a mapping, got {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown sampling option(s) {unknown}; known: {', '.join(sorted(names))}")
        d = dict(d)
        if d.get("S_tmax") == "inf":
            d["S_tmax"] = math.inf
        return cls(**d)

    def replace(self, **changes) -> SamplingSpec:
        """``dataclasses.replace`` with the option names also accepted in their flag spelling (``pg-weight``)."""
        return dataclasses.replace(self, **{k.replace("-", "_"): v for k, v in changes.items()})

    # -- building blocks for a model -----------------------------------------------------------------------
    def sampler_options(self) -> dict:
        """Keyword options of ``SAMPLERS[sampler]``: churn for the EDM samplers, eta where the sampler takes it."""
        from difflab.sampling import CHURN_SAMPLERS, get_sampler

        opts = {}
        if self.sampler in CHURN_SAMPLERS:
            opts.update(S_churn=self.S_churn, S_noise=self.S_noise, S_tmin=self.S_tmin, S_tmax=self.S_tmax)
        elif self.S_noise != 1.0 and "s_noise" in _parameters(get_sampler(self.sampler)):
            opts["s_noise"] = self.S_noise  # the SDE samplers' name for the noise scale
        opts.update({k: getattr(self, k) for k in SAMPLER_OPTIONS if getattr(self, k) is not None})
        return opts

    def guidance(self, D) -> list | None:
        """The guidance objects for model D, innermost first (CFG, classifier guidance, particle guidance)."""
        from difflab.guidance import ClassifierFreeGuidance, ClassifierGuidance, ParticleGuidance

        out = []
        if self.cfg_weight is not None:
            kw = {"convention": self.cfg_convention} if self.cfg_convention else {}
            out.append(ClassifierFreeGuidance(weight=self.cfg_weight, **kw))
        if self.cg_model:
            from difflab.models import load

            C = load(self.cg_model, device=self.device)
            if getattr(C.difflab_config.model, "task", "") != "noisy_classifier":
                raise ValueError(f"--cg-model {self.cg_model} is not a noise-conditional classifier "
                                 "(train one with configs/noisy_classifier.yaml)")
            out.append(ClassifierGuidance(C, scale=self.cg_scale, labels=self.label))
        if self.pg_weight:
            features = None
            if self.pg_kernel == "feature":
                from difflab.models import embedding

                features = embedding(self.pg_features or "digit-features", device=self.device)
            out.append(ParticleGuidance(weight=self.pg_weight, kernel=self.pg_kernel, variant=self.pg_variant,
                                        group_size=self.pg_batch, features=features))
        if self.inpaint:  # last: the known pixels are imposed on the fully guided estimate
            from difflab.guidance.inpaint import Inpainting

            out.append(Inpainting())
        return out or None

    def inpaint_cond(self, D, n: int, offset: int = 0) -> tuple[dict, torch.Tensor | None]:
        """The cond entries of inpainting for samples ``offset .. offset + n - 1`` (images ``inpaint_offset + k``
        of the ``inpaint`` dataset and their masks) and the images' labels."""
        from difflab.data import get_dataset
        from difflab.guidance.inpaint import make_mask
        from difflab.models import model_shape

        start = self.inpaint_offset + offset
        ds = get_dataset(self.inpaint, limit=start + n)
        x0, y = ds.as_tensors()
        if x0.shape[0] < start + n:
            raise ValueError(f"--inpaint {self.inpaint}: has {x0.shape[0]} images, need {start + n} "
                             f"(--inpaint-offset {self.inpaint_offset} + --n)")
        x0, y = x0[start:start + n], y[start:start + n]
        if tuple(x0.shape[1:]) != tuple(model_shape(D)):
            raise ValueError(f"--inpaint {self.inpaint}: images of shape {tuple(x0.shape[1:])}, the model makes "
                             f"{tuple(model_shape(D))}")
        regen = make_mask(self.inpaint_mask, n, tuple(x0.shape[-2:]), seed=self.seed, offset=start)
        return {"inpaint_x0": x0.to(self.device), "inpaint_keep": (1 - regen).to(self.device)}, y.long()

    def generate_kwargs(self, D) -> dict:
        """Keyword arguments of :func:`difflab.sampling.generate` for model D (sigma range defaults to D's)."""
        cfg = getattr(D, "difflab_config", None)
        sigma_min = self.sigma_min if self.sigma_min is not None else (cfg.model.sigma_min if cfg else 0.002)
        sigma_max = self.sigma_max if self.sigma_max is not None else (cfg.model.sigma_max if cfg else 80.0)
        grid = list(self.grid) if isinstance(self.grid, tuple) else self.grid
        return dict(sampler=self.sampler, steps=self.steps, grid=grid, rho=self.rho, sigma_min=sigma_min,
                    sigma_max=sigma_max, init_noise_scale=self.init_noise_scale, guidance=self.guidance(D),
                    **self.sampler_options())

    def class_labels(self, D, n: int, offset: int = 0) -> torch.Tensor | None:
        """Labels for samples ``offset .. offset + n - 1`` of a class-conditional D: ``label`` for all, else
        cycling ``k mod K``; None for an unconditional model (where ``label`` only steers classifier guidance)."""
        from difflab.models import num_classes

        k = num_classes(D)
        if not k:
            if self.label is not None and not self.cg_model:
                raise ValueError(f"--label {self.label} needs a class-conditional model or --cg-model; "
                                 "this model is unconditional")
            return None
        if self.label is not None:
            if not 0 <= self.label < k:
                raise ValueError(f"--label must be in [0, {k - 1}], got {self.label}")
            return torch.full((n,), self.label, dtype=torch.long, device=self.device)
        return torch.arange(offset, offset + n, device=self.device) % k


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


def sample(model, spec: SamplingSpec, n: int, cond: dict | None = None, *, offset: int = 0, callback=None):
    """Draw ``n`` samples of ``model`` (a loaded D, or a shipped name / run directory) as ``spec`` says.

    Returns ``(x [n, C, H, W] float on spec.device, labels or None)``; sample k's noise comes from the generator
    seeded ``(spec.seed, offset + k)``. ``cond`` adds conditioning entries (per-sample tensors are sliced per
    batch); class labels come from :meth:`SamplingSpec.class_labels` unless ``cond`` holds them."""
    from difflab.models import load, model_shape
    from difflab.sampling.generate import generate

    D = load(model, device=spec.device, compile=spec.compile) if isinstance(model, str) else model
    cfg = getattr(D, "difflab_config", None)
    if cfg is not None and cfg.model.task not in DIFFUSION_TASKS:
        raise ValueError(f"{getattr(D, 'difflab_path', model)} is a {cfg.model.task}, not a diffusion model")
    cond = dict(cond or {})
    if spec.inpaint:  # the images to complete; a class-conditional model completes each with its true label
        known, true = spec.inpaint_cond(D, n, offset)
        cond.update(known)
        from difflab.models import num_classes

        if num_classes(D) and spec.label is None and "class_labels" not in cond:
            cond["class_labels"] = true.to(spec.device)
    labels = cond.get("class_labels")
    if labels is None:
        labels = spec.class_labels(D, n, offset)
        if labels is not None:
            cond["class_labels"] = labels
    x = generate(D, n, model_shape(D), seed=spec.seed, offset=offset, cond=cond, callback=callback,
                 batch_size=spec.batch_size, device=spec.device, **spec.generate_kwargs(D))
    return decode(D, x, spec, cond, offset), labels


def decode(D, x, spec: SamplingSpec, cond: dict, offset: int = 0) -> torch.Tensor:
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
                        batch_size=spec.batch_size, device=spec.device, **spec.generate_kwargs(stage))

    def noise(shape):
        gens = make_generators(derive_seed(spec.seed, 2), n, offset, device="cuda" if x.is_cuda else "cpu")
        return randn(shape, generator=gens, device=x.device)

    return dec(x, cond=cond, sample=sample, noise=noise)


__all__ = ["RULES", "SamplingSpec", "check_field", "decode", "sample"]

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
from difflab.recipe.rules import (  # noqa: F401  (re-exported: the CLI builds its flag parsers from RULES)
    CFG_METHODS,
    CLIP_SCALE,
    PG_KERNELS,
    PG_VARIANTS,
    RULES,
    SAMPLER_OPTIONS,
    _names,
    _parameters,
    check_field,
    prompt_tokens,
    read_grid,
)
from difflab.recipe.stages import decode


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
    - ``cfg_method``: 'cfg', 'apg' (adaptive projected guidance, Sadat et al. 2024: ``apg_eta``, ``apg_norm``,
      ``apg_momentum``) or 'cfgpp' (CFG++, Chung et al. 2024: ``cfg_weight`` is its lambda); see
      :mod:`difflab.guidance.projected`.
    - ``cfg_interval = (lo, hi)``: CFG and autoguidance only for sigma in [lo, hi] (Kynkaanniemi et al. 2024).
    - autoguidance (Karras et al. 2024): ``autoguidance`` (a guide model: shipped name, run dir, or 'recommended'
      for the model's shipped guide), ``ag_weight`` (w, 1: off; None: the recommended weight, else 2).
    - classifier guidance: ``cg_model`` (a noise-conditional classifier, shipped name or run dir), ``cg_scale``.
    - particle guidance (Corso et al. 2023): ``pg_weight`` (0: off), ``pg_kernel``, ``pg_features`` (kernel
      'feature': a classifier's embedding, or 'pixels'; on a latent model, of the decoded images), ``pg_batch``
      (particles coupled per group; None: the whole batch), ``pg_variant``.
    - diversity (difflab.guidance.diversity): ``diversity`` (a method of ``DIVERSITY_METHODS`` or
      ``'recommended'``; None: off), ``diversity_strength`` (None: the preset's, else 1), ``group_size`` (samples
      coupled per group; None: 10; ``strata`` steers by ``cg_model``, default mnist-clip zero-shot). Sampling picks
      a batch size that is a multiple of the group size.
    - ``label``: one class label for every sample (None: cycle 0..K-1 on a class-conditional model).
    - inpainting (:mod:`difflab.guidance.inpaint`): ``inpaint`` (a dataset spec, e.g. 'mnist:test': sample k
      completes image ``inpaint_offset + k``), ``inpaint_mask`` (the region to regenerate: a mask name or a PNG);
      a class-conditional model completes each image with its true label unless ``label`` is given.
      ``sampler="repaint"`` with ``resample`` R adds RePaint's jumps back in noise.
    - text (:mod:`difflab.guidance.clip`): ``prompt`` (a text-conditional model's prompt; with ``cfg_weight``
      classifier-free guidance on the text), ``clip_guidance`` (CLIP guidance towards this text with the
      contrastive model ``clip_model``, default mnist-clip, scale ``clip_scale``, None: :data:`CLIP_SCALE`,
      ``clip_variant`` 'noisy' | 'denoised').
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
    cfg_method: str = "cfg"
    cfg_interval: tuple | None = None
    apg_eta: float = 0.0
    apg_norm: float | None = None
    apg_momentum: float = 0.0
    autoguidance: str | None = None
    ag_weight: float | None = None
    cg_model: str | None = None
    cg_scale: float = 1.0
    pg_weight: float = 0.0
    pg_kernel: str = "rbf"
    pg_features: str | None = None
    pg_batch: int | None = None
    pg_variant: str = "paper"
    diversity: str | None = None
    diversity_strength: float | None = None
    group_size: int | None = None
    label: int | None = None
    inpaint: str | None = None
    inpaint_mask: str | None = None
    inpaint_offset: int = 0
    prompt: str | None = None
    clip_guidance: str | None = None
    clip_model: str | None = None
    clip_scale: float | None = None
    clip_variant: str = "noisy"
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
        if self.diversity is not None:
            from difflab.guidance import DIVERSITY_METHODS, PRESETS

            if self.diversity not in DIVERSITY_METHODS + tuple(PRESETS):
                raise ValueError(f"--diversity must be one of {', '.join(DIVERSITY_METHODS + tuple(PRESETS))}, "
                                 f"got {self.diversity!r}")
        elif self.group_size is not None or self.diversity_strength is not None:
            raise ValueError("--group-size and --diversity-strength need --diversity (PG's group is --pg-batch)")
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
        for flag, text in (("--prompt", self.prompt), ("--clip-guidance", self.clip_guidance)):
            if text is not None and (not isinstance(text, str) or not text.strip()):
                raise ValueError(f"{flag} needs a non-empty text, got {text!r}")
        if self.clip_variant not in ("noisy", "denoised"):
            raise ValueError(f"--clip-variant must be noisy or denoised, got {self.clip_variant!r}")
        if self.clip_model and not self.clip_guidance:
            raise ValueError("--clip-model needs --clip-guidance TEXT")
        self._check_guidance2()
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"device must be a name such as 'cpu' or 'cuda:0', got {self.device!r}")

    def _check_guidance2(self):
        """cfg_method / cfg_interval / APG / autoguidance fields (issue 22)."""
        if self.cfg_method not in CFG_METHODS:
            raise ValueError(f"--cfg-method must be one of {', '.join(CFG_METHODS)}, got {self.cfg_method!r}")
        if self.cfg_method != "cfg" and self.cfg_weight is None:
            raise ValueError(f"--cfg-method {self.cfg_method} needs --cfg-weight")
        if self.cfg_method != "apg" and (self.apg_eta or self.apg_norm is not None or self.apg_momentum):
            raise ValueError("--apg-eta, --apg-norm and --apg-momentum need --cfg-method apg")
        if self.cfg_interval is not None:
            from difflab.guidance.cfg import check_window

            iv = self.cfg_interval
            if isinstance(iv, str) or not hasattr(iv, "__len__") or len(iv) != 2:
                raise ValueError(f"--cfg-interval must be two sigmas LO,HI, got {iv!r}")
            object.__setattr__(self, "cfg_interval", check_window(iv, "--cfg-interval"))
            if self.cfg_weight is None and not self.autoguidance:
                raise ValueError("--cfg-interval needs --cfg-weight or --autoguidance")
        if self.autoguidance is not None and (not isinstance(self.autoguidance, str) or not self.autoguidance):
            raise ValueError(f"--autoguidance must be a model name, run directory or 'recommended', "
                             f"got {self.autoguidance!r}")
        if self.ag_weight is not None and not self.autoguidance:
            raise ValueError("--ag-weight needs --autoguidance")

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
        from difflab.guidance import PRESETS, ClassifierGuidance, ParticleGuidance

        out = []
        if self.cfg_weight is not None:
            out.append(self._cfg(D))
        if self.autoguidance:
            out.append(self._autoguidance(D))
        strata = self.diversity and PRESETS.get(self.diversity, (self.diversity,))[0] == "strata"
        if self.cg_model and not strata:
            out.append(ClassifierGuidance(self._classifier(), scale=self.cg_scale, labels=self.label))
        if self.clip_guidance:
            from difflab.guidance.clip import CLIPGuidance
            from difflab.models import load

            M = load(self.clip_model or "mnist-clip", device=self.device)
            if not hasattr(M, "encode_image"):
                raise ValueError(f"--clip-model {self.clip_model}: not a contrastive text-image model")
            scale = CLIP_SCALE if self.clip_scale is None else self.clip_scale
            out.append(CLIPGuidance(M, self.clip_guidance, scale=scale, variant=self.clip_variant))
        if self.pg_weight:
            features = None
            if self.pg_kernel == "feature":
                from difflab.guidance.particle import decoded_features
                from difflab.models import embedding

                features = decoded_features(D, embedding(self.pg_features or "digit-features", device=self.device))
            out.append(ParticleGuidance(weight=self.pg_weight, kernel=self.pg_kernel, variant=self.pg_variant,
                                        group_size=self.pg_batch, features=features))
        if self.diversity:
            from difflab.guidance import diversity

            options = {"classifier": self._classifier()} if strata else {}
            out.append(diversity(self.diversity, group_size=self.group(), strength=self.diversity_strength, model=D,
                                 **options))
        if self.inpaint:  # last: the known pixels are imposed on the fully guided estimate
            from difflab.guidance.inpaint import Inpainting

            out.append(Inpainting())
        return out or None

    def _classifier(self):
        """The noise-conditional classifier of ``cg_model`` (classifier guidance, ``--diversity strata``): a noisy
        classifier, or a contrastive text-image model used zero-shot over "a photo of the digit k" (strata's
        default: the shipped mnist-clip)."""
        from difflab.models import load

        C = load(self.cg_model or "mnist-clip", device=self.device)
        if hasattr(C, "encode_image"):
            from difflab.data.captions import ZERO_SHOT_PROMPT
            from difflab.guidance.clip import zero_shot_classifier

            return zero_shot_classifier(C, [ZERO_SHOT_PROMPT.format(k) for k in range(10)])
        if getattr(C.difflab_config.model, "task", "") != "noisy_classifier":
            raise ValueError(f"--cg-model {self.cg_model} is not a noise-conditional classifier "
                             "(train one with configs/noisy_classifier.yaml) nor a contrastive text-image model")
        return C

    def group(self) -> int | None:
        """Samples coupled per group: ``group_size`` (default 10) with a diversity method, ``pg_batch`` with PG."""
        if self.diversity:
            return self.group_size or 10
        return self.pg_batch if self.pg_weight else None

    def batch_for_groups(self) -> int:
        """``batch_size`` rounded down to a multiple of the group size (at least one group), so that no group is
        split across batches."""
        g = self.group()
        return self.batch_size if not g else max(g, self.batch_size - self.batch_size % g)

    def inpaint_cond(self, D, n: int, offset: int = 0) -> tuple[dict, torch.Tensor | None]:
        """The cond entries of inpainting for samples ``offset .. offset + n - 1`` (images ``inpaint_offset + k``
        of the ``inpaint`` dataset, their masks, and for a class-conditional model their true labels) and the
        images' labels."""
        from difflab.data import get_dataset
        from difflab.guidance.inpaint import make_mask
        from difflab.models import model_shape, num_classes

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
        known = {"inpaint_x0": x0.to(self.device), "inpaint_keep": (1 - regen).to(self.device)}
        if num_classes(D) and self.label is None:  # a class-conditional model completes each with its true label
            known["class_labels"] = y.long().to(self.device)
        return known, y.long()

    def _cfg(self, D):
        """CFG, APG or CFG++ (``cfg_method``) with ``cfg_interval`` as its sigma window."""
        from difflab.guidance import AdaptiveProjectedGuidance, CFGPlusPlus, ClassifierFreeGuidance

        kw = {"convention": self.cfg_convention} if self.cfg_convention else {}
        kw["sigma_window"] = self.cfg_interval
        if self.prompt:  # CFG on the text: the null condition is "no text" (a row of padding)
            kw.update(label_key="text_tokens", null_label=0)
        if self.cfg_method == "apg":
            return AdaptiveProjectedGuidance(self.cfg_weight, eta=self.apg_eta, norm_threshold=self.apg_norm,
                                             momentum=self.apg_momentum, **kw)
        if self.cfg_method == "cfgpp":
            return CFGPlusPlus(self.cfg_weight, sigmas=self.sigmas(D), **{k: v for k, v in kw.items() if k != "convention"})
        return ClassifierFreeGuidance(weight=self.cfg_weight, **kw)

    def _autoguidance(self, D):
        """AutoGuidance with the guide ``autoguidance`` ('recommended': the model's shipped guide)."""
        from difflab.guidance.autoguidance import DEFAULT_WEIGHT, AutoGuidance, recommended
        from difflab.models import load

        guide, weight, window = self.autoguidance, DEFAULT_WEIGHT, self.cfg_interval
        if guide == "recommended":
            cfg = getattr(D, "difflab_config", None)
            rec = recommended(getattr(cfg, "name", None))
            guide, weight = rec["guide"], rec["weight"]
            window = window or rec.get("interval")
        G = load(guide, device=self.device)
        if getattr(G.difflab_config.model, "task", "diffusion") != "diffusion":
            raise ValueError(f"--autoguidance {self.autoguidance}: {guide} is not a diffusion model")
        return AutoGuidance(G, weight=weight if self.ag_weight is None else self.ag_weight, sigma_window=window)

    def sigmas(self, D) -> torch.Tensor:
        """The sampling grid generate() will use for model D (CFG++ needs it)."""
        from difflab.sampling.base import member
        from difflab.sampling.schedules import sigma_grid

        kw = self.generate_kwargs(D, guidance=False)
        if not isinstance(kw["grid"], str):
            return torch.as_tensor(kw["grid"], dtype=torch.float32)
        return sigma_grid(kw["grid"], self.steps, kw["sigma_min"], kw["sigma_max"], self.rho,
                          T=int(member(D, "T", 1000)), beta_schedule=member(D, "beta_schedule", "linear"))

    def generate_kwargs(self, D, guidance: bool = True) -> dict:
        """Keyword arguments of :func:`difflab.sampling.generate` for model D (sigma range defaults to D's)."""
        cfg = getattr(D, "difflab_config", None)
        sigma_min = self.sigma_min if self.sigma_min is not None else (cfg.model.sigma_min if cfg else 0.002)
        sigma_max = self.sigma_max if self.sigma_max is not None else (cfg.model.sigma_max if cfg else 80.0)
        grid = list(self.grid) if isinstance(self.grid, tuple) else self.grid
        return dict(sampler=self.sampler, steps=self.steps, grid=grid, rho=self.rho, sigma_min=sigma_min,
                    sigma_max=sigma_max, init_noise_scale=self.init_noise_scale,
                    guidance=self.guidance(D) if guidance else None,
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
    if spec.inpaint and "inpaint_x0" not in cond:  # the images to complete (a caller may have loaded them)
        cond = {**spec.inpaint_cond(D, n, offset)[0], **cond}
    if spec.prompt and "text_tokens" not in cond:
        cond["text_tokens"] = prompt_tokens(D, spec.prompt, spec.device).expand(n, -1)
    labels = cond.get("class_labels")
    if labels is None:
        labels = spec.class_labels(D, n, offset)
        if labels is not None:
            cond["class_labels"] = labels
    x = generate(D, n, model_shape(D), seed=spec.seed, offset=offset, cond=cond, callback=callback,
                 batch_size=spec.batch_for_groups(), device=spec.device, **spec.generate_kwargs(D))
    return decode(D, x, spec, cond, offset), labels


__all__ = ["CFG_METHODS", "RULES", "SamplingSpec", "check_field", "decode", "sample"]

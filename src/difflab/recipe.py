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
    "eta": ("float", dict(lo=0, hi=1)),
    "init_noise_scale": ("float", dict(lo=0, hi=1e3, lo_open=True)),
    "cfg_weight": ("float", dict(lo=-1e3, hi=1e3)),
    "cg_scale": ("float", dict(lo=-1e6, hi=1e6)),
    "ag_weight": ("float", dict(lo=-1e3, hi=1e3)),
    "apg_eta": ("float", dict(lo=-1e3, hi=1e3)),
    "apg_norm": ("float", dict(lo=0, hi=1e8, lo_open=True)),
    "apg_momentum": ("float", dict(lo=-0.99, hi=0.99)),
    "pg_weight": ("float", dict(lo=0)),
    "pg_batch": ("int", dict(lo=1, hi=INT32_MAX)),
    "seed": ("int", dict(lo=0, hi=2**63 - 1)),
    "batch_size": ("int", dict(lo=1, hi=INT32_MAX)),
    "label": ("int", dict(lo=0, hi=100000)),
}
PG_KERNELS = ("rbf", "iou", "feature")
PG_VARIANTS = ("paper", "thesis")
CFG_METHODS = ("cfg", "apg", "cfgpp")


def check_field(name: str, value, label: str | None = None):
    """Validate one numeric field of :data:`RULES`; errors name ``label`` (e.g. the CLI flag) or the field."""
    kind, kw = RULES[name]
    return (check_int if kind == "int" else check_float)(label or name, value, **kw)


@dataclass(frozen=True)
class SamplingSpec:
    """How to sample: the sampler and its options, guidances, seed, batch size and device (see the module doc).

    - sampler options: ``sampler`` (a name in ``difflab.sampling.SAMPLERS``), ``steps``, ``grid`` (a name of
      ``sigma_grid`` or an explicit decreasing list ending in 0), ``rho``, ``sigma_min``/``sigma_max`` (None:
      the model's), the churn of Karras et al. 2022 Algorithm 2 (``S_churn``, ``S_noise``, ``S_tmin``,
      ``S_tmax``; EDM samplers only), ``eta`` (samplers that take it), ``init_noise_scale``.
    - classifier-free guidance: ``cfg_weight`` (None: off), ``cfg_convention`` ('ntnu' or 'ho').
    - ``cfg_method``: 'cfg', 'apg' (adaptive projected guidance, Sadat et al. 2024: ``apg_eta``, ``apg_norm``,
      ``apg_momentum``) or 'cfgpp' (CFG++, Chung et al. 2024: ``cfg_weight`` is its lambda); see
      :mod:`difflab.guidance.projected`.
    - ``cfg_interval = (lo, hi)``: CFG and autoguidance only for sigma in [lo, hi] (Kynkaanniemi et al. 2024).
    - autoguidance (Karras et al. 2024): ``autoguidance`` (a guide model: shipped name, run dir, or 'recommended'
      for the model's shipped guide), ``ag_weight`` (w, 1: off; None: the recommended weight, else 2).
    - classifier guidance: ``cg_model`` (a noise-conditional classifier, shipped name or run dir), ``cg_scale``.
    - particle guidance (Corso et al. 2023): ``pg_weight`` (0: off), ``pg_kernel``, ``pg_features`` (kernel
      'feature'), ``pg_batch`` (particles coupled per group; None: the whole batch), ``pg_variant``.
    - ``label``: one class label for every sample (None: cycle 0..K-1 on a class-conditional model).
    - run: ``seed``, ``batch_size``, ``device``, ``compile``.
    """

    sampler: str = "heun"
    steps: int = 18
    grid: str | tuple = "karras"
    rho: float = 7.0
    sigma_min: float | None = None
    sigma_max: float | None = None
    S_churn: float = 0.0
    S_noise: float = 1.0
    S_tmin: float = 0.0
    S_tmax: float = math.inf
    eta: float | None = None
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
    label: int | None = None
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
        if isinstance(self.grid, list):
            object.__setattr__(self, "grid", tuple(float(s) for s in self.grid))
        elif not isinstance(self.grid, (str, tuple)):
            raise ValueError(f"grid must be a grid name or a list of sigmas, got {self.grid!r}")
        if self.S_churn and self.sampler not in CHURN_SAMPLERS:
            raise ValueError(f"--S-churn applies to the {' and '.join(CHURN_SAMPLERS)} samplers, not "
                             f"{self.sampler!r}")
        if self.eta is not None and "eta" not in _parameters(fn):
            from difflab.sampling import SAMPLERS

            takes = [name for name, f in SAMPLERS.items() if "eta" in _parameters(f)]
            raise ValueError(f"--eta applies to the {', '.join(takes)} sampler{'s' if len(takes) > 1 else ''} only")
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
        from difflab.sampling import CHURN_SAMPLERS

        opts = {}
        if self.sampler in CHURN_SAMPLERS:
            opts.update(S_churn=self.S_churn, S_noise=self.S_noise, S_tmin=self.S_tmin, S_tmax=self.S_tmax)
        if self.eta is not None:
            opts["eta"] = self.eta
        return opts

    def guidance(self, D) -> list | None:
        """The guidance objects for model D, innermost first (CFG, classifier guidance, particle guidance)."""
        from difflab.guidance import ClassifierGuidance, ParticleGuidance

        out = []
        if self.cfg_weight is not None:
            out.append(self._cfg(D))
        if self.autoguidance:
            out.append(self._autoguidance(D))
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
        return out or None

    def _cfg(self, D):
        """CFG, APG or CFG++ (``cfg_method``) with ``cfg_interval`` as its sigma window."""
        from difflab.guidance import AdaptiveProjectedGuidance, CFGPlusPlus, ClassifierFreeGuidance

        kw = {"convention": self.cfg_convention} if self.cfg_convention else {}
        kw["sigma_window"] = self.cfg_interval
        if self.cfg_method == "apg":
            return AdaptiveProjectedGuidance(self.cfg_weight, eta=self.apg_eta, norm_threshold=self.apg_norm,
                                             momentum=self.apg_momentum, **kw)
        if self.cfg_method == "cfgpp":
            return CFGPlusPlus(self.cfg_weight, sigmas=self.sigmas(D), sigma_window=self.cfg_interval)
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

    def class_labels(self, D, n: int) -> torch.Tensor | None:
        """Labels for n samples of a class-conditional D: ``label`` for all, else cycling 0..K-1; None for an
        unconditional model (where ``label`` only steers classifier guidance)."""
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
        return torch.arange(n, device=self.device) % k


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
    if cfg is not None and cfg.model.task != "diffusion":
        raise ValueError(f"{getattr(D, 'difflab_path', model)} is a {cfg.model.task}, not a diffusion model")
    cond = dict(cond or {})
    labels = cond.get("class_labels")
    if labels is None:
        labels = spec.class_labels(D, n)
        if labels is not None:
            cond["class_labels"] = labels
    x = generate(D, n, model_shape(D), seed=spec.seed, offset=offset, cond=cond, callback=callback,
                 batch_size=spec.batch_size, device=spec.device, **spec.generate_kwargs(D))
    return x, labels


__all__ = ["CFG_METHODS", "RULES", "SamplingSpec", "check_field", "sample"]

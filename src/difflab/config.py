"""Typed experiment configs: YAML presets, key=value overrides, validation with clear errors.

A config has sections (data, model, loss, train, sample) of typed fields. Overrides are ``section.key=value``
or, where the key is unique across sections, just ``key=value`` (e.g. ``max_steps=2 out=runs/x``).
Values are parsed as YAML scalars/lists and checked against the field's type and range.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

CONFIG_VERSION = 1
DIFFUSION_TASKS = ("diffusion", "latent", "superres", "cascade")  # tasks whose model is a denoiser D


class ConfigError(ValueError):
    """A config value, key or file is wrong; the message names it."""


# -- YAML: PyYAML's safe loader, with a duplicate-key check and a depth limit -----------------------------

MAX_YAML_DEPTH = 100   # nested lists/mappings; configs use 3 or 4, PyYAML's recursive composer fails near 500


class YAMLCheckError(yaml.YAMLError):
    """A YAML text that parses but is refused: a key given twice in a mapping, or nesting too deep."""


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping, at any depth (PyYAML keeps the last one
    silently, so a section written twice would drop half its values). Keys merged in with ``<<`` may be
    overridden, as YAML's merge key allows."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise YAMLCheckError(f"key {key!r} is given twice in one mapping (lines {seen[key]} and {line})")
                    seen[key] = line
                except TypeError:  # an unhashable key: SafeLoader reports it
                    continue
        return super().construct_mapping(node, deep=deep)


def _too_deep(text: str) -> int | None:
    """The line where ``text`` nests lists/mappings more than MAX_YAML_DEPTH levels deep, else None. Reads parser
    events (no recursion) and stops there, so that 5000 nested brackets fail fast instead of in the composer."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                return event.start_mark.line + 1
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1
    return None


def load_yaml(text: str):
    """Parse YAML safely (no tags that build objects); a duplicated key or nesting deeper than MAX_YAML_DEPTH is a
    :class:`YAMLCheckError` naming the key or line, any other problem a ``yaml.YAMLError``."""
    line = _too_deep(text)
    if line is not None:
        raise YAMLCheckError(f"nested more than {MAX_YAML_DEPTH} levels deep (line {line})")
    try:
        return yaml.load(text, Loader=StrictLoader)
    except RecursionError:  # a backstop: _too_deep should have caught it
        raise YAMLCheckError("nested too deeply") from None


@dataclass
class DataConfig:
    name: str = "synthetic"        # mnist | fashion-mnist | synthetic | smmnist-<variant> (see difflab.data)
    split: str = "train"
    size: int = 28                 # 28 or 32 (padded)
    limit: int | None = None       # use only the first N examples
    p_right: float = 0.5           # Stochastic Moving MNIST 'horizontal'
    cond_frames: int = 0           # K conditioning frames (Moving MNIST)
    pred_frames: int = 1
    seq_len: int = 16


@dataclass
class ModelConfig:
    task: str = "diffusion"        # diffusion | classifier | noisy_classifier | clip | vae | latent | superres | cascade
    preset: str = "small"          # tiny | mini | small | base | ntnu (networks); resnet (classifiers)
    precond: str = "edm"           # edm | vp_eps | v | ve
    sigma_data: float = 0.5
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    T: int = 1000                  # discrete DDPM steps (vp_eps, v)
    beta_schedule: str = "linear"  # linear | cosine
    num_classes: int = 0           # > 0: class-conditional (labels + null label)
    channels: int = 1
    net: dict = field(default_factory=dict)   # network field overrides, e.g. {model_channels: 48}
    # latent / cascade models (difflab.nets.latent); vae: the autoencoder (difflab.nets.vae, net = its fields)
    autoencoder: str | None = None  # latent: 'pool' (a cascade's low-resolution base) or a VAE run / checkpoint
    factor: int = 2                 # 'pool' and superres: the downsampling factor
    codec: dict = field(default_factory=dict)  # latent: the VAE's model section; cascade: the SR model's
    aug_sigma: float = 0.0          # superres / cascade: Gaussian conditioning augmentation level at sampling
    aug_max: float = 0.0            # superres: training augmentation levels ~ U(0, aug_max)


@dataclass
class LossConfig:
    name: str = "edm"              # edm | eps_mse | eps_l1 | ce (classifiers) | vae (autoencoders)
    P_mean: float = -1.2
    P_std: float = 1.2
    kl_weight: float = 1.0e-4      # vae: weight of the KL term (per latent element) against the pixel MSE


@dataclass
class TrainConfig:
    batch_size: int = 64
    max_steps: int = 1000
    time_budget_s: float | None = None   # stop early after this many seconds (the step count is logged)
    lr: float = 2e-4
    weight_decay: float = 0.0
    betas: list = field(default_factory=lambda: [0.9, 0.999])
    warmup_steps: int = 200
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    label_dropout: float = 0.1
    log_every: int = 50
    ckpt_every: int = 500
    sample_every: int = 0          # 0: only at the end
    keep_last: int = 2
    device: str = "auto"           # auto | cpu | cuda
    threads: int | None = None     # torch intra-op threads on CPU
    max_bad_steps: int = 20        # consecutive non-finite steps before the run stops
    progress: bool = True
    init_from: str | None = None   # start from these weights (run dir or checkpoint), fresh optimizer: fine-tuning
    compile: bool = False          # torch.compile the trained network (docs/benchmarks.md, "torch.compile")
    logger: str = "jsonl"          # jsonl | tensorboard | jsonl,tensorboard (log.jsonl is always written)


@dataclass
class SampleConfig:
    sampler: str = "heun"
    steps: int = 18
    rho: float = 7.0
    S_churn: float = 0.0
    n_preview: int = 16


@dataclass
class Config:
    name: str = "run"
    out: str = "runs/run"
    seed: int = 0
    version: int = CONFIG_VERSION
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


SECTIONS = {"data": DataConfig, "model": ModelConfig, "loss": LossConfig, "train": TrainConfig, "sample": SampleConfig}
TOP = {f.name for f in fields(Config)} - set(SECTIONS)

CHOICES = {
    ("model", "task"): {"diffusion", "classifier", "noisy_classifier", "clip", "vae", "latent", "superres", "cascade"},
    ("model", "precond"): {"edm", "vp_eps", "v", "ve"},
    ("model", "beta_schedule"): {"linear", "cosine"},
    ("loss", "name"): {"edm", "eps_mse", "eps_l1", "ce", "infonce", "vae"},
    ("train", "device"): {"auto", "cpu", "cuda"},
    ("data", "split"): {"train", "test"},
    ("data", "size"): {28, 32},
}
LOGGERS = ("jsonl", "tensorboard")
# (min, max, inclusive-min) ranges
RANGES = {
    ("train", "batch_size"): (1, 1 << 16), ("train", "max_steps"): (0, 10**9), ("train", "lr"): (0, 1),
    ("train", "ema_decay"): (0, 1), ("train", "label_dropout"): (0, 1), ("train", "grad_clip"): (0, 1e9),
    ("train", "warmup_steps"): (0, 10**9), ("train", "keep_last"): (1, 10**6), ("train", "log_every"): (1, 10**9),
    ("train", "ckpt_every"): (1, 10**9), ("train", "sample_every"): (0, 10**9), ("train", "max_bad_steps"): (1, 10**6),
    ("train", "weight_decay"): (0, 10), ("train", "threads"): (1, 1024), ("train", "time_budget_s"): (0, 1e9),
    ("model", "sigma_data"): (1e-6, 1e6), ("model", "sigma_min"): (1e-8, 1e6), ("model", "sigma_max"): (1e-6, 1e8),
    ("model", "T"): (2, 10**6), ("model", "num_classes"): (0, 100000), ("model", "channels"): (1, 64),
    ("loss", "P_std"): (1e-6, 100), ("loss", "kl_weight"): (0, 1e6), ("model", "factor"): (1, 64),
    ("model", "aug_sigma"): (0, 1e6), ("model", "aug_max"): (0, 1e6), ("data", "p_right"): (0, 1),
    ("data", "cond_frames"): (0, 64),
    ("data", "pred_frames"): (1, 64), ("data", "seq_len"): (2, 10**4), ("data", "limit"): (1, 10**9),
    ("sample", "steps"): (1, 10**5), ("sample", "S_churn"): (0, 1e6), ("sample", "rho"): (1e-3, 1e3),
    ("sample", "n_preview"): (1, 10**4), ("seed", None): (0, 2**63 - 1),
}


def _type_of(cls, name):
    return {f.name: f for f in fields(cls)}[name]


def _coerce(where: str, value: Any, default: Any, annotation: str):
    """Check/convert a value to the type of the field's default / annotation."""
    ann = str(annotation)
    optional = "None" in ann
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where} may not be null")
    if "bool" in ann:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if "float" in ann:
        if isinstance(value, str):  # YAML 1.1 reads 3e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{where} must be a finite number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number, got {value!r}")
        return float(value)
    if "int" in ann:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return int(value)
    if "str" in ann:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    if "list" in ann:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return list(value)
    if "dict" in ann:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    return value


def _suggest(key, options):
    if not isinstance(key, str):
        return ""
    close = difflib.get_close_matches(key, [str(o) for o in options], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def from_dict(d: dict) -> Config:
    """Build and validate a Config from a nested dict (unknown keys are errors)."""
    if not isinstance(d, dict):
        raise ConfigError(f"a config must be a mapping, got {type(d).__name__}")
    cfg = Config()
    for key, value in d.items():
        if not isinstance(key, str):
            raise ConfigError(f"config keys must be strings, got {key!r}")
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"section {key!r} must be a mapping, got {value!r}")
            for k, v in value.items():
                if not isinstance(k, str):
                    raise ConfigError(f"config keys must be strings, got {k!r} in section {key!r}")
                set_value(cfg, key, k, v)
        elif key in TOP:
            set_value(cfg, None, key, value)
        else:
            raise ConfigError(f"unknown config key {key!r}{_suggest(key, list(SECTIONS) + sorted(TOP))}")
    validate(cfg)
    return cfg


def set_value(cfg: Config, section: str | None, key: str, value):
    target = cfg if section is None else getattr(cfg, section)
    cls = type(target)
    names = {f.name for f in fields(cls)}
    where = key if section is None else f"{section}.{key}"
    if key not in names:
        raise ConfigError(f"unknown config key {where!r}{_suggest(key, names)}")
    f = _type_of(cls, key)
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    v = _coerce(where, value, default, f.type)
    choices = CHOICES.get((section, key))
    if choices is not None and v not in choices:
        raise ConfigError(f"{where} must be one of {sorted(choices, key=str)}, got {v!r}")
    rng = RANGES.get((section, key)) or (RANGES.get(("seed", None)) if (section, key) == (None, "seed") else None)
    if rng is not None and v is not None and not (rng[0] <= v <= rng[1]):
        raise ConfigError(f"{where}={v!r} is out of range [{rng[0]}, {rng[1]}]")
    setattr(target, key, v)


def validate(cfg: Config):
    if cfg.version != CONFIG_VERSION:
        raise ConfigError(f"config version {cfg.version} is not supported (this difflab reads version {CONFIG_VERSION})")
    if cfg.model.sigma_min >= cfg.model.sigma_max:
        raise ConfigError(f"model.sigma_min ({cfg.model.sigma_min}) must be < model.sigma_max ({cfg.model.sigma_max})")
    task, loss = cfg.model.task, cfg.loss.name
    if task in DIFFUSION_TASKS and loss in ("ce", "vae", "infonce"):
        raise ConfigError(f"loss.name {loss!r} is not a diffusion loss; use edm, eps_mse or eps_l1")
    need = {"vae": "vae", "clip": "infonce"}.get(task, "ce")
    if task not in DIFFUSION_TASKS and loss != need:
        raise ConfigError(f"model.task {task!r} trains with loss.name {need!r}")
    if task == "latent" and not (cfg.model.autoencoder or cfg.model.codec):
        raise ConfigError("model.task 'latent' needs model.autoencoder ('pool' or a VAE run directory)")
    loggers = [x.strip() for x in cfg.train.logger.split(",")]
    if not loggers or any(x not in LOGGERS for x in loggers):
        raise ConfigError(f"train.logger must be jsonl, tensorboard or both (jsonl,tensorboard), got {cfg.train.logger!r}")
    betas = cfg.train.betas
    if not (len(betas) == 2 and all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in betas)):
        raise ConfigError(f"train.betas must be two numbers in [0, 1), got {cfg.train.betas}")
    return cfg


def parse_override(cfg: Config, item: str):
    """Apply one ``key=value`` override (``section.key`` or a key unique across sections)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    try:
        value = load_yaml(raw) if raw.strip() != "" else None
    except YAMLCheckError as e:
        raise ConfigError(f"the value of {key!r}: {e}") from None
    except (yaml.YAMLError, RecursionError) as e:
        raise ConfigError(f"cannot parse the value of {key!r}: {raw[:80]!r}") from e
    if "." in key:
        section, sub = key.split(".", 1)
        if section not in SECTIONS:
            raise ConfigError(f"unknown config section {section!r}{_suggest(section, SECTIONS)}")
        if section == "model" and sub.startswith("net."):
            cfg.model.net[sub[4:]] = value
            return
        set_value(cfg, section, sub, value)
        return
    if key in TOP:
        set_value(cfg, None, key, value)
        return
    owners = [s for s, cls in SECTIONS.items() if key in {f.name for f in fields(cls)}]
    if len(owners) == 1:
        set_value(cfg, owners[0], key, value)
    elif len(owners) > 1:
        raise ConfigError(f"key {key!r} is ambiguous; write one of {[f'{o}.{key}' for o in owners]}")
    else:
        every = sorted(TOP) + [f.name for cls in SECTIONS.values() for f in fields(cls)]
        raise ConfigError(f"unknown config key {key!r}{_suggest(key, every)}")


PRESETS_DIR = Path(__file__).parent / "configs"   # the YAML presets shipped in the package (package data)


def presets() -> dict[str, Path]:
    """The shipped presets by name (file stem), e.g. {'tiny': .../difflab/configs/tiny.yaml, ...}."""
    return {p.stem: p for p in sorted(PRESETS_DIR.glob("*.yaml"))}


def find_preset(path: str | Path) -> Path:
    """A config file: ``path`` if it is a file, else the shipped preset it names (``tiny``, ``tiny.yaml``, or
    ``configs/tiny.yaml`` from a folder without the repository's configs/), else ``path`` unchanged."""
    p = Path(path)
    if p.is_file():
        return p
    shipped = presets()
    if p.suffix in ("", ".yaml", ".yml") and (len(p.parts) == 1 or p.parent.name == "configs") and p.stem in shipped:
        return shipped[p.stem]
    return p


def read_yaml(path: str | Path, what: str = "config file"):
    """Read a YAML file (:func:`load_yaml`) or a shipped preset by name (:func:`find_preset`); a missing file, bad
    YAML, a key given twice in a mapping or nesting too deep is a one-line ConfigError naming the file (and the
    key and line)."""
    p = find_preset(path)
    if not p.exists():
        raise ConfigError(f"{what} {str(p)!r} does not exist (shipped presets: {', '.join(presets())}; "
                          "`difflab configs` lists them)")
    try:
        return load_yaml(p.read_text()) or {}
    except YAMLCheckError as e:
        raise ConfigError(f"{what} {str(p)!r}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} {str(p)!r} is not valid YAML: {' '.join(str(e).split())}") from e


def load_config(path: str | Path | None = None, overrides: list[str] | tuple = ()) -> Config:
    """Load a YAML preset (or the defaults when path is None) and apply key=value overrides."""
    cfg = from_dict(read_yaml(path) if path is not None else {})
    for item in overrides:
        parse_override(cfg, item)
    return validate(cfg)

"""Training losses, each ``loss(D, x0, cond, generator) -> per-sample loss [B]``.

- ``eps_mse``: the simple DDPM loss ||eps - eps_hat||^2 (Ho et al. 2020, eq. 14), eps_hat = (x - D(x))/sigma;
- ``eps_l1``: the same with |.| (the NTNU MNIST paper's choice);
- ``edm``: lambda(sigma) ||D(x0 + sigma n; sigma) - x0||^2 with lambda = (sigma^2 + sd^2)/(sigma sd)^2 and
  ln sigma ~ N(P_mean, P_std^2) (Karras et al. 2022, eq. 8 and Table 1);
- ``ce``: cross-entropy of a classifier ``C(x) -> logits`` against ``cond["class_labels"]``; with ``noisy=True``
  the noise-conditional classifier of classifier guidance (Dhariwal & Nichol 2021, Sec. 4), ``C(x0 + sigma n,
  sigma)`` with ln sigma ~ N(P_mean, P_std^2) as EDM's training distribution.
Losses are means over all non-batch dims. :class:`Objective` is what the trainer minimises for one batch: the
conditioning of the task (per-sample label dropout for diffusion models), then the batch mean of the loss.

``generator`` is one torch.Generator (rows drawn together), a list with one generator per sample, or a
:class:`BatchShare` (data-parallel training: every process draws the noise of the whole global batch from the
same generator and keeps its own rows ``rank::world_size``, so sample j's noise does not depend on the number
of processes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from difflab.utils import append_dims


@dataclass(frozen=True)
class BatchShare:
    """A generator for a global batch of ``global_size`` rows of which this process holds ``rank::world_size``."""

    generator: torch.Generator
    rank: int
    world_size: int
    global_size: int


def draw_rows(fn, generator, n: int) -> torch.Tensor:
    """``fn(k, gen) -> [k, ...]`` drawn for n rows from one generator, a per-sample list, or a BatchShare."""
    if isinstance(generator, BatchShare):
        s = generator
        out = fn(s.global_size, s.generator)[s.rank::s.world_size]
        if out.shape[0] != n:
            raise ValueError(f"this process holds {out.shape[0]} of the global batch of {s.global_size} "
                             f"(rank {s.rank} of {s.world_size}), but the batch has {n} rows")
        return out
    if isinstance(generator, (list, tuple)):
        if len(generator) != n:
            raise ValueError(f"got {len(generator)} generators for a batch of {n}")
        return torch.cat([fn(1, g) for g in generator])
    return fn(n, generator)


def randn_rows(shape, generator=None, device=None, dtype=None) -> torch.Tensor:
    """Standard normal noise of ``shape`` whose rows follow the generator convention above."""
    shape = tuple(shape)
    return draw_rows(lambda k, g: torch.randn((k, *shape[1:]), generator=g, device=device, dtype=dtype),
                     generator, shape[0])


def _unwrap(D):
    """The model behind a DistributedDataParallel wrapper (for attributes such as sigma_data)."""
    return getattr(D, "module", D)


def _noised(D, x0, sigma, generator):
    n = randn_rows(x0.shape, generator, device=x0.device, dtype=x0.dtype)
    return x0 + append_dims(sigma, x0.ndim) * n, n


class EpsLoss:
    """eps-prediction loss with p = 2 (MSE) or p = 1 (L1). Noise levels come from D.sample_train_sigma
    (uniform discrete t for DDPM models)."""

    def __init__(self, p: int = 2):
        if p not in (1, 2):
            raise ValueError(f"p must be 1 or 2, got {p}")
        self.p = p

    def __call__(self, D, x0, cond=None, generator=None):
        cond = cond or {}
        sigma = draw_rows(lambda k, g: _unwrap(D).sample_train_sigma(k, generator=g, device=x0.device),
                          generator, x0.shape[0])
        x, n = _noised(D, x0, sigma, generator)
        eps_hat = (x - D(x, sigma, **cond)) / append_dims(sigma, x.ndim)
        err = (eps_hat - n).abs() if self.p == 1 else (eps_hat - n) ** 2
        return err.flatten(1).mean(1)


class EDMLoss:
    """Karras et al. 2022, eq. 8 with the log-normal sigma distribution of Table 1."""

    def __init__(self, P_mean: float = -1.2, P_std: float = 1.2, sigma_data: float | None = None):
        if P_std <= 0:
            raise ValueError(f"P_std must be > 0, got {P_std}")
        self.P_mean, self.P_std, self.sigma_data = float(P_mean), float(P_std), sigma_data

    def __call__(self, D, x0, cond=None, generator=None):
        cond = cond or {}
        sd = self.sigma_data if self.sigma_data is not None else getattr(_unwrap(D), "sigma_data", 0.5)
        z = randn_rows((x0.shape[0],), generator, device=x0.device)
        sigma = (z * self.P_std + self.P_mean).exp()
        x, _ = _noised(D, x0, sigma, generator)
        weight = (sigma**2 + sd**2) / (sigma * sd) ** 2
        return weight * ((D(x, sigma, **cond) - x0) ** 2).flatten(1).mean(1)


def eps_mse_loss():
    return EpsLoss(p=2)


def eps_l1_loss():
    return EpsLoss(p=1)


def edm_loss(P_mean=-1.2, P_std=1.2, sigma_data=None):
    return EDMLoss(P_mean, P_std, sigma_data)


class CELoss:
    """Cross-entropy of a classifier against ``cond["class_labels"]``; ``noisy=True``: on x0 + sigma n with
    ln sigma ~ N(P_mean, P_std^2), the classifier told sigma (Dhariwal & Nichol 2021, Sec. 4)."""

    def __init__(self, noisy: bool = False, P_mean: float = -1.2, P_std: float = 1.2):
        self.noisy, self.P_mean, self.P_std = bool(noisy), float(P_mean), float(P_std)

    def logits(self, C, x0, generator=None):
        if not self.noisy:
            return C(x0)
        z = randn_rows((x0.shape[0],), generator, device=x0.device)
        sigma = (z * self.P_std + self.P_mean).exp()
        x, _ = _noised(C, x0, sigma, generator)
        return C(x, sigma)

    def __call__(self, C, x0, cond=None, generator=None):
        return F.cross_entropy(self.logits(C, x0, generator), cond["class_labels"], reduction="none")

    def mean(self, C, x0, cond=None, generator=None):
        """The batch mean through cross_entropy's own mean reduction (bit-identical to the earlier trainer's)."""
        return F.cross_entropy(self.logits(C, x0, generator), cond["class_labels"])


def ce_loss(noisy=False, P_mean=-1.2, P_std=1.2):
    return CELoss(noisy, P_mean, P_std)


class InfoNCELoss:
    """The symmetric InfoNCE loss of CLIP (van den Oord et al. 2018; Radford et al. 2021, Fig. 3) on images noised
    as GLIDE's noised CLIP (Nichol et al. 2022, Sec. 2.4): ``M(x0 + sigma n, sigma, tokens) -> logits [B, B]`` with
    ln sigma ~ N(P_mean, P_std^2). Rows whose captions are identical token sequences are all positives (the target
    is uniform over them), so two images captioned "a 7" are not pushed apart."""

    def __init__(self, P_mean: float = -1.2, P_std: float = 1.2):
        self.P_mean, self.P_std = float(P_mean), float(P_std)

    def mean(self, M, x0, cond=None, generator=None):
        tokens = cond["text_tokens"]
        z = randn_rows((x0.shape[0],), generator, device=x0.device)
        sigma = (z * self.P_std + self.P_mean).exp()
        x, _ = _noised(M, x0, sigma, generator)
        logits = M(x, sigma, tokens).float()
        same = (tokens[:, None, :] == tokens[None, :, :]).all(-1).float()
        target = same / same.sum(1, keepdim=True)
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def infonce_loss(P_mean=-1.2, P_std=1.2):
    return InfoNCELoss(P_mean, P_std)


def pick_captions(captions: torch.Tensor, p_drop: float = 0.0, generator=None) -> torch.Tensor:
    """One caption per row of ``captions`` [B, K, L] drawn from the generator, then (caption dropout for
    classifier-free guidance on text) each replaced by "no text" (padding) with probability p_drop."""
    B, K = captions.shape[:2]
    k = draw_rows(lambda n, g: torch.randint(K, (n,), generator=g, device=captions.device), generator, B)
    tokens = captions[torch.arange(B, device=captions.device), k]
    if p_drop > 0:
        keep = draw_rows(lambda n, g: torch.rand(n, generator=g, device=captions.device), generator, B) >= p_drop
        tokens = tokens * keep[:, None].to(tokens.dtype)
    return tokens


def kl_to_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) per sample, averaged over latent elements (Kingma & Welling 2014,
    App. B: -1/2 sum(1 + logvar - mean^2 - exp(logvar)))."""
    return 0.5 * (mean**2 + logvar.exp() - 1.0 - logvar).flatten(1).mean(1)


class VAELoss:
    """The KL autoencoder's loss (Kingma & Welling 2014; the first stage of Rombach et al. 2022, Sec. 3.1 and
    App. G, without their perceptual and adversarial terms): per sample, the pixel MSE of the reconstruction from
    z = mean + std * eps plus ``kl_weight`` times the KL of q(z|x) to N(0, I), each averaged over elements."""

    def __init__(self, kl_weight: float = 1e-4):
        if not kl_weight >= 0:
            raise ValueError(f"kl_weight must be >= 0, got {kl_weight}")
        self.kl_weight = float(kl_weight)

    def terms(self, model, x0, generator=None):
        """``(mse [B], kl [B])``; the noise is drawn with the latent's shape from ``generator``."""
        mean, logvar = _unwrap(model).encode(x0)
        z = mean + (0.5 * logvar).exp() * randn_rows(mean.shape, generator, device=x0.device, dtype=mean.dtype)
        recon = _unwrap(model).decode(z)
        return ((recon - x0) ** 2).flatten(1).mean(1), kl_to_standard_normal(mean, logvar)

    def __call__(self, model, x0, cond=None, generator=None):
        mse, kl = self.terms(model, x0, generator)
        return mse + self.kl_weight * kl


def vae_loss(kl_weight=1e-4):
    return VAELoss(kl_weight)


LOSSES = {"eps_mse": eps_mse_loss, "eps_l1": eps_l1_loss, "edm": edm_loss, "ce": ce_loss, "infonce": infonce_loss,
          "vae": vae_loss}


def make_loss(name: str, **kwargs):
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}")
    return LOSSES[name](**kwargs)


def drop_labels(labels: torch.Tensor, p: float, null_label: int, generator=None) -> torch.Tensor:
    """Per-sample label dropout for classifier-free guidance (Ho & Salimans 2022): each label is replaced
    by ``null_label`` independently with probability p (never the whole batch at once)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"label dropout p must be in [0, 1], got {p}")
    if p == 0 or labels is None:
        return labels
    keep = draw_rows(lambda k, g: torch.rand(k, generator=g, device=labels.device), generator, labels.shape[0]) >= p
    return torch.where(keep, labels, torch.full_like(labels, null_label))


class Objective:
    """The trainer's loss for one batch ``{"x", "class_labels"?, "cond_frames"?}``, per ``model.task``:

    - ``diffusion``: class labels with per-sample dropout (to ``num_classes``, the null label) when the model is
      class-conditional, conditioning frames as they are, then the batch mean of the diffusion loss;
    - ``classifier`` / ``noisy_classifier``: the batch mean of the ``ce`` loss against the labels;
    - ``clip``: InfoNCE between the images and one of their captions (``batch["captions"]`` [B, K, L]);
      a diffusion batch with captions conditions on one of them (``text_tokens``) with caption dropout
      ``label_dropout``.
    - ``vae``: the batch mean of the ``vae`` loss (no conditioning);
    - ``latent`` / ``superres``: as ``diffusion``, on the target and with the conditioning that the model's
      ``prepare_batch(x, generator)`` makes of the images (difflab.nets.latent).

    Random draws, in this order, from ``generator``: label dropout, the model's ``prepare_batch``, then the
    loss's own (sigma, noise)."""

    def __init__(self, loss, task: str = "diffusion", num_classes: int = 0, label_dropout: float = 0.0):
        self.loss, self.task = loss, task
        self.num_classes, self.label_dropout = int(num_classes), float(label_dropout)

    def __call__(self, model, batch: dict, generator=None) -> torch.Tensor:
        cond, x0 = {}, batch["x"]
        if "captions" in batch:  # text: one caption per image, dropped (diffusion only) for CFG on text
            p = self.label_dropout if self.task == "diffusion" else 0.0
            cond["text_tokens"] = pick_captions(batch["captions"], p, generator)
        if self.task == "clip":
            pass
        elif self.task in ("classifier", "noisy_classifier"):
            cond["class_labels"] = batch["class_labels"]
        elif self.task != "vae":
            if self.num_classes > 0 and "class_labels" in batch:
                cond["class_labels"] = drop_labels(batch["class_labels"], self.label_dropout, self.num_classes,
                                                   generator=generator)
            if "cond_frames" in batch:
                cond["cond_frames"] = batch["cond_frames"]
            prepare = getattr(_unwrap(model), "prepare_batch", None)
            if prepare is not None:
                x0, extra = prepare(x0, generator)
                cond.update(extra)
        if hasattr(self.loss, "mean"):
            return self.loss.mean(model, x0, cond, generator=generator)
        return self.loss(model, x0, cond, generator=generator).mean()


def objective_from_config(cfg) -> Objective:
    """The :class:`Objective` of a difflab.config.Config (model.task, loss.*, train.label_dropout)."""
    task, loss = cfg.model.task, cfg.loss
    if task in ("diffusion", "latent", "superres", "cascade"):
        fn = make_loss(loss.name, **({"P_mean": loss.P_mean, "P_std": loss.P_std} if loss.name == "edm" else {}))
    elif task == "clip":
        fn = make_loss("infonce", P_mean=loss.P_mean, P_std=loss.P_std)
    elif task == "vae":
        fn = make_loss("vae", kl_weight=loss.kl_weight)
    else:
        fn = make_loss("ce", noisy=task == "noisy_classifier", P_mean=loss.P_mean, P_std=loss.P_std)
    return Objective(fn, task, cfg.model.num_classes, cfg.train.label_dropout)

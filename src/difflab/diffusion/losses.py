"""Training losses, each ``loss(D, x0, cond, generator) -> per-sample loss [B]``.

- ``eps_mse``: the simple DDPM loss ||eps - eps_hat||^2 (Ho et al. 2020, eq. 14), eps_hat = (x - D(x))/sigma;
- ``eps_l1``: the same with |.| (the NTNU MNIST paper's choice);
- ``edm``: lambda(sigma) ||D(x0 + sigma n; sigma) - x0||^2 with lambda = (sigma^2 + sd^2)/(sigma sd)^2 and
  ln sigma ~ N(P_mean, P_std^2) (Karras et al. 2022, eq. 8 and Table 1).
Losses are means over all non-batch dims.
"""

from __future__ import annotations

import torch

from difflab.utils import append_dims


def _noised(D, x0, sigma, generator):
    n = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
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
        sigma = D.sample_train_sigma(x0.shape[0], generator=generator, device=x0.device)
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
        sd = self.sigma_data if self.sigma_data is not None else getattr(D, "sigma_data", 0.5)
        z = torch.randn(x0.shape[0], generator=generator, device=x0.device)
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


LOSSES = {"eps_mse": eps_mse_loss, "eps_l1": eps_l1_loss, "edm": edm_loss}


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
    keep = torch.rand(labels.shape[0], generator=generator, device=labels.device) >= p
    return torch.where(keep, labels, torch.full_like(labels, null_label))

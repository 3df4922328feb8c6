"""Diffusion core in sigma-space: schedules, preconditioners, losses."""

from difflab.diffusion.losses import LOSSES, edm_loss, eps_l1_loss, eps_mse_loss, make_loss
from difflab.diffusion.precond import (
    PRECONDS,
    EDMPrecond,
    Precond,
    VEPrecond,
    VPEpsPrecond,
    VPrecond,
    make_precond,
)
from difflab.diffusion.schedules import (
    ddpm_abar,
    ddpm_betas,
    ddpm_sigmas,
)

__all__ = [
    "LOSSES", "PRECONDS", "EDMPrecond", "Precond", "VEPrecond", "VPEpsPrecond", "VPrecond",
    "ddpm_abar", "ddpm_betas", "ddpm_sigmas", "edm_loss", "eps_l1_loss", "eps_mse_loss",
    "make_loss", "make_precond",
]

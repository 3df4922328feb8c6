"""Guidance transforms: classifier-free, classifier and particle guidance.

Each is an object with ``wrap(D) -> D'`` (see :mod:`difflab.guidance.base`); pass one or a list to any
sampler as ``guidance=``."""

from difflab.guidance.autoguidance import AutoGuidance
from difflab.guidance.base import Guidance
from difflab.guidance.cfg import ClassifierFreeGuidance
from difflab.guidance.classifier import ClassifierGuidance
from difflab.guidance.particle import ParticleGuidance
from difflab.guidance.projected import AdaptiveProjectedGuidance, CFGPlusPlus

__all__ = ["ClassifierFreeGuidance", "ClassifierGuidance", "Guidance", "ParticleGuidance"]
__all__ += ["AdaptiveProjectedGuidance", "AutoGuidance", "CFGPlusPlus"]

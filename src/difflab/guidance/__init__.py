"""Guidance transforms: classifier-free, classifier and particle guidance, and the diversity methods
(``diversity(name, group_size=, strength=)``, :mod:`difflab.guidance.diversity`).

Each is an object with ``wrap(D) -> D'`` (see :mod:`difflab.guidance.base`); pass one or a list to any
sampler as ``guidance=``."""

from difflab.guidance.autoguidance import AutoGuidance
from difflab.guidance.base import Guidance
from difflab.guidance.cfg import ClassifierFreeGuidance
from difflab.guidance.classifier import ClassifierGuidance
from difflab.guidance.diversity import DIVERSITY_METHODS, PRESETS, diversity
from difflab.guidance.particle import ParticleGuidance
from difflab.guidance.projected import AdaptiveProjectedGuidance, CFGPlusPlus

__all__ = ["DIVERSITY_METHODS", "PRESETS", "ClassifierFreeGuidance", "ClassifierGuidance", "Guidance",
           "ParticleGuidance", "diversity"]
__all__ += ["AdaptiveProjectedGuidance", "AutoGuidance", "CFGPlusPlus"]

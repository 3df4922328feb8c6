"""Guidance transforms: classifier-free, classifier and particle guidance."""

from difflab.guidance.base import Guidance

__all__ = ["Guidance"]

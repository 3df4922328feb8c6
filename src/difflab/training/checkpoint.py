"""Deprecated alias: checkpoint storage moved to :mod:`difflab.checkpoint` (issue 15); import from there."""

from difflab.checkpoint import *  # noqa: F403
from difflab.checkpoint import __all__  # noqa: F401

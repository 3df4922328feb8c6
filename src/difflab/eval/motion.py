"""Deprecated location: the frame metrics are in :mod:`difflab.eval.frames`, next-frame prediction in
:mod:`difflab.sampling.frames`, and the ``eval prior`` / ``eval motion`` runners in
:mod:`difflab.experiments.motion`. This module re-exports the first two for old imports."""

from difflab.eval.frames import *  # noqa: F403
from difflab.eval.frames import __all__ as _frames_all
from difflab.sampling.frames import next_frame_config, predict_next, rollout

__all__ = [*_frames_all, "next_frame_config", "predict_next", "rollout"]

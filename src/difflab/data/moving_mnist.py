"""Stochastic Moving MNIST (the thesis' variants), generated on the fly from MNIST digits, seeded.

One digit, resized to ``digit_size`` x ``digit_size`` (16; bilinear with antialiasing, like torchvision's
``Resize``), moves inside ``frame`` x ``frame`` frames (32). Positions are the digit box's top-left corner
``(row, col)`` in ``[0, frame - digit_size]`` (= [0, 16]), so the digit never leaves the frame; the frame's
centre is position ``(8, 8)``. Variants (DESIGN.md §4, the thesis' ``moving_mnist.py``):

- ``centre``: the digit in the middle of every frame (unconditional generation).
- ``free``: a random start, velocity components drawn from {-4, ..., 4} px/frame; when a move would leave
  the frame the digit stops at the wall and draws a new random velocity (the component normal to the wall
  points inwards, 1..4 px; the other one -4..4), as the thesis' non-deterministic mode does.
  (The thesis can also draw (0, 0), a digit standing still; kept, and left out of direction scores.)
- ``circle``: frame 0 at the centre, frame 1 moved by 4 px per axis to one of 8 directions 45 degrees apart
  (left, down-left, down, down-right, right, up-right, up, up-left: the thesis' order), frame 2 back at the
  centre, and so on; a new uniform direction each time the digit leaves the centre. The diagonal moves are
  4 * sqrt(2) = 5.7 px long (4 px per axis, as in the thesis).
- ``horizontal``: vertically centred, 2 px/frame left or right, turning round at the borders (columns 0 and
  16); whenever the digit is at the frame's centre (column 8, the crossing point: starts are even columns, so
  every crossing lands on it) the direction of the next move is drawn anew, right with probability
  ``p_right``. The initial direction is also drawn with ``p_right``.

Every sequence records its ground truth: ``directions[t]`` is the index (into :data:`DIRECTIONS`) of the
move from frame t to frame t + 1 (also for the last frame: the move that would follow), ``velocities[t]`` the
displacement (drow, dcol), and ``branch[t]`` whether that move was drawn at random at frame t (circle: at the
centre; horizontal: at the centre, or the initial draw; free: after a wall hit, or the initial draw), i.e.
whether the next frame is *not* determined by the history.

Frame datasets (:func:`make_frame_dataset`, what ``data.name: smmnist-<variant>`` trains on): item ``i`` is one
window of K conditioning frames and P predicted frames taken from sequence ``i`` (its own random digit).
The thesis iterates over whole sequences; here the window is drawn at random from (seed, i), and with
probability ``branch_share`` it is drawn among the windows whose last conditioning frame is a branch point,
so the multi-modal case is not rare: circle 1.0 (the thesis trains on centre -> direction pairs only),
horizontal 0.5 (a plain uniform window has the digit at the centre in the last conditioning frame only about
1 time in 8; with 0.5 it is about 56%), free 0 (uniform windows, as the thesis). This does not bias
p(right): the centre visits of a sequence are 8 frames apart whatever the directions (every excursion to a
wall and back takes 8 frames on either side), so choosing a branch window never looks at the draw it ends on.

Digits: the MNIST train split for ``split="train"``, the test split for ``split="test"``. ``digits=`` picks the
source: ``"mnist"`` (default), ``"synthetic"`` or ``"synthetic:N"`` (:class:`difflab.data.mnist.SyntheticDigits`,
no download; N digits, default 1024 for train and 256 for test), or a pair ``(images uint8 [N, h, w], labels)``.
The environment variable ``DIFFLAB_SMMNIST_DIGITS`` sets the default source (``synthetic`` for tests and smoke
runs: training from a config then never touches MNIST).

Determinism: sequence ``i`` depends only on (seed, i) and the digit source (its random draws come from a
``random.Random`` seeded with the integer (seed, i, 0), the window choice from (seed, i, 1)).
"""

from __future__ import annotations

from difflab.data.frames import (  # noqa: F401  (re-exported: the public import path)
    DEFAULT_BRANCH_SHARE,
    WINDOWS_PER_DIGIT,
    FrameDataset,
    eval_histories,
    make_frame_dataset,
)
from difflab.data.sequences import (  # noqa: F401  (re-exported: the public import path)
    CIRCLE_DIRECTIONS,
    CIRCLE_NAMES,
    CIRCLE_STEP,
    DIRECTION_NAMES,
    DIRECTIONS,
    ENV_DIGITS,
    FREE_MAX_SPEED,
    HORIZONTAL_DIRECTIONS,
    HORIZONTAL_NAMES,
    HORIZONTAL_STEP,
    VARIANTS,
    MovingMNIST,
    check_p_right,
    check_variant,
    load_digits,
)

__all__ = [
    "CIRCLE_DIRECTIONS",
    "DIRECTIONS",
    "DIRECTION_NAMES",
    "ENV_DIGITS",
    "FrameDataset",
    "HORIZONTAL_DIRECTIONS",
    "MovingMNIST",
    "VARIANTS",
    "eval_histories",
    "load_digits",
    "make_frame_dataset",
]

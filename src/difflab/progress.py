"""Progress bars (tqdm) for long work: off in the library unless asked for, on in the CLI on a terminal.

Library functions take ``progress: bool | None``; ``None`` follows the process default, which is off until the CLI
switches it on (:func:`set_default`) for a command whose standard error is a terminal and that was not given
``--quiet``. So a script or a test that imports difflab prints no bars, a pipe or a log file gets none, and an
interactive ``difflab sample ...`` shows one. This module imports nothing of difflab (utils level)."""

from __future__ import annotations

import sys

_DEFAULT = False


def set_default(on: bool) -> None:
    """Switch the process-wide default of ``progress=None`` (the CLI does, per command)."""
    global _DEFAULT
    _DEFAULT = bool(on)


def default() -> bool:
    return _DEFAULT


def on_terminal(quiet: bool = False, stream=None) -> bool:
    """Whether bars are wanted: not ``quiet`` and ``stream`` (default: standard error, where tqdm writes) is a TTY."""
    stream = sys.stderr if stream is None else stream
    try:
        return not quiet and bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


class _NoBar:
    """The do-nothing stand-in for a tqdm bar (iterates what it wraps)."""

    def __init__(self, iterable=None, **_):
        self.iterable, self.n = iterable, 0

    def __iter__(self):
        return iter(self.iterable if self.iterable is not None else ())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def update(self, k=1):
        self.n += k

    def set_postfix(self, *a, **k):
        pass

    def set_description(self, *a, **k):
        pass

    def close(self):
        pass


def bar(iterable=None, *, progress: bool | None = None, total=None, desc: str | None = None, unit: str = "it",
        leave: bool = False, **kw):
    """A tqdm bar over ``iterable`` (or a manual one with ``total``) when ``progress`` (None: the process default)
    is true, else a silent stand-in with the same methods (update, set_postfix, close, iteration)."""
    if not (default() if progress is None else progress):
        return _NoBar(iterable)
    import shutil

    from tqdm import tqdm

    # The size from $COLUMNS/$LINES or the terminal, 80 x 24 where a terminal reports none (a fresh pty reports
    # 0 x 0, where tqdm's own detection hides the bar).
    size = shutil.get_terminal_size((80, 24))
    kw.setdefault("ncols", size.columns)
    kw.setdefault("nrows", size.lines)
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, mininterval=0.2, **kw)


__all__ = ["bar", "default", "on_terminal", "set_default"]

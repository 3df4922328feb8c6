"""The run folder's life: one trainer at a time (an OS lock), no silent reuse of an old run, a strict JSON log.

- :class:`RunLock`: ``fcntl.flock`` (exclusive, non-blocking) on ``RUN/.lock``, held from the trainer's set-up to
  the end of its run. The file says who holds it (PID, host, start time); a second trainer on the same folder is
  refused with one line naming the holder. The kernel drops the lock when the holder exits, even by SIGKILL, so
  a stale file never blocks a new run (the file is left in place; its text is cleared on a clean release).
- :func:`claim_run_dir`: a fresh run (no ``resume``) into a folder that already holds a run (checkpoints or
  ``log.jsonl``) is refused, unless ``overwrite``, which moves the old run aside to ``RUN.old-<timestamp>``
  (never deletes it).
- :class:`RunLog`: ``log.jsonl`` is strict JSON (RFC 8259 has no NaN): a non-finite number is written as
  ``null`` and its key listed in ``"nonfinite"``. On resume from the checkpoint of step S the log is cut back to
  what that checkpoint had seen: step records after S, non-finite-step events of steps >= S (the resumed run redoes
  them) and an end-of-run record of more than S steps are dropped, with any half-written last line, then
  ``{"event": "resumed", "step": S, ...}`` is appended. So every step appears once, and the log describes the
  training that led to the weights (the dropped records described training whose weights were lost; the resumed
  run redoes those steps, bit-identically on the CPU).
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX: no lock
    fcntl = None

from difflab.checkpoint import list_checkpoints

LOCK_NAME, LOG_NAME = ".lock", "log.jsonl"


class RunFolderInUse(ValueError):
    """Another process holds the run folder's lock."""


class RunLock:
    """An exclusive ``flock`` on ``run_dir/.lock``; :meth:`release` (or process exit) frees it."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fh = None

    def acquire(self) -> RunLock:
        if fcntl is None or self._fh is not None:
            return self
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "holder unknown"
            fh.close()
            raise RunFolderInUse(f"{self.run_dir}: another training process is using this run folder ({holder}); "
                                 f"wait for it to end or stop it") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S %z')}\n")
        fh.flush()
        self._fh = fh
        return self

    @property
    def held(self) -> bool:
        return self._fh is not None

    def release(self):
        fh, self._fh = self._fh, None
        if fh is not None:
            fh.truncate(0)
            fh.flush()
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            fh.close()


def holds_run(run_dir: str | Path) -> bool:
    """Whether a folder already holds a training run: a log or a complete checkpoint."""
    return (Path(run_dir) / LOG_NAME).exists() or bool(list_checkpoints(run_dir))


def move_aside(run_dir: Path) -> Path:
    """Rename ``RUN`` to ``RUN.old-<timestamp>`` (a counter appended if that exists too); returns the new path."""
    stem = f"{run_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}"
    dest, k = run_dir.with_name(stem), 1
    while dest.exists():
        dest, k = run_dir.with_name(f"{stem}-{k}"), k + 1
    os.rename(run_dir, dest)
    return dest


def claim_run_dir(run_dir: str | Path, resume: bool = False, overwrite: bool = False, log=print) -> RunLock:
    """Lock ``run_dir`` for a training run and apply the fresh-run policy; returns the held lock."""
    run_dir = Path(run_dir)
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other (continue the run, or move it aside)")
    lock = RunLock(run_dir).acquire()
    try:
        if resume or not holds_run(run_dir):
            return lock
        if not overwrite:
            raise ValueError(f"{run_dir}: already holds a run (checkpoints or {LOG_NAME}); pass --resume to continue "
                             f"it, or --overwrite to move it aside to {run_dir.name}.old-<timestamp>")
        dest = move_aside(run_dir)
        new = RunLock(run_dir).acquire()  # before letting go of the old folder's lock
    except BaseException:
        lock.release()
        raise
    lock.release()
    log(f"moved the previous run in {run_dir} aside to {dest}")
    return new


def strict(record: dict) -> dict:
    """``record`` with every non-finite float (also in nested dicts) as None, the keys listed in "nonfinite"."""
    bad: list[str] = []

    def clean(v, key):
        if isinstance(v, float) and not math.isfinite(v):
            bad.append(key)
            return None
        if isinstance(v, dict):
            return {k: clean(x, f"{key}.{k}" if key else k) for k, x in v.items()}
        return v

    out = clean(record, "")
    return {**out, "nonfinite": bad} if bad else out


def _position(rec: dict) -> int | None:
    """The number of steps done when a record was written (a non-finite-step event names the step it skipped;
    the end-of-run record counts ``steps``)."""
    step = rec.get("steps") if rec.get("event") == "done" else rec.get("step")
    if not isinstance(step, int) or isinstance(step, bool):
        return None
    return step + 1 if rec.get("event") == "nonfinite_skipped" else step


class RunLog:
    """Append-only ``log.jsonl`` in strict JSON; a no-op when not ``enabled`` (DDP ranks other than 0)."""

    def __init__(self, run_dir: str | Path, enabled: bool = True):
        self.path, self.enabled = Path(run_dir) / LOG_NAME, enabled

    def write(self, record: dict):
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(strict({"time": time.time(), **record}), allow_nan=False) + "\n")

    def resumed(self, step: int, ckpt: Path | None) -> int:
        """Cut the log back to ``step`` (see the module docstring), append the resume record; returns the number
        of records dropped."""
        if not self.enabled:
            return 0
        kept, dropped = [], 0
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a half-written line of a killed run
                    dropped += 1
                    continue
                pos = _position(rec)
                if pos is not None and pos > step:
                    dropped += 1
                else:
                    kept.append(line + "\n")
            tmp = self.path.with_name(LOG_NAME + ".tmp")
            tmp.write_text("".join(kept))
            os.replace(tmp, self.path)
        self.write({"event": "resumed", "step": step, "checkpoint": ckpt.name if ckpt else None,
                    "dropped_records": dropped})
        return dropped

"""The single seam between hazard's primitives and an interleaving explorer.

Rules:
- Every operation on shared state in this project (atomics, controlled locks, waits) first
  calls ``checkpoint(obj, access, op)`` through the module global ``scheduler``. An explorer
  (``hazard.testing``) installs itself there; it may switch threads inside that call.
- With no explorer installed, a checkpoint costs one global load and one ``is None`` test.
  Primitives therefore inline ``if _checkpoint.scheduler is not None`` rather than calling a
  helper: a Python call would cost more than the check.
- A thread that waits for another (a spin loop, a contended lock) calls ``pause()`` between
  attempts. Under an explorer that parks the thread until another thread writes something it
  read, so spin loops cannot blow up the search; without one it backs off in real time.
"""

from __future__ import annotations

import enum
import time
from typing import Protocol

__all__ = [
    "Access",
    "Scheduler",
    "install",
    "monotonic",
    "pause",
    "scheduler",
    "sleep",
    "uninstall",
]


class Access(enum.IntEnum):
    """What a checkpointed operation does to the object it names."""

    READ = 1
    WRITE = 2
    RMW = 3  # read-modify-write: exchange, compare-exchange, fetch-add, lock acquire


class Scheduler(Protocol):
    """What an explorer implements to control the threads of a run."""

    def checkpoint(self, obj: object, access: Access, op: str) -> None:
        """Called before ``op`` touches ``obj``; may hand the baton to another thread."""

    def pause(self, timeout: float | None = None) -> bool:
        """Called by a thread that cannot progress until another thread writes.

        Returns False if ``timeout`` (seconds, on the explorer's clock) passed first.
        """

    def also(self, obj: object, access: Access) -> None:
        """Record that the step being run also touches ``obj`` (no switch happens here)."""

    def lock_acquired(self, lock: object) -> None:
        """Called after the calling thread took ``lock`` (for lock-order checks)."""

    def lock_released(self, lock: object) -> None:
        """Called before the calling thread releases ``lock``."""

    def now(self) -> float:
        """The explorer's clock, in seconds: it moves only when every thread waits."""


scheduler: Scheduler | None = None


def install(new: Scheduler) -> None:
    """Route every checkpoint to ``new`` until :func:`uninstall`.

    Raises:
        RuntimeError: another scheduler is already installed.

    """
    global scheduler
    if scheduler is not None:
        raise RuntimeError("a scheduler is already installed; explorers do not nest")
    scheduler = new


def uninstall(old: Scheduler) -> None:
    """Remove ``old``, which must be the installed scheduler.

    Raises:
        RuntimeError: ``old`` is not the installed scheduler.

    """
    global scheduler
    if scheduler is not old:
        raise RuntimeError("uninstall() of a scheduler that is not installed")
    scheduler = None


def pause(attempt: int = 0) -> None:
    """Wait a little before retrying something another thread must change first.

    Args:
        attempt: how many times the caller has already retried; real-time back-off grows with
            it (yield the GIL for the first few, then sleep up to a millisecond).

    """
    sched = scheduler
    if sched is not None:
        sched.pause()
    elif attempt < 16:
        time.sleep(0)
    else:
        time.sleep(min(1e-3, 1e-6 * (1 << min(attempt - 16, 10))))


def monotonic() -> float:
    """Seconds on the clock that timeouts use.

    Under an explorer that is its mock clock (so timed code is deterministic there);
    otherwise ``time.monotonic()``.
    """
    sched = scheduler
    return time.monotonic() if sched is None else sched.now()


def sleep(seconds: float) -> None:
    """Sleep on :func:`monotonic`'s clock: under an explorer a timed wait nobody ends early."""
    if seconds < 0:
        raise ValueError(f"sleep length must be >= 0, not {seconds!r}")
    sched = scheduler
    if sched is None:
        time.sleep(seconds)
        return
    # Nothing else writes what the sleeper read, so only the deadline ends the pause.
    deadline = sched.now() + seconds
    while sched.now() < deadline:
        sched.pause(deadline - sched.now())

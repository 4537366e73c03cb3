"""Errors the explorer raises or reports."""

from __future__ import annotations

from hazard._errors import HazardError, HazardUsageError

__all__ = [
    "Deadlock",
    "ExplorationFailed",
    "LockOrderInversion",
    "NondeterminismError",
    "ReplayDrift",
    "StepLimitExceeded",
    "UncontrolledThreadError",
]


class Deadlock(HazardError, RuntimeError):
    """Every live thread of a schedule waits for a write that no runnable thread can make."""


class StepLimitExceeded(HazardError, RuntimeError):
    """A schedule ran more steps than ``max_steps``: a livelock or an unbounded loop."""


class LockOrderInversion(HazardError, RuntimeError):
    """Two locks were taken in both orders in the explored schedules (lockdep's warning)."""


class NondeterminismError(HazardError, RuntimeError):
    """Replaying a schedule prefix gave other runnable threads: the body is not deterministic."""


class ReplayDrift(HazardUsageError):
    """A replay token no longer fits the code: it names a step that cannot happen now."""


class UncontrolledThreadError(HazardUsageError):
    """A thread the explorer does not control touched a checkpoint during exploration."""


class ExplorationFailed(HazardError, AssertionError):
    """Raised by the pytest plugin and ``ExploreResult.raise_failure()``; carries the report."""

"""The error hierarchy of ``hazard``: one root that is never raised itself, precise leaves."""

from __future__ import annotations

__all__ = ["HazardError", "HazardUsageError"]


class HazardError(Exception):
    """Root of every error ``hazard`` raises on purpose; never raised directly."""

    def __init__(self, *args: object) -> None:
        if type(self) is HazardError:
            raise TypeError("HazardError is abstract: raise one of its subclasses")
        super().__init__(*args)


class HazardUsageError(HazardError, ValueError):
    """A primitive was misused: a bad argument, or an operation in the wrong state."""

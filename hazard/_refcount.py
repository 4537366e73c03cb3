"""``refcount_t`` with the Linux kernel's semantics, on an :class:`~hazard.AtomicInt`.

Rules (from include/linux/refcount.h):
- The count is a signed 32-bit value. ``inc`` from zero is a use-after-free (``addition on 0``);
  a result above ``INT_MAX``, or any operation on a negative count, saturates it at
  ``REFCOUNT_SATURATED`` (``INT_MIN / 2``) where it stays: the object leaks instead of being
  freed early. A decrement that takes the count below zero is an ``underflow``.
- ``inc_not_zero`` fails (returns False) at zero: the object is already on its way out.
- ``dec_and_test`` returns True for exactly one caller: the one that dropped the last reference.
- Every violation is reported, with the caller's stack, to the reporter (default: raise a
  :class:`RefcountViolation`). The state change (saturation) happens before the report, as in
  the kernel, so a reporter that only logs leaves the count where the kernel would.
"""

from __future__ import annotations

import enum
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from hazard._atomics import AtomicInt
from hazard._errors import HazardError
from hazard._heap import HeapObject

__all__ = [
    "REFCOUNT_MAX",
    "REFCOUNT_SATURATED",
    "Refcount",
    "RefcountViolation",
    "Violation",
    "ViolationKind",
    "get_refcount_reporter",
    "set_refcount_reporter",
]

INT_MAX = 2**31 - 1
REFCOUNT_MAX = INT_MAX
REFCOUNT_SATURATED = -(2**30)  # INT_MIN / 2, as the kernel stores it


class ViolationKind(enum.Enum):
    """The kernel's ``enum refcount_saturation_type``; ``message`` is its warning text."""

    ADD_NOT_ZERO_OVF = "REFCOUNT_ADD_NOT_ZERO_OVF"
    ADD_OVF = "REFCOUNT_ADD_OVF"
    ADD_UAF = "REFCOUNT_ADD_UAF"
    SUB_UAF = "REFCOUNT_SUB_UAF"
    DEC_LEAK = "REFCOUNT_DEC_LEAK"

    @property
    def message(self) -> str:
        """The text refcount_warn_saturate() prints."""
        return _MESSAGES[self]


_MESSAGES = {
    ViolationKind.ADD_NOT_ZERO_OVF: "saturated; leaking memory.",
    ViolationKind.ADD_OVF: "saturated; leaking memory.",
    ViolationKind.ADD_UAF: "addition on 0; use-after-free.",
    ViolationKind.SUB_UAF: "underflow; use-after-free.",
    ViolationKind.DEC_LEAK: "decrement hit 0; leaking memory.",
}


@dataclass(frozen=True)
class Violation:
    """One refcount violation: what happened, to which counter, and where."""

    kind: ViolationKind
    name: str
    old: int
    stack: tuple[str, ...]

    def __str__(self) -> str:
        where = "".join(self.stack).rstrip()
        return f"refcount_t: {self.kind.message} ({self.name}, was {self.old})\n{where}"


class RefcountViolation(HazardError, RuntimeError):
    """Raised by the default reporter; carries the :class:`Violation`."""

    def __init__(self, violation: Violation) -> None:
        super().__init__(str(violation))
        self.violation = violation

    @property
    def kind(self) -> ViolationKind:
        """The kind of violation."""
        return self.violation.kind


Reporter = Callable[[Violation], None]


def _raise(violation: Violation) -> None:
    raise RefcountViolation(violation)


_reporter: Reporter = _raise


def set_refcount_reporter(reporter: Reporter | None) -> Reporter:
    """Install ``reporter`` for every Refcount (None restores raising); return the previous one."""
    global _reporter
    if reporter is not None and not callable(reporter):
        raise TypeError("refcount reporter must be callable or None")
    previous = _reporter
    _reporter = _raise if reporter is None else reporter
    return previous


def get_refcount_reporter() -> Reporter:
    """Return the reporter that violations go to."""
    return _reporter


class Refcount(HeapObject):
    """A kernel-style reference count.

    A Refcount is a HeapObject so that a struct can embed it (``__embedded__``): once the
    struct is freed, any operation on its count is reported as a use-after-free.

    Args:
        value: the initial count (the kernel's ``refcount_set``); 1 for a new object.
        name: names the counter in violation reports.

    """

    __slots__ = ("_refs", "name")
    __embedded__ = ("_refs",)

    def __init__(self, value: int = 1, name: str = "refcount") -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"refcount value must be an int, not {type(value).__name__}")
        if not 0 <= value <= REFCOUNT_MAX:
            raise ValueError(f"refcount value must be in 0..{REFCOUNT_MAX}, not {value}")
        self._refs = AtomicInt(value)
        self.name = name

    def read(self) -> int:
        """Return the current count (``refcount_read``)."""
        return self._refs.load()

    def set(self, value: int) -> None:
        """Set the count (``refcount_set``): only for an object nobody else can see yet."""
        if not 0 <= value <= REFCOUNT_MAX:
            raise ValueError(f"refcount value must be in 0..{REFCOUNT_MAX}, not {value}")
        self._refs.store(value)

    def inc(self) -> None:
        """Take a reference the caller knows exists (``refcount_inc``)."""
        old = self._refs.fetch_add(1)
        if old == 0:
            self._violate(ViolationKind.ADD_UAF, old)
        elif old < 0 or old >= INT_MAX:
            self._violate(ViolationKind.ADD_OVF, old)

    def inc_not_zero(self) -> bool:
        """Take a reference unless the count is zero (``refcount_inc_not_zero``)."""
        refs = self._refs
        old = refs.load()
        while old != 0:
            if refs.compare_exchange(old, old + 1 if old != INT_MAX else REFCOUNT_SATURATED):
                if old < 0 or old >= INT_MAX:
                    self._violate(ViolationKind.ADD_NOT_ZERO_OVF, old)
                return True
            old = refs.load()
        return False

    def dec_and_test(self) -> bool:
        """Drop a reference; return True if it was the last (``refcount_dec_and_test``)."""
        old = self._refs.fetch_add(-1)
        if old == 1:
            return True
        if old <= 0:
            self._violate(ViolationKind.SUB_UAF, old)
        return False

    def dec(self) -> None:
        """Drop a reference that must not be the last (``refcount_dec``)."""
        old = self._refs.fetch_add(-1)
        if old <= 1:
            self._violate(ViolationKind.DEC_LEAK, old)

    def _violate(self, kind: ViolationKind, old: int) -> None:
        # Saturate first, as refcount_warn_saturate() does, then report.
        self._refs.store(REFCOUNT_SATURATED)
        stack = tuple(traceback.format_stack()[:-2])
        _reporter(Violation(kind, self.name, old, stack))

    def __repr__(self) -> str:
        return f"<Refcount {self.name}={self._refs.peek()}>"

"""Atomic cells: the only way threads in this project share a mutable value.

Ordering contract (holds on free-threaded CPython, where no GIL orders anything):
- Every operation of :class:`AtomicRef` and :class:`AtomicInt` is sequentially consistent.
  Each is one C-level atomic instruction of the ``cereggii`` extension, whose operations are
  seq_cst (C11 ``memory_order_seq_cst``); there is no relaxed variant here on purpose.
- Consequence used by the hazard-pointer code: a ``store`` followed by a ``load`` of another
  cell in the same thread is never reordered (the Dekker pattern "publish; reload" against
  "unpublish; scan" is sound without a separate fence).
- ``AtomicRef.compare_exchange`` compares by identity (``is``), like a pointer compare;
  ``AtomicInt.compare_exchange`` compares values. ``AtomicInt`` holds a signed 64-bit value:
  results outside that range raise ``OverflowError`` and leave the cell unchanged.

Explorer contract: each operation first calls the installed scheduler's ``checkpoint`` (see
``hazard._checkpoint``); with none installed that is one global load and one test. A
compare-exchange is announced as a read and reports its write (``also``) only if it succeeded:
a failed one changes nothing, so it must not wake threads waiting for a change (two threads
retrying failed exchanges would otherwise wake each other forever).

Why cereggii and not a lock per cell: tools/bench_hazard.py measures both in one run; a
compare-exchange under a ``threading.Lock`` costs about twice the C-level one here.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import cereggii

from hazard import _checkpoint as _cp
from hazard._checkpoint import Access
from hazard._heap import HeapObject

__all__ = ["AtomicInt", "AtomicRef"]

T = TypeVar("T")

_READ = Access.READ
_WRITE = Access.WRITE
_RMW = Access.RMW


class _Atomic(HeapObject, Generic[T]):
    """The operations both cells share; ``_cell`` is a cereggii atomic of the right kind.

    A HeapObject so that a struct on the emulated heap can embed a cell (``__embedded__``):
    after the struct is freed, every operation on the cell is a use-after-free.
    """

    __slots__ = ("_cell",)
    _cell: Any

    def load(self) -> T:
        """Return the current value."""
        if _cp.scheduler is not None:
            _cp.scheduler.checkpoint(self, _READ, "load")
        value: T = self._cell.get()
        return value

    def store(self, value: T) -> None:
        """Replace the value."""
        if _cp.scheduler is not None:
            _cp.scheduler.checkpoint(self, _WRITE, "store")
        self._cell.set(value)

    def exchange(self, value: T) -> T:
        """Replace the value and return the previous one."""
        if _cp.scheduler is not None:
            _cp.scheduler.checkpoint(self, _RMW, "exchange")
        old: T = self._cell.get_and_set(value)
        return old

    def compare_exchange(self, expected: T, desired: T) -> bool:
        """Store ``desired`` if the value is ``expected``; return whether it did.

        ``AtomicRef`` compares by identity (``is``), ``AtomicInt`` by value.
        """
        if _cp.scheduler is not None:
            _cp.scheduler.checkpoint(self, _READ, "compare_exchange")
        done: bool = self._cell.compare_and_set(expected, desired)
        if done and _cp.scheduler is not None:
            _cp.scheduler.also(self, _WRITE)  # only a successful exchange writes
        return done

    def peek(self) -> T:
        """Return the value without a checkpoint: for reports and ``repr`` only, never logic."""
        value: T = self._cell.get()
        return value

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._cell.get()!r}>"


class AtomicRef(_Atomic[T]):
    """A reference that threads load, store and swap atomically (sequentially consistent)."""

    __slots__ = ()

    def __init__(self, value: T) -> None:
        self._cell = cereggii.AtomicRef(value)


class AtomicInt(_Atomic[int]):
    """A signed 64-bit integer that threads update atomically (sequentially consistent)."""

    __slots__ = ()

    def __init__(self, value: int = 0) -> None:
        if not isinstance(value, int):
            raise TypeError(f"AtomicInt value must be an int, not {type(value).__name__}")
        if not -(2**63) <= value < 2**63:
            raise OverflowError(f"AtomicInt value {value} is outside the signed 64-bit range")
        self._cell = cereggii.AtomicInt64(value)

    def fetch_add(self, delta: int) -> int:
        """Add ``delta`` (may be negative) and return the previous value."""
        if _cp.scheduler is not None:
            _cp.scheduler.checkpoint(self, _RMW, "fetch_add")
        old: int = self._cell.get_and_increment(delta)
        return old

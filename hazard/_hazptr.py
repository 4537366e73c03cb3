"""Hazard pointers: Desnoyers' protect/synchronize and Michael's deferred reclamation.

Rules and invariants:
- A slot is a :class:`~hazard.AtomicRef` in the domain's push-only list of slot records. A
  record is owned by at most one thread at a time (its ``active`` flag, taken by
  compare-exchange); a thread grows its set of records on demand and gives them back to the
  domain when it exits, so another thread can take them over.
- Reader (``protect``): load the source, store the pointer into an owned slot, reload the
  source; if it changed, retry. Writer: unpublish (store None into the source) before
  ``synchronize(obj)`` / ``retire(obj)``, which then read every slot. All four are sequentially
  consistent operations (see ``hazard._atomics``), so this is a Dekker pattern: either the
  reader's reload sees the unpublish, or the writer's scan sees the reader's slot.
- Retired objects wait in one domain-wide list guarded by a lock. A scan runs whenever an
  append makes the list reach ``slots + R`` entries (``slots`` = slot records in the domain,
  ``R`` = ``scan_threshold``) and removes every entry that no slot holds. Bound: a scan leaves
  at most ``slots`` entries (each slot holds one pointer and an object is never retired twice
  while pending), so the list never holds more than ``slots + R`` objects: ``H*N + R`` for N
  threads with H slots each, however long a reader stalls.
- Reclaim callbacks run outside the lock, after the scan removed their objects from the list.
- Thread-private data (a thread's free slots) is touched only by its own thread and needs no
  atomics; everything another thread reads goes through atomics or the lock.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypeVar

from hazard import _checkpoint
from hazard._atomics import AtomicInt, AtomicRef
from hazard._errors import HazardUsageError
from hazard._sync import Lock

__all__ = ["HazardDomain", "HazardSlot", "HazardStatistics", "publish"]

T = TypeVar("T")

DEFAULT_SCAN_THRESHOLD = 64


@dataclass(frozen=True)
class HazardStatistics:
    """A snapshot of a :class:`HazardDomain`.

    Attributes:
        slots: slot records in the domain (owned by threads or free for reuse).
        protected: slots holding a pointer at the time of the snapshot.
        retired: objects retired and not yet reclaimed.
        reclaimed: objects reclaimed since the domain was created.
        scans: scans of the retired list run so far.
        bound: the most objects that can be retired and unreclaimed right now (slots + R).

    """

    slots: int
    protected: int
    retired: int
    reclaimed: int
    scans: int
    bound: int


class _SlotRecord:
    """One hazard pointer of the domain; ``next`` is set once, before the record is published."""

    __slots__ = ("active", "hazard", "next")

    def __init__(self, next_record: _SlotRecord | None) -> None:
        self.hazard: AtomicRef[object] = AtomicRef(None)
        self.active = AtomicInt(1)
        self.next = next_record


class HazardSlot(Generic[T]):
    """A reserved hazard pointer; use it only as ``with domain.protect(src) as obj``.

    Entering publishes the object that ``src`` holds and yields it (None if ``src`` holds
    None); leaving clears the slot and gives it back to the thread for the next ``protect``.
    """

    __slots__ = ("_free", "_record", "_src", "_state")

    _IDLE, _RESERVED, _ENTERED = 0, 1, 2

    def __init__(self, record: _SlotRecord, free: list[HazardSlot[Any]]) -> None:
        self._record = record
        self._free = free
        self._src: AtomicRef[T | None] | None = None
        self._state = self._IDLE

    def __enter__(self) -> T | None:
        if self._state != self._RESERVED:
            raise HazardUsageError("a hazard slot is entered once, right after protect()")
        self._state = self._ENTERED
        src = self._src
        assert src is not None
        return publish(self._record.hazard, src)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def release(self) -> None:
        """Clear the hazard pointer and give the slot back (the seed's ``hp_retire``)."""
        if self._state != self._ENTERED:
            raise HazardUsageError("release of a hazard slot this thread does not hold")
        self._record.hazard.store(None)
        self._state = self._IDLE
        self._src = None
        self._free.append(self)

    def holds(self) -> object:
        """Return what the slot protects now (None when idle)."""
        return self._record.hazard.peek()

    def __repr__(self) -> str:
        return f"<HazardSlot holding {self._record.hazard.peek()!r}>"


def publish(hazard: AtomicRef[object], src: AtomicRef[T | None]) -> T | None:
    """Publish what ``src`` holds in ``hazard`` until a reload confirms it (or it is None)."""
    obj = src.load()
    while obj is not None:
        hazard.store(obj)
        again = src.load()  # seq_cst store then load: the full barrier of the recipe
        if again is obj:
            return obj
        obj = again
    return None


class _ThreadSlots:
    """A thread's slots; dropped with the thread's ``threading.local`` storage when it exits."""

    __slots__ = ("__weakref__", "free", "owned")

    def __init__(self) -> None:
        self.free: list[HazardSlot[Any]] = []
        self.owned: list[_SlotRecord] = []


def _hand_back(domain: weakref.ref[HazardDomain], owned: list[_SlotRecord]) -> None:
    # Runs when a thread exits: its records go back to the domain for other threads. It also
    # runs when the domain itself dies (its threading.local goes with it): then nobody can see
    # the records, and touching them would only add steps to whatever schedule is running.
    if domain() is None:
        return
    for record in owned:
        record.hazard.store(None)
        record.active.store(0)


class HazardDomain:
    """A set of hazard pointers shared by threads, with deferred reclamation.

    Args:
        scan_threshold: R, how far the retired list may grow beyond the number of slots before
            a scan runs; at least 1.
        name: shown in ``repr`` and reports.

    """

    def __init__(self, scan_threshold: int = DEFAULT_SCAN_THRESHOLD, name: str = "hazptr") -> None:
        if not isinstance(scan_threshold, int) or scan_threshold < 1:
            raise ValueError(f"scan_threshold must be an int >= 1, not {scan_threshold!r}")
        self.name = name
        self._threshold = scan_threshold
        self._head: AtomicRef[_SlotRecord | None] = AtomicRef(None)
        self._nslots = AtomicInt(0)
        self._local = threading.local()
        self._retire_lock = Lock(f"{name}.retire")
        # Guarded by _retire_lock: pending objects in retire order, and their ids for the
        # double-retire check (each pending entry keeps its object alive, so ids are stable).
        self._retired: list[tuple[object, Callable[[Any], None]]] = []
        self._retired_ids: set[int] = set()
        self._reclaimed = AtomicInt(0)
        self._scans = AtomicInt(0)

    # -- readers ---------------------------------------------------------------------------

    def protect(self, src: AtomicRef[T | None]) -> HazardSlot[T]:
        """Reserve a hazard slot that, once entered, protects what ``src`` points to.

        Args:
            src: the published pointer.

        Returns:
            A context manager yielding the protected object, or None if ``src`` held None.

        Raises:
            TypeError: ``src`` is not an AtomicRef.

        """
        if type(src) is not AtomicRef:
            raise TypeError(f"protect() needs an AtomicRef, not {type(src).__name__}")
        slot: HazardSlot[T] = self._reserve()
        slot._src = src
        slot._state = HazardSlot._RESERVED
        return slot

    def _reserve(self) -> HazardSlot[Any]:
        # The slot-taking half of protect(), for callers in this package that publish and
        # release within one function (hpref) and so need no context-manager state.
        try:
            free = self._local.slots.free
        except AttributeError:
            free = self._thread_slots().free
        return free.pop() if free else self._grow()

    def _thread_slots(self) -> _ThreadSlots:
        mine = _ThreadSlots()
        weakref.finalize(mine, _hand_back, weakref.ref(self), mine.owned)
        self._local.slots = mine
        return mine

    def _grow(self) -> HazardSlot[Any]:
        mine: _ThreadSlots = self._local.slots
        record = self._take_free_record()
        if record is None:
            record = _SlotRecord(None)
            while True:
                head = self._head.load()
                record.next = head
                if self._head.compare_exchange(head, record):
                    break
            self._nslots.fetch_add(1)
        mine.owned.append(record)
        return HazardSlot(record, mine.free)

    def _take_free_record(self) -> _SlotRecord | None:
        record = self._head.load()
        while record is not None:
            if record.active.load() == 0 and record.active.compare_exchange(0, 1):
                return record
            record = record.next
        return None

    # -- writers ---------------------------------------------------------------------------

    def synchronize(self, obj: object) -> None:
        """Return once no hazard slot holds ``obj`` (the seed's ``hp_scan``).

        The caller must already have unpublished ``obj``, so no new protection can start.

        Raises:
            HazardUsageError: ``obj`` is None, or the calling thread itself protects ``obj``
                (it would wait for itself forever).

        """
        if obj is None:
            raise HazardUsageError("synchronize(None): there is nothing to wait for")
        self._check_not_protected_by_me(obj, "synchronize")
        record = self._head.load()
        while record is not None:
            attempt = 0
            while record.hazard.load() is obj:
                _checkpoint.pause(attempt)
                attempt += 1
            record = record.next

    def retire(self, obj: T, reclaim: Callable[[T], None]) -> None:
        """Hand ``obj`` over for reclamation: ``reclaim(obj)`` runs once no slot holds it.

        The caller must already have unpublished ``obj``. ``reclaim`` may run in this call (if
        it triggers a scan) or in a later ``retire`` or ``cleanup`` of any thread.

        Raises:
            HazardUsageError: ``obj`` is None, or is already retired and not yet reclaimed.
            TypeError: ``reclaim`` is not callable.

        """
        if obj is None:
            raise HazardUsageError("retire(None): only a real object can be retired")
        if not callable(reclaim):
            raise TypeError(f"reclaim must be callable, not {type(reclaim).__name__}")
        due: list[tuple[object, Callable[[Any], None]]] = []
        with self._retire_lock:
            if id(obj) in self._retired_ids:
                raise HazardUsageError(
                    f"retire() of {obj!r}, which is already retired and not yet reclaimed"
                )
            self._retired.append((obj, reclaim))
            self._retired_ids.add(id(obj))
            if len(self._retired) >= self._nslots.load() + self._threshold:
                due = self._scan_locked()
        _run_reclaims(due)

    def cleanup(self) -> None:
        """Scan now: reclaim every retired object that no slot holds (folly's hazptr_cleanup)."""
        with self._retire_lock:
            due = self._scan_locked()
        _run_reclaims(due)

    def _scan_locked(self) -> list[tuple[object, Callable[[Any], None]]]:
        protected: set[int] = set()
        record = self._head.load()
        while record is not None:
            held = record.hazard.load()
            if held is not None:
                protected.add(id(held))
            record = record.next
        keep: list[tuple[object, Callable[[Any], None]]] = []
        due: list[tuple[object, Callable[[Any], None]]] = []
        for entry in self._retired:
            (keep if id(entry[0]) in protected else due).append(entry)
        self._retired = keep
        for obj, _ in due:
            self._retired_ids.discard(id(obj))
        self._scans.fetch_add(1)
        self._reclaimed.fetch_add(len(due))
        return due

    def _check_not_protected_by_me(self, obj: object, what: str) -> None:
        mine: _ThreadSlots | None = getattr(self._local, "slots", None)
        if mine is not None:
            for record in mine.owned:
                if record.hazard.peek() is obj:
                    raise HazardUsageError(
                        f"{what}() of {obj!r}, which this thread protects: it would wait forever"
                    )

    # -- introspection ---------------------------------------------------------------------

    def statistics(self) -> HazardStatistics:
        """Return a snapshot of the domain's slots and reclamation counters."""
        slots = protected = 0
        record = self._head.peek()
        while record is not None:
            slots += 1
            protected += record.hazard.peek() is not None
            record = record.next
        with self._retire_lock:
            retired = len(self._retired)
        return HazardStatistics(
            slots=slots,
            protected=protected,
            retired=retired,
            reclaimed=self._reclaimed.peek(),
            scans=self._scans.peek(),
            bound=slots + self._threshold,
        )

    @property
    def scan_threshold(self) -> int:
        """R: how far the retired list may grow beyond the number of slots."""
        return self._threshold

    def __repr__(self) -> str:
        s = self.statistics()
        return (
            f"<HazardDomain {self.name} slots={s.slots} protected={s.protected} "
            f"retired={s.retired}/{s.bound}>"
        )


def _run_reclaims(due: list[tuple[object, Callable[[Any], None]]]) -> None:
    # Every callback runs even if one fails, so one bad reclaim leaks nothing else.
    errors: list[Exception] = []
    for obj, reclaim in due:
        try:
            reclaim(obj)
        except Exception as exc:
            errors.append(exc)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ExceptionGroup("several reclaim callbacks failed", errors)

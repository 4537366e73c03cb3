"""Userspace RCU: read-side critical sections, grace periods and deferred callbacks.

Rules and invariants:
- Each thread that reads gets one reader record per domain, registered on its first
  ``read_lock``: the registry is an :class:`~hazard.AtomicRef` to an immutable tuple of records,
  replaced by compare-exchange. A record's ``ctr`` is an :class:`~hazard.AtomicInt` that only
  grows: the outermost ``read_lock`` makes it odd, the outermost ``read_unlock`` makes it even.
  The nesting depth is thread-private (only the owning thread touches it).
- ``synchronize``: snapshot the registry, then for each record whose counter ``c`` is odd wait
  until it is no longer ``c``. Every operation is sequentially consistent (``hazard._atomics``),
  so this is a Dekker pattern: a reader's "make odd; load the pointer" against the updater's
  "unpublish; load the counter". Either the updater sees the odd counter and waits for that
  section to end, or the reader's load comes after the unpublish and cannot see the old object.
  A reader registered after the snapshot also loads after the unpublish. Sections that start
  after ``synchronize`` began are never waited for: the counter moved past ``c`` already.
- A thread that exits drops its record: the finalizer of an object held only in the domain's
  ``threading.local`` removes the record. A thread that exits inside a read section is a bug in
  the caller; its section is ended for it (the counter made even, counted in
  ``readers_abandoned``) so that it cannot block grace periods forever.
- ``call_rcu`` queues onto one list under a :class:`~hazard.Lock`; a daemon helper thread,
  started on the first ``call_rcu``, takes the whole queue, runs one grace period for the batch
  and invokes the callbacks in queue order. A callback that raises is recorded, never fatal to
  the helper; ``barrier`` re-raises the first error it has not reported yet.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

from hazard import _checkpoint
from hazard._atomics import AtomicInt, AtomicRef
from hazard._errors import HazardUsageError
from hazard._sync import Lock

__all__ = ["Rcu", "RcuStatistics"]

T = TypeVar("T")

# pause() backs off to 1 ms sleeps; capping the attempt at 16 + 8 caps a sleep at 256 us, so a
# grace period ends within about 0.3 ms of its last reader (the disconnect-to-free latency) for
# the price of ~4000 cheap polls a second while a long reader holds it up.
_MAX_PAUSE_ATTEMPT = 16 + 8


@dataclass(frozen=True)
class RcuStatistics:
    """A snapshot of an :class:`Rcu` domain.

    Attributes:
        readers_registered: threads with a reader record in the domain.
        readers_active: of those, the ones inside a read section at the time of the snapshot.
        readers_abandoned: threads that exited inside a read section (their sections were
            ended for them; each one is a bug in the caller).
        grace_periods: grace periods completed (``synchronize`` calls, the helper's included).
        callbacks_queued: callbacks ever passed to ``call_rcu``.
        callbacks_pending: queued callbacks not yet invoked.
        callbacks_invoked: callbacks invoked, including the ones that raised.
        callbacks_failed: callbacks that raised (their exceptions are in ``Rcu.errors``).

    """

    readers_registered: int
    readers_active: int
    readers_abandoned: int
    grace_periods: int
    callbacks_queued: int
    callbacks_pending: int
    callbacks_invoked: int
    callbacks_failed: int


class _Reader:
    """A thread's reader record; ``depth`` is touched only by the owning thread."""

    __slots__ = ("ctr", "depth")

    def __init__(self) -> None:
        self.ctr = AtomicInt(0)
        self.depth = 0


class _ThreadToken:
    """Held only by a thread's ``threading.local`` storage: its death means the thread exited."""

    __slots__ = ("__weakref__",)


class _Barrier:
    """A marker in the callback queue; the helper stores into ``done`` when it reaches it."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        # -1 while pending; then the number of callback errors recorded before the marker.
        self.done = AtomicInt(-1)


class _ReadSection:
    """``with rcu.read():``; stateless, so one instance serves every thread of the domain."""

    __slots__ = ("_rcu",)

    def __init__(self, rcu: Rcu) -> None:
        self._rcu = rcu

    # Rcu.read_lock and read_unlock, inlined: the with block is the common reader, and the
    # extra Python call per side would cost about a quarter of it.
    def __enter__(self) -> None:
        rcu = self._rcu
        try:
            reader: _Reader = rcu._local.reader
        except AttributeError:
            reader = rcu._register()
        if reader.depth == 0:
            reader.ctr.fetch_add(1)
        reader.depth += 1

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        reader: _Reader | None = getattr(self._rcu._local, "reader", None)
        if reader is None or reader.depth == 0:
            raise HazardUsageError("rcu_read_unlock() without a matching rcu_read_lock()")
        reader.depth -= 1
        if reader.depth == 0:
            reader.ctr.fetch_add(1)


def _thread_exited(domain_ref: weakref.ref[Rcu], reader: _Reader) -> None:
    # Runs as the thread's local storage is torn down; its owner is gone, so this is the only
    # writer of the counter now.
    abandoned = reader.ctr.load() & 1
    if abandoned:
        reader.ctr.fetch_add(1)
    domain = domain_ref()
    if domain is not None:
        domain._unregister(reader, abandoned=bool(abandoned))


class Rcu:
    """An RCU domain: readers that never block, updaters that wait for a grace period.

    Use it as a context manager to :meth:`close` it on leaving: once ``call_rcu`` has started
    the helper thread, that thread keeps the domain alive until :meth:`close`.

    Args:
        name: shown in ``repr`` and in the helper thread's name.

    """

    def __init__(self, name: str = "rcu") -> None:
        self.name = name
        self._readers: AtomicRef[tuple[_Reader, ...]] = AtomicRef(())
        self._local = threading.local()
        self._section = _ReadSection(self)
        self._abandoned = AtomicInt(0)
        self._grace_periods = AtomicInt(0)
        self._queued = AtomicInt(0)
        self._invoked = AtomicInt(0)
        self._failed = AtomicInt(0)
        self._lock = Lock(f"{name}.callbacks")
        # Guarded by _lock: the queue, the helper's lifecycle and the recorded errors.
        self._queue: list[Callable[[], None] | _Barrier] = []
        self._helper: threading.Thread | None = None
        self._helper_done = False
        self._closed = False
        self._errors: list[BaseException] = []
        self._reported = 0
        # The helper's idle sleep is the one wait here that an explorer cannot see: polling
        # with pause() would wake an idle helper up to a thousand times a second forever. Only
        # the helper waits on it, and everything it signals lives under _lock.
        self._wakeup = threading.Event()

    # -- readers ---------------------------------------------------------------------------

    def read_lock(self) -> None:
        """Enter a read-side critical section (``rcu_read_lock``); sections nest per thread."""
        try:
            reader: _Reader = self._local.reader
        except AttributeError:
            reader = self._register()
        if reader.depth == 0:
            reader.ctr.fetch_add(1)
        reader.depth += 1

    def read_unlock(self) -> None:
        """Leave a read-side critical section (``rcu_read_unlock``).

        Raises:
            HazardUsageError: the calling thread is not inside a read section.

        """
        reader: _Reader | None = getattr(self._local, "reader", None)
        if reader is None or reader.depth == 0:
            raise HazardUsageError("rcu_read_unlock() without a matching rcu_read_lock()")
        reader.depth -= 1
        if reader.depth == 0:
            reader.ctr.fetch_add(1)

    def read(self) -> AbstractContextManager[None]:
        """Return a context manager that holds a read section for a ``with`` block."""
        return self._section

    def dereference(self, src: AtomicRef[T]) -> T:
        """Load an RCU-protected pointer (``rcu_dereference``).

        The object stays valid until the calling thread leaves its outermost read section.

        Args:
            src: the published pointer.

        Returns:
            What ``src`` holds.

        Raises:
            HazardUsageError: the calling thread is not inside a read section.
            TypeError: ``src`` is not an AtomicRef.

        """
        reader: _Reader | None = getattr(self._local, "reader", None)
        if reader is None or reader.depth == 0:
            raise HazardUsageError("rcu_dereference() outside a read-side critical section")
        if type(src) is not AtomicRef:
            raise TypeError(f"rcu_dereference() needs an AtomicRef, not {type(src).__name__}")
        return src.load()

    def read_lock_held(self) -> bool:
        """Return whether the calling thread is inside a read section (``rcu_read_lock_held``)."""
        reader: _Reader | None = getattr(self._local, "reader", None)
        return reader is not None and reader.depth > 0

    def _register(self) -> _Reader:
        reader = _Reader()
        token = _ThreadToken()
        weakref.finalize(token, _thread_exited, weakref.ref(self), reader)
        while True:
            old = self._readers.load()
            if self._readers.compare_exchange(old, (*old, reader)):
                break
        self._local.reader = reader
        self._local.token = token
        return reader

    def _unregister(self, reader: _Reader, *, abandoned: bool) -> None:
        if abandoned:
            self._abandoned.fetch_add(1)
        while True:
            old = self._readers.load()
            new = tuple(r for r in old if r is not reader)
            if self._readers.compare_exchange(old, new):
                return

    # -- updaters --------------------------------------------------------------------------

    def synchronize(self) -> None:
        """Wait for a grace period (``synchronize_rcu``).

        Returns once every read section that was running when the call started has ended;
        sections that start later are not waited for.

        Raises:
            HazardUsageError: the calling thread is inside a read section.

        """
        if self.read_lock_held():
            raise HazardUsageError(
                "synchronize_rcu() inside a read-side critical section: "
                "it would wait for itself forever"
            )
        # Read every counter first, then wait: reading each one only when the wait for the
        # previous reader is over would also wait for sections that began after this call.
        running = []
        for reader in self._readers.load():
            seen = reader.ctr.load()
            if seen & 1:
                running.append((reader.ctr, seen))
        for ctr, seen in running:
            attempt = 0
            while ctr.load() == seen:
                _checkpoint.pause(attempt)
                attempt = min(attempt + 1, _MAX_PAUSE_ATTEMPT)
        self._grace_periods.fetch_add(1)

    def call_rcu(self, cb: Callable[[], None]) -> None:
        """Queue ``cb`` to run on the helper thread after a grace period (``call_rcu``).

        The grace period starts after this call, so every reader that could still see what
        ``cb`` frees has left its section when ``cb`` runs. Callbacks run in queue order.

        Args:
            cb: called with no arguments; what it raises is recorded (see :meth:`barrier`).

        Raises:
            TypeError: ``cb`` is not callable.
            HazardUsageError: the domain is closed.

        """
        if not callable(cb):
            raise TypeError(f"call_rcu callback must be callable, not {type(cb).__name__}")
        with self._lock:
            if self._closed:
                raise HazardUsageError(f"call_rcu() on {self.name}, which is closed")
            self._queue.append(cb)
            self._queued.fetch_add(1)
            helper = self._helper
            start = helper is None
            if helper is None:
                helper = self._helper = threading.Thread(
                    target=self._helper_main, name=f"{self.name} call_rcu helper", daemon=True
                )
        if start:
            helper.start()
        self._wakeup.set()

    def barrier(self) -> None:
        """Wait until every callback queued before this call has run (``rcu_barrier``).

        Raises:
            HazardUsageError: the calling thread is inside a read section, or is the helper
                thread (a callback); either would wait for itself forever.
            BaseException: the first callback error that no earlier ``barrier`` raised, among
                those recorded by the time the callbacks queued before this call had run (all
                of them stay in :attr:`errors`).

        """
        if self.read_lock_held():
            raise HazardUsageError(
                "rcu_barrier() inside a read-side critical section: "
                "it would wait for itself forever"
            )
        if self._on_helper():
            raise HazardUsageError(
                "rcu_barrier() from a call_rcu callback: it would wait for itself forever"
            )
        marker = _Barrier()
        with self._lock:
            # With no helper, or one that drained and exited, nothing can be pending.
            idle = self._helper is None or self._helper_done
            if idle:
                errors_before = len(self._errors)
            else:
                self._queue.append(marker)
        if not idle:
            self._wakeup.set()
            attempt = 0
            while (errors_before := marker.done.load()) < 0:
                _checkpoint.pause(attempt)
                attempt = min(attempt + 1, _MAX_PAUSE_ATTEMPT)
        with self._lock:
            if self._reported >= errors_before:
                return
            first = self._errors[self._reported]
            self._reported = errors_before
        raise first

    @property
    def errors(self) -> tuple[BaseException, ...]:
        """Every exception raised by a callback so far, in the order they were raised."""
        with self._lock:
            return tuple(self._errors)

    def close(self) -> None:
        """Run every queued callback, then stop the helper thread; idempotent.

        Readers and ``synchronize`` keep working; ``call_rcu`` is refused afterwards. Errors of
        the drained callbacks are left in :attr:`errors` (a later ``barrier`` raises them).

        Raises:
            HazardUsageError: the calling thread is inside a read section, or is the helper
                thread (a callback); either would wait for itself forever.

        """
        if self.read_lock_held():
            raise HazardUsageError(
                "close() inside a read-side critical section: it would wait for itself forever"
            )
        if self._on_helper():
            raise HazardUsageError(
                "close() from a call_rcu callback: it would wait for itself forever"
            )
        with self._lock:
            self._closed = True
            helper = self._helper
        if helper is not None:
            self._wakeup.set()
            helper.join()

    def _on_helper(self) -> bool:
        with self._lock:
            helper = self._helper
        return helper is threading.current_thread()

    def _helper_main(self) -> None:
        while True:
            # Clear before looking at the queue: a call_rcu that appends after the look sets
            # the event after this clear, so the wait below cannot miss it.
            self._wakeup.clear()
            with self._lock:
                batch, self._queue = self._queue, []
                if not batch and self._closed:
                    self._helper_done = True
                    return
            if not batch:
                self._wakeup.wait()
                continue
            if not all(isinstance(entry, _Barrier) for entry in batch):
                self.synchronize()
            for entry in batch:
                if isinstance(entry, _Barrier):
                    entry.done.store(self._failed.load())
                else:
                    self._invoke(entry)

    def _invoke(self, cb: Callable[[], None]) -> None:
        # BaseException too: a callback's SystemExit would otherwise end the helper silently
        # and leave every later barrier() waiting forever.
        try:
            cb()
        except BaseException as exc:
            self._record(exc)
        reader: _Reader | None = getattr(self._local, "reader", None)
        if reader is not None and reader.depth > 0:
            # The next grace period would wait for this very thread forever: end the section.
            reader.depth = 0
            reader.ctr.fetch_add(1)
            self._record(
                HazardUsageError(
                    f"call_rcu callback {cb!r} returned inside a read-side critical section"
                )
            )
        self._invoked.fetch_add(1)

    def _record(self, exc: BaseException) -> None:
        with self._lock:
            self._errors.append(exc)
            self._failed.fetch_add(1)

    # -- context manager and introspection -------------------------------------------------

    def __enter__(self) -> Rcu:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def statistics(self) -> RcuStatistics:
        """Return a snapshot of the domain's readers, grace periods and callbacks."""
        readers = self._readers.peek()
        # Invoked before queued, so that pending is never negative.
        invoked = self._invoked.peek()
        queued = self._queued.peek()
        return RcuStatistics(
            readers_registered=len(readers),
            readers_active=sum(r.ctr.peek() & 1 for r in readers),
            readers_abandoned=self._abandoned.peek(),
            grace_periods=self._grace_periods.peek(),
            callbacks_queued=queued,
            callbacks_pending=queued - invoked,
            callbacks_invoked=invoked,
            callbacks_failed=self._failed.peek(),
        )

    def __repr__(self) -> str:
        s = self.statistics()
        return (
            f"<Rcu {self.name} readers={s.readers_active}/{s.readers_registered} "
            f"grace_periods={s.grace_periods} pending={s.callbacks_pending}>"
        )

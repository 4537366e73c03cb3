"""A mutex, a condition variable, an event and a reader-writer semaphore the explorer sees.

Rules:
- Without an explorer, :class:`Lock` is a ``threading.Lock`` plus one checkpoint test.
- Under an explorer, ``acquire`` never blocks in the OS: it checkpoints, tries the lock, and if
  the lock is held calls ``pause()``, which parks the thread until another thread writes the
  lock (a release). A deadlock is then visible to the explorer as "every thread paused".
- Ownership is recorded so that releasing a lock this thread does not hold fails loudly.
- A wait (Condition, Event) is a flag in an AtomicInt: under an explorer the waiter reads it
  and pauses until a notifier writes it, so a missed wake-up shows up as a deadlock; without
  one, the waiter blocks on a raw lock or condition that the notifier releases.
"""

from __future__ import annotations

import _thread
import sys
import threading
from collections.abc import Callable
from types import TracebackType

from hazard import _checkpoint as _cp
from hazard._atomics import AtomicInt
from hazard._checkpoint import Access
from hazard._errors import HazardUsageError

__all__ = ["Condition", "Event", "Lock", "RwSemaphore"]


class Lock:
    """A non-reentrant mutex whose acquire and release are explorer checkpoints.

    Args:
        name: shown in ``repr`` and in explorer reports.

    """

    __slots__ = ("__weakref__", "_lock", "_owner", "lock_class", "name")

    def __init__(self, name: str = "lock") -> None:
        self.name = name
        self._lock = _thread.allocate_lock()
        # Written only by the holder while it holds the lock; read by the holder to validate.
        self._owner: int | None = None
        # Lockdep's "lock class": the name and where the lock was made. Stable across the
        # schedules of an exploration (unlike id()), so lock orders seen in different runs can
        # be compared; only computed under an explorer.
        self.lock_class: tuple[str, str] | None = None
        if _cp.scheduler is not None:
            caller = sys._getframe(1)
            site = f"{caller.f_code.co_filename}:{caller.f_lineno}"
            self.lock_class = (name, site)

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock; with ``blocking=False`` return False instead of waiting."""
        me = threading.get_ident()
        if self._owner == me:
            raise HazardUsageError(f"{self.name}: acquire() of a Lock this thread already holds")
        sched = _cp.scheduler
        if sched is None:
            if not self._lock.acquire(blocking):
                return False
        else:
            # A failed attempt only reads the lock: it must not wake the other waiters, or
            # two of them would wake each other forever while the holder never runs.
            while True:
                sched.checkpoint(self, Access.READ, "acquire")
                if self._lock.acquire(False):
                    break
                if not blocking:
                    return False
                sched.pause()
            sched.also(self, Access.WRITE)
            sched.lock_acquired(self)
        self._owner = me
        return True

    def release(self) -> None:
        """Release the lock, which this thread must hold."""
        if self._owner != threading.get_ident():
            raise HazardUsageError(f"{self.name}: release() of a Lock this thread does not hold")
        sched = _cp.scheduler
        try:
            if sched is not None:
                sched.lock_released(self)
                sched.checkpoint(self, Access.WRITE, "release")
        finally:
            # Released even when an explorer unwinds this thread, so the lock stays usable.
            self._owner = None
            self._lock.release()

    def locked(self) -> bool:
        """Return whether some thread holds the lock (a snapshot, for assertions and reports)."""
        return self._lock.locked()

    def held_by_me(self) -> bool:
        """Return whether the calling thread holds the lock."""
        return self._owner == threading.get_ident()

    def __enter__(self) -> Lock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        state = f"held by {self._owner}" if self._lock.locked() else "free"
        return f"<Lock {self.name} {state}>"


# The real primitives, captured before an explorer patches the threading module.
_RealCondition = threading.Condition


class _Ticket:
    """One waiter's wake-up: a flag the explorer sees, a raw lock for real-time blocking."""

    __slots__ = ("_gate", "flag")

    def __init__(self) -> None:
        self.flag = AtomicInt(0)
        self._gate = _thread.allocate_lock()
        self._gate.acquire()

    def signal(self) -> None:
        self.flag.store(1)
        self._gate.release()

    def wait(self, timeout: float | None) -> bool:
        sched = _cp.scheduler
        if sched is None:
            return self._gate.acquire(True, -1 if timeout is None else timeout)
        while not self.flag.load():
            if not sched.pause(timeout):
                return bool(self.flag.load())
        return True


class Condition:
    """A condition variable over a :class:`Lock`, whose waits and wake-ups the explorer sees.

    Waiters are woken in FIFO order; ``notify`` and ``wait`` need the lock held, as in
    ``threading.Condition``.
    """

    def __init__(self, lock: Lock | None = None, name: str = "cond") -> None:
        if lock is not None and not isinstance(lock, Lock):
            raise TypeError(f"Condition needs a hazard Lock, not {type(lock).__name__}")
        self.name = name
        self._lock = lock if lock is not None else Lock(name)
        self._waiters: list[_Ticket] = []  # guarded by self._lock

    def acquire(self, blocking: bool = True) -> bool:
        """Take the underlying lock."""
        return self._lock.acquire(blocking)

    def release(self) -> None:
        """Release the underlying lock."""
        self._lock.release()

    def __enter__(self) -> Condition:
        self._lock.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._lock.release()

    def _check_held(self, what: str) -> None:
        if not self._lock.held_by_me():
            raise HazardUsageError(f"{self.name}: {what}() on a Condition whose lock is not held")

    def wait(self, timeout: float | None = None) -> bool:
        """Release the lock, wait for a notify (or ``timeout`` seconds), re-take the lock.

        Returns:
            False if the wait timed out.

        """
        self._check_held("wait")
        ticket = _Ticket()
        self._waiters.append(ticket)
        self._lock.release()
        try:
            woken = ticket.wait(timeout)
        finally:
            self._lock.acquire()
        if not woken and ticket in self._waiters:
            self._waiters.remove(ticket)
        return woken

    def wait_for(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        """Wait until ``predicate()`` is true; return its last value."""
        result = predicate()
        while not result:
            if not self.wait(timeout):
                return predicate()
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        """Wake up to ``n`` waiters."""
        self._check_held("notify")
        woken, self._waiters = self._waiters[:n], self._waiters[n:]
        for ticket in woken:
            ticket.signal()

    def notify_all(self) -> None:
        """Wake every waiter."""
        self.notify(len(self._waiters))


class Event:
    """A one-bit flag threads wait on, whose waits and wake-ups the explorer sees."""

    __slots__ = ("_cond", "_flag", "name")

    def __init__(self, name: str = "event") -> None:
        self.name = name
        self._flag = AtomicInt(0)
        self._cond = _RealCondition(_thread.allocate_lock())

    def is_set(self) -> bool:
        """Return whether the flag is set."""
        return bool(self._flag.load())

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        self._flag.store(1)
        with self._cond:
            self._cond.notify_all()

    def clear(self) -> None:
        """Clear the flag."""
        self._flag.store(0)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the flag is set (or ``timeout`` seconds); return the flag."""
        sched = _cp.scheduler
        if sched is None:
            with self._cond:
                return self._cond.wait_for(self._flag.peek, timeout) != 0
        while not self._flag.load():
            if not sched.pause(timeout):
                return bool(self._flag.load())
        return True

    def __repr__(self) -> str:
        return f"<Event {self.name} {'set' if self._flag.peek() else 'clear'}>"


class RwSemaphore:
    """A reader-writer semaphore (the kernel's ``rw_semaphore``) the explorer can see.

    Many readers or one writer. A waiting writer holds off new readers, so writers do not
    starve; as in the kernel, a reader that re-enters while a writer waits deadlocks, and the
    explorer reports it. Built on :class:`Lock` and :class:`Condition`, so every wait and
    wake-up is a checkpoint.

    Args:
        name: shown in ``repr`` and in explorer reports.

    """

    def __init__(self, name: str = "rwsem") -> None:
        self.name = name
        self._cond = Condition(Lock(f"{name}.wait_lock"), name=name)
        # Guarded by the condition's lock.
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    def down_read(self) -> None:
        """Take the semaphore for reading."""
        with self._cond:
            self._cond.wait_for(lambda: not self._writer and not self._writers_waiting)
            self._readers += 1

    def up_read(self) -> None:
        """Release a read hold."""
        with self._cond:
            if self._readers == 0:
                raise HazardUsageError(f"{self.name}: up_read() without a read hold")
            self._readers -= 1
            if self._readers == 0:
                self._cond.notify_all()

    def down_write(self) -> None:
        """Take the semaphore for writing (waits for every reader to leave)."""
        with self._cond:
            self._writers_waiting += 1
            try:
                self._cond.wait_for(lambda: not self._writer and self._readers == 0)
            finally:
                self._writers_waiting -= 1
            self._writer = True

    def up_write(self) -> None:
        """Release the write hold."""
        with self._cond:
            if not self._writer:
                raise HazardUsageError(f"{self.name}: up_write() without the write hold")
            self._writer = False
            self._cond.notify_all()

    def read(self) -> _Hold:
        """``with sem.read():`` holds the semaphore for reading."""
        return _Hold(self.down_read, self.up_read)

    def write(self) -> _Hold:
        """``with sem.write():`` holds the semaphore for writing."""
        return _Hold(self.down_write, self.up_write)

    def __repr__(self) -> str:
        state = "writer" if self._writer else f"{self._readers} readers"
        return f"<RwSemaphore {self.name} {state}, {self._writers_waiting} writers waiting>"


class _Hold:
    __slots__ = ("_down", "_up")

    def __init__(self, down: Callable[[], None], up: Callable[[], None]) -> None:
        self._down = down
        self._up = up

    def __enter__(self) -> None:
        self._down()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._up()

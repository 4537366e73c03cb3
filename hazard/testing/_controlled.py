"""``threading`` inside an exploration: controlled where possible, loud where not.

Rules:
- While ``explore`` runs, ``threading.Thread``, ``Lock``, ``Condition`` and ``Event`` are
  replaced by controlled versions; the primitives it cannot control (RLock, Semaphore,
  BoundedSemaphore, Barrier) raise at construction instead of silently escaping the search.
- Only objects created while patched are controlled: a real lock created before ``explore``
  and used inside it is invisible (keep such objects inside the body).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from hazard import _checkpoint
from hazard._sync import Condition, Event, Lock
from hazard.testing._errors import UncontrolledThreadError
from hazard.testing._runtime import Run, ThreadHandle

__all__ = ["ControlledThread", "controlled_threading", "current_run"]


def current_run() -> Run | None:
    """The run of the calling thread's exploration, if any."""
    sched = _checkpoint.scheduler
    return sched if isinstance(sched, Run) else None


class ControlledThread:
    """A stand-in for ``threading.Thread`` whose thread the explorer schedules."""

    def __init__(
        self,
        group: None = None,
        target: Callable[..., object] | None = None,
        name: str | None = None,
        args: tuple[object, ...] = (),
        kwargs: Mapping[str, object] | None = None,
        *,
        daemon: bool | None = None,
    ) -> None:
        self._target = target
        self._args = args
        self._kwargs = dict(kwargs or {})
        self.name = name
        self.daemon = bool(daemon)
        self._handle: ThreadHandle | None = None

    def run(self) -> None:
        """Call the target (override in a subclass, as with threading.Thread)."""
        if self._target is not None:
            self._target(*self._args, **self._kwargs)

    def start(self) -> None:
        """Start the thread under the explorer."""
        run = current_run()
        if run is None:
            raise UncontrolledThreadError("a controlled Thread started outside explore()")
        if self._handle is not None:
            raise RuntimeError("threads can only be started once")
        self._handle = run.spawn(self.run, (), self.name, self.daemon)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread (a controlled wait)."""
        if self._handle is None:
            raise RuntimeError("cannot join thread before it is started")
        self._handle.join()

    def is_alive(self) -> bool:
        """Return whether the thread was started and has not finished."""
        return self._handle is not None and self._handle.is_alive()


def _refuse(name: str) -> Callable[..., Any]:
    def make(*args: object, **kwargs: object) -> Any:
        raise UncontrolledThreadError(
            f"threading.{name} is not controlled inside explore(): use Lock, Condition or "
            "Event (hazard's or threading's), which the explorer schedules"
        )

    return make


def _from_threading_itself() -> bool:
    # threading.Thread's own machinery (start(), Timer, the explorer's workers) builds its
    # Events and Conditions through these module globals: it must keep getting real ones.
    return sys._getframe(2).f_code.co_filename == threading.__file__


def _patch(name: str, controlled: Callable[..., Any]) -> Callable[..., Any]:
    real = getattr(threading, name)

    def make(*args: Any, **kwargs: Any) -> Any:
        if _from_threading_itself():
            return real(*args, **kwargs)
        return controlled(*args, **kwargs)

    return make


def _patches() -> dict[str, Any]:
    return {
        "Thread": ControlledThread,
        "Lock": _patch("Lock", lambda: Lock("threading.Lock")),
        "Condition": _patch("Condition", lambda lock=None: Condition(lock)),
        "Event": _patch("Event", lambda: Event("threading.Event")),
        "RLock": _patch("RLock", _refuse("RLock")),
        "Semaphore": _patch("Semaphore", _refuse("Semaphore")),
        "BoundedSemaphore": _patch("BoundedSemaphore", _refuse("BoundedSemaphore")),
        "Barrier": _refuse("Barrier"),
    }


@contextmanager
def controlled_threading() -> Iterator[None]:
    """Replace threading's primitives with controlled ones for the duration."""
    patches = _patches()
    saved = {name: getattr(threading, name) for name in patches}
    for name, value in patches.items():
        setattr(threading, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(threading, name, value)

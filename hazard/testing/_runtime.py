"""One controlled run of a body: real threads, one at a time, passing a baton at checkpoints.

Rules and invariants:
- Exactly one controlled thread runs at a time: the baton holder. Every other one is parked on
  its worker's gate (a raw lock) in a checkpoint, in ``pause``, or before its first step.
- The running thread makes each scheduling decision itself and hands over by releasing the
  chosen thread's gate, then parks on its own gate: one release and one acquire per switch.
- A step is what a thread does from leaving one checkpoint to reaching the next: the pending
  operation that the checkpoint named, plus thread-local work. Shared state is touched only at
  checkpoints, so a step's pending operation is all another thread can conflict with.
- ``pause()`` blocks a thread until another thread writes an object it read since its last
  pause or write. No runnable thread with some blocked ones is a deadlock, unless a wait has a
  timeout: then the mock clock jumps to the earliest deadline.
- All run state is touched only by the baton holder (or by the orchestrator while no
  controlled thread runs), so it needs no lock. Gates are raw ``_thread`` locks, invisible to
  the explorer by design.
"""

from __future__ import annotations

import _thread
import enum
import sys
import threading
import traceback
from _thread import get_ident
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

from hazard import _checkpoint, _heap
from hazard._checkpoint import Access
from hazard.testing._errors import (
    Deadlock,
    LockOrderInversion,
    StepLimitExceeded,
    UncontrolledThreadError,
)

__all__ = ["Chooser", "LThread", "Run", "Step", "ThreadHandle", "WorkerPool"]

_READ = int(Access.READ)
_WRITE = int(Access.WRITE)


class _Abort(BaseException):
    """Raised inside parked threads of a run that ended, so their stacks unwind."""


class _Pruned(BaseException):
    """The chooser found the rest of this schedule redundant (sleep-set blocked)."""


_RealThread = threading.Thread  # captured before an exploration patches threading


class _Worker:
    """A pooled real thread that runs one logical thread at a time.

    A real ``threading.Thread`` (not a bare ``_thread``), so ``threading.current_thread()``
    works inside bodies; it takes the logical thread's name while it runs it.
    """

    __slots__ = ("gate", "ident", "task", "thread")

    def __init__(self) -> None:
        self.gate = _thread.allocate_lock()
        self.gate.acquire()
        self.task: Callable[[], None] | None = None
        self.ident = 0
        started = _thread.allocate_lock()
        started.acquire()
        self.thread = _RealThread(target=self._main, args=(started,), daemon=True)
        self.thread.start()
        started.acquire()

    def _main(self, started: Any) -> None:
        self.ident = threading.get_ident()
        started.release()
        while True:
            self.gate.acquire()
            task = self.task
            if task is None:
                return
            task()


class WorkerPool:
    """Idle workers, reused across runs and explorations (a thread start costs ~50 us)."""

    def __init__(self) -> None:
        self._idle: list[_Worker] = []

    def get(self) -> _Worker:
        if self._idle:
            return self._idle.pop()
        return _Worker()

    def put(self, worker: _Worker) -> None:
        worker.task = None
        self._idle.append(worker)


class State(enum.Enum):
    ENABLED = "runnable"
    BLOCKED = "blocked"
    FINISHED = "finished"


class ThreadHandle:
    """What ``spawn`` returns: ``join()`` waits for the thread, ``result`` is its return value."""

    __slots__ = ("__weakref__", "_lthread", "_run")

    def __init__(self, run: Run, lthread: LThread) -> None:
        self._run = run
        self._lthread = lthread

    @property
    def name(self) -> str:
        """The thread's name in reports (``T<id>`` unless given)."""
        return self._lthread.name

    @property
    def result(self) -> object:
        """The thread function's return value (None until it finished)."""
        return self._lthread.result

    def is_alive(self) -> bool:
        """Return whether the thread has not finished."""
        return self._lthread.state is not State.FINISHED

    def join(self) -> object:
        """Wait (a controlled wait) until the thread finished; return its result."""
        self._run.join(self._lthread)
        return self._lthread.result

    def __repr__(self) -> str:
        return f"<thread {self._lthread.name} {self._lthread.state.value}>"


_ENABLED = State.ENABLED  # module constants: an Enum attribute lookup costs in hot paths


@dataclass(eq=False)
class LThread:
    """A logical thread of a run (compared by identity)."""

    tid: int
    name: str
    fn: Callable[..., object]
    args: tuple[object, ...]
    daemon: bool
    worker: _Worker | None = None
    state: State = State.ENABLED
    pending_obj: object = None
    pending_access: int = _READ
    pending_op: str = "start"
    reads: dict[int, object] = field(default_factory=dict)
    waits: dict[int, object] = field(default_factory=dict)
    deadline: float | None = None
    timed_out: bool = False
    result: object = None
    held_locks: list[object] = field(default_factory=list)
    handle: ThreadHandle | None = None
    ident: int = 0


@dataclass(frozen=True)
class Step:
    """One executed step, recorded for the report."""

    index: int
    tid: int
    op: str
    obj: str
    obj_key: int
    access: int
    where: str
    preempted: bool


class Chooser(Protocol):
    """Picks the thread that runs next at a decision point (two or more runnable threads)."""

    def choose(self, run: Run, current: LThread, enabled: list[LThread]) -> LThread:
        """Return the thread to run next (one of ``enabled``)."""


@dataclass
class LockEdge:
    """Lock ``first`` was held when ``second`` was taken, first seen with this stack."""

    first: str
    second: str
    stack: str


def _where(depth: int = 2) -> str:
    frame = sys._getframe(depth)
    while frame is not None and frame.f_code.co_filename.endswith(_INTERNAL_SUFFIXES):
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        return ""
    code = frame.f_code
    return f"{code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno} {code.co_name}"


_INTERNAL_SUFFIXES = (
    "_atomics.py",
    "_checkpoint.py",
    "_runtime.py",
    "_sync.py",
    "_controlled.py",
    "_explore.py",
)


def describe(obj: object) -> str:
    """A short name for an object in reports."""
    if obj is None:
        return "-"
    kind = type(obj).__name__
    if _heap.is_poisoned_object(obj):
        # A freed object: reading its attributes here would report the explorer as the
        # culprit; the access that follows the checkpoint reports the real one.
        return f"freed {kind}@{id(obj) & 0xFFFF:04x}"
    name = getattr(obj, "name", None)
    if isinstance(name, str):
        return f"{kind} {name}"
    return f"{kind}@{id(obj) & 0xFFFF:04x}"


class Run:
    """One schedule of a body, driven by a chooser; implements the Scheduler protocol."""

    def __init__(
        self,
        chooser: Chooser,
        pool: WorkerPool,
        *,
        max_steps: int,
        record: bool,
        lock_edges: dict[tuple[object, object], LockEdge] | None = None,
    ) -> None:
        self.chooser = chooser
        self.pool = pool
        self.max_steps = max_steps
        self.record = record
        self.threads: list[LThread] = []
        self.current: LThread | None = None
        self.steps = 0
        self.decisions = 0
        self.preemptions = 0
        self.deviations: list[tuple[int, int]] = []
        self.trace: list[Step] = []
        self.clock = 0.0
        self.failure: BaseException | None = None
        self.failed_thread: LThread | None = None
        self.aborting = False
        self.lock_edges = lock_edges if lock_edges is not None else {}
        self._done = _thread.allocate_lock()
        self._done.acquire()
        self._by_ident: dict[int, LThread] = {}
        self.live = 0  # non-daemon threads not finished: the run is complete at zero
        self.blocked = 0  # threads in State.BLOCKED
        self.waiters: dict[int, list[LThread]] = {}  # object key -> threads blocked on it
        # Runnable threads in tid order, and the same as a bit mask; kept up to date at every
        # state change so a decision costs no scan of all threads.
        self.enabled: list[LThread] = []
        self.enabled_mask = 0
        # (tid, object key, access, decision index or -1) per step, for the reduction.
        self.log: list[tuple[int, int, int, int]] | None = (
            [] if getattr(chooser, "wants_log", False) else None
        )
        self._step_node = -1  # the decision that chose the step about to run

    # -- orchestration (called by the exploring thread, which is not controlled) -------------

    def execute(self, body: Callable[[], object], unwind_timeout: float = 10.0) -> None:
        """Run ``body`` as thread 0 under the chooser until it ends; then unwind leftovers."""
        main = self._new_thread(body, (), "T0", daemon=False)
        self.current = main
        _checkpoint.install(self)
        try:
            assert main.worker is not None
            main.worker.gate.release()
            self._done.acquire()
            self.aborting = True
            for t in self.threads:
                if t.state is not State.FINISHED and t.worker is not None:
                    self.current = t
                    t.worker.gate.release()
                    if not self._done.acquire(timeout=unwind_timeout):
                        raise RuntimeError(
                            f"thread {t.name} did not unwind within {unwind_timeout} s: it is "
                            "blocked in an uncontrolled primitive"
                        )
        finally:
            _checkpoint.uninstall(self)

    def _new_thread(
        self, fn: Callable[..., object], args: tuple[object, ...], name: str | None, daemon: bool
    ) -> LThread:
        return self._register(self._make_thread(fn, args, name, daemon))

    def _make_thread(
        self, fn: Callable[..., object], args: tuple[object, ...], name: str | None, daemon: bool
    ) -> LThread:
        tid = len(self.threads)
        t = LThread(tid, name or f"T{tid}", fn, args, daemon)
        t.handle = ThreadHandle(self, t)
        t.pending_obj = t.handle  # its first step ("start") reads the handle spawn wrote
        return t

    def _register(self, t: LThread) -> LThread:
        tid = t.tid
        daemon = t.daemon
        worker = self.pool.get()
        worker.task = lambda: self._thread_main(t)
        worker.thread.name = t.name
        t.worker = worker
        t.ident = worker.ident
        if not daemon:
            self.live += 1
        self.enabled.append(t)  # tids grow, so the list stays in tid order
        self.enabled_mask |= 1 << tid
        self._by_ident[worker.ident] = t
        self.threads.append(t)
        return t

    def _thread_main(self, t: LThread) -> None:
        try:
            if self.aborting:
                raise _Abort
            self._execute_pending(t)
            t.result = t.fn(*t.args)
            self.checkpoint(t.handle, Access.WRITE, "exit")
        except _Abort:
            self._finished(t)
            self._done.release()
            return
        except BaseException as exc:
            self._record_failure(exc, t)
            self.aborting = True
            self._finished(t)
            self._done.release()
            return
        self._finished(t)
        try:
            chosen = self._pick(t)
        except _Abort:
            chosen = None
        if chosen is None:
            self._done.release()
        else:
            self.current = chosen
            assert chosen.worker is not None
            chosen.worker.gate.release()

    def _finished(self, t: LThread) -> None:
        if t.state is State.BLOCKED:
            self.blocked -= 1
        elif t.state is State.ENABLED:
            self._disable(t)
        if t.state is not State.FINISHED and not t.daemon:
            self.live -= 1
        t.state = State.FINISHED
        if t.worker is not None:
            self._by_ident.pop(t.worker.ident, None)
            self.pool.put(t.worker)
            t.worker = None

    def _record_failure(self, exc: BaseException, t: LThread | None) -> None:
        if self.failure is None:
            self.failure = exc
            self.failed_thread = t

    def _fail_run(self, exc: BaseException) -> NoReturn:
        """End the run with ``exc`` as its failure; unwinds the calling thread."""
        self._record_failure(exc, self.current)
        self.aborting = True
        raise _Abort

    # -- the Scheduler protocol ------------------------------------------------------------

    def _me(self) -> LThread:
        t = self.current
        if t is None or t.ident != threading.get_ident() or t.state is State.FINISHED:
            raise UncontrolledThreadError(
                "a thread the explorer does not control reached a checkpoint: start threads "
                "inside explore() with hazard.testing.spawn (or threading.Thread, which "
                "explore() controls)"
            )
        return t

    def checkpoint(self, obj: object, access: Access, op: str) -> None:
        """Park the caller before ``op`` on ``obj`` if the chooser picks another thread."""
        # The hot path of every exploration: one decision, maybe a switch, then the step's
        # bookkeeping, with the common cases inlined (profiled: calls dominate here).
        if self.aborting:
            raise _Abort
        t = self.current
        if t is None or t.ident != get_ident():
            t = self._me()
        t.pending_obj = obj
        t.pending_access = access
        t.pending_op = op
        chosen = self._pick(t)
        if chosen is not t:
            self._switch(t, chosen)
        self.steps += 1
        if self.steps > self.max_steps:
            self._step_limit()
        key = 0
        if obj is not None:
            key = id(obj)
            if access & _WRITE:
                if t.reads:
                    t.reads = {}
                if key in self.waiters:
                    self._wake_readers_of(key)
            if access & _READ:
                t.reads[key] = obj
        log = self.log
        if log is not None:
            log.append((t.tid, key, access, self._step_node))
            self._running_node = self._step_node
            self._step_node = -1
        if self.record:
            self._record_step(t)

    def pause(self, timeout: float | None = None) -> bool:
        """Block the caller until another thread writes something it read.

        With ``timeout`` (seconds of the mock clock, which only moves when no thread can run)
        return False if the wait timed out; True otherwise.
        """
        if self.aborting:
            raise _Abort
        t = self._me()
        t.timed_out = False
        t.deadline = None if timeout is None else self.clock + timeout
        if t.reads or t.deadline is not None:
            t.state = State.BLOCKED
            self.blocked += 1
            self._disable(t)
            t.waits = t.reads
            t.reads = {}
            for key in t.waits:
                self.waiters.setdefault(key, []).append(t)
        t.pending_obj = None
        t.pending_access = _READ
        t.pending_op = "wake" if t.state is State.BLOCKED else "yield"
        self._schedule(t)
        self._execute_pending(t)
        t.deadline = None
        return not t.timed_out

    def now(self) -> float:
        """The mock clock, in seconds since the run started."""
        return self.clock

    def lock_acquired(self, lock: object) -> None:
        """Record lock order: every lock held now was taken before ``lock``."""
        t = self._me()
        mine = _lock_class(lock)
        for held in t.held_locks:
            theirs = _lock_class(held)
            if theirs == mine:
                continue  # same class (e.g. made on one line in a loop): lockdep's nesting case
            key = (theirs, mine)
            if key not in self.lock_edges:
                self.lock_edges[key] = LockEdge(describe(held), describe(lock), _stack_text(3))
        t.held_locks.append(lock)

    def lock_released(self, lock: object) -> None:
        """Forget ``lock`` from the caller's held set."""
        t = self._me()
        for i in range(len(t.held_locks) - 1, -1, -1):
            if t.held_locks[i] is lock:
                del t.held_locks[i]
                break

    # -- threads -----------------------------------------------------------------------------

    def spawn(
        self, fn: Callable[..., object], args: tuple[object, ...], name: str | None, daemon: bool
    ) -> ThreadHandle:
        """Start a logical thread (its first step is a decision like any other)."""
        if self.aborting:
            raise _Abort
        t = self._make_thread(fn, args, name, daemon)
        self.checkpoint(t.handle, Access.WRITE, "spawn")
        self._register(t)
        assert t.handle is not None
        return t.handle

    def join(self, t: LThread) -> None:
        """Wait until ``t`` finished (its exit step writes its handle)."""
        while True:
            self.checkpoint(t.handle, Access.READ, "join")
            if t.state is State.FINISHED:
                return
            self.pause()

    def thread_name(self, ident: int) -> str | None:
        """The logical name of the real thread ``ident``, if it runs a thread of this run."""
        t = self._by_ident.get(ident)
        return None if t is None else t.name

    # -- scheduling --------------------------------------------------------------------------

    def _execute_pending(self, t: LThread) -> None:
        """The bookkeeping of a step that did not come through ``checkpoint`` (start, wake)."""
        self.steps += 1
        if self.steps > self.max_steps:
            self._step_limit()
        obj = t.pending_obj
        access = t.pending_access
        if obj is not None:
            if access & _WRITE:
                t.reads = {}
                if id(obj) in self.waiters:
                    self._wake_readers_of(id(obj))
            if access & _READ:
                t.reads[id(obj)] = obj
        if self.log is not None:
            self._log_step(t)
        if self.record:
            self._record_step(t)

    def _log_step(self, t: LThread) -> None:
        obj = t.pending_obj
        assert self.log is not None
        self.log.append(
            (t.tid, 0 if obj is None else id(obj), int(t.pending_access), self._step_node)
        )
        self._running_node = self._step_node
        self._step_node = -1

    _running_node = -1  # the decision that chose the step now running (-1: none)

    def also(self, obj: object, access: Access) -> None:
        """Record a further access of the step now running (a free also writes its fields)."""
        if self.aborting:
            raise _Abort
        t = self._me()
        key = id(obj)
        if access & _WRITE and key in self.waiters:
            self._wake_readers_of(key)
        if access & _READ:
            t.reads[key] = obj
        if self.log is not None:
            self.log.append((t.tid, key, int(access), self._running_node))

    def _step_limit(self) -> NoReturn:
        self._fail_run(
            StepLimitExceeded(
                f"the schedule ran more than {self.max_steps} steps: a livelock, or raise max_steps"
            )
        )

    def _wake_readers_of(self, key: int) -> None:
        for u in self.waiters.pop(key, ()):
            if u.state is State.BLOCKED:
                self._wake(u)

    def _record_step(self, t: LThread) -> None:
        obj = t.pending_obj
        self.trace.append(
            Step(
                self.steps,
                t.tid,
                t.pending_op,
                describe(obj),
                id(obj) if obj is not None else 0,
                t.pending_access,
                _where(3),
                self._preempted_last,
            )
        )
        self._preempted_last = False

    _preempted_last = False

    def _wake(self, u: LThread) -> None:
        u.state = State.ENABLED
        for key in u.waits:
            waiting = self.waiters.get(key)
            if waiting is not None and u in waiting:
                waiting.remove(u)
        u.waits = {}
        self.blocked -= 1
        enabled = self.enabled
        i = 0
        while i < len(enabled) and enabled[i].tid < u.tid:
            i += 1
        enabled.insert(i, u)
        self.enabled_mask |= 1 << u.tid

    def _disable(self, u: LThread) -> None:
        self.enabled.remove(u)
        self.enabled_mask &= ~(1 << u.tid)

    def _schedule(self, t: LThread) -> None:
        chosen = self._pick(t)
        if chosen is not t:
            self._switch(t, chosen)

    def _switch(self, t: LThread, chosen: LThread | None) -> None:
        """Hand the baton from ``t`` to ``chosen`` and park ``t`` until it comes back."""
        if chosen is None:  # every non-daemon thread finished: t is a daemon, end it
            self.aborting = True
            raise _Abort
        self.current = chosen
        assert chosen.worker is not None and t.worker is not None
        gate = t.worker.gate
        chosen.worker.gate.release()
        gate.acquire()
        if self.aborting:
            raise _Abort

    def _pick(self, t: LThread) -> LThread | None:
        """Choose who runs after ``t``'s checkpoint; None when the run is complete."""
        if not self.live:
            return None
        enabled = self.enabled
        if len(enabled) == 1:
            return enabled[0]
        if not enabled:
            enabled = self._no_runnable_thread()
            if not enabled:
                return None
        if len(enabled) == 1:
            return enabled[0]
        t_enabled = t.state is _ENABLED
        default = t if t_enabled else enabled[0]
        try:
            chosen = self.chooser.choose(self, t, enabled)
        except _Abort:
            raise
        except Exception as exc:  # drift or nondeterminism: the run cannot go on
            self._fail_run(exc)
        if chosen is not default:
            self.deviations.append((self.decisions, chosen.tid))
        if t_enabled and chosen is not t:
            self.preemptions += 1
            self._preempted_last = True
        self._step_node = self.decisions
        self.decisions += 1
        return chosen

    def _no_runnable_thread(self) -> list[LThread]:  # noqa: RET503 - _fail_run raises
        """Nobody can run: finish, fire the earliest timeout, or report a deadlock."""
        blocked = [u for u in self.threads if u.state is State.BLOCKED]
        timed = [u for u in blocked if u.deadline is not None]
        if timed:
            first = min(timed, key=lambda u: (u.deadline, u.tid))
            assert first.deadline is not None
            self.clock = max(self.clock, first.deadline)
            first.timed_out = True
            self._wake(first)
            return [first]
        if all(u.daemon for u in blocked):
            return []
        lines = ["deadlock: every live thread waits for a write no runnable thread can make"]
        for u in blocked:
            # The last object read is what the thread was checking when it paused; earlier
            # reads since its last write would also wake it.
            objs = list(u.waits.values())
            what = self._describe_wait(objs[-1]) if objs else "nothing"
            if len(objs) > 1:
                what += f" (or to {', '.join(self._describe_wait(o) for o in objs[:-1])})"
            lines.append(f"  {u.name} waits for a write to {what}")
        self._fail_run(Deadlock("\n".join(lines)))

    def _describe_wait(self, obj: object) -> str:
        text = describe(obj)
        owner = getattr(obj, "_owner", None)
        if isinstance(owner, int):
            name = self.thread_name(owner)
            if name is not None:
                text += f" (held by {name})"
        return text

    def check_lock_order(self) -> None:
        """Raise LockOrderInversion if two lock classes were taken in both orders."""
        for (a, b), edge in self.lock_edges.items():
            reverse = self.lock_edges.get((b, a))
            if reverse is not None and repr(a) < repr(b):
                raise LockOrderInversion(
                    f"possible deadlock: {edge.first} -> {edge.second} and "
                    f"{reverse.first} -> {reverse.second}\n"
                    f"first order taken at:\n{edge.stack}\n"
                    f"reverse order taken at:\n{reverse.stack}"
                )


def _lock_class(lock: object) -> object:
    """Lockdep's class of a lock: stable across runs (a lock made outside explore: itself)."""
    cls = getattr(lock, "lock_class", None)
    return cls if cls is not None else ("id", id(lock))


def _stack_text(depth: int) -> str:
    frames = traceback.extract_stack(sys._getframe(depth))
    kept = [f for f in frames if not f.filename.endswith(_INTERNAL_SUFFIXES)]
    return "".join(traceback.format_list(kept[-8:]))

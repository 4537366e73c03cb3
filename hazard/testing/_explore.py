"""``explore`` and ``replay``: run a body under many schedules, shrink and report a failure.

Rules:
- A body is run once per schedule, from scratch: it must create what it shares (so every run
  starts from the same state) and start threads with :func:`spawn` or ``threading.Thread``.
- A schedule fails when any thread raises, on a deadlock or step limit, and after the search
  when two locks were seen taken in both orders. The first failure stops the search; it is
  shrunk (fewest preemptions, then fewest steps) by replaying candidate schedules, then re-run
  once more to record the report.
"""

from __future__ import annotations

import gc
import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from hazard._checkpoint import Access
from hazard._errors import HazardUsageError
from hazard.testing import _token
from hazard.testing._controlled import controlled_threading, current_run
from hazard.testing._errors import ExplorationFailed, LockOrderInversion, ReplayDrift
from hazard.testing._report import render_report
from hazard.testing._runtime import Chooser, LockEdge, Run, Step, WorkerPool
from hazard.testing._search import Dfs, Pct, RandomWalk, Replay

__all__ = ["ExploreResult", "Failure", "explore", "replay", "spawn", "yield_now"]

_POOL = WorkerPool()
_COLLECT_EVERY = 64  # runs between garbage collections (made by the orchestrator)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Keep the cyclic GC from running inside controlled threads during an exploration.

    A collection runs finalizers (weakref.finalize, __del__) in whatever thread allocates:
    inside a controlled thread their atomics would add steps that only some runs have (the
    search then sees nondeterminism), in another thread they would be uncontrolled. The
    explorer collects between runs instead, when no controlled thread runs.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


_MODES = ("dfs", "pct", "random")
_explore_lock = threading.Lock()


@dataclass(frozen=True)
class Failure:
    """A failing schedule, shrunk.

    Attributes:
        token: replays the schedule: ``replay(body, token)``.
        report: the per-thread timeline, the exception with its stacks, the replay line.
        exception: what the failing thread raised (or the Deadlock / LockOrderInversion).
        thread: the name of the thread that raised.
        preemptions: preemptions in the shrunk schedule.
        steps: steps in the shrunk schedule.
        trace: the recorded steps.

    """

    token: str
    report: str
    exception: BaseException
    thread: str
    preemptions: int
    steps: int
    trace: tuple[Step, ...] = field(repr=False)


@dataclass(frozen=True)
class ExploreResult:
    """What :func:`explore` found.

    Attributes:
        ok: no schedule failed.
        schedules: schedules run (complete or cut short as redundant).
        complete: the bounded space was exhausted (dfs only).
        pruned: schedules and alternatives skipped as equivalent to explored ones.
        failure: the shrunk failing schedule, or None.
        mode: "dfs", "pct" or "random".
        preemption_bound: the bound (dfs).
        seconds: wall time of the search.
        pct_probability: PCT's per-run lower bound on finding a depth-d bug, 1/(n*k^(d-1)).
        miss_probability: for PCT, the chance that such a bug survived every run done.

    """

    ok: bool
    schedules: int
    complete: bool
    pruned: int
    failure: Failure | None
    mode: str
    preemption_bound: int
    seconds: float
    pct_probability: float | None = None
    miss_probability: float | None = None

    def raise_failure(self) -> None:
        """Raise ExplorationFailed with the report if a schedule failed."""
        if self.failure is not None:
            raise ExplorationFailed(self.failure.report) from self.failure.exception

    def summary(self) -> str:
        """One line: mode, schedules, completeness, pruning, verdict."""
        space = "complete" if self.complete else "incomplete"
        verdict = "ok" if self.ok else f"FAILED: {type(self.failure.exception).__name__}"  # type: ignore[union-attr]
        extra = ""
        if self.pct_probability is not None and self.miss_probability is not None:
            extra = (
                f", per-run bound {self.pct_probability:.2e}, "
                f"miss probability {self.miss_probability:.3f}"
            )
        return (
            f"{self.mode}: {self.schedules} schedules ({space}, bound "
            f"{self.preemption_bound}, {self.pruned} pruned{extra}) in {self.seconds:.2f} s: "
            f"{verdict}"
        )


def spawn(fn: Callable[..., object], *args: object, name: str | None = None) -> _Handle:
    """Start a thread running ``fn(*args)``: controlled inside ``explore``, real outside.

    Returns:
        A handle with ``join()`` (returns ``fn``'s result), ``is_alive()`` and ``name``.

    """
    run = current_run()
    if run is not None:
        return run.spawn(fn, args, name, daemon=False)
    return _RealHandle(fn, args, name)


def yield_now() -> None:
    """A scheduling point with no shared access: the explorer may switch threads here."""
    run = current_run()
    if run is not None:
        run.checkpoint(None, Access.READ, "yield")
    else:
        time.sleep(0)


class _RealHandle:
    name: str

    def __init__(self, fn: Callable[..., object], args: tuple[object, ...], name: str | None):
        self.result: object = None
        self._error: BaseException | None = None

        def main() -> None:
            try:
                self.result = fn(*args)
            except BaseException as exc:
                self._error = exc

        self._thread = threading.Thread(target=main, name=name)
        self.name = self._thread.name
        self._thread.start()

    def join(self) -> object:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.result

    def is_alive(self) -> bool:
        return self._thread.is_alive()


class _Handle(Protocol):
    """What spawn() returns, inside explore (controlled) and outside (a real thread)."""

    @property
    def name(self) -> str: ...

    def join(self) -> object: ...

    def is_alive(self) -> bool: ...


def _run_once(
    body: Callable[[], object],
    chooser: Chooser,
    *,
    max_steps: int,
    record: bool = False,
    lock_edges: dict[tuple[object, object], LockEdge] | None = None,
) -> Run:
    run = Run(chooser, _POOL, max_steps=max_steps, record=record, lock_edges=lock_edges)
    run.execute(body)
    return run


def _replay_run(
    body: Callable[[], object],
    deviations: list[tuple[int, int]],
    max_steps: int,
    record: bool = False,
) -> Run:
    chooser = Replay(deviations)
    run = _run_once(body, chooser, max_steps=max_steps, record=record)
    if run.failure is None:
        chooser.check_complete(run)
    return run


def _same_failure(run: Run, kind: type[BaseException]) -> bool:
    return run.failure is not None and type(run.failure) is kind


def _candidates(deviations: list[tuple[int, int]]) -> Iterator[list[tuple[int, int]]]:
    """Smaller schedules first (one deviation dropped), then each deviation made earlier."""
    for i in range(len(deviations)):
        yield deviations[:i] + deviations[i + 1 :]
    for i, (index, tid) in enumerate(deviations):
        low = deviations[i - 1][0] + 1 if i else 0
        for earlier in range(low, index):
            yield [*deviations[:i], (earlier, tid), *deviations[i + 1 :]]


def _shrink(
    body: Callable[[], object], run: Run, max_steps: int, budget: float
) -> tuple[list[tuple[int, int]], Run]:
    """Fewest preemptions, then fewest steps: replay smaller schedules while the failure stays.

    Greedy: take the first candidate that still fails the same way and is better by
    (preemptions, steps), then start over from it, until no candidate improves or time is up.
    """
    assert run.failure is not None
    kind = type(run.failure)
    best_dev, best = list(run.deviations), run
    deadline = time.monotonic() + budget
    improved = True
    while improved and time.monotonic() < deadline:
        improved = False
        for candidate in _candidates(best_dev):
            if time.monotonic() >= deadline:
                break
            try:
                trial = _replay_run(body, candidate, max_steps)
            except ReplayDrift:
                continue
            if _same_failure(trial, kind) and (trial.preemptions, trial.steps) < (
                best.preemptions,
                best.steps,
            ):
                best_dev, best = list(trial.deviations), trial
                improved = True
                break
    return best_dev, best


def _failure_of(
    body: Callable[[], object], run: Run, max_steps: int, shrink: bool, replay_hint: str
) -> Failure:
    deviations = list(run.deviations)
    if shrink:
        deviations, run = _shrink(body, run, max_steps, budget=30.0)
    recorded = _replay_run(body, deviations, max_steps, record=True)
    if recorded.failure is None or type(recorded.failure) is not type(run.failure):
        recorded = run  # the body is not deterministic enough to record; report what we have
    token = _token.encode(deviations)
    exc = recorded.failure
    assert exc is not None
    thread = recorded.failed_thread.name if recorded.failed_thread is not None else "-"
    report = render_report(
        recorded.trace, [t.name for t in recorded.threads], exc, thread, token, replay_hint
    )
    return Failure(
        token, report, exc, thread, recorded.preemptions, recorded.steps, tuple(recorded.trace)
    )


def explore(
    body: Callable[[], object],
    *,
    preemption_bound: int = 2,
    mode: str = "dfs",
    runs: int | None = None,
    seed: int | None = None,
    timeout: float | None = None,
    max_steps: int = 10_000,
    reduction: bool = True,
    pct_depth: int = 3,
    shrink: bool = True,
    replay_hint: str = "hazard.testing.replay(body, {token!r})",
) -> ExploreResult:
    """Run ``body`` under many thread schedules; stop at the first failure.

    Args:
        body: creates the shared state, spawns threads, joins them; called once per schedule.
        preemption_bound: most preemptions per schedule (dfs).
        mode: "dfs" (exhaustive up to the bound, with partial-order reduction), "pct" or
            "random".
        runs: schedules to try (pct/random default 1000; dfs default: until exhausted).
        seed: seeds pct/random (default 0, so runs are reproducible).
        timeout: stop searching after this many seconds (the result is then incomplete).
        max_steps: a schedule longer than this fails with StepLimitExceeded.
        reduction: dfs only: dynamic partial-order reduction with the bounded-search
            conservative branches (off: every runnable thread at every decision).
        pct_depth: PCT's bug depth d.
        shrink: shrink a failing schedule before reporting it.
        replay_hint: how the report says to replay; ``{token!r}`` is filled in.

    Returns:
        An ExploreResult; ``result.raise_failure()`` turns a failure into an exception.

    Raises:
        HazardUsageError: bad arguments, or explore() called inside an exploration.

    """
    if not callable(body):
        raise TypeError(f"body must be callable, not {type(body).__name__}")
    if mode not in _MODES:
        raise HazardUsageError(f"mode must be one of {', '.join(_MODES)}, not {mode!r}")
    if not isinstance(preemption_bound, int) or preemption_bound < 0:
        raise HazardUsageError(f"preemption_bound must be an int >= 0, not {preemption_bound!r}")
    if runs is not None and (not isinstance(runs, int) or runs < 1):
        raise HazardUsageError(f"runs must be an int >= 1, not {runs!r}")
    if timeout is not None and timeout <= 0:
        raise HazardUsageError(f"timeout must be > 0 seconds, not {timeout!r}")
    if pct_depth < 1:
        raise HazardUsageError(f"pct_depth must be >= 1, not {pct_depth!r}")
    if current_run() is not None or not _explore_lock.acquire(blocking=False):
        raise HazardUsageError("explore() cannot run inside another exploration")
    try:
        with controlled_threading(), _gc_paused():
            return _explore(
                body,
                preemption_bound,
                mode,
                runs,
                seed,
                timeout,
                max_steps,
                reduction,
                pct_depth,
                shrink,
                replay_hint,
            )
    finally:
        _explore_lock.release()


def _explore(
    body: Callable[[], object],
    bound: int,
    mode: str,
    runs: int | None,
    seed: int | None,
    timeout: float | None,
    max_steps: int,
    reduction: bool,
    pct_depth: int,
    shrink: bool,
    replay_hint: str,
    given_dfs: Dfs | None = None,
) -> ExploreResult:
    start = time.monotonic()
    deadline = None if timeout is None else start + timeout
    rng = random.Random(0 if seed is None else seed)
    limit = runs if runs is not None else (None if mode == "dfs" else 1000)
    lock_edges: dict[tuple[object, object], LockEdge] = {}
    dfs = (given_dfs or Dfs(bound, reduction)) if mode == "dfs" else None
    pct = Pct(rng, pct_depth, 1) if mode == "pct" else None
    chooser: Chooser = dfs or pct or RandomWalk(rng)
    schedules = 0
    complete = False
    k_seen = 1
    threads_seen = 1
    failure: Failure | None = None
    while True:
        if pct is not None:
            pct.begin(k_seen)
        if dfs is not None:
            dfs.begin()
        run = _run_once(body, chooser, max_steps=max_steps, lock_edges=lock_edges)
        schedules += 1
        if schedules % _COLLECT_EVERY == 0:
            gc.collect(1)
        k_seen = max(k_seen, run.decisions)
        threads_seen = max(threads_seen, len(run.threads))
        if run.failure is not None:
            failure = _failure_of(body, run, max_steps, shrink, replay_hint)
            break
        try:
            run.check_lock_order()
        except LockOrderInversion as exc:
            failure = _lock_failure(exc, run, replay_hint)
            break
        if dfs is not None:
            dfs.finish(run)
            if not dfs.advance():
                complete = True
                break
        if limit is not None and schedules >= limit:
            break
        if deadline is not None and time.monotonic() >= deadline:
            break
    pct_probability, miss = (
        _pct_bounds(threads_seen, k_seen, pct_depth, schedules) if mode == "pct" else (None, None)
    )
    return ExploreResult(
        ok=failure is None,
        schedules=schedules,
        complete=complete,
        pruned=dfs.pruned if dfs is not None else 0,
        failure=failure,
        mode=mode,
        preemption_bound=bound,
        seconds=time.monotonic() - start,
        pct_probability=pct_probability,
        miss_probability=miss,
    )


def _pct_bounds(n: int, k: int, depth: int, runs: int) -> tuple[float, float]:
    """PCT's per-run probability bound 1/(n*k^(d-1)), and the chance all ``runs`` missed."""
    p = 1.0 / (n * k ** (depth - 1))
    return p, math.exp(runs * math.log1p(-min(p, 1.0 - 1e-12)))


def explore_with(body: Callable[[], object], dfs: Dfs, *, max_steps: int = 10_000) -> ExploreResult:
    """Exhaust ``dfs`` (a configured search) over ``body``: for tests and benchmarks."""
    if current_run() is not None or not _explore_lock.acquire(blocking=False):
        raise HazardUsageError("explore_with() cannot run inside an exploration")
    try:
        with controlled_threading(), _gc_paused():
            return _explore(
                body,
                dfs.bound,
                "dfs",
                None,
                None,
                None,
                max_steps,
                dfs.reduction,
                3,
                False,
                "",
                given_dfs=dfs,
            )
    finally:
        _explore_lock.release()


def _lock_failure(exc: LockOrderInversion, run: Run, replay_hint: str) -> Failure:
    token = _token.encode(run.deviations)
    report = render_report([], [t.name for t in run.threads], exc, "-", token, replay_hint)
    return Failure(token, report, exc, "-", run.preemptions, run.steps, ())


def replay(body: Callable[[], object], token: str, *, max_steps: int = 10_000) -> Run:
    """Re-run exactly the schedule a token names; raise its failure.

    Returns:
        The recorded run, if the schedule no longer fails.

    Raises:
        ReplayDrift: the code changed so that the schedule no longer applies (says where).
        BaseException: whatever the schedule's failing thread raised.

    """
    deviations = _token.decode(token)
    if current_run() is not None or not _explore_lock.acquire(blocking=False):
        raise HazardUsageError("replay() cannot run inside an exploration")
    try:
        with controlled_threading(), _gc_paused():
            run = _replay_run(body, deviations, max_steps, record=True)
    finally:
        _explore_lock.release()
    if run.failure is not None:
        raise run.failure
    return run

"""Measurement 2: disconnect-to-free latency, while readers hold other devices (rcu, hazard).

The driver's paths have no long read-side sections (a lookup is a few atomic operations), so
the long readers are made at the hazard level, on the strategy's own objects: 4 reader threads,
staggered, each looping over the published ``struct usblp`` pointers of 4 *other* plugged
printers and holding each for 20 ms: hazard readers hold
``strategy.domain.protect(strategy.table[m])``, RCU readers hold ``strategy.rcu.read()`` around
``rcu.dereference(strategy.table[m])``. The writer plugs a fifth printer, waits a random
fraction of the readers' stagger, unplugs it through the real USB core and driver
(``Host.unplug``: disconnect, unpublish, the last put) and measures from the start of the
unplug to the heap's free of that ``struct usblp``. A hazard-pointer scan waits only for
readers of that one object (none); a grace period waits for every reader in a section when it
starts, of any object. Target: hazard p99 <= 0.1x rcu p99.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from hazard import Condition, Event, HazardError, Heap, Lock
from usblp_emu._bench._common import (
    DEFERRING,
    JOIN_TIMEOUT,
    _first_line,
    _first_violation,
    _join,
    _printers,
    _shut_down,
    _start,
)
from usblp_emu._host import Host
from usblp_emu._usblp._driver import Usblp
from usblp_emu._usblp._strategies._hazard import HazardStrategy
from usblp_emu._usblp._strategies._rcu import RcuStrategy

LATENCY_READERS = 4
READ_SECTION = 0.020
LATENCY_TARGET = 0.1  # hazard p99 over rcu p99, at most


@dataclass(frozen=True)
class LatencyResult:
    """Measurement 2 for one strategy: every unplug-to-free time, in seconds."""

    samples: list[float]
    count: int
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None
    rounds: int
    verdict: str

    @classmethod
    def of(cls, samples: list[float], verdict: str, rounds: int = 1) -> LatencyResult:
        """The samples with their nearest-rank percentiles."""
        ordered = sorted(samples)
        return cls(
            samples=samples,
            count=len(samples),
            p50=percentile(ordered, 50),
            p90=percentile(ordered, 90),
            p99=percentile(ordered, 99),
            max=ordered[-1] if ordered else None,
            rounds=rounds,
            verdict=verdict,
        )

    @classmethod
    def merge(cls, parts: list[LatencyResult]) -> LatencyResult:
        """One result for several rounds: every sample, percentiles of them all."""
        return cls.of(
            [x for p in parts for x in p.samples],
            _first_violation(p.verdict for p in parts),
            sum(p.rounds for p in parts),
        )


class _FreeClock(Heap):
    """A heap that notes when each ``struct usblp`` is freed, for a writer waiting on it."""

    __slots__ = ("_cond", "_freed_at")

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._cond = Condition(Lock("bench.free_clock"), "bench.freed")
        self._freed_at: dict[int, float] = {}  # id -> perf_counter(); guarded by _cond

    def free(self, obj: object) -> None:
        """Free ``obj``; if it is a ``struct usblp``, note the time and wake the writer."""
        is_usblp = isinstance(obj, Usblp)
        super().free(obj)
        if is_usblp:
            now = time.perf_counter()
            with self._cond:
                self._freed_at[id(obj)] = now
                self._cond.notify_all()

    def wait_freed(self, obj: object, timeout: float) -> float | None:
        """When ``obj`` was freed (waiting up to ``timeout`` s for it), or None.

        The caller holds ``obj``, so its id cannot be reused meanwhile.
        """
        key = id(obj)
        with self._cond:
            self._cond.wait_for(lambda: key in self._freed_at, timeout)
            return self._freed_at.pop(key, None)


def _reader(host: Host, minors: list[int], index: int, stop: Event) -> Callable[[], None]:
    """A reader thread's body: hold each other device's published pointer for 20 ms."""
    strategy = host.driver.strategy

    def hold_hazard() -> None:
        assert isinstance(strategy, HazardStrategy)
        i = index
        while not stop.is_set():
            with strategy.domain.protect(strategy.table[minors[i % len(minors)]]):
                stop.wait(READ_SECTION)
            i += 1

    def hold_rcu() -> None:
        assert isinstance(strategy, RcuStrategy)
        i = index
        while not stop.is_set():
            with strategy.rcu.read():
                strategy.rcu.dereference(strategy.table[minors[i % len(minors)]])
                stop.wait(READ_SECTION)
            i += 1

    def staggered() -> None:
        # Staggered starts: some reader is always inside a section, at every phase.
        if not stop.wait(index * READ_SECTION / LATENCY_READERS):
            (hold_hazard if isinstance(strategy, HazardStrategy) else hold_rcu)()

    return staggered


def measure_free_latency(strategy: str, seconds: float, seed: int = 0) -> LatencyResult:
    """Unplug-to-free times of one printer while readers hold other printers for 20 ms each.

    Args:
        strategy: "rcu" or "hazard".
        seconds: how long the writer keeps plugging and unplugging.
        seed: seeds the writer's random phase.

    Raises:
        ValueError: ``strategy`` is not "rcu" or "hazard".

    """
    if strategy not in DEFERRING:
        raise ValueError(f"free latency is measured for {' and '.join(DEFERRING)} only")
    heap = _FreeClock(f"bench.free_latency[{strategy}]")
    host = Host(strategy, heap=heap)
    # The hub's modelled pause between failing URBs and unbinding (DISCONNECT_SETTLE) is the
    # same for every strategy and not reclamation: leave it out of what is measured.
    host.core.disconnect_settle = 0.0
    printers = _printers(LATENCY_READERS + 1)
    target = printers.pop()
    minors = [host.plug(p) for p in printers]
    stop = Event("bench.readers.stop")
    readers = _start((_reader(host, minors, i, stop) for i in range(LATENCY_READERS)), "reader")
    rng = random.Random(seed)
    samples: list[float] = []
    verdict = "clean"
    # Let every reader enter its first section before the first unplug.
    time.sleep(READ_SECTION)
    deadline = time.perf_counter() + seconds
    warm_up = True  # the first cycle starts threads (RCU's callback helper): not measured
    try:
        while time.perf_counter() < deadline or not samples:
            intf = host.core.find_interface(host.plug(target))
            assert intf is not None
            usblp = intf.intfdata.load()
            time.sleep(rng.uniform(0.0, READ_SECTION / LATENCY_READERS))
            start = time.perf_counter()
            host.unplug(target)
            freed = heap.wait_freed(usblp, JOIN_TIMEOUT)
            if freed is None:
                verdict = f"hang: struct usblp not freed {JOIN_TIMEOUT:g} s after its unplug"
                break
            if not warm_up:
                samples.append(freed - start)
            warm_up = False
    except HazardError as exc:
        verdict = _first_line(exc)
    finally:
        # Readers first: a hazard reader still protecting a device would make its final
        # unplug (in close) wait for it.
        stop.set()
        hung = _join(readers)
    if hung:
        verdict = f"hang: {', '.join(hung)} did not stop in {JOIN_TIMEOUT:g} s"
    verdict = _shut_down(host, verdict)
    return LatencyResult.of(samples, verdict)


def percentile(ordered: list[float], q: float) -> float | None:
    """The nearest-rank ``q``-th percentile of ``ordered`` (sorted ascending); None if empty."""
    if not ordered:
        return None
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]

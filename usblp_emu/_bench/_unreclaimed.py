"""Measurement 3: unreclaimed objects, with one reader that never leaves (rcu, hazard).

At the hazard level, with ``hazard.HazardDomain`` (default scan threshold) and ``hazard.Rcu``:
objects on an emulated heap are published in one pointer; a writer replaces the object every
0.5 ms and hands the old one over for reclamation (``domain.retire`` / ``rcu.call_rcu``); one
reader entered a hazard-pointer protection / an RCU read section at the start and never leaves
it. A sampler records the heap's allocated-but-unfreed objects (minus the published one) every
5 ms, often enough to draw hazard's sawtooth (a scan every ~64 retires, ~40 ms). Hazard
pointers keep only what the stalled slot holds, so the count stays under the domain's proven
bound (``statistics().bound`` = slots + R); one stalled RCU reader blocks every grace period,
so the count grows with every retire.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

from hazard import AtomicRef, Event, HazardDomain, HazardError, Heap, HeapObject
from hazard import Rcu as RcuDomain
from usblp_emu._bench._common import DEFERRING, _first_line, _join, _start

RETIRE_INTERVAL = 0.0005
SERIES_INTERVAL = 0.005


@dataclass(frozen=True)
class SeriesResult:
    """Measurement 3 for one strategy: unreclaimed objects sampled over time."""

    times: list[float]
    unreclaimed: list[int]
    retired: int
    seconds: float
    bound: int | None
    first: int
    max: int
    final: int
    growth_per_s: float
    verdict: str


class _Node(HeapObject):
    """A published object of measurement 3 (its content does not matter)."""

    __slots__ = ("serial",)

    def __init__(self, serial: int) -> None:
        self.serial = serial


def measure_unreclaimed(strategy: str, seconds: float) -> SeriesResult:
    """Retire an object every 0.5 ms while one reader stalls; sample what is not yet freed.

    Args:
        strategy: "rcu" or "hazard".
        seconds: how long the writer retires.

    Raises:
        ValueError: ``strategy`` is not "rcu" or "hazard".

    """
    if strategy not in DEFERRING:
        raise ValueError(f"unreclaimed objects are measured for {' and '.join(DEFERRING)} only")
    heap = Heap(f"bench.unreclaimed[{strategy}]")
    src: AtomicRef[_Node | None] = AtomicRef(heap.alloc(_Node, 0))
    domain = HazardDomain(name="bench") if strategy == "hazard" else None
    rcu = RcuDomain("bench") if strategy == "rcu" else None
    stalled, release, stop = Event("bench.stalled"), Event("bench.release"), Event("bench.stop")
    retired = [0]  # written by the writer only, read after join

    def stall() -> None:
        if domain is not None:
            with domain.protect(src):
                stalled.set()
                release.wait()
        else:
            assert rcu is not None
            with rcu.read():
                rcu.dereference(src)
                stalled.set()
                release.wait()

    def write() -> None:
        serial = 0
        while not stop.is_set():
            serial += 1
            old = src.exchange(heap.alloc(_Node, serial))
            assert old is not None
            if domain is not None:
                domain.retire(old, heap.free)
            else:
                assert rcu is not None
                rcu.call_rcu(functools.partial(heap.free, old))
            retired[0] += 1
            time.sleep(RETIRE_INTERVAL)

    threads = _start([stall], "stalled-reader")
    stalled.wait()
    threads += _start([write], "retirer")
    times: list[float] = []
    counts: list[int] = []
    bound: int | None = None
    start = time.perf_counter()
    for i in range(1, max(2, round(seconds / SERIES_INTERVAL)) + 1):
        # On a fixed grid: a late sample does not push the later ones back.
        time.sleep(max(0.0, start + i * SERIES_INTERVAL - time.perf_counter()))
        times.append(time.perf_counter() - start)
        counts.append(heap.statistics().live - 1)  # minus the published object
        if domain is not None:
            # The bound grows if slots are added; the largest one seen is the one to meet.
            bound = max(bound or 0, domain.statistics().bound)
    stop.set()
    release.set()
    hung = _join(threads)
    elapsed = time.perf_counter() - start
    verdict = f"hang: {', '.join(hung)} did not stop" if hung else _drain(heap, src, domain, rcu)
    return SeriesResult(
        times=times,
        unreclaimed=counts,
        retired=retired[0],
        seconds=elapsed,
        bound=bound,
        first=counts[0],
        max=max(counts),
        final=counts[-1],
        growth_per_s=slope(times, counts),
        verdict=verdict,
    )


def _drain(
    heap: Heap, src: AtomicRef[_Node | None], domain: HazardDomain | None, rcu: RcuDomain | None
) -> str:
    """Reclaim everything (the reader has left) and check that nothing leaked."""
    try:
        if domain is not None:
            domain.cleanup()
        if rcu is not None:
            rcu.barrier()
            rcu.close()
        last = src.exchange(None)
        if last is not None:
            heap.free(last)
        heap.assert_clean()
    except HazardError as exc:
        return _first_line(exc)
    return "clean"


def slope(xs: list[float], ys: list[int]) -> float:
    """The least-squares slope of ``ys`` over ``xs`` (0.0 with fewer than two points)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx

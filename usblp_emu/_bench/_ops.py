"""Measurement 4: driver ops/s, and where the time goes when it is low.

Per strategy, 2 threads each looping open / write 16 bytes / ioctl LPGETSTATUS / poll / close
on its own printer (no hotplug, so no EBUSY): each call is one op; each op's mean wall time and
the process's CPU use are reported beside the rate. Target: hazard >= 50,000 ops/s on 2 cores
(the report records the CPUs it ran on). When it is not met, cProfile names the hot spots, in a
separate run (so it cannot slow the measured one) of one worker's loop.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hazard import Event
from usblp_emu._abi import LPGETSTATUS
from usblp_emu._bench._common import (
    OPS,
    _first_violation,
    _Loop,
    _printers,
    _run_loops,
    _shut_down,
)
from usblp_emu._errors import DeviceError
from usblp_emu._host import Host

OPS_THREADS = 2
OPS_WRITE = b"x" * 16
OPS_TARGET = 50_000.0  # hazard ops/s, at least
HOT_SPOTS = 12


@dataclass(frozen=True)
class OpsResult:
    """Measurement 4 for one strategy (summed over its rounds).

    ``op_counts`` and ``op_seconds`` are each operation's count and total wall time, and
    ``mean_us`` their ratio; ``cpus`` is the process's CPU time over the wall time (all
    threads: workers and the host controller), so below 1 the loop waits more than it
    computes.
    """

    ops: int
    errors: int
    seconds: float
    ops_per_s: float
    op_counts: dict[str, int]
    op_seconds: dict[str, float]
    mean_us: dict[str, float]
    cpu_seconds: float
    cpus: float
    rounds: int
    verdict: str

    @classmethod
    def of(
        cls,
        op_counts: dict[str, int],
        op_seconds: dict[str, float],
        *,
        errors: int,
        seconds: float,
        cpu_seconds: float,
        rounds: int,
        verdict: str,
    ) -> OpsResult:
        """The rates and means of the raw counts and times."""
        ops = sum(op_counts.values())
        return cls(
            ops=ops,
            errors=errors,
            seconds=seconds,
            ops_per_s=ops / seconds,
            op_counts=op_counts,
            op_seconds=op_seconds,
            mean_us={op: op_seconds[op] / n * 1e6 if n else 0.0 for op, n in op_counts.items()},
            cpu_seconds=cpu_seconds,
            cpus=cpu_seconds / seconds,
            rounds=rounds,
            verdict=verdict,
        )

    @classmethod
    def merge(cls, parts: list[OpsResult]) -> OpsResult:
        """One result for several rounds: counts, times and CPU time summed."""
        return cls.of(
            {op: sum(p.op_counts[op] for p in parts) for op in OPS},
            {op: sum(p.op_seconds[op] for p in parts) for op in OPS},
            errors=sum(p.errors for p in parts),
            seconds=sum(p.seconds for p in parts),
            cpu_seconds=sum(p.cpu_seconds for p in parts),
            rounds=sum(p.rounds for p in parts),
            verdict=_first_violation(p.verdict for p in parts),
        )


@dataclass(frozen=True)
class HotSpot:
    """A function of the profiled loop: its calls per cycle and its share of the wall time.

    A cycle is one open / write / ioctl / poll / close; ``self_share`` is the time in the
    function itself (cProfile's tottime), ``total_share`` with its callees (cumtime).
    """

    function: str
    calls_per_cycle: float
    self_share: float
    total_share: float


@dataclass(frozen=True)
class Profile:
    """cProfile of measurement 4's loop: what it saw, for how long, and the hottest functions."""

    scope: str
    seconds: float
    cycles: int
    functions: list[HotSpot]


def _ops_host(strategy: str) -> tuple[Host, list[int]]:
    host = Host(strategy)
    return host, [host.plug(p) for p in _printers(OPS_THREADS)]


def _ops_step(host: Host, minor: int) -> Callable[[_Loop], None]:
    def step(loop: _Loop) -> None:
        try:
            start = time.perf_counter()
            f = host.open(minor)
            start = loop.tally("open", start)
            try:
                f.write(OPS_WRITE)
                start = loop.tally("write", start)
                f.ioctl(LPGETSTATUS)
                start = loop.tally("ioctl", start)
                f.poll()
                start = loop.tally("poll", start)
            finally:
                f.close()
            loop.tally("close", start)
        except DeviceError:  # no hotplug, no sharing: none is expected; counted if one comes
            loop.counts["errors"] += 1

    return step


def measure_driver_ops(strategy: str, seconds: float) -> OpsResult:
    """2 threads loop open/write/ioctl/poll/close, each on its own printer, no hotplug.

    Args:
        strategy: the lifetime strategy.
        seconds: how long the threads loop.

    """
    host, minors = _ops_host(strategy)
    go, stop = Event("bench.go"), Event("bench.stop")
    loops = [_Loop(_ops_step(host, m), i, go, stop) for i, m in enumerate(minors)]
    cpu = time.process_time()
    elapsed, verdict, joined = _run_loops(loops, seconds, go, stop)
    cpu = time.process_time() - cpu
    verdict = _shut_down(host, verdict)
    return OpsResult.of(
        {op: sum(loop.counts[op] for loop in joined) for op in OPS},
        {op: sum(loop.seconds[op] for loop in joined) for op in OPS},
        errors=sum(loop.counts["errors"] for loop in joined),
        seconds=elapsed,
        cpu_seconds=cpu,
        rounds=1,
        verdict=verdict,
    )


def profile_driver_ops(strategy: str, seconds: float) -> Profile:
    """Profile measurement 4's loop with cProfile: the functions with the most own time.

    One worker runs the loop in the calling thread. cProfile follows only that thread on
    Python 3.11; from 3.12 (PEP 669) it sees every thread, so the host controller thread's
    calls are counted too and its time interleaves with the worker's (own time can then
    exceed the time with callees). The clock is the wall clock: a blocking lock acquire
    includes its wait.

    Returns:
        The hottest functions by own time, hottest first (none if another profiler is active:
        Python 3.12+ allows one).

    """
    host, minors = _ops_host(strategy)
    loop = _Loop(_ops_step(host, minors[0]), 0, Event("bench.go"), Event("bench.stop"))
    scope = "the worker thread" if sys.version_info < (3, 12) else "every thread, interleaved"
    profiler = cProfile.Profile()
    try:
        profiler.enable()
    except ValueError:  # another profiling tool holds sys.monitoring's profiler slot
        _shut_down(host, "clean")
        return Profile("unavailable: another profiler is active", 0.0, 0, [])
    start = time.perf_counter()
    try:
        while time.perf_counter() - start < seconds:
            loop.step(loop)
    finally:
        profiler.disable()
        elapsed = time.perf_counter() - start
        _shut_down(host, "clean")
    cycles = loop.counts["close"]
    # pstats keeps its table in an attribute typeshed does not declare:
    # (file, line, function) -> (primitive calls, calls, tottime, cumtime, callers).
    table: dict[tuple[str, int, str], tuple[int, int, float, float, object]]
    table = getattr(pstats.Stats(profiler), "stats")  # noqa: B009
    hottest = sorted(table.items(), key=lambda item: item[1][2], reverse=True)[:HOT_SPOTS]
    functions = [
        HotSpot(
            function=_function_name(*where),
            calls_per_cycle=calls / max(1, cycles),
            self_share=tottime / elapsed,
            total_share=cumtime / elapsed,
        )
        for where, (_, calls, tottime, cumtime, _) in hottest
    ]
    return Profile(scope, elapsed, cycles, functions)


def _function_name(filename: str, line: int, name: str) -> str:
    """``package/module.py:line(function)`` for the emulator's code, cProfile's name else."""
    if filename == "~":
        return name  # a builtin: "<method 'acquire' of '_thread.lock' objects>"
    path = Path(filename)
    where = path.name
    if path.parent.name in ("usblp_emu", "_bench", "_strategies", "hazard", "testing"):
        where = f"{path.parent.name}/{path.name}"
    return f"{where}:{line}({name})"

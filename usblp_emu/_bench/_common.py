"""What every measurement shares: the configuration, its threads, and their verdicts.

Rules and invariants:
- Every thread a measurement starts writes only its own counters, which the measuring thread
  reads after joining it; start and stop flags are :class:`hazard.Event`; the free clock of
  measurement 2 is guarded by a :class:`hazard.Condition`.
- Benchmarks report; they do not fail. A heap error, a refcount violation or a hung thread
  becomes the measurement's ``verdict`` (``"clean"`` otherwise), shown beside its numbers.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from hazard import Event
from usblp_emu._host import Host
from usblp_emu._usblp._strategies import STRATEGIES
from usblp_emu._virtual._printer import VirtualPrinter

# Measurement 4's operations, tallied by every benchmark thread (see ``_Loop``).
OPS = ("open", "write", "ioctl", "poll", "close")

DEFAULT_SECONDS = 3.0
DEFAULT_ROUNDS = 3
DEFAULT_SWITCH_INTERVAL = 1e-4
JOIN_TIMEOUT = 10.0

# The strategies measurements 2 and 3 compare: the two that defer frees past readers.
DEFERRING = ("rcu", "hazard")


class BenchUsageError(ValueError):
    """A bad option: reported as one line, exit status 2."""


@dataclass(frozen=True)
class BenchConfig:
    """What to run.

    Attributes:
        strategies: measured in this order; measurements 2 and 3 take only rcu and hazard.
        seconds: length of each measurement.
        quick: a short run (for tests); recorded in the report.
        switch_interval: CPython's thread switch interval during the run, in seconds.
        rounds: measurements 1, 2 and 4 run in this many rounds of ``seconds / rounds``,
            the strategies' order rotating (see ``_report._measure``); their results are summed.
        seed: seeds every thread's random choices.

    """

    strategies: tuple[str, ...] = tuple(STRATEGIES)
    seconds: float = DEFAULT_SECONDS
    quick: bool = False
    switch_interval: float = DEFAULT_SWITCH_INTERVAL
    rounds: int = DEFAULT_ROUNDS
    seed: int = 0


# -- verdicts ----------------------------------------------------------------------------------


def _first_violation(verdicts: Iterable[str]) -> str:
    return next((v for v in verdicts if v != "clean"), "clean")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# -- running threads ---------------------------------------------------------------------------


class _Loop:
    """One benchmark thread: ``step(self)`` until stopped; its tallies are read after join."""

    def __init__(self, step: Callable[[_Loop], None], seed: int, go: Event, stop: Event) -> None:
        self.step = step
        self.rng = random.Random(seed)
        self.go = go
        self.stop = stop
        self.counts: Counter[str] = Counter()
        self.seconds: dict[str, float] = dict.fromkeys(OPS, 0.0)
        self.error: str | None = None

    def tally(self, op: str, start: float) -> float:
        """Count one ``op`` that started at ``start``; return now, the next op's start."""
        now = time.perf_counter()
        self.counts[op] += 1
        self.seconds[op] += now - start
        return now

    def main(self) -> None:
        self.go.wait()
        try:
            while not self.stop.is_set():
                self.step(self)
        except Exception as exc:  # reported as the verdict: benchmarks report, never raise
            self.error = _first_line(exc)
            self.stop.set()


def _start(targets: Iterable[Callable[[], None]], name: str) -> list[threading.Thread]:
    # Daemon threads: a hung one (a flawed strategy can deadlock) must not keep the CLI alive.
    threads = [
        threading.Thread(target=target, name=f"{name}-{i}", daemon=True)
        for i, target in enumerate(targets)
    ]
    for t in threads:
        t.start()
    return threads


def _join(threads: list[threading.Thread]) -> list[str]:
    deadline = time.monotonic() + JOIN_TIMEOUT
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return [t.name for t in threads if t.is_alive()]


def _run_loops(
    loops: list[_Loop], seconds: float, go: Event, stop: Event
) -> tuple[float, str, list[_Loop]]:
    """Start the loops together and stop them after ``seconds``.

    Returns:
        The elapsed time, the verdict so far, and the loops whose threads were joined: only
        their tallies may be read (a hung thread's are still its own).

    """
    threads = _start((loop.main for loop in loops), "bench")
    start = time.perf_counter()
    go.set()
    stop.wait(seconds)
    stop.set()
    hung = _join(threads)
    # Until the last thread finished: an operation that was running at the stop is counted,
    # so the time it took is too.
    elapsed = time.perf_counter() - start
    joined = [loop for loop, t in zip(loops, threads, strict=True) if not t.is_alive()]
    if hung:
        return elapsed, f"hang: {', '.join(hung)} did not stop in {JOIN_TIMEOUT:g} s", joined
    errors = [loop.error for loop in loops if loop.error is not None]
    return elapsed, errors[0] if errors else "clean", joined


def _shut_down(host: Host, verdict: str) -> str:
    """Close ``host`` and return the first violation seen (``verdict`` if there was one)."""
    if verdict.startswith("hang"):
        return verdict  # closing would wait for the hung thread
    try:
        host.close()
        host.check()
    except Exception as exc:  # a flawed strategy's violation (HazardError) or worse: report it
        return verdict if verdict != "clean" else _first_line(exc)
    return verdict


def _printers(count: int, **kwargs: Any) -> list[VirtualPrinter]:
    return [VirtualPrinter(serial=f"BENCH{i:02d}", **kwargs) for i in range(count)]

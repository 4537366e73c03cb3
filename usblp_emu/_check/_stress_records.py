"""The records of a stress run, and what usblp may return for each operation.

A run's configuration, violations, latency histograms, live snapshots and final report.

These are plain data: each is built by one thread and, once published, never written again.
"""

from __future__ import annotations

import errno
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from hazard import HeapStatistics
from usblp_emu._errors import EmulatorUsageError
from usblp_emu._usblp._strategies import STRATEGIES

__all__ = [
    "ALLOWED_ERRNOS",
    "MAX_PRINTERS",
    "OPERATIONS",
    "LatencyHistogram",
    "LatencySummary",
    "Published",
    "StressConfig",
    "StressReport",
    "StressSnapshot",
    "Violation",
]

# What usblp may return for each operation while printers come and go (and faults fire).
ALLOWED_ERRNOS: dict[str, frozenset[int]] = {
    "open": frozenset({errno.ENODEV, errno.EBUSY, errno.EIO}),
    "write": frozenset({errno.ENODEV, errno.EIO, errno.EAGAIN}),
    "read": frozenset({errno.ENODEV, errno.EIO, errno.EAGAIN}),
    "ioctl": frozenset({errno.ENODEV, errno.EIO}),
    "poll": frozenset(),
    "close": frozenset(),
}

OPERATIONS = tuple(ALLOWED_ERRNOS)

MAX_PRINTERS = 16  # usblp's minors


@dataclass(frozen=True)
class StressConfig:
    """What to run.

    Attributes:
        strategy: the lifetime strategy.
        printers: virtual printers (1 to 16, usblp's minors).
        threads: worker threads.
        seconds: how long to run; ``ops`` ends the run earlier if given.
        ops: total sessions across the workers (each an open attempt, then 1-4 operations and
            a close if the open succeeded); None to run for ``seconds``.
        seed: drives every decision.
        unplug_rate: hotplug events (a plug or an unplug) per second, or per 1000 sessions
            with ``ops``; 0 for none.
        minor_rwsem: keep the USB core's minor rwsem backstop.
        latency: seconds from a bulk transfer's submission to its completion.
        resume_latency: seconds a printer takes to resume from autosuspend (every open of an
            idle printer resumes it).
        fault_rate: injected transfer faults (stall, timeout, EPIPE, EIO, short write) per
            second, or per 1000 sessions with ``ops``; 0 for none.
        watchdog: a worker that completes no session (or a hotplug or fault event that does
            not end) for this many seconds is a deadlock; 0 is off. Keep it well above the
            slowest legitimate session (a session makes up to 8 transfers of ``latency``).

    """

    strategy: str = "hazard"
    printers: int = 4
    threads: int = 8
    seconds: float = 2.0
    ops: int | None = None
    seed: int = 0
    unplug_rate: float = 50.0
    minor_rwsem: bool = True
    latency: float = 0.0
    resume_latency: float = 0.0
    fault_rate: float = 0.0
    watchdog: float = 10.0

    def __post_init__(self) -> None:
        problems = []
        if self.strategy not in STRATEGIES:
            names = ", ".join(STRATEGIES)
            problems.append(f"unknown strategy {self.strategy!r}; choose from {names}")
        if not 1 <= self.printers <= MAX_PRINTERS:
            problems.append(f"printers must be 1 to {MAX_PRINTERS}, not {self.printers!r}")
        if self.threads < 1:
            problems.append(f"threads must be >= 1, not {self.threads!r}")
        if not self.seconds > 0:
            problems.append(f"seconds must be > 0, not {self.seconds!r}")
        if self.ops is not None and self.ops < 1:
            problems.append(f"ops must be >= 1, not {self.ops!r}")
        for name in ("unplug_rate", "latency", "resume_latency", "fault_rate", "watchdog"):
            if not getattr(self, name) >= 0:  # also refuses NaN
                problems.append(f"{name} must be >= 0, not {getattr(self, name)!r}")
        if problems:
            raise EmulatorUsageError("; ".join(problems))


@dataclass(frozen=True)
class Violation:
    """Something the kernel would not do, with the stack (or stacks) where it was seen."""

    kind: str
    message: str
    thread: str
    stack: str


@dataclass(frozen=True)
class LatencySummary:
    """One operation's latency, in microseconds."""

    count: int
    p50_us: float
    p99_us: float
    max_us: float


class LatencyHistogram:
    """Durations in log-linear buckets: about 3% precision in bounded memory.

    A duration of ``n`` ns below 64 has its own bucket; above, it keeps its top 6 bits.
    Not thread-safe: one thread records, others read copies.
    """

    __slots__ = ("_counts", "count", "max_ns")

    def __init__(self, counts: Mapping[int, int] | None = None, max_ns: int = 0) -> None:
        self._counts: dict[int, int] = dict(counts or {})
        self.count = sum(self._counts.values())
        self.max_ns = max_ns

    def record(self, ns: int) -> None:
        """Add one duration of ``ns`` (>= 0) nanoseconds."""
        # On the hot path of every operation: kept to a few integer operations.
        shift = ns.bit_length() - 6
        key = (shift << 6) | (ns >> shift) if shift > 0 else ns
        counts = self._counts
        counts[key] = counts.get(key, 0) + 1
        self.count += 1
        self.max_ns = max(self.max_ns, ns)

    def copy(self) -> LatencyHistogram:
        """An independent copy."""
        return LatencyHistogram(self._counts, self.max_ns)

    def merge(self, other: LatencyHistogram) -> None:
        """Add ``other``'s durations to this one."""
        for key, n in other._counts.items():
            self._counts[key] = self._counts.get(key, 0) + n
        self.count += other.count
        self.max_ns = max(self.max_ns, other.max_ns)

    def percentile(self, q: float) -> float:
        """The ``q`` quantile (0 < q <= 1) in nanoseconds: its bucket's midpoint; 0 if empty."""
        if not self.count:
            return 0.0
        rank = max(1, round(q * self.count))
        seen = 0
        for key in sorted(self._counts):
            seen += self._counts[key]
            if seen >= rank:
                shift, mantissa = key >> 6, key & 63
                low = mantissa << shift
                return float(min(low + ((1 << shift) - 1) / 2, self.max_ns))
        return float(self.max_ns)  # unreachable: the counts sum to count

    def summary(self) -> LatencySummary:
        """Count, p50, p99 and max in microseconds."""
        return LatencySummary(
            self.count,
            self.percentile(0.5) / 1000,
            self.percentile(0.99) / 1000,
            self.max_ns / 1000,
        )


@dataclass(frozen=True)
class Published:
    """A worker's counters at one moment: a frozen copy, safe to read from any thread."""

    sessions: int = 0
    ops: Mapping[str, int] = field(default_factory=dict)
    errnos: Mapping[str, int] = field(default_factory=dict)
    latency: Mapping[str, LatencyHistogram] = field(default_factory=dict)
    violations: tuple[Violation, ...] = ()
    digest: str = ""


@dataclass(frozen=True)
class StressSnapshot:
    """What a running stress run has done so far: what the live dashboard shows."""

    strategy: str
    elapsed: float
    seconds: float
    ops_budget: int | None
    sessions: int
    ops: Mapping[str, int]
    errnos: Mapping[str, int]
    latency: Mapping[str, LatencySummary]
    plugs: int
    unplugs: int
    faults: int
    heap: HeapStatistics
    violations: tuple[Violation, ...]


@dataclass
class StressReport:
    """What a run did and found.

    Attributes:
        sessions: sessions each worker ran, in worker order (fixed by the seed with ``ops``).
        digest: a hash of every worker's random generator state after its last draw: equal
            digests, equal decisions (fixed by the seed with ``ops``; with ``seconds`` it
            depends on how many sessions fitted).
        latency: per operation, the durations of every call (failed ones included).
        heap: the heap's counters after the host was closed.
        interrupted: Ctrl-C ended the run early.

    """

    config: StressConfig
    ops: Counter[str] = field(default_factory=Counter)
    errnos: Counter[str] = field(default_factory=Counter)
    plugs: int = 0
    unplugs: int = 0
    faults: int = 0
    violations: list[Violation] = field(default_factory=list)
    seconds: float = 0.0
    sessions: list[int] = field(default_factory=list)
    digest: str = ""
    latency: dict[str, LatencyHistogram] = field(default_factory=dict)
    heap: HeapStatistics | None = None
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        """No violation."""
        return not self.violations

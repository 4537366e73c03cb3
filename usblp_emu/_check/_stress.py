"""Real-thread stress: workers race open/write/read/ioctl/poll/close against hotplug and faults.

Rules and invariants:
- Each thread draws every decision from its own ``random.Random`` seeded from the run's seed.
  A worker makes exactly one draw per session (the minor, nonblocking or not, the operations
  and their arguments are read from it), so its decisions never depend on what the driver
  returned: a seed replays the same decisions (the OS still picks the interleaving).
- With ``ops`` the hotplug and fault generators are driven by the workers' progress (events per
  1000 sessions) instead of the clock, so their number is fixed by the seed too; with
  ``seconds`` only they follow the clock (events per second).
- Counters, latency histograms and violations are per thread (one writer each). A worker
  publishes copies of them through an :class:`hazard.AtomicRef` every 0.1 s and when it ends,
  and never writes a copy after publishing it; the dashboard, the watchdog and the final report
  read only those copies. Generators count through :class:`hazard.AtomicInt`; the stop flag is
  a :class:`hazard.Event`. Nothing else is shared except through the host.
- A violation is anything the kernel would not do: a heap error (use-after-free, double free,
  leak), a refcount violation, an errno outside the operation's allowed set, an unexpected
  exception, or a deadlock (the watchdog: a worker that completes no session, or a generator
  event that does not end, for ``watchdog`` seconds; every thread's stack is dumped).
- The first violation stops the run: after memory corruption nothing later is trustworthy.
- Ctrl-C (KeyboardInterrupt in the waiting thread) stops the run like the end of time does;
  the report says ``interrupted``.
- For the run, the interpreter's thread switch interval drops to 1 us (restored after): the
  GIL then changes hands inside the driver's race windows instead of every 5 ms.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import random
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable

from hazard import AtomicInt, AtomicRef, Event, HazardError
from usblp_emu._abi import LPGETSTATUS, LPIOC_GET_DEVICE_ID
from usblp_emu._check._stress_records import (
    ALLOWED_ERRNOS,
    MAX_PRINTERS,
    OPERATIONS,
    LatencyHistogram,
    LatencySummary,
    Published,
    StressConfig,
    StressReport,
    StressSnapshot,
    Violation,
)
from usblp_emu._errors import DeviceError, NoDevice
from usblp_emu._host import File, Host
from usblp_emu._virtual._printer import Fault, VirtualPrinter

__all__ = [
    "ALLOWED_ERRNOS",
    "MAX_PRINTERS",
    "OPERATIONS",
    "LatencyHistogram",
    "LatencySummary",
    "StressConfig",
    "StressReport",
    "StressSnapshot",
    "Violation",
    "run_stress",
]

_PUBLISH_NS = 100_000_000  # how often a thread publishes its counters
_JOIN_TIMEOUT = 10.0  # seconds a stopped thread gets to finish (without a watchdog)
_TIMEOUT_FAULT = (0.005, 0.1)  # seconds a TIMEOUT fault keeps a bulk endpoint NAKing

# The faults each place accepts (a short transfer exists only for bulk OUT).
_FAULTS_AT: dict[str, tuple[Fault, ...]] = {
    "bulk-out": tuple(Fault),
    "bulk-in": (Fault.STALL, Fault.TIMEOUT, Fault.EPIPE, Fault.EIO),
    "control": tuple(Fault),
}


class _Beat:
    """When the thread's current event started (perf_counter ns), or 0 between events."""

    def __init__(self) -> None:
        self._since = AtomicInt(0)

    def enter(self) -> None:
        self._since.store(time.perf_counter_ns())

    def leave(self) -> None:
        self._since.store(0)

    def stuck(self, now_ns: int, limit_ns: int) -> bool:
        """Whether the current event has run longer than ``limit_ns``."""
        since = self._since.load()
        return since != 0 and now_ns - since > limit_ns


def _stack_dump() -> str:
    frames = sys._current_frames()
    parts = []
    for t in threading.enumerate():
        frame = frames.get(t.ident or -1)
        if frame is not None:
            parts.append(f"Thread {t.name}:\n" + "".join(traceback.format_stack(frame)))
    return "\n".join(parts)


class _Watchdog:
    """Finds a thread that made no progress for ``limit`` seconds (0: never).

    A worker progresses when it publishes its counters, which it does at least every 0.1 s
    while its sessions complete. A generator may sleep long between events at a low rate, so
    it is stuck only when one event runs longer than the limit.
    """

    def __init__(
        self,
        limit: float,
        workers: list[_Worker],
        threads: list[threading.Thread],
        generators: list[_Generator],
    ) -> None:
        self.limit = limit
        self.workers = list(zip(workers, threads, strict=False))
        self.generators = generators
        now = time.monotonic()
        self._seen = [(w.published.load(), now) for w in workers]

    def check(self) -> Violation | None:
        """The deadlock, with every thread's stack, if a thread is stuck; else None."""
        if not self.limit:
            return None
        now = time.monotonic()
        for i, (worker, thread) in enumerate(self.workers):
            view = worker.published.load()
            if view is not self._seen[i][0]:
                self._seen[i] = (view, now)
            elif thread.is_alive() and now - self._seen[i][1] > self.limit:
                return self._deadlock(worker.name, "")
        now_ns = time.perf_counter_ns()
        for g in self.generators:
            if g.beat.stuck(now_ns, int(self.limit * 1e9)):
                return self._deadlock(g.kind, " (in one event)")
        return None

    def _deadlock(self, name: str, where: str) -> Violation:
        message = f"{name} made no progress for {self.limit:g} s{where}: deadlock"
        return Violation("deadlock", message, name, _stack_dump())


class _Worker:
    """One user process: sessions of open, a few operations, close."""

    def __init__(
        self,
        name: str,
        host: Host,
        printers: int,
        seed: int,
        stop: Event,
        progress: AtomicInt,
        budget: int | None,
    ) -> None:
        self.name = name
        self.host = host
        self.printers = printers
        self.rng = random.Random(seed)
        self.stop = stop
        self.progress = progress
        self.budget = budget
        self.published: AtomicRef[Published] = AtomicRef(Published())
        # Owned by the worker's thread; others read the published copies.
        self._sessions = 0
        self._ops: Counter[str] = Counter()
        self._errnos: Counter[str] = Counter()
        self._latency = {op: LatencyHistogram() for op in OPERATIONS}
        self._violations: list[Violation] = []
        self._published_at = 0

    def _publish(self) -> None:
        self.published.store(
            Published(
                self._sessions,
                dict(self._ops),
                dict(self._errnos),
                {op: h.copy() for op, h in self._latency.items() if h.count},
                tuple(self._violations),
                # The generator's state after every draw so far: equal states, equal draws.
                hashlib.blake2b(repr(self.rng.getstate()).encode(), digest_size=8).hexdigest(),
            )
        )
        self._published_at = time.perf_counter_ns()

    def _violation(self, kind: str, message: str) -> None:
        self._violations.append(Violation(kind, message, self.name, traceback.format_exc()))
        self.stop.set()

    def _call(self, op: str, fn: Callable[..., object], *args: object) -> object:
        self._ops[op] += 1
        start = time.perf_counter_ns()
        try:
            return fn(*args)
        except DeviceError as exc:
            name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
            self._errnos[f"{op}:{name}"] += 1
            if exc.errno not in ALLOWED_ERRNOS[op]:
                self._violation("wrong-errno", f"{op} failed with {name}, which usblp never gives")
            return None
        finally:
            self._latency[op].record(time.perf_counter_ns() - start)

    def main(self) -> None:
        """Run sessions until stopped or out of budget; publish the counters at the end."""
        try:
            while not self.stop.is_set() and (self.budget is None or self._sessions < self.budget):
                if self.budget is not None:  # only progress-driven generators read it
                    self.progress.fetch_add(1)
                self._session()
                self._sessions += 1
                if time.perf_counter_ns() - self._published_at >= _PUBLISH_NS:
                    self._publish()
        except HazardError as exc:
            self._violation(type(exc).__name__, str(exc).splitlines()[0])
        except Exception as exc:  # anything else is a bug in the driver or emulator
            self._violation("exception", f"{type(exc).__name__}: {exc}")
        finally:
            self._publish()

    def _session(self) -> None:
        # One draw per session, whatever happens in it, so the driver's results never shift
        # later decisions; the session reads its choices from it as mixed-radix digits.
        bits = self.rng.getrandbits(64)
        bits, minor = divmod(bits, self.printers)
        f = self._call("open", self.host.open, minor)
        if not isinstance(f, File):
            return
        bits, nonblock = divmod(bits, 10)
        f.nonblock = nonblock < 3
        bits, count = divmod(bits, 4)
        for _ in range(count + 1):
            bits, action = divmod(bits, 20)
            bits, arg = divmod(bits, 3)
            if action < 8:  # 40%
                self._call("write", f.write, b"x" * (1, 64, 9000)[arg])
            elif action < 11:  # 15%
                f.nonblock = True  # nothing guarantees read-back data: never block on it
                self._call("read", f.read, 64)
                f.nonblock = nonblock < 3
            elif action < 16:  # 25%
                cmd = LPIOC_GET_DEVICE_ID(1024) if arg else LPGETSTATUS
                self._call("ioctl", f.ioctl, cmd)
            else:  # 20%
                self._call("poll", f.poll)
        self._call("close", f.close)


class _Generator:
    """A thread that makes random events at a rate: per second, or per 1000 sessions."""

    def __init__(
        self,
        kind: str,
        action: Callable[[random.Random], None],
        seed: int,
        stop: Event,
        rate: float,
        progress: AtomicInt,
        sessions: int | None,
    ) -> None:
        self.kind = kind
        self.action = action
        self.rng = random.Random(seed)
        self.stop = stop
        self.rate = rate
        self.progress = progress
        self.sessions = sessions  # the run's session budget: drive events by progress
        self.beat = _Beat()
        self.events = AtomicInt(0)
        self.violations: AtomicRef[tuple[Violation, ...]] = AtomicRef(())

    def main(self) -> None:
        """Make events until stopped (or, progress-driven, until past the session budget)."""
        threshold = 0.0
        try:
            while not self.stop.is_set():
                if self.sessions is None:
                    if self.stop.wait(self.rng.expovariate(self.rate)):
                        return
                else:
                    threshold += self.rng.expovariate(self.rate / 1000.0)
                    if threshold > self.sessions:
                        return
                    while self.progress.load() < threshold:
                        if self.stop.wait(0.0005):
                            return
                self.beat.enter()
                self.action(self.rng)
                self.beat.leave()
                self.events.fetch_add(1)
        except Exception as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.violations.store(
                (Violation(type(exc).__name__, message, self.kind, traceback.format_exc()),)
            )
            self.stop.set()
        finally:
            self.beat.leave()


class _Hotplug:
    """The hotplug action: plug an unplugged printer or unplug a plugged one, at random."""

    def __init__(self, host: Host, printers: list[VirtualPrinter]) -> None:
        self.host = host
        self.printers = printers
        self.plugs = AtomicInt(0)
        self.unplugs = AtomicInt(0)

    def __call__(self, rng: random.Random) -> None:
        printer = rng.choice(self.printers)
        # Only the generator plugs and unplugs during the run, so ``plugged`` is its own state.
        if printer.plugged:
            self.host.unplug(printer)
            self.unplugs.fetch_add(1)
        else:
            # NoDevice: plugged in, but usblp did not bind (no free minor); the kernel's outcome.
            with contextlib.suppress(NoDevice):
                self.host.plug(printer)
            self.plugs.fetch_add(1)


class _Faults:
    """The fault action: script one fault on a random printer's next transfer somewhere."""

    def __init__(self, printers: list[VirtualPrinter]) -> None:
        self.printers = printers

    def __call__(self, rng: random.Random) -> None:
        printer = rng.choice(self.printers)
        where = rng.choice(tuple(_FAULTS_AT))
        fault = rng.choice(_FAULTS_AT[where])
        duration = rng.uniform(*_TIMEOUT_FAULT)  # drawn for every fault: a fixed draw count
        printer.inject(fault, where=where, duration=duration)


def run_stress(
    config: StressConfig,
    *,
    on_snapshot: Callable[[StressSnapshot], None] | None = None,
    snapshot_interval: float = 0.25,
) -> StressReport:
    """Run one stress session and return what it saw.

    Args:
        config: the strategy, sizes, duration, rates and seed.
        on_snapshot: called from the calling thread every ``snapshot_interval`` seconds with
            what the run has done so far (for a live dashboard). A KeyboardInterrupt raised in
            it, or while the run waits, ends the run early like Ctrl-C.
        snapshot_interval: seconds between snapshots.

    Returns:
        The report; ``report.interrupted`` if Ctrl-C ended it.

    """
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        return _Run(config).run(on_snapshot, snapshot_interval)
    finally:
        sys.setswitchinterval(old_interval)


class _Run:
    """One run: the host, its printers, the workers and the generators."""

    def __init__(self, config: StressConfig) -> None:
        self.config = config
        self.host = Host(config.strategy, minor_rwsem=config.minor_rwsem)
        self.printers = [
            VirtualPrinter(
                serial=f"VP{i:04d}", latency=config.latency, resume_latency=config.resume_latency
            )
            for i in range(config.printers)
        ]
        rng = random.Random(config.seed)
        self.stop = Event("stress.stop")
        self.progress = AtomicInt(0)
        self.workers = [
            _Worker(
                f"worker-{i}",
                self.host,
                config.printers,
                rng.randrange(2**32),
                self.stop,
                self.progress,
                _share(config.ops, config.threads, i),
            )
            for i in range(config.threads)
        ]
        # Seeds are drawn whether or not a generator runs, so adding faults to a run does not
        # change the hotplug's decisions.
        hotplug_seed, faults_seed = rng.randrange(2**32), rng.randrange(2**32)
        self.hotplug = _Hotplug(self.host, self.printers)
        self.hotplug_thread = _Generator(
            "hotplug",
            self.hotplug,
            hotplug_seed,
            self.stop,
            config.unplug_rate,
            self.progress,
            config.ops,
        )
        self.faults_thread = _Generator(
            "faults",
            _Faults(self.printers),
            faults_seed,
            self.stop,
            config.fault_rate,
            self.progress,
            config.ops,
        )
        self.generators = [g for g in (self.hotplug_thread, self.faults_thread) if g.rate > 0]
        self.start = 0.0

    def _threads(self) -> list[threading.Thread]:
        # Daemons: a deadlocked thread must not keep the process alive after the verdict.
        workers = [threading.Thread(target=w.main, name=w.name, daemon=True) for w in self.workers]
        others = [
            threading.Thread(target=g.main, name=g.kind, daemon=True) for g in self.generators
        ]
        return workers + others

    def snapshot(self) -> StressSnapshot:
        """What the threads have published so far, plus the heap's counters."""
        views = [w.published.load() for w in self.workers]
        ops: Counter[str] = Counter()
        errnos: Counter[str] = Counter()
        latency: dict[str, LatencyHistogram] = {}
        violations: list[Violation] = []
        for view in views:
            ops.update(view.ops)
            errnos.update(view.errnos)
            for op, hist in view.latency.items():
                latency.setdefault(op, LatencyHistogram()).merge(hist)
            violations.extend(view.violations)
        for g in self.generators:
            violations.extend(g.violations.load())
        return StressSnapshot(
            strategy=self.config.strategy,
            elapsed=time.monotonic() - self.start,
            seconds=self.config.seconds,
            ops_budget=self.config.ops,
            sessions=sum(v.sessions for v in views),
            ops=dict(ops),
            errnos=dict(errnos),
            latency={op: h.summary() for op, h in latency.items()},
            plugs=self.hotplug.plugs.load() + self.config.printers,
            unplugs=self.hotplug.unplugs.load(),
            faults=self.faults_thread.events.load(),
            heap=self.host.heap.statistics(),
            violations=tuple(violations),
        )

    def run(
        self, on_snapshot: Callable[[StressSnapshot], None] | None, interval: float
    ) -> StressReport:
        report = StressReport(self.config)
        self.start = time.monotonic()
        threads: list[threading.Thread] = []  # the started ones
        deadlock = None
        try:  # Ctrl-C at any point from here ends the run like the end of time does
            for p in self.printers:
                self.host.plug(p)
            for t in self._threads():
                t.start()
                threads.append(t)
            deadlock = self._wait(threads, on_snapshot, interval)
        except KeyboardInterrupt:
            report.interrupted = True
        self.stop.set()
        if deadlock is not None:
            report.violations.append(deadlock)
            _join(threads, 1.0)  # they are stuck: the dump above already says where
        else:
            timeout = max(_JOIN_TIMEOUT, self.config.watchdog)
            for t in _join(threads, timeout):
                frame = sys._current_frames().get(t.ident or -1)
                stack = "".join(traceback.format_stack(frame)) if frame is not None else ""
                report.violations.append(
                    Violation("hang", f"{t.name} did not finish in {timeout:g} s", t.name, stack)
                )
        hung = any(t.is_alive() for t in threads)
        check_violation = None if hung else self._close_and_check()
        report.seconds = time.monotonic() - self.start
        self._collect(report)
        # check() re-raises the first heap error, which a thread may have reported already.
        if check_violation is not None and all(
            v.message != check_violation.message for v in report.violations
        ):
            report.violations.append(check_violation)
        report.heap = self.host.heap.statistics()
        return report

    def _wait(
        self,
        threads: list[threading.Thread],
        on_snapshot: Callable[[StressSnapshot], None] | None,
        interval: float,
    ) -> Violation | None:
        """Wait for the end of the run; the watchdog's violation if a thread got stuck."""
        deadline = self.start + self.config.seconds
        next_snapshot = self.start + interval
        watchdog = _Watchdog(self.config.watchdog, self.workers, threads, self.generators)
        while time.monotonic() < deadline and not self.stop.is_set():
            if self.config.ops is not None and not any(t.is_alive() for t in threads):
                break
            time.sleep(0.01)
            stuck = watchdog.check()
            if stuck is not None:
                return stuck
            if on_snapshot is not None and time.monotonic() >= next_snapshot:
                on_snapshot(self.snapshot())
                next_snapshot = time.monotonic() + interval
        return None

    def _close_and_check(self) -> Violation | None:
        try:
            self.host.close()
            self.host.check()
        except HazardError as exc:
            return Violation(type(exc).__name__, str(exc).splitlines()[0], "check", str(exc))
        except Exception as exc:  # the emulator broke after memory corruption: still a verdict
            return Violation(
                "exception", f"{type(exc).__name__}: {exc}", "check", traceback.format_exc()
            )
        return None

    def _collect(self, report: StressReport) -> None:
        """Sum what the threads published (their final copies once they have ended)."""
        digest = hashlib.blake2b(digest_size=8)
        for w in self.workers:
            view = w.published.load()
            report.ops.update(view.ops)
            report.errnos.update(view.errnos)
            report.violations.extend(view.violations)
            report.sessions.append(view.sessions)
            digest.update(view.digest.encode())
            for op, hist in view.latency.items():
                report.latency.setdefault(op, LatencyHistogram()).merge(hist)
        for g in self.generators:
            report.violations.extend(g.violations.load())
        report.digest = digest.hexdigest()
        report.plugs = self.hotplug.plugs.load() + self.config.printers
        report.unplugs = self.hotplug.unplugs.load()
        report.faults = self.faults_thread.events.load()


def _share(total: int | None, parts: int, i: int) -> int | None:
    """Worker ``i``'s part of ``total`` sessions: the first ``total % parts`` get one more."""
    if total is None:
        return None
    return total // parts + (1 if i < total % parts else 0)


def _join(threads: list[threading.Thread], timeout: float) -> list[threading.Thread]:
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return [t for t in threads if t.is_alive()]

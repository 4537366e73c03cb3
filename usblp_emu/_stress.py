"""Real-thread stress: workers race open/write/read/ioctl/poll/close against hotplug.

Rules and invariants:
- Each thread draws every decision from its own ``random.Random`` seeded from the run's seed,
  so a seed replays the same decisions (the OS still picks the interleaving).
- Counters are per thread (one writer each) and summed after the threads are joined; the stop
  flag is a :class:`hazard.Event`. Nothing else is shared except through the host.
- A violation is anything the kernel would not do: a heap error (use-after-free, double free,
  leak), a refcount violation, an errno outside the operation's allowed set, an unexpected
  exception, or a thread that does not finish (a hang, with its stack).
- The first violation stops the run: after memory corruption nothing later is trustworthy.
- For the run, the interpreter's thread switch interval drops to 1 us (restored after): the
  GIL then changes hands inside the driver's race windows instead of every 5 ms.
"""

from __future__ import annotations

import errno
import random
import sys
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field

from hazard import Event, HazardError, sleep
from usblp_emu._constants import LPGETSTATUS, LPIOC_GET_DEVICE_ID
from usblp_emu._errors import DeviceError
from usblp_emu._host import File, Host
from usblp_emu._printer import VirtualPrinter

__all__ = ["ALLOWED_ERRNOS", "StressConfig", "StressReport", "Violation", "run_stress"]

# What usblp may return for each operation while printers come and go.
ALLOWED_ERRNOS: dict[str, frozenset[int]] = {
    "open": frozenset({errno.ENODEV, errno.EBUSY, errno.EIO}),
    "write": frozenset({errno.ENODEV, errno.EIO, errno.EAGAIN}),
    "read": frozenset({errno.ENODEV, errno.EIO, errno.EAGAIN}),
    "ioctl": frozenset({errno.ENODEV, errno.EIO}),
    "poll": frozenset(),
    "close": frozenset(),
}


@dataclass(frozen=True)
class StressConfig:
    """What to run. ``seconds`` or ``ops`` (total operations) ends the run, whichever first."""

    strategy: str = "hazard"
    printers: int = 4
    threads: int = 8
    seconds: float = 2.0
    ops: int | None = None
    seed: int = 0
    unplug_rate: float = 50.0  # hotplug events per second
    minor_rwsem: bool = True
    latency: float = 0.0


@dataclass(frozen=True)
class Violation:
    """Something the kernel would not do, with the stack where it was seen."""

    kind: str
    message: str
    thread: str
    stack: str


@dataclass
class StressReport:
    """What a run did and found."""

    config: StressConfig
    ops: Counter[str] = field(default_factory=Counter)
    errnos: Counter[str] = field(default_factory=Counter)
    plugs: int = 0
    unplugs: int = 0
    violations: list[Violation] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """No violation."""
        return not self.violations


class _Worker:
    def __init__(self, host: Host, printers: list[VirtualPrinter], seed: int, stop: Event) -> None:
        self.host = host
        self.printers = printers
        self.rng = random.Random(seed)
        self.stop = stop
        self.ops: Counter[str] = Counter()
        self.errnos: Counter[str] = Counter()
        self.violations: list[Violation] = []
        self.budget: int | None = None

    def _violation(self, kind: str, message: str) -> None:
        self.violations.append(
            Violation(kind, message, threading.current_thread().name, traceback.format_exc())
        )
        self.stop.set()

    def _call(self, op: str, fn: object, *args: object) -> object:
        self.ops[op] += 1
        try:
            return fn(*args)  # type: ignore[operator]
        except DeviceError as exc:
            name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
            self.errnos[f"{op}:{name}"] += 1
            if exc.errno not in ALLOWED_ERRNOS[op]:
                self._violation("wrong-errno", f"{op} failed with {name}, which usblp never gives")
            return None

    def main(self) -> None:
        try:
            while not self.stop.is_set():
                if self.budget is not None:
                    if self.budget <= 0:
                        return
                    self.budget -= 1
                self._session()
        except HazardError as exc:
            self._violation(type(exc).__name__, str(exc).splitlines()[0])
        except Exception as exc:  # anything else is a bug in the driver or emulator
            self._violation("exception", f"{type(exc).__name__}: {exc}")

    def _session(self) -> None:
        minor = self.rng.randrange(len(self.printers))
        f = self._call("open", self.host.open, minor)
        if not isinstance(f, File):
            return
        f.nonblock = self.rng.random() < 0.3
        for _ in range(self.rng.randrange(1, 5)):
            action = self.rng.random()
            if action < 0.4:
                self._call("write", f.write, b"x" * self.rng.choice((1, 64, 9000)))
            elif action < 0.55:
                f.nonblock = True  # nothing guarantees read-back data: never block on it
                self._call("read", f.read, 64)
            elif action < 0.8:
                cmd = LPGETSTATUS if self.rng.random() < 0.5 else LPIOC_GET_DEVICE_ID(1024)
                self._call("ioctl", f.ioctl, cmd)
            else:
                self._call("poll", f.poll)
        self._call("close", f.close)


class _Hotplug:
    def __init__(
        self, host: Host, printers: list[VirtualPrinter], seed: int, stop: Event, rate: float
    ) -> None:
        self.host = host
        self.printers = printers
        self.rng = random.Random(seed)
        self.stop = stop
        self.rate = rate
        self.plugs = 0
        self.unplugs = 0
        self.violations: list[Violation] = []

    def main(self) -> None:
        try:
            while not self.stop.is_set():
                printer = self.rng.choice(self.printers)
                if printer.plugged:
                    self.host.unplug(printer)
                    self.unplugs += 1
                else:
                    self.host.plug(printer)
                    self.plugs += 1
                sleep(self.rng.expovariate(self.rate))
        except Exception as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.violations.append(
                Violation(type(exc).__name__, message, "hotplug", traceback.format_exc())
            )
            self.stop.set()


def run_stress(config: StressConfig) -> StressReport:
    """Run one stress session and return what it saw.

    Args:
        config: the strategy, sizes, duration and seed.

    """
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        return _run(config)
    finally:
        sys.setswitchinterval(old_interval)


def _run(config: StressConfig) -> StressReport:
    report = StressReport(config)
    host = Host(config.strategy, minor_rwsem=config.minor_rwsem)
    printers = [
        VirtualPrinter(serial=f"VP{i:04d}", latency=config.latency) for i in range(config.printers)
    ]
    rng = random.Random(config.seed)
    stop = Event("stress.stop")
    workers = [_Worker(host, printers, rng.randrange(2**32), stop) for _ in range(config.threads)]
    if config.ops is not None:
        per = -(-config.ops // max(1, config.threads))
        for w in workers:
            w.budget = per
    hotplug = _Hotplug(host, printers, rng.randrange(2**32), stop, config.unplug_rate)
    start = time.monotonic()
    for p in printers:
        host.plug(p)
    threads = [threading.Thread(target=w.main, name=f"worker-{i}") for i, w in enumerate(workers)]
    plugger = threading.Thread(target=hotplug.main, name="hotplug")
    for t in (*threads, plugger):
        t.start()
    deadline = start + config.seconds
    while time.monotonic() < deadline and not stop.is_set():
        if config.ops is not None and not any(t.is_alive() for t in threads):
            break
        time.sleep(0.01)
    stop.set()
    hung = _join([*threads, plugger], timeout=10.0)
    for t in hung:
        frames = sys._current_frames().get(t.ident or -1)
        stack = "".join(traceback.format_stack(frames)) if frames is not None else ""
        report.violations.append(
            Violation("hang", f"{t.name} did not finish in 10 s", t.name, stack)
        )
    check_violation: Violation | None = None
    if not hung:
        try:
            host.close()
            host.check()
        except HazardError as exc:
            check_violation = Violation(
                type(exc).__name__, str(exc).splitlines()[0], "check", str(exc)
            )
        else:
            check_violation = None
    report.seconds = time.monotonic() - start
    for w in workers:
        report.ops.update(w.ops)
        report.errnos.update(w.errnos)
        report.violations.extend(w.violations)
    report.violations.extend(hotplug.violations)
    # check() re-raises the first heap error, which a thread may have reported already.
    if check_violation is not None and all(
        v.message != check_violation.message for v in report.violations
    ):
        report.violations.append(check_violation)
    report.plugs = hotplug.plugs + config.printers
    report.unplugs = hotplug.unplugs
    return report


def _join(threads: list[threading.Thread], timeout: float) -> list[threading.Thread]:
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return [t for t in threads if t.is_alive()]

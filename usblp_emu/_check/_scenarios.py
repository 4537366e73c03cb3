"""Named race scenarios: one per race window R1-R6 of docs/lifetime.md, and plain use.

Each builds a fresh host, races the window, and checks the outcome.

Rules:
- A scenario's body is deterministic given the schedule: everything it shares goes through
  hazard's atomics and locks, its threads are started with ``hazard.testing.spawn``, and it
  ends by closing the host and calling ``check()`` (heap errors, completion-handler errors,
  leaks). A thread that sees an errno the kernel would not give raises ``WrongErrno``.
- Bodies run under the explorer (``usblp-emu explore``, the race tests) and also on real
  threads, where they are one schedule the OS picks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from hazard import HazardUsageError
from hazard.testing import ExploreResult, ReplayDrift, explore, replay, spawn
from usblp_emu._errors import (
    Busy,
    DeviceError,
    EmulatorUsageError,
    IOFailure,
    NoDevice,
    WouldBlock,
)
from usblp_emu._host import File, Host
from usblp_emu._usblp._strategies import STRATEGIES
from usblp_emu._virtual._printer import VirtualPrinter

__all__ = [
    "SCENARIOS",
    "Scenario",
    "WrongErrno",
    "explore_scenario",
    "replay_scenario",
    "scenario_body",
]


class _Joinable(Protocol):
    def join(self) -> object: ...


class WrongErrno(AssertionError):
    """A file operation returned something the kernel's usblp would not."""


@dataclass(frozen=True)
class Scenario:
    """A named race.

    Attributes:
        name: the CLI's ``--scenario`` name.
        window: the reference's window (R1..R6) or "-" for plain use.
        description: what races.
        run: the body, given a host to use.
        bidirectional: whether the printer offers protocol 2 (a read URB in flight).
        minor_rwsem: the USB core's backstop on or off.

    """

    name: str
    window: str
    description: str
    run: Callable[[Host, VirtualPrinter, int], None]
    bidirectional: bool = False
    minor_rwsem: bool = True


def _expect(op: str, exc: DeviceError, *allowed: type[DeviceError]) -> None:
    if not isinstance(exc, allowed):
        names = ", ".join(a.__name__ for a in allowed)
        raise WrongErrno(f"{op} failed with {exc!r}; usblp gives only {names} here") from exc


def _try_open(host: Host, minor: int, *allowed: type[DeviceError]) -> File | None:
    try:
        return host.open(minor)
    except DeviceError as exc:
        _expect("open", exc, *allowed)
        return None


def _join_all(*threads: _Joinable) -> None:
    for t in threads:
        t.join()


def _plain(host: Host, printer: VirtualPrinter, minor: int) -> None:
    def user() -> None:
        f = _try_open(host, minor, NoDevice)
        if f is not None:
            f.close()

    _join_all(spawn(user, name="user"), spawn(host.unplug, printer, name="hub"))


def _r1(host: Host, printer: VirtualPrinter, minor: int) -> None:
    f = host.open(minor)
    _join_all(spawn(f.close, name="closer"), spawn(host.unplug, printer, name="hub"))


def _r3(host: Host, printer: VirtualPrinter, minor: int) -> None:
    def opener() -> None:
        f = _try_open(host, minor, NoDevice)
        if f is not None:
            f.close()

    _join_all(spawn(opener, name="opener"), spawn(host.unplug, printer, name="hub"))


def _r4(host: Host, printer: VirtualPrinter, minor: int) -> None:
    first = host.open(minor)

    def opener() -> None:
        second = _try_open(host, minor, Busy)
        if second is None:
            return
        # The new owner's read URB must be its own and alive: nothing to read yet, so a
        # nonblocking read is EAGAIN; EIO means the previous release killed it (R4).
        second.nonblock = True
        try:
            second.read(16)
        except DeviceError as exc:
            _expect("first read of the new owner", exc, WouldBlock)
        second.close()

    _join_all(spawn(first.close, name="closer"), spawn(opener, name="opener"))
    host.unplug(printer)


def _r5(host: Host, printer: VirtualPrinter, minor: int) -> None:
    def user() -> File | None:
        return _try_open(host, minor, Busy)

    racers = [spawn(user, name="user-a"), spawn(user, name="user-b")]
    files = [f for f in (t.join() for t in racers) if isinstance(f, File)]
    # Only the race of the two opens is explored; what follows is sequential. If both won,
    # the first close clears ``used`` and the unplug frees the struct under the other file.
    files[0].close()
    host.unplug(printer)
    for f in files[1:]:
        f.close()


def _r6(host: Host, printer: VirtualPrinter, minor: int) -> None:
    f = host.open(minor)

    def writer() -> None:
        try:
            n = f.write(b"x")
        except DeviceError as exc:
            _expect("write", exc, NoDevice, IOFailure)
        else:
            if n != 1:
                raise WrongErrno(f"write of 1 byte returned {n}")
        f.close()

    _join_all(spawn(writer, name="writer"), spawn(host.unplug, printer, name="hub"))


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("plain", "-", "open+close races unplug", _plain),
        Scenario(
            "r1-release-vs-disconnect", "R1", "close of an open file races unplug: who frees", _r1
        ),
        Scenario(
            "r2-release-kill-vs-free",
            "R2",
            "close kills the anchored read URB while unplug frees",
            _r1,
            bidirectional=True,
        ),
        Scenario("r3-open-vs-disconnect", "R3", "open races unplug (core backstop on)", _r3),
        Scenario(
            "r3-open-vs-disconnect-no-rwsem",
            "R3",
            "open races unplug, without the core's minor rwsem: the driver alone",
            _r3,
            minor_rwsem=False,
        ),
        Scenario(
            "r4-open-vs-release",
            "R4",
            "open races the previous file's release; the new read URB must survive",
            _r4,
            bidirectional=True,
        ),
        Scenario("r5-open-vs-open", "R5", "two opens race; then close, unplug, close", _r5),
        Scenario("r6-write-vs-disconnect", "R6", "a write's URB submission races unplug", _r6),
    )
}


def scenario_body(scenario: Scenario, strategy: str) -> Callable[[], None]:
    """The explorer body: a fresh host and printer, the race, then close and check."""

    def body() -> None:
        host = Host(strategy, minor_rwsem=scenario.minor_rwsem)
        printer = VirtualPrinter(bidirectional=scenario.bidirectional)
        minor = host.plug(printer)
        try:
            scenario.run(host, printer, minor)
        finally:
            host.close()
        host.check()

    return body


def explore_scenario(
    name: str,
    strategy: str,
    *,
    preemption_bound: int = 2,
    mode: str = "dfs",
    runs: int | None = None,
    seed: int | None = None,
    timeout: float | None = None,
) -> ExploreResult:
    """Explore scenario ``name`` under ``strategy``; the report's replay line is a CLI command.

    Raises:
        EmulatorUsageError: an unknown scenario or strategy.

    """
    scenario = _lookup(name, strategy)
    hint = f"usblp-emu explore --scenario {name} --strategy {strategy} --replay {{token}}"
    return explore(
        scenario_body(scenario, strategy),
        preemption_bound=preemption_bound,
        mode=mode,
        runs=runs,
        seed=seed,
        timeout=timeout,
        replay_hint=hint,
    )


def replay_scenario(name: str, strategy: str, token: str) -> BaseException | None:
    """Re-run one recorded schedule; the exception it ends with, or None if it passed.

    Raises:
        EmulatorUsageError: an unknown scenario or strategy.
        ReplayDrift: the token does not fit this scenario's schedules.
        HazardUsageError: ``token`` is not a replay token.

    """
    scenario = _lookup(name, strategy)
    try:
        replay(scenario_body(scenario, strategy), token)
    except (ReplayDrift, HazardUsageError):
        raise  # the token does not fit, or is not a token: not the schedule's outcome
    except Exception as exc:  # the schedule's failure is the result
        return exc
    return None


def _lookup(name: str, strategy: str) -> Scenario:
    scenario = SCENARIOS.get(name)
    if scenario is None:
        raise EmulatorUsageError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
    if strategy not in STRATEGIES:
        names = ", ".join(STRATEGIES)
        raise EmulatorUsageError(f"unknown strategy {strategy!r}; choose from {names}")
    return scenario

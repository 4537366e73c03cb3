"""Measurement 1: open throughput, when every open resumes its printer.

8 virtual printers whose runtime resume takes 5 ms, 16 threads each looping open+close on a
random printer. Every close lets the printer autosuspend, so every successful open resumes it,
under the device's ``pm_lock``. Under ``static-mutex`` that resume also runs under the global
``usblp_mutex``, so opens of *different* printers queue behind one another; the refcounted
strategies resume different printers in parallel. Counted: successful opens per second (EBUSY
and ENODEV are not successes). Target: hazard >= 6x static-mutex (the ideal is 8x, one resume
per printer at a time).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from hazard import Event
from usblp_emu._bench._common import _first_violation, _Loop, _printers, _run_loops, _shut_down
from usblp_emu._errors import Busy, DeviceError, NoDevice
from usblp_emu._host import Host

OPEN_PRINTERS = 8
OPEN_THREADS = 16
RESUME_LATENCY = 0.005
OPEN_TARGET = 6.0  # hazard opens/s over static-mutex opens/s, at least


@dataclass(frozen=True)
class OpenResult:
    """Measurement 1 for one strategy: counts over ``seconds`` (summed over its rounds)."""

    opens: int
    ebusy: int
    enodev: int
    other_errors: int
    seconds: float
    opens_per_s: float
    rounds: int
    verdict: str

    @classmethod
    def merge(cls, parts: list[OpenResult]) -> OpenResult:
        """One result for several rounds: the counts and the seconds summed."""
        opens, seconds = sum(p.opens for p in parts), sum(p.seconds for p in parts)
        return cls(
            opens=opens,
            ebusy=sum(p.ebusy for p in parts),
            enodev=sum(p.enodev for p in parts),
            other_errors=sum(p.other_errors for p in parts),
            seconds=seconds,
            opens_per_s=opens / seconds,
            rounds=sum(p.rounds for p in parts),
            verdict=_first_violation(p.verdict for p in parts),
        )


def measure_open_throughput(strategy: str, seconds: float, seed: int = 0) -> OpenResult:
    """16 threads open+close random printers of 8 that take 5 ms to resume.

    Args:
        strategy: the lifetime strategy.
        seconds: how long the threads loop.
        seed: seeds the threads' choice of printer.

    """
    host = Host(strategy)
    minors = [host.plug(p) for p in _printers(OPEN_PRINTERS, resume_latency=RESUME_LATENCY)]

    def step(loop: _Loop) -> None:
        try:
            f = host.open(loop.rng.choice(minors))
        except Busy:
            loop.counts["ebusy"] += 1
            return
        except NoDevice:
            loop.counts["enodev"] += 1
            return
        except DeviceError:
            loop.counts["other"] += 1
            return
        f.close()
        loop.counts["opens"] += 1

    go, stop = Event("bench.go"), Event("bench.stop")
    loops = [_Loop(step, seed + i, go, stop) for i in range(OPEN_THREADS)]
    elapsed, verdict, joined = _run_loops(loops, seconds, go, stop)
    verdict = _shut_down(host, verdict)
    total: Counter[str] = Counter()
    for loop in joined:
        total.update(loop.counts)
    return OpenResult(
        opens=total["opens"],
        ebusy=total["ebusy"],
        enodev=total["enodev"],
        other_errors=total["other"],
        seconds=elapsed,
        opens_per_s=total["opens"] / elapsed,
        rounds=1,
        verdict=verdict,
    )

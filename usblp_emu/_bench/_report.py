"""The run: every measurement in rounds, then the ratios and targets (what ``--json`` prints).

Rules and invariants:
- Measurements 1, 2 and 4 run in 3 rounds (1 with ``--quick``) of a third of ``--seconds``
  each, the strategies' order rotating from round to round, and each strategy's rounds are
  summed: load from other processes drifting during the run (the machine may be shared) is
  spread over every strategy rather than landing on whichever runs last.
- CPython's thread switch interval is set for the run (default 100 us, restored after): at
  the interpreter's default of 5 ms a thread that finished its 5 ms resume, or the host
  controller thread completing a URB, waits up to 5 ms for the GIL held by a spinning thread,
  which would measure the GIL rather than the strategy. ``--switch-interval`` changes it.
"""

from __future__ import annotations

import operator
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TypeVar

from usblp_emu._bench._common import DEFERRING, BenchConfig
from usblp_emu._bench._latency import (
    LATENCY_READERS,
    LATENCY_TARGET,
    READ_SECTION,
    LatencyResult,
    measure_free_latency,
)
from usblp_emu._bench._open import (
    OPEN_PRINTERS,
    OPEN_TARGET,
    OPEN_THREADS,
    RESUME_LATENCY,
    OpenResult,
    measure_open_throughput,
)
from usblp_emu._bench._ops import (
    OPS_TARGET,
    OPS_THREADS,
    OPS_WRITE,
    OpsResult,
    measure_driver_ops,
    profile_driver_ops,
)
from usblp_emu._bench._unreclaimed import RETIRE_INTERVAL, SERIES_INTERVAL, measure_unreclaimed

SCHEMA = "usblp-emu-bench/1"


if TYPE_CHECKING:
    from _typeshed import DataclassInstance

R = TypeVar("R", bound="DataclassInstance")  # a measurement's result


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
}


def _measure(
    what: str,
    strategies: tuple[str, ...],
    rounds: int,
    fn: Callable[[str, float], R],
    merge: Callable[[list[R]], R],
    seconds: float,
    progress: Callable[[str], None],
) -> dict[str, dict[str, Any]]:
    """Each strategy's result, measured in ``rounds`` rounds of ``seconds / rounds`` each.

    The order rotates from round to round: load from other processes that drifts during the
    run (the machine may be shared) is then spread over every strategy instead of landing on
    whichever runs last.
    """
    parts: dict[str, list[R]] = {s: [] for s in strategies}
    for k in range(rounds):
        shift = k % max(1, len(strategies))
        for s in strategies[shift:] + strategies[:shift]:
            progress(f"{what}: {s}, round {k + 1} of {rounds}")
            parts[s].append(fn(s, seconds / rounds))
    return {s: asdict(merge(parts[s])) for s in strategies}


def _ratios(
    name: str, metric: str, results: dict[str, dict[str, Any]], baseline: str
) -> list[dict[str, Any]]:
    """Every other strategy's ``metric`` over the baseline's (None if it cannot be divided)."""
    if baseline not in results:
        return []
    base = results[baseline][metric]
    return [
        {
            "name": name,
            "metric": metric,
            "strategy": s,
            "baseline": baseline,
            "value": r[metric] / base if r[metric] is not None and base else None,
        }
        for s, r in results.items()
        if s != baseline
    ]


def _lookup(ratios: list[dict[str, Any]], name: str, strategy: str) -> float | None:
    for r in ratios:
        if r["name"] == name and r["strategy"] == strategy:
            value: float | None = r["value"]
            return value
    return None


def _target(
    name: str, op: str, target: float | None, measured: float | None, line: str
) -> dict[str, Any]:
    """A target entry; ``met`` is None when it was not measured (a strategy not selected)."""
    met = None if measured is None or target is None else _COMPARE[op](measured, target)
    outcome = {True: "met", False: "NOT met", None: "not measured"}[met]
    return {
        "name": name,
        "op": op,
        "target": target,
        "measured": measured,
        "met": met,
        "line": f"{line}: {outcome})",
    }


def _num(value: float | None, spec: str, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{suffix}"


def run_bench(
    config: BenchConfig, progress: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Run every measurement and return the report (what ``--json`` prints).

    Args:
        config: strategies, length, switch interval.
        progress: called with a short description before each measurement.

    """
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(config.switch_interval)
    try:
        return _run_bench(config, progress)
    finally:
        sys.setswitchinterval(old_interval)


def _load_average() -> float | None:
    """The 1-minute load average (other processes on a shared machine), where the OS has one."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def _run_bench(config: BenchConfig, progress: Callable[[str], None]) -> dict[str, Any]:
    seconds, seed, every = config.seconds, config.seed, config.strategies
    load_before = _load_average()
    deferring = tuple(s for s in every if s in DEFERRING)
    skipped = None if deferring else f"measured for {' and '.join(DEFERRING)} only; none selected"
    rounds = config.rounds
    opens = _measure(
        "open throughput",
        every,
        rounds,
        lambda s, t: measure_open_throughput(s, t, seed),
        OpenResult.merge,
        seconds,
        progress,
    )
    latency = _measure(
        "disconnect-to-free latency",
        deferring,
        rounds,
        lambda s, t: measure_free_latency(s, t, seed),
        LatencyResult.merge,
        seconds,
        progress,
    )
    # One round: a time series is not a sum of rounds.
    series = _measure(
        "unreclaimed objects",
        deferring,
        1,
        measure_unreclaimed,
        lambda parts: parts[0],
        seconds,
        progress,
    )
    ops = _measure(
        "driver ops/s", every, rounds, measure_driver_ops, OpsResult.merge, seconds, progress
    )
    hazard_ops = ops["hazard"]["ops_per_s"] if "hazard" in ops else None
    profile = None
    if hazard_ops is not None and hazard_ops < OPS_TARGET:
        progress("driver ops/s: profiling hazard")
        profile = asdict(profile_driver_ops("hazard", min(seconds, 2.0)))

    ratios = [
        *_ratios("open throughput", "opens_per_s", opens, "static-mutex"),
        *_ratios("disconnect-to-free p99", "p99", latency, "rcu"),
        *_ratios("driver ops/s", "ops_per_s", ops, "static-mutex"),
    ]
    open_x = _lookup(ratios, "open throughput", "hazard")
    p99_x = _lookup(ratios, "disconnect-to-free p99", "hazard")
    hz, rc = series.get("hazard", {}), series.get("rcu", {})
    targets = [
        _target(
            "open throughput",
            ">=",
            OPEN_TARGET,
            open_x,
            f"open throughput: hazard {_num(open_x, '.1f', 'x')} static-mutex "
            f"(target >= {OPEN_TARGET:g}x",
        ),
        _target(
            "disconnect-to-free p99",
            "<=",
            LATENCY_TARGET,
            p99_x,
            f"disconnect-to-free p99: hazard {_num(p99_x, '.3f', 'x')} rcu "
            f"(target <= {LATENCY_TARGET:g}x",
        ),
        _target(
            "unreclaimed under the bound",
            "<=",
            hz.get("bound"),
            hz.get("max"),
            f"unreclaimed, one stalled reader: hazard max {_num(hz.get('max'), 'd')} "
            f"(target <= its bound {_num(hz.get('bound'), 'd')}, flat",
        ),
        _target(
            "unreclaimed grows",
            ">",
            0.0,
            rc.get("growth_per_s"),
            f"unreclaimed, one stalled reader: rcu {_num(rc.get('growth_per_s'), '+,.0f', '/s')}"
            f" to {_num(rc.get('final'), ',d')} (expected to grow, > 0/s",
        ),
        _target(
            "driver ops/s",
            ">=",
            OPS_TARGET,
            hazard_ops,
            f"driver ops/s: hazard {_num(hazard_ops, ',.0f')} ops/s (target >= {OPS_TARGET:,.0f}",
        ),
    ]
    return {
        "schema": SCHEMA,
        "config": asdict(config),
        "machine": {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "gil": getattr(sys, "_is_gil_enabled", lambda: True)(),
            # Before the run: once it starts, its own threads count in the load too.
            "load_average": load_before,
        },
        "open_throughput": {
            "setup": {
                "printers": OPEN_PRINTERS,
                "threads": OPEN_THREADS,
                "resume_latency": RESUME_LATENCY,
            },
            "results": opens,
        },
        "free_latency": {
            "setup": {"readers": LATENCY_READERS, "read_section": READ_SECTION},
            "results": latency,
            "skipped": skipped,
        },
        "unreclaimed": {
            "setup": {"retire_interval": RETIRE_INTERVAL, "sample_interval": SERIES_INTERVAL},
            "results": series,
            "skipped": skipped,
        },
        "driver_ops": {
            "setup": {
                "threads": OPS_THREADS,
                "write_bytes": len(OPS_WRITE),
                "ops": ["open", "write", "ioctl LPGETSTATUS", "poll", "close"],
            },
            "results": ops,
            "profile": profile,
        },
        "ratios": ratios,
        "targets": targets,
        "plot": None,
    }

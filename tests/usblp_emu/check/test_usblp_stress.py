"""Real-thread stress: short, seeded runs of racing threads against hotplug.

A correct strategy never produces a violation; the negative controls do.
"""

from __future__ import annotations

import pytest

from usblp_emu import CORRECT_STRATEGIES
from usblp_emu._check._stress import StressConfig, run_stress

MEMORY_ERRORS = {"UseAfterFree", "DoubleFree", "RefcountViolation", "HeapLeak"}


@pytest.mark.parametrize("strategy", CORRECT_STRATEGIES)
def test_correct_strategy_survives_racing_threads_and_hotplug(strategy):
    report = run_stress(
        StressConfig(strategy=strategy, seconds=1.5, seed=7, printers=2, threads=4, unplug_rate=200)
    )
    assert report.ok, "\n\n".join(
        f"{v.kind} in {v.thread}: {v.message}\n{v.stack}" for v in report.violations
    )
    assert report.unplugs >= 10
    assert report.ops["open"] >= 100
    assert report.ops["write"] > 0
    assert any(key.startswith("open:ENODEV") for key in report.errnos)


@pytest.mark.parametrize("strategy", ["unprotected", "hazard-prototype"])
def test_negative_control_is_caught_by_the_heap(strategy):
    report = run_stress(
        StressConfig(strategy=strategy, seconds=8.0, seed=7, printers=2, threads=4, unplug_rate=200)
    )
    assert not report.ok, f"{strategy} ran {sum(report.ops.values())} ops with no violation"
    assert report.violations[0].kind in MEMORY_ERRORS, report.violations[0]


def test_ops_budget_ends_the_run():
    report = run_stress(StressConfig(strategy="hazard", seconds=30.0, ops=200, seed=3, threads=2))
    assert report.ok
    assert report.seconds < 30.0
    assert report.ops["open"] == 200  # one open per session, 100 sessions per thread

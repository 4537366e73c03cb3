"""Race verdicts: every scenario under every strategy, with the interleaving explorer.

The correct strategies must explore each scenario completely at the bound with no failure;
the negative controls must fail with the exact error their flaw produces.
"""

from __future__ import annotations

import os

import pytest

from hazard import UseAfterFree
from usblp_emu import CORRECT_STRATEGIES
from usblp_emu._check._scenarios import SCENARIOS, WrongErrno, explore_scenario, replay_scenario

# tools/race_verdicts.py runs the same at bound 3 for the README; the default test run keeps
# to a bound that finishes in about a minute per Python.
BOUND = int(os.environ.get("USBLP_EMU_RACE_BOUND", "1"))


@pytest.mark.parametrize("strategy", CORRECT_STRATEGIES)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_correct_strategy_explores_scenario_completely_without_failure(scenario, strategy):
    result = explore_scenario(scenario, strategy, preemption_bound=BOUND)
    print(f"{scenario} {strategy}: {result.summary()}")
    if result.failure is not None:
        pytest.fail(result.failure.report)
    assert result.complete
    assert result.schedules > 1


# (scenario, strategy) -> the exact error the flaw produces, and the threads the report names.
EXPECTED_FAILURES = {
    ("r1-release-vs-disconnect", "unprotected"): UseAfterFree,
    ("r3-open-vs-disconnect-no-rwsem", "unprotected"): UseAfterFree,
    ("r5-open-vs-open", "unprotected"): UseAfterFree,
    ("r4-open-vs-release", "unprotected"): WrongErrno,
    ("r1-release-vs-disconnect", "hazard-prototype"): UseAfterFree,
    ("r5-open-vs-open", "hazard-prototype"): UseAfterFree,
    ("r4-open-vs-release", "hazard-prototype"): WrongErrno,
}


@pytest.mark.parametrize(
    ("scenario", "strategy"),
    list(EXPECTED_FAILURES),
    ids=[f"{a}-{b}" for a, b in EXPECTED_FAILURES],
)
def test_flawed_strategy_fails_with_the_exact_error(scenario, strategy):
    result = explore_scenario(scenario, strategy, preemption_bound=2)
    assert result.failure is not None, f"{strategy} survived {scenario}: {result.summary()}"
    assert type(result.failure.exception) is EXPECTED_FAILURES[scenario, strategy]
    report = result.failure.report
    assert f"usblp-emu explore --scenario {scenario} --strategy {strategy} --replay hz1-" in report
    assert result.failure.preemptions <= 2
    # The token replays the same failure, exactly.
    again = replay_scenario(scenario, strategy, result.failure.token)
    assert type(again) is EXPECTED_FAILURES[scenario, strategy]


def test_prototype_r1_report_shows_release_racing_disconnect():
    result = explore_scenario("r1-release-vs-disconnect", "hazard-prototype", preemption_bound=1)
    assert result.failure is not None
    exc = result.failure.exception
    assert isinstance(exc, UseAfterFree)
    text = str(exc)
    # KASAN-style: the access, who allocated, who freed: here the disconnect freed the struct
    # that the racing release still used.
    assert "Usblp" in text
    assert "Freed by thread" in text
    assert "disconnect" in text
    access = text.split("Allocated by", 1)[0]
    # The access is the prototype's release reading ``present``: not the explorer's own
    # description of the freed atomic it was about to schedule.
    assert "HazardPrototypeStrategy.release" in access
    assert "describe" not in access


def test_prototype_r5_both_opens_win():
    result = explore_scenario("r5-open-vs-open", "hazard-prototype", preemption_bound=1)
    assert result.failure is not None
    assert isinstance(result.failure.exception, UseAfterFree)
    report = result.failure.report
    assert "user-a" in report
    assert "user-b" in report


def test_replay_of_a_passing_schedule_returns_none():
    failing = explore_scenario("r1-release-vs-disconnect", "unprotected", preemption_bound=1)
    assert failing.failure is not None
    # The same schedule under a correct strategy is a different program: the token no longer
    # fits, or it replays without failure.
    try:
        outcome = replay_scenario("r1-release-vs-disconnect", "static-mutex", failing.failure.token)
    except Exception as exc:  # ReplayDrift
        assert type(exc).__name__ == "ReplayDrift"
    else:
        assert outcome is None

"""The usblp-emu command line: exit statuses, JSON, seeds, bad input, Ctrl-C, the watchdog.

Output is captured (not a terminal), so the CLI prints plain text and no live dashboard.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from hazard.testing._token import encode
from usblp_emu._check import _stress
from usblp_emu._check._scenarios import SCENARIOS
from usblp_emu._cli import _stress as _cli_stress
from usblp_emu._cli._main import exit_status, main
from usblp_emu._errors import NoDevice
from usblp_emu._host import Host

SHORT = ["--seconds", "1.5", "--printers", "2", "--threads", "4", "--unplug-rate", "200"]
MEMORY_ERRORS = {"UseAfterFree", "DoubleFree", "RefcountViolation", "HeapLeak"}
OPS = ("open", "write", "read", "ioctl", "poll", "close")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def run_json(capsys, *argv: str) -> tuple[int, dict[str, Any]]:
    status, out, err = run(capsys, *argv, "--json")
    assert err == ""
    return status, json.loads(out)  # exactly one JSON object: nothing else on stdout


@pytest.fixture(scope="module")
def hazard_run() -> tuple[int, dict[str, Any]]:
    """One short seeded stress run of hazard, shared by the tests that read its JSON."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["stress", "--strategy", "hazard", *SHORT, "--seed", "7", "--json"])
    return status, json.loads(out.getvalue())


# -- help and the exit rule ----------------------------------------------------------------------


def test_help_lists_the_commands_and_the_exit_rule(capsys):
    status, out, _ = run(capsys, "--help")
    assert status == 0
    for word in ("stress", "explore", "bench", "exit status", "130", "negative controls"):
        assert word in out


def test_stress_help_lists_every_option(capsys):
    status, out, _ = run(capsys, "stress", "--help")
    assert status == 0
    for option in (
        "--strategy",
        "--printers",
        "--threads",
        "--seconds",
        "--ops",
        "--seed",
        "--unplug-rate",
        "--faults",
        "--latency",
        "--resume-latency",
        "--watchdog",
        "--json",
    ):
        assert option in out


@pytest.mark.parametrize(
    ("selected", "failed", "interrupted", "expected"),
    [
        (["static-mutex", "rcu", "hazard", "hazard-prototype", "unprotected"], [], False, 0),
        (["hazard", "unprotected"], ["unprotected"], False, 0),
        (["hazard", "unprotected"], ["hazard", "unprotected"], False, 1),
        (["unprotected"], ["unprotected"], False, 1),
        (["unprotected", "hazard-prototype"], ["hazard-prototype"], False, 1),
        (["unprotected"], [], False, 0),
        (["hazard", "unprotected"], ["unprotected"], True, 130),
        (["rcu"], ["rcu"], True, 1),
    ],
)
def test_exit_status_counts_correct_strategies_or_lone_negative_controls(
    selected, failed, interrupted, expected
):
    assert exit_status(selected, failed, interrupted=interrupted) == expected


# -- stress --------------------------------------------------------------------------------------


def test_stress_of_hazard_is_clean(hazard_run):
    status, data = hazard_run
    assert status == 0
    (result,) = data["results"]
    assert result["ok"] is True
    assert result["violations"] == []
    assert result["unplugs"] >= 10
    assert result["ops"]["open"] >= 100
    assert any(key.startswith("open:ENODEV") for key in result["errnos"])
    assert result["heap"]["live"] == 0


def test_stress_json_schema(hazard_run):
    _, data = hazard_run
    assert set(data) == {
        "command",
        "replay",
        "seed",
        "config",
        "results",
        "interrupted",
        "exit_status",
    }
    assert data["command"] == "stress"
    assert data["seed"] == 7
    assert data["exit_status"] == 0
    assert data["interrupted"] is False
    assert data["replay"].startswith("usblp-emu stress --strategy hazard ")
    assert data["replay"].endswith(" --seed 7")
    assert data["config"]["strategies"] == ["hazard"]
    assert data["config"]["seconds"] == 1.5
    (result,) = data["results"]
    types = {
        "strategy": str,
        "claims_correct": bool,
        "ok": bool,
        "interrupted": bool,
        "seconds": float,
        "sessions": int,
        "sessions_per_worker": list,
        "decisions_digest": str,
        "ops": dict,
        "errnos": dict,
        "plugs": int,
        "unplugs": int,
        "faults": int,
        "heap": dict,
        "latency_us": dict,
        "violations": list,
    }
    assert set(result) == set(types)
    for key, kind in types.items():
        assert isinstance(result[key], kind), key
    assert len(result["sessions_per_worker"]) == 4
    assert set(result["heap"]) == {"allocated", "freed", "live", "errors"}
    assert set(result["latency_us"]) <= set(OPS)
    assert {"open", "close"} <= set(result["latency_us"])
    for stats in result["latency_us"].values():
        assert set(stats) == {"count", "p50", "p99", "max"}
        assert 0 < stats["p50"] <= stats["p99"] <= stats["max"]


def test_stress_of_unprotected_alone_finds_a_violation_with_its_stacks(capsys):
    # The run stops at the first violation (usually within a second); the long limit only
    # keeps an unlucky interleaving from making the test flaky.
    args = ["--printers", "2", "--threads", "4", "--unplug-rate", "200", "--seconds", "20"]
    status, data = run_json(capsys, "stress", "--strategy", "unprotected", *args, "--seed", "7")
    assert status == 1
    (result,) = data["results"]
    assert result["ok"] is False
    assert result["violations"][0]["kind"] in MEMORY_ERRORS
    for v in result["violations"]:
        assert set(v) == {"kind", "message", "thread", "stack"}
        assert v["stack"]
    first = result["violations"][0]
    if first["kind"] == "UseAfterFree":
        assert "Freed by" in first["stack"]  # the KASAN report: access, allocated, freed


def test_comparison_with_a_negative_control_counts_only_the_correct_strategy(capsys):
    status, out, err = run(
        capsys, "stress", "--strategy", "hazard-prototype,hazard", *SHORT, "--seed", "7"
    )
    # Exit 0 whether or not the control was caught in its 1.5 s (usually it is): only the
    # strategy that claims correctness counts. The lone control above exits 1.
    assert status == 0, out
    assert err == ""
    assert "stress summary" in out
    assert "The correct strategies ran clean: hazard" in out
    assert re.search(r"Negative controls (caught|not caught this time): hazard-prototype", out)
    replay = (
        "Replay: usblp-emu stress --strategy hazard-prototype,hazard --printers 2 --threads 4 "
        "--seconds 1.5 --unplug-rate 200 --seed 7"
    )
    assert replay in out


def test_same_seed_and_ops_replay_the_same_decisions(capsys):
    args = ["stress", "-s", "hazard", "--ops", "3000", "--threads", "4", "--printers", "2"]
    args += ["--unplug-rate", "20", "--faults", "10"]
    runs = [run_json(capsys, *args, "--seed", seed) for seed in ("11", "11", "12")]
    assert [status for status, _ in runs] == [0, 0, 0]
    first, again, other = (data["results"][0] for _, data in runs)
    # What the seed fixes: every worker's draws (so its session count and its digest), which
    # printer the progress-driven generators hit when (so the plug, unplug and fault counts),
    # and one open per session. What the driver answered, and so the rest, is up to the OS.
    for key in ("sessions_per_worker", "decisions_digest", "plugs", "unplugs", "faults"):
        assert first[key] == again[key], key
    assert first["sessions_per_worker"] == [750, 750, 750, 750]
    assert first["ops"]["open"] == again["ops"]["open"] == 3000
    assert first["unplugs"] > 0
    assert first["faults"] > 0
    assert other["decisions_digest"] != first["decisions_digest"]


def test_faults_and_latencies_keep_a_correct_strategy_clean(capsys):
    status, data = run_json(
        capsys,
        "stress",
        "-s",
        "rcu",
        "--seconds",
        "1",
        "--faults",
        "300",
        "--latency",
        "0.0005",
        "--resume-latency",
        "0.0005",
        "--unplug-rate",
        "100",
        "--seed",
        "5",
    )
    (result,) = data["results"]
    assert status == 0, result["violations"]
    assert result["faults"] > 0
    assert any(key.endswith(":EIO") for key in result["errnos"])  # the faults reach the user
    assert "--faults 300 --latency 0.0005 --resume-latency 0.0005" in data["replay"]


def test_watchdog_reports_a_deadlock_with_every_thread_stack(capsys, monkeypatch):
    gate = threading.Event()

    def open_that_never_returns(self, minor, *, nonblock=False):
        gate.wait()
        raise NoDevice("released")

    monkeypatch.setattr(Host, "open", open_that_never_returns)
    try:
        status, data = run_json(
            capsys, "stress", "-s", "hazard", "--seconds", "30", "--watchdog", "0.5", "--seed", "1"
        )
    finally:
        gate.set()
    (result,) = data["results"]
    assert status == 1
    assert result["seconds"] < 10
    deadlock = result["violations"][0]
    assert deadlock["kind"] == "deadlock"
    assert "made no progress for 0.5 s" in deadlock["message"]
    assert "Thread worker-0:" in deadlock["stack"]
    assert "Thread worker-3:" in deadlock["stack"]
    assert "open_that_never_returns" in deadlock["stack"]


def test_ctrl_c_stops_the_workers_and_prints_the_summary(capsys, monkeypatch):
    real = _stress.run_stress

    def interrupted(config, **kwargs):
        def on_snapshot(snapshot):
            raise KeyboardInterrupt  # what Ctrl-C does while the runner waits

        return real(config, on_snapshot=on_snapshot, snapshot_interval=0.3)

    monkeypatch.setattr(_cli_stress, "run_stress", interrupted)
    started = time.monotonic()
    status, out, _ = run(capsys, "stress", "-s", "hazard,rcu", "--seconds", "60", "--seed", "2")
    assert time.monotonic() - started < 15
    assert status == 130
    assert "stress summary" in out
    assert "(interrupted)" in out
    assert "Interrupted: the summary covers what ran." in out
    assert "stress rcu: running" not in out
    assert "Replay: usblp-emu stress --strategy hazard,rcu" in out


def test_sigint_to_python_dash_m_ends_cleanly_with_a_summary():
    proc = subprocess.Popen(
        [sys.executable, "-m", "usblp_emu", "stress", "-s", "hazard", "--seconds", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("stress hazard: running"):
                break
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    out = "".join(lines) + rest
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "stress summary" in out
    assert re.search(r"Replay: usblp-emu stress --strategy hazard .* --seed \d+", out)


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["stress", "--strategy", "nope"],
        ["stress", "--strategy", "hazard,"],
        ["stress", "--threads", "0"],
        ["stress", "--seconds", "-1"],
        ["stress", "--seconds", "soon"],
        ["stress", "--printers", "17"],
        ["stress", "--seconds", "1", "--ops", "10"],
        ["stress", "--unplug-rate", "nan"],
        ["explore", "--scenario", "nope"],
        ["explore", "--strategy", "nope"],
        ["explore", "--mode", "bfs"],
        ["explore", "--replay", "hz1-aa"],
        ["explore", "--scenario", "all", "--strategy", "hazard", "--replay", "hz1-aa"],
        ["explore", "--scenario", "plain", "--strategy", "hazard", "--replay", "not-a-token"],
        ["explore", "--scenario", "plain", "--strategy", "hazard", "--replay", "hz1-!!"],
    ],
    ids=lambda argv: " ".join(argv) or "no-command",
)
def test_bad_input_is_one_line_on_stderr_and_exit_2(capsys, argv):
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert out == ""
    assert err.startswith("usblp-emu: error: ")
    assert err.count("\n") == 1, err
    assert "Traceback" not in err


def test_a_token_that_does_not_fit_is_one_line_and_exit_2(capsys):
    token = encode([(10_000, 1)])  # a valid token whose choice comes after the run has ended
    status, out, err = run(
        capsys, "explore", "--scenario", "plain", "--strategy", "hazard", "--replay", token
    )
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1
    assert "does not fit plain under hazard" in err


# -- explore -------------------------------------------------------------------------------------


def test_explore_list_shows_every_scenario_with_its_window(capsys):
    status, out, _ = run(capsys, "explore", "--list")
    assert status == 0
    for scenario in SCENARIOS.values():
        assert scenario.name in out
        assert scenario.window in out
    status, data = run_json(capsys, "explore", "--list")
    assert status == 0
    assert [s["name"] for s in data["scenarios"]] == list(SCENARIOS)


def test_explore_of_a_flawed_cell_exits_1_and_its_token_replays_it(capsys):
    cell = ["--scenario", "r1-release-vs-disconnect", "--strategy", "hazard-prototype"]
    status, out, _ = run(capsys, "explore", *cell)
    assert status == 1
    assert "FAILED: UseAfterFree" in out
    assert "Failing schedule:" in out  # the timeline
    match = re.search(
        r"Replay with: usblp-emu explore --scenario r1-release-vs-disconnect "
        r"--strategy hazard-prototype --replay (hz1-\w+)",
        out,
    )
    assert match, out
    status, out, _ = run(capsys, "explore", *cell, "--replay", match.group(1))
    assert status == 1
    assert "UseAfterFree in the recorded schedule" in out
    assert "BUG: KASAN: slab-use-after-free" in out
    status, data = run_json(capsys, "explore", *cell, "--replay", match.group(1))
    assert status == 1
    assert data["replay"]["reproduced"] is True
    assert data["replay"]["exception"] == "UseAfterFree"


def test_explore_of_a_correct_cell_is_complete_and_exits_0(capsys):
    cell = ["--scenario", "r1-release-vs-disconnect", "--strategy", "static-mutex"]
    status, data = run_json(capsys, "explore", *cell, "--preemptions", "1")
    assert status == 0
    assert data["exit_status"] == 0
    (result,) = data["cells"]
    assert set(result) == {
        "scenario",
        "window",
        "strategy",
        "claims_correct",
        "ok",
        "complete",
        "schedules",
        "pruned",
        "seconds",
        "summary",
        "failure",
    }
    assert result["ok"] is True
    assert result["complete"] is True
    assert result["schedules"] > 1
    assert result["failure"] is None


def test_explore_with_a_negative_control_beside_a_correct_strategy_exits_0(capsys):
    status, out, _ = run(
        capsys,
        "explore",
        "--scenario",
        "r1-release-vs-disconnect",
        "--strategy",
        "static-mutex,unprotected",
        "--preemptions",
        "1",
    )
    assert status == 0
    assert "expected of a negative control: UseAfterFree" in out
    assert "--strategy unprotected --replay hz1-" in out
    assert "Failing schedule:" not in out  # the timeline is for failures that count
    assert "explore summary" in out

"""The pytest plugin, the report, and tokens across processes (subprocesses: a fresh pytest
and a fresh interpreter see exactly what a user sees)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from hazard import Lock
from hazard.testing import explore, spawn
from hazard.testing._report import conflicting_steps
from tests.hazard.testing.conftest import lost_update

MARKED = textwrap.dedent(
    """
    import pytest
    from hazard import AtomicInt
    from hazard.testing import spawn

    @pytest.mark.explore(preemption_bound=2)
    def test_lost_update():
        n = AtomicInt(0)
        def inc():
            n.store(n.load() + 1)
        threads = [spawn(inc) for _ in range(2)]
        for t in threads:
            t.join()
        assert n.load() == 2, "lost update"

    @pytest.mark.explore(preemption_bound=2)
    def test_atomic_increment():
        n = AtomicInt(0)
        threads = [spawn(n.fetch_add, 1) for _ in range(2)]
        for t in threads:
            t.join()
        assert n.load() == 2
    """
)


def run_pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_marked.py").write_text(MARKED)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_marked_test_failure_prints_report_and_replay_command(tmp_path):
    done = run_pytest(tmp_path, "test_marked.py")
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert "1 failed, 1 passed" in out
    assert "Failing schedule:" in out
    assert "Replay with: pytest 'test_marked.py::test_lost_update' --hazard-replay hz1-" in out
    token = out.split("--hazard-replay ")[1].split()[0]
    replayed = run_pytest(tmp_path, "test_marked.py::test_lost_update", "--hazard-replay", token)
    assert replayed.returncode == 1
    assert "AssertionError: lost update" in replayed.stdout


def test_tokens_are_the_same_in_a_fresh_interpreter():
    here = explore(lost_update).failure
    assert here is not None
    code = (
        "from hazard.testing import explore; "
        "from tests.hazard.testing.conftest import lost_update; "
        "print(explore(lost_update).failure.token)"
    )
    root = Path(__file__).resolve().parents[3]
    fresh = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert fresh.stdout.strip() == here.token


def test_report_marks_the_conflicting_accesses_and_names_source_lines():
    failure = explore(lost_update).failure
    assert failure is not None
    marked = conflicting_steps(failure.trace)
    counter_steps = [s for s in failure.trace if s.obj.startswith("AtomicInt")]
    assert {s.index for s in counter_steps} <= marked
    assert any("conftest.py" in s.where and "inc" in s.where for s in counter_steps)
    assert any(s.preempted for s in failure.trace)  # the preemption is shown
    assert "AssertionError in T0" in failure.report


def test_deadlock_report_says_who_waits_for_what():
    def body() -> None:
        a = Lock("A")

        def hold_forever() -> None:
            a.acquire()  # never released

        t = spawn(hold_forever)
        t.join()
        with a:
            pass

    failure = explore(body).failure
    assert failure is not None
    assert "T0 waits for a write to Lock A" in str(failure.exception)


def test_pct_reports_its_probability_bound():
    result = explore(lost_update, mode="pct", runs=50, seed=3)
    assert result.pct_probability is not None and 0 < result.pct_probability <= 1
    assert result.miss_probability is not None
    assert "per-run bound" in result.summary()

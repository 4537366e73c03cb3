"""usblp-emu bench: the report's schema and arithmetic, the plot, usage errors.

Every run here is ``--quick``; no test asserts a timing threshold (the machine is shared),
only what must hold however fast it runs: the schema, positive counts, rates and ratios
computed from the raw numbers, and the properties the algorithms guarantee (hazard's bound,
a stalled RCU reader freeing nothing).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from hazard import DoubleFree
from usblp_emu import STRATEGIES, Host, VirtualPrinter
from usblp_emu._bench import BenchUsageError, add_arguments, run
from usblp_emu._bench._cli import config_from_args
from usblp_emu._bench._common import OPS, _shut_down
from usblp_emu._bench._latency import percentile
from usblp_emu._bench._open import OpenResult
from usblp_emu._bench._report import _measure
from usblp_emu._bench._unreclaimed import slope

ROOT = Path(__file__).resolve().parents[3]
CORRECT = ("static-mutex", "rcu", "hazard")
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def _bench(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    status = run(_args(*argv), Console(file=out, width=120, color_system=None))
    return status, out.getvalue()


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One quick run of everything, as JSON (and a plot when matplotlib is installed)."""
    plot = tmp_path_factory.mktemp("bench") / "bench.png"
    argv = ["--quick", "--json"] + (["--plot", str(plot)] if HAS_MATPLOTLIB else [])
    status, out = _bench(*argv)
    assert status == 0
    return json.loads(out), plot


def test_json_report_has_every_measurement_for_every_strategy(quick):
    report, _ = quick
    assert report["schema"] == "usblp-emu-bench/1"
    assert report["config"]["quick"] is True
    assert report["config"]["rounds"] == 1
    assert report["config"]["strategies"] == list(STRATEGIES)
    assert set(report["open_throughput"]["results"]) == set(STRATEGIES)
    assert set(report["driver_ops"]["results"]) == set(STRATEGIES)
    assert set(report["free_latency"]["results"]) == {"rcu", "hazard"}
    assert set(report["unreclaimed"]["results"]) == {"rcu", "hazard"}
    assert report["free_latency"]["skipped"] is None
    assert [t["name"] for t in report["targets"]] == [
        "open throughput",
        "disconnect-to-free p99",
        "unreclaimed under the bound",
        "unreclaimed grows",
        "driver ops/s",
    ]
    assert all(isinstance(t["met"], bool) for t in report["targets"])


def test_measured_numbers_are_positive_and_correct_strategies_stay_clean(quick):
    report, _ = quick
    for s, r in report["open_throughput"]["results"].items():
        assert r["opens"] > 0 and r["seconds"] > 0 and r["opens_per_s"] > 0, s
        assert min(r["ebusy"], r["enodev"], r["other_errors"]) >= 0
    for s, r in report["free_latency"]["results"].items():
        assert r["count"] == len(r["samples"]) > 0
        assert all(x > 0 for x in r["samples"])
        assert 0 < r["p50"] <= r["p90"] <= r["p99"] <= r["max"], s
    for s, r in report["driver_ops"]["results"].items():
        assert r["ops"] > 0 and r["ops_per_s"] > 0 and r["cpu_seconds"] > 0, s
        assert set(r["mean_us"]) == set(OPS)
        assert all(v > 0 for v in r["mean_us"].values())
    for s in CORRECT:
        for section in ("open_throughput", "free_latency", "unreclaimed", "driver_ops"):
            result = report[section]["results"].get(s)
            assert result is None or result["verdict"] == "clean", (section, s, result)
        assert report["driver_ops"]["results"][s]["errors"] == 0


def test_rates_are_the_raw_counts_over_the_seconds(quick):
    report, _ = quick
    for r in report["open_throughput"]["results"].values():
        assert r["opens_per_s"] == pytest.approx(r["opens"] / r["seconds"])
    for r in report["driver_ops"]["results"].values():
        assert r["ops"] == sum(r["op_counts"].values())
        assert r["ops_per_s"] == pytest.approx(r["ops"] / r["seconds"])
        assert r["cpus"] == pytest.approx(r["cpu_seconds"] / r["seconds"])
        for op in OPS:
            assert r["mean_us"][op] == pytest.approx(r["op_seconds"][op] / r["op_counts"][op] * 1e6)


def test_ratios_are_computed_from_the_reported_numbers(quick):
    report, _ = quick
    sections = {
        "open throughput": "open_throughput",
        "disconnect-to-free p99": "free_latency",
        "driver ops/s": "driver_ops",
    }
    seen = set()
    for ratio in report["ratios"]:
        results = report[sections[ratio["name"]]]["results"]
        metric = ratio["metric"]
        expected = results[ratio["strategy"]][metric] / results[ratio["baseline"]][metric]
        assert ratio["value"] == pytest.approx(expected)
        seen.add((ratio["name"], ratio["strategy"]))
    assert ("open throughput", "hazard") in seen
    assert ("disconnect-to-free p99", "hazard") in seen
    assert len(report["ratios"]) == 4 + 1 + 4


def test_targets_are_judged_on_the_reported_numbers(quick):
    report, _ = quick
    targets = {t["name"]: t for t in report["targets"]}
    opens = report["open_throughput"]["results"]
    latency = report["free_latency"]["results"]
    series = report["unreclaimed"]["results"]
    expected = {
        "open throughput": opens["hazard"]["opens_per_s"] / opens["static-mutex"]["opens_per_s"],
        "disconnect-to-free p99": latency["hazard"]["p99"] / latency["rcu"]["p99"],
        "unreclaimed under the bound": series["hazard"]["max"],
        "unreclaimed grows": series["rcu"]["growth_per_s"],
        "driver ops/s": report["driver_ops"]["results"]["hazard"]["ops_per_s"],
    }
    compare = {">=": float.__ge__, "<=": float.__le__, ">": float.__gt__}
    for name, value in expected.items():
        t = targets[name]
        assert t["measured"] == pytest.approx(value), name
        assert t["met"] is compare[t["op"]](float(t["measured"]), float(t["target"])), name
        assert t["line"].endswith(": met)" if t["met"] else ": NOT met)"), t["line"]
    assert targets["unreclaimed under the bound"]["target"] == series["hazard"]["bound"]


def test_latency_percentiles_are_nearest_rank_of_the_samples(quick):
    report, _ = quick
    for r in report["free_latency"]["results"].values():
        ordered = sorted(r["samples"])
        n = len(ordered)
        for q in (50, 90, 99):
            assert r[f"p{q}"] == ordered[max(1, math.ceil(q * n / 100)) - 1]
        assert r["max"] == ordered[-1]


def test_series_summary_and_what_the_algorithms_guarantee(quick):
    report, _ = quick
    series = report["unreclaimed"]["results"]
    for r in series.values():
        counts = r["unreclaimed"]
        assert len(r["times"]) == len(counts) >= 2
        assert r["times"] == sorted(r["times"])
        assert (r["first"], r["max"], r["final"]) == (counts[0], max(counts), counts[-1])
        assert r["growth_per_s"] == pytest.approx(slope(r["times"], counts))
        assert r["retired"] > 0
    hazard, rcu = series["hazard"], series["rcu"]
    # The domain's proven bound holds whatever the timing; nothing bounds RCU's backlog.
    assert 0 < hazard["max"] <= hazard["bound"]
    assert rcu["bound"] is None
    # One reader in a section forever: no grace period ends, so nothing is ever freed.
    assert rcu["unreclaimed"] == sorted(rcu["unreclaimed"])
    assert rcu["final"] <= rcu["retired"]


def test_profile_is_given_exactly_when_hazard_misses_its_ops_target(quick):
    report, _ = quick
    section = report["driver_ops"]
    below = section["results"]["hazard"]["ops_per_s"] < 50_000
    if not below:
        assert section["profile"] is None
        return
    profile = section["profile"]
    assert profile["cycles"] > 0 and profile["seconds"] > 0
    assert profile["scope"] in ("the worker thread", "every thread, interleaved")
    assert profile["functions"]
    for spot in profile["functions"]:
        assert spot["function"]
        assert spot["calls_per_cycle"] > 0
        assert spot["self_share"] >= 0 and spot["total_share"] >= 0
    shares = [spot["self_share"] for spot in profile["functions"]]
    assert shares == sorted(shares, reverse=True)


def test_plot_writes_a_png(quick):
    pytest.importorskip("matplotlib")
    report, plot = quick
    assert report["plot"] == str(plot)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_human_output_has_one_table_per_measurement_and_the_target_lines():
    status, out = _bench("--quick", "--strategy", "static-mutex,hazard")
    assert status == 0
    for title in (
        "1. open throughput",
        "2. disconnect-to-free latency",
        "3. unreclaimed objects",
        "4. driver ops/s",
    ):
        assert title in out
    assert "open throughput: hazard " in out and "x static-mutex (target >= 6x: " in out
    assert "disconnect-to-free p99: hazard n/a rcu (target <= 0.1x: not measured)" in out
    assert "driver ops/s: hazard " in out


def test_strategies_that_defer_nothing_skip_measurements_2_and_3():
    status, out = _bench("--quick", "--json", "--strategy", "static-mutex")
    assert status == 0
    report = json.loads(out)
    for section in ("free_latency", "unreclaimed"):
        assert report[section]["results"] == {}
        assert "rcu and hazard only" in report[section]["skipped"]
    assert list(report["open_throughput"]["results"]) == ["static-mutex"]
    assert report["ratios"] == []
    assert all(t["met"] is None for t in report["targets"])


def test_strategy_names_are_repeated_comma_separated_or_all():
    assert config_from_args(_args("--strategy", "rcu,hazard", "--strategy", "rcu")).strategies == (
        "rcu",
        "hazard",
    )
    assert config_from_args(_args("--strategy", "all")).strategies == tuple(STRATEGIES)
    assert config_from_args(_args()).strategies == tuple(STRATEGIES)
    assert config_from_args(_args("--quick")).seconds < config_from_args(_args()).seconds
    assert config_from_args(_args("--quick", "--seconds", "2")).seconds == 2.0
    with pytest.raises(BenchUsageError, match="unknown strategy 'rcu2'"):
        config_from_args(_args("--strategy", "rcu2"))


def _one_line_usage_error(capsys, *argv: str, match: str) -> None:
    status, out = _bench(*argv)
    err = capsys.readouterr().err
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1 and match in err, err
    assert "Traceback" not in err


def test_unknown_strategy_is_a_one_line_usage_error(capsys):
    _one_line_usage_error(capsys, "--strategy", "mutex", match="unknown strategy 'mutex'")


def test_plot_into_a_missing_directory_is_a_one_line_usage_error(capsys, tmp_path):
    missing = tmp_path / "no" / "such" / "bench.png"
    _one_line_usage_error(capsys, "--plot", str(missing), match="no such directory")


def test_plot_without_matplotlib_is_a_one_line_usage_error(capsys, monkeypatch, tmp_path):
    # None in sys.modules makes the import fail, as if the extra were not installed.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    _one_line_usage_error(capsys, "--plot", str(tmp_path / "b.png"), match="needs matplotlib")


def test_unwritable_plot_prints_the_results_then_one_line_and_exit_2(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    # The plot path is a directory: the measurements run, the write fails.
    status, out = _bench("--quick", "--json", "--strategy", "static-mutex", "--plot", str(tmp_path))
    err = capsys.readouterr().err
    assert status == 2
    assert json.loads(out)["plot"] is None
    assert err.count("\n") == 1 and "--plot" in err, err


def test_the_command_reports_a_bad_option_in_one_line():
    done = subprocess.run(
        [sys.executable, "-m", "usblp_emu", "bench", "--seconds", "-1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "--seconds" in done.stderr, done.stderr


def test_a_heap_error_becomes_the_verdict_not_an_exception():
    # Negative control for the verdict column: a violation must be reported, never hidden.
    host = Host("hazard")
    host.plug(VirtualPrinter())
    buf = host.heap.alloc_buffer(8)
    host.heap.free(buf)
    with pytest.raises(DoubleFree):
        host.heap.free(buf)
    assert _shut_down(host, "clean").startswith("DoubleFree")


def test_rounds_rotate_the_order_and_sum_each_strategys_parts():
    calls = []

    def fake(strategy, seconds):
        calls.append((strategy, seconds))
        late = strategy == "b" and len(calls) > 5  # b's last round saw a violation
        return OpenResult(
            10, 1, 0, 0, seconds, 10 / seconds, 1, "DoubleFree: x" if late else "clean"
        )

    results = _measure("t", ("a", "b", "c"), 3, fake, OpenResult.merge, 3.0, lambda _: None)
    assert [s for s, _ in calls] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert {t for _, t in calls} == {1.0}
    assert results["a"]["opens"] == 30 and results["a"]["ebusy"] == 3
    assert results["a"]["seconds"] == 3.0 and results["a"]["rounds"] == 3
    assert results["a"]["opens_per_s"] == pytest.approx(10.0)
    assert (results["a"]["verdict"], results["b"]["verdict"]) == ("clean", "DoubleFree: x")


def test_percentile_is_nearest_rank():
    data = [float(x) for x in range(1, 101)]
    assert percentile(data, 50) == 50.0
    assert percentile(data, 99) == 99.0
    assert percentile(data, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_slope_is_the_least_squares_slope():
    assert slope([0.0, 1.0, 2.0, 3.0], [1, 3, 5, 7]) == pytest.approx(2.0)
    assert slope([0.0, 1.0, 2.0], [4, 4, 4]) == 0.0
    assert slope([1.0], [3]) == 0.0

"""Rich renderables for the command line: pure functions from snapshots and reports to tables.

Rules:
- Every function here is pure: it builds a renderable from the data it is given and prints
  nothing, so the same code serves the live dashboard, the final summary and the tests. The
  CLI's ``Live`` only swaps what these return.
- Strings that came from a device, a driver or an exception (errno names, violation messages,
  scenario descriptions) go through ``escape()`` before they reach a markup-aware cell.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from hazard.testing import ExploreResult
from usblp_emu._check._scenarios import Scenario
from usblp_emu._check._stress import (
    OPERATIONS,
    LatencySummary,
    StressReport,
    StressSnapshot,
    Violation,
)
from usblp_emu._usblp._strategies import CORRECT_STRATEGIES

__all__ = [
    "ExploreCell",
    "render_explore_summary",
    "render_latency",
    "render_live",
    "render_scenarios",
    "render_stats",
    "render_stress_summary",
    "stress_verdict",
]


@dataclass(frozen=True)
class ExploreCell:
    """One scenario explored under one strategy."""

    scenario: Scenario
    strategy: str
    result: ExploreResult


def _errno_text(errnos: Mapping[str, int], op: str) -> str:
    parts = [
        f"{key.split(':', 1)[1]} {n:,}"
        for key, n in sorted(errnos.items(), key=lambda kv: -kv[1])
        if key.startswith(f"{op}:")
    ]
    return escape(", ".join(parts))


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}" if seconds > 0 else "-"


def _first_violation(violations: Sequence[Violation]) -> str:
    v = violations[0]
    more = f" (+{len(violations) - 1} more)" if len(violations) > 1 else ""
    return f"{v.kind} in {v.thread}: {v.message}{more}"


def render_stats(snapshot: StressSnapshot) -> Table:
    """Per operation: calls, calls per second, latency p50/p99 (us) and the errnos returned."""
    if snapshot.ops_budget is not None:
        limit = f"{snapshot.sessions:,}/{snapshot.ops_budget:,} sessions"
    else:
        limit = f"{snapshot.elapsed:.1f}/{snapshot.seconds:g} s"
    title = f"stress {escape(snapshot.strategy)}: {limit} (running)"
    table = Table(title=title, title_justify="left")
    table.add_column("op")
    table.add_column("calls", justify="right")
    table.add_column("per s", justify="right")
    table.add_column("p50 us", justify="right")
    table.add_column("p99 us", justify="right")
    table.add_column("errnos")
    for op in OPERATIONS:
        count = snapshot.ops.get(op, 0)
        lat = snapshot.latency.get(op)
        table.add_row(
            op,
            f"{count:,}",
            _rate(count, snapshot.elapsed),
            f"{lat.p50_us:,.1f}" if lat else "-",
            f"{lat.p99_us:,.1f}" if lat else "-",
            _errno_text(snapshot.errnos, op),
        )
    return table


def _counters(snapshot: StressSnapshot) -> Table:
    table = Table.grid(padding=(0, 2))
    heap = snapshot.heap
    table.add_row(
        f"plugs {snapshot.plugs:,}",
        f"unplugs {snapshot.unplugs:,}",
        f"faults {snapshot.faults:,}",
        f"sessions {snapshot.sessions:,}",
    )
    table.add_row(
        f"heap live {heap.live:,}",
        f"freed {heap.freed:,}",
        f"allocated {heap.allocated:,}",
        f"heap errors {heap.errors:,}",
    )
    if snapshot.violations:
        table.add_row(
            Text(f"violations {len(snapshot.violations)}", style="bold red"),
            Text(_first_violation(snapshot.violations), style="red"),
        )
    else:
        table.add_row("violations 0")
    return table


def render_live(snapshot: StressSnapshot, finished: Sequence[StressReport]) -> RenderableType:
    """The live dashboard: the strategies done so far, then the running one."""
    parts: list[RenderableType] = []
    if finished:
        parts.append(render_stress_summary(finished))
    parts += [render_stats(snapshot), _counters(snapshot)]
    return Group(*parts)


def stress_verdict(report: StressReport) -> tuple[str, str]:
    """A short verdict for one strategy's run, and its style."""
    claims = report.config.strategy in CORRECT_STRATEGIES
    if report.violations:
        kinds = sorted({v.kind for v in report.violations})
        found = ", ".join(kinds)
        return (f"VIOLATION: {found}", "bold red") if claims else (f"caught: {found}", "green")
    tail = " (interrupted)" if report.interrupted else ""
    if claims:
        return f"clean{tail}", "green"
    return f"not caught{tail}", "yellow"


def render_stress_summary(reports: Sequence[StressReport]) -> Table:
    """One row per strategy: what it claims, what ran, what the heap and the checkers found."""
    table = Table(title="stress summary", title_justify="left")
    table.add_column("strategy")
    table.add_column("claims")
    table.add_column("s", justify="right")
    table.add_column("sessions", justify="right")
    table.add_column("ops", justify="right")
    table.add_column("ops/s", justify="right")
    table.add_column("plug/unplug", justify="right")
    table.add_column("faults", justify="right")
    table.add_column("heap live", justify="right")
    table.add_column("verdict")
    for r in reports:
        ops = sum(r.ops.values())
        verdict, style = stress_verdict(r)
        table.add_row(
            escape(r.config.strategy),
            "correct" if r.config.strategy in CORRECT_STRATEGIES else "control",
            f"{r.seconds:.1f}",
            f"{sum(r.sessions):,}",
            f"{ops:,}",
            _rate(ops, r.seconds),
            f"{r.plugs:,}/{r.unplugs:,}",
            f"{r.faults:,}",
            f"{r.heap.live:,}" if r.heap is not None else "-",
            Text(verdict, style=style),
        )
    return table


def render_latency(reports: Sequence[StressReport]) -> Table:
    """Per strategy and operation: p50/p99 latency in microseconds."""
    table = Table(title="latency p50/p99 (us)", title_justify="left")
    table.add_column("strategy")
    for op in OPERATIONS:
        table.add_column(op, justify="right")
    for r in reports:
        cells = []
        for op in OPERATIONS:
            hist = r.latency.get(op)
            s: LatencySummary | None = hist.summary() if hist is not None else None
            cells.append(f"{s.p50_us:,.0f}/{s.p99_us:,.0f}" if s else "-")
        table.add_row(escape(r.config.strategy), *cells)
    return table


def render_scenarios(scenarios: Mapping[str, Scenario]) -> Table:
    """The race scenarios: name, race window, what races."""
    table = Table(title="race scenarios", title_justify="left")
    table.add_column("scenario")
    table.add_column("window")
    table.add_column("what races")
    for s in scenarios.values():
        table.add_row(escape(s.name), escape(s.window), escape(s.description))
    return table


def render_explore_summary(cells: Sequence[ExploreCell]) -> Table:
    """One row per cell: schedules, completeness, seconds, verdict."""
    table = Table(title="explore summary", title_justify="left")
    table.add_column("scenario")
    table.add_column("window")
    table.add_column("strategy")
    table.add_column("schedules", justify="right")
    table.add_column("space")
    table.add_column("s", justify="right")
    table.add_column("verdict")
    for cell in cells:
        r = cell.result
        if r.failure is None:
            verdict = Text("ok", style="green")
        else:
            name = type(r.failure.exception).__name__
            if cell.strategy in CORRECT_STRATEGIES:
                verdict = Text(f"FAILED: {name}", style="bold red")
            else:
                verdict = Text(f"FAILED: {name} (expected)", style="green")
        table.add_row(
            escape(cell.scenario.name),
            escape(cell.scenario.window),
            escape(cell.strategy),
            f"{r.schedules:,}",
            "complete" if r.complete else "incomplete",
            f"{r.seconds:.2f}",
            verdict,
        )
    return table

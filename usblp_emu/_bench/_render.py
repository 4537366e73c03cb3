"""The human output: one rich table per measurement, the profile, then the target lines."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from usblp_emu._bench._common import OPS
from usblp_emu._bench._latency import LATENCY_READERS, READ_SECTION
from usblp_emu._bench._open import OPEN_PRINTERS, OPEN_THREADS, RESUME_LATENCY
from usblp_emu._bench._ops import OPS_THREADS
from usblp_emu._bench._report import _lookup, _num
from usblp_emu._bench._unreclaimed import RETIRE_INTERVAL, SERIES_INTERVAL


def _table(title: str, columns: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> Table:
    """A table whose first and text columns are left-aligned, numbers right-aligned."""
    table = Table(title=title)
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 or col == "verdict" else "right")
    for row in rows:
        table.add_row(*row)
    return table


def _verdict(text: str) -> Text:
    return Text(text, style="green" if text == "clean" else "bold red")


def render_report(report: dict[str, Any]) -> list[RenderableType]:
    """The human output: one table per measurement, the profile, then the target lines."""
    cfg, machine, ratios = report["config"], report["machine"], report["ratios"]

    def times(name: str, s: str, baseline: str) -> str:
        return "1.00x" if s == baseline else _num(_lookup(ratios, name, s), ".2f", "x")

    out: list[RenderableType] = [
        Text(
            f"usblp-emu bench: {cfg['seconds']:g} s per measurement in {cfg['rounds']} "
            f"round{'s' if cfg['rounds'] > 1 else ''}, Python {machine['python']} "
            f"({machine['cpus']} CPUs, load average {_num(machine['load_average'], '.1f')} "
            f"before the run), "
            f"switch interval {cfg['switch_interval'] * 1e6:g} us"
        )
    ]
    section = report["open_throughput"]
    out.append(
        _table(
            f"1. open throughput: {OPEN_PRINTERS} printers, {RESUME_LATENCY * 1e3:g} ms resume, "
            f"{OPEN_THREADS} threads open+close",
            ("strategy", "opens/s", "EBUSY/s", "ENODEV/s", "x static-mutex", "verdict"),
            (
                (
                    s,
                    f"{r['opens_per_s']:,.0f}",
                    f"{r['ebusy'] / r['seconds']:,.0f}",
                    f"{r['enodev'] / r['seconds']:,.0f}",
                    times("open throughput", s, "static-mutex"),
                    _verdict(r["verdict"]),
                )
                for s, r in section["results"].items()
            ),
        )
    )
    if {"hazard-prototype", "unprotected"} & set(section["results"]):
        out.append(
            Text(
                "hazard-prototype and unprotected do not make open exclusive (window R5): two "
                "opens of one printer can both succeed, so their counts are not comparable."
            )
        )
    section = report["free_latency"]
    title = (
        f"2. disconnect-to-free latency: {LATENCY_READERS} readers holding other devices "
        f"{READ_SECTION * 1e3:g} ms each"
    )
    if section["skipped"]:
        out.append(Text(f"{title}: skipped ({section['skipped']})"))
    else:
        out.append(
            _table(
                title,
                (
                    "strategy",
                    "unplugs",
                    "p50 ms",
                    "p90 ms",
                    "p99 ms",
                    "max ms",
                    "p99 x rcu",
                    "verdict",
                ),
                (
                    (
                        s,
                        str(r["count"]),
                        *(_num(r[k] and r[k] * 1e3, ".2f") for k in ("p50", "p90", "p99", "max")),
                        times("disconnect-to-free p99", s, "rcu"),
                        _verdict(r["verdict"]),
                    )
                    for s, r in section["results"].items()
                ),
            )
        )
    section = report["unreclaimed"]
    title = (
        f"3. unreclaimed objects, one stalled reader: a retire every "
        f"{RETIRE_INTERVAL * 1e3:g} ms, sampled every {SERIES_INTERVAL * 1e3:g} ms"
    )
    if section["skipped"]:
        out.append(Text(f"{title}: skipped ({section['skipped']})"))
    else:
        out.append(
            _table(
                title,
                ("strategy", "retired", "first", "max", "final", "growth/s", "bound", "verdict"),
                (
                    (
                        s,
                        f"{r['retired']:,}",
                        f"{r['first']:,}",
                        f"{r['max']:,}",
                        f"{r['final']:,}",
                        f"{r['growth_per_s']:+,.0f}",
                        _num(r["bound"], "d") if r["bound"] is not None else "none",
                        _verdict(r["verdict"]),
                    )
                    for s, r in section["results"].items()
                ),
            )
        )
    out += _render_ops(report, times)
    out.append(Text("\n".join(t["line"] for t in report["targets"]), style="bold"))
    return out


def _render_ops(
    report: dict[str, Any], times: Callable[[str, str, str], str]
) -> list[RenderableType]:
    section = report["driver_ops"]
    out: list[RenderableType] = [
        _table(
            f"4. driver ops/s: {OPS_THREADS} threads, {' / '.join(section['setup']['ops'])}, "
            "no hotplug (mean us per op)",
            ("strategy", "ops/s", *OPS, "CPUs", "errors", "x static-mutex", "verdict"),
            (
                (
                    s,
                    f"{r['ops_per_s']:,.0f}",
                    *(f"{r['mean_us'][op]:.0f}" for op in OPS),
                    f"{r['cpus']:.2f}",
                    str(r["errors"]),
                    times("driver ops/s", s, "static-mutex"),
                    _verdict(r["verdict"]),
                )
                for s, r in section["results"].items()
            ),
        )
    ]
    profile = section["profile"]
    if profile:
        out.append(
            _table(
                f"hazard below the ops/s target: cProfile of one worker's loop, "
                f"{profile['cycles']:,} cycles of open..close in {profile['seconds']:.1f} s "
                f"(sees {profile['scope']}; shares of wall time)",
                ("function", "calls/cycle", "own", "with callees"),
                (
                    (
                        Text(h["function"]),  # Text: "[...]" in a name is not markup
                        f"{h['calls_per_cycle']:.1f}",
                        f"{h['self_share']:.1%}",
                        f"{h['total_share']:.1%}",
                    )
                    for h in profile["functions"]
                ),
            )
        )
    return out

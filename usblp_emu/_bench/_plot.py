"""``--plot``: the report as a PNG, drawn with matplotlib (an optional extra)."""

from __future__ import annotations

from typing import Any

from usblp_emu._bench._common import BenchUsageError
from usblp_emu._bench._open import OPEN_PRINTERS, RESUME_LATENCY
from usblp_emu._bench._ops import OPS_TARGET, OPS_THREADS
from usblp_emu._bench._report import _lookup, _num


def _import_figure() -> Any:
    """Return matplotlib's Figure class, imported only for --plot (an optional extra)."""
    try:
        from matplotlib.figure import Figure  # noqa: PLC0415 - optional, loaded on demand
    except ImportError:
        raise BenchUsageError("--plot needs matplotlib: pip install 'usblp-emu[plot]'") from None
    return Figure


def write_plot(report: dict[str, Any], path: str, figure_class: Any) -> None:
    """Write the results as a PNG: bars for 1 and 4, percentiles for 2, the series of 3.

    Uses the object-oriented Figure API, so no pyplot state or GUI backend is touched. A
    measurement that was skipped leaves its panel empty, with the reason.
    """
    fig = figure_class(figsize=(13, 9), layout="constrained")
    (ax1, ax2), (ax3, ax4) = fig.subplots(2, 2)
    _bars(ax1, report, "open_throughput", "opens_per_s", "open throughput")
    ax1.set_ylabel("successful opens/s")
    ax1.set_title(
        f"1. open throughput ({OPEN_PRINTERS} printers, {RESUME_LATENCY * 1e3:g} ms resume)"
    )
    _bars(ax4, report, "driver_ops", "ops_per_s", "driver ops/s")
    ax4.axhline(OPS_TARGET, color="red", linestyle="--", label="hazard target")
    ax4.legend(loc="lower right")
    ax4.set_ylabel("ops/s")
    ax4.set_title(f"4. driver ops/s ({OPS_THREADS} threads)")

    latency = report["free_latency"]
    ax2.set_title("2. disconnect-to-free latency (log scale)")
    keys = ("p50", "p90", "p99", "max")
    width = 0.8 / max(1, len(latency["results"]))
    for i, (s, r) in enumerate(latency["results"].items()):
        xs = [j + i * width for j in range(len(keys))]
        ax2.bar(xs, [(r[k] or 0.0) * 1e3 for k in keys], width, label=s)
    ax2.set_xticks([j + width * (len(latency["results"]) - 1) / 2 for j in range(len(keys))])
    ax2.set_xticklabels(keys)
    ax2.set_ylabel("unplug to free, ms")

    series = report["unreclaimed"]
    ax3.set_title("3. unreclaimed objects, one stalled reader")
    for s, r in series["results"].items():
        ax3.plot(r["times"], r["unreclaimed"], linewidth=1, label=s)
        if r["bound"] is not None:
            ax3.axhline(r["bound"], color="gray", linestyle="--", label=f"{s} bound")
    ax3.set_xlabel("seconds")
    ax3.set_ylabel("allocated, not yet freed")
    if latency["skipped"]:
        _skipped_panel(ax2, latency["skipped"])
    else:
        ax2.set_yscale("log")
        ax2.legend()
    if series["skipped"]:
        _skipped_panel(ax3, series["skipped"])
    else:
        ax3.set_yscale("symlog", linthresh=10)  # linear near 0, where hazard's count stays
        ax3.set_ylim(bottom=0)
        ax3.legend()
    fig.savefig(path, format="png", dpi=100)


def _skipped_panel(ax: Any, reason: str) -> None:
    ax.text(0.5, 0.5, f"skipped: {reason}", ha="center", wrap=True, transform=ax.transAxes)


def _bars(ax: Any, report: dict[str, Any], section: str, metric: str, name: str) -> None:
    """One bar per strategy, labelled with its ratio to static-mutex."""
    results = report[section]["results"]
    names = list(results)
    bars = ax.bar(names, [results[s][metric] for s in names], color="tab:blue")
    ax.bar_label(
        bars,
        labels=[
            "1.00x" if s == "static-mutex" else _num(_lookup(report["ratios"], name, s), ".2f", "x")
            for s in names
        ],
    )
    ax.tick_params(axis="x", labelrotation=20)

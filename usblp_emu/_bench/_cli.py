"""``bench``'s options, and ``run``: measure, then print the report, as JSON or tables."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from rich.console import Console

from usblp_emu._bench._common import (
    DEFAULT_ROUNDS,
    DEFAULT_SECONDS,
    DEFAULT_SWITCH_INTERVAL,
    BenchConfig,
    BenchUsageError,
)
from usblp_emu._bench._plot import _import_figure, write_plot
from usblp_emu._bench._render import render_report
from usblp_emu._bench._report import run_bench
from usblp_emu._usblp._strategies import STRATEGIES

QUICK_SECONDS = 0.25


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds > 0, not {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``bench``'s options to ``parser``."""
    parser.add_argument(
        "--strategy",
        action="append",
        metavar="NAME",
        help=f"measure these strategies (repeatable, comma-separated, or all; default all: "
        f"{', '.join(STRATEGIES)}); measurements 2 and 3 take rcu and hazard only",
    )
    parser.add_argument(
        "--seconds",
        type=_positive_seconds,
        help=f"seconds per measurement (default {DEFAULT_SECONDS:g}; {QUICK_SECONDS:g} with "
        "--quick)",
    )
    parser.add_argument("--quick", action="store_true", help="a short run (for tests)")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object with every measurement"
    )
    parser.add_argument(
        "--plot", metavar="FILE", help="also write the results as a PNG (needs matplotlib)"
    )
    parser.add_argument(
        "--switch-interval",
        type=_positive_seconds,
        default=DEFAULT_SWITCH_INTERVAL,
        metavar="SECONDS",
        help=f"CPython's thread switch interval during the run (default "
        f"{DEFAULT_SWITCH_INTERVAL:g}; the interpreter's own is 0.005)",
    )


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """Validate the parsed options.

    Raises:
        BenchUsageError: an unknown strategy, or a plot file in a missing directory.

    """
    # As the CLI's other commands take them: repeated, comma-separated, "all".
    names: list[str] = []
    for value in args.strategy or ["all"]:
        for name in (n.strip() for n in value.split(",")):
            if name != "all" and name not in STRATEGIES:
                raise BenchUsageError(
                    f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}, or all"
                )
            names += list(STRATEGIES) if name == "all" else [name]
    if args.plot is not None and not Path(args.plot).resolve().parent.is_dir():
        raise BenchUsageError(f"--plot {args.plot}: no such directory")
    seconds = args.seconds or (QUICK_SECONDS if args.quick else DEFAULT_SECONDS)
    return BenchConfig(
        strategies=tuple(dict.fromkeys(names)),
        seconds=seconds,
        quick=bool(args.quick),
        switch_interval=args.switch_interval,
        rounds=1 if args.quick else DEFAULT_ROUNDS,
    )


def run(args: argparse.Namespace, console: Console) -> int:
    """Run ``usblp-emu bench`` with parsed ``args``; print to ``console``.

    Returns:
        0 after a run (benchmarks report, they do not fail); 2 on a usage error, or when
        the plot could not be written (after printing the results), reported as one line
        on stderr.

    """
    try:
        config = config_from_args(args)
        figure_class = _import_figure() if args.plot is not None else None
    except BenchUsageError as exc:
        return _error(str(exc))
    if args.json or not console.is_terminal:
        report = run_bench(config)
    else:
        with console.status("measuring") as status:
            report = run_bench(config, lambda what: status.update(f"measuring {what}"))
    plot_error = None
    if figure_class is not None:
        try:
            write_plot(report, args.plot, figure_class)
            report["plot"] = args.plot
        except OSError as exc:  # the results are still printed: they took a while to get
            plot_error = f"--plot {args.plot}: {exc.strerror or exc}"
    if args.json:
        console.out(json.dumps(report, allow_nan=False), highlight=False)
    else:
        for renderable in render_report(report):
            console.print(renderable)
        if report["plot"]:
            console.print(f"plot written to {report['plot']}", highlight=False)
    return 0 if plot_error is None else _error(plot_error)


def _error(message: str) -> int:
    sys.stderr.write(f"usblp-emu bench: error: {message}\n")
    return 2

"""``usblp-emu explore``: its options, the race scenarios under the explorer, replay."""

from __future__ import annotations

import argparse
import shlex

from rich.console import Console

from hazard import HazardUsageError
from hazard.testing import ReplayDrift
from usblp_emu._check._scenarios import SCENARIOS, explore_scenario, replay_scenario
from usblp_emu._cli._common import (
    EXIT_RULE,
    PROG,
    Formatter,
    SubParsers,
    counts,
    exit_status,
    fail,
    int_at_least,
    positive,
    print_json,
    say,
    select,
)
from usblp_emu._cli._views import (
    ExploreCell,
    render_explore_summary,
    render_scenarios,
)
from usblp_emu._usblp._strategies import CORRECT_STRATEGIES, STRATEGIES


def add_explore(sub: SubParsers) -> None:
    p = sub.add_parser(
        "explore",
        help="explore the named race scenarios under the interleaving explorer",
        description="Run race scenarios (one per race window of usblp's lifetime) under "
        "strategies with the deterministic interleaving explorer. A failing schedule is "
        "printed as a per-thread timeline ending with the line that replays it. Failures of "
        "the negative controls in a run that also has correct strategies are expected and "
        "shown in one line each (select the strategy alone for the timeline).",
        epilog=EXIT_RULE,
        formatter_class=Formatter,
    )
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.add_argument(
        "--scenario",
        action="append",
        metavar="NAME",
        help="a scenario (see --list), or all; repeat or separate with commas (default: all)",
    )
    p.add_argument(
        "-s",
        "--strategy",
        action="append",
        metavar="NAME",
        help=f"{', '.join(STRATEGIES)}, or all (default: all)",
    )
    p.add_argument(
        "--preemptions",
        type=int_at_least(0),
        default=2,
        metavar="N",
        help="preemption bound (dfs; default 2)",
    )
    p.add_argument("--mode", choices=("dfs", "pct", "random"), default="dfs", help="(default dfs)")
    p.add_argument(
        "--runs", type=int_at_least(1), help="schedules per cell (default: dfs exhausts; 1000)"
    )
    p.add_argument(
        "--timeout",
        type=positive,
        default=10.0,
        metavar="SECONDS",
        help="search budget per cell; a cell cut short is reported incomplete (default 10)",
    )
    p.add_argument("--seed", type=int_at_least(0), help="seeds pct and random (default 0)")
    p.add_argument(
        "--replay",
        metavar="TOKEN",
        help="re-run the schedule a token names (needs exactly one --scenario and --strategy)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object, nothing else")
    p.set_defaults(handler=_explore)


# -- explore -------------------------------------------------------------------------------------


def _explore(args: argparse.Namespace, out: Console, err: Console) -> int:
    if args.list:
        if args.json:
            print_json(
                out,
                {
                    "scenarios": [
                        {"name": s.name, "window": s.window, "description": s.description}
                        for s in SCENARIOS.values()
                    ]
                },
            )
        else:
            out.print(render_scenarios(SCENARIOS))
        return 0
    scenarios = select(args.scenario, list(SCENARIOS), "scenario")
    strategies = select(args.strategy, list(STRATEGIES), "strategy")
    if args.replay is not None:
        if not (args.scenario and args.strategy and len(scenarios) == 1 and len(strategies) == 1):
            fail("--replay needs exactly one --scenario and one --strategy (those of the token)")
        return _replay(args, scenarios[0], strategies[0], out)
    cells: list[ExploreCell] = []
    interrupted = False
    try:
        for name in scenarios:
            for strategy in strategies:
                result = explore_scenario(
                    name,
                    strategy,
                    preemption_bound=args.preemptions,
                    mode=args.mode,
                    runs=args.runs,
                    seed=args.seed,
                    timeout=args.timeout,
                )
                cell = ExploreCell(SCENARIOS[name], strategy, result)
                cells.append(cell)
                if not args.json:
                    _print_cell(out, cell, counts(strategies, strategy))
    except KeyboardInterrupt:
        interrupted = True
    failed = sorted({c.strategy for c in cells if c.result.failure is not None})
    status = exit_status(strategies, failed, interrupted=interrupted)
    if args.json:
        print_json(
            out,
            {
                "command": "explore",
                "preemption_bound": args.preemptions,
                "mode": args.mode,
                "runs": args.runs,
                "timeout": args.timeout,
                "seed": args.seed,
                "cells": [_cell_json(c) for c in cells],
                "interrupted": interrupted,
                "exit_status": status,
            },
        )
        return status
    if cells:
        out.print(render_explore_summary(cells))
    if interrupted:
        say(out, "Interrupted: the summary covers the cells that finished.")
    say(out, f"Exit status {status} (see --help for the rule).")
    return status


def _replay_command(scenario: str, strategy: str, token: str) -> str:
    return shlex.join(
        [PROG, "explore", "--scenario", scenario, "--strategy", strategy, "--replay", token]
    )


def _print_cell(out: Console, cell: ExploreCell, counts: bool) -> None:
    r = cell.result
    name, window = cell.scenario.name, cell.scenario.window
    say(out, f"{name} [{window}] {cell.strategy}: {r.summary()}")
    if r.failure is None:
        return
    if counts:
        out.out(r.failure.report.rstrip(), highlight=False)
        out.print()
    else:
        exc = r.failure.exception
        first = str(exc).splitlines()[0] if str(exc) else ""
        replay = _replay_command(name, cell.strategy, r.failure.token)
        say(
            out,
            f"  expected of a negative control: {type(exc).__name__}: {first}\n"
            f"  Replay with: {replay}",
        )


def _cell_json(cell: ExploreCell) -> dict[str, object]:
    r = cell.result
    failure = None
    if r.failure is not None:
        exc = r.failure.exception
        failure = {
            "exception": type(exc).__name__,
            "message": str(exc),
            "thread": r.failure.thread,
            "preemptions": r.failure.preemptions,
            "steps": r.failure.steps,
            "token": r.failure.token,
            "replay": _replay_command(cell.scenario.name, cell.strategy, r.failure.token),
            "report": r.failure.report,
        }
    return {
        "scenario": cell.scenario.name,
        "window": cell.scenario.window,
        "strategy": cell.strategy,
        "claims_correct": cell.strategy in CORRECT_STRATEGIES,
        "ok": r.ok,
        "complete": r.complete,
        "schedules": r.schedules,
        "pruned": r.pruned,
        "seconds": r.seconds,
        "summary": r.summary(),
        "failure": failure,
    }


def _replay(args: argparse.Namespace, scenario: str, strategy: str, out: Console) -> int:
    try:
        exc = replay_scenario(scenario, strategy, args.replay)
    except (HazardUsageError, ReplayDrift) as bad:
        first = str(bad).splitlines()[0] if str(bad) else "it names a step that cannot happen"
        fail(f"the token does not fit {scenario} under {strategy}: {first}")
    status = 1 if exc is not None else 0
    if args.json:
        print_json(
            out,
            {
                "command": "explore",
                "replay": {
                    "scenario": scenario,
                    "strategy": strategy,
                    "token": args.replay,
                    "reproduced": exc is not None,
                    "exception": None if exc is None else type(exc).__name__,
                    "message": None if exc is None else str(exc),
                },
                "exit_status": status,
            },
        )
        return status
    if exc is None:
        say(out, f"replay of {scenario} under {strategy}: the schedule passes")
    else:
        say(
            out,
            f"replay of {scenario} under {strategy}: {type(exc).__name__} in the recorded schedule",
        )
        out.out(str(exc).rstrip(), highlight=False)
    say(out, f"Exit status {status}.")
    return status

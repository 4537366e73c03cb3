"""``usblp-emu stress``: its options, the run with the live view, the summary and JSON."""

from __future__ import annotations

import argparse
import contextlib
import math
import secrets
import shlex
from collections.abc import Callable, Sequence

from rich.console import Console
from rich.live import Live

from usblp_emu._check._stress import (
    StressConfig,
    StressReport,
    StressSnapshot,
    Violation,
    run_stress,
)
from usblp_emu._cli._common import (
    DEFAULT_WATCHDOG,
    EXIT_RULE,
    PROG,
    Formatter,
    SubParsers,
    counts,
    exit_status,
    int_at_least,
    non_negative,
    num,
    positive,
    print_json,
    printers,
    say,
    select,
)
from usblp_emu._cli._views import (
    render_latency,
    render_live,
    render_stress_summary,
    stress_verdict,
)
from usblp_emu._usblp._strategies import CORRECT_STRATEGIES, STRATEGIES


def add_stress(sub: SubParsers) -> None:
    p = sub.add_parser(
        "stress",
        help="real threads race file operations against hotplug, per strategy",
        description="Plug N virtual printers; worker threads race open/write/read/ioctl/poll/"
        "close against a generator that unplugs and replugs them at random. The emulated heap "
        "and the checkers give the verdict: use-after-free, double free, leaks, refcount "
        "violations, deadlocks (the watchdog) and errnos usblp never gives. Without options: "
        "all five strategies, 4 s each, a random seed (printed, with the command that replays "
        "the run's decisions).",
        epilog=EXIT_RULE,
        formatter_class=Formatter,
    )
    p.add_argument(
        "-s",
        "--strategy",
        action="append",
        metavar="NAME",
        help=f"{', '.join(STRATEGIES)}, or all; repeat or separate with commas (default: all)",
    )
    p.add_argument("--printers", type=printers, default=4, help="virtual printers (default 4)")
    p.add_argument("--threads", type=int_at_least(1), default=8, help="workers (default 8)")
    limit = p.add_mutually_exclusive_group()
    limit.add_argument(
        "--seconds", type=positive, default=4.0, help="seconds per strategy (default 4)"
    )
    limit.add_argument(
        "--ops",
        type=int_at_least(1),
        help="sessions per strategy instead of a time (a session: an open attempt, then 1-4 "
        "operations and a close); hotplug and faults then follow the workers' progress, so "
        "the seed fixes their counts too",
    )
    p.add_argument(
        "--seed", type=int_at_least(0), help="drives every decision (default: random, printed)"
    )
    p.add_argument(
        "--unplug-rate",
        type=non_negative,
        default=50.0,
        metavar="RATE",
        help="hotplug events per second, or per 1000 sessions with --ops (default 50)",
    )
    p.add_argument(
        "--faults",
        type=non_negative,
        default=0.0,
        metavar="RATE",
        help="injected transfer faults (stall, timeout, EPIPE, EIO, short write) per second, "
        "or per 1000 sessions with --ops (default 0)",
    )
    p.add_argument(
        "--latency",
        type=non_negative,
        default=0.0,
        metavar="SECONDS",
        help="bulk transfer latency (default 0)",
    )
    p.add_argument(
        "--resume-latency",
        type=non_negative,
        default=0.0,
        metavar="SECONDS",
        help="how long a printer takes to resume from autosuspend (default 0)",
    )
    p.add_argument(
        "--watchdog",
        type=non_negative,
        default=DEFAULT_WATCHDOG,
        metavar="SECONDS",
        help="a thread that makes no progress for this long is a deadlock: dump every "
        f"thread's stack and fail (default {DEFAULT_WATCHDOG:g}; 0 turns it off; keep it well "
        "above 8x --latency)",
    )
    p.add_argument(
        "--no-minor-rwsem",
        action="store_true",
        help="remove the USB core's minor rwsem backstop: what the driver alone guarantees",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object, nothing else")
    p.set_defaults(handler=_stress)


# -- stress --------------------------------------------------------------------------------------


def _stress_command(args: argparse.Namespace, strategies: Sequence[str], seed: int) -> str:
    """The command that replays this run's decisions."""
    names = "all" if list(strategies) == list(STRATEGIES) else ",".join(strategies)
    parts = [PROG, "stress", "--strategy", names]
    parts += ["--printers", str(args.printers), "--threads", str(args.threads)]
    if args.ops is not None:
        parts += ["--ops", str(args.ops)]
    else:
        parts += ["--seconds", num(args.seconds)]
    parts += ["--unplug-rate", num(args.unplug_rate)]
    for flag, value in (
        ("--faults", args.faults),
        ("--latency", args.latency),
        ("--resume-latency", args.resume_latency),
    ):
        if value:
            parts += [flag, num(value)]
    if args.watchdog != DEFAULT_WATCHDOG:
        parts += ["--watchdog", num(args.watchdog)]
    if args.no_minor_rwsem:
        parts.append("--no-minor-rwsem")
    parts += ["--seed", str(seed)]
    return shlex.join(parts)


def _stress(args: argparse.Namespace, out: Console, err: Console) -> int:
    strategies = select(args.strategy, list(STRATEGIES), "strategy")
    seed = args.seed if args.seed is not None else secrets.randbelow(2**32)
    command = _stress_command(args, strategies, seed)
    show = not args.json
    if show:
        each = f"{args.ops:,} sessions" if args.ops is not None else f"{num(args.seconds)} s"
        say(
            out,
            f"stress {', '.join(strategies)}: {each} each; {args.printers} printers, "
            f"{args.threads} threads, unplug rate {num(args.unplug_rate)}, seed {seed}",
        )
    configs = [_stress_config(args, s, seed) for s in strategies]
    reports, interrupted = _run_strategies(configs, out, show=show)
    failed = [r.config.strategy for r in reports if r.violations]
    status = exit_status(strategies, failed, interrupted=interrupted)
    if args.json:
        print_json(out, _stress_json(args, strategies, seed, command, reports, interrupted, status))
    else:
        _print_stress_summary(out, strategies, reports, command, interrupted, status)
    return status


def _stress_config(args: argparse.Namespace, strategy: str, seed: int) -> StressConfig:
    return StressConfig(
        strategy=strategy,
        printers=args.printers,
        threads=args.threads,
        # With --ops the session budget ends the run; the watchdog catches a hang.
        seconds=args.seconds if args.ops is None else math.inf,
        ops=args.ops,
        seed=seed,
        unplug_rate=args.unplug_rate,
        minor_rwsem=not args.no_minor_rwsem,
        latency=args.latency,
        resume_latency=args.resume_latency,
        fault_rate=args.faults,
        watchdog=args.watchdog,
    )


def _run_strategies(
    configs: Sequence[StressConfig], out: Console, *, show: bool
) -> tuple[list[StressReport], bool]:
    """Run each config in turn: the reports, and whether Ctrl-C cut the runs short."""
    reports: list[StressReport] = []
    on_snapshot: Callable[[StressSnapshot], None] | None = None
    with contextlib.ExitStack() as stack:
        if show and out.is_terminal:
            # No refresh thread: the runner calls back on this thread, which then redraws.
            live = stack.enter_context(Live(console=out, auto_refresh=False, transient=True))

            def on_snapshot(snapshot: StressSnapshot) -> None:
                live.update(render_live(snapshot, reports), refresh=True)

        plain = show and on_snapshot is None
        for config in configs:
            if plain:
                say(out, f"stress {config.strategy}: running")
            try:
                report = run_stress(config, on_snapshot=on_snapshot)
            except KeyboardInterrupt:  # outside the runner's wait: while starting or joining
                return reports, True
            reports.append(report)
            if plain:
                verdict, _ = stress_verdict(report)
                say(
                    out,
                    f"stress {config.strategy}: {verdict} ({sum(report.ops.values()):,} ops in "
                    f"{report.seconds:.1f} s, {report.unplugs:,} unplugs)",
                )
            if report.interrupted:
                return reports, True
    return reports, False


def _violation_json(v: Violation) -> dict[str, str]:
    return {"kind": v.kind, "message": v.message, "thread": v.thread, "stack": v.stack}


def _report_json(r: StressReport) -> dict[str, object]:
    heap = r.heap
    return {
        "strategy": r.config.strategy,
        "claims_correct": r.config.strategy in CORRECT_STRATEGIES,
        "ok": r.ok,
        "interrupted": r.interrupted,
        "seconds": r.seconds,
        "sessions": sum(r.sessions),
        "sessions_per_worker": list(r.sessions),
        "decisions_digest": r.digest,
        "ops": dict(r.ops),
        "errnos": dict(r.errnos),
        "plugs": r.plugs,
        "unplugs": r.unplugs,
        "faults": r.faults,
        "heap": None
        if heap is None
        else {
            "allocated": heap.allocated,
            "freed": heap.freed,
            "live": heap.live,
            "errors": heap.errors,
        },
        "latency_us": {
            op: {
                "count": s.count,
                "p50": round(s.p50_us, 3),
                "p99": round(s.p99_us, 3),
                "max": round(s.max_us, 3),
            }
            for op, s in ((op, h.summary()) for op, h in r.latency.items())
        },
        "violations": [_violation_json(v) for v in r.violations],
    }


def _stress_json(
    args: argparse.Namespace,
    strategies: Sequence[str],
    seed: int,
    command: str,
    reports: Sequence[StressReport],
    interrupted: bool,
    status: int,
) -> dict[str, object]:
    return {
        "command": "stress",
        "replay": command,
        "seed": seed,
        "config": {
            "strategies": list(strategies),
            "printers": args.printers,
            "threads": args.threads,
            "seconds": None if args.ops is not None else args.seconds,
            "ops": args.ops,
            "unplug_rate": args.unplug_rate,
            "faults": args.faults,
            "latency": args.latency,
            "resume_latency": args.resume_latency,
            "watchdog": args.watchdog,
            "minor_rwsem": not args.no_minor_rwsem,
        },
        "results": [_report_json(r) for r in reports],
        "interrupted": interrupted,
        "exit_status": status,
    }


def _print_stress_summary(
    out: Console,
    strategies: Sequence[str],
    reports: Sequence[StressReport],
    command: str,
    interrupted: bool,
    status: int,
) -> None:
    if reports:
        out.print(render_stress_summary(reports))
        out.print(render_latency(reports))
    for r in reports:
        if not r.violations:
            continue
        first = r.violations[0]
        head = f"{r.config.strategy}: {first.kind} in {first.thread}: {first.message}"
        more = f" (+{len(r.violations) - 1} more violations)" if len(r.violations) > 1 else ""
        if counts(strategies, r.config.strategy):
            say(out, f"\n{head}{more}")
            out.out(first.stack.rstrip(), highlight=False)
            for v in r.violations[1:]:
                say(out, f"  also: {v.kind} in {v.thread}: {v.message}")
        else:
            say(
                out,
                f"\n{head}{more}\n  (expected of a negative control; run it alone for the stacks, "
                "or use --json)",
            )
    out.print()
    for line in _stress_conclusion(reports, interrupted, status):
        say(out, line)
    say(out, f"Replay: {command}")


def _stress_conclusion(
    reports: Sequence[StressReport], interrupted: bool, status: int
) -> list[str]:
    lines = []
    correct = [r for r in reports if r.config.strategy in CORRECT_STRATEGIES]
    controls = [r for r in reports if r.config.strategy not in CORRECT_STRATEGIES]
    bad = [r for r in correct if r.violations]
    if bad:
        found = "; ".join(f"{r.config.strategy} ({_kinds(r.violations)})" for r in bad)
        lines.append(f"VIOLATION in a strategy that claims correctness: {found}")
    elif correct:
        names = ", ".join(r.config.strategy for r in correct)
        lines.append(f"The correct strategies ran clean: {names}")
    caught = [r for r in controls if r.violations]
    missed = [r for r in controls if not r.violations]
    if caught:
        found = "; ".join(
            f"{r.config.strategy} ({_kinds(r.violations)}, stopped after {r.seconds:.1f} s)"
            for r in caught
        )
        lines.append(f"Negative controls caught: {found}")
    if missed:
        names = ", ".join(r.config.strategy for r in missed)
        lines.append(
            f"Negative controls not caught this time: {names} (real threads: the OS picks "
            "the interleaving; run longer with --seconds)"
        )
    if interrupted:
        lines.append("Interrupted: the summary covers what ran.")
    lines.append(f"Exit status {status} (see --help for the rule).")
    return lines


def _kinds(violations: Sequence[Violation]) -> str:
    return ", ".join(sorted({v.kind for v in violations}))

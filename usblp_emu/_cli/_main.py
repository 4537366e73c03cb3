"""``usblp-emu``: the command line: ``stress``, ``explore``, ``bench`` and the printer commands.

Rules:
- Two consoles: results on stdout, errors on stderr. With ``--json`` stdout carries exactly one
  JSON object and nothing else.
- One failure path: :func:`fail` raises, and :func:`main` prints the one line on stderr and
  returns 2. argparse's errors and exits take the same path, so bad input never shows a
  traceback and ``main`` returns a status instead of raising SystemExit.
- The CLI runs on the calling thread only. The stress runner owns its threads and hands the
  CLI frozen snapshots; ``Live`` only swaps the renderables ``_dashboard`` builds from them.
- Which violations decide the exit status is :data:`EXIT_RULE`, the same for stress and
  explore, and printed by ``--help``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from importlib import metadata
from typing import cast

import usb.core
from rich.console import Console

from usblp_emu._bench import add_arguments as add_bench_arguments
from usblp_emu._bench import run as run_bench
from usblp_emu._cli._common import (
    EXIT_RULE,
    PLAIN_WIDTH,
    PROG,
    CliError,
    Formatter,
    Parser,
    ParserExit,
    SubParsers,
    exit_status,
    fail,
    int_at_least,
    say,
)
from usblp_emu._cli._explore import add_explore
from usblp_emu._cli._print import add_print_commands
from usblp_emu._cli._printers import add_usb_commands, problem_text
from usblp_emu._cli._run import add_run
from usblp_emu._cli._stress import add_stress
from usblp_emu._errors import DeviceError, EmulatorUsageError
from usblp_emu._pyusb._transport import translate_usb_error

COMMANDS = "stress, explore, bench, list, info, print, watch, doctor or run"

__all__ = ["EXIT_RULE", "CliError", "build_parser", "exit_status", "fail", "main"]

# -- the parser ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``usblp-emu`` argument parser (bench's options come from ``usblp_emu._bench``)."""
    parser = Parser(
        prog=PROG,
        description="Emulate the usblp printer driver's object lifetime under five lifetime "
        "strategies; stress it with real threads, explore its races exhaustively.",
        epilog=EXIT_RULE,
        formatter_class=Formatter,
    )
    try:
        version = metadata.version("usblp-emu")
    except metadata.PackageNotFoundError:
        version = "unknown"
    parser.add_argument("--version", action="version", version=f"%(prog)s {version}")
    parser.add_argument(
        "--virtual",
        type=int_at_least(1),
        metavar="N",
        help="run list, info, print, watch and doctor against N virtual printers through "
        "pyusb's VirtualBackend instead of libusb",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    add_stress(sub)
    add_explore(sub)
    _add_bench(sub)
    add_usb_commands(sub)
    add_print_commands(sub)
    add_run(sub)
    return parser


def _add_bench(sub: SubParsers) -> None:
    p = sub.add_parser("bench", help="benchmarks of the lifetime strategies")
    add_bench_arguments(p)
    p.set_defaults(handler=lambda args, out, err: run_bench(args, out))


# -- entry point ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the ``usblp-emu`` command line.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: see :data:`EXIT_RULE`.

    """
    out = Console()
    if not out.is_terminal and "COLUMNS" not in os.environ:
        # A log or a pipe has no width to fit: 80 columns would squeeze the summary tables.
        out = Console(width=PLAIN_WIDTH)
    err = Console(stderr=True)
    try:
        args = build_parser().parse_args(argv)
        handler = cast(
            Callable[[argparse.Namespace, Console, Console], int] | None,
            getattr(args, "handler", None),
        )
        if handler is None:
            fail(f"choose a command: {COMMANDS} (see {PROG} --help)")
        if args.virtual is not None and args.command in ("stress", "explore", "bench"):
            fail(f"--virtual is for the printer commands; {args.command} always runs virtual ones")
        return handler(args, out, err)
    except ParserExit as exc:
        return exc.status
    except CliError as exc:
        say(err, f"{PROG}: error: {exc}")
        return 2
    except (DeviceError, EmulatorUsageError) as exc:
        # A printer that left or refused between the commands' own checks: still one line.
        say(err, f"{PROG}: error: {problem_text(exc)}")
        return 2
    except usb.core.USBError as exc:
        say(err, f"{PROG}: error: {problem_text(translate_usb_error(exc, 'USB'))}")
        return 2
    except KeyboardInterrupt:
        say(err, f"{PROG}: interrupted")
        return 130

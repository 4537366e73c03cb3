"""What the ``usblp-emu`` commands share: the failure path, argument types, exit status, output.

Rules: one failure path (:func:`fail` raises :class:`CliError`, ``main`` prints one line and
returns 2); results on stdout, errors on stderr; with ``--json`` stdout carries one object.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from rich.console import Console

from usblp_emu._check._stress import (
    MAX_PRINTERS,
)
from usblp_emu._usblp._strategies import CORRECT_STRATEGIES, STRATEGIES

PROG = "usblp-emu"
NEGATIVE_CONTROLS = tuple(s for s in STRATEGIES if s not in CORRECT_STRATEGIES)

EXIT_RULE = f"""\
exit status:
  0    no violation that counts
  1    a violation that counts: one found in a strategy that claims correctness
       ({", ".join(CORRECT_STRATEGIES)}); when only negative controls
       ({", ".join(NEGATIVE_CONTROLS)}) are selected, one found in any of them.
       So a comparison that includes the correct strategies exits 0 when they are
       clean, whatever the negative controls do (the summary says whether they
       were caught), and `--strategy unprotected` alone exits 1 when it is caught.
  2    bad usage (one line on stderr)
  130  interrupted by Ctrl-C: the summary covers what ran; a violation that
       counts found before the interrupt still gives 1"""

DEFAULT_WATCHDOG = 10.0
PLAIN_WIDTH = 120


class CliError(Exception):
    """A usage error: printed as one line on stderr, exit status 2."""


class ParserExit(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def fail(message: str) -> NoReturn:
    """Stop with a one-line usage error (exit status 2).

    Raises:
        CliError: always; :func:`main` prints it.

    """
    raise CliError(message)


class Parser(argparse.ArgumentParser):
    """argparse that reports through :func:`fail` and returns from ``--help`` instead of exiting."""

    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see {self.prog} --help)")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            fail(message.strip())
        raise ParserExit(status)


class Formatter(argparse.HelpFormatter):
    """Wraps prose; keeps text that has its own line breaks (the exit-status table) as it is."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


# -- argument types ------------------------------------------------------------------------------


def int_at_least(low: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, not {value}")
        return value

    return convert


def printers(text: str) -> int:
    value = int_at_least(1)(text)
    if value > MAX_PRINTERS:
        raise argparse.ArgumentTypeError(f"must be <= {MAX_PRINTERS} (usblp's minors), not {value}")
    return value


def number(*, positive: bool) -> Callable[[str], float]:
    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            raise argparse.ArgumentTypeError(f"must be {'>' if positive else '>='} 0, not {text}")
        return value

    return convert


positive = number(positive=True)
non_negative = number(positive=False)


def select(values: Sequence[str] | None, known: Sequence[str], what: str) -> list[str]:
    """Names from repeated and comma-separated options; ``all`` (or nothing) is every one."""
    if not values:
        return list(known)
    chosen: list[str] = []
    for value in values:
        for raw in value.split(","):
            name = raw.strip()
            if name == "all":
                names = list(known)
            elif name in known:
                names = [name]
            else:
                fail(f"unknown {what} {name!r}; choose from {', '.join(known)}, or all")
            chosen += [n for n in names if n not in chosen]
    return chosen


def exit_status(selected: Sequence[str], failed: Sequence[str], *, interrupted: bool) -> int:
    """The exit status of a run, by :data:`EXIT_RULE`.

    Args:
        selected: the strategies the user selected.
        failed: those in which a violation (or a failing schedule) was found.
        interrupted: Ctrl-C ended the run early.

    """
    counted = [s for s in selected if s in CORRECT_STRATEGIES] or list(selected)
    if any(s in counted for s in failed):
        return 1
    return 130 if interrupted else 0


def counts(strategies: Sequence[str], strategy: str) -> bool:
    """Whether a violation in ``strategy`` decides the exit status of a run of ``strategies``."""
    return strategy in CORRECT_STRATEGIES or not any(s in CORRECT_STRATEGIES for s in strategies)


def num(value: float) -> str:
    """A number as the shortest text that parses back to it."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def say(console: Console, text: str = "") -> None:
    """Print plain text: no markup (it may hold device strings), no highlighting, no wrapping."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def print_json(out: Console, data: object) -> None:
    # Console.out neither wraps nor highlights: long strings (stacks) stay valid JSON.
    out.out(json.dumps(data, indent=2), highlight=False)


SubParsers = Any  # argparse's _SubParsersAction is private

"""The lifetime strategies side by side, in one run: ``usblp-emu bench`` as a script.

Usage: python tools/bench_usblp.py [--strategy NAME]... [--seconds S] [--quick] [--json]
                                   [--plot FILE] [--switch-interval S]

The same code as the CLI (usblp_emu._bench): open throughput with slow resumes,
disconnect-to-free latency under long readers, unreclaimed objects with a stalled reader, and
plain driver ops/s; it prints one table per measurement and the ratio lines with their targets.
Exit status 0 after a run, 2 on a usage error (one line on stderr).
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from rich.console import Console

from usblp_emu._bench import add_arguments, run


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (argparse prints the usage too)."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def main() -> int:
    parser = _Parser(prog="bench_usblp.py", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(), Console())


if __name__ == "__main__":
    raise SystemExit(main())

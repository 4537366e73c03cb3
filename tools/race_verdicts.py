"""Print the race verdict table: every scenario under every strategy, with the explorer.

Usage: python tools/race_verdicts.py [--bound 3] [--timeout 200] [--strategy S ...]
Prints one markdown row per scenario as it finishes (for the README), then the first
counterexample found for hazard-prototype, as the explorer reports it.
"""

from __future__ import annotations

import argparse
import sys
import time

from usblp_emu import STRATEGIES
from usblp_emu._check._scenarios import SCENARIOS, explore_scenario


def main(argv: list[str] | None = None) -> int:
    """Run the table; exit 0 (the verdicts are data, not a pass/fail)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bound", type=int, default=3, help="preemption bound (default 3)")
    parser.add_argument("--timeout", type=float, default=200.0, help="seconds per cell")
    parser.add_argument("--strategy", action="append", choices=list(STRATEGIES))
    parser.add_argument("--scenario", action="append", choices=list(SCENARIOS))
    args = parser.parse_args(argv)
    strategies = args.strategy or list(STRATEGIES)
    scenarios = args.scenario or list(SCENARIOS)
    print(f"preemption bound {args.bound}, at most {args.timeout:g} s per cell", flush=True)
    print("| scenario | window | " + " | ".join(strategies) + " |")
    print("|---|---|" + "---|" * len(strategies), flush=True)
    counterexample = None
    started = time.monotonic()
    for name in scenarios:
        cells = []
        for strategy in strategies:
            result = explore_scenario(
                name, strategy, preemption_bound=args.bound, timeout=args.timeout
            )
            if result.failure is not None:
                cells.append(
                    f"**{type(result.failure.exception).__name__}** "
                    f"({result.schedules:,} schedules)"
                )
                if strategy == "hazard-prototype" and counterexample is None:
                    counterexample = (name, result.failure.report)
            elif result.complete:
                cells.append(f"ok: {result.schedules:,} schedules, complete")
            else:
                cells.append(f"ok so far: {result.schedules:,} schedules, incomplete")
        print(f"| {name} | {SCENARIOS[name].window} | " + " | ".join(cells) + " |", flush=True)
    print(f"\ntotal {time.monotonic() - started:.0f} s", flush=True)
    if counterexample is not None:
        print(f"\nhazard-prototype counterexample ({counterexample[0]}):\n")
        print(counterexample[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())

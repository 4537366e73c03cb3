"""Explorer speed and reduction, measured in one run.

Usage: python tools/bench_explore.py [--seconds S] [--json]

Prints: schedules/s on a 3-thread model of ~50 checkpoints per thread (random and dfs modes);
schedules and seconds needed to find each mutation of hazard's algorithms (dfs, bound 2); and
the size of the bound-2 dfs space with and without partial-order reduction. Targets (issue 3):
>= 3,000 schedules/s; exhaustive bound-2 search of a 3-thread, ~50-checkpoint model < 10 s.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hazard import _hazptr
from hazard.testing import explore
from tests import models


@contextmanager
def patched_publish(variant: Callable[..., Any]) -> Iterator[None]:
    original = _hazptr.publish
    _hazptr.publish = variant
    try:
        yield
    finally:
        _hazptr.publish = original


def throughput(seconds: float) -> dict[str, Any]:
    body = models.counters_model(50)
    out: dict[str, Any] = {}
    for label, mode, reduction in (
        ("random", "random", False),
        ("dfs", "dfs", True),
        ("dfs, no reduction", "dfs", False),
    ):
        result = explore(
            body, mode=mode, runs=10**9, timeout=seconds, shrink=False, reduction=reduction
        )
        out[label] = {
            "schedules": result.schedules,
            "seconds": round(result.seconds, 2),
            "per_second": round(result.schedules / result.seconds),
        }
    return out


def mutations() -> dict[str, Any]:
    cases: list[tuple[str, Callable[[], None], Callable[..., Any] | None]] = [
        ("protect without reload", models.protect_model(), models.publish_without_reload),
        ("publish after reload", models.protect_model(), models.publish_after_reload),
        ("synchronize before unpublish", models.synchronize_first_model(), None),
        ("hpref plain inc", models.hpref_model(models.PlainIncHpref), None),
        (
            "hpref free before synchronize",
            models.hpref_model(models.FreeBeforeSynchronizeHpref),
            None,
        ),
    ]
    out: dict[str, Any] = {}
    for name, body, variant in cases:
        with patched_publish(variant) if variant else contextmanager(lambda: iter([None]))():
            result = explore(body, preemption_bound=2, shrink=False)
        failure = result.failure
        out[name] = {
            "found": failure is not None,
            "error": type(failure.exception).__name__ if failure else None,
            "schedules": result.schedules,
            "seconds": round(result.seconds, 3),
        }
    return out


def spaces(timeout: float) -> dict[str, Any]:
    cases = [
        ("counters 3x16 (~50 checkpoints)", models.counters_model(16)),
        ("counters 3x50 (~150 checkpoints)", models.counters_model(50)),
        ("protect+synchronize", models.protect_model()),
        ("protect+retire", models.protect_model("retire")),
        ("hpref", models.hpref_model()),
    ]
    out: dict[str, Any] = {}
    for name, body in cases:
        row = {}
        for reduction in (False, True):
            r = explore(
                body, preemption_bound=2, reduction=reduction, timeout=timeout, shrink=False
            )
            row["reduced" if reduction else "full"] = {
                "schedules": r.schedules,
                "complete": r.complete,
                "seconds": round(r.seconds, 2),
                "ok": r.ok,
            }
        out[name] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per throughput mode")
    parser.add_argument("--space-timeout", type=float, default=60.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = {
        "throughput": throughput(args.seconds),
        "mutations": mutations(),
        "spaces": spaces(args.space_timeout),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print("schedules/s, 3 threads x ~50 checkpoints (target >= 3000):")
    for mode, row in report["throughput"].items():
        print(f"  {mode:17s} {row['per_second']:6d}/s ({row['schedules']} in {row['seconds']} s)")
    print("mutations, dfs bound 2 with reduction (schedules until found, seconds):")
    for name, row in report["mutations"].items():
        verdict = row["error"] if row["found"] else "NOT FOUND"
        print(f"  {name:32s} {verdict:20s} {row['schedules']:6d} {row['seconds']:8.3f}")
    print("bound-2 dfs space, full vs reduced (schedules, complete?, seconds):")
    for name, row in report["spaces"].items():
        f, r = row["full"], row["reduced"]
        print(
            f"  {name:34s} full {f['schedules']:7d} {'complete' if f['complete'] else 'TIMEOUT':8s}"
            f" {f['seconds']:6.2f} s | reduced {r['schedules']:7d} "
            f"{'complete' if r['complete'] else 'TIMEOUT':8s} {r['seconds']:6.2f} s"
        )


if __name__ == "__main__":
    main()

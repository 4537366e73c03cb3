"""Comparing two runs of a script step by step (match, documented, divergence), and the gold
files: the kernel's results recorded next to each script, with the script's fingerprint."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tools.opdiff.runner import HANG, NOT_RUN, ScriptResult
from tools.opdiff.script import Allow, Script, token_in


class Divergence(AssertionError):
    """The emulator (or a new kernel run) disagrees with the kernel on an undocumented step."""


MATCH, DOCUMENTED, DIFF = "MATCH", "documented", "DIFF"


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One compared step."""

    step: int
    line: int
    op: str
    left: str
    right: str
    verdict: str
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class Report:
    """A script compared on two sides (kernel vs emulator, or gold vs a new kernel run)."""

    script: str
    left_name: str
    right_name: str
    verdicts: tuple[Verdict, ...]

    @property
    def diffs(self) -> list[Verdict]:
        """The steps that diverge."""
        return [v for v in self.verdicts if v.verdict == DIFF]

    def render(self, *, all_steps: bool = True) -> str:
        """A table: one line per step, the two tokens and the verdict."""
        counts = {k: sum(v.verdict == k for v in self.verdicts) for k in (MATCH, DOCUMENTED, DIFF)}
        summary = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
        lines = [f"{self.script}: {self.left_name} vs {self.right_name}: {summary}"]
        for v in self.verdicts:
            if not all_steps and v.verdict == MATCH:
                continue
            where = f"{v.step:>3} L{v.line:<3}" if v.step else "  -     "
            lines.append(
                f"  {where} {v.op[:30]:<30} {v.left[:24]:<24} {v.right[:24]:<24} {v.verdict}"
            )
            if v.reason:
                lines.append(f"{'':14}{v.verdict}: {v.reason}")
        return "\n".join(lines)


def compare(
    script: Script,
    left: ScriptResult,
    right: ScriptResult,
    *,
    names: tuple[str, str] = ("kernel", "emulator"),
    same_side: bool = False,
) -> Report:
    """Compare two runs of ``script`` step by step.

    Args:
        script: the parsed script (its allow-lists).
        left: the kernel's results (gold, or a run).
        right: the emulator's results, or with ``same_side`` another kernel run.
        names: the two sides' names, for the report.
        same_side: both sides are the kernel: an allow-list admits any two of its kernel
            tokens (a racy step may give either on two runs).

    """
    verdicts: list[Verdict] = []
    if left.fingerprint != script.fingerprint or right.fingerprint != script.fingerprint:
        stale = names[0] if left.fingerprint != script.fingerprint else names[1]
        verdicts.append(
            Verdict(
                0,
                0,
                "fingerprint",
                left.fingerprint,
                right.fingerprint,
                DIFF,
                f"{stale} results are for another version of the script",
            )
        )
        return Report(script.name, *names, tuple(verdicts))
    for step, a, b in zip(script.steps, left.steps, right.steps, strict=True):
        verdicts.append(
            _verdict(step.number, step.line, step.op.text, a.token, b.token, step.allow, same_side)
        )
    verdicts.append(
        _verdict(0, 0, "received", left.received, right.received, script.allow_received, same_side)
    )
    for side, result in zip(names, (left, right), strict=True):
        if result.check != "clean":
            verdicts.append(Verdict(0, 0, f"{side} heap", result.check, "", DIFF))
    return Report(script.name, *names, tuple(verdicts))


def _verdict(
    number: int, line: int, op: str, a: str, b: str, allow: Allow | None, same_side: bool
) -> Verdict:
    if a == b and a not in (HANG, NOT_RUN):
        return Verdict(number, line, op, a, b, MATCH)
    if allow is not None:
        ok = (
            (token_in(a, allow.kernel) and token_in(b, allow.kernel))
            if same_side
            else (allow.admits(a, b))
        )
        if ok:
            return Verdict(number, line, op, a, b, DOCUMENTED, allow.reason)
    return Verdict(number, line, op, a, b, DIFF)


def check(reports: Sequence[Report]) -> None:
    """Raise :class:`Divergence` listing every undocumented difference.

    Raises:
        Divergence: at least one step differs.

    """
    bad = [r for r in reports if r.diffs]
    if bad:
        count = sum(len(r.diffs) for r in bad)
        text = "\n".join(r.render(all_steps=False) for r in bad)
        raise Divergence(f"{count} undocumented difference(s) in {len(bad)} script(s):\n{text}")


# -- gold files ------------------------------------------------------------------------------


class MissingGold(LookupError):
    """A script has no recorded kernel results."""


def gold_path(script: Script) -> Path:
    """Where the kernel's recorded results for ``script`` live."""
    return script.path.with_suffix(".kernel.json")


def load_gold(script: Script) -> ScriptResult:
    """The recorded kernel results for ``script``.

    Raises:
        MissingGold: never recorded (``record`` writes it from a real kernel run).

    """
    path = gold_path(script)
    if not path.is_file():
        raise MissingGold(
            f"{path.name}: no kernel gold for {script.name}; record it with "
            f"'python tools/differential.py record {script.name}' (boots the rig)"
        )
    data = json.loads(path.read_text())
    return ScriptResult.from_json(data["result"])


def save_gold(script: Script, result: ScriptResult, kernel: str) -> Path:
    """Store a real kernel run's results as ``script``'s gold."""
    path = gold_path(script)
    document = {
        "script": script.name,
        "kernel": kernel,
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": "tools/differential.py record: the real usblp driver in the QEMU rig",
        "result": result.to_json(),
    }
    path.write_text(_one_step_per_line(document))
    return path


def _one_step_per_line(document: dict[str, Any]) -> str:
    """JSON with each step on one line: gold files are read as diffs."""
    marker = "@steps@"
    steps = document["result"]["steps"]
    text = json.dumps({**document, "result": {**document["result"], "steps": marker}}, indent=1)
    lines = ",\n".join(f"   {json.dumps(step)}" for step in steps)
    return text.replace(json.dumps(marker), f"[\n{lines}\n  ]") + "\n"

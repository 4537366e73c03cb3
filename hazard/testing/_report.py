"""The failure report: a per-thread timeline, the exception with its stacks, the replay line.

Pure functions from a recorded trace to text (and to a rich renderable for terminals), so the
report is the same in a log, in pytest's output and on screen.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from hazard.testing._runtime import Step

__all__ = ["conflicting_steps", "print_report", "render_report", "timeline_table"]

_WRITE = 2
_CELL = 44


def conflicting_steps(trace: Sequence[Step]) -> set[int]:
    """Steps touching an object that another thread also touches, one of them writing."""
    by_obj: dict[int, list[Step]] = {}
    for step in trace:
        if step.obj_key:
            by_obj.setdefault(step.obj_key, []).append(step)
    marked: set[int] = set()
    for steps in by_obj.values():
        if len({s.tid for s in steps}) > 1 and any(s.access & _WRITE for s in steps):
            for s in steps:
                others = [o for o in steps if o.tid != s.tid]
                if any((o.access | s.access) & _WRITE for o in others):
                    marked.add(s.index)
    return marked


def _cell(step: Step, marked: set[int]) -> str:
    flag = "*" if step.index in marked else " "
    head = ">" if step.preempted else " "
    obj = "" if step.obj == "-" or step.op in ("start", "exit") else f" {step.obj}"
    where = f" @ {step.where}" if step.where else ""
    return f"{head}{flag}{step.op}{obj}{where}"


def _exception_text(exc: BaseException, thread: str) -> str:
    header = f"{type(exc).__name__} in {thread}:"
    body = "".join(traceback.format_exception(exc)).rstrip()
    return f"{header}\n{body}"


def render_report(
    trace: Sequence[Step],
    names: Sequence[str],
    exc: BaseException,
    thread: str,
    token: str,
    replay_hint: str,
) -> str:
    """The whole report as plain text."""
    marked = conflicting_steps(trace)
    preemptions = sum(s.preempted for s in trace)
    lines = [
        f"Failing schedule: {len(names)} threads, {len(trace)} steps, {preemptions} "
        "preemptions (shrunk)",
        "  > = the scheduler preempted the previous thread here; * = conflicting access",
        "",
    ]
    if trace:
        header = "step  " + " | ".join(f"{n:<{_CELL}}" for n in names)
        lines += [header.rstrip(), "-" * len(header.rstrip())]
        for step in trace:
            cells = [""] * len(names)
            cells[step.tid] = _cell(step, marked)[:_CELL]
            row = f"{step.index:4d}  " + " | ".join(f"{c:<{_CELL}}" for c in cells)
            lines.append(row.rstrip())
        lines.append("")
    lines.append(_exception_text(exc, thread))
    lines += ["", f"Replay token: {token}", "Replay with: " + replay_hint.format(token=token)]
    return "\n".join(lines)


def timeline_table(trace: Sequence[Step], names: Sequence[str]) -> Table:
    """The timeline as a rich table (one column per thread)."""
    marked = conflicting_steps(trace)
    table = Table(title="Failing schedule (> preemption, * conflicting access)", show_lines=False)
    table.add_column("step", justify="right")
    for name in names:
        table.add_column(name, overflow="fold")
    for step in trace:
        cells: list[Text | str] = [""] * len(names)
        style = "bold red" if step.index in marked else ""
        cells[step.tid] = Text(_cell(step, marked), style=style)
        table.add_row(str(step.index), *cells)
    return table


def print_report(
    trace: Sequence[Step],
    names: Sequence[str],
    report: str,
    console: Console | None = None,
) -> None:
    """Print a report: a rich table on a terminal, the plain text otherwise."""
    console = console or Console(stderr=True)
    if not console.is_terminal or not trace:
        console.print(report, markup=False, highlight=False)
        return
    rest = report.split("\n\n", 2)[-1] if "\n\n" in report else report
    console.print(Group(timeline_table(trace, names), Text(rest)))

"""Choosers: how a run picks the next thread at each decision point.

Rules:
- A decision point is a checkpoint with two or more runnable threads. The default choice is
  the current thread if it can run, else the lowest-numbered runnable one; switching away from
  a runnable current thread is a preemption.
- ``Dfs`` enumerates every schedule with at most ``bound`` preemptions, depth first, by
  replaying a prefix of recorded decisions and taking defaults after it. With ``reduction`` it
  keeps sleep sets (Godefroid): after exploring thread ``a`` at a node, ``a`` sleeps in the
  sibling subtrees until a step dependent with ``a``'s pending operation runs (same object, at
  least one write), since those orders were already covered. Combined with a preemption bound
  this is the usual heuristic (as in CHESS): sound without the bound.
- ``Pct`` (Burckhardt et al. 2010): random distinct priorities, ``depth - 1`` random
  priority-change points among ``k`` decisions; the highest-priority runnable thread runs.
- ``Replay`` follows a token's deviations and says where the code drifted from it.
"""

from __future__ import annotations

import random
from typing import NamedTuple

from hazard.testing._errors import NondeterminismError, ReplayDrift
from hazard.testing._runtime import LThread, Run, State

__all__ = ["Dfs", "Pct", "RandomWalk", "Replay"]

_WRITE = 2


def default_choice(current: LThread, enabled: list[LThread]) -> LThread:
    """The non-preemptive choice: stay on ``current`` if it can run."""
    return current if current in enabled else enabled[0]


def _dependent(a: tuple[int, int], b: tuple[int, int]) -> bool:
    # (object key, access); key 0 means "touches nothing shared" (wake, yield, spawn).
    return a[0] != 0 and a[0] == b[0] and bool((a[1] | b[1]) & _WRITE)


class _Node(NamedTuple):
    """A decision point on the current path (what was true when it was first reached)."""

    mask: int  # runnable threads, bit tid
    current: int
    current_enabled: bool
    preemptions: int  # used before this decision
    sleep: frozenset[int]
    ops: dict[int, tuple[int, int]]  # pending (object key, access) per runnable thread

    def cost(self, tid: int) -> int:
        return self.preemptions + (1 if self.current_enabled and tid != self.current else 0)

    def runnable(self) -> list[int]:
        return [tid for tid in range(self.mask.bit_length()) if self.mask >> tid & 1]


_NO_SLEEP: frozenset[int] = frozenset()
_NO_OPS: dict[int, tuple[int, int]] = {}


class Dfs:
    """Exhaustive depth-first search up to a preemption bound, with optional sleep sets.

    The path is kept as parallel lists (nodes, the choice made at each, the choices already
    explored there): the default continuation appends to them at every decision, the hottest
    code of a search.
    """

    def __init__(self, bound: int, reduction: bool = False) -> None:
        self.bound = bound
        self.reduction = reduction
        self.nodes: list[_Node] = []
        self.chosen: list[int] = []
        self.done: list[set[int] | None] = []
        self.depth = 0
        self.pruned = 0  # schedules cut short as redundant, and alternatives slept

    def begin(self) -> None:
        """Start the next run from the top of the recorded path."""
        self.depth = 0

    def choose(self, run: Run, current: LThread, enabled: list[LThread]) -> LThread | None:
        i = self.depth
        self.depth = i + 1
        nodes = self.nodes
        if i < len(nodes):
            if nodes[i].mask != run.enabled_mask:
                raise NondeterminismError(
                    f"at decision {i} the runnable threads were {nodes[i].runnable()} and are "
                    f"now {[u.tid for u in enabled]}: the body depends on something the "
                    "explorer does not control (time, randomness, uncontrolled threads or "
                    "shared state)"
                )
            return run.threads[self.chosen[i]]
        current_enabled = current.state is State.ENABLED
        default = current if current_enabled else enabled[0]
        preemptions = 0
        if nodes:
            parent = nodes[-1]
            preemptions = parent.cost(self.chosen[-1])
        if not self.reduction:
            nodes.append(
                _Node(
                    run.enabled_mask, current.tid, current_enabled, preemptions, _NO_SLEEP, _NO_OPS
                )
            )
            self.chosen.append(default.tid)
            self.done.append(None)
            return default
        ops = {
            u.tid: (id(u.pending_obj) if u.pending_obj is not None else 0, u.pending_access)
            for u in enabled
        }
        sleep = _NO_SLEEP
        if nodes:
            parent = nodes[-1]
            parent_chosen = self.chosen[-1]
            chosen_op = parent.ops[parent_chosen]
            sleep = frozenset(
                x
                for x in parent.sleep | (self.done[-1] or _NO_SLEEP)
                if x != parent_chosen and x in ops and not _dependent(parent.ops[x], chosen_op)
            )
        pick: LThread | None = default
        if default.tid in sleep:
            pick = None
            if preemptions + (1 if current_enabled else 0) <= self.bound:
                for u in enabled:
                    if u.tid not in sleep:
                        pick = u
                        break
        if pick is None:
            self.pruned += 1
            return None
        nodes.append(_Node(run.enabled_mask, current.tid, current_enabled, preemptions, sleep, ops))
        self.chosen.append(pick.tid)
        self.done.append(None)
        return pick

    def advance(self) -> bool:
        """Move to the next unexplored schedule; False when the bounded space is exhausted."""
        nodes, chosen, dones = self.nodes, self.chosen, self.done
        while nodes:
            node = nodes[-1]
            done = dones[-1]
            if done is None:
                done = dones[-1] = set()
            done.add(chosen[-1])
            for tid in node.runnable():
                if tid in done:
                    continue
                if tid in node.sleep:
                    done.add(tid)
                    self.pruned += 1
                    continue
                if node.cost(tid) > self.bound:
                    continue
                chosen[-1] = tid
                return True
            nodes.pop()
            chosen.pop()
            dones.pop()
        return False


class RandomWalk:
    """Uniformly random choice at every decision point."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def choose(self, run: Run, current: LThread, enabled: list[LThread]) -> LThread | None:
        return enabled[self.rng.randrange(len(enabled))]


class Pct:
    """Probabilistic concurrency testing with bug depth ``depth``."""

    def __init__(self, rng: random.Random, depth: int, k: int) -> None:
        self.rng = rng
        self.depth = depth
        self.k = max(k, 1)
        self.priorities: dict[int, float] = {}
        self.change_points: dict[int, int] = {}
        self.decision = 0

    def begin(self, k: int) -> None:
        """Draw the priority-change points for a run expected to take ``k`` decisions."""
        self.k = max(k, 1)
        self.priorities = {}
        self.decision = 0
        points = self.rng.sample(range(self.k), min(self.depth - 1, self.k))
        # Change point number j lowers the running thread to priority j (below all initial ones).
        self.change_points = {p: j for j, p in enumerate(sorted(points))}

    def _priority(self, tid: int) -> float:
        if tid not in self.priorities:
            self.priorities[tid] = self.depth + self.rng.random()
        return self.priorities[tid]

    def choose(self, run: Run, current: LThread, enabled: list[LThread]) -> LThread | None:
        best = max(enabled, key=lambda u: self._priority(u.tid))
        j = self.change_points.get(self.decision)
        self.decision += 1
        if j is not None:
            self.priorities[best.tid] = float(j)
            best = max(enabled, key=lambda u: self._priority(u.tid))
        return best


class Replay:
    """Follows a token's deviations; defaults elsewhere."""

    def __init__(self, deviations: list[tuple[int, int]]) -> None:
        self.wanted = dict(deviations)
        self.last = max(self.wanted, default=-1)
        self.decision = 0

    def choose(self, run: Run, current: LThread, enabled: list[LThread]) -> LThread | None:
        i = self.decision
        self.decision += 1
        tid = self.wanted.get(i)
        if tid is None:
            return default_choice(current, enabled)
        for u in enabled:
            if u.tid == tid:
                return u
        raise ReplayDrift(
            f"the schedule no longer applies: at decision {i} (step {run.steps}) it runs thread "
            f"T{tid}, but the runnable threads are {[u.name for u in enabled]}"
        )

    def check_complete(self, run: Run) -> None:
        """Raise ReplayDrift if the run ended before the token's last deviation."""
        if self.decision <= self.last:
            raise ReplayDrift(
                f"the schedule no longer applies: the run ended after {self.decision} decisions "
                f"but the token has a choice at decision {self.last}"
            )

"""Choosers: how a run picks the next thread at each decision point.

Rules:
- A decision point is a checkpoint with two or more runnable threads. The default choice is
  the current thread if it can run, else the lowest-numbered runnable one; switching away from
  a runnable current thread is a preemption.
- ``Dfs`` enumerates every schedule with at most ``bound`` preemptions, depth first, by
  replaying a prefix of recorded decisions and taking defaults after it; with ``reduction``
  only the alternatives that bounded dynamic partial-order reduction asks for (see ``Dfs``).
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


class _Node(NamedTuple):
    """A decision point on the current path (what was true when it was first reached)."""

    mask: int  # runnable threads, bit tid
    current: int
    current_enabled: bool
    preemptions: int  # used before this decision

    def cost(self, tid: int) -> int:
        return self.preemptions + (1 if self.current_enabled and tid != self.current else 0)

    def runnable(self) -> list[int]:
        return [tid for tid in range(self.mask.bit_length()) if self.mask >> tid & 1]


_new_node = tuple.__new__
_ENABLED = State.ENABLED


class Dfs:
    """Depth-first search of every schedule up to a preemption bound.

    Without reduction every runnable thread is an alternative at every decision. With it, a
    decision's alternatives are only the threads that dynamic partial-order reduction puts in
    its backtrack set (Flanagan and Godefroid, POPL 2005): after each run, every pair of
    dependent steps of different threads not ordered by happens-before (vector clocks) is a
    race, and the later step's thread is added at the decision before the earlier step (all
    runnable threads if it could not run there). Because reversing a race in the middle of a
    thread's run of steps costs a preemption that starting earlier would not, the thread is
    also added at the decision that began that run (the conservative branch of Coons et al.,
    "Bounded partial-order reduction", OOPSLA 2013), which keeps the search complete up to
    the bound.

    The path is kept as parallel lists (nodes, the choice made at each, the choices explored
    and to explore there): the default continuation appends to them at every decision.
    """

    def __init__(self, bound: int, reduction: bool = True, conservative: bool = True) -> None:
        self.bound = bound
        self.reduction = reduction
        # Tests turn the conservative branches off to show that the search then misses states.
        self.conservative = conservative
        self.wants_log = reduction
        self.nodes: list[_Node] = []
        self.chosen: list[int] = []
        self.done: list[set[int] | None] = []
        self.backtrack: list[set[int] | None] = []  # None: only the first choice so far
        self.depth = 0
        self.pruned = 0  # alternatives never run because the reduction found them equivalent
        self.stamps: list[tuple[int, ...]] | None = None  # the last run's clocks, per step

    def begin(self) -> None:
        """Start the next run from the top of the recorded path."""
        self.depth = 0
        # Decisions before the last one on the path replay the previous run exactly, and so
        # do the steps they chose: their races were found then.
        self.fresh_from = max(len(self.nodes) - 1, 0)
        self.first_fresh: int | None = None

    fresh_from = 0

    def choose(self, run: Run, current: LThread, enabled: list[LThread]) -> LThread:
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
            if i == self.fresh_from and run.log is not None:
                self.first_fresh = len(run.log)  # the step chosen here is logged next
            return run.threads[self.chosen[i]]
        current_enabled = current.state is _ENABLED
        default = current if current_enabled else enabled[0]
        preemptions = 0
        chosen = self.chosen
        if nodes:
            parent = nodes[-1]
            preemptions = parent[3] + (parent[2] and chosen[-1] != parent[1])
        # tuple.__new__ skips NamedTuple's Python-level constructor: this runs per decision.
        node = (run.enabled_mask, current.tid, current_enabled, preemptions)
        nodes.append(_new_node(_Node, node))
        chosen.append(default.tid)
        self.done.append(None)
        self.backtrack.append(None)
        return default

    def finish(self, run: Run) -> None:
        """Add the backtrack points of the races in the run just finished."""
        if self.reduction and run.log is not None:
            self.stamps = _add_race_backtracks(
                run.log,
                self.nodes,
                self.backtrack,
                self.conservative,
                self.fresh_from,
                self.stamps,
                self.first_fresh,
                len(run.threads),
            )

    def advance(self) -> bool:
        """Move to the next unexplored schedule; False when the bounded space is exhausted."""
        nodes, chosen, dones, backtrack = self.nodes, self.chosen, self.done, self.backtrack
        while nodes:
            node = nodes[-1]
            done = dones[-1]
            if done is None:
                done = dones[-1] = set()
            done.add(chosen[-1])
            runnable = node.runnable()
            wanted = (backtrack[-1] or done) if self.reduction else set(runnable)
            best = None
            for tid in runnable:
                if tid in done or tid not in wanted or node.cost(tid) > self.bound:
                    continue
                if best is None or node.cost(tid) < node.cost(best):
                    best = tid
            if best is not None:
                chosen[-1] = best
                return True
            if self.reduction:
                self.pruned += sum(1 for t in runnable if t not in done and t not in wanted)
            nodes.pop()
            chosen.pop()
            dones.pop()
            backtrack.pop()
        return False


def _dependent_earlier(
    key: int, access: int, last_write: dict[int, int], reads: dict[int, list[int]]
) -> list[int]:
    """Earlier steps that a step doing ``access`` on ``key`` depends on."""
    w = last_write.get(key)
    if access & _WRITE:
        earlier = list(reads.get(key, ()))
        if w is not None:
            earlier.append(w)
        return earlier
    return [] if w is None else [w]


Stamps = list[tuple[int, ...]]


class _RaceScan:
    """Vector-clock race detection over one run's log, adding backtrack points."""

    def __init__(
        self,
        log: list[tuple[int, int, int, int]],
        nodes: list[_Node],
        backtrack: list[set[int] | None],
        conservative: bool,
        nthreads: int,
    ) -> None:
        self.log = log
        self.nodes = nodes
        self.backtrack = backtrack
        self.conservative = conservative
        self.nthreads = nthreads
        n = nthreads
        self.stamp: Stamps = []  # per step: its thread's vector clock after the step
        self.clocks = [[0] * n for _ in range(n)]  # per thread: what it has seen so far
        self.started = [False] * n
        self.last_write: dict[int, int] = {}  # object key -> step index
        self.reads: dict[int, list[int]] = {}  # object key -> read steps since the last write

    def _note_access(self, j: int, key: int, access: int) -> None:
        if access & _WRITE:
            self.last_write[key] = j
            self.reads[key] = []
        else:
            self.reads.setdefault(key, []).append(j)

    def restore(self, previous: Stamps, upto: int) -> None:
        """Take the clocks of steps ``< upto`` from ``previous``; rebuild the rest cheaply."""
        self.stamp = previous[:upto]
        last_step = [-1] * self.nthreads
        last_write, reads = self.last_write, self.reads
        for j in range(upto):
            tid, key, access, _ = self.log[j]
            last_step[tid] = j
            if key:  # _note_access, inlined: this loop covers most of every run
                if access & _WRITE:
                    last_write[key] = j
                    reads[key] = []
                elif key in reads:
                    reads[key].append(j)
                else:
                    reads[key] = [j]
        # A thread's clock is its last step's stamp: only its own steps change it.
        n = self.nthreads
        self.clocks = [list(self.stamp[k]) if k >= 0 else [0] * n for k in last_step]
        self.started = [k >= 0 for k in last_step]

    def _add(self, node: int, tid: int) -> None:
        if node < 0 or node >= len(self.nodes):
            return
        wanted = self.backtrack[node]
        if wanted is None:
            wanted = self.backtrack[node] = set()
        if self.nodes[node].mask >> tid & 1:
            wanted.add(tid)
        else:
            wanted.update(self.nodes[node].runnable())

    def _block_start(self, i: int) -> int:
        tid = self.log[i][0]
        while i > 0 and self.log[i - 1][0] == tid:
            i -= 1
        return i

    def _race(self, i: int, tid: int) -> None:
        # Steps i and j (of thread tid) race: run tid before i, and before i's block.
        self._add(self.log[i][3], tid)
        if self.conservative:
            k = self._block_start(i)
            if k != i:
                self._add(self.log[k][3], tid)

    def scan(self, start: int, first_fresh: int) -> None:
        """Clock every step from ``start``; look for races from ``first_fresh``."""
        log, stamp, started = self.log, self.stamp, self.started
        for j in range(start, len(log)):
            tid, key, access, _node = log[j]
            clock = self.clocks[tid]
            if key:
                earlier = _dependent_earlier(key, access, self.last_write, self.reads)
                if j >= first_fresh and started[tid]:
                    for i in earlier:
                        other = log[i][0]
                        if other != tid and stamp[i][other] > clock[other]:
                            self._race(i, tid)
                for i in earlier:
                    clock[:] = map(max, clock, stamp[i])
                self._note_access(j, key, access)
            started[tid] = True
            clock[tid] += 1
            stamp.append(tuple(clock))


def _add_race_backtracks(
    log: list[tuple[int, int, int, int]],
    nodes: list[_Node],
    backtrack: list[set[int] | None],
    conservative: bool,
    fresh_from: int = 0,
    previous: Stamps | None = None,
    first_fresh: int | None = None,
    nthreads: int | None = None,
) -> Stamps:
    """Find the races of one run and add their backtrack points.

    Steps chosen before decision ``fresh_from`` replay the previous run exactly: their races
    were found then, and their clocks (``previous``, what the last call returned) are reused,
    so the cost is the new part of the run plus a cheap scan of the replayed prefix.

    Returns:
        Every step's clock, for the next call.

    """
    if nthreads is None:
        nthreads = 1 + max(step[0] for step in log)
    scan = _RaceScan(log, nodes, backtrack, conservative, nthreads)
    if first_fresh is None:
        first_fresh = 0
        if fresh_from:
            first_fresh = next((j for j, s in enumerate(log) if s[3] >= fresh_from), len(log))
    reusable = (
        previous is not None
        and 0 < first_fresh <= len(previous)
        and len(previous[0]) == scan.nthreads
    )
    if reusable:
        assert previous is not None
        scan.restore(previous, first_fresh)
        scan.scan(first_fresh, first_fresh)
    else:
        scan.scan(0, first_fresh)
    return scan.stamp


class RandomWalk:
    """Uniformly random choice at every decision point."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def choose(self, run: Run, current: LThread, enabled: list[LThread]) -> LThread:
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

    def choose(self, run: Run, current: LThread, enabled: list[LThread]) -> LThread:
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

    def choose(self, run: Run, current: LThread, enabled: list[LThread]) -> LThread:
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

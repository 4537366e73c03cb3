"""Cost of hazard's primitives, in one run, as ns/op and as a ratio to a threading.Lock pair.

Usage: python tools/bench_hazard.py [--number N] [--repeat K] [--json]

Each figure is the best of K repeats of N operations (the machine is shared and noisy; the
minimum is the least disturbed). Ratios divide by the Lock acquire+release pair measured in the
same run. Targets (issue 2): hpref get+put <= 3x the Lock pair; checkpoint with no explorer
<= 50 ns (measured as AtomicRef.load minus AtomicRef.peek, which differ only by the checkpoint).
"""

from __future__ import annotations

import argparse
import json
import threading
import timeit
from collections.abc import Callable

import cereggii

import hazard
from hazard._rcu import Rcu


class _Node:
    __slots__ = ("refcount",)

    def __init__(self) -> None:
        self.refcount = hazard.Refcount(1)


class _LockCell:
    """The alternative to cereggii: a compare-exchange under a lock per cell."""

    __slots__ = ("_lock", "_value")

    def __init__(self, value: object) -> None:
        self._value = value
        self._lock = threading.Lock()

    def compare_exchange(self, expected: object, desired: object) -> bool:
        with self._lock:
            if self._value is expected:
                self._value = desired
                return True
            return False


def _cases() -> dict[str, Callable[[], object]]:
    lock = threading.Lock()
    acquire, release = lock.acquire, lock.release
    node = _Node()
    src: hazard.AtomicRef[_Node | None] = hazard.AtomicRef(node)
    domain = hazard.HazardDomain()
    hpref: hazard.Hpref[_Node] = hazard.Hpref(domain, lambda n: None)
    protect, get, put = domain.protect, hpref.get, hpref.put
    rcu = Rcu()
    read = rcu.read
    lock_cell = _LockCell(None)
    raw = cereggii.AtomicRef(None)

    def lock_pair() -> None:
        acquire()
        release()

    def protect_release() -> None:
        with protect(src):
            pass

    def hpref_get_put() -> None:
        obj = get(src)
        assert obj is not None
        put(obj)

    # The floor: the same seven atomic operations as hpref get+put, inlined on raw cereggii
    # cells, with no checkpoints, no slot bookkeeping and no refcount checks. No correct
    # pure-Python version can be cheaper than this.
    floor_src = cereggii.AtomicRef(node)
    floor_slot = cereggii.AtomicRef(None)
    floor_count = cereggii.AtomicInt64(1)

    def floor_get_put() -> None:
        p = floor_src.get()
        floor_slot.set(p)
        if floor_src.get() is p:
            v = floor_count.get()
            floor_count.compare_and_set(v, v + 1)
        floor_slot.set(None)
        floor_count.get_and_increment(-1)

    def hpref_borrow() -> None:
        with hpref.borrow(src):
            pass

    def rcu_read() -> None:
        with read():
            pass

    return {
        "Lock acquire+release": lock_pair,
        "AtomicRef.load": src.load,
        "AtomicRef.peek (no checkpoint)": src.peek,
        "AtomicRef.compare_exchange": lambda: src.compare_exchange(None, None),
        "cereggii compare_and_set (raw)": lambda: raw.compare_and_set(None, None),
        "lock-per-cell compare_exchange": lambda: lock_cell.compare_exchange(None, None),
        "protect+release": protect_release,
        "hpref get+put": hpref_get_put,
        "hpref borrow (with)": hpref_borrow,
        "floor: get+put inlined on raw cells": floor_get_put,
        "rcu read section": rcu_read,
        "empty call (overhead)": lambda: None,
    }


def measure(number: int, repeat: int) -> dict[str, float]:
    """Return ns/op for every case; each case's call overhead is included, as users pay it."""
    return {
        name: min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e9
        for name, fn in _cases().items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    ns = measure(args.number, args.repeat)
    lock = ns["Lock acquire+release"]
    checkpoint = ns["AtomicRef.load"] - ns["AtomicRef.peek (no checkpoint)"]
    if args.json:
        print(json.dumps({"ns_per_op": ns, "checkpoint_ns": checkpoint}, indent=2))
        return
    print(f"{'operation':34s} {'ns/op':>8s} {'x Lock pair':>12s}")
    for name, value in ns.items():
        print(f"{name:34s} {value:8.1f} {value / lock:12.2f}")
    print(f"{'checkpoint, no explorer':34s} {checkpoint:8.1f}   (target <= 50 ns)")
    ratio = ns["hpref get+put"] / lock
    floor = ns["floor: get+put inlined on raw cells"] / lock
    print(f"hpref get+put / Lock pair: {ratio:.2f} (target <= 3; floor {floor:.2f})")


if __name__ == "__main__":
    main()

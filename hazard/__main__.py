"""``python -m hazard``: a short demo of hazard-pointer-protected refcounts on real threads.

Readers take counted references through hazard pointers while a writer republishes and frees
emulated structs; then the same race with the last put freeing before it waits for readers,
which the emulated heap reports as a KASAN-style use-after-free.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

from rich.console import Console
from rich.table import Table

from hazard import (
    AtomicInt,
    AtomicRef,
    HazardDomain,
    Heap,
    HeapError,
    HeapObject,
    Hpref,
    Refcount,
)


class Device(HeapObject):
    """A stand-in for struct usblp: the refcount first, then some state."""

    __slots__ = ("minor", "refcount")
    __embedded__ = ("refcount",)

    def __init__(self, minor: int) -> None:
        self.refcount = Refcount(1, name="device")
        self.minor = minor


class _FreeFirst(Hpref[Device]):
    """The bug: free on the last put, then wait for readers (too late)."""

    def put(self, obj: Device) -> bool:
        if obj.refcount.dec_and_test():
            self.release(obj)
            self.domain.synchronize(obj)
            return True
        return False


def race(hpref_cls: type[Hpref[Device]], seconds: float) -> dict[str, object]:
    """Three readers against one republishing writer, for ``seconds``."""
    heap = Heap("demo")
    hpref = hpref_cls(HazardDomain(), heap.free)
    src: AtomicRef[Device | None] = AtomicRef(heap.alloc(Device, 0))
    stop = AtomicInt(0)
    gets, misses, swaps = AtomicInt(0), AtomicInt(0), AtomicInt(0)

    def reader() -> None:
        while not stop.load():
            try:
                with hpref.borrow(src) as dev:
                    if dev is None:
                        misses.fetch_add(1)
                        continue
                    swaps.load()
                    assert dev.minor >= 0
                    gets.fetch_add(1)
            except HeapError:
                stop.store(1)  # the heap recorded it; the report comes from heap.errors

    def writer() -> None:
        while not stop.load():
            old = src.exchange(heap.alloc(Device, swaps.fetch_add(1) + 1))
            assert old is not None
            try:
                hpref.put(old)
            except HeapError:
                stop.store(1)

    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    threads = [threading.Thread(target=reader) for _ in range(3)]
    threads.append(threading.Thread(target=writer))
    for t in threads:
        t.start()
    deadline = time.monotonic() + seconds
    while not stop.load() and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.store(1)
    for t in threads:
        t.join()
    sys.setswitchinterval(old_interval)
    last = src.exchange(None)
    if last is not None and not heap.errors:
        hpref.put(last)
    return {
        "gets": gets.load(),
        "misses": misses.load(),
        "republished": swaps.load(),
        "heap": heap.statistics(),
        "errors": heap.errors,
        "leaks": heap.leaks() if not heap.errors else [],
    }


def main() -> int:
    """Run the demo; exit 0 when the correct recipe is clean and the bug is caught."""
    parser = argparse.ArgumentParser(prog="python -m hazard", description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.5, help="per race (default 1.5)")
    args = parser.parse_args()
    if args.seconds <= 0:
        parser.error("--seconds must be > 0")
    console = Console()
    good = race(Hpref, args.seconds)
    bad = race(_FreeFirst, args.seconds * 2)
    table = Table(title="hpref get/put vs. a republishing writer (3 readers, real threads)")
    for column in ("recipe", "counted gets", "republished", "freed", "live", "errors"):
        table.add_column(column, justify="right" if column != "recipe" else "left")
    for name, result in (
        ("seed recipe (synchronize, then free)", good),
        ("free, then synchronize", bad),
    ):
        stats = result["heap"]
        table.add_row(
            name,
            str(result["gets"]),
            str(result["republished"]),
            str(stats.freed),  # type: ignore[attr-defined]
            str(stats.live),  # type: ignore[attr-defined]
            str(len(result["errors"])),  # type: ignore[arg-type]
        )
    console.print(table)
    clean = not good["errors"] and not good["leaks"]
    caught = bool(bad["errors"])
    console.print(f"seed recipe: {'no use-after-free, nothing leaked' if clean else 'VIOLATION'}")
    if caught:
        first = str(bad["errors"][0]).split("\n\n")[0]  # type: ignore[index]
        console.print("free-then-synchronize, as the emulated heap reported it:")
        console.print(first, markup=False, highlight=False)
    else:
        console.print("free-then-synchronize: not caught in this run (try --seconds 5)")
    return 0 if clean and caught else 1


if __name__ == "__main__":
    sys.exit(main())

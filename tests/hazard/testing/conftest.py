"""What the explorer's tests share: the smallest racy body, a lost update."""

from __future__ import annotations

from hazard import AtomicInt
from hazard.testing import spawn


def lost_update() -> None:
    n = AtomicInt(0)

    def inc() -> None:
        n.store(n.load() + 1)

    threads = [spawn(inc) for _ in range(2)]
    for t in threads:
        t.join()
    assert n.load() == 2, "lost update"

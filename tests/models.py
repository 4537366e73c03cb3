"""Small concurrent models of hazard's algorithms, shared by the explorer tests and benchmarks.

Each ``*_model`` returns a body for ``hazard.testing.explore``; a mutation is a monkeypatch of
one step (see ``MUTATIONS``) that the explorer must catch with the named error type.
"""

from __future__ import annotations

from collections.abc import Callable

from hazard import AtomicInt, AtomicRef, HazardDomain, Heap, HeapObject, Hpref, Refcount
from hazard.testing import spawn


class Node(HeapObject):
    __slots__ = ("refcount", "value")
    __embedded__ = ("refcount", "value")

    def __init__(self, value: int) -> None:
        self.refcount = Refcount(1)
        self.value = AtomicInt(value)


def protect_model(reclaim: str = "synchronize", readers: int = 2) -> Callable[[], None]:
    """Readers protect and read a node while a writer replaces it and reclaims the old one."""

    def body() -> None:
        heap = Heap()
        domain = HazardDomain(scan_threshold=1)
        src: AtomicRef[Node | None] = AtomicRef(heap.alloc(Node, 0))

        def writer() -> None:
            old = src.exchange(heap.alloc(Node, 1))
            assert old is not None
            if reclaim == "synchronize":
                domain.synchronize(old)
                heap.free(old)
            else:
                domain.retire(old, heap.free)
                domain.cleanup()

        threads = [spawn(protected_read, domain, src) for _ in range(readers)]
        threads.append(spawn(writer))
        for t in threads:
            t.join()

    return body


def protected_read(domain: HazardDomain, src: AtomicRef[Node | None]) -> None:
    """A reader: protect the published node and read a field of it."""
    with domain.protect(src) as node:
        if node is not None:
            node.value.load()


def synchronize_first_model() -> Callable[[], None]:
    """The writer waits for readers before it unpublishes: the wrong order."""

    def body() -> None:
        heap = Heap()
        domain = HazardDomain()
        src: AtomicRef[Node | None] = AtomicRef(heap.alloc(Node, 0))

        def writer() -> None:
            old = src.load()
            assert old is not None
            domain.synchronize(old)
            src.store(heap.alloc(Node, 1))
            heap.free(old)

        threads = [spawn(protected_read, domain, src), spawn(writer)]
        for t in threads:
            t.join()

    return body


def hpref_model(cls: type[Hpref[Node]] = Hpref, readers: int = 2) -> Callable[[], None]:
    """Readers take counted references while a writer unpublishes and drops its reference."""

    def body() -> None:
        heap = Heap()
        hpref = cls(HazardDomain(), heap.free)
        src: AtomicRef[Node | None] = AtomicRef(heap.alloc(Node, 0))

        def reader() -> None:
            with hpref.borrow(src) as node:
                if node is not None:
                    node.value.load()

        def writer() -> None:
            old = src.exchange(None)
            assert old is not None
            hpref.put(old)

        threads = [spawn(reader) for _ in range(readers)] + [spawn(writer)]
        for t in threads:
            t.join()
        assert not heap.leaks(), "leak"

    return body


def publish_without_reload(hazard: AtomicRef[object], src: AtomicRef[Node | None]) -> Node | None:
    obj = src.load()
    if obj is not None:
        hazard.store(obj)
    return obj


def publish_after_reload(hazard: AtomicRef[object], src: AtomicRef[Node | None]) -> Node | None:
    obj = src.load()
    while obj is not None:
        again = src.load()
        hazard.store(obj)
        if again is obj:
            return obj
        obj = again
    return None


class PlainIncHpref(Hpref[Node]):
    """Mutation: refcount_inc instead of refcount_inc_not_zero."""

    def get(self, src: AtomicRef[Node | None]) -> Node | None:
        with self.domain.protect(src) as obj:
            if obj is not None:
                obj.refcount.inc()
            return obj


class FreeBeforeSynchronizeHpref(Hpref[Node]):
    """Mutation: the last put frees, then waits for readers."""

    def put(self, obj: Node) -> bool:
        if obj.refcount.dec_and_test():
            self.release(obj)
            self.domain.synchronize(obj)
            return True
        return False


def counters_model(checkpoints: int = 50, threads: int = 3, cells: int = 4) -> Callable[[], None]:
    """``threads`` threads each making about ``checkpoints`` accesses to ``cells`` counters.

    The benchmark's stand-in for "a 3-thread model of ~50 checkpoints per thread": every
    access is a checkpoint, and threads share cells, so most steps conflict with something.
    """

    def body() -> None:
        shared = [AtomicInt(0) for _ in range(cells)]

        def work(i: int) -> None:
            for k in range(checkpoints // 2):
                shared[(i + k) % cells].fetch_add(1)
                shared[k % cells].load()

        spawned = [spawn(work, i) for i in range(threads)]
        for t in spawned:
            t.join()
        total = sum(c.load() for c in shared)
        assert total == threads * (checkpoints // 2)

    return body

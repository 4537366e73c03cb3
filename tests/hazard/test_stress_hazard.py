"""Real threads racing protect/retire/synchronize and hpref get/put against unpublish.

Each correct algorithm runs under preemption noise (a scheduler that yields the GIL at random
checkpoints, plus a tiny switch interval) and must show no violation; each broken variant, the
negative control, runs the same way and must be caught, with its exact error type, within the
time budget. The explorer (hazard.testing) makes these deterministic; these tests show the
checks hold on real threads.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from hazard import (
    AtomicInt,
    AtomicRef,
    HazardDomain,
    Hpref,
    RefcountViolation,
    _checkpoint,
    _hazptr,
)
from hazard._checkpoint import Access
from hazard._heap import Heap, UseAfterFree
from tests import models
from tests.models import Node
from tests.stubs import NullScheduler

pytestmark = pytest.mark.stress

BUDGET = 4.0  # seconds a broken variant gets to show itself; correct runs take CLEAN_RUN
CLEAN_RUN = 1.0


class Jitter(NullScheduler):
    """Yields the GIL at a random third of checkpoints: real threads, more interleavings."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.local = threading.local()

    def _rng(self) -> random.Random:
        rng: random.Random | None = getattr(self.local, "rng", None)
        if rng is None:
            rng = self.local.rng = random.Random(f"{self.seed}-{threading.get_ident()}")
        return rng

    def checkpoint(self, obj: object, access: Access, op: str) -> None:
        if self._rng().random() < 0.3:
            time.sleep(0)

    def pause(self, timeout: float | None = None) -> bool:
        time.sleep(0)
        return True


@contextmanager
def preemption_noise(seed: int = 1) -> Iterator[None]:
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    jitter = Jitter(seed)
    _checkpoint.install(jitter)
    try:
        yield
    finally:
        _checkpoint.uninstall(jitter)
        sys.setswitchinterval(old)


def race(
    reader: Callable[[], None], writer: Callable[[], None], seconds: float, readers: int = 3
) -> list[BaseException]:
    """Run readers and one writer until the first error or ``seconds``; return the errors."""
    stop = AtomicInt(0)
    errors: list[BaseException] = []
    errors_lock = threading.Lock()

    def loop(step: Callable[[], None]) -> None:
        while not stop.load():
            try:
                step()
            except Exception as exc:
                with errors_lock:
                    errors.append(exc)
                stop.store(1)

    threads = [threading.Thread(target=loop, args=(reader,)) for _ in range(readers)]
    threads.append(threading.Thread(target=loop, args=(writer,)))
    with preemption_noise():
        for t in threads:
            t.start()
        deadline = time.monotonic() + seconds
        while not stop.load() and time.monotonic() < deadline:
            time.sleep(0.01)
        stop.store(1)
        for t in threads:
            t.join()
    return errors


# -- protect + synchronize / retire -----------------------------------------------------------


def protect_race(reclaim_with: str, seconds: float) -> tuple[list[BaseException], Heap]:
    heap = Heap()
    domain = HazardDomain(scan_threshold=4)
    src: AtomicRef[Node | None] = AtomicRef(heap.alloc(Node, 0))
    counter = AtomicInt(0)

    def reader() -> None:
        with domain.protect(src) as node:
            if node is not None:
                counter.load()  # some other shared access inside the read section
                assert node.value.load() >= 0

    def writer() -> None:
        old = src.exchange(heap.alloc(Node, counter.fetch_add(1)))
        assert old is not None
        if reclaim_with == "synchronize":
            domain.synchronize(old)
            heap.free(old)
        else:
            domain.retire(old, heap.free)

    return race(reader, writer, seconds), heap


@pytest.mark.parametrize("reclaim_with", ["synchronize", "retire"])
def test_protect_never_sees_freed_memory(reclaim_with):
    errors, heap = protect_race(reclaim_with, CLEAN_RUN)
    assert errors == []
    assert heap.errors == ()


@pytest.mark.parametrize("broken", [models.publish_without_reload, models.publish_after_reload])
@pytest.mark.parametrize("reclaim_with", ["synchronize", "retire"])
def test_broken_protect_is_caught_as_use_after_free(monkeypatch, broken, reclaim_with):
    monkeypatch.setattr(_hazptr, "publish", broken)
    errors, _ = protect_race(reclaim_with, BUDGET)
    assert errors, "the stress test missed a broken protect"
    assert type(errors[0]) is UseAfterFree


def test_synchronize_before_unpublish_is_caught_as_use_after_free():
    heap = Heap()
    domain = HazardDomain()
    src: AtomicRef[Node | None] = AtomicRef(heap.alloc(Node, 0))
    counter = AtomicInt(0)

    def reader() -> None:
        with domain.protect(src) as node:
            if node is not None:
                counter.load()  # some other shared access inside the read section
                assert node.value.load() >= 0

    def writer() -> None:
        old = src.load()
        assert old is not None
        domain.synchronize(old)  # wrong order: a reader can still protect it after this
        src.store(heap.alloc(Node, 1))
        heap.free(old)

    errors = race(reader, writer, BUDGET)
    assert errors, "the stress test missed synchronize-before-unpublish"
    assert type(errors[0]) is UseAfterFree


# -- hpref get / put ---------------------------------------------------------------------------


def hpref_race(cls: type[Hpref[Node]], seconds: float) -> tuple[list[BaseException], Heap]:
    heap = Heap()
    hpref = cls(HazardDomain(), heap.free)
    src: AtomicRef[Node | None] = AtomicRef(heap.alloc(Node, 0))
    counter = AtomicInt(0)

    def reader() -> None:
        with hpref.borrow(src) as node:
            if node is not None:
                counter.load()  # some other shared access while holding the reference
                assert node.value.load() >= 0

    def writer() -> None:
        old = src.exchange(heap.alloc(Node, counter.fetch_add(1)))
        assert old is not None
        hpref.put(old)  # the publisher's reference

    errors = race(reader, writer, seconds)
    last = src.exchange(None)
    if last is not None and not errors:
        hpref.put(last)
    return errors, heap


def test_hpref_get_put_never_sees_freed_memory_and_leaks_nothing():
    errors, heap = hpref_race(Hpref, CLEAN_RUN)
    assert errors == []
    assert heap.errors == ()
    assert heap.leaks() == []


def test_hpref_plain_inc_is_caught_as_a_refcount_violation():
    errors, _ = hpref_race(models.PlainIncHpref, BUDGET)
    assert errors, "the stress test missed inc instead of inc_not_zero"
    assert type(errors[0]) is RefcountViolation


def test_hpref_free_before_synchronize_is_caught_as_use_after_free():
    errors, _ = hpref_race(models.FreeBeforeSynchronizeHpref, BUDGET)
    assert errors, "the stress test missed free before synchronize"
    assert type(errors[0]) is UseAfterFree

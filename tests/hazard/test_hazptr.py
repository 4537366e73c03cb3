import threading
import time

import pytest

from hazard import AtomicRef, HazardDomain, HazardUsageError, _checkpoint
from hazard._checkpoint import Access
from tests.stubs import NullScheduler


def opt(obj: "Obj | None") -> "AtomicRef[Obj | None]":
    return AtomicRef(obj)


class Obj:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Obj({self.name})"


def test_protect_yields_the_object_and_clears_the_slot_on_exit():
    domain = HazardDomain()
    obj = Obj("a")
    src = opt(obj)
    with domain.protect(src) as got:
        assert got is obj
        assert domain.statistics().protected == 1
    assert domain.statistics().protected == 0


def test_protect_yields_none_when_the_pointer_is_none():
    domain = HazardDomain()
    src: AtomicRef[Obj | None] = AtomicRef(None)
    with domain.protect(src) as got:
        assert got is None
        assert domain.statistics().protected == 0


class SwapOnReload(NullScheduler):
    """Changes ``src`` right after the reader published, before its reload."""

    def __init__(self, src: AtomicRef[Obj | None], replacement: Obj | None) -> None:
        self.src = src
        self.replacement = replacement
        self.stores = 0

    def checkpoint(self, obj: object, access: Access, op: str) -> None:
        if op == "store" and obj is not self.src:
            self.stores += 1
            if self.stores == 1:
                self.src._cell.set(self.replacement)

    def pause(self, timeout: float | None = None) -> bool:
        raise AssertionError("nothing here should wait")


@pytest.mark.parametrize("replacement", [Obj("b"), None], ids=["changed", "unpublished"])
def test_protect_retries_when_the_pointer_changes_before_the_reload(replacement):
    domain = HazardDomain()
    src: AtomicRef[Obj | None] = opt(Obj("a"))
    sched = SwapOnReload(src, replacement)
    _checkpoint.install(sched)
    try:
        with domain.protect(src) as got:
            assert got is replacement
    finally:
        _checkpoint.uninstall(sched)


def test_nested_protects_use_distinct_slots_grown_on_demand():
    domain = HazardDomain()
    a, b = opt(Obj("a")), opt(Obj("b"))
    with domain.protect(a) as x, domain.protect(b) as y:
        assert x is not y
        stats = domain.statistics()
        assert (stats.slots, stats.protected) == (2, 2)
    with domain.protect(a):
        assert domain.statistics().slots == 2  # reused, not grown


def test_protect_of_a_non_atomic_ref_is_a_type_error():
    with pytest.raises(TypeError, match="protect\\(\\) needs an AtomicRef, not list"):
        HazardDomain().protect([1])  # type: ignore[arg-type]


def test_release_of_a_slot_not_held_fails_loudly():
    domain = HazardDomain()
    slot = domain.protect(opt(Obj("a")))
    with pytest.raises(HazardUsageError, match="release of a hazard slot this thread"):
        slot.release()
    with slot:
        pass
    with pytest.raises(HazardUsageError, match="release of a hazard slot this thread"):
        slot.release()
    with pytest.raises(HazardUsageError, match="entered once"), slot:
        pass


def test_synchronize_waits_for_a_reader_then_returns():
    domain = HazardDomain()
    obj = Obj("a")
    src: AtomicRef[Obj | None] = opt(obj)
    inside, leave = threading.Event(), threading.Event()
    order: list[str] = []

    def reader() -> None:
        with domain.protect(src):
            inside.set()
            leave.wait()
            order.append("reader left")

    t = threading.Thread(target=reader)
    t.start()
    inside.wait()
    src.store(None)
    threading.Timer(0.05, leave.set).start()
    domain.synchronize(obj)
    order.append("synchronized")
    t.join()
    assert order == ["reader left", "synchronized"]


def test_synchronize_does_not_wait_for_readers_of_other_objects():
    domain = HazardDomain()
    other = opt(Obj("other"))
    with domain.protect(other):
        start = time.monotonic()
        domain.synchronize(Obj("a"))
        assert time.monotonic() - start < 1.0


def test_synchronize_usage_errors():
    domain = HazardDomain()
    with pytest.raises(HazardUsageError, match="synchronize\\(None\\)"):
        domain.synchronize(None)
    obj = Obj("a")
    with domain.protect(opt(obj)), pytest.raises(HazardUsageError, match="wait forever"):
        domain.synchronize(obj)


def test_retire_reclaims_at_the_threshold_and_cleanup_forces_a_scan():
    domain = HazardDomain(scan_threshold=3)
    reclaimed: list[Obj] = []
    with domain.protect(opt(Obj("warm-up"))):
        pass  # one slot in the domain: a scan runs when 1 + 3 objects are pending
    objs = [Obj(str(i)) for i in range(5)]
    for obj in objs[:3]:
        domain.retire(obj, reclaimed.append)
    assert reclaimed == []
    domain.retire(objs[3], reclaimed.append)
    assert reclaimed == objs[:4]
    domain.retire(objs[4], reclaimed.append)
    assert domain.statistics().retired == 1
    domain.cleanup()
    assert reclaimed == objs
    stats = domain.statistics()
    assert (stats.retired, stats.reclaimed, stats.scans) == (0, 5, 2)


def test_retired_object_is_not_reclaimed_while_protected():
    domain = HazardDomain(scan_threshold=1)
    obj = Obj("a")
    src: AtomicRef[Obj | None] = opt(obj)
    reclaimed: list[Obj] = []
    with domain.protect(src):
        src.store(None)
        domain.retire(obj, reclaimed.append)
        domain.cleanup()
        assert reclaimed == []
    domain.cleanup()
    assert reclaimed == [obj]


def test_retire_usage_errors():
    domain = HazardDomain()
    obj = Obj("a")
    with pytest.raises(HazardUsageError, match="retire\\(None\\)"):
        domain.retire(None, print)
    with pytest.raises(TypeError, match="reclaim must be callable, not int"):
        domain.retire(obj, 3)  # type: ignore[arg-type]
    domain.retire(obj, lambda o: None)
    with pytest.raises(HazardUsageError, match="already retired and not yet reclaimed"):
        domain.retire(obj, lambda o: None)
    with pytest.raises(ValueError, match="scan_threshold must be an int >= 1, not 0"):
        HazardDomain(scan_threshold=0)


def test_every_reclaim_runs_even_when_one_fails():
    domain = HazardDomain(scan_threshold=100)
    ran: list[str] = []

    def bad(obj: Obj) -> None:
        ran.append(obj.name)
        raise KeyError(obj.name)

    domain.retire(Obj("a"), bad)
    domain.retire(Obj("b"), lambda o: ran.append(o.name))
    with pytest.raises(KeyError):
        domain.cleanup()
    assert ran == ["a", "b"]
    domain.retire(Obj("c"), bad)
    domain.retire(Obj("d"), bad)
    with pytest.raises(ExceptionGroup):
        domain.cleanup()


def test_unreclaimed_count_stays_under_the_bound_while_a_reader_stalls():
    domain = HazardDomain(scan_threshold=8)
    stalled = Obj("stalled")
    src: AtomicRef[Obj | None] = AtomicRef(stalled)
    inside, leave = threading.Event(), threading.Event()
    reclaimed: list[Obj] = []
    peak = 0

    def reader() -> None:
        with domain.protect(src):
            inside.set()
            leave.wait()

    t = threading.Thread(target=reader)
    t.start()
    inside.wait()
    src.store(None)
    domain.retire(stalled, reclaimed.append)

    def retirer() -> None:
        nonlocal peak
        for i in range(500):
            domain.retire(Obj(str(i)), reclaimed.append)
            stats = domain.statistics()
            assert stats.retired <= stats.bound
            peak = max(peak, stats.retired)

    workers = [threading.Thread(target=retirer) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert stalled not in reclaimed
    stats = domain.statistics()
    assert peak <= stats.bound
    assert stats.reclaimed == len(reclaimed) >= 1500 - stats.bound
    leave.set()
    t.join()
    domain.cleanup()
    assert stalled in reclaimed


def test_slots_of_an_exited_thread_are_handed_over():
    domain = HazardDomain()
    src = opt(Obj("a"))

    def user() -> None:
        with domain.protect(src), domain.protect(src):
            pass

    t = threading.Thread(target=user)
    t.start()
    t.join()
    del t
    assert domain.statistics().slots == 2
    with domain.protect(src), domain.protect(src):
        assert domain.statistics().slots == 2  # taken over, not grown

import threading

import pytest

from hazard import AtomicInt, AtomicRef, _checkpoint
from hazard._checkpoint import Access
from tests.stubs import NullScheduler


class RecordingScheduler(NullScheduler):
    def __init__(self) -> None:
        self.calls: list[tuple[object, Access, str]] = []
        self.pauses = 0

    def checkpoint(self, obj: object, access: Access, op: str) -> None:
        self.calls.append((obj, access, op))

    def pause(self, timeout: float | None = None) -> bool:
        self.pauses += 1
        return True


@pytest.fixture
def recorder():
    sched = RecordingScheduler()
    _checkpoint.install(sched)
    try:
        yield sched
    finally:
        _checkpoint.uninstall(sched)


def test_atomic_ref_load_store_exchange():
    a = object()
    b = object()
    ref = AtomicRef(a)
    assert ref.load() is a
    ref.store(b)
    assert ref.load() is b
    assert ref.exchange(None) is b
    assert ref.load() is None


def test_atomic_ref_compare_exchange_compares_identity_not_equality():
    x = [1]
    ref: AtomicRef[list[int] | None] = AtomicRef(x)
    assert not ref.compare_exchange([1], [2])  # equal but not the same object
    assert ref.load() is x
    assert ref.compare_exchange(x, None)
    assert ref.load() is None


def test_atomic_int_operations():
    n = AtomicInt(5)
    assert n.fetch_add(3) == 5
    assert n.load() == 8
    assert n.fetch_add(-10) == 8
    assert n.load() == -2
    assert n.compare_exchange(-2, 7)
    assert not n.compare_exchange(-2, 9)
    assert n.exchange(1) == 7
    n.store(4)
    assert n.load() == 4


def test_atomic_int_rejects_bad_values_with_exact_messages():
    with pytest.raises(TypeError, match="AtomicInt value must be an int, not str"):
        AtomicInt("1")  # type: ignore[arg-type]
    with pytest.raises(OverflowError, match="outside the signed 64-bit range"):
        AtomicInt(2**63)


def test_atomic_int_overflow_leaves_value_unchanged():
    n = AtomicInt(2**63 - 1)
    with pytest.raises(OverflowError):
        n.fetch_add(1)
    assert n.load() == 2**63 - 1


def test_fetch_add_is_atomic_across_threads():
    n = AtomicInt(0)
    per_thread = 20_000

    def work() -> None:
        for _ in range(per_thread):
            n.fetch_add(1)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert n.load() == 4 * per_thread


def test_every_operation_is_a_checkpoint_with_its_access_kind(recorder):
    ref: AtomicRef[object] = AtomicRef(None)
    n = AtomicInt(0)
    ref.load()
    ref.store(1)
    ref.exchange(2)
    ref.compare_exchange(2, 3)
    n.load()
    n.store(1)
    n.exchange(2)
    n.compare_exchange(2, 3)
    n.fetch_add(1)
    assert [(c[0], c[1], c[2]) for c in recorder.calls] == [
        (ref, Access.READ, "load"),
        (ref, Access.WRITE, "store"),
        (ref, Access.RMW, "exchange"),
        (ref, Access.READ, "compare_exchange"),
        (n, Access.READ, "load"),
        (n, Access.WRITE, "store"),
        (n, Access.RMW, "exchange"),
        (n, Access.READ, "compare_exchange"),
        (n, Access.RMW, "fetch_add"),
    ]


def test_peek_is_not_a_checkpoint(recorder):
    ref = AtomicRef(1)
    n = AtomicInt(2)
    assert ref.peek() == 1
    assert n.peek() == 2
    assert repr(ref) == "<AtomicRef 1>"
    assert repr(n) == "<AtomicInt 2>"
    assert recorder.calls == []


def test_schedulers_do_not_nest(recorder):
    with pytest.raises(RuntimeError, match="already installed"):
        _checkpoint.install(RecordingScheduler())
    with pytest.raises(RuntimeError, match="not installed"):
        _checkpoint.uninstall(RecordingScheduler())


def test_pause_goes_to_the_scheduler(recorder):
    _checkpoint.pause(3)
    assert recorder.pauses == 1


def test_pause_without_scheduler_returns():
    _checkpoint.pause(0)
    _checkpoint.pause(100)

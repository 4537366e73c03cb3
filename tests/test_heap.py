import threading

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from hazard._heap import (
    Buffer,
    DoubleFree,
    Heap,
    HeapLeak,
    HeapObject,
    InvalidFree,
    UseAfterFree,
)


class Usblp(HeapObject):
    __slots__ = ("minor", "present")

    def __init__(self, minor: int = 0) -> None:
        self.present = 1
        self.minor = minor


class WithDict(HeapObject):
    def __init__(self) -> None:
        self.x = 1


def probe(heap: Heap) -> Usblp:
    return heap.alloc(Usblp, 3)


def disconnect(heap: Heap, obj: HeapObject) -> None:
    heap.free(obj)


def test_read_after_free_reports_three_stacks_like_kasan():
    heap = Heap()
    dev = probe(heap)
    disconnect(heap, dev)
    with pytest.raises(UseAfterFree) as info:
        _ = dev.present
    err = info.value
    assert (err.attribute, err.write) == ("present", False)
    assert "test_read_after_free" in err.access_stack.functions()[-1]
    assert err.alloc_stack.functions()[-1] == "probe"
    assert err.free_stack.functions()[-1] == "disconnect"
    text = str(err)
    assert text.startswith("BUG: KASAN: slab-use-after-free in test_read_after_free")
    assert "Read of attribute 'present' of Usblp object at 0x" in text
    assert "Allocated by thread MainThread:" in text
    assert "Freed by thread MainThread:" in text


def test_write_and_delete_after_free_are_reported_as_writes():
    heap = Heap()
    dev = probe(heap)
    heap.free(dev)
    with pytest.raises(UseAfterFree) as info:
        dev.present = 0
    assert info.value.write
    with pytest.raises(UseAfterFree):
        del dev.minor
    assert "Write of attribute 'present'" in str(info.value)


def test_freed_object_keeps_repr_and_isinstance():
    heap = Heap()
    dev = probe(heap)
    heap.free(dev)
    assert repr(dev).startswith("<freed Usblp object at 0x")
    assert isinstance(dev, Usblp)


def test_live_objects_use_plain_attribute_access():
    heap = Heap()
    dev = probe(heap)
    assert type(dev).__getattribute__ is object.__getattribute__
    assert type(dev) is Usblp


def test_double_free_reports_both_free_stacks():
    heap = Heap()
    dev = probe(heap)
    disconnect(heap, dev)
    with pytest.raises(DoubleFree) as info:
        heap.free(dev)
    err = info.value
    assert err.first_free_stack.functions()[-1] == "disconnect"
    assert "test_double_free" in err.second_free_stack.functions()[-1]
    assert str(err).startswith("BUG: KASAN: double-free in test_double_free")


def test_free_of_foreign_or_non_heap_objects_is_invalid():
    heap, other = Heap(), Heap()
    with pytest.raises(InvalidFree, match="which this heap did not allocate"):
        heap.free(other.alloc(Usblp))
    with pytest.raises(InvalidFree, match="which is not a HeapObject"):
        heap.free(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidFree, match="which this heap did not allocate"):
        heap.free(Usblp())
    with pytest.raises(TypeError, match="needs a HeapObject subclass"):
        heap.alloc(int)  # type: ignore[type-var]


def test_errors_are_recorded_even_when_caught():
    heap = Heap()
    dev = probe(heap)
    heap.free(dev)
    try:
        _ = dev.minor
    except UseAfterFree:
        pass
    assert [type(e) for e in heap.errors] == [UseAfterFree]
    with pytest.raises(UseAfterFree):
        heap.check()


def test_leaks_lists_live_objects_with_allocation_stacks():
    heap = Heap()
    kept = probe(heap)
    buf = heap.alloc_buffer(1024, "readbuf")
    heap.free(probe(heap))
    leaks = heap.leaks()
    assert [leak.size for leak in leaks][1] == 1024
    assert leaks[0].alloc_stack.functions()[-1] == "probe"
    assert str(leaks[0]).startswith("unreferenced object Usblp object at 0x")
    with pytest.raises(HeapLeak):
        heap.assert_clean()
    heap.free(kept)
    heap.free(buf)
    heap.assert_clean()
    stats = heap.statistics()
    assert (stats.allocated, stats.freed, stats.live, stats.errors) == (3, 3, 0, 0)


def test_dict_classes_and_buffers_are_poisoned_too():
    heap = Heap()
    obj = heap.alloc(WithDict)
    buf = heap.alloc_buffer(8)
    assert isinstance(buf, Buffer) and bytes(buf.data) == bytes(8)
    heap.free(obj)
    heap.free(buf)
    with pytest.raises(UseAfterFree):
        _ = obj.x
    with pytest.raises(UseAfterFree):
        buf.data[0] = 1
    with pytest.raises(ValueError, match="buffer size must be an int >= 0, not -1"):
        heap.alloc_buffer(-1)


def test_racing_double_free_is_reported_exactly_once():
    heap = Heap()
    for _ in range(200):
        dev = heap.alloc(Usblp)
        outcomes: list[str] = []
        barrier = threading.Barrier(2)

        def free_it(dev: Usblp = dev, outcomes: list[str] = outcomes) -> None:
            barrier.wait()
            try:
                heap.free(dev)
                outcomes.append("freed")
            except DoubleFree:
                outcomes.append("double")

        threads = [threading.Thread(target=free_it) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) == ["double", "freed"]
    assert len(heap.errors) == 200


class HeapModel(RuleBasedStateMachine):
    live = Bundle("live")
    freed = Bundle("freed")

    def __init__(self) -> None:
        super().__init__()
        self.heap = Heap()
        self.model_live: set[int] = set()
        self.allocated = 0
        self.errors = 0

    @rule(target=live, minor=st.integers(0, 15))
    def alloc(self, minor: int) -> Usblp:
        dev = self.heap.alloc(Usblp, minor)
        self.model_live.add(id(dev))
        self.allocated += 1
        assert dev.minor == minor
        return dev

    @rule(target=freed, dev=live)
    def free(self, dev: Usblp) -> Usblp:
        if id(dev) in self.model_live:
            self.heap.free(dev)
            self.model_live.discard(id(dev))
        else:
            with pytest.raises(DoubleFree):
                self.heap.free(dev)
            self.errors += 1
        return dev

    @rule(dev=freed)
    def access_freed(self, dev: Usblp) -> None:
        with pytest.raises(UseAfterFree):
            _ = dev.present
        self.errors += 1

    @rule(dev=freed)
    def free_again(self, dev: Usblp) -> None:
        with pytest.raises(DoubleFree):
            self.heap.free(dev)
        self.errors += 1

    @rule(dev=live)
    def access_live(self, dev: Usblp) -> None:
        if id(dev) in self.model_live:
            assert dev.present == 1

    @invariant()
    def agrees(self) -> None:
        stats = self.heap.statistics()
        assert stats.live == len(self.model_live)
        assert stats.allocated == self.allocated
        assert stats.errors == self.errors
        assert len(self.heap.leaks()) == len(self.model_live)


TestHeapModel = HeapModel.TestCase


class Counted(HeapObject):
    __slots__ = ("refcount",)
    __embedded__ = ("refcount",)

    def __init__(self) -> None:
        from hazard import Refcount

        self.refcount = Refcount(1)


def test_embedded_refcount_is_poisoned_with_its_struct():
    heap = Heap()
    obj = heap.alloc(Counted)
    count = obj.refcount
    heap.free(obj)
    with pytest.raises(UseAfterFree) as info:
        count.read()
    assert "refcount of Counted object at 0x" in str(info.value)

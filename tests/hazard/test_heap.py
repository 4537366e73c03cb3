import gc
import threading
import weakref
from dataclasses import dataclass

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from hazard import AtomicInt, HazardError, Refcount
from hazard._heap import (
    MAX_RECORDED_ERRORS,
    Buffer,
    DoubleFree,
    Heap,
    HeapError,
    HeapLeak,
    HeapObject,
    HeapStatistics,
    InvalidFree,
    OutOfBounds,
    Stack,
    UseAfterFree,
)


class Usblp(HeapObject):
    __slots__ = ("minor", "present")

    def __init__(self, minor: int = 0) -> None:
        self.present = True
        self.minor = minor

    def is_present(self) -> bool:
        return self.present


class DictDevice(HeapObject):
    def __init__(self, name: str = "usblp0") -> None:
        self.name = name
        self.present = True


class Counted(HeapObject):
    __slots__ = ("refcount", "users")
    __embedded__ = ("refcount", "users")

    def __init__(self) -> None:
        self.refcount = Refcount(1, name="counted")
        self.users = AtomicInt(0)


def probe(heap: Heap) -> Usblp:
    return heap.alloc(Usblp, 3)


def disconnect(heap: Heap, obj: object) -> None:
    heap.free(obj)


def innermost(stack: Stack) -> str:
    return stack.frames[0][2]


def stats(allocated: int, freed: int, errors: int) -> HeapStatistics:
    return HeapStatistics(allocated=allocated, freed=freed, live=allocated - freed, errors=errors)


# Use after free ----------------------------------------------------------------------------


def test_read_after_free_raises_use_after_free_with_three_stacks():
    heap = Heap("usb")
    dev = probe(heap)
    disconnect(heap, dev)
    with pytest.raises(UseAfterFree) as info:
        _ = dev.present
    err = info.value
    assert (err.attribute, err.is_write) == ("present", False)
    assert err.description == f"Usblp object at {id(dev):#x}"
    assert (
        innermost(err.access_stack)
        == "test_read_after_free_raises_use_after_free_with_three_stacks"
    )
    assert innermost(err.alloc_stack) == "probe"
    assert innermost(err.free_stack) == "disconnect"
    assert err.access_stack.thread == err.alloc_stack.thread == "MainThread"
    text = str(err)
    assert text.startswith(
        "BUG: KASAN: slab-use-after-free in "
        "test_read_after_free_raises_use_after_free_with_three_stacks (" + __file__ + ":"
    )
    assert (
        f"Read of attribute 'present' of Usblp object at {id(dev):#x} by thread MainThread:\n"
        in text
    )
    assert "\n\nAllocated by thread MainThread:\n probe " + __file__ + ":" in text
    assert "\n\nFreed by thread MainThread:\n disconnect " + __file__ + ":" in text


def test_write_after_free_raises_use_after_free_and_writes_nothing():
    heap = Heap()
    dev = probe(heap)
    heap.free(dev)
    with pytest.raises(UseAfterFree) as info:
        dev.minor = 7
    assert (info.value.attribute, info.value.is_write) == ("minor", True)
    assert "Write of attribute 'minor' of Usblp object" in str(info.value)
    assert object.__getattribute__(dev, "minor") == 3


def test_delete_after_free_is_a_write():
    heap = Heap()
    dev = probe(heap)
    heap.free(dev)
    with pytest.raises(UseAfterFree) as info:
        del dev.minor
    assert (info.value.attribute, info.value.is_write) == ("minor", True)


def test_method_call_on_freed_object_is_a_read_of_the_method():
    heap = Heap()
    dev = probe(heap)
    heap.free(dev)
    with pytest.raises(UseAfterFree) as info:
        dev.is_present()
    assert info.value.attribute == "is_present"


def test_hasattr_and_getattr_default_do_not_swallow_use_after_free():
    heap = Heap()
    dev = probe(heap)
    heap.free(dev)
    with pytest.raises(UseAfterFree):
        hasattr(dev, "present")
    with pytest.raises(UseAfterFree):
        getattr(dev, "missing", None)


@pytest.mark.parametrize("cls", [Usblp, DictDevice], ids=["slots", "dict"])
def test_slots_and_dict_classes_are_both_poisoned(cls: type[HeapObject]):
    heap = Heap()
    obj = heap.alloc(cls)
    heap.free(obj)
    with pytest.raises(UseAfterFree):
        _ = obj.present  # type: ignore[attr-defined]
    with pytest.raises(UseAfterFree):
        obj.present = False  # type: ignore[attr-defined]
    with pytest.raises(UseAfterFree) as info:
        vars(obj)
    assert info.value.attribute == "__dict__"
    assert heap.statistics() == stats(1, 1, 3)


def test_repr_and_str_of_freed_object_do_not_raise():
    heap = Heap()
    dev = probe(heap)
    heap.free(dev)
    assert repr(dev) == f"<freed Usblp object at {id(dev):#x}>"
    assert str(dev) == repr(dev)
    assert f"{dev!r}" == repr(dev)
    assert heap.errors == ()


def test_isinstance_holds_after_free_and_unrelated_isinstance_does_not_raise():
    heap = Heap()
    dev = probe(heap)
    heap.free(dev)
    assert isinstance(dev, Usblp)
    assert isinstance(dev, HeapObject)
    assert not isinstance(dev, DictDevice)  # reads __class__, which stays readable
    assert type(dev).__name__ == "FreedUsblp"
    assert heap.errors == ()


def test_live_object_attribute_access_is_not_hooked():
    heap = Heap()
    for obj in (probe(heap), heap.alloc(DictDevice), heap.alloc_buffer(4)):
        assert type(obj).__getattribute__ is object.__getattribute__
        assert type(obj).__setattr__ is object.__setattr__
        assert type(obj).__delattr__ is object.__delattr__


def test_poisoned_class_is_created_once_per_class():
    heap = Heap()
    first, second, other = probe(heap), probe(heap), heap.alloc(DictDevice)
    for obj in (first, second, other):
        heap.free(obj)
    assert type(first) is type(second)
    assert len({type(first), type(other)}) == 2
    assert type(first).__bases__ == (Usblp,)


def test_freed_object_is_not_kept_alive_by_the_heap():
    heap = Heap()
    dev = probe(heap)
    ref = weakref.ref(dev)
    heap.free(dev)
    del dev
    gc.collect()
    assert ref() is None


class WithDestructor(HeapObject):
    __slots__ = ("log",)

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def __del__(self) -> None:
        self.log.append("destroyed")


def test_destructor_of_freed_object_does_not_run():
    heap = Heap()
    log: list[str] = []
    obj = heap.alloc(WithDestructor, log)
    heap.free(obj)
    del obj
    gc.collect()
    assert log == []
    assert heap.errors == ()


@dataclass(frozen=True)
class FrozenPoint(HeapObject):
    x: int
    y: int


def test_frozen_dataclass_is_allocated_and_poisoned():
    heap = Heap()
    point = heap.alloc(FrozenPoint, 1, 2)
    assert (point.x, point.y) == (1, 2)
    heap.free(point)
    with pytest.raises(UseAfterFree):
        _ = point.x
    assert repr(point) == f"<freed FrozenPoint object at {id(point):#x}>"


# Embedded fields ---------------------------------------------------------------------------


def test_embedded_fields_are_poisoned_with_their_struct():
    heap = Heap()
    obj = heap.alloc(Counted)
    refcount, users = obj.refcount, obj.users
    heap.free(obj)
    with pytest.raises(UseAfterFree) as info:
        refcount.inc()
    assert info.value.description == f"refcount of Counted object at {id(obj):#x}"
    assert innermost(info.value.free_stack) == "test_embedded_fields_are_poisoned_with_their_struct"
    with pytest.raises(UseAfterFree) as info:
        users.load()
    assert info.value.description == f"users of Counted object at {id(obj):#x}"
    assert heap.is_freed(refcount)
    assert heap.statistics() == stats(1, 1, 2)


def test_fields_embedded_in_embedded_fields_are_poisoned_too():
    heap = Heap()
    obj = heap.alloc(Counted)
    cell = obj.refcount._refs
    heap.free(obj)
    with pytest.raises(UseAfterFree) as info:
        cell.load()
    assert info.value.description == f"_refs of refcount of Counted object at {id(obj):#x}"


def test_double_free_leaves_embedded_fields_as_the_first_free_left_them():
    heap = Heap()
    obj = heap.alloc(Counted)
    refcount = obj.refcount
    disconnect(heap, obj)
    with pytest.raises(DoubleFree):
        heap.free(obj)
    with pytest.raises(UseAfterFree) as info:
        refcount.read()
    assert innermost(info.value.free_stack) == "disconnect"


# Double free and invalid free --------------------------------------------------------------


def test_double_free_raises_double_free_with_both_free_stacks():
    heap = Heap()
    dev = probe(heap)
    disconnect(heap, dev)
    with pytest.raises(DoubleFree) as info:
        heap.free(dev)
    err = info.value
    assert innermost(err.first_free_stack) == "disconnect"
    assert innermost(err.second_free_stack) == (
        "test_double_free_raises_double_free_with_both_free_stacks"
    )
    assert innermost(err.alloc_stack) == "probe"
    text = str(err)
    assert text.startswith(
        "BUG: KASAN: double-free in test_double_free_raises_double_free_with_both_free_stacks ("
    )
    assert f"Free of Usblp object at {id(dev):#x} by thread MainThread:\n" in text
    assert "\n\nFreed by thread MainThread:\n disconnect " in text
    assert heap.statistics() == stats(1, 1, 1)


def test_free_of_object_from_another_heap_is_invalid_free():
    heap, other = Heap("usb"), Heap("other")
    dev = probe(other)
    with pytest.raises(InvalidFree) as info:
        heap.free(dev)
    err = info.value
    assert err.reason == "allocated by heap 'other', not by heap 'usb'"
    assert err.alloc_stack is not None
    assert innermost(err.alloc_stack) == "probe"
    assert innermost(err.free_stack) == "test_free_of_object_from_another_heap_is_invalid_free"
    assert str(err).startswith("BUG: KASAN: invalid-free in test_free_of_object_from_another")
    assert other.is_live(dev)
    assert heap.errors == (err,)
    assert other.errors == ()


def test_free_of_none_is_invalid_free():
    heap = Heap()
    with pytest.raises(InvalidFree) as info:
        heap.free(None)
    assert info.value.description == "None"
    assert info.value.reason == "not a HeapObject (kfree(NULL) is a no-op; this is not)"


def test_free_of_non_heap_object_is_invalid_free():
    heap = Heap()
    thing = object()
    with pytest.raises(InvalidFree) as info:
        heap.free(thing)
    assert info.value.description == f"object object at {id(thing):#x}"
    assert info.value.reason == "not a HeapObject"
    assert info.value.alloc_stack is None


def test_free_of_heap_object_no_heap_allocated_is_invalid_free():
    heap = Heap()
    dev = Usblp()
    with pytest.raises(InvalidFree) as info:
        heap.free(dev)
    assert info.value.reason == "not allocated by any heap"
    assert heap.statistics() == stats(0, 0, 1)


# Validation --------------------------------------------------------------------------------


def test_alloc_of_non_heap_object_class_is_type_error():
    heap = Heap()
    with pytest.raises(TypeError) as info:
        heap.alloc(int)  # type: ignore[type-var]
    assert str(info.value) == "alloc() takes a subclass of HeapObject, not <class 'int'>"
    assert heap.statistics() == stats(0, 0, 0)


def test_alloc_of_poisoned_class_is_type_error():
    heap = Heap()
    dev = probe(heap)
    heap.free(dev)
    with pytest.raises(TypeError) as info:
        heap.alloc(type(dev))
    assert str(info.value) == "alloc() of FreedUsblp, the class of freed objects"


def test_alloc_registers_nothing_when_the_constructor_raises():
    heap = Heap()
    with pytest.raises(ValueError, match=r"^buffer size must be >= 0, not -1$"):
        heap.alloc_buffer(-1)
    with pytest.raises(TypeError, match=r"^buffer size must be an int, not str$"):
        heap.alloc_buffer("8")  # type: ignore[arg-type]
    assert heap.statistics() == stats(0, 0, 0)


def test_heap_name_must_be_a_str():
    with pytest.raises(TypeError, match=r"^heap name must be a str, not int$"):
        Heap(3)  # type: ignore[arg-type]


def test_heap_error_is_abstract_and_errors_subclass_the_closest_builtin():
    with pytest.raises(TypeError, match="HeapError is abstract"):
        HeapError("x")
    assert issubclass(HeapError, HazardError)
    assert issubclass(UseAfterFree, ReferenceError)
    assert not issubclass(UseAfterFree, AttributeError)
    assert issubclass(DoubleFree, RuntimeError)
    assert issubclass(InvalidFree, ValueError)
    assert issubclass(OutOfBounds, IndexError)
    assert issubclass(HeapLeak, AssertionError)


# Buffers -----------------------------------------------------------------------------------


def test_buffer_is_zero_filled_and_reads_and_writes_slices():
    heap = Heap()
    buf = heap.alloc_buffer(8, "readbuf")
    assert isinstance(buf, Buffer)
    assert (len(buf), buf.name, bytes(buf.data)) == (8, "readbuf", bytes(8))
    buf.write(2, b"abc")
    assert buf.read(1, 4) == b"\0abc"
    assert buf.read(5) == b"\0\0\0"
    assert buf.read() == b"\0\0abc\0\0\0"
    assert repr(buf) == f"<Buffer 'readbuf' of 8 bytes at {id(buf):#x}>"


@pytest.mark.parametrize(
    ("offset", "length"), [(6, 4), (-1, 2), (9, 0), (0, -1)], ids=["tail", "before", "past", "neg"]
)
def test_buffer_read_outside_bounds_is_out_of_bounds(offset: int, length: int):
    heap = Heap()
    buf = heap.alloc_buffer(8, "statusbuf")
    with pytest.raises(OutOfBounds) as info:
        buf.read(offset, length)
    err = info.value
    assert (err.offset, err.length, err.is_write) == (offset, length, False)
    assert innermost(err.access_stack) == "test_buffer_read_outside_bounds_is_out_of_bounds"
    assert str(err).startswith("BUG: KASAN: slab-out-of-bounds in test_buffer_read_outside")
    assert (
        f"Read of {length} bytes at offset {offset} of Buffer 'statusbuf' of 8 bytes at "
        f"{id(buf):#x} by thread MainThread:" in str(err)
    )
    assert heap.errors == (err,)


def test_buffer_write_outside_bounds_is_out_of_bounds_and_writes_nothing():
    heap = Heap()
    buf = heap.alloc_buffer(4)
    with pytest.raises(OutOfBounds) as info:
        buf.write(2, b"xyz")
    assert info.value.is_write
    assert info.value.alloc_stack is not None
    assert bytes(buf.data) == bytes(4)
    assert len(buf) == 4


def test_buffer_no_heap_allocated_still_checks_bounds():
    buf = Buffer(2)
    with pytest.raises(OutOfBounds) as info:
        buf.read(1, 2)
    assert info.value.alloc_stack is None


def test_buffer_is_poisoned_after_free():
    heap = Heap()
    buf = heap.alloc_buffer(8, "readbuf")
    heap.free(buf)
    with pytest.raises(UseAfterFree) as info:
        buf.data[0] = 1
    assert info.value.description == f"Buffer 'readbuf' of 8 bytes at {id(buf):#x}"
    assert info.value.attribute == "data"
    with pytest.raises(UseAfterFree):
        len(buf)
    with pytest.raises(UseAfterFree) as info:
        buf.read()
    assert innermost(info.value.access_stack) == "test_buffer_is_poisoned_after_free"
    assert repr(buf) == f"<freed Buffer 'readbuf' of 8 bytes at {id(buf):#x}>"


# Recording, leaks, statistics --------------------------------------------------------------


def test_errors_are_recorded_even_when_caught():
    heap = Heap()
    dev = probe(heap)
    heap.free(dev)
    try:
        _ = dev.minor
    except UseAfterFree:
        pass
    (err,) = heap.errors
    assert isinstance(err, UseAfterFree)
    with pytest.raises(UseAfterFree) as info:
        heap.check()
    assert info.value is err
    with pytest.raises(UseAfterFree):
        heap.assert_clean()


def test_errors_beyond_the_cap_are_counted_not_kept():
    heap = Heap()
    dev = probe(heap)
    heap.free(dev)
    for _ in range(MAX_RECORDED_ERRORS + 5):
        with pytest.raises(UseAfterFree):
            _ = dev.minor
    assert len(heap.errors) == MAX_RECORDED_ERRORS
    assert heap.statistics().errors == MAX_RECORDED_ERRORS + 5


def test_leaks_lists_live_objects_with_alloc_stack():
    heap = Heap("usb")
    kept = probe(heap)
    buf = heap.alloc_buffer(1024, "readbuf")
    heap.free(probe(heap))
    leaks = heap.leaks()
    assert [leak.obj for leak in leaks] == [kept, buf]
    assert [leak.size for leak in leaks] == [Usblp.__basicsize__, 1024]
    assert leaks[0].description == f"Usblp object at {id(kept):#x}"
    assert innermost(leaks[0].alloc_stack) == "probe"
    assert innermost(leaks[1].alloc_stack) == "test_leaks_lists_live_objects_with_alloc_stack"
    assert leaks[0].alloc_stack.thread == "MainThread"
    assert str(leaks[0]).startswith(
        f"unreferenced object {id(kept):#x} (size {Usblp.__basicsize__}):\n"
        f'  Usblp object at {id(kept):#x}, allocated by thread "MainThread"\n'
        "  backtrace:\n"
        "    probe " + __file__ + ":"
    )


def test_assert_clean_raises_heap_leak_listing_leaks():
    heap = Heap("usb")
    kept = probe(heap)
    with pytest.raises(HeapLeak) as info:
        heap.assert_clean()
    assert [leak.obj for leak in info.value.leaks] == [kept]
    assert str(info.value).startswith("1 objects leaked from heap 'usb':\n\nunreferenced object")
    heap.free(kept)
    heap.assert_clean()
    heap.check()


def test_assert_clean_reports_the_first_error_before_leaks():
    heap = Heap()
    probe(heap)
    with pytest.raises(InvalidFree):
        heap.free(None)
    with pytest.raises(InvalidFree):
        heap.assert_clean()


def test_is_live_and_is_freed_follow_the_object():
    heap, other = Heap(), Heap()
    dev = probe(heap)
    assert (heap.is_live(dev), heap.is_freed(dev)) == (True, False)
    assert (other.is_live(dev), other.is_freed(dev)) == (False, False)
    heap.free(dev)
    assert (heap.is_live(dev), heap.is_freed(dev)) == (False, True)
    assert (other.is_live(dev), other.is_freed(dev)) == (False, False)
    assert (heap.is_live(None), heap.is_freed(None)) == (False, False)


def test_statistics_and_repr_show_the_counters():
    heap = Heap("usb")
    dev = probe(heap)
    probe(heap)
    heap.free(dev)
    with pytest.raises(DoubleFree):
        heap.free(dev)
    assert heap.statistics() == HeapStatistics(allocated=2, freed=1, live=1, errors=1)
    assert repr(heap) == "<Heap 'usb' live=1 freed=1 errors=1>"


# Threads -----------------------------------------------------------------------------------


def _race_free(heap: Heap, obj: object, barrier: threading.Barrier, out: list[str], i: int):
    barrier.wait()
    try:
        heap.free(obj)
        out[i] = "freed"
    except DoubleFree:
        out[i] = "double"


def test_racing_double_free_yields_exactly_one_double_free():
    heap = Heap()
    for round_ in range(200):
        dev = probe(heap)
        barrier = threading.Barrier(2)
        outcomes = ["", ""]  # each thread writes its own slot; join() publishes them
        threads = [
            threading.Thread(target=_race_free, args=(heap, dev, barrier, outcomes, i))
            for i in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) == ["double", "freed"]
        err = heap.errors[round_]
        assert isinstance(err, DoubleFree)
        names = {t.name for t in threads}
        assert {err.first_free_stack.thread, err.second_free_stack.thread} == names
    assert heap.statistics() == stats(200, 200, 200)


def test_concurrent_alloc_and_free_keep_statistics_exact():
    heap = Heap()
    barrier = threading.Barrier(8)

    def churn() -> None:
        barrier.wait()
        for _ in range(500):
            kept = heap.alloc(Counted)
            heap.free(heap.alloc_buffer(16))
            heap.free(kept)

    threads = [threading.Thread(target=churn) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert heap.statistics() == stats(8000, 8000, 0)
    heap.assert_clean()


# Stateful model ----------------------------------------------------------------------------

KINDS = {
    "slots": lambda heap: heap.alloc(Usblp, 1),
    "dict": lambda heap: heap.alloc(DictDevice),
    "buffer": lambda heap: heap.alloc_buffer(4, "buf"),
}


def _read(obj: HeapObject) -> object:
    if isinstance(obj, Buffer):
        return obj.read(0, 1)
    if isinstance(obj, Usblp):
        return obj.minor
    assert isinstance(obj, DictDevice)
    return obj.name


def _write(obj: HeapObject) -> None:
    if isinstance(obj, Buffer):
        obj.write(0, b"x")
    elif isinstance(obj, Usblp):
        obj.minor = 2
    else:
        assert isinstance(obj, DictDevice)
        obj.name = "usblp1"


def _access(obj: HeapObject, write: bool) -> None:
    if write:
        _write(obj)
    else:
        _read(obj)


class HeapMachine(RuleBasedStateMachine):
    objects = Bundle("objects")

    def __init__(self) -> None:
        super().__init__()
        self.heap = Heap("model")
        self.freed: dict[int, bool] = {}  # id -> freed; every object stays referenced here
        self.kept: list[HeapObject] = []
        self.expected_errors: list[type[HeapError]] = []

    @rule(target=objects, kind=st.sampled_from(sorted(KINDS)))
    def alloc(self, kind: str) -> HeapObject:
        obj: HeapObject = KINDS[kind](self.heap)
        self.kept.append(obj)
        self.freed[id(obj)] = False
        return obj

    @rule(obj=objects)
    def free(self, obj: HeapObject) -> None:
        if self.freed[id(obj)]:
            with pytest.raises(DoubleFree):
                self.heap.free(obj)
            self.expected_errors.append(DoubleFree)
        else:
            self.heap.free(obj)
            self.freed[id(obj)] = True

    @rule(obj=objects, write=st.booleans())
    def access(self, obj: HeapObject, write: bool) -> None:
        if not self.freed[id(obj)]:
            _access(obj, write)
            return
        with pytest.raises(UseAfterFree) as info:
            _access(obj, write)
        if isinstance(obj, Buffer):  # the first access is the lookup of the method
            expected = ("write" if write else "read", False)
        else:
            expected = ("minor" if isinstance(obj, Usblp) else "name", write)
        assert (info.value.attribute, info.value.is_write) == expected
        self.expected_errors.append(UseAfterFree)

    @rule(obj=objects)
    def read_out_of_bounds(self, obj: HeapObject) -> None:
        if not isinstance(obj, Buffer):
            return
        expected = UseAfterFree if self.freed[id(obj)] else OutOfBounds
        with pytest.raises(expected):
            obj.read(3, 2)
        self.expected_errors.append(expected)

    @rule(foreign=st.sampled_from(["none", "object", "unallocated"]))
    def free_foreign(self, foreign: str) -> None:
        obj = {"none": None, "object": object(), "unallocated": Usblp()}[foreign]
        with pytest.raises(InvalidFree):
            self.heap.free(obj)
        self.expected_errors.append(InvalidFree)

    @invariant()
    def heap_agrees_with_model(self) -> None:
        freed = sum(self.freed.values())
        assert self.heap.statistics() == stats(len(self.freed), freed, len(self.expected_errors))
        live_ids = {key for key, is_freed in self.freed.items() if not is_freed}
        assert {id(leak.obj) for leak in self.heap.leaks()} == live_ids
        assert [type(e) for e in self.heap.errors] == self.expected_errors
        for obj in self.kept:
            assert self.heap.is_live(obj) == (id(obj) in live_ids)
            assert self.heap.is_freed(obj) == self.freed[id(obj)]


HeapMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None, database=None
)
TestHeapMachine = HeapMachine.TestCase

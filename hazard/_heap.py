"""An emulated heap that reports use-after-free, double free and leaks the way KASAN does.

Rules and invariants:
- Python cannot free an object that is still referenced, so freeing is logical: ``free``
  poisons the object in place by switching its class to a poisoned twin (a subclass with no
  new slots, so the layout is unchanged) whose attribute access raises ``UseAfterFree``. Live
  objects keep their own class: access before free costs nothing extra.
- Each object carries its own record (allocation stack, free stack) in the ``_kasan`` slot, so
  no side table keeps freed objects alive; the live table holds live objects only.
- The heap's bookkeeping (live table, error list) is instrumentation, not the model under
  test: it is guarded by a raw ``_thread`` lock that the interleaving explorer does not see,
  on purpose, so it adds no schedules. Check-and-mark of a free happens under that lock, so a
  racing double free is reported exactly once.
- Every error raised is also recorded in ``heap.errors``: a stress run reports a
  use-after-free even if the code under test swallowed the exception.
"""

from __future__ import annotations

import _thread
import sys
import threading
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from hazard._errors import HazardError

__all__ = [
    "Buffer",
    "DoubleFree",
    "Heap",
    "HeapError",
    "HeapLeak",
    "HeapObject",
    "HeapStatistics",
    "InvalidFree",
    "Leak",
    "Stack",
    "UseAfterFree",
]

_MAX_DEPTH = 32
_HERE = __file__


@dataclass(frozen=True)
class Stack:
    """A captured call stack: the thread name and (file, line, function) frames, innermost last."""

    thread: str
    frames: tuple[tuple[str, int, str], ...]

    @classmethod
    def capture(cls, skip: int = 1) -> Stack:
        """Capture the caller's stack, leaving out the heap's own frames."""
        frame = sys._getframe(skip)
        frames: list[tuple[str, int, str]] = []
        while frame is not None and len(frames) < _MAX_DEPTH:
            code = frame.f_code
            if code.co_filename != _HERE:
                frames.append((code.co_filename, frame.f_lineno, code.co_name))
            frame = frame.f_back  # type: ignore[assignment]
        frames.reverse()
        return cls(threading.current_thread().name, tuple(frames))

    @property
    def innermost(self) -> str:
        """``function+file:line`` of the innermost frame, as KASAN names the faulting site."""
        if not self.frames:
            return "?"
        filename, line, function = self.frames[-1]
        return f"{function}+{filename.rsplit('/', 1)[-1]}:{line}"

    def functions(self) -> list[str]:
        """The function names, outermost first."""
        return [f[2] for f in self.frames]

    def format(self) -> str:
        """The frames, innermost first, one per line (as kernel stack traces read)."""
        return "\n".join(
            f" {function}+{filename}:{line}" for filename, line, function in reversed(self.frames)
        )


class _Record:
    """What the heap knows about one object; lives in the object's ``_kasan`` slot."""

    __slots__ = ("alloc", "description", "free", "heap", "size")

    def __init__(self, heap: Heap, description: str, size: int, alloc: Stack) -> None:
        self.heap = heap
        self.description = description
        self.size = size
        self.alloc = alloc
        self.free: Stack | None = None


class HeapError(HazardError):
    """Root of the heap's reports; never raised directly."""


class UseAfterFree(HeapError, RuntimeError):
    """An attribute of a freed object was read or written.

    Attributes:
        attribute: the attribute accessed.
        write: True for a write (or delete), False for a read.
        description: the object, e.g. ``Usblp object at 0x7f...``.
        access_stack, alloc_stack, free_stack: the three stacks of a KASAN report.

    """

    def __init__(
        self,
        attribute: str,
        write: bool,
        description: str,
        access_stack: Stack,
        alloc_stack: Stack,
        free_stack: Stack,
    ) -> None:
        self.attribute = attribute
        self.write = write
        self.description = description
        self.access_stack = access_stack
        self.alloc_stack = alloc_stack
        self.free_stack = free_stack
        super().__init__(self._report())

    def _report(self) -> str:
        kind = "Write" if self.write else "Read"
        return (
            f"BUG: KASAN: slab-use-after-free in {self.access_stack.innermost}\n"
            f"{kind} of attribute '{self.attribute}' of {self.description} "
            f"by thread {self.access_stack.thread}:\n{self.access_stack.format()}\n\n"
            f"Allocated by thread {self.alloc_stack.thread}:\n{self.alloc_stack.format()}\n\n"
            f"Freed by thread {self.free_stack.thread}:\n{self.free_stack.format()}"
        )


class DoubleFree(HeapError, RuntimeError):
    """An object was freed twice; carries both free stacks and the allocation stack."""

    def __init__(
        self, description: str, first_free_stack: Stack, second_free_stack: Stack, alloc: Stack
    ) -> None:
        self.description = description
        self.first_free_stack = first_free_stack
        self.second_free_stack = second_free_stack
        self.alloc_stack = alloc
        super().__init__(
            f"BUG: KASAN: double-free in {second_free_stack.innermost}\n"
            f"Free of {description} by thread {second_free_stack.thread}:\n"
            f"{second_free_stack.format()}\n\n"
            f"Allocated by thread {alloc.thread}:\n{alloc.format()}\n\n"
            f"Freed by thread {first_free_stack.thread}:\n{first_free_stack.format()}"
        )


class InvalidFree(HeapError, ValueError):
    """free() of something this heap did not allocate."""


class HeapLeak(HeapError, AssertionError):
    """``assert_clean`` found live objects; carries the leaks."""

    def __init__(self, leaks: list[Leak]) -> None:
        self.leaks = leaks
        super().__init__("\n\n".join(str(leak) for leak in leaks))


@dataclass(frozen=True)
class Leak:
    """A live object, reported like kmemleak."""

    description: str
    size: int
    alloc_stack: Stack

    def __str__(self) -> str:
        return (
            f"unreferenced object {self.description} (size {self.size}):\n"
            f"  backtrace (allocated by thread {self.alloc_stack.thread}):\n"
            f"{self.alloc_stack.format()}"
        )


@dataclass(frozen=True)
class HeapStatistics:
    """Counts of a heap: allocations, frees, live objects, errors reported."""

    allocated: int
    freed: int
    live: int
    errors: int


class HeapObject:
    """Base of every struct that lives on an emulated heap; allocate it with ``Heap.alloc``.

    ``__embedded__`` names fields that are part of the struct's memory in C (a refcount, a
    nested struct): freeing the struct poisons them too, so touching a freed object's
    ``refcount`` is a use-after-free, as it is in the kernel. Embedded fields must themselves
    be HeapObject instances (``hazard.Refcount`` is one).
    """

    __slots__ = ("__weakref__", "_kasan")
    _kasan: _Record

    __embedded__: ClassVar[tuple[str, ...]] = ()
    _poisoned_twin: ClassVar[dict[type, type]] = {}


def _description(obj: object) -> str:
    return f"{type(obj).__name__} object at {id(obj):#x}"


def _poisoned(cls: type) -> type:
    twin = HeapObject._poisoned_twin.get(cls)
    if twin is None:

        def _fault(self: Any, name: str, write: bool) -> UseAfterFree:
            record: _Record = object.__getattribute__(self, "_kasan")
            assert record.free is not None
            error = UseAfterFree(
                name, write, record.description, Stack.capture(3), record.alloc, record.free
            )
            record.heap._record_error(error)
            return error

        def __getattribute__(self: Any, name: str) -> Any:
            if name in ("__class__", "_kasan"):
                return object.__getattribute__(self, name)
            raise _fault(self, name, False)

        def __setattr__(self: Any, name: str, value: object) -> None:
            raise _fault(self, name, True)

        def __delattr__(self: Any, name: str) -> None:
            raise _fault(self, name, True)

        def __repr__(self: Any) -> str:
            return f"<freed {object.__getattribute__(self, '_kasan').description}>"

        namespace = {
            "__slots__": (),
            "__getattribute__": __getattribute__,
            "__setattr__": __setattr__,
            "__delattr__": __delattr__,
            "__repr__": __repr__,
            "__module__": cls.__module__,
        }
        twin = type(f"freed {cls.__name__}", (cls,), namespace)
        HeapObject._poisoned_twin[cls] = twin
    return twin


class Buffer(HeapObject):
    """A zero-filled byte buffer on the heap (usblp's readbuf, statusbuf, device ID string)."""

    __slots__ = ("data", "name")

    def __init__(self, size: int, name: str = "buffer") -> None:
        self.data = bytearray(size)
        self.name = name

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"<Buffer {self.name} {len(self.data)} bytes>"


T = TypeVar("T", bound=HeapObject)


class Heap:
    """Allocates emulated structs, poisons them on free, reports misuse.

    Args:
        name: shown in reports and ``repr``.

    """

    def __init__(self, name: str = "heap") -> None:
        self.name = name
        self._lock = _thread.allocate_lock()
        self._live: dict[int, HeapObject] = {}
        self._errors: list[HeapError] = []
        self._allocated = 0
        self._freed = 0

    def alloc(self, cls: type[T], *args: Any, **kwargs: Any) -> T:
        """Construct ``cls(*args, **kwargs)`` on this heap.

        Raises:
            TypeError: ``cls`` is not a HeapObject subclass.

        """
        if not (isinstance(cls, type) and issubclass(cls, HeapObject)):
            raise TypeError(f"Heap.alloc() needs a HeapObject subclass, not {cls!r}")
        obj = cls(*args, **kwargs)
        size = len(obj.data) if isinstance(obj, Buffer) else sys.getsizeof(obj)
        obj._kasan = _Record(self, _description(obj), size, Stack.capture(2))
        with self._lock:
            self._live[id(obj)] = obj
            self._allocated += 1
        return obj

    def alloc_buffer(self, size: int, name: str = "buffer") -> Buffer:
        """Allocate a zero-filled :class:`Buffer` of ``size`` bytes."""
        if not isinstance(size, int) or size < 0:
            raise ValueError(f"buffer size must be an int >= 0, not {size!r}")
        buf = Buffer(size, name)
        buf._kasan = _Record(self, _description(buf), size, Stack.capture(2))
        with self._lock:
            self._live[id(buf)] = buf
            self._allocated += 1
        return buf

    def free(self, obj: HeapObject) -> None:
        """Free ``obj``: any later access to it raises UseAfterFree.

        Raises:
            DoubleFree: ``obj`` was already freed.
            InvalidFree: ``obj`` is not an object of this heap (including None).

        """
        if not isinstance(obj, HeapObject):
            error: HeapError = InvalidFree(f"free() of {obj!r}, which is not a HeapObject")
            self._record_error(error)
            raise error
        record: _Record | None = (
            object.__getattribute__(obj, "_kasan") if _has_record(obj) else None
        )
        if record is None or record.heap is not self:
            error = InvalidFree(f"free() of {_description(obj)}, which this heap did not allocate")
            self._record_error(error)
            raise error
        stack = Stack.capture(2)
        with self._lock:
            first = record.free
            if first is None:
                record.free = stack
                del self._live[id(obj)]
                self._freed += 1
        if first is not None:
            error = DoubleFree(record.description, first, stack, record.alloc)
            self._record_error(error)
            raise error
        _poison(obj, record.description, stack)

    def _record_error(self, error: HeapError) -> None:
        with self._lock:
            self._errors.append(error)

    @property
    def errors(self) -> tuple[HeapError, ...]:
        """Every error this heap has reported, in order."""
        with self._lock:
            return tuple(self._errors)

    def is_freed(self, obj: HeapObject) -> bool:
        """Return whether ``obj`` (allocated here) has been freed."""
        record: _Record | None = (
            object.__getattribute__(obj, "_kasan") if _has_record(obj) else None
        )
        return record is not None and record.heap is self and record.free is not None

    def is_live(self, obj: HeapObject) -> bool:
        """Return whether ``obj`` is allocated here and not freed."""
        with self._lock:
            return self._live.get(id(obj)) is obj

    def leaks(self) -> list[Leak]:
        """Every live object, with its allocation stack, oldest first."""
        with self._lock:
            live = list(self._live.values())
        records: list[_Record] = [object.__getattribute__(o, "_kasan") for o in live]
        return [Leak(r.description, r.size, r.alloc) for r in records]

    def statistics(self) -> HeapStatistics:
        """Counts of allocations, frees, live objects and errors."""
        with self._lock:
            return HeapStatistics(self._allocated, self._freed, len(self._live), len(self._errors))

    def check(self) -> None:
        """Raise the first error this heap reported, if any."""
        errors = self.errors
        if errors:
            raise errors[0]

    def assert_clean(self) -> None:
        """Raise the first reported error, else HeapLeak if any object is still live."""
        self.check()
        leaks = self.leaks()
        if leaks:
            raise HeapLeak(leaks)

    def __repr__(self) -> str:
        s = self.statistics()
        return f"<Heap {self.name} live={s.live} freed={s.freed} errors={s.errors}>"


def _poison(obj: HeapObject, description: str, stack: Stack) -> None:
    # Embedded fields first (reading them needs the live class), then the object itself.
    for name in type(obj).__embedded__:
        part = getattr(obj, name)
        if isinstance(part, HeapObject):
            owner: _Record = object.__getattribute__(obj, "_kasan")
            inner = f"{name} of {description}"
            part._kasan = _Record(owner.heap, inner, 0, owner.alloc)
            part._kasan.free = stack
            _poison(part, inner, stack)
    obj.__class__ = _poisoned(type(obj))


def _has_record(obj: HeapObject) -> bool:
    try:
        object.__getattribute__(obj, "_kasan")
    except AttributeError:
        return False
    return True

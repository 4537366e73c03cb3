"""An emulated KASAN heap: objects are freed logically, and any later access is reported.

Rules and invariants:
- Pure-Python objects cannot be freed while referenced, so ``free()`` poisons in place: it swaps
  the object's class for a cached subclass (``__slots__ = ()``, so the layout is unchanged)
  whose ``__getattribute__``, ``__setattr__`` and ``__delattr__`` raise :class:`UseAfterFree`.
  A live object keeps its own class: its attribute access costs what it costs without a heap.
- Every attribute access through a freed object is a use after free, method lookups included.
  Only ``__class__`` stays readable: ``isinstance`` reads it, and it truthfully gives the
  poisoned class. ``repr`` never raises, so reports can print freed objects.
- Fields named in a class's ``__embedded__`` are part of the struct's memory, as a
  ``refcount_t`` inside a C struct is: freeing the struct poisons them with it.
- An object's metadata (description, allocation and free stacks) lives in its ``_kasan`` slot
  and is read with ``object.__getattribute__``. A heap holds its live objects only (leak
  reports show them); a freed object is reclaimed by Python once nothing else refers to it.
- A heap's bookkeeping is guarded by one raw ``_thread`` lock. It is instrumentation, not the
  model under test: an explorer must never switch threads inside it, so it is not a
  :class:`~hazard.Lock`, and no user code runs while it is held. A free checks and marks under
  it, so of two racing frees of one object exactly one succeeds and the other is a DoubleFree.
- Every :class:`HeapError` a heap raises is recorded there first (the first
  ``MAX_RECORDED_ERRORS`` kept, all counted), so ``check()`` finds an error that code swallowed.
- Stacks are raw ``(filename, lineno, function)`` tuples, innermost first, without this module's
  frames (as KASAN reports the caller of ``memcpy``); they are formatted only by ``str()``.
"""

from __future__ import annotations

import _thread
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import ClassVar, NoReturn, ParamSpec, TypeVar

from hazard import _checkpoint
from hazard._checkpoint import Access
from hazard._errors import HazardError

__all__ = [
    "MAX_RECORDED_ERRORS",
    "MAX_STACK_DEPTH",
    "Buffer",
    "DoubleFree",
    "Heap",
    "HeapError",
    "HeapLeak",
    "HeapObject",
    "HeapStatistics",
    "InvalidFree",
    "Leak",
    "OutOfBounds",
    "Stack",
    "UseAfterFree",
]

P = ParamSpec("P")
T = TypeVar("T", bound="HeapObject")
E = TypeVar("E", bound="HeapError")

MAX_STACK_DEPTH = 32
# A swallowed use after free in a hot loop would otherwise keep millions of reports (and the
# frames of their tracebacks) alive; the first ones name the bug.
MAX_RECORDED_ERRORS = 1000

Frame = tuple[str, int, str]  # (filename, lineno, function qualname)

_THIS_FILE = sys._getframe().f_code.co_filename


@dataclass(frozen=True, slots=True)
class Stack:
    """A call stack captured by a heap.

    Attributes:
        thread: the name of the thread that ran it.
        frames: ``(filename, lineno, function)`` per frame, innermost first, at most
            ``MAX_STACK_DEPTH`` of them, without the heap's own frames.

    """

    thread: str
    frames: tuple[Frame, ...]

    def __str__(self) -> str:
        return "\n".join(f" {func} {filename}:{lineno}" for filename, lineno, func in self.frames)


def _capture() -> Stack:
    frames: list[Frame] = []
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and len(frames) < MAX_STACK_DEPTH:
        code = frame.f_code
        if code.co_filename != _THIS_FILE:
            frames.append((code.co_filename, frame.f_lineno, code.co_qualname))
        frame = frame.f_back
    return Stack(threading.current_thread().name, tuple(frames))


def _where(stack: Stack) -> str:
    if not stack.frames:
        return "<unknown>"
    filename, lineno, func = stack.frames[0]
    return f"{func} ({filename}:{lineno})"


def _section(title: str, stack: Stack) -> str:
    return f"{title} by thread {stack.thread}:\n{stack}"


class HeapError(HazardError):
    """Root of the heap's reports; never raised directly."""

    def __init__(self, *args: object) -> None:
        if type(self) is HeapError:
            raise TypeError("HeapError is abstract: raise one of its subclasses")
        super().__init__(*args)


class UseAfterFree(HeapError, ReferenceError):
    """An attribute of a freed object was read, written or deleted.

    A ``ReferenceError``, like using a weak proxy whose referent is gone, and not an
    ``AttributeError``, which ``hasattr`` and ``getattr(obj, name, default)`` would swallow.

    Attributes:
        description: the object, e.g. ``Usblp object at 0x7f...``.
        attribute: the attribute's name.
        is_write: True for a write or delete, False for a read.
        access_stack: where the bad access happened.
        alloc_stack: where the object was allocated.
        free_stack: where it was freed.

    """

    def __init__(
        self,
        *,
        description: str,
        attribute: str,
        is_write: bool,
        access_stack: Stack,
        alloc_stack: Stack,
        free_stack: Stack,
    ) -> None:
        verb = "write" if is_write else "read"
        super().__init__(f"use after free: {verb} of {attribute!r} of {description}")
        self.description = description
        self.attribute = attribute
        self.is_write = is_write
        self.access_stack = access_stack
        self.alloc_stack = alloc_stack
        self.free_stack = free_stack

    def __str__(self) -> str:
        verb = "Write" if self.is_write else "Read"
        access = f"{verb} of attribute {self.attribute!r} of {self.description}"
        return (
            f"BUG: KASAN: slab-use-after-free in {_where(self.access_stack)}\n"
            f"{_section(access, self.access_stack)}\n\n"
            f"{_section('Allocated', self.alloc_stack)}\n\n"
            f"{_section('Freed', self.free_stack)}"
        )


class DoubleFree(HeapError, RuntimeError):
    """An object was freed a second time.

    Attributes:
        description: the object, e.g. ``Usblp object at 0x7f...``.
        alloc_stack: where the object was allocated.
        first_free_stack: where it was freed.
        second_free_stack: where it was freed again.

    """

    def __init__(
        self,
        *,
        description: str,
        alloc_stack: Stack,
        first_free_stack: Stack,
        second_free_stack: Stack,
    ) -> None:
        super().__init__(f"double free of {description}")
        self.description = description
        self.alloc_stack = alloc_stack
        self.first_free_stack = first_free_stack
        self.second_free_stack = second_free_stack

    def __str__(self) -> str:
        return (
            f"BUG: KASAN: double-free in {_where(self.second_free_stack)}\n"
            f"{_section(f'Free of {self.description}', self.second_free_stack)}\n\n"
            f"{_section('Allocated', self.alloc_stack)}\n\n"
            f"{_section('Freed', self.first_free_stack)}"
        )


class InvalidFree(HeapError, ValueError):
    """``free()`` of something this heap did not allocate.

    Attributes:
        description: what was passed, e.g. ``None`` or ``Usblp object at 0x7f...``.
        reason: why this heap cannot free it.
        free_stack: where the free was attempted.
        alloc_stack: where another heap allocated the object, or None.

    """

    def __init__(
        self, *, description: str, reason: str, free_stack: Stack, alloc_stack: Stack | None
    ) -> None:
        super().__init__(f"invalid free of {description}: {reason}")
        self.description = description
        self.reason = reason
        self.free_stack = free_stack
        self.alloc_stack = alloc_stack

    def __str__(self) -> str:
        report = (
            f"BUG: KASAN: invalid-free in {_where(self.free_stack)}\n"
            f"{_section(f'Free of {self.description}', self.free_stack)}\n"
            f"Reason: {self.reason}"
        )
        if self.alloc_stack is not None:
            report += f"\n\n{_section('Allocated', self.alloc_stack)}"
        return report


class OutOfBounds(HeapError, IndexError):
    """:meth:`Buffer.read` or :meth:`Buffer.write` reached outside the buffer.

    Attributes:
        description: the buffer, e.g. ``Buffer 'readbuf' of 8 bytes at 0x7f...``.
        offset: the first byte the access asked for.
        length: how many bytes it asked for.
        is_write: True for a write.
        access_stack: where the bad access happened.
        alloc_stack: where the buffer was allocated, or None if no heap allocated it.

    """

    def __init__(
        self,
        *,
        description: str,
        offset: int,
        length: int,
        is_write: bool,
        access_stack: Stack,
        alloc_stack: Stack | None,
    ) -> None:
        verb = "write" if is_write else "read"
        super().__init__(f"out of bounds: {verb} of {length} bytes at offset {offset}")
        self.description = description
        self.offset = offset
        self.length = length
        self.is_write = is_write
        self.access_stack = access_stack
        self.alloc_stack = alloc_stack

    def __str__(self) -> str:
        verb = "Write" if self.is_write else "Read"
        access = f"{verb} of {self.length} bytes at offset {self.offset} of {self.description}"
        report = (
            f"BUG: KASAN: slab-out-of-bounds in {_where(self.access_stack)}\n"
            f"{_section(access, self.access_stack)}"
        )
        if self.alloc_stack is not None:
            report += f"\n\n{_section('Allocated', self.alloc_stack)}"
        return report


@dataclass(frozen=True)
class Leak:
    """A live object found by :meth:`Heap.leaks`.

    Attributes:
        obj: the object itself.
        description: what it is, e.g. ``Usblp object at 0x7f...``.
        size: its struct size (``__basicsize__``) or, for a :class:`Buffer`, its byte count.
        alloc_stack: where it was allocated, and by which thread.

    """

    obj: HeapObject = field(repr=False, compare=False)
    description: str
    size: int
    alloc_stack: Stack

    def __str__(self) -> str:
        backtrace = "\n".join(f"   {line}" for line in str(self.alloc_stack).splitlines())
        return (
            f"unreferenced object {id(self.obj):#x} (size {self.size}):\n"
            f'  {self.description}, allocated by thread "{self.alloc_stack.thread}"\n'
            f"  backtrace:\n{backtrace}"
        )


class HeapLeak(HeapError, AssertionError):
    """:meth:`Heap.assert_clean` found live objects.

    Attributes:
        heap: the heap's name.
        leaks: the live objects, in allocation order.

    """

    def __init__(self, heap: str, leaks: tuple[Leak, ...]) -> None:
        super().__init__(f"{len(leaks)} objects leaked from heap {heap!r}")
        self.heap = heap
        self.leaks = leaks

    def __str__(self) -> str:
        reports = "\n\n".join(str(leak) for leak in self.leaks)
        return f"{len(self.leaks)} objects leaked from heap {self.heap!r}:\n\n{reports}"


@dataclass(frozen=True)
class HeapStatistics:
    """A snapshot of a :class:`Heap`.

    Attributes:
        allocated: objects allocated since the heap was created.
        freed: objects freed since then (embedded fields not counted).
        live: objects allocated and not freed.
        errors: heap errors raised so far, including those beyond ``MAX_RECORDED_ERRORS``.

    """

    allocated: int
    freed: int
    live: int
    errors: int


class _Meta:
    """Per-object heap metadata, kept in the object's ``_kasan`` slot."""

    __slots__ = ("alloc_stack", "description", "free_stack", "heap", "size")

    def __init__(self, heap: Heap, description: str, size: int, alloc_stack: Stack) -> None:
        self.heap = heap
        self.description = description
        self.size = size
        self.alloc_stack = alloc_stack
        # Written once, by free() under the heap's lock; read under that lock.
        self.free_stack: Stack | None = None


class HeapObject:
    """Base class of everything a :class:`Heap` allocates.

    Subclasses may declare ``__slots__`` or have a ``__dict__``. They must not declare
    ``_kasan`` (the heap's metadata) or ``__weakref__``, which this class already provides.

    ``__embedded__`` names fields that are part of the struct's memory in C (a refcount, an
    atomic, a nested struct) rather than pointers: freeing the struct poisons them too.
    They must hold HeapObjects that no heap allocated (:class:`~hazard.Refcount` and the
    atomics are HeapObjects for this); a field holding anything else is left alone.
    """

    __slots__ = ("__weakref__", "_kasan")

    __embedded__: ClassVar[tuple[str, ...]] = ()
    _kasan: _Meta


class Buffer(HeapObject):
    """A fixed-size, zero-filled byte buffer on the heap: a ``kzalloc``'d ``u8 *``.

    Reach the bytes through ``data`` (an attribute, so any access after free is caught) or
    through :meth:`read` and :meth:`write`, which also check bounds. Slicing ``data`` directly
    is not bounds-checked: Python clamps slices on read and grows the array on slice writes.
    After free, even a write of the bytes is reported as a read: the read of ``data`` (or of
    the ``write`` method) through which Python reaches them.

    Args:
        size: the number of bytes.
        name: names the buffer in reports.

    Raises:
        TypeError: ``size`` is not an int.
        ValueError: ``size`` is negative.

    """

    __slots__ = ("data", "name")

    def __init__(self, size: int, name: str = "buffer") -> None:
        if not isinstance(size, int) or isinstance(size, bool):
            raise TypeError(f"buffer size must be an int, not {type(size).__name__}")
        if size < 0:
            raise ValueError(f"buffer size must be >= 0, not {size}")
        self.data = bytearray(size)
        self.name = name

    def __len__(self) -> int:
        return len(self.data)

    def read(self, offset: int = 0, length: int | None = None) -> bytes:
        """Return ``length`` bytes from ``offset`` (by default, up to the end).

        Raises:
            OutOfBounds: the range is not inside the buffer.
            UseAfterFree: the buffer was freed.

        """
        data = self.data
        if length is None:
            length = len(data) - offset
        self._check_bounds(len(data), offset, length, is_write=False)
        return bytes(data[offset : offset + length])

    def write(self, offset: int, payload: bytes | bytearray) -> None:
        """Copy ``payload`` into the buffer at ``offset``.

        Raises:
            OutOfBounds: the range is not inside the buffer; nothing is written.
            UseAfterFree: the buffer was freed.

        """
        data = self.data
        length = len(payload)
        self._check_bounds(len(data), offset, length, is_write=True)
        data[offset : offset + length] = payload

    def _check_bounds(self, size: int, offset: int, length: int, *, is_write: bool) -> None:
        if offset >= 0 and length >= 0 and offset + length <= size:
            return
        meta = _meta_of(self)
        error = OutOfBounds(
            description=_describe(self) if meta is None else meta.description,
            offset=offset,
            length=length,
            is_write=is_write,
            access_stack=_capture(),
            alloc_stack=None if meta is None else meta.alloc_stack,
        )
        raise error if meta is None else meta.heap._record(error)

    def __repr__(self) -> str:
        return f"<Buffer {self.name!r} of {len(self.data)} bytes at {id(self):#x}>"


def _meta_of(obj: object) -> _Meta | None:
    if not isinstance(obj, HeapObject):
        return None
    try:
        meta: _Meta = object.__getattribute__(obj, "_kasan")
    except AttributeError:  # constructed directly, not by a heap
        return None
    return meta


def _describe(obj: HeapObject) -> str:
    # Only for live objects: it reads a Buffer's fields the ordinary way.
    name = type(obj).__qualname__
    if isinstance(obj, Buffer):
        return f"{name} {obj.name!r} of {len(obj.data)} bytes at {id(obj):#x}"
    return f"{name} object at {id(obj):#x}"


# Poisoned classes --------------------------------------------------------------------------


def _freed_getattribute(self: HeapObject, name: str) -> object:
    if name == "__class__":
        return type(self)
    raise _use_after_free(self, name, is_write=False)


def _freed_setattr(self: HeapObject, name: str, value: object) -> NoReturn:
    raise _use_after_free(self, name, is_write=True)


def _freed_delattr(self: HeapObject, name: str) -> NoReturn:
    raise _use_after_free(self, name, is_write=True)


def _freed_repr(self: HeapObject) -> str:
    meta: _Meta = object.__getattribute__(self, "_kasan")
    return f"<freed {meta.description}>"


def _freed_del(self: HeapObject) -> None:
    """Run nothing: kfree() calls no destructor, and this one would read poisoned fields."""


def _use_after_free(obj: HeapObject, name: str, *, is_write: bool) -> UseAfterFree:
    access_stack = _capture()
    meta: _Meta = object.__getattribute__(obj, "_kasan")
    heap = meta.heap
    with heap._lock:
        free_stack = meta.free_stack
    # free() stores the free stack before it swaps the class, both under this lock.
    assert free_stack is not None
    return heap._record(
        UseAfterFree(
            description=meta.description,
            attribute=name,
            is_write=is_write,
            access_stack=access_stack,
            alloc_stack=meta.alloc_stack,
            free_stack=free_stack,
        )
    )


def is_poisoned_object(obj: object) -> bool:
    """Whether ``obj`` is a freed heap object (never raises; reads no attribute of it)."""
    return _is_poisoned(type(obj))


def _is_poisoned(cls: type) -> bool:
    return vars(cls).get("__getattribute__") is _freed_getattribute


# One poisoned class per live class, shared by all heaps. Instrumentation like the heaps'
# tables, hence a raw lock; classes are created outside it, since __init_subclass__ is user code.
_poison_lock = _thread.allocate_lock()
_poisoned: dict[type, type] = {}


def _poisoned_class(cls: type) -> type:
    if _is_poisoned(cls):
        return cls
    with _poison_lock:
        poisoned = _poisoned.get(cls)
    if poisoned is None:
        namespace: dict[str, object] = {
            "__slots__": (),
            "__module__": cls.__module__,
            "__qualname__": f"Freed{cls.__name__}",
            "__getattribute__": _freed_getattribute,
            "__setattr__": _freed_setattr,
            "__delattr__": _freed_delattr,
            "__repr__": _freed_repr,
        }
        if hasattr(cls, "__del__"):
            namespace["__del__"] = _freed_del
        candidate = type(cls)(f"Freed{cls.__name__}", (cls,), namespace)
        with _poison_lock:
            poisoned = _poisoned.setdefault(cls, candidate)
    return poisoned


_Part = tuple[HeapObject, str, type]  # an embedded field's object, description, poisoned class


def _embedded_parts(obj: HeapObject, description: str, parts: list[_Part]) -> None:
    for name in type(obj).__embedded__:
        try:
            # object.__getattribute__: the struct may already be poisoned (a double free).
            part = object.__getattribute__(obj, name)
        except AttributeError:
            continue
        if isinstance(part, HeapObject) and all(part is not seen for seen, _, _ in parts):
            inner = f"{name} of {description}"
            parts.append((part, inner, _poisoned_class(type(part))))
            _embedded_parts(part, inner, parts)


def _is_heap_class(cls: object) -> bool:
    return isinstance(cls, type) and issubclass(cls, HeapObject)


class Heap:
    """Allocates :class:`HeapObject` instances and reports misuse of them as KASAN would.

    Args:
        name: shown in ``repr`` and in reports.

    Raises:
        TypeError: ``name`` is not a str.

    """

    __slots__ = ("_allocated", "_error_count", "_errors", "_freed", "_live", "_lock", "name")

    def __init__(self, name: str = "heap") -> None:
        if not isinstance(name, str):
            raise TypeError(f"heap name must be a str, not {type(name).__name__}")
        self.name = name
        # Instrumentation, not the model under test: a raw lock, so that an explorer never
        # schedules inside it (see the module rules).
        self._lock = _thread.allocate_lock()
        self._live: dict[int, HeapObject] = {}
        self._errors: list[HeapError] = []
        self._error_count = 0
        self._allocated = 0
        self._freed = 0

    def alloc(self, cls: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Construct ``cls(*args, **kwargs)`` and register it as live (``kmalloc`` + init).

        Returns:
            The new object, with its allocation stack recorded.

        Raises:
            TypeError: ``cls`` is not a subclass of :class:`HeapObject`, or is the class of
                freed objects; or what ``cls`` raises.

        """
        if not _is_heap_class(cls):
            raise TypeError(f"alloc() takes a subclass of HeapObject, not {cls!r}")
        if _is_poisoned(cls):  # type: ignore[arg-type]  # _is_heap_class: it is a type
            raise TypeError(f"alloc() of {cls.__qualname__}, the class of freed objects")
        obj = cls(*args, **kwargs)
        size = len(obj.data) if isinstance(obj, Buffer) else type(obj).__basicsize__
        meta = _Meta(self, _describe(obj), size, _capture())
        with self._lock:
            # object.__setattr__: the class may forbid setattr (a frozen dataclass).
            object.__setattr__(obj, "_kasan", meta)
            self._live[id(obj)] = obj
            self._allocated += 1
        return obj

    def alloc_buffer(self, size: int, name: str = "buffer") -> Buffer:
        """Allocate a zero-filled :class:`Buffer` of ``size`` bytes (``kzalloc``).

        Raises:
            TypeError: ``size`` is not an int.
            ValueError: ``size`` is negative.

        """
        return self.alloc(Buffer, size, name)

    def free(self, obj: object) -> None:
        """Free ``obj`` (``kfree``) and its embedded fields: poison them in place.

        Unlike ``kfree(NULL)``, ``free(None)`` is an error: test for None before freeing.

        Raises:
            DoubleFree: ``obj`` was already freed.
            InvalidFree: ``obj`` is not a HeapObject (None included), or this heap did not
                allocate it.

        """
        stack = _capture()
        meta = _meta_of(obj)
        if meta is None or meta.heap is not self:
            raise self._record(self._invalid_free(obj, meta, stack))
        assert isinstance(obj, HeapObject)  # _meta_of found metadata
        # Poisoned classes and embedded fields are looked up before taking the lock: that
        # may run user code. An already poisoned class means a double free, decided below.
        cls = type(obj)
        parts: list[_Part] = []
        if not _is_poisoned(cls):
            _embedded_parts(obj, meta.description, parts)
        poisoned = _poisoned_class(cls)
        sched = _checkpoint.scheduler
        if sched is not None:
            # A free writes the object's memory: the explorer must order it against every
            # access to the struct and to its embedded fields (the cells readers touch).
            sched.checkpoint(obj, Access.WRITE, "free")
            for part, _, _ in parts:
                sched.also(part, Access.WRITE)
        with self._lock:
            first_free_stack = meta.free_stack
            if first_free_stack is None:
                meta.free_stack = stack
                for part, description, part_class in parts:
                    part_meta = _Meta(self, description, 0, meta.alloc_stack)
                    part_meta.free_stack = stack
                    object.__setattr__(part, "_kasan", part_meta)
                    object.__setattr__(part, "__class__", part_class)
                del self._live[id(obj)]
                object.__setattr__(obj, "__class__", poisoned)
                self._freed += 1
                return
            error = DoubleFree(
                description=meta.description,
                alloc_stack=meta.alloc_stack,
                first_free_stack=first_free_stack,
                second_free_stack=stack,
            )
            self._record_locked(error)
        raise error

    def _invalid_free(self, obj: object, meta: _Meta | None, stack: Stack) -> InvalidFree:
        if obj is None:
            description, reason = "None", "not a HeapObject (kfree(NULL) is a no-op; this is not)"
        elif not isinstance(obj, HeapObject):
            description = f"{type(obj).__qualname__} object at {id(obj):#x}"
            reason = "not a HeapObject"
        elif meta is None:
            description, reason = _describe(obj), "not allocated by any heap"
        else:
            description = meta.description
            reason = f"allocated by heap {meta.heap.name!r}, not by heap {self.name!r}"
        return InvalidFree(
            description=description,
            reason=reason,
            free_stack=stack,
            alloc_stack=None if meta is None else meta.alloc_stack,
        )

    def _record(self, error: E) -> E:
        with self._lock:
            self._record_locked(error)
        return error

    def _record_locked(self, error: HeapError) -> None:
        self._error_count += 1
        if len(self._errors) < MAX_RECORDED_ERRORS:
            self._errors.append(error)

    def is_live(self, obj: object) -> bool:
        """Return whether this heap allocated ``obj`` and has not freed it."""
        with self._lock:
            live = self._live.get(id(obj))
        # Not just `get(...) is obj`: that holds for None, which get() returns when absent.
        return live is not None and live is obj

    def is_freed(self, obj: object) -> bool:
        """Return whether this heap freed ``obj`` (or the struct that embeds it)."""
        meta = _meta_of(obj)
        if meta is None or meta.heap is not self:
            return False
        with self._lock:
            return meta.free_stack is not None

    @property
    def errors(self) -> tuple[HeapError, ...]:
        """The errors this heap raised so far, oldest first (the first ``MAX_RECORDED_ERRORS``)."""
        with self._lock:
            return tuple(self._errors)

    def leaks(self) -> list[Leak]:
        """Return every live object with its allocation stack, in allocation order."""
        with self._lock:
            live = list(self._live.values())
        leaks = []
        for obj in live:
            meta: _Meta = object.__getattribute__(obj, "_kasan")
            leaks.append(Leak(obj, meta.description, meta.size, meta.alloc_stack))
        return leaks

    def statistics(self) -> HeapStatistics:
        """Return a snapshot of this heap's counters."""
        with self._lock:
            return HeapStatistics(
                allocated=self._allocated,
                freed=self._freed,
                live=len(self._live),
                errors=self._error_count,
            )

    def check(self) -> None:
        """Raise the first error this heap recorded, if any, even if its raiser was silenced.

        Raises:
            HeapError: the first recorded error.

        """
        with self._lock:
            first = self._errors[0] if self._errors else None
        if first is not None:
            raise first

    def assert_clean(self) -> None:
        """Check that no error was recorded and no object is live.

        Raises:
            HeapError: the first recorded error, if any.
            HeapLeak: otherwise, if objects are live; it lists them.

        """
        self.check()
        leaks = self.leaks()
        if leaks:
            raise HeapLeak(self.name, tuple(leaks))

    def __repr__(self) -> str:
        with self._lock:
            live, freed, errors = len(self._live), self._freed, self._error_count
        return f"<Heap {self.name!r} live={live} freed={freed} errors={errors}>"

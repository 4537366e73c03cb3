"""The seed's recipe: a reference count reached through a hazard-pointer-protected pointer.

Rules:
- A counted object has a :class:`~hazard.Refcount` in its ``refcount`` attribute (the seed puts
  it first in the struct). The publisher's pointer holds one reference.
- ``get(src)``: protect ``src``, ``inc_not_zero``, release the slot (the seed's
  ``hp_dereference_acquire`` + ``refcount_inc_not_zero`` + ``hp_retire``). The slot keeps the
  object in existence while the count is read, so ``inc_not_zero`` never touches freed memory;
  the count keeps it alive afterwards, so the slot can be released at once.
- Unpublish before dropping the publisher's reference. The ``put`` that takes the count to
  zero waits for hazard pointers (``synchronize``) before calling ``release``: a reader that
  protected the pointer before the unpublish may still be about to read the count.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Generic, Protocol, TypeVar

from hazard import _hazptr
from hazard._atomics import AtomicRef
from hazard._hazptr import HazardDomain
from hazard._refcount import Refcount

__all__ = ["Counted", "Hpref", "HprefBorrow"]


class Counted(Protocol):
    """An object with a kernel-style reference count."""

    @property
    def refcount(self) -> Refcount:
        """The object's reference count."""
        ...


C = TypeVar("C", bound=Counted)


class Hpref(Generic[C]):
    """Counted references to objects published through hazard-pointer-protected pointers.

    Args:
        domain: the hazard-pointer domain readers publish in.
        release: frees an object once its last reference is gone and no reader can reach it.

    """

    __slots__ = ("domain", "release")

    def __init__(self, domain: HazardDomain, release: Callable[[C], None]) -> None:
        if not isinstance(domain, HazardDomain):
            raise TypeError(f"domain must be a HazardDomain, not {type(domain).__name__}")
        if not callable(release):
            raise TypeError(f"release must be callable, not {type(release).__name__}")
        self.domain = domain
        self.release = release

    def get(self, src: AtomicRef[C | None]) -> C | None:
        """Return ``src``'s object with a reference taken for the caller, or None.

        None means ``src`` held None or the object's count had already reached zero.
        """
        if type(src) is not AtomicRef:
            raise TypeError(f"get() needs an AtomicRef, not {type(src).__name__}")
        slot = self.domain._reserve()
        hazard = slot._record.hazard
        try:
            obj = _hazptr.publish(hazard, src)  # via the module: mutation tests patch it
            if obj is not None and obj.refcount.inc_not_zero():
                return obj
            return None
        finally:
            hazard.store(None)
            slot._free.append(slot)

    def put(self, obj: C) -> bool:
        """Drop a reference; on the last one wait for readers, then release. True if released."""
        if obj is None:
            raise TypeError("put(None): only an object returned by get() can be put")
        if obj.refcount.dec_and_test():
            self.domain.synchronize(obj)
            self.release(obj)
            return True
        return False

    def borrow(self, src: AtomicRef[C | None]) -> HprefBorrow[C]:
        """Hold a counted reference for a ``with`` block: yields the object or None."""
        return HprefBorrow(self, src)


class HprefBorrow(Generic[C]):
    """A scoped counted reference, like a Rust smart pointer: ``put`` on leaving the block."""

    __slots__ = ("_hpref", "_obj", "_src")

    def __init__(self, hpref: Hpref[C], src: AtomicRef[C | None]) -> None:
        self._hpref = hpref
        self._src = src
        self._obj: C | None = None

    def __enter__(self) -> C | None:
        self._obj = self._hpref.get(self._src)
        return self._obj

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        obj, self._obj = self._obj, None
        if obj is not None:
            self._hpref.put(obj)

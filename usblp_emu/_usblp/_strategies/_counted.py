"""What the two correct refcounted strategies (``rcu``, ``hazard``) share.

Rules and invariants:
- The struct's reference count (its first field) counts the device's reference (from probe to
  disconnect) plus one per open file. Whoever drops the last one frees, after readers of the
  published pointer are done (a grace period, or a hazard-pointer scan).
- Open finds the struct through a per-minor table of published pointers that the driver owns,
  so it never touches the interface, whose lifetime the driver does not control; ``used`` is
  claimed with a compare-exchange, so two opens cannot both win.
- Release clears ``used`` only after killing its URBs, so a new open's read URB is never
  killed by the previous file's release (window R4).
- No global lock anywhere in open, release or disconnect.

Lock order: the core's ``minor_rwsem`` (read, around open) -> the device's runtime PM lock;
disconnect takes ``usblp.mut`` -> ``usblp.lock`` (then the anchor's and host controller's
locks, killing URBs) after the core dropped ``minor_rwsem``. A reader's protection (an RCU read
section, a hazard pointer) covers the lookup and the ``refcount_inc_not_zero`` only, never a
lock; every put runs with no lock held, so the free it may do (after a grace period or a
hazard-pointer scan) waits for no lock holder.
"""

from __future__ import annotations

import errno
from abc import abstractmethod
from typing import TYPE_CHECKING

from hazard import AtomicRef
from usblp_emu._core._usbcore import MINORS
from usblp_emu._usblp._strategies._base import Strategy

if TYPE_CHECKING:
    from usblp_emu._core._usbcore import Interface
    from usblp_emu._usblp._driver import Usblp, UsblpDriver

__all__ = ["CountedStrategy"]


class CountedStrategy(Strategy):
    """Refcount-first-field lifetime; subclasses say how a reader is protected."""

    def __init__(self, driver: UsblpDriver) -> None:
        super().__init__(driver)
        self.table: list[AtomicRef[Usblp | None]] = [AtomicRef(None) for _ in range(MINORS)]

    @abstractmethod
    def get(self, minor: int) -> Usblp | None:
        """The struct published at ``minor`` with a reference taken, or None."""

    @abstractmethod
    def put(self, usblp: Usblp) -> None:
        """Drop a reference; the last one frees once no reader can reach the struct."""

    def probed(self, usblp: Usblp) -> None:
        self.table[usblp.minor].store(usblp)

    def open(self, minor: int) -> Usblp | int:
        if not 0 <= minor < MINORS:
            return -errno.ENODEV
        usblp = self.get(minor)
        if usblp is None:
            return -errno.ENODEV
        if not usblp.present.load():
            self.put(usblp)
            return -errno.ENODEV
        if usblp.used.load():
            self.put(usblp)
            return -errno.EBUSY
        retval = self.driver.start_io(usblp, usblp.intf, lambda: usblp.used.compare_exchange(0, 1))
        if retval < 0:
            self.put(usblp)
            return retval
        return usblp  # the file holds the reference taken by get()

    def release(self, usblp: Usblp) -> int:
        self.driver.clear_abort(usblp)
        if usblp.present.load():
            self.driver.unlink_urbs(usblp)
        self.core.autopm_put(usblp.intf)
        usblp.used.store(0)
        self.put(usblp)
        return 0

    def disconnect(self, intf: Interface) -> None:
        usblp = intf.intfdata.load()
        self.core.deregister_dev(intf)
        self.table[usblp.minor].store(None)  # unpublish: no new reader finds it
        self.driver.mark_gone(usblp, intf)
        self.put(usblp)  # the device's reference

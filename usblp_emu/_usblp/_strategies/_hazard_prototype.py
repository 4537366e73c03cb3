"""``hazard-prototype``: the hazard-pointer conversion of usblp as posted (Oct 2024).

Kept with its flaws, so the explorer can show them.

What it does: no ``usblp_mutex``; the struct embeds an hpref node whose count starts at 1;
open takes a reference through a hazard-pointer-protected load of intfdata and drops it at the
end of open (the open file holds none); release drops a reference only when ``!present``;
disconnect, when ``!used``, clears intfdata, waits for hazard pointers and drops the initial
reference. ``used`` and ``present`` are read and written by open, release and disconnect with
no common lock: windows R1 (who frees) and R5 (two opens both win) are open again.

Lock order: the core's ``minor_rwsem`` (read, around open) -> the device's runtime PM lock;
disconnect: ``usblp.mut`` -> ``usblp.lock``, then the URB locks; its ``synchronize`` and the
put that frees run with no lock held. Nothing orders open, release and disconnect.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from hazard import HazardDomain, Hpref
from usblp_emu._usblp._strategies._base import Strategy, set_used

if TYPE_CHECKING:
    from usblp_emu._core._usbcore import Interface
    from usblp_emu._usblp._driver import Usblp, UsblpDriver

__all__ = ["HazardPrototypeStrategy"]


class HazardPrototypeStrategy(Strategy):
    """The posted prototype, faithfully."""

    name = "hazard-prototype"

    def __init__(self, driver: UsblpDriver) -> None:
        super().__init__(driver)
        self.domain = HazardDomain(name="usblp-prototype")
        self.hpref: Hpref[Usblp] = Hpref(self.domain, driver.cleanup)

    def open(self, minor: int) -> Usblp | int:  # noqa: PLR0911 - the posted code's exits
        if minor < 0:
            return -errno.ENODEV
        intf = self.core.find_interface(minor)
        if intf is None:
            return -errno.ENODEV
        usblp = self.hpref.get(intf.intfdata)  # usb_hpref_intfdata_hp_refcount_inc()
        if usblp is None:
            return -errno.ENODEV
        try:
            if not usblp.present.load():
                return -errno.ENODEV
            if usblp.used.load():
                return -errno.EBUSY
            retval = self.driver.start_io(usblp, intf, lambda: set_used(usblp))
            if retval < 0:
                return retval
            return usblp
        finally:
            self.hpref.put(usblp)  # "decrement at the end of open"

    def release(self, usblp: Usblp) -> int:
        self.driver.clear_abort(usblp)
        usblp.used.store(0)
        if usblp.present.load():
            self.driver.unlink_urbs(usblp)
        self.core.autopm_put(usblp.intf)
        if not usblp.present.load():  # finish cleanup from disconnect
            self.hpref.put(usblp)
        return 0

    def disconnect(self, intf: Interface) -> None:
        self.core.deregister_dev(intf)
        usblp = intf.intfdata.load()
        with usblp.mut:
            usblp.present.store(0)
            with usblp.lock:
                usblp.wwait.notify_all()
                usblp.rwait.notify_all()
            self.driver.unlink_urbs(usblp)
        self.driver.poison(usblp)
        if not usblp.used.load():
            # usb_clear_hpref_intfdata(): unpublish, wait for hazard pointers, drop the
            # initial reference.
            intf.intfdata.store(None)
            self.domain.synchronize(usblp)
            self.hpref.put(usblp)

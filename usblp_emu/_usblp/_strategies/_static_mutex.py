"""``static-mutex``: mainline usblp.

One global ``usblp_mutex`` orders open, release and disconnect, so ``used`` and ``present``
decide who frees the struct.

Lock order: the core's ``minor_rwsem`` (read, around open; disconnect's deregistration takes
it for writing and drops it before) -> ``usblp_mutex`` -> the device's runtime PM lock (open's
resume, release's put); ``usblp_mutex`` -> ``usblp.mut`` -> ``usblp.lock`` (disconnect), and
the URB anchor's and host controller's locks innermost (the kill of the URBs). Cleanup frees
under ``usblp_mutex``.
"""

from __future__ import annotations

import errno
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from hazard import Lock
from usblp_emu._usblp._strategies._base import Strategy, set_used

if TYPE_CHECKING:
    from usblp_emu._core._usbcore import Interface
    from usblp_emu._usblp._driver import Usblp, UsblpDriver

__all__ = ["StaticMutexStrategy"]


class StaticMutexStrategy(Strategy):
    """Mainline: ``static DEFINE_MUTEX(usblp_mutex); /* locks the existence of usblp's */``."""

    name = "static-mutex"

    def __init__(self, driver: UsblpDriver) -> None:
        super().__init__(driver)
        self.usblp_mutex: AbstractContextManager[object] = Lock("usblp_mutex")

    def open(self, minor: int) -> Usblp | int:
        if minor < 0:
            return -errno.ENODEV
        with self.usblp_mutex:
            intf = self.core.find_interface(minor)
            if intf is None:
                return -errno.ENODEV
            usblp = intf.intfdata.load()
            if usblp is None or not usblp.present.load():
                return -errno.ENODEV
            if usblp.used.load():
                return -errno.EBUSY
            retval = self.driver.start_io(usblp, intf, lambda: set_used(usblp))
            if retval < 0:
                return retval
            return usblp  # type: ignore[no-any-return]

    def release(self, usblp: Usblp) -> int:
        self.driver.clear_abort(usblp)
        with self.usblp_mutex:
            usblp.used.store(0)
            present = usblp.present.load()
            if present:
                self.driver.unlink_urbs(usblp)
            self.core.autopm_put(usblp.intf)
            if not present:  # finish cleanup from disconnect
                self.driver.cleanup(usblp)
        return 0

    def disconnect(self, intf: Interface) -> None:
        usblp = intf.intfdata.load()
        self.core.deregister_dev(intf)
        with self.usblp_mutex:
            self.driver.mark_gone(usblp, intf)
            if not usblp.used.load():
                self.driver.cleanup(usblp)

"""``unprotected``: mainline without ``usblp_mutex``: no existence guarantee at all.

The negative control: the explorer must find its use-after-frees and double frees.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from usblp_emu._strategies._base import Strategy, set_used

if TYPE_CHECKING:
    from usblp_emu._driver import Usblp
    from usblp_emu._usbcore import Interface

__all__ = ["UnprotectedStrategy"]


class UnprotectedStrategy(Strategy):
    """Mainline's paths with the global mutex removed and nothing in its place."""

    name = "unprotected"
    summary = "no existence guarantee (negative control)"

    def open(self, minor: int) -> Usblp | int:
        if minor < 0:
            return -errno.ENODEV
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
        usblp.used.store(0)
        present = usblp.present.load()
        if present:
            self.driver.unlink_urbs(usblp)
        self.core.autopm_put(usblp.intf)
        if not present:
            self.driver.cleanup(usblp)
        return 0

    def disconnect(self, intf: Interface) -> None:
        usblp = intf.intfdata.load()
        self.core.deregister_dev(intf)
        self.driver.mark_gone(usblp, intf)
        if not usblp.used.load():
            self.driver.cleanup(usblp)

"""The root hub of VirtualBackend's bus: the printers' parent, as libusb lists it on Linux.

libusb on Linux enumerates each bus's root hub (vendor 1d6b "Linux Foundation", product 0002
for a USB 2.0 hub, device class 9, address 1) and ``libusb_get_parent()`` of a device on a
root port returns it. The kernel's hub driver is always bound to its one interface, so a
program can read its descriptors but not claim it. Immutable.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

from usblp_emu._core._descriptors import (
    AltSetting,
    Completion,
    DeviceDescriptor,
    Endpoint,
    TransferFailed,
)
from usblp_emu._virtual._layout import UsbInfo

__all__ = ["HUB_CLASS", "RootHub"]

HUB_CLASS = 9
_INTERRUPT = 3


class RootHub:
    """A USB 2.0 root hub: descriptors only; every class request stalls."""

    def __init__(self) -> None:
        status_change = Endpoint(0x81, _INTERRUPT, 4)  # the hub's port-change bitmap
        alt = AltSetting(0, 0, HUB_CLASS, 0, 0, (status_change,))
        self.descriptor = DeviceDescriptor(
            0x1D6B, 0x0002, "Linux usblp-emu virtual_hcd", "Virtual Host Controller",
            "virtual_hcd.1", ((alt,),),
        )  # fmt: skip
        # bcdDevice of a Linux root hub is the kernel's version.
        self.usb_info = UsbInfo("high", 0x0200, 0x0601, 0, True)
        self.serial = self.descriptor.serial

    def connect(self, kick: Callable[[], None]) -> None:
        """The bus is built: nothing to remember."""

    def disconnect(self) -> None:
        """The bus is torn down."""

    def control(
        self, request_type: int, request: int, value: int, index: int, data: bytes | int
    ) -> bytes | int:
        """Hub class requests are the kernel's: a program's stall."""
        raise TransferFailed(-errno.EPIPE)

    def set_interface(self, number: int, alternate: int) -> None:
        """One alt setting: only 0."""
        if (number, alternate) != (0, 0):
            raise TransferFailed(-errno.EPIPE)

    def service(
        self, endpoint: int, length: int, payload: bytes, started: float, now: float
    ) -> Completion | float | None:
        """No port ever changes: the status endpoint never completes."""
        return None

    def cut(self, endpoint: int, payload: bytes, started: float, now: float) -> int:
        """Nothing ever goes out."""
        return 0

    def cancel(self, endpoint: int, started: float) -> None:
        """Nothing to undo."""

    def __repr__(self) -> str:
        return "<RootHub 1d6b:0002>"

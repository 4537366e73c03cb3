"""KernelView: a virtual printer as the emulated kernel's usblp sees it beside libusb.

On a desktop the kernel's usblp and a libusb program share one device: usblp's probe reads
the Device ID and picks an alt setting over control transfers, the program moves the data.
A KernelView is the DeviceModel a :class:`~usblp_emu.Host` drives for that: control requests
reach the printer, and bulk transfers never complete there (nothing opens ``/dev/usb/lp``).
Holds nothing but the printer; thread-safe as the printer is.
"""

from __future__ import annotations

from collections.abc import Callable

from usblp_emu._core._descriptors import Completion, DeviceDescriptor
from usblp_emu._virtual._printer import VirtualPrinter

__all__ = ["KernelView"]


class KernelView:
    """The printer as the emulated usblp sees it while libusb programs share the bus.

    Control requests (usblp's probe reads the Device ID, selects the alt setting) reach the
    printer; bulk transfers are the program's, and nothing here opens ``/dev/usb/lp``, so no
    URB of usblp's ever completes.
    """

    def __init__(self, printer: VirtualPrinter) -> None:
        self.printer = printer

    @property
    def descriptor(self) -> DeviceDescriptor:
        """The printer's descriptors."""
        return self.printer.descriptor

    def connect(self, kick: Callable[[], None]) -> None:
        """The program's bus, not the host's, owns the printer's link."""

    def disconnect(self) -> None:
        """As connect."""

    def control(
        self, request_type: int, request: int, value: int, index: int, data: bytes | int
    ) -> bytes | int:
        """The printer answers."""
        return self.printer.control(request_type, request, value, index, data)

    def set_interface(self, number: int, alternate: int) -> None:
        """The printer checks the alt setting."""
        self.printer.set_interface(number, alternate)

    def service(
        self, endpoint: int, length: int, payload: bytes, started: float, now: float
    ) -> Completion | float | None:
        """Never done: the data path is the program's."""
        return None

    def cancel(self, endpoint: int, started: float) -> None:
        """Nothing was in flight on the printer."""

    def suspend(self) -> None:
        """Runtime PM: nothing to do."""

    def resume(self) -> None:
        """Runtime PM: nothing to do."""

"""virtual_usb(): virtual printers behind pyusb's default backend, for unchanged programs.

``usb.core.find()`` without a ``backend`` asks ``usb.backend.libusb1.get_backend()`` first,
which loads libusb once and caches pyusb's backend object in the module (``_lib``, the
library; ``_lib_object``, the backend). :func:`virtual_usb` fills that cache with pyusb's own
libusb1 backend over a :class:`~usblp_emu._virtual._libusb.VirtualLibusb`, so pyusb's lookup
finds the virtual printers by itself: ``find`` is not replaced, and every program, library
or test that asks pyusb for its default backend (``libusb_package.find()`` too) gets them.

Rules:
- Process-wide, like the cache it fills: one ``virtual_usb`` at a time per process (nesting
  works, inner first out; parallel threads entering their own do not).
- On exit the cache is put back as it was, the printers are unplugged, and pyusb objects
  still alive that point into the virtual library are marked finalized, so a later real
  libusb never receives a virtual pointer (pyusb frees devices and descriptor lists from
  finalizers through the module's ``_lib``, whatever library it holds then).
"""

from __future__ import annotations

import ctypes
import errno
import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from usb.backend import libusb1

from usblp_emu._errors import EmulatorUsageError
from usblp_emu._virtual._backend import KernelDriver, VirtualBackend
from usblp_emu._virtual._libusb import VirtualLibusb
from usblp_emu._virtual._printer import VirtualPrinter

__all__ = ["virtual_usb"]


@contextmanager
def virtual_usb(
    printers: Iterable[VirtualPrinter] = (),
    *,
    kernel_driver: bool = True,
    first_unplug_error: int = errno.ENODEV,
    kernel: KernelDriver | None = None,
) -> Iterator[VirtualBackend]:
    r"""Make ``printers`` what pyusb's default backend finds, until the block ends.

    Args:
        printers: plugged at once, in order (more can be plugged through the bus yielded).
        kernel_driver: usblp is bound to each printer interface, as on a desktop Linux
            (programs must detach it); False: unconfigured, no driver.
        first_unplug_error: the errno of the first failure after an unplug (see
            :class:`VirtualBackend`).
        kernel: told of each bind and unbind of the kernel's driver (see
            :class:`VirtualBackend`).

    Yields:
        The bus (a :class:`VirtualBackend`): ``plug``, ``unplug``, ``unplug_after``,
        ``printers``.

    Raises:
        EmulatorUsageError: pyusb has no libusb1 backend module (too old a pyusb).

    Example::

        with virtual_usb([VirtualPrinter(vendor_id=0x04B8, product_id=0x0202)]) as bus:
            escpos.printer.Usb(0x04B8, 0x0202).text("hello\\n")
        assert bus_printer.received.startswith(b"hello")

    """
    if not hasattr(libusb1, "_lib_object") or not hasattr(libusb1, "_LibUSB"):
        raise EmulatorUsageError("this pyusb has no libusb1 backend cache to fill (pyusb >= 1.2)")
    bus = VirtualBackend(
        printers, kernel_driver=kernel_driver, first_unplug_error=first_unplug_error, kernel=kernel
    )
    lib = VirtualLibusb(bus)
    saved = (libusb1._lib, libusb1._lib_object)
    libusb1._lib = lib
    libusb1._lib_object = libusb1._LibUSB(lib)
    try:
        yield bus
    finally:
        libusb1._lib, libusb1._lib_object = saved
        bus.close()
        _retire(lib)


def _retire(lib: VirtualLibusb) -> None:
    """Mark pyusb's live wrappers of ``lib``'s pointers finalized (see the module's rules)."""
    gc.collect()  # the unreachable ones finalize now, while they still can
    kinds = (libusb1._Device, libusb1._DevIterator, libusb1._ConfigDescriptor)
    for obj in gc.get_objects():
        if isinstance(obj, kinds) and not obj._finalize_called and _points_into(obj, lib):
            obj._finalize_called = True


def _points_into(obj: object, lib: VirtualLibusb) -> bool:
    if isinstance(obj, libusb1._Device):
        return lib.owns(getattr(obj, "devid", None))
    if isinstance(obj, libusb1._DevIterator):
        return lib.owns(_address(getattr(obj, "dev_list", None)))
    # A configuration descriptor points into a tree this library built: its device's.
    return lib.owns_tree(_address(getattr(obj, "desc", None)))


def _address(pointer: object) -> int | None:
    if pointer is None:
        return None
    return ctypes.cast(pointer, ctypes.c_void_p).value  # type: ignore[arg-type]

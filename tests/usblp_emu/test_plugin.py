"""The pytest plugin's fixtures: each test gets its printers, found by pyusb's default backend."""

from __future__ import annotations

import pytest
import usb.core
from usb.backend import libusb1

from usblp_emu import EscPosStatus, VirtualBackend, VirtualPrinter
from usblp_emu._plugin import _make

SHARED = VirtualPrinter(serial="SHARED")


def test_without_the_marker_one_default_printer_with_usblp_bound(virtual_usb, virtual_printer):
    assert isinstance(virtual_usb, VirtualBackend)
    assert virtual_usb.printers == (virtual_printer,)
    device = usb.core.find(idProduct=0x0104)  # no backend: pyusb's default finds it
    assert device is not None and device.serial_number == "VP0001"
    assert device.is_kernel_driver_active(0)


@pytest.mark.virtual_printers(
    {"vendor_id": 0x04B8, "product_id": 0x0202, "protocols": (2,), "firmware": EscPosStatus()},
    lambda: VirtualPrinter(serial="MADE"),
    SHARED,
    kernel_driver=False,
)
def test_the_marker_chooses_the_printers(virtual_usb, virtual_printer):
    assert [p.serial for p in virtual_usb.printers] == ["VP0001", "MADE", "SHARED"]
    assert virtual_printer.descriptor.vendor_id == 0x04B8
    device = usb.core.find(idVendor=0x04B8)
    assert device.is_kernel_driver_active(0) is False  # kernel_driver=False
    device.set_configuration()
    device.write(0x01, b"\x10\x04\x01", 100)
    assert bytes(device.read(0x82, 16, 100)) == b"\x12"


def test_after_the_fixture_pyusb_is_itself_again():
    assert not isinstance(libusb1._lib_object, libusb1._LibUSB) or not hasattr(
        libusb1._lib_object.lib, "backend"
    )
    assert not SHARED.plugged


def test_a_bad_printer_in_the_marker_is_a_usage_error():
    with pytest.raises(pytest.UsageError, match="takes VirtualPrinter keyword dicts"):
        _make(42)
    with pytest.raises(pytest.UsageError):
        _make(lambda: "not a printer")

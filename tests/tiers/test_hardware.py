"""Against a real USB printer, when one is attached (skipped, with the reason, when not).

Read-only by default: discovery, Device ID, port status, and the emulated driver probing it
through pyusb and giving it back. Set USBLP_EMU_HARDWARE_WRITE=1 to also send a harmless job
(a PJL Universal Exit Language sequence, which PJL printers ignore; others may print it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from usblp_emu import (
    LPIOC_GET_DEVICE_ID,
    DeviceError,
    Host,
    NoUsbBackend,
    PyusbModel,
    PyusbPrinter,
    find_printers,
)

pytestmark = pytest.mark.hardware

UEL = b"\x1b%-12345X"


@pytest.fixture
def printer() -> Iterator[PyusbPrinter]:
    try:
        printers = find_printers()
    except (NoUsbBackend, DeviceError) as exc:
        pytest.skip(f"no USB access here: {exc}")
    if not printers:
        pytest.skip("no USB printer attached (plug one in to run the hardware tests)")
    yield printers[0]


def test_device_id_and_status(printer):
    with printer:
        device_id = printer.device_id()
        status = printer.port_status()
    assert device_id.text
    assert device_id.manufacturer or device_id.model
    assert 0 <= status.raw <= 0xFF


def test_the_emulated_driver_probes_it_and_gives_it_back(printer):
    had_driver = printer.kernel_driver_active()
    host = Host("hazard")
    model = PyusbModel(printer)
    try:
        minor = host.plug(model)
        with host.open(minor) as f:
            answer = f.ioctl(LPIOC_GET_DEVICE_ID(1024))
            assert len(answer) > 2
            if os.environ.get("USBLP_EMU_HARDWARE_WRITE") == "1":
                assert f.write(UEL) == len(UEL)
    finally:
        host.close()
    host.check()
    assert printer.kernel_driver_active() == had_driver  # usblp re-attached if it was bound

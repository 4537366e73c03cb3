"""Real pyusb printer applications, unchanged, against virtual printers: byte-exact.

Each application is installed from PyPI (``pip install -e ".[apps]"``) and prints through its
own USB code (``usb.core.find()`` with pyusb's default backend, the kernel-driver dance, its
status handshake) to a virtual printer that has usblp bound, as on a desktop; what the
printer received must equal what the same application writes offline (its dummy or file
output). Without the extra these tests skip, naming it; with ``USBLP_EMU_APPS=1`` (CI) a
missing application fails instead.
"""

from __future__ import annotations

import errno
import hashlib
import importlib
import io
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import usb.core

from usblp_emu import (
    BrotherQLStatus,
    DymoStatus,
    EscPosStatus,
    PaperState,
    VirtualBackend,
    VirtualPrinter,
)

pytestmark = [
    pytest.mark.apps,
    # The applications' own deprecated calls (brother_ql's logger.warn), not ours.
    pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning"),
]

STRICT = os.environ.get("USBLP_EMU_APPS") == "1"


def need(module: str) -> ModuleType:
    """Import an application, or skip (fail under USBLP_EMU_APPS=1) naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if STRICT:
            pytest.fail(f"{module} is not installed (pip install -e '.[apps]'): {exc}")
        pytest.skip(f"{module} is not installed: pip install -e '.[apps]'")


EPSON: dict[str, Any] = {"vendor_id": 0x04B8, "product_id": 0x0202, "protocols": (2,)}


def receipt(p: Any) -> None:
    """The same job on a python-escpos printer, online or offline."""
    p.text("Hello from usblp-emu\n")
    p.set(bold=True, double_height=True)
    p.text("TOTAL 12.50\n")
    p.barcode("4006381333931", "EAN13")
    p.cut()


# -- python-escpos -------------------------------------------------------------------------------


@pytest.mark.virtual_printers(dict(EPSON, firmware=EscPosStatus()))
def test_python_escpos_usb_prints_byte_exact_with_usblp_bound(virtual_printer):
    printer = need("escpos.printer")
    offline = printer.Dummy()
    receipt(offline)
    assert virtual_printer.plugged
    usb_printer = printer.Usb(0x04B8, 0x0202)  # detaches usblp: the backend is libusb1's
    receipt(usb_printer)
    assert virtual_printer.received == offline.output


def test_python_escpos_status_through_the_firmware(virtual_usb):
    printer = need("escpos.printer")
    firmware = EscPosStatus(paper=PaperState.NEAR_END)
    virtual_usb.plug(VirtualPrinter(**EPSON, firmware=firmware))
    usb_printer = printer.Usb(0x04B8, 0x0202)
    assert usb_printer.is_online() is True
    assert usb_printer.paper_status() == 1  # near end
    firmware.online, firmware.paper = False, PaperState.OUT
    assert usb_printer.is_online() is False
    assert usb_printer.paper_status() == 0


def test_python_escpos_on_a_plain_virtual_backend_is_busy():
    # Negative control: handed VirtualBackend directly (module name not ...libusb1),
    # python-escpos skips its detach, and usblp still holds the printer.
    printer = need("escpos.printer")
    with VirtualBackend([VirtualPrinter(**EPSON)]) as bus:
        usb_printer = printer.Usb(0x04B8, 0x0202, usb_args={"backend": bus})
        with pytest.raises(usb.core.USBError) as info:
            usb_printer.text("x")
        assert info.value.errno == errno.EBUSY


# -- brother_ql ------------------------------------------------------------------------------------

QL800: dict[str, Any] = {
    "vendor_id": 0x04F9,
    "product_id": 0x209B,
    "protocols": (2,),
    "device_id": "MFG:Brother;CMD:PT-CBP;MDL:QL-800;CLS:PRINTER;",
}


def ql_label() -> tuple[Any, bytes]:
    """A 62 mm label and brother_ql's own raster for it."""
    need("brother_ql")
    from brother_ql.conversion import convert
    from brother_ql.raster import BrotherQLRaster
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (696, 120), "white")
    ImageDraw.Draw(image).rectangle((20, 20, 300, 100), fill="black")
    qlr = BrotherQLRaster("QL-800")
    qlr.exception_on_warning = True
    return image, bytes(convert(qlr, [image], "62", cut=True))


@pytest.mark.virtual_printers(dict(QL800, firmware=BrotherQLStatus()))
def test_brother_ql_prints_and_sees_printing_completed(virtual_printer):
    helpers = need("brother_ql.backends.helpers")
    _, instructions = ql_label()
    status = helpers.send(instructions, "usb://0x04f9:0x209b", "pyusb", blocking=True)
    assert virtual_printer.received == instructions
    assert status["did_print"] and status["ready_for_next_job"]
    assert status["outcome"] == "printed"
    assert virtual_printer.firmware.pages == 1
    assert virtual_printer.plugged  # brother_ql re-attached usblp and left


@pytest.mark.virtual_printers(dict(QL800, firmware=BrotherQLStatus(errors=(0x01, 0))))
def test_brother_ql_reports_the_printers_error(virtual_printer):
    helpers = need("brother_ql.backends.helpers")
    _, instructions = ql_label()
    status = helpers.send(instructions, "usb://0x04f9:0x209b", "pyusb", blocking=True)
    assert status["outcome"] == "error"
    assert status["printer_state"]["errors"] == ["No media when printing"]


# -- ptouch --------------------------------------------------------------------------------------


def test_ptouch_prints_byte_exact(virtual_usb):
    ptouch = need("ptouch")
    from PIL import Image, ImageDraw

    base: Any = ptouch.Connection

    class Collect(base):  # type: ignore[misc]  # ptouch's own connection interface, offline
        def __init__(self) -> None:
            self.data = bytearray()

        def connect(self, printer: Any) -> None:
            pass

        def write(self, payload: bytes) -> None:
            self.data += payload

        def close(self) -> None:
            pass

    def job(connection: Any) -> None:
        image = Image.new("1", (200, 64), 1)
        ImageDraw.Draw(image).rectangle((10, 10, 150, 50), fill=0)
        printer = ptouch.PTP750W(connection)
        printer.print(ptouch.Label(image, ptouch.Tape12mm))
        connection.close()

    firmware = BrotherQLStatus()
    virtual = VirtualPrinter(vendor_id=0x04F9, product_id=0x2065, protocols=(2,), firmware=firmware)
    virtual_usb.plug(virtual)
    offline = Collect()
    job(offline)
    job(ptouch.ConnectionUSB())
    assert virtual.received == bytes(offline.data)
    assert firmware.pages == 1


# -- labelle (DYMO LabelManager) ---------------------------------------------------------------


class _Offline:
    """labelle's device, offline: a file for its OUT endpoint, the DYMO's status for IN."""

    def __init__(self) -> None:
        self.devout = io.BytesIO()
        self.devin = self

    def read(self, size: int) -> list[int]:
        return [0]  # ESC A's answer: ready

    def dispose(self) -> None:
        pass


def test_labelle_prints_byte_exact(virtual_usb):
    need("labelle")
    from labelle.lib.devices.dymo_labeler import DymoLabeler
    from labelle.lib.devices.usb_device import UsbDevice
    from PIL import Image, ImageDraw

    labeler = DymoLabeler(tape_size_mm=12)
    bitmap = Image.new("1", (120, labeler.height_px), 0)
    ImageDraw.Draw(bitmap).rectangle((10, 5, 100, 40), fill=1)
    offline = _Offline()
    labeler._device = offline  # labelle's own print path, offline
    labeler.print(bitmap.copy())
    firmware = DymoStatus()
    printer = VirtualPrinter(
        vendor_id=0x0922,
        product_id=0x1001,
        protocols=(2,),
        speed="full",
        manufacturer="DYMO",
        product="LabelManager PnP",
        firmware=firmware,
    )
    virtual_usb.plug(printer)
    (device,) = [d for d in UsbDevice.supported_devices() if d.is_supported]
    online = DymoLabeler(tape_size_mm=12)
    online.device = device  # setup(): configuration, usblp detached, endpoints
    assert online.is_ready
    online.print(bitmap.copy())
    assert printer.received == offline.devout.getvalue()
    assert firmware.lines > 0


# -- escpos-thermal ---------------------------------------------------------------------------


def test_escpos_thermal_prints_byte_exact(virtual_usb):
    need("escpos_thermal")
    from escpos_thermal.connectors.dummy_connector import DummyConnector
    from escpos_thermal.connectors.usb_connector import USBConnector
    from escpos_thermal.printer import Printer

    def job(printer: Any) -> None:
        printer.text("Hello from escpos-thermal\n")
        printer.feed(2)
        printer.cut()

    dummy = DummyConnector()
    job(Printer(dummy))
    offline = dummy.get_data()
    dummy.finalize()
    printer = VirtualPrinter(**EPSON)
    virtual_usb.plug(printer)
    online = Printer(USBConnector(0x04B8, 0x0202))
    job(online)
    online.close()
    assert printer.received == offline


# -- through usblp-emu run ---------------------------------------------------------------------


def test_brother_ql_cli_unchanged_through_usblp_emu_run(tmp_path: Path):
    need("brother_ql")
    image, instructions = ql_label()
    png = tmp_path / "label.png"
    image.save(png)
    spec = "04f9:209b,protocols=2,firmware=brother,id=MFG:Brother;CMD:PT-CBP;MDL:QL-800;"
    command = [sys.executable, "-m", "usblp_emu", "run", "--printer", spec, "--"]
    command += ["-m", "brother_ql.cli", "-b", "pyusb", "-m", "QL-800"]
    command += ["-p", "usb://0x04f9:0x209b", "print", "-l", "62", str(png)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    digest = hashlib.sha256(instructions).hexdigest()
    assert f"{len(instructions)} bytes, sha256 {digest}" in done.stderr
    assert "heap: clean" in done.stderr
    assert "probed 2 time(s), disconnected 2" in done.stderr  # detach, re-attach, exit


def test_python_escpos_unplugged_mid_job_through_usblp_emu_run(tmp_path: Path):
    need("escpos.printer")
    script = tmp_path / "receipt.py"
    script.write_text(
        "from escpos.printer import Usb\np = Usb(0x04b8, 0x0202)\np.text('x' * 5000)\n"
    )
    command = [sys.executable, "-m", "usblp_emu", "run", "--printer", "04b8:0202,protocols=2"]
    command += ["--unplug-after", "1000", "--", str(script)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1  # the program's: its uncaught USBError
    assert "No such device (it may have been disconnected)" in done.stderr
    assert "(unplugged): 1000 bytes" in done.stderr
    assert "heap: clean" in done.stderr

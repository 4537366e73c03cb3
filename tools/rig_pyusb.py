"""Inside the kernel rig's guest: the pyusb transport against the real USB printer gadget.

Run by ``tests/tiers/test_kernel_pyusb.py`` through ``kernel_rig.run_in_guest``. It checks, on a
real kernel's USB stack (dummy_hcd + the configfs f_printer gadget, usblp bound to it):

1. discovery by interface class 7, usblp bound; the Device ID and the port status through
   pyusb (usblp detached from the printer interface only, re-attached on close);
2. a byte-exact 1 MB job written with ``PyusbPrinter.write`` and read back on the gadget;
3. the emulated driver (``Host`` + ``PyusbModel``) printing while the printer is unplugged
   mid-job: the writer's error is EIO or ENODEV, the disconnect path runs, and the emulated
   heap shows nothing leaked or freed twice.

Prints one JSON object (every check with its outcome) and exits 0 when all held, 1 if not.
libusb comes from libusb-package: Debian's libusb, without udevd in the guest, never notices
that a device left (its device list goes stale); the bundled one does.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Run as a script (python tools/NAME.py), sys.path has tools/: add the root, so `tools` imports.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import libusb_package

from tools import rig_guest
from usblp_emu import (
    DeviceError,
    Host,
    PyusbModel,
    PyusbPrinter,
    find_printers,
)

MEGABYTE = 1 << 20
UNPLUG_METHOD = os.environ.get("RIG_UNPLUG", "soft-disconnect")


def pattern(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


def check(results: dict[str, Any], name: str, fn: Callable[[], Any]) -> Any:
    started = time.monotonic()
    try:
        value = fn()
    except Exception as exc:  # a check's failure is a result to report, not a crash
        results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        return None
    results[name] = {"ok": True, "value": value, "seconds": round(time.monotonic() - started, 3)}
    return value


def the_printer() -> PyusbPrinter:
    printers = find_printers(libusb_package.get_libusb1_backend())
    if len(printers) != 1:
        raise AssertionError(f"expected the gadget alone, found {printers}")
    return printers[0]


def discovery() -> dict[str, Any]:
    printer = the_printer()
    usblp_bound = printer.kernel_driver_active()
    with printer:
        device_id = printer.device_id()
        status = printer.port_status()
        detached = not printer.kernel_driver_active()
    rig_guest.wait_for("/dev/usb/lp0", 10.0)  # usblp re-attached on close
    expected = os.environ.get("RIG_DEVICE_ID", "")
    if device_id.text != expected:
        raise AssertionError(f"Device ID {device_id.text!r} != configured {expected!r}")
    if not usblp_bound or not detached:
        raise AssertionError(f"usblp bound before {usblp_bound}, detached while open {detached}")
    return {
        "bus_address": f"{printer.bus}:{printer.address}",
        "vid_pid": f"{printer.vendor_id:04x}:{printer.product_id:04x}",
        "protocols": sorted({i.protocol for i in printer.interfaces}),
        "device_id": device_id.text,
        "port_status": f"0x{status.raw:02x} ({status.describe()})",
    }


def one_megabyte() -> dict[str, Any]:
    printer = the_printer()
    data = pattern(MEGABYTE)
    started = time.monotonic()
    with rig_guest.GadgetSink() as sink, printer:
        written = printer.write(data, timeout=10.0)
        got = sink.wait(len(data), 30.0)
    seconds = time.monotonic() - started
    if written != len(data) or got != data:
        raise AssertionError(f"wrote {written}, the gadget got {len(got)} bytes, not equal")
    rig_guest.wait_for("/dev/usb/lp0", 10.0)
    return {"bytes": written, "seconds": round(seconds, 3)}


def unplug_mid_job(strategy: str) -> dict[str, Any]:
    printer = the_printer()
    host = Host(strategy)
    gone = threading.Event()

    def on_gone(model: PyusbModel) -> None:
        gone.set()
        threading.Thread(target=host.unplug, args=(model,), daemon=True).start()

    model = PyusbModel(printer, on_gone=on_gone)
    minor = host.plug(model)
    outcome: dict[str, Any] = {}

    def writer() -> None:
        f = host.open(minor)
        try:
            outcome["written"] = f.write(pattern(4 * MEGABYTE))
        except DeviceError as exc:
            outcome["errno"] = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        finally:
            f.close()

    thread = threading.Thread(target=writer, name="writer")
    thread.start()
    # Nobody reads the gadget: its primed buffers (q_len x 8 KiB) fill and the writer blocks.
    time.sleep(1.5)
    if not thread.is_alive():
        raise AssertionError(f"the writer did not block: {outcome}")
    rig_guest.unplug(UNPLUG_METHOD)
    thread.join(30.0)
    if thread.is_alive():
        raise AssertionError("the writer was not woken by the unplug")
    if not gone.wait(10.0):
        raise AssertionError("no transfer reported the printer gone")
    host.close()
    host.check()  # raises UseAfterFree / DoubleFree / HeapLeak...
    if outcome.get("errno") not in ("EIO", "ENODEV"):
        raise AssertionError(f"writer ended with {outcome}, not EIO or ENODEV")
    rig_guest.replug()
    return {
        "method": UNPLUG_METHOD,
        "writer": outcome["errno"],
        "heap": "clean",
    }


def main() -> int:
    results: dict[str, Any] = {}
    check(results, "discovery", discovery)
    check(results, "one_megabyte", one_megabyte)
    for strategy in ("static-mutex", "hazard"):
        check(results, f"unplug_mid_job[{strategy}]", functools.partial(unplug_mid_job, strategy))
    ok = all(r["ok"] for r in results.values())
    print(json.dumps({"ok": ok, "checks": results}, indent=2))
    out = os.environ.get("RIG_OUT")
    if out:
        Path(out, "rig_pyusb.json").write_text(json.dumps(results, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

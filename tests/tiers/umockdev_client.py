"""Client side of the umockdev tier: scenarios run on real libusb under umockdev's preload.

tests/tiers/test_umockdev.py runs this file as a script, with
``LD_PRELOAD=libumockdev-preload.so.0`` and ``UMOCKDEV_DIR`` pointing at the testbed of
tools/umockdev_printer.py: the pytest process itself is not preloaded, so everything that
touches libusb happens here, in a child.

Usage: ``python tests/tiers/umockdev_client.py SCENARIO [JSON-ARGS]``. It prints ``EVENT <name>
<json>`` lines while it runs (the test may wait for one before changing the device) and ends
with one ``RESULT <json>`` line. Errors are recorded, not raised, as ``{"type", "errno",
"written", "remedy", "message"}`` so the test can assert on the exact typed error.

Everything goes through the project's pyusb transport (``usblp_emu._pyusb._transport``); raw
pyusb appears only where a scenario shows what the transport protects against (claiming an
interface usblp holds) and for libusb's hotplug callback, which pyusb does not wrap.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import usb.backend.libusb1
import usb.core
import usb.util

from usblp_emu import DeviceError
from usblp_emu._pyusb._transport import PyusbPrinter, default_backend, find_printers

LIBUSB_HOTPLUG_ARRIVED = 1
LIBUSB_HOTPLUG_LEFT = 2
LIBUSB_HOTPLUG_MATCH_ANY = -1


def select_libusb(which: str) -> None:
    """Make ``which`` libusb the one default_backend() returns in this process.

    ``bundled`` is libusb-package's (netlink hotplug, no udev: what a user without a system
    libusb gets), ``system`` the distribution's (udev). pyusb caches the first libusb1
    backend it builds, and default_backend() asks pyusb for it, so loading ours first is
    enough: the scenarios then call the transport exactly as users do, backend=None.
    """
    if which == "bundled":
        import libusb_package

        backend = libusb_package.get_libusb1_backend()
    else:
        backend = usb.backend.libusb1.get_backend()
    if backend is None or default_backend() is not backend:
        raise AssertionError(f"could not make the {which} libusb the default backend")


def job_bytes(size: int, seed: int = 7) -> bytes:
    """Deterministic, incompressible-looking print data (the test recomputes the same)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def event(name: str, **data: Any) -> None:
    """Tell the test something happened; it may be waiting for this line."""
    print(f"EVENT {name} {json.dumps(data)}", flush=True)


def error_info(exc: BaseException) -> dict[str, Any]:
    """A typed error as JSON: which class, errno, bytes written before it, remedy."""
    return {
        "type": type(exc).__name__,
        "bases": [cls.__name__ for cls in type(exc).__mro__],
        "errno": getattr(exc, "errno", None),
        "written": getattr(exc, "written", None),
        "remedy": getattr(exc, "remedy", None),
        "message": str(exc),
    }


def attempt(fn: Callable[[], Any]) -> dict[str, Any]:
    """Run ``fn``: ``{"value": ...}`` or ``{"error": ...}``."""
    try:
        value = fn()
    except Exception as exc:  # recorded for the test to judge, whatever it is
        return {"error": error_info(exc)}
    return {"value": value}


def describe(p: PyusbPrinter) -> dict[str, Any]:
    """What discovery tells about a printer."""
    return {
        "bus": p.bus,
        "address": p.address,
        "vendor_id": p.vendor_id,
        "product_id": p.product_id,
        "serial": p.serial,
        "manufacturer": p.manufacturer,
        "product": p.product,
        "interfaces": [
            {
                "configuration": i.configuration,
                "interface": i.interface,
                "alternate": i.alternate,
                "protocol": i.protocol,
                "ep_out": i.ep_out,
                "ep_in": i.ep_in,
            }
            for i in p.interfaces
        ],
    }


def the_printer(serial: str | None = None) -> PyusbPrinter:
    """The one printer with ``serial`` (or the only one)."""
    printers = [p for p in find_printers() if serial is None or p.serial == serial]
    if len(printers) != 1:
        raise AssertionError(f"expected one printer, found {printers}")
    return printers[0]


def libusb_info() -> dict[str, Any]:
    """Which libusb pyusb loaded, and its version."""

    class Version(ctypes.Structure):
        _fields_ = (
            ("major", ctypes.c_uint16),
            ("minor", ctypes.c_uint16),
            ("micro", ctypes.c_uint16),
            ("nano", ctypes.c_uint16),
            ("rc", ctypes.c_char_p),
            ("describe", ctypes.c_char_p),
        )

    lib = default_backend().lib
    lib.libusb_get_version.restype = ctypes.POINTER(Version)
    version = lib.libusb_get_version().contents
    return {
        "path": lib._name,
        "version": f"{version.major}.{version.minor}.{version.micro}.{version.nano}",
        "hotplug": bool(lib.libusb_has_capability(0x0001)),
    }


# -- scenarios ---------------------------------------------------------------------------------


def scenario_discover(args: dict[str, Any]) -> dict[str, Any]:
    """find_printers(): every printer-class device, not the root hub; and which libusb."""
    backend = default_backend()
    every = [
        {"bus": d.bus, "address": d.address, "class": d.bDeviceClass}
        for d in usb.core.find(find_all=True, backend=backend)
    ]
    return {
        "libusb": libusb_info(),
        "all_devices": every,
        "printers": [describe(p) for p in find_printers()],
        "printers_default_arg": len(find_printers(backend=None)),
    }


def scenario_kernel_driver(args: dict[str, Any]) -> dict[str, Any]:
    """usblp holds the interface: a raw claim is EBUSY; open() detaches; close() re-attaches."""
    p = the_printer()
    before = p.kernel_driver_active()
    number = p.interfaces[0].interface
    try:
        usb.util.claim_interface(p.device, number)
    except usb.core.USBError as exc:
        raw_claim: dict[str, Any] = {"errno": exc.errno}
    else:
        raw_claim = {"errno": None}
        usb.util.release_interface(p.device, number)
    usb.util.dispose_resources(p.device)
    with p:
        inside = p.kernel_driver_active()
        opened = p.opened.interface if p.opened is not None else None
        event("opened")
    after = p.kernel_driver_active()
    return {
        "before": before,
        "raw_claim": raw_claim,
        "inside": inside,
        "opened_interface": opened,
        "after": after,
    }


def scenario_busy(args: dict[str, Any]) -> dict[str, Any]:
    """Another handle (another program, as libusb sees it) holds the interface: Busy."""
    first = the_printer()
    second = the_printer()  # a second libusb handle: its own file, as a second program has
    with first:
        result = attempt(second.open)
        if "error" not in result:
            second.close()
            result = {"value": "opened twice"}
    return {"second_open": result}


def scenario_identity(args: dict[str, Any]) -> dict[str, Any]:
    """GET_DEVICE_ID, GET_PORT_STATUS and SOFT_RESET through the transport."""
    p = the_printer(args.get("serial"))
    with p:
        if args.get("protocol") is not None:
            p.close()
            p.open(protocol=int(args["protocol"]))
        opened = p.opened
        device_id = p.device_id()
        status = p.port_status()
        reset = attempt(p.soft_reset)
    return {
        "opened": None
        if opened is None
        else {"interface": opened.interface, "alt": opened.alternate},
        "device_id": {
            "text": device_id.text,
            "manufacturer": device_id.manufacturer,
            "model": device_id.model,
            "command_set": list(device_id.command_set),
            "serial": device_id.serial,
            "fields": dict(device_id.fields),
        },
        "port_status": {
            "raw": status.raw,
            "paper_empty": status.paper_empty,
            "selected": status.selected,
            "no_error": status.no_error,
        },
        "soft_reset": reset,
        "uri": p.uri(device_id),
    }


def scenario_print(args: dict[str, Any]) -> dict[str, Any]:
    """A job of ``size`` bytes in ``chunk`` transfers; returns count, progress, timing."""
    size = int(args.get("size", 256 * 1024))
    data = job_bytes(size)
    progress: list[int] = []
    p = the_printer(args.get("serial"))
    with p:
        started = time.monotonic()
        result = attempt(
            lambda: p.write(
                data,
                timeout=args.get("timeout", 5.0),
                chunk_size=int(args.get("chunk", 8192)),
                progress=progress.append,
            )
        )
        elapsed = time.monotonic() - started
        again = attempt(lambda: p.write(b"\x1b@", timeout=1.0)) if args.get("again") else None
    return {
        "write": result,
        "again": again,
        "progress_calls": len(progress),
        "last_progress": progress[-1] if progress else 0,
        "seconds": elapsed,
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def scenario_read(args: dict[str, Any]) -> dict[str, Any]:
    """The back channel: what is queued comes back; nothing queued is b"" after the timeout."""
    p = the_printer()
    with p:
        first = p.read(512, timeout=1.0)
        started = time.monotonic()
        empty = p.read(512, timeout=0.2)
        waited = time.monotonic() - started
    return {"first": first.hex(), "empty": empty.hex(), "waited": waited}


def scenario_unplug(args: dict[str, Any]) -> dict[str, Any]:
    """A job the printer stops taking; the test unplugs it; what every later call says."""
    size = int(args.get("size", 256 * 1024))
    data = job_bytes(size)
    p = the_printer()
    p.open()
    event("writing")
    started = time.monotonic()
    job = attempt(lambda: p.write(data, timeout=args.get("timeout")))
    elapsed = time.monotonic() - started
    time.sleep(float(args.get("pause", 0.0)))  # let a delayed disconnect happen first
    later = {
        "write": attempt(lambda: p.write(b"more", timeout=1.0)),
        "device_id": attempt(lambda: p.device_id().text),
        "port_status": attempt(lambda: p.port_status().raw),
        "read": attempt(lambda: p.read(64, timeout=0.2).hex()),
    }
    closed = attempt(p.close)
    return {
        "job": job,
        "seconds": elapsed,
        "later": later,
        "close": closed,
        "present": p.present(),
        "printers_after": [d["serial"] for d in map(describe, find_printers())],
    }


def scenario_hotplug(args: dict[str, Any]) -> dict[str, Any]:
    """A second printer arrives: libusb's hotplug callback fires, find_printers() sees it."""
    backend = default_backend()
    lib = backend.lib
    seen: list[dict[str, Any]] = []
    callback_type = ctypes.CFUNCTYPE(
        ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p
    )

    # Our own prototype: pyusb declares this one with its private descriptor structure.
    get_descriptor = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)(
        ("libusb_get_device_descriptor", lib)
    )

    def on_hotplug(ctx: int, device: int, what: int, user_data: int) -> int:
        descriptor = (ctypes.c_uint8 * 18)()
        get_descriptor(device, descriptor)
        seen.append(
            {
                "event": "arrived" if what == LIBUSB_HOTPLUG_ARRIVED else "left",
                "bus": lib.libusb_get_bus_number(ctypes.c_void_p(device)),
                "address": lib.libusb_get_device_address(ctypes.c_void_p(device)),
                "vendor_id": int.from_bytes(bytes(descriptor[8:10]), "little"),
                "product_id": int.from_bytes(bytes(descriptor[10:12]), "little"),
            }
        )
        return 0  # keep the callback registered

    keep_alive = callback_type(on_hotplug)
    handle = ctypes.c_int()
    lib.libusb_hotplug_register_callback.argtypes = [
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        callback_type,
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_int),
    ]
    registered = lib.libusb_hotplug_register_callback(
        backend.ctx,
        LIBUSB_HOTPLUG_ARRIVED | LIBUSB_HOTPLUG_LEFT,
        0,  # no LIBUSB_HOTPLUG_ENUMERATE: only what arrives from now on
        LIBUSB_HOTPLUG_MATCH_ANY,
        LIBUSB_HOTPLUG_MATCH_ANY,
        LIBUSB_HOTPLUG_MATCH_ANY,  # libusb matches bDeviceClass only: filter interfaces later
        keep_alive,
        None,
        ctypes.byref(handle),
    )
    before = [describe(p) for p in find_printers()]

    class Timeval(ctypes.Structure):
        _fields_ = (("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long))

    def pump_until(kind: str, seconds: float) -> float | None:
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            if any(s["event"] == kind for s in seen):
                return time.monotonic() - started
            lib.libusb_handle_events_timeout(backend.ctx, ctypes.byref(Timeval(0, 50_000)))
        return None

    event("ready")
    arrived_after = pump_until("arrived", 10.0)
    after = [describe(p) for p in find_printers()]
    new = [p for p in find_printers() if p.serial == args.get("serial", "UMOCK0002")]
    used: dict[str, Any] = {}
    if new:
        printer = new[0]
        used["kernel_driver_before"] = printer.kernel_driver_active(
            printer.best_interface().interface
        )
        with printer:
            opened = printer.opened
            used["opened"] = (
                None
                if opened is None
                else {
                    "interface": opened.interface,
                    "alt": opened.alternate,
                    "protocol": opened.protocol,
                }
            )
            used["device_id"] = attempt(lambda: printer.device_id().text)
            used["port_status"] = attempt(lambda: printer.port_status().raw)
            used["write"] = attempt(lambda: printer.write(job_bytes(10_000, seed=2), timeout=5.0))
        used["kernel_driver_after"] = printer.kernel_driver_active(
            printer.best_interface().interface
        )
    event("used")
    left_after = pump_until("left", 10.0)
    lib.libusb_hotplug_deregister_callback(backend.ctx, handle)
    return {
        "registered": registered,
        "before": before,
        "after": after,
        "arrived_after": arrived_after,
        "left_after": left_after,
        "callbacks": seen,
        "used": used,
        "printers_at_end": [describe(p)["serial"] for p in find_printers()],
    }


SCENARIOS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "discover": scenario_discover,
    "kernel_driver": scenario_kernel_driver,
    "busy": scenario_busy,
    "identity": scenario_identity,
    "print": scenario_print,
    "read": scenario_read,
    "unplug": scenario_unplug,
    "hotplug": scenario_hotplug,
}


def main(argv: list[str]) -> int:
    """Run one scenario; its result (or the exception that ended it) is the RESULT line."""
    name = argv[1]
    args = json.loads(argv[2]) if len(argv) > 2 else {}
    try:
        select_libusb(str(args.get("libusb", "bundled")))
        result: dict[str, Any] = {"ok": True, **SCENARIOS[name](args)}
    except (DeviceError, usb.core.USBError, AssertionError, ValueError) as exc:
        result = {"ok": False, "error": error_info(exc)}
    print(f"RESULT {json.dumps(result)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

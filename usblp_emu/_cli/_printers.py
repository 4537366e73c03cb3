"""``usblp-emu list``, ``info`` and ``doctor``, and what the printer commands share.

Rules:
- The printer commands run against real printers through libusb, or, with the global
  ``--virtual N``, against N virtual printers through :class:`VirtualBackend`: the same code
  path from pyusb up.
- A user mistake or an environment problem (no libusb, no such device, no permission) is one
  line on stderr and exit status 2, with the remedy when we know it; never a raw USBError.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import usb.backend
from rich.console import Console
from rich.table import Table
from rich.text import Text

from usblp_emu._cli._common import PROG, Formatter, SubParsers, fail, print_json, say
from usblp_emu._errors import DeviceError, EmulatorUsageError
from usblp_emu._ieee1284 import DeviceId, MalformedDeviceId, parse_device_id
from usblp_emu._pyusb._sysfs import device_node, holders, interface_drivers, sysfs_device, udev_rule
from usblp_emu._pyusb._transport import (
    NoUsbBackend,
    PyusbPrinter,
    default_backend,
    find_printers,
)
from usblp_emu._virtual._backend import VirtualBackend
from usblp_emu._virtual._printer import VirtualPrinter

__all__ = ["Bus", "add_usb_commands", "open_bus", "problem_text", "select_printer"]


@dataclass
class Bus:
    """Where the printer commands look: libusb, or a VirtualBackend of virtual printers."""

    backend: usb.backend.IBackend
    virtual: VirtualBackend | None = None
    printers: tuple[VirtualPrinter, ...] = ()

    @property
    def label(self) -> str:
        """How the bus is described to the user."""
        if self.virtual is not None:
            return f"{len(self.printers)} virtual printer(s) through VirtualBackend"
        return "libusb"


def virtual_printer(index: int) -> VirtualPrinter:
    """The ``index``-th printer of ``--virtual N``: distinct serials and models."""
    serial = f"VP{index + 1:04d}"
    model = f"Laser {index + 1}"
    return VirtualPrinter(
        f"MFG:Acme;MDL:{model};CMD:PCL,PJL,POSTSCRIPT;CLS:PRINTER;SN:{serial};",
        serial=serial,
        product=model,
        product_id=0x0104 + index,
    )


def open_bus(virtual: int | None) -> Bus:
    """The bus for ``--virtual N`` (or libusb without it); fails with the remedy if none."""
    if virtual is not None:
        printers = tuple(virtual_printer(i) for i in range(virtual))
        backend = VirtualBackend(printers)
        return Bus(backend, backend, printers)
    try:
        return Bus(default_backend())
    except NoUsbBackend as exc:
        fail(str(exc))


def problem_text(exc: BaseException) -> str:
    """An error as one line, with its remedy."""
    text = str(exc)
    remedy = getattr(exc, "remedy", None)
    return f"{text} ({remedy})" if remedy else text


def scan(bus: Bus) -> list[PyusbPrinter]:
    """The printers on ``bus``; fails with one line if the bus cannot be listed."""
    try:
        return find_printers(bus.backend)
    except DeviceError as exc:
        fail(f"cannot list USB devices: {problem_text(exc)}")


_BUS_ADDRESS = re.compile(r"^(\d{1,3})[:/.-](\d{1,3})$")
_VID_PID = re.compile(r"^([0-9a-fA-F]{4}):([0-9a-fA-F]{4})$")


def select_printer(
    printers: Sequence[PyusbPrinter], spec: str | None, *, chooser: str = "--device"
) -> PyusbPrinter:
    """The printer ``spec`` names: BUS:ADDR, VID:PID, a serial number or a usb:// URI.

    Without a spec, the only printer there is. Fails (exit 2) when nothing or several match;
    ``chooser`` is how the command takes the spec (``--device``, or info's ``DEVICE``).
    """
    if spec is None:
        if len(printers) == 1:
            return printers[0]
        if not printers:
            fail(f"no printer found (see {PROG} doctor)")
        fail(f"{len(printers)} printers found; choose one with {chooser} ({_choices(printers)})")
    if m := _VID_PID.match(spec):
        vid, pid = int(m[1], 16), int(m[2], 16)
        matches = [p for p in printers if (p.vendor_id, p.product_id) == (vid, pid)]
    elif m := _BUS_ADDRESS.match(spec):
        key = (int(m[1]), int(m[2]))
        matches = [p for p in printers if (p.bus, p.address) == key]
    elif spec.startswith("usb://"):
        matches = [p for p in printers if p.uri() == spec or p.uri().split("?")[0] == spec]
    else:
        matches = [p for p in printers if p.serial == spec]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        fail(f"no printer matches {spec!r}; found: {_choices(printers) or 'none'}")
    return fail(f"{len(matches)} printers match {spec!r}; use BUS:ADDR ({_choices(matches)})")


def _choices(printers: Sequence[PyusbPrinter]) -> str:
    return ", ".join(f"{p.bus}:{p.address} serial {p.serial or '?'}" for p in printers)


def read_device_id(printer: PyusbPrinter) -> tuple[DeviceId | None, str | None]:
    """The printer's Device ID and, when it could not be read, why.

    Where usblp is bound, its sysfs ``ieee1284_id`` is read so that listing never takes the
    printer from the kernel; elsewhere the printer is opened and asked, then given back.
    """
    device = sysfs_device(printer.bus, printer.address)
    if device is not None:
        for attr in device.glob(f"{device.name}:*/usbmisc/lp*/ieee1284_id"):
            try:
                text = attr.read_bytes().rstrip(b"\n")
            except OSError:
                break
            body = (len(text) + 2).to_bytes(2, "big") + text
            return parse_device_id(body), None
    try:
        with printer:
            return printer.device_id(), None
    except (DeviceError, MalformedDeviceId, EmulatorUsageError) as exc:
        return None, problem_text(exc)


# -- list -----------------------------------------------------------------------------------------


def add_usb_commands(sub: SubParsers) -> None:
    """Add ``list``, ``info`` and ``doctor`` to the command line."""
    p = sub.add_parser(
        "list",
        help="list the USB printers found (bus/address, ids, protocols, Device ID, URI)",
        description="List every USB device with a printer-class interface, in any "
        "configuration and alt setting, with its IEEE 1284 Device ID and a CUPS-style URI.",
        formatter_class=Formatter,
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=run_list)

    p = sub.add_parser(
        "info",
        help="everything about one printer: descriptors, Device ID, port status, holders",
        formatter_class=Formatter,
    )
    p.add_argument(
        "device",
        nargs="?",
        metavar="DEVICE",
        help="BUS:ADDR, VID:PID, serial number or usb:// URI (default: the only printer)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=run_info)

    p = sub.add_parser(
        "doctor",
        help="check libusb, permissions, kernel drivers and other holders, with remedies",
        formatter_class=Formatter,
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=run_doctor)


def _printer_record(printer: PyusbPrinter) -> tuple[dict[str, object], DeviceId | None]:
    device_id, problem = read_device_id(printer)
    record: dict[str, object] = {
        "bus": printer.bus,
        "address": printer.address,
        "vendor_id": f"{printer.vendor_id:04x}",
        "product_id": f"{printer.product_id:04x}",
        "serial": printer.serial,
        "manufacturer": printer.manufacturer,
        "product": printer.product,
        "protocols": sorted({i.protocol for i in printer.interfaces}),
        "device_id": device_id.text if device_id is not None else None,
        "device_id_problem": problem,
        "uri": printer.uri(device_id),
    }
    return record, device_id


def run_list(args: argparse.Namespace, out: Console, err: Console) -> int:
    """``usblp-emu list``."""
    bus = open_bus(args.virtual)
    printers = scan(bus)
    records = [_printer_record(p)[0] for p in printers]
    if args.json:
        print_json(out, {"bus": bus.label, "printers": records})
        return 0
    if not records:
        say(out, f"no printers found on {bus.label} (see {PROG} doctor)")
        return 0
    table = Table(title=f"printers on {bus.label}", title_justify="left")
    for column in ("bus:addr", "vid:pid", "protocols", "Device ID", "URI"):
        table.add_column(column, overflow="fold")
    for r in records:
        cells = (
            f"{r['bus']}:{r['address']}",
            f"{r['vendor_id']}:{r['product_id']}",
            ",".join(str(p) for p in r["protocols"]),  # type: ignore[attr-defined]
            str(r["device_id"]) if r["device_id"] else f"(unreadable: {r['device_id_problem']})",
            str(r["uri"]),
        )
        # Text, not markup: a Device ID may hold square brackets.
        table.add_row(*(Text(c) for c in cells))
    out.print(table)
    return 0


# -- info -----------------------------------------------------------------------------------------


def run_info(args: argparse.Namespace, out: Console, err: Console) -> int:
    """``usblp-emu info DEVICE``."""
    bus = open_bus(args.virtual)
    printer = select_printer(scan(bus), args.device, chooser=f"{PROG} info DEVICE")
    record, device_id = _printer_record(printer)
    record["interfaces"] = [
        {
            "configuration": i.configuration,
            "interface": i.interface,
            "alternate": i.alternate,
            "protocol": i.protocol,
            "ep_out": f"0x{i.ep_out:02x}",
            "ep_in": None if i.ep_in is None else f"0x{i.ep_in:02x}",
        }
        for i in printer.interfaces
    ]
    record["kernel_drivers"] = {str(k): v for k, v in _drivers(bus, printer).items()}
    record["holders"] = [] if bus.virtual else holders(printer.bus, printer.address)
    try:
        with printer:
            status = printer.port_status()
        record["port_status"] = {"raw": f"0x{status.raw:02x}", "meaning": status.describe()}
    except DeviceError as exc:
        record["port_status"] = {"problem": problem_text(exc)}
    if device_id is not None:
        record["device_id_fields"] = dict(device_id.fields)
    if args.json:
        print_json(out, record)
        return 0
    table = Table(show_header=False, title=printer.name, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in record.items():
        table.add_row(key, Text(_show(value)))
    out.print(table)
    return 0


def _show(value: object) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k}={_show(v)}" for k, v in value.items())
    if isinstance(value, list):
        if all(isinstance(v, (int, str)) for v in value):
            return ", ".join(str(v) for v in value) or "-"
        return "\n".join(_show(v) for v in value) or "-"
    return "-" if value is None else str(value)


def _drivers(bus: Bus, printer: PyusbPrinter) -> dict[int, str]:
    if bus.virtual is not None:
        numbers = sorted({i.interface for i in printer.interfaces})
        return {n: "usblp" for n in numbers if printer.kernel_driver_active(n)}
    return interface_drivers(printer.bus, printer.address)


# -- doctor ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One doctor check: ok, a warning, or a problem, with its remedy."""

    level: str  # "ok", "warn", "FAIL"
    check: str
    detail: str
    remedy: str = ""


def _library_finding(bus: Bus) -> Finding:
    if bus.virtual is not None:
        return Finding("ok", "USB backend", "VirtualBackend (pure Python, no libusb needed)")
    lib = getattr(bus.backend, "lib", None)
    name = getattr(lib, "_name", None) or "libusb-1.0"
    where = " (shipped by libusb-package)" if "libusb_package" in name else ""
    return Finding("ok", "USB backend", f"pyusb libusb1 backend on {name}{where}")


def doctor_findings(bus: Bus) -> list[Finding]:
    """Every check ``doctor`` makes, in order."""
    findings = [_library_finding(bus)]
    try:
        printers = find_printers(bus.backend)
    except DeviceError as exc:
        return [*findings, Finding("FAIL", "listing devices", problem_text(exc))]
    if not printers:
        findings.append(
            Finding(
                "warn",
                "printers",
                "no USB device with a printer-class interface (class 7) is attached",
                "plug one in and power it on; check `lsusb`",
            )
        )
    for printer in printers:
        findings += _printer_findings(bus, printer)
    return findings


def _printer_findings(bus: Bus, printer: PyusbPrinter) -> list[Finding]:
    name = printer.name
    found: list[Finding] = []
    if bus.virtual is None:
        node = device_node(printer.bus, printer.address)
        if node.exists() and not os.access(node, os.R_OK | os.W_OK):
            found.append(
                Finding(
                    "FAIL",
                    f"{name} permissions",
                    f"{node} is not readable and writable by you",
                    udev_rule(printer.vendor_id, printer.product_id),
                )
            )
        else:
            found.append(Finding("ok", f"{name} permissions", f"{node} is read-write"))
    drivers = _drivers(bus, printer)
    printer_numbers = {i.interface for i in printer.interfaces}
    bound = {n: d for n, d in drivers.items() if n in printer_numbers}
    if bound and bus.virtual is not None:
        # The emulated kernel's usblp: detaching it holds up no CUPS job.
        found.append(
            Finding(
                "ok",
                f"{name} kernel driver",
                ", ".join(
                    f"{d} on interface {n} (emulated; detached while used)"
                    for n, d in bound.items()
                ),
            )
        )
    elif bound:
        found.append(
            Finding(
                "warn",
                f"{name} kernel driver",
                ", ".join(f"{d} on interface {n}" for n, d in bound.items()),
                "usblp-emu detaches it from the printer interface while it runs and "
                "re-attaches it after; CUPS jobs meanwhile wait",
            )
        )
    else:
        found.append(Finding("ok", f"{name} kernel driver", "none bound to the printer interface"))
    held = [] if bus.virtual else holders(printer.bus, printer.address)
    others = [h for h in held if not h.startswith("kernel driver")]
    if others:
        found.append(
            Finding(
                "FAIL",
                f"{name} other holders",
                ", ".join(others),
                "stop them first (e.g. systemctl stop ipp-usb)",
            )
        )
    device_id, problem = read_device_id(printer)
    if device_id is None:
        found.append(Finding("FAIL", f"{name} Device ID", problem or "unreadable"))
    else:
        found.append(Finding("ok", f"{name} Device ID", device_id.text))
    return found


def run_doctor(args: argparse.Namespace, out: Console, err: Console) -> int:
    """``usblp-emu doctor``: exit 1 when a check failed."""
    try:
        import usb  # noqa: PLC0415 - report the version we run with

        version = getattr(usb, "__version__", "?")
    except ImportError:  # pragma: no cover - pyusb is a dependency
        fail("pyusb is not installed: pip install pyusb")
    bus = open_bus(args.virtual)
    findings = [Finding("ok", "pyusb", f"version {version}"), *doctor_findings(bus)]
    failed = any(f.level == "FAIL" for f in findings)
    if args.json:
        print_json(out, {"ok": not failed, "findings": [vars(f) for f in findings]})
        return 1 if failed else 0
    table = Table(title=f"{PROG} doctor", title_justify="left")
    for column in ("", "check", "finding", "remedy"):
        table.add_column(column, overflow="fold")
    for f in findings:
        style = {"ok": "green", "warn": "yellow"}.get(f.level, "red")
        table.add_row(Text(f.level, style=style), Text(f.check), Text(f.detail), Text(f.remedy))
    out.print(table)
    return 1 if failed else 0


def read_job(path: str) -> bytes:
    """The bytes of a print job file (``-``: standard input); fails with one line."""
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")

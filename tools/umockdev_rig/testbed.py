"""The umockdev testbed: a root hub and printers in a fake /sys and /dev, and the commands
that change them (plug, unplug, faults)."""

from __future__ import annotations

import hashlib
import json
import struct
import threading
import time
from typing import Any

from tools.umockdev_rig.descriptors import (
    composite_printer_alts,
    config_descriptor,
    encode_device_id,
    interface_descriptor,
    sysfs_newlines,
)
from tools.umockdev_rig.printer import Printer
from tools.umockdev_rig.usbfs import ERRNO_BY_NAME

# --- the testbed ----------------------------------------------------------------------------


class Bed:
    """The umockdev testbed: a root hub, printers, and the commands that change them."""

    def __init__(self) -> None:
        import gi

        gi.require_version("UMockdev", "1.0")
        from gi.repository import UMockdev

        self.umockdev = UMockdev
        self.lock = threading.RLock()
        self.testbed = UMockdev.Testbed.new()
        self.root = str(self.testbed.get_root_dir())
        self.printers: list[Printer] = []
        self.handlers: list[Any] = []  # keep the handler objects alive
        self.testbed.add_from_string(ROOT_HUB)

    def add(self, printer: Printer) -> None:
        """Attach the ioctl handler first, then add the device (its "add" uevent goes out).

        In that order a client that reacts to the uevent at once finds the node answering.
        """
        handler = self.umockdev.IoctlBase()
        handler.connect("handle-ioctl", printer.handle_ioctl)
        if not self.testbed.attach_ioctl(printer.devnode, handler):
            raise RuntimeError(f"attach_ioctl({printer.devnode}) failed")
        self.handlers.append(handler)
        self.testbed.add_from_string(printer.record())
        for number, driver in printer.drivers.items():
            if driver is not None:
                printer.sync_driver_link(number)
        self.printers.append(printer)

    def find(self, serial: str | None) -> Printer:
        """The printer with ``serial``, or the first one."""
        for printer in self.printers:
            if serial is None or printer.serial == serial:
                return printer
        raise KeyError(f"no printer with serial {serial}")

    def unplug(self, printer: Printer, status: int, delay: float) -> None:
        """Pull the cable: URBs fail with ``status``; the disconnect follows ``delay`` later.

        With no delay the remove uevent goes out before any URB fails, so a client that sees
        the failure and enumerates again no longer finds the device. With a delay the device
        first only fails every URB (as when the wire errors before the hub reports the port
        change), and ioctls answer ENODEV once the disconnect has happened.
        """
        printer.unplug_status = -status
        if delay <= 0:
            self.remove(printer)
            return
        printer.dying = True
        timer = threading.Timer(delay, self.remove_locked, (printer,))
        timer.daemon = True
        timer.start()

    def remove_locked(self, printer: Printer) -> None:
        """Timer entry point for remove()."""
        with self.lock:
            self.remove(printer)

    def remove(self, printer: Printer) -> None:
        """The "remove" uevent (while the uevent file still names BUSNUM/DEVNUM), then delete."""
        if printer.gone:
            return
        self.testbed.uevent(printer.syspath, "remove")
        self.testbed.remove_device(printer.syspath)
        printer.gone = True

    def command(self, line: str) -> dict[str, Any]:
        """Run one JSON command; returns the reply object.

        Raises:
            KeyError, ValueError, TypeError: a malformed command (main() answers ok: false).

        """
        cmd = json.loads(line)
        op = str(cmd.get("op"))
        if op == "quit":
            return {"ok": True}
        with self.lock:
            if op == "plug":
                return {"ok": True, **self.plug(cmd)}
            handler = getattr(self, f"cmd_{op}", None)
            if handler is None:
                raise ValueError(f"unknown op {op!r}")
            printer = self.find(cmd.get("device"))
            printer.prune_clients()
            extra: dict[str, Any] = handler(printer, cmd)
            return {"ok": True, **extra}

    def plug(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Hotplug a multifunction printer at the next address."""
        address = max(p.address for p in self.printers) + 1
        printer = Printer(
            self,
            address=address,
            port=address - 1,
            product_id=int(cmd.get("product_id", 0x0001 + len(self.printers))),
            serial=str(cmd.get("serial", f"UMOCK{len(self.printers) + 1:04d}")),
            alts=composite_printer_alts(),
        )
        self.add(printer)
        return {"bus": printer.bus, "address": address, "serial": printer.serial}

    def cmd_state(self, printer: Printer, cmd: dict[str, Any]) -> dict[str, Any]:
        """State and counters."""
        return printer.state()

    def cmd_received(self, printer: Printer, cmd: dict[str, Any]) -> dict[str, Any]:
        """What the printer took on bulk OUT: length, sha256, and the bytes when asked."""
        data = bytes(printer.received)
        reply: dict[str, Any] = {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        if cmd.get("hex"):
            reply["hex"] = data.hex()
        if cmd.get("clear"):
            printer.received.clear()
        return reply

    def cmd_status(self, printer: Printer, cmd: dict[str, Any]) -> dict[str, Any]:
        """Set the GET_PORT_STATUS byte."""
        printer.port_status = int(cmd["value"]) & 0xFF
        return {}

    def cmd_device_id(self, printer: Printer, cmd: dict[str, Any]) -> dict[str, Any]:
        """Set the GET_DEVICE_ID text."""
        printer.device_id = encode_device_id(str(cmd["text"]))
        return {}

    def cmd_stall(self, printer: Printer, cmd: dict[str, Any]) -> dict[str, Any]:
        """Stall bulk URBs on an endpoint (after some good ones)."""
        endpoint = int(cmd.get("endpoint", 0x01))
        printer.stall_left[endpoint] = int(cmd.get("count", 1))
        printer.stall_skip[endpoint] = int(cmd.get("skip", 0))
        return {}

    def cmd_nak(self, printer: Printer, cmd: dict[str, Any]) -> dict[str, Any]:
        """NAK bulk OUT for some seconds, at once or after some more bytes."""
        printer.nak_seconds = float(cmd.get("seconds", 1.0))
        after = int(cmd.get("after", 0))
        printer.nak_budget = after if after > 0 else None
        printer.nak_until = None if after > 0 else time.monotonic() + printer.nak_seconds
        return {}

    def cmd_short(self, printer: Printer, cmd: dict[str, Any]) -> dict[str, Any]:
        """The next bulk OUT URB takes part of its data, then never finishes."""
        count = cmd.get("bytes")
        printer.short_next = -1 if count is None else int(count)
        return {}

    def cmd_respond(self, printer: Printer, cmd: dict[str, Any]) -> dict[str, Any]:
        """Queue back-channel bytes for bulk IN."""
        printer.back_channel += bytes.fromhex(str(cmd["hex"]))
        return {}

    def cmd_soft_reset_0x23(self, printer: Printer, cmd: dict[str, Any]) -> dict[str, Any]:
        """Accept SOFT_RESET sent as usblp sends it (0x23), not only as the spec says (0x21)."""
        printer.accept_soft_reset_0x23 = bool(cmd.get("accept", True))
        return {}

    def cmd_bind(self, printer: Printer, cmd: dict[str, Any]) -> dict[str, Any]:
        """Bind usblp to the printer interface (as the kernel does on plug)."""
        return self.rebind(printer, "usblp")

    def cmd_unbind(self, printer: Printer, cmd: dict[str, Any]) -> dict[str, Any]:
        """Unbind usblp (a system with usblp blacklisted)."""
        return self.rebind(printer, None)

    def rebind(self, printer: Printer, driver: str | None) -> dict[str, Any]:
        """Set the printer interface's kernel driver, unless a client has claimed it."""
        number = printer.printer_interface
        if printer.drivers[number] == "usbfs":
            raise ValueError("the printer interface is claimed")
        printer.set_driver(number, driver)
        return {}

    def cmd_unconfigure(self, printer: Printer, cmd: dict[str, Any]) -> dict[str, Any]:
        """Leave the printer unconfigured (bConfigurationValue empty, no drivers bound)."""
        if printer.claims:
            raise ValueError("an interface is claimed")
        printer.set_configuration(0)
        printer.set_configuration_count = 0
        return {}

    def cmd_unplug(self, printer: Printer, cmd: dict[str, Any]) -> dict[str, Any]:
        """Pull the printer's cable (see unplug())."""
        status = ERRNO_BY_NAME[str(cmd.get("urb_status", "ESHUTDOWN"))]
        self.unplug(printer, status, float(cmd.get("uevent_delay", 0.0)))
        return {}


def _root_hub() -> str:
    device = struct.pack(
        "<BBHBBBBHHHBBBB", 18, 1, 0x0200, 9, 0, 1, 64, 0x1D6B, 2, 0x0601, 3, 2, 1, 1
    )
    config = config_descriptor(
        1,
        interface_descriptor(0, 0, 9, 0, 0, 1) + struct.pack("<BBBBHB", 7, 5, 0x81, 3, 4, 12),
    )
    return "\n".join(
        sysfs_newlines(
            [
                "P: /devices/pci0000:00/0000:00:14.0/usb1",
                "N: bus/usb/001/001",
                "E: SUBSYSTEM=usb",
                "E: DEVTYPE=usb_device",
                "E: DRIVER=usb",
                "E: BUSNUM=001",
                "E: DEVNUM=001",
                "E: DEVNAME=/dev/bus/usb/001/001",
                "A: busnum=1",
                "A: devnum=1",
                "A: devpath=0",
                "A: speed=480",
                "A: idVendor=1d6b",
                "A: idProduct=0002",
                "A: bDeviceClass=09",
                "A: bConfigurationValue=1",
                "A: bNumInterfaces= 1",
                f"H: descriptors={(device + config).hex().upper()}",
                "",
            ]
        )
    )


ROOT_HUB = _root_hub()
PRELOAD = "libumockdev-preload.so.0"

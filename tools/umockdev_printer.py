#!/usr/bin/python3
"""A USB printer emulated at the usbfs ioctl level with umockdev, driven over stdin/stdout.

This is the device side of the umockdev test tier (tests/tiers/test_umockdev.py). Real libusb, in a
client process run under ``LD_PRELOAD=libumockdev-preload.so.0`` with ``UMOCKDEV_DIR`` set to
the directory this prints, sees a root hub and a printer in sysfs and /dev/bus/usb; every ioctl
the client makes on the printer's device node comes here and is answered the way the kernel's
usbfs would (drivers/usb/core/devio.c), with the printer behind it.

It runs under Debian's ``/usr/bin/python3``: it needs ``gi`` and the UMockdev typelib (see
tools/umockdev_setup.sh), which a venv's Python does not have. It re-executes itself under the
preload library too: the testbed sends uevents through libudev in this process, which must see
the testbed's /sys (without it ``add_from_string`` sends no "add" uevent and ``uevent()`` fails
with "No such device").

Protocol: once ready it prints ``UMOCKDEV_DIR=<dir>``; then it reads one JSON object a line on
stdin and answers each with one JSON line on stdout (``{"ok": true, ...}`` or ``{"ok": false,
"error": ...}``). Commands (``device`` picks a printer by serial, default the first):

- ``{"op": "state"}``: counters, claims, drivers, halts, control requests seen.
- ``{"op": "received", "hex": false}``: length and sha256 of the bytes the printer accepted
  on its bulk OUT endpoint (and the bytes in hex when asked); ``"clear": true`` empties it.
- ``{"op": "status", "value": 8}``: the GET_PORT_STATUS byte.
- ``{"op": "device_id", "text": "MFG:..;"}``: the GET_DEVICE_ID text (the length is added).
- ``{"op": "stall", "count": 1, "endpoint": 1, "skip": 0}``: after ``skip`` good URBs, the
  next ``count`` bulk URBs on that endpoint fail with EPIPE, each leaving it halted (every URB
  fails) until USBDEVFS_CLEAR_HALT.
- ``{"op": "nak", "seconds": 2, "after": 0}``: accept ``after`` more bytes, then NAK bulk OUT
  for ``seconds`` (the URB stays in flight; a client timeout discards it, partly done).
- ``{"op": "short", "bytes": null}``: the next bulk OUT URB takes only ``bytes`` (default
  half) and then NAKs until it is discarded.
- ``{"op": "respond", "hex": "..."}``: bytes for the bulk IN (back-channel) endpoint.
- ``{"op": "soft_reset_0x23", "accept": true}``: accept SOFT_RESET as usblp sends it
  (bmRequestType 0x23); by default only the class spec's 0x21 works and 0x23 stalls.
- ``{"op": "bind"}`` / ``{"op": "unbind"}``: bind usblp to the printer interface, or not.
- ``{"op": "unconfigure"}``: the device is unconfigured (as after a reset that set config 0);
  a SETCONFIGURATION to 1 then makes usblp bind the printer interface, as the kernel does.
- ``{"op": "unplug", "urb_status": "ESHUTDOWN", "uevent_delay": 0}``: URBs fail with
  ``urb_status`` (ESHUTDOWN as when the hub noticed first, EPROTO as when the wire failed
  first). The disconnect (the "remove" uevent, the device leaving sysfs, ENODEV for every
  later ioctl but a reap, and for a reap with nothing left) happens ``uevent_delay`` seconds
  later; with 0 it happens before any URB fails, so a client that sees the failure and looks
  at the bus again no longer finds the device.
- ``{"op": "plug", "serial": "UMOCK0002"}``: hotplug a second printer, a multifunction
  device (see composite_printer_alts), at the next address; an "add" uevent goes out.
- ``{"op": "quit"}``.

Why some things are the way they are:
- The kernel's order of work is kept where a client can see it: the control-request interface
  check (``check_ctrlrecip``, with its GET_DEVICE_ID exception), the implicit claim of an
  interface a URB uses (``checkintf``), reaping allowed after disconnect, ENODEV otherwise.
- Time-based behaviour (NAK windows) is evaluated when the client reaps: libusb polls the
  device fd for POLLOUT, which a umockdev socket always reports, so it reaps continuously
  (thousands of REAPURBNDELAY a second while a transfer is in flight).
- umockdev sends uevents as udevd does (netlink group 2, "libudev" header). libusb built with
  udev hears them; libusb's netlink backend (the one libusb-package bundles) listens to the
  kernel's group 1 only, so under umockdev it sees the bus as it was when it started.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

# Run as a script under Debian's python3 (sys.path has tools/): add the root, so the kernel's
# numbers and usblp's id table (standard library only, both) import.
sys.path.insert(0, str(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from usblp_emu._abi import (
    IOC_NONE,
    IOC_READ,
    IOC_WRITE,
    REQ_GET_DEVICE_ID,
    REQ_GET_PORT_STATUS,
    REQ_SOFT_RESET,
    RT_CLASS_IN,
    RT_CLASS_OUT,
    RT_SOFT_RESET_USBLP,
    USB_CLASS_PRINTER,
    ioc,
)
from usblp_emu._usblp._ids import usblp_binds

# --- usbfs ioctl numbers (x86-64: <linux/usbdevice_fs.h>) -----------------------------------


def _ioc(direction: int, nr: int, size: int) -> int:
    return ioc(direction, "U", nr, size)


USBDEVFS_CONTROL = _ioc(IOC_READ | IOC_WRITE, 0, 24)
USBDEVFS_SETINTERFACE = _ioc(IOC_READ, 4, 8)
USBDEVFS_SETCONFIGURATION = _ioc(IOC_READ, 5, 4)
USBDEVFS_GETDRIVER = _ioc(IOC_WRITE, 8, 260)
USBDEVFS_SUBMITURB = _ioc(IOC_READ, 10, 56)
USBDEVFS_DISCARDURB = _ioc(IOC_NONE, 11, 0)
USBDEVFS_REAPURB = _ioc(IOC_WRITE, 12, 8)
USBDEVFS_REAPURBNDELAY = _ioc(IOC_WRITE, 13, 8)
USBDEVFS_CLAIMINTERFACE = _ioc(IOC_READ, 15, 4)
USBDEVFS_RELEASEINTERFACE = _ioc(IOC_READ, 16, 4)
USBDEVFS_CONNECTINFO = _ioc(IOC_WRITE, 17, 8)
USBDEVFS_IOCTL = _ioc(IOC_READ | IOC_WRITE, 18, 16)
USBDEVFS_RESET = _ioc(IOC_NONE, 20, 0)
USBDEVFS_CLEAR_HALT = _ioc(IOC_READ, 21, 4)
USBDEVFS_DISCONNECT = _ioc(IOC_NONE, 22, 0)
USBDEVFS_CONNECT = _ioc(IOC_NONE, 23, 0)
USBDEVFS_GET_CAPABILITIES = _ioc(IOC_READ, 26, 4)
USBDEVFS_DISCONNECT_CLAIM = _ioc(IOC_READ, 27, 264)

IOCTL_NAMES = {
    value: name
    for name, value in globals().items()
    if name.startswith("USBDEVFS_") and isinstance(value, int)
}

# What an xHCI host reports (no MMAP: libusb would mmap the socket umockdev hands it).
CAPABILITIES = 0x01 | 0x02 | 0x04 | 0x08 | 0x10  # ZERO_PACKET .. REAP_AFTER_DISCONNECT

URB_TYPE_CONTROL = 2
URB_TYPE_BULK = 3
URB_SIZE = 56  # struct usbdevfs_urb on x86-64: type 0, endpoint 1, status 4, flags 8,
# buffer 16, buffer_length 24, actual_length 28, ... usercontext 48

ERRNO_BY_NAME = {name: getattr(errno, name) for name in ("ESHUTDOWN", "EPROTO", "ENODEV", "EIO")}

# --- descriptors --------------------------------------------------------------------------

VENDOR_ID = 0x1209  # pid.codes: its test product ids are free for exactly this
LANGID_EN_US = 0x0409


def device_descriptor(vid: int, pid: int, device_class: int = 0) -> bytes:
    """The 18-byte device descriptor (USB 2.0, strings 1-3, one configuration)."""
    return struct.pack(
        "<BBHBBBBHHHBBBB", 18, 1, 0x0200, device_class, 0, 0, 64, vid, pid, 0x0100, 1, 2, 3, 1
    )


def interface_descriptor(number: int, alt: int, cls: int, sub: int, proto: int, eps: int) -> bytes:
    """A 9-byte interface descriptor."""
    return struct.pack("<BBBBBBBBB", 9, 4, number, alt, eps, cls, sub, proto, 0)


def bulk_endpoint(address: int) -> bytes:
    """A 7-byte bulk endpoint descriptor (512-byte packets: high speed)."""
    return struct.pack("<BBBBHB", 7, 5, address, 2, 512, 0)


def config_descriptor(interfaces: int, body: bytes) -> bytes:
    """A configuration descriptor (value 1, self-powered) followed by ``body``."""
    total = 9 + len(body)
    return struct.pack("<BBHBBBBB", 9, 2, total, interfaces, 1, 0, 0xC0, 50) + body


def string_descriptor(text: str) -> bytes:
    """A string descriptor: UTF-16LE after a length and type byte."""
    data = text.encode("utf-16-le")
    return bytes([2 + len(data), 3]) + data


def encode_device_id(text: str) -> bytes:
    """GET_DEVICE_ID's answer: a big-endian length that counts itself, then the text."""
    body = text.encode()
    return (len(body) + 2).to_bytes(2, "big") + body


@dataclass
class Alt:
    """One alternate setting of an interface."""

    number: int
    alt: int
    cls: int
    subclass: int
    protocol: int
    endpoints: tuple[int, ...]

    def descriptor(self) -> bytes:
        """Interface descriptor plus its endpoints."""
        head = interface_descriptor(
            self.number, self.alt, self.cls, self.subclass, self.protocol, len(self.endpoints)
        )
        return head + b"".join(bulk_endpoint(ep) for ep in self.endpoints)


def simple_printer_alts() -> list[Alt]:
    """bDeviceClass 0, one interface: printer class, bidirectional, bulk OUT 0x01 and IN 0x82."""
    return [Alt(0, 0, 7, 1, 2, (0x01, 0x82))]


def composite_printer_alts() -> list[Alt]:
    """A multifunction device: card reader, scanner, then the printer with two alt settings.

    The printer is interface 2 with alt settings 0 (protocol 1) and 1 (protocol 2), so
    GET_DEVICE_ID's wIndex is 0x0201: a client that claims ``wIndex & 0xff`` (as pyusb's
    ``ctrl_transfer`` does) claims the scanner, and that shows in ``claim_history``.
    """
    return [
        Alt(0, 0, 8, 6, 0x50, (0x03, 0x84)),  # mass storage, bound to usb-storage
        Alt(1, 0, 0xFF, 0xFF, 0xFF, (0x05, 0x86)),  # vendor-specific scanner, no driver
        Alt(2, 0, 7, 1, 1, (0x01,)),
        Alt(2, 1, 7, 1, 2, (0x01, 0x82)),
    ]


# --- URBs and clients -------------------------------------------------------------------------


@dataclass
class Urb:
    """A URB the client submitted and has not reaped yet."""

    struct_data: Any  # UMockdev.IoctlData of the struct, resolved at submit
    buffer: Any  # UMockdev.IoctlData of the buffer, or None
    address: int  # the client's address of the struct (DISCARDURB names it)
    type: int
    endpoint: int
    length: int
    payload: bytes  # what the client's buffer held at submit (OUT data, control setup)
    accepted: int = 0  # OUT: bytes the device took so far
    status: int = 0
    actual: int = 0
    answer: bytes = b""  # IN data (for control, after the setup packet)
    done: bool = False
    stuck: bool = False  # a short write: in flight until discarded
    stall: bool | None = None  # whether the stall command picked it (None: not decided yet)


@dataclass
class ClientState:
    """What usbfs keeps per open file: claimed interfaces and URBs."""

    claimed: set[int] = field(default_factory=set)
    pending: list[Urb] = field(default_factory=list)
    completed: deque[Urb] = field(default_factory=deque)


class Stop(Exception):
    """Answer the ioctl with -1 and this errno."""

    def __init__(self, code: int) -> None:
        super().__init__(os.strerror(code))
        self.code = code


# --- the printer ------------------------------------------------------------------------------


class Printer:
    """One emulated printer: descriptors, sysfs entry, and the usbfs ioctls on its node."""

    # ioctl number -> handler (filled in after the class: the handlers are its methods)
    IOCTLS: ClassVar[dict[int, Callable[[Printer, Any, ClientState], None]]] = {}

    def __init__(
        self,
        bed: Bed,
        address: int,
        port: int,
        product_id: int,
        serial: str,
        alts: list[Alt],
    ) -> None:
        self.bed = bed
        self.bus = 1
        self.address = address
        self.port = port
        self.product_id = product_id
        self.serial = serial
        self.alts = alts
        self.strings = {1: "usblp-emu", 2: f"Virtual Printer {product_id:04x}", 3: serial}
        self.device_id = encode_device_id(
            f"MFG:usblp-emu;MDL:Virtual Printer {product_id:04x};CMD:PCL,PJL,POSTSCRIPT;"
            f"CLS:PRINTER;DES:umockdev printer;SN:{serial};"
        )
        numbers = sorted({a.number for a in alts})
        self.device = device_descriptor(VENDOR_ID, product_id)
        self.config = config_descriptor(len(numbers), b"".join(a.descriptor() for a in alts))
        self.name = f"{self.bus}-{port}"
        self.syspath = f"/sys/devices/pci0000:00/0000:00:14.0/usb1/{self.name}"
        self.devnode = f"/dev/bus/usb/{self.bus:03d}/{address:03d}"
        self.printer_interface = next(
            a.number
            for a in alts
            if a.alt == 0 and usblp_binds(VENDOR_ID, product_id, a.cls, a.subclass, a.protocol)
        )
        # usbfs state
        self.configuration = 1
        self.alt_setting = dict.fromkeys(numbers, 0)
        self.drivers: dict[int, str | None] = dict.fromkeys(numbers)
        self.drivers[self.printer_interface] = "usblp"
        if any(a.cls == 8 for a in alts):
            self.drivers[next(a.number for a in alts if a.cls == 8)] = "usb-storage"
        self.claims: dict[int, ClientState] = {}
        self.clients: list[tuple[Any, ClientState]] = []  # (UMockdev.IoctlClient, state)
        self.gone = False  # disconnected: ioctls answer ENODEV
        self.dying = False  # off the wire but not yet disconnected: every URB fails
        self.unplug_status = -errno.ESHUTDOWN
        # printer behaviour
        self.port_status = 0x18  # selected, no error
        self.received = bytearray()
        self.back_channel = bytearray()
        self.stall_left: dict[int, int] = {}
        self.stall_skip: dict[int, int] = {}
        self.halted: set[int] = set()
        self.nak_budget: int | None = None
        self.nak_seconds = 0.0
        self.nak_until: float | None = None
        self.short_next: int | None = None  # -1: half of the next URB
        self.accept_soft_reset_0x23 = False
        # what the client did
        self.counts: dict[str, int] = {}
        self.controls: list[list[int]] = []
        self.implicit_claims: list[int] = []
        self.claim_history: list[int] = []
        self.detach_history: list[int] = []
        self.attach_history: list[int] = []
        self.discards = 0
        self.clear_halts: list[int] = []
        self.resets = 0
        self.soft_resets: list[int] = []
        self.urbs_submitted = 0
        self.set_configuration_count = 0

    # -- sysfs ---------------------------------------------------------------------------

    def record(self) -> str:
        """The umockdev-record text for the device and its interfaces (P:/N:/E:/A:/H:)."""
        p = self.syspath.removeprefix("/sys")
        numbers = sorted({a.number for a in self.alts})
        lines = [
            f"P: {p}",
            f"N: bus/usb/{self.bus:03d}/{self.address:03d}",
            "E: SUBSYSTEM=usb",
            "E: DEVTYPE=usb_device",
            "E: DRIVER=usb",
            f"E: BUSNUM={self.bus:03d}",
            f"E: DEVNUM={self.address:03d}",
            f"E: DEVNAME={self.devnode}",
            f"E: PRODUCT={VENDOR_ID:x}/{self.product_id:x}/100",
            "E: TYPE=0/0/0",
            "E: MAJOR=189",
            f"E: MINOR={(self.bus - 1) * 128 + self.address - 1}",
            f"A: busnum={self.bus}",
            f"A: devnum={self.address}",
            f"A: devpath={self.port}",
            "A: speed=480",
            "A: version= 2.00",
            f"A: idVendor={VENDOR_ID:04x}",
            f"A: idProduct={self.product_id:04x}",
            "A: bcdDevice=0100",
            "A: bDeviceClass=00",
            "A: bDeviceSubClass=00",
            "A: bDeviceProtocol=00",
            "A: bMaxPacketSize0=64",
            "A: bNumConfigurations=1",
            f"A: bNumInterfaces= {len(numbers)}",
            "A: bConfigurationValue=1",
            "A: bmAttributes=c0",
            "A: bMaxPower=100mA",
            "A: authorized=1",
            "A: removable=removable",
            f"A: manufacturer={self.strings[1]}",
            f"A: product={self.strings[2]}",
            f"A: serial={self.strings[3]}",
            f"H: descriptors={(self.device + self.config).hex().upper()}",
            "",
        ]
        for number in numbers:
            first = next(a for a in self.alts if a.number == number)
            lines += [
                f"P: {p}/{self.name}:1.{number}",
                "E: SUBSYSTEM=usb",
                "E: DEVTYPE=usb_interface",
                f"E: INTERFACE={first.cls}/{first.subclass}/{first.protocol}",
                f"A: bInterfaceNumber={number:02x}",
                "A: bAlternateSetting= 0",
                f"A: bInterfaceClass={first.cls:02x}",
                f"A: bInterfaceSubClass={first.subclass:02x}",
                f"A: bInterfaceProtocol={first.protocol:02x}",
                f"A: bNumEndpoints={len(first.endpoints):02x}",
                "",
            ]
        return "\n".join(sysfs_newlines(lines)) + "\n"

    def interface_syspath(self, number: int) -> str:
        """The sysfs path of interface ``number``."""
        return f"{self.syspath}/{self.name}:1.{number}"

    def sync_driver_link(self, number: int) -> None:
        """Point the interface's sysfs ``driver`` link at its driver, as the kernel does."""
        link = os.path.join(self.bed.root, self.interface_syspath(number).lstrip("/"), "driver")
        if os.path.islink(link):
            os.unlink(link)
        driver = self.drivers.get(number)
        if driver is not None and not self.gone:
            os.symlink(f"../../../../../../../bus/usb/drivers/{driver}", link)

    def set_driver(self, number: int, driver: str | None) -> None:
        """Bind (or unbind, with None) a driver to interface ``number``."""
        self.drivers[number] = driver
        self.sync_driver_link(number)

    # -- ioctl entry point ---------------------------------------------------------------

    def handle_ioctl(self, _handler: Any, client: Any) -> bool:
        """The handle-ioctl signal: answer one ioctl of one client. Runs on umockdev's thread."""
        request = int(client.get_request())
        name = IOCTL_NAMES.get(request)
        if name is None:
            # Not usbfs (or not one libusb uses here): let umockdev answer ENOTTY, and say so.
            log(f"{self.devnode}: unhandled ioctl {request:#x}")
            return False
        with self.bed.lock:
            self.prune_clients()
            self.counts[name] = self.counts.get(name, 0) + 1
            state = self.client_state(client)
            try:
                result = self.dispatch(request, client, state)
            except Stop as stop:
                client.complete(-1, stop.code)
            except Exception as exc:  # a bug here must not hang the client: fail the ioctl
                log(f"{self.devnode}: {name} raised {exc!r}")
                client.complete(-1, errno.EIO)
            else:
                client.complete(result, 0)
        return True

    def client_state(self, client: Any) -> ClientState:
        """usbfs' per-file state; GObject wrappers keep Python attributes for their lifetime."""
        state: ClientState | None = getattr(client, "usbfs_state", None)
        if state is None:
            state = ClientState()
            client.usbfs_state = state
            self.clients.append((client, state))
        return state

    def prune_clients(self) -> None:
        """Closing a file releases its interfaces and drops its URBs (usbdev_release).

        umockdev 0.17 emits no signal when a client goes away (notify::connected never fires
        here), so closed clients are found by asking, whenever the state is looked at.
        """
        for client, state in list(self.clients):
            if client.get_connected():
                continue
            for number in list(state.claimed):
                self.release(state, number)
            state.pending.clear()
            state.completed.clear()
            self.clients.remove((client, state))

    def dispatch(self, request: int, client: Any, state: ClientState) -> int:
        """One ioctl: returns the result, or raises Stop(errno)."""
        arg = client.get_arg()
        if request in (USBDEVFS_REAPURB, USBDEVFS_REAPURBNDELAY):
            return self.reap(arg, state)  # reaping is allowed after a disconnect
        if self.gone:
            raise Stop(errno.ENODEV)
        handler = self.IOCTLS.get(request)
        if handler is None:
            raise Stop(errno.ENOTTY)  # USBDEVFS_CONTROL: libusb uses URBs for control
        handler(self, arg, state)
        return 0

    def ioctl_capabilities(self, arg: Any, state: ClientState) -> None:
        """GET_CAPABILITIES."""
        arg.resolve(0, 4).update(0, list(struct.pack("<I", CAPABILITIES)))

    def ioctl_claim(self, arg: Any, state: ClientState) -> None:
        """CLAIMINTERFACE."""
        self.claim(state, read_u32(arg))

    def ioctl_release(self, arg: Any, state: ClientState) -> None:
        """RELEASEINTERFACE: EINVAL for an interface this file did not claim."""
        number = read_u32(arg)
        if number not in state.claimed:
            raise Stop(errno.EINVAL)
        self.release(state, number)

    def ioctl_disconnect_claim(self, arg: Any, state: ClientState) -> None:
        """DISCONNECT_CLAIM (libusb's auto-detach): unbind whatever is bound, then claim."""
        number = struct.unpack_from("<I", bytes(arg.resolve(0, 264).retrieve()))[0]
        self.check_interface(number)
        if self.drivers.get(number) not in (None, "usbfs"):
            self.detach_history.append(number)
            self.set_driver(number, None)
        self.claim(state, number)

    def ioctl_set_interface(self, arg: Any, state: ClientState) -> None:
        """SETINTERFACE: the alt setting must exist; the interface is claimed if it was not."""
        number, alt = struct.unpack("<II", bytes(arg.resolve(0, 8).retrieve()))
        self.check_interface(number)
        if not any(a.number == number and a.alt == alt for a in self.alts):
            raise Stop(errno.EINVAL)
        self.claim_implicitly(state, number)
        self.alt_setting[number] = alt

    def ioctl_set_configuration(self, arg: Any, state: ClientState) -> None:
        """SETCONFIGURATION: EBUSY while a kernel driver is bound to any interface."""
        value = struct.unpack("<i", bytes(arg.resolve(0, 4).retrieve()))[0]
        if value not in (-1, 0, 1):
            raise Stop(errno.EINVAL)
        if any(d not in (None, "usbfs") for d in self.drivers.values()):
            raise Stop(errno.EBUSY)
        self.set_configuration(max(value, 0))

    def set_configuration(self, value: int) -> None:
        """Configure (1) or unconfigure (0); configuring lets usblp probe the printer again."""
        if value == self.configuration:
            return
        self.configuration = value
        self.set_configuration_count += 1
        self.bed.testbed.set_attribute(
            self.syspath, "bConfigurationValue", f"{value}\n" if value else "\n"
        )
        for number in self.drivers:
            self.set_driver(number, "usblp" if value and number == self.printer_interface else None)

    def ioctl_clear_halt(self, arg: Any, state: ClientState) -> None:
        """CLEAR_HALT: the endpoint takes URBs again."""
        endpoint = read_u32(arg) & 0xFF
        self.endpoint_interface(endpoint, state)
        self.halted.discard(endpoint)
        self.clear_halts.append(endpoint)

    def ioctl_reset(self, arg: Any, state: ClientState) -> None:
        """RESET: counted; clears halts (a real reset also re-enumerates, not modelled)."""
        self.resets += 1
        self.halted.clear()

    def ioctl_connectinfo(self, arg: Any, state: ClientState) -> None:
        """CONNECTINFO: the device number, not low speed."""
        arg.resolve(0, 8).update(0, list(struct.pack("<IB3x", self.address, 0)))

    # -- interfaces and drivers ----------------------------------------------------------

    def check_interface(self, number: int) -> None:
        """ENOENT for an interface the active configuration does not have."""
        if number not in self.alt_setting:
            raise Stop(errno.ENOENT)

    def claim(self, state: ClientState, number: int) -> None:
        """usbfs claimintf: EBUSY while another driver (usblp) or another file holds it."""
        self.check_interface(number)
        if number in state.claimed:
            return
        if number in self.claims or self.drivers.get(number) is not None:
            raise Stop(errno.EBUSY)
        state.claimed.add(number)
        self.claim_history.append(number)
        self.claims[number] = state
        self.set_driver(number, "usbfs")

    def claim_implicitly(self, state: ClientState, number: int) -> None:
        """usbfs checkintf: use of an unclaimed interface claims it (and the kernel warns)."""
        if number not in state.claimed:
            self.implicit_claims.append(number)
            self.claim(state, number)

    def release(self, state: ClientState, number: int) -> None:
        """Give interface ``number`` up; no driver rebinds until USBDEVFS_CONNECT."""
        state.claimed.discard(number)
        if self.claims.get(number) is state:
            del self.claims[number]
            self.set_driver(number, None)

    def ioctl_getdriver(self, arg: Any, state: ClientState) -> None:
        """GETDRIVER: the bound driver's name, ENODATA when none."""
        data = arg.resolve(0, 260)
        number = struct.unpack_from("<I", bytes(data.retrieve()))[0]
        self.check_interface(number)
        driver = self.drivers.get(number)
        if driver is None:
            raise Stop(errno.ENODATA)
        data.update(4, list(driver.encode() + b"\0"))

    def ioctl_ioctl(self, arg: Any, state: ClientState) -> None:
        """USBDEVFS_IOCTL with DISCONNECT (detach the kernel driver) or CONNECT (re-attach)."""
        number, code = struct.unpack_from("<iI", bytes(arg.resolve(0, 16).retrieve()))
        self.check_interface(number)
        driver = self.drivers.get(number)
        if code == USBDEVFS_DISCONNECT:
            self.detach_history.append(number)
            if driver is None:
                raise Stop(errno.ENODATA)
            if driver == "usbfs":
                # The kernel unbinds usbfs too (it is a driver); the claim goes with it.
                holder = self.claims.get(number)
                if holder is not None:
                    self.release(holder, number)
                return
            self.set_driver(number, None)
        elif code == USBDEVFS_CONNECT:
            self.attach_history.append(number)
            if driver == "usbfs":
                raise Stop(errno.EBUSY)
            if driver is None and number == self.printer_interface:
                self.set_driver(number, "usblp")  # usblp probes the printer interface again
        else:
            raise Stop(errno.ENOTTY)

    def endpoint_interface(self, endpoint: int, state: ClientState) -> int:
        """The interface whose current alt setting has ``endpoint``; claims it if need be."""
        for a in self.alts:
            if self.alt_setting.get(a.number) == a.alt and endpoint in a.endpoints:
                self.claim_implicitly(state, a.number)
                return a.number
        raise Stop(errno.ENOENT)

    # -- URBs ----------------------------------------------------------------------------

    def ioctl_submit(self, arg: Any, state: ClientState) -> None:
        """SUBMITURB: validate, run the control request at once, queue bulk transfers."""
        address = struct.unpack("<Q", bytes(arg.retrieve()))[0]
        urb_data = arg.resolve(0, URB_SIZE)
        raw = bytes(urb_data.retrieve())
        urb_type, endpoint = raw[0], raw[1]
        length = struct.unpack_from("<i", raw, 24)[0]
        buffer = urb_data.resolve(16, length) if length > 0 else None
        payload = bytes(buffer.retrieve()) if buffer is not None else b""
        urb = Urb(urb_data, buffer, address, urb_type, endpoint, length, payload)
        if urb_type == URB_TYPE_CONTROL:
            if length < 8:
                raise Stop(errno.EINVAL)
            self.control(urb, state)
            urb.done = True
            state.completed.append(urb)
        elif urb_type == URB_TYPE_BULK:
            self.endpoint_interface(endpoint, state)
            state.pending.append(urb)
        else:
            raise Stop(errno.EINVAL)  # no interrupt or isochronous endpoints here
        self.urbs_submitted += 1

    def control(self, urb: Urb, state: ClientState) -> None:
        """Answer a control request; a request the printer does not know stalls (EPIPE)."""
        request_type, request, value, index, w_length = struct.unpack_from("<BBHHH", urb.payload)
        self.controls.append([request_type, request, value, index, w_length])
        if w_length > urb.length - 8:
            raise Stop(errno.EINVAL)
        self.check_control_recipient(request_type, request, index, state)
        if self.dying:
            urb.status = self.unplug_status
            return
        answer = self.answer(request_type, request, value, index)
        if answer is None:
            urb.status = -errno.EPIPE
            return
        urb.answer = answer[:w_length] if request_type & 0x80 else b""
        urb.actual = len(urb.answer)

    def answer(self, request_type: int, request: int, value: int, index: int) -> bytes | None:
        """The data stage of a control request the printer knows; None stalls it."""
        if request_type == 0x80 and request == 6:  # GET_DESCRIPTOR
            return self.descriptor(value >> 8, value & 0xFF, index)
        if request_type == RT_CLASS_IN and request == REQ_GET_DEVICE_ID:
            if value == 0 and self.is_printer_alt(index >> 8, index & 0xFF):
                return self.device_id
            return None
        if request_type == RT_CLASS_IN and request == REQ_GET_PORT_STATUS:
            return bytes([self.port_status]) if index == self.printer_interface else None
        if request == REQ_SOFT_RESET and request_type in (RT_CLASS_OUT, RT_SOFT_RESET_USBLP):
            self.soft_resets.append(request_type)
            if request_type == RT_CLASS_OUT or self.accept_soft_reset_0x23:
                self.halted.clear()
                return b""
        return None

    def descriptor(self, kind: int, number: int, langid: int) -> bytes | None:
        """GET_DESCRIPTOR: device, configuration 0, LANGIDs, en-US strings."""
        if kind == 1:
            return self.device
        if kind == 2 and number == 0:
            return self.config
        if kind == 3 and number == 0:
            return struct.pack("<BBH", 4, 3, LANGID_EN_US)
        if kind == 3 and number in self.strings and langid == LANGID_EN_US:
            return string_descriptor(self.strings[number])
        return None

    def is_printer_alt(self, interface: int, alt: int) -> bool:
        """Whether ``interface``/``alt`` is a printer-class alt setting."""
        return any(
            a.number == interface and a.alt == alt and a.cls == USB_CLASS_PRINTER for a in self.alts
        )

    def check_control_recipient(
        self, request_type: int, request: int, index: int, state: ClientState
    ) -> None:
        """devio.c check_ctrlrecip: interface requests claim wIndex's low byte, except one.

        GET_DEVICE_ID puts the interface in wIndex's high byte and the alt setting in the low
        one, so the kernel lets it through for a printer alt setting without a claim.
        """
        if request_type & 0x60 == 0x40:
            return  # vendor requests are not checked
        if (
            request_type == RT_CLASS_IN
            and request == REQ_GET_DEVICE_ID
            and self.is_printer_alt(index >> 8, index & 0xFF)
        ):
            return
        recipient = request_type & 0x1F
        if recipient == 1:  # interface
            self.claim_implicitly_checked(state, index & 0xFF)
        elif recipient == 2 and index & 0x7F:  # endpoint
            self.endpoint_interface(index & 0xFF, state)

    def claim_implicitly_checked(self, state: ClientState, number: int) -> None:
        """checkintf for a control request (ENOENT for an interface that does not exist)."""
        self.check_interface(number)
        self.claim_implicitly(state, number)

    def progress(self, state: ClientState) -> None:
        """Move this file's in-flight bulk URBs on, in order per endpoint."""
        now = time.monotonic()
        blocked: set[int] = set()
        for urb in list(state.pending):
            if urb.endpoint in blocked:
                continue
            if self.gone or self.dying:
                urb.status, urb.actual, urb.done = self.unplug_status, urb.accepted, True
            elif urb.stuck:
                pass
            elif urb.endpoint in self.halted or self.stall_due(urb):
                if urb.endpoint not in self.halted:
                    self.stall_left[urb.endpoint] -= 1
                    self.halted.add(urb.endpoint)
                urb.status, urb.done = -errno.EPIPE, True
            elif urb.endpoint & 0x80:
                self.progress_in(urb)
            else:
                self.progress_out(urb, now)
            if urb.done:
                state.pending.remove(urb)
                state.completed.append(urb)
            else:
                blocked.add(urb.endpoint)

    def stall_due(self, urb: Urb) -> bool:
        """Whether ``urb`` is one the ``stall`` command asked to fail (after its skips).

        Decided once per URB: a URB held back by a NAK is looked at on every reap.
        """
        if urb.stall is None:
            endpoint = urb.endpoint
            urb.stall = False
            if self.stall_left.get(endpoint, 0) > 0:
                if self.stall_skip.get(endpoint, 0) > 0:
                    self.stall_skip[endpoint] -= 1
                else:
                    urb.stall = True
        return urb.stall

    def progress_in(self, urb: Urb) -> None:
        """Bulk IN: done as soon as the back channel has something."""
        if self.back_channel:
            urb.answer = bytes(self.back_channel[: urb.length])
            del self.back_channel[: len(urb.answer)]
            urb.actual, urb.done = len(urb.answer), True

    def progress_out(self, urb: Urb, now: float) -> None:
        """Bulk OUT: take what the short-write rule and the NAK window allow."""
        if self.short_next is not None and urb.accepted == 0:
            left = len(urb.payload)
            take = left // 2 if self.short_next < 0 else min(self.short_next, left)
            self.short_next = None
            self.accept(urb, take)
            urb.stuck = True  # the rest is never taken: NAK until the client discards it
            return
        if self.nak_until is not None:
            if now < self.nak_until:
                return
            self.nak_until = None
        take = len(urb.payload) - urb.accepted
        if self.nak_budget is not None:
            take = min(take, self.nak_budget)
            self.nak_budget -= take
            if self.nak_budget == 0:
                self.nak_budget = None
                self.nak_until = now + self.nak_seconds
        self.accept(urb, take)
        if urb.accepted == len(urb.payload):
            urb.actual, urb.done = urb.accepted, True

    def accept(self, urb: Urb, count: int) -> None:
        """The device takes ``count`` more bytes of ``urb``."""
        self.received += urb.payload[urb.accepted : urb.accepted + count]
        urb.accepted += count

    def ioctl_discard(self, arg: Any, state: ClientState) -> None:
        """DISCARDURB: unlink; the URB completes with -ECONNRESET and what it moved so far."""
        address = struct.unpack("<Q", bytes(arg.retrieve()))[0]
        for urb in state.pending:
            if urb.address == address:
                state.pending.remove(urb)
                urb.status, urb.actual, urb.done = -errno.ECONNRESET, urb.accepted, True
                state.completed.append(urb)
                self.discards += 1
                return
        raise Stop(errno.EINVAL)  # already completed: libusb then reaps it normally

    def reap(self, arg: Any, state: ClientState) -> int:
        """REAPURB(NDELAY): hand back the oldest completed URB, or EAGAIN (ENODEV once gone)."""
        self.progress(state)
        if not state.completed:
            raise Stop(errno.ENODEV if self.gone else errno.EAGAIN)
        urb = state.completed.popleft()
        raw = bytearray(urb.struct_data.retrieve())
        struct.pack_into("<i", raw, 4, urb.status)
        struct.pack_into("<i", raw, 28, urb.actual)
        # Only the status and length change: the buffer pointer (offset 16) was resolved to a
        # local copy and umockdev writes the client's address back itself when it flushes.
        urb.struct_data.update(4, list(raw[4:8]))
        urb.struct_data.update(28, list(raw[28:32]))
        if urb.answer and urb.buffer is not None:
            offset = 8 if urb.type == URB_TYPE_CONTROL else 0
            urb.buffer.update(offset, list(urb.answer))
        # The argument is a pointer to the client's pointer: resolve that slot and point it at
        # the URB; set_ptr on the argument itself would overwrite umockdev's own bookkeeping.
        arg.resolve(0, 8).set_ptr(0, urb.struct_data)
        return 0

    # -- commands from the test ----------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything a test may want to assert on."""
        return {
            "bus": self.bus,
            "address": self.address,
            "serial": self.serial,
            "gone": self.gone,
            "dying": self.dying,
            "configuration": self.configuration,
            "alt_setting": self.alt_setting,
            "drivers": self.drivers,
            "claimed": sorted(self.claims),
            "clients": len(self.clients),
            "in_flight": sum(len(state.pending) for _, state in self.clients),
            "received": len(self.received),
            "counts": self.counts,
            "controls": self.controls,
            "implicit_claims": self.implicit_claims,
            "claim_history": self.claim_history,
            "detach_history": self.detach_history,
            "attach_history": self.attach_history,
            "discards": self.discards,
            "halted": sorted(self.halted),
            "clear_halts": self.clear_halts,
            "resets": self.resets,
            "soft_resets": self.soft_resets,
            "urbs_submitted": self.urbs_submitted,
            "set_configuration_count": self.set_configuration_count,
        }


Printer.IOCTLS = {
    USBDEVFS_GET_CAPABILITIES: Printer.ioctl_capabilities,
    USBDEVFS_SUBMITURB: Printer.ioctl_submit,
    USBDEVFS_DISCARDURB: Printer.ioctl_discard,
    USBDEVFS_GETDRIVER: Printer.ioctl_getdriver,
    USBDEVFS_IOCTL: Printer.ioctl_ioctl,
    USBDEVFS_CLAIMINTERFACE: Printer.ioctl_claim,
    USBDEVFS_RELEASEINTERFACE: Printer.ioctl_release,
    USBDEVFS_DISCONNECT_CLAIM: Printer.ioctl_disconnect_claim,
    USBDEVFS_SETINTERFACE: Printer.ioctl_set_interface,
    USBDEVFS_SETCONFIGURATION: Printer.ioctl_set_configuration,
    USBDEVFS_CLEAR_HALT: Printer.ioctl_clear_halt,
    USBDEVFS_RESET: Printer.ioctl_reset,
    USBDEVFS_CONNECTINFO: Printer.ioctl_connectinfo,
}


def sysfs_newlines(lines: list[str]) -> list[str]:
    """End every ``A:`` attribute with a newline, as sysfs does (libusb warns otherwise).

    The record format unescapes ``\\n`` in attribute values into a newline.
    """
    return [line + "\\n" if line.startswith("A: ") else line for line in lines]


def read_u32(arg: Any) -> int:
    """The unsigned int an ioctl argument points to."""
    value: int = struct.unpack("<I", bytes(arg.resolve(0, 4).retrieve()))[0]
    return value


def log(message: str) -> None:
    """Diagnostics go to stderr: stdout carries the protocol."""
    print(f"umockdev_printer: {message}", file=sys.stderr, flush=True)


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


def ensure_preloaded() -> None:
    """Re-run this script under umockdev's preload library if it is not already.

    The testbed sends uevents through libudev in this process, which must see the testbed's
    /sys like the clients do (umockdev-wrapper does the same for a test suite).
    """
    preload = os.environ.get("LD_PRELOAD", "")
    if PRELOAD in preload:
        return
    env = dict(os.environ, LD_PRELOAD=f"{PRELOAD}:{preload}" if preload else PRELOAD)
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def main() -> int:
    """Build the testbed with one printer, print where it is, then serve commands."""
    ensure_preloaded()
    bed = Bed()
    first = Printer(
        bed, address=2, port=1, product_id=0x0001, serial="UMOCK0001", alts=simple_printer_alts()
    )
    bed.add(first)
    print(f"UMOCKDEV_DIR={bed.root}", flush=True)
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                reply = bed.command(line)
            except (KeyError, ValueError, TypeError) as exc:
                reply = {"ok": False, "error": repr(exc)}
            print(json.dumps(reply), flush=True)
            if json.loads(line).get("op") == "quit":
                break
    finally:
        # The testbed removes its directory only when finalized, which exit does not do.
        shutil.rmtree(bed.root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

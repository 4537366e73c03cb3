"""One printer behind a usbfs device node: the ioctls libusb makes, answered as devio.c does."""

from __future__ import annotations

import errno
import os
import struct
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import usblp_emu._abi as abi
from tools.umockdev_rig.descriptors import (
    LANGID_EN_US,
    VENDOR_ID,
    Alt,
    config_descriptor,
    device_descriptor,
    encode_device_id,
    string_descriptor,
    sysfs_newlines,
)
from tools.umockdev_rig.usbfs import (
    CAPABILITIES,
    IOCTL_NAMES,
    URB_SIZE,
    URB_TYPE_BULK,
    URB_TYPE_CONTROL,
    USBDEVFS_CLAIMINTERFACE,
    USBDEVFS_CLEAR_HALT,
    USBDEVFS_CONNECT,
    USBDEVFS_CONNECTINFO,
    USBDEVFS_DISCARDURB,
    USBDEVFS_DISCONNECT,
    USBDEVFS_DISCONNECT_CLAIM,
    USBDEVFS_GET_CAPABILITIES,
    USBDEVFS_GETDRIVER,
    USBDEVFS_IOCTL,
    USBDEVFS_REAPURB,
    USBDEVFS_REAPURBNDELAY,
    USBDEVFS_RELEASEINTERFACE,
    USBDEVFS_RESET,
    USBDEVFS_SETCONFIGURATION,
    USBDEVFS_SETINTERFACE,
    USBDEVFS_SUBMITURB,
    ClientState,
    Stop,
    Urb,
    read_u32,
)
from usblp_emu._usblp._ids import usblp_binds

if TYPE_CHECKING:
    from tools.umockdev_rig.testbed import Bed

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
        if request_type == abi.RT_CLASS_IN and request == abi.REQ_GET_DEVICE_ID:
            if value == 0 and self.is_printer_alt(index >> 8, index & 0xFF):
                return self.device_id
            return None
        if request_type == abi.RT_CLASS_IN and request == abi.REQ_GET_PORT_STATUS:
            return bytes([self.port_status]) if index == self.printer_interface else None
        if request == abi.REQ_SOFT_RESET and request_type in (
            abi.RT_CLASS_OUT,
            abi.RT_SOFT_RESET_USBLP,
        ):
            self.soft_resets.append(request_type)
            if request_type == abi.RT_CLASS_OUT or self.accept_soft_reset_0x23:
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
            a.number == interface and a.alt == alt and a.cls == abi.USB_CLASS_PRINTER
            for a in self.alts
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
            request_type == abi.RT_CLASS_IN
            and request == abi.REQ_GET_DEVICE_ID
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


def log(message: str) -> None:
    """Diagnostics go to stderr: stdout carries the protocol."""
    print(f"umockdev_printer: {message}", file=sys.stderr, flush=True)

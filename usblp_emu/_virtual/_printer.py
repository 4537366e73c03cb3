"""VirtualPrinter: an in-memory USB printer the emulated host controller drives.

Rules and invariants:
- Everything a printer holds that threads share (received bytes, read-back data, status,
  scripted faults, the host link) is guarded by one :class:`hazard.Lock`, so the explorer sees
  every access and a printer is deterministic under it. Time comes from
  :func:`hazard.monotonic` (the explorer's mock clock there).
- A state change that can let a pending transfer finish (paper loaded, data queued for the
  host, a fault expiring) kicks the host controller after releasing the lock.
- ``received`` is exactly the bytes the device accepted: a short write accepts a prefix.
- A firmware (``firmware=``) sees each accepted bulk OUT chunk under the lock and only returns
  replies; they are queued before the transfer completes.
- Bulk IN moves whole packets: a read whose buffer is not a multiple of the packet size, when
  the next packet does not fit, overflows (-EOVERFLOW) and the packet's excess is lost.
"""

from __future__ import annotations

import enum
import errno
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hazard import Lock, sleep
from usblp_emu._abi import (
    PRINTER_PROTOCOLS,
    REQ_GET_DEVICE_ID,
    REQ_GET_PORT_STATUS,
    REQ_HP_CHANNEL_CHANGE_REQUEST,
    REQ_SOFT_RESET,
    RT_CLASS_IN,
    RT_CLASS_OUT,
    RT_SOFT_RESET_USBLP,
    USB_CLASS_PRINTER,
    USB_DIR_IN,
    USB_RECIP_INTERFACE,
    USB_TYPE_VENDOR,
)
from usblp_emu._core._descriptors import (
    Completion,
    DeviceDescriptor,
    TransferFailed,
)
from usblp_emu._errors import EmulatorUsageError
from usblp_emu._virtual._firmware import Firmware
from usblp_emu._virtual._layout import SPEEDS, ExtraInterface, UsbInfo, printer_layout

__all__ = ["DEFAULT_DEVICE_ID", "DeviceSilent", "Fault", "VirtualPrinter", "encode_device_id"]

DEFAULT_DEVICE_ID = "MFG:Acme;MDL:Laser 1;CMD:PCL,PJL;CLS:PRINTER;"

# Requests a printer answers (bmRequestType, bRequest).
_GET_DEVICE_ID = (RT_CLASS_IN, REQ_GET_DEVICE_ID)
_GET_PORT_STATUS = (RT_CLASS_IN, REQ_GET_PORT_STATUS)
# usblp sends 0x23; the class spec says 0x21
_SOFT_RESET = {(RT_SOFT_RESET_USBLP, REQ_SOFT_RESET), (RT_CLASS_OUT, REQ_SOFT_RESET)}
_HP_CHANNEL = (USB_DIR_IN | USB_TYPE_VENDOR | USB_RECIP_INTERFACE, REQ_HP_CHANNEL_CHANGE_REQUEST)


class DeviceSilent(TransferFailed):
    """A control request the printer never answers (-ETIMEDOUT).

    The emulated USB core reports it at once; VirtualBackend waits as libusb does, the
    transfer's timeout (``duration`` seconds when the transfer has none).
    """

    def __init__(self, duration: float) -> None:
        super().__init__(-errno.ETIMEDOUT)
        self.duration = duration


class Fault(enum.Enum):
    """A scripted failure for the next matching transfer."""

    STALL = "stall"  # the endpoint stalls: -EPIPE
    TIMEOUT = "timeout"  # the device stops answering for a while (NAKs); control: -ETIMEDOUT
    EPIPE = "epipe"  # a broken pipe reported by the host controller
    EIO = "eio"  # a protocol error on the wire (-EPROTO)
    SHORT = "short"  # a bulk OUT accepts only half the bytes


_WHERE = ("bulk-out", "bulk-in", "control")


@dataclass
class _Scripted:
    fault: Fault
    where: str
    count: int
    duration: float
    until: float | None = None  # TIMEOUT: when the device answers again


def encode_device_id(text: str) -> bytes:
    """An IEEE 1284 Device ID as sent on the wire: big-endian length (counting itself), text."""
    body = text.encode("utf-8")  # what parse_device_id tries first
    return (len(body) + 2).to_bytes(2, "big") + body


class VirtualPrinter:
    """A USB printer in memory: Device ID, port status, paper, speed, faults, read-back.

    Args:
        device_id: the IEEE 1284 Device ID; a str is encoded with its length prefix, bytes
            are sent exactly as given (so malformed answers can be tested).
        bidirectional: offer protocol 2 (bidirectional) besides 1.
        protocols: the printer-class protocols offered, one alt setting each (default
            (1, 2) if bidirectional, else (1,)); protocol 3 is IEEE 1284.4.
        vendor_id, product_id, serial, manufacturer, product: descriptor fields.
        interface_class: bInterfaceClass (7; anything else to test QUIRK_BAD_CLASS).
        bytes_per_second: bulk OUT throughput (None: instant).
        latency: seconds from a bulk transfer's submission to its earliest completion.
        resume_latency: seconds a runtime resume takes.
        interface_number: the printer interface's bInterfaceNumber (0).
        out_endpoint, in_endpoint: its bulk endpoint addresses (0x01, 0x82).
        extra_interfaces: the other interfaces of a composite device (numbers 0..n-1 with the
            printer's, once each); data sent to their OUT endpoints is kept apart
            (:meth:`received_at`), :meth:`send_to_host` feeds their IN endpoints.
        speed: "high" (512-byte bulk packets, answers DEVICE_QUALIFIER) or "full" (64).
        bcd_usb: bcdUSB (default: 0x0200 at high speed, 0x0110 at full speed).
        bcd_device, max_power_ma, self_powered: bcdDevice, bMaxPower (mA), and bmAttributes'
            self-powered bit.
        firmware: a :class:`~usblp_emu.Firmware` that sees every accepted bulk OUT chunk and
            may queue replies (e.g. :class:`~usblp_emu.EscPosStatus`).

    Alt settings are numbered in the order of ``protocols``: ``protocols=(2, 1)`` makes the
    bidirectional one alt setting 0, as on printers whose first alt setting is protocol 2.

    """

    def __init__(
        self,
        device_id: str | bytes = DEFAULT_DEVICE_ID,
        *,
        bidirectional: bool = True,
        protocols: tuple[int, ...] | None = None,
        vendor_id: int = 0x1D6B,
        product_id: int = 0x0104,
        serial: str = "VP0001",
        manufacturer: str = "Acme",
        product: str = "Laser 1",
        interface_class: int = USB_CLASS_PRINTER,
        bytes_per_second: float | None = None,
        latency: float = 0.0,
        resume_latency: float = 0.0,
        interface_number: int = 0,
        out_endpoint: int = 0x01,
        in_endpoint: int = 0x82,
        extra_interfaces: Sequence[ExtraInterface] = (),
        speed: str = "high",
        bcd_usb: int | None = None,
        bcd_device: int = 0x0100,
        max_power_ma: int = 2,
        self_powered: bool = True,
        firmware: Firmware | None = None,
    ) -> None:
        if protocols is None:
            protocols = (1, 2) if bidirectional else (1,)
        if not protocols or any(p not in PRINTER_PROTOCOLS for p in protocols):
            raise EmulatorUsageError(
                f"protocols must be a non-empty tuple of 1, 2, 3; got {protocols!r}"
            )
        if bytes_per_second is not None and bytes_per_second <= 0:
            raise EmulatorUsageError(f"bytes_per_second must be > 0, not {bytes_per_second!r}")
        if latency < 0 or resume_latency < 0:
            raise EmulatorUsageError("latency and resume_latency must be >= 0 seconds")
        if not isinstance(device_id, (str, bytes)):
            raise EmulatorUsageError(
                f"device_id must be str or bytes, not {type(device_id).__name__}"
            )
        self._id_answer = (
            encode_device_id(device_id) if isinstance(device_id, str) else bytes(device_id)
        )
        if firmware is not None and not isinstance(firmware, Firmware):
            raise EmulatorUsageError(
                f"firmware must have a receive(data) method, not {type(firmware).__name__}"
            )
        if bcd_usb is None:
            bcd_usb = SPEEDS.get(speed, SPEEDS["high"])[2]
        self._info = UsbInfo(speed, bcd_usb, bcd_device, max_power_ma, self_powered)
        interfaces = printer_layout(
            protocols=protocols,
            interface_class=interface_class,
            interface_number=interface_number,
            out_endpoint=out_endpoint,
            in_endpoint=in_endpoint,
            extra_interfaces=extra_interfaces,
            info=self._info,
        )
        self._descriptor = DeviceDescriptor(
            vendor_id, product_id, manufacturer, product, serial, interfaces
        )
        self._number = interface_number
        self._out_ep = out_endpoint
        self._in_ep = in_endpoint
        self._packet = {
            e.address: e.max_packet for alts in interfaces for a in alts for e in a.endpoints
        }
        self.firmware = firmware
        self.bytes_per_second = bytes_per_second
        self.latency = latency
        self.resume_latency = resume_latency
        self._lock = Lock("printer")
        # Guarded by _lock.
        self._received = bytearray()
        self._to_host: deque[bytes] = deque()  # the printer's bulk IN
        self._queued: dict[int, deque[bytes]] = {}  # the other IN endpoints
        self._received_at: dict[int, bytearray] = {}  # the other OUT endpoints
        self._paper_out = False
        self._offline = False
        self._error = False
        self._faults: list[_Scripted] = []
        self._free_buffers: int | None = None  # None: the reader keeps up (hold_bulk_out)
        self._status_byte: int | None = None  # set_port_status(): reported as is
        self._kick: Callable[[], None] | None = None
        self._suspended = False
        self._resets = 0

    # -- what tests and users see -----------------------------------------------------------

    @property
    def descriptor(self) -> DeviceDescriptor:
        """The device's descriptors."""
        return self._descriptor

    @property
    def usb_info(self) -> UsbInfo:
        """Speed, bcdUSB, bcdDevice and power, as libusb reports them."""
        return self._info

    @property
    def interface_number(self) -> int:
        """The printer interface's bInterfaceNumber."""
        return self._number

    @property
    def endpoints(self) -> tuple[int, int]:
        """The printer interface's bulk (OUT, IN) endpoint addresses."""
        return self._out_ep, self._in_ep

    def received_at(self, endpoint: int) -> bytes:
        """What the host sent to OUT ``endpoint`` of an extra interface."""
        with self._lock:
            return bytes(self._received_at.get(endpoint, b""))

    @property
    def serial(self) -> str:
        """The serial number string."""
        return self._descriptor.serial

    @property
    def received(self) -> bytes:
        """Every byte the printer accepted, in order."""
        with self._lock:
            return bytes(self._received)

    @property
    def plugged(self) -> bool:
        """Whether a host has it plugged in."""
        with self._lock:
            return self._kick is not None

    @property
    def suspended(self) -> bool:
        """Whether the host suspended it."""
        with self._lock:
            return self._suspended

    @property
    def resets(self) -> int:
        """SOFT_RESET requests received."""
        with self._lock:
            return self._resets

    @property
    def port_status(self) -> int:
        """The GET_PORT_STATUS byte: 0x08 not-error, 0x10 selected, 0x20 paper empty."""
        with self._lock:
            return self._status_locked()

    def _status_locked(self) -> int:
        if self._status_byte is not None:
            return self._status_byte
        status = 0
        if not self._error:
            status |= 0x08
        if not self._offline:
            status |= 0x10
        if self._paper_out:
            status |= 0x20
        return status

    def set_paper_out(self, paper_out: bool = True) -> None:
        """Run out of paper (bulk OUT then NAKs until paper is loaded again)."""
        self._set(paper_out=paper_out)

    def set_offline(self, offline: bool = True) -> None:
        """Go off-line (bulk OUT NAKs until on-line again)."""
        self._set(offline=offline)

    def set_port_status(self, status: int | None) -> None:
        """Report ``status`` as the GET_PORT_STATUS byte, whatever the printer is doing.

        A device whose status byte is set by its firmware apart from its data path (f_printer's
        GADGET_SET_PRINTER_STATUS) says "out of paper" and still takes data; None goes back to
        the byte derived from paper, off-line and error.
        """
        if status is not None and not 0 <= status <= 0xFF:
            raise EmulatorUsageError(f"status must be a byte (0..255) or None, not {status!r}")
        with self._lock:
            self._status_byte = status

    def hold_bulk_out(self, buffers: int = 0) -> None:
        """Stop taking data from the host, with the port status unchanged.

        A device whose own reader stopped (f_printer's gadget when nobody reads
        ``/dev/g_printer0``) still completes ``buffers`` more bulk OUT transfers, one per
        receive buffer it has queued, then NAKs until :meth:`release_bulk_out`. Unlike
        :meth:`set_offline`, the printer still reports itself selected.
        """
        if buffers < 0:
            raise EmulatorUsageError(f"buffers must be >= 0, not {buffers!r}")
        with self._lock:
            self._free_buffers = buffers

    def release_bulk_out(self) -> None:
        """Take data again after :meth:`hold_bulk_out`."""
        with self._lock:
            self._free_buffers = None
            kick = self._kick
        if kick is not None:
            kick()

    def set_error(self, error: bool = True) -> None:
        """Raise or clear the printer's error line ("on fire")."""
        self._set(error=error)

    def _set(
        self,
        *,
        paper_out: bool | None = None,
        offline: bool | None = None,
        error: bool | None = None,
    ) -> None:
        with self._lock:
            if paper_out is not None:
                self._paper_out = paper_out
            if offline is not None:
                self._offline = offline
            if error is not None:
                self._error = error
            kick = self._kick
        if kick is not None:
            kick()

    def send_to_host(self, data: bytes, *, endpoint: int | None = None) -> None:
        """Queue ``data`` as one message on the read-back channel (bulk IN).

        One transfer carries at most what the host asks for; the rest stays queued, unless
        the host's buffer ends inside a packet (see the module's rules: an overflow).

        Args:
            data: the message.
            endpoint: an IN endpoint of an extra interface (bulk or interrupt) instead of
                the printer's.

        """
        if not data:
            raise EmulatorUsageError("send_to_host() needs at least one byte")
        if endpoint is not None and (
            not endpoint & 0x80 or endpoint not in self._packet or endpoint == self._in_ep
        ):
            raise EmulatorUsageError(
                f"endpoint 0x{endpoint:02x} is not an IN endpoint of an extra interface"
            )
        with self._lock:
            queue = self._to_host if endpoint is None else self._queued_locked(endpoint)
            queue.append(bytes(data))
            kick = self._kick
        if kick is not None:
            kick()

    def inject(
        self, fault: Fault | str, *, where: str = "bulk-out", count: int = 1, duration: float = 2.0
    ) -> None:
        """Script a failure for the next ``count`` transfers at ``where``.

        Args:
            fault: a Fault or its name ("stall", "timeout", "epipe", "eio", "short").
            where: "bulk-out", "bulk-in" or "control".
            count: how many transfers fail.
            duration: for TIMEOUT on a bulk endpoint: seconds the device NAKs; on control,
                how long a transfer without a timeout waits before it fails.

        """
        try:
            fault = Fault(fault)
        except ValueError:
            names = ", ".join(f.value for f in Fault)
            raise EmulatorUsageError(f"unknown fault {fault!r}; choose from {names}") from None
        if where not in _WHERE:
            raise EmulatorUsageError(f"where must be one of {', '.join(_WHERE)}, not {where!r}")
        if count < 1 or duration < 0:
            raise EmulatorUsageError("count must be >= 1 and duration >= 0")
        with self._lock:
            self._faults.append(_Scripted(fault, where, count, duration))

    def _queued_locked(self, endpoint: int) -> deque[bytes]:
        if endpoint == self._in_ep:
            return self._to_host
        return self._queued.setdefault(endpoint, deque())

    def _take_fault_locked(self, where: str) -> _Scripted | None:
        for scripted in self._faults:
            if scripted.where == where:
                return scripted
        return None

    def _consume_locked(self, scripted: _Scripted) -> None:
        scripted.count -= 1
        if scripted.count == 0:
            self._faults.remove(scripted)

    # -- the device side (called by the USB core) ----------------------------------------------

    def connect(self, kick: Callable[[], None]) -> None:
        """Plugged into a host whose controller ``kick`` wakes."""
        with self._lock:
            if self._kick is not None:
                raise EmulatorUsageError(f"printer {self.serial} is already plugged into a host")
            self._kick = kick
            self._suspended = False

    def disconnect(self) -> None:
        """Unplugged."""
        with self._lock:
            self._kick = None

    def control(
        self, request_type: int, request: int, value: int, index: int, data: bytes | int
    ) -> bytes | int:
        """Answer a control request (see the module's request table)."""
        with self._lock:
            scripted = self._take_fault_locked("control")
            if scripted is not None:
                self._consume_locked(scripted)
                if scripted.fault is Fault.TIMEOUT:
                    raise DeviceSilent(scripted.duration)
                raise TransferFailed(_control_status(scripted.fault))
            key = (request_type, request)
            if key == _GET_DEVICE_ID:
                assert isinstance(data, int)
                return self._id_answer[:data]
            if key == _GET_PORT_STATUS:
                return bytes([self._status_locked()])[: int(data)]
            if key in _SOFT_RESET:
                self._resets += 1
                self._to_host.clear()
                return 0
            if key == _HP_CHANNEL:
                return bytes([value & 0xFF])[: int(data)]
        raise TransferFailed(-errno.EPIPE)  # a stall: request not supported

    def set_interface(self, number: int, alternate: int) -> None:
        """SET_INTERFACE: a stall unless the printer has that alt setting.

        Every alt setting has the same endpoints, so the printer keeps no state for it.
        """
        interfaces = self._descriptor.interfaces
        alts = interfaces[number] if 0 <= number < len(interfaces) else ()
        if not any(a.alternate == alternate for a in alts):
            raise TransferFailed(-errno.EPIPE)

    def service(
        self, endpoint: int, length: int, payload: bytes, started: float, now: float
    ) -> Completion | float | None:
        """Finish a bulk transfer if the printer can; else when to ask again (None: on a kick)."""
        with self._lock:
            if endpoint & 0x80:
                return self._service_in_locked(endpoint, length, now)
            if endpoint != self._out_ep:
                # An extra interface's OUT endpoint: taken at once, kept apart.
                self._received_at.setdefault(endpoint, bytearray()).extend(payload)
                return Completion(0, len(payload))
            return self._service_out_locked(payload, started, now)

    def _service_in_locked(
        self, endpoint: int, length: int, now: float
    ) -> Completion | float | None:
        if endpoint == self._in_ep:
            scripted = self._take_fault_locked("bulk-in")
            if scripted is not None:
                if scripted.fault is Fault.TIMEOUT:
                    return self._timeout_locked(scripted, now)
                self._consume_locked(scripted)
                return Completion(_bulk_status(scripted.fault))
        queue = self._queued_locked(endpoint)
        if not queue:
            return None
        chunk = queue.popleft()
        if len(chunk) <= length:
            return Completion(0, len(chunk), chunk)
        packet = self._packet.get(endpoint, 512)
        if length % packet == 0:
            queue.appendleft(chunk[length:])  # the buffer filled on a packet boundary
            return Completion(0, length, chunk[:length])
        # The packet that crosses the buffer's end does not fit: babble. The host keeps what
        # fit; the rest of that packet is lost; later packets stay queued.
        lost_to = min(len(chunk), (length // packet + 1) * packet)
        if lost_to < len(chunk):
            queue.appendleft(chunk[lost_to:])
        return Completion(-errno.EOVERFLOW, length, chunk[:length])

    def _service_out_locked(
        self, payload: bytes, started: float, now: float
    ) -> Completion | float | None:
        if self._paper_out or self._offline or self._suspended or self._free_buffers == 0:
            return None
        ready = started + self.latency
        if self.bytes_per_second is not None:
            ready += len(payload) / self.bytes_per_second
        if now < ready:
            return ready
        scripted = self._take_fault_locked("bulk-out")
        accepted = payload
        if scripted is not None:
            if scripted.fault is Fault.TIMEOUT:
                return self._timeout_locked(scripted, now)
            self._consume_locked(scripted)
            if scripted.fault is not Fault.SHORT:
                return Completion(_bulk_status(scripted.fault))
            accepted = payload[: len(payload) // 2]
        self._accept_locked(accepted)
        if self._free_buffers is not None:
            self._free_buffers -= 1  # each transfer fills one receive buffer, however short
        return Completion(0, len(accepted))

    def _accept_locked(self, accepted: bytes) -> None:
        self._received += accepted
        if self.firmware is not None and accepted:
            for reply in self.firmware.receive(bytes(accepted)):
                if reply:
                    self._to_host.append(bytes(reply))

    def cut(self, endpoint: int, payload: bytes, started: float, now: float) -> int:
        """A bulk OUT transfer cancelled at ``now`` (its timeout): accept what went.

        What went is the whole packets the printer took by then: none while it NAKs (paper
        out, off-line, suspended, held, a TIMEOUT fault), else as many as its throughput
        moved since ``started + latency``.

        Returns:
            The count accepted (a prefix of ``payload``).

        """
        with self._lock:
            if endpoint != self._out_ep or self._nak_locked():
                return 0
            if self.bytes_per_second is None:
                return 0  # an instant printer completes at once or NAKs: never part-way
            elapsed = now - started - self.latency
            went = max(0, min(len(payload), int(elapsed * self.bytes_per_second)))
            packet = self._packet[endpoint]
            went -= went % packet
            accepted = payload[:went]
            self._accept_locked(accepted)
            return len(accepted)

    def _nak_locked(self) -> bool:
        scripted = self._take_fault_locked("bulk-out")
        timing_out = scripted is not None and scripted.fault is Fault.TIMEOUT
        held = self._free_buffers == 0
        return self._paper_out or self._offline or self._suspended or held or timing_out

    def _timeout_locked(self, scripted: _Scripted, now: float) -> float | None:
        if scripted.until is None:
            scripted.until = now + scripted.duration
        if now < scripted.until:
            return scripted.until
        self._consume_locked(scripted)
        return now  # answer again at once

    def cancel(self, endpoint: int, started: float) -> None:
        """A killed transfer: nothing to undo, a transfer here is only ever a service call."""

    def suspend(self) -> None:
        """Runtime or system suspend."""
        with self._lock:
            self._suspended = True

    def resume(self) -> None:
        """Resume: takes ``resume_latency`` seconds."""
        if self.resume_latency:
            sleep(self.resume_latency)
        with self._lock:
            self._suspended = False
            kick = self._kick
        if kick is not None:
            kick()

    def __repr__(self) -> str:
        d = self._descriptor
        return f"<VirtualPrinter {d.vendor_id:04x}:{d.product_id:04x} serial={d.serial!r}>"


def _bulk_status(fault: Fault) -> int:
    return {Fault.STALL: -errno.EPIPE, Fault.EPIPE: -errno.EPIPE, Fault.EIO: -errno.EPROTO}[fault]


def _control_status(fault: Fault) -> int:
    return {
        Fault.STALL: -errno.EPIPE,
        Fault.EPIPE: -errno.EPIPE,
        Fault.EIO: -errno.EPROTO,
        Fault.TIMEOUT: -errno.ETIMEDOUT,
        Fault.SHORT: -errno.EREMOTEIO,
    }[fault]

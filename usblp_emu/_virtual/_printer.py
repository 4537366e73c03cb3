"""VirtualPrinter: an in-memory USB printer the emulated host controller drives.

Rules and invariants:
- Everything a printer holds that threads share (received bytes, read-back data, status,
  scripted faults, the host link) is guarded by one :class:`hazard.Lock`, so the explorer sees
  every access and a printer is deterministic under it. Time comes from
  :func:`hazard.monotonic` (the explorer's mock clock there).
- A state change that can let a pending transfer finish (paper loaded, data queued for the
  host, a fault expiring) kicks the host controller after releasing the lock.
- ``received`` is exactly the bytes the device accepted: a short write accepts a prefix.
"""

from __future__ import annotations

import enum
import errno
from collections import deque
from collections.abc import Callable
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
    USB_SUBCLASS_PRINTER,
    USB_TYPE_VENDOR,
)
from usblp_emu._core._descriptors import (
    AltSetting,
    Completion,
    DeviceDescriptor,
    Endpoint,
    TransferFailed,
)
from usblp_emu._errors import EmulatorUsageError

__all__ = ["DEFAULT_DEVICE_ID", "Fault", "VirtualPrinter", "encode_device_id"]

DEFAULT_DEVICE_ID = "MFG:Acme;MDL:Laser 1;CMD:PCL,PJL;CLS:PRINTER;"

_OUT_EP = 0x01
_IN_EP = 0x82

# Requests a printer answers (bmRequestType, bRequest).
_GET_DEVICE_ID = (RT_CLASS_IN, REQ_GET_DEVICE_ID)
_GET_PORT_STATUS = (RT_CLASS_IN, REQ_GET_PORT_STATUS)
# usblp sends 0x23; the class spec says 0x21
_SOFT_RESET = {(RT_SOFT_RESET_USBLP, REQ_SOFT_RESET), (RT_CLASS_OUT, REQ_SOFT_RESET)}
_HP_CHANNEL = (USB_DIR_IN | USB_TYPE_VENDOR | USB_RECIP_INTERFACE, REQ_HP_CHANNEL_CHANGE_REQUEST)


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
        alts = tuple(
            AltSetting(
                number=0,
                alternate=i,
                interface_class=interface_class,
                interface_subclass=USB_SUBCLASS_PRINTER,
                interface_protocol=p,
                endpoints=(Endpoint(_OUT_EP),) if p == 1 else (Endpoint(_OUT_EP), Endpoint(_IN_EP)),
            )
            for i, p in enumerate(protocols)
        )
        self._descriptor = DeviceDescriptor(
            vendor_id, product_id, manufacturer, product, serial, (alts,)
        )
        self.bytes_per_second = bytes_per_second
        self.latency = latency
        self.resume_latency = resume_latency
        self._lock = Lock("printer")
        # Guarded by _lock.
        self._received = bytearray()
        self._to_host: deque[bytes] = deque()
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

    def send_to_host(self, data: bytes) -> None:
        """Queue ``data`` on the read-back channel (bulk IN).

        One transfer carries at most what the host asks for.
        """
        if not data:
            raise EmulatorUsageError("send_to_host() needs at least one byte")
        with self._lock:
            self._to_host.append(bytes(data))
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
            duration: for TIMEOUT on a bulk endpoint: seconds the device NAKs.

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
        if number != 0 or not any(a.alternate == alternate for a in self._descriptor.interfaces[0]):
            raise TransferFailed(-errno.EPIPE)

    def service(
        self, endpoint: int, length: int, payload: bytes, started: float, now: float
    ) -> Completion | float | None:
        """Finish a bulk transfer if the printer can; else when to ask again (None: on a kick)."""
        with self._lock:
            if endpoint & 0x80:
                return self._service_in_locked(length, now)
            return self._service_out_locked(payload, started, now)

    def _service_in_locked(self, length: int, now: float) -> Completion | float | None:
        scripted = self._take_fault_locked("bulk-in")
        if scripted is not None:
            if scripted.fault is Fault.TIMEOUT:
                return self._timeout_locked(scripted, now)
            self._consume_locked(scripted)
            return Completion(_bulk_status(scripted.fault))
        if not self._to_host:
            return None
        chunk = self._to_host.popleft()
        if len(chunk) > length:
            self._to_host.appendleft(chunk[length:])
            chunk = chunk[:length]
        return Completion(0, len(chunk), chunk)

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
        self._received += accepted
        if self._free_buffers is not None:
            self._free_buffers -= 1  # each transfer fills one receive buffer, however short
        return Completion(0, len(accepted))

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

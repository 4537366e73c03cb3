"""PyusbModel: a printer reached through pyusb, as a device the emulated USB core can drive.

The emulated host controller asks a device to ``service`` each pending bulk transfer and
expects an answer at once; a real transfer blocks. So each transfer runs on a worker thread
of its own: the first ``service`` call for a transfer starts it and answers "wait for a kick",
the worker stores the completion and kicks the controller, the next ``service`` call hands
the completion over.

Rules and invariants:
- Transfers are keyed by (endpoint, submission time): the controller gives both on every
  ``service`` call, and a resubmitted URB gets a new submission time.
- The table of transfers is guarded by one :class:`hazard.Lock`; workers touch it only to
  store their result and read their cancel flag.
- A cancelled transfer (the URB was killed) stops at its next time slice: writes go out in
  slices of :data:`SLICE` seconds and a short count is kept, never resent, so a kill loses no
  byte the printer took and sends none twice. A cancelled read that still gets data keeps
  it for the next read on that endpoint (a real HCD would not have taken it off the wire).
- A transfer failing with ENODEV, or with EIO from a device no longer on the bus, means the
  printer is gone: ``on_gone`` is called once, from the worker, and the host runs usblp's
  disconnect path (on its own thread, never the controller's).
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable
from dataclasses import dataclass

import usb.core

from hazard import Lock
from usblp_emu._core._descriptors import (
    AltSetting,
    Completion,
    DeviceDescriptor,
    Endpoint,
    TransferFailed,
)
from usblp_emu._pyusb._transport import PyusbPrinter

__all__ = ["SLICE", "PyusbModel"]

SLICE = 0.25  # seconds a blocking transfer runs before it looks at its cancel flag


@dataclass
class _Transfer:
    cancelled: bool = False  # guarded by the model's lock
    result: Completion | None = None  # guarded by the model's lock


class PyusbModel:
    """A :class:`PyusbPrinter` seen by the emulated USB core as a device model.

    Args:
        printer: the printer (not yet open: ``connect`` opens it).
        on_gone: called once, from a worker thread, when a transfer shows the printer is gone.

    """

    def __init__(
        self, printer: PyusbPrinter, on_gone: Callable[[PyusbModel], None] | None = None
    ) -> None:
        self.printer = printer
        self.on_gone = on_gone
        self._descriptor = _descriptor_of(printer)
        self._lock = Lock("pyusb-model")
        self._transfers: dict[tuple[int, float], _Transfer] = {}  # guarded by _lock
        self._kick: Callable[[], None] | None = None  # guarded by _lock
        self._gone = False  # guarded by _lock
        # Bytes read by transfers killed after their data arrived, per IN endpoint.
        self._leftover: dict[int, bytearray] = {}  # guarded by _lock

    @property
    def descriptor(self) -> DeviceDescriptor:
        """The active configuration's interfaces, as the core enumerates them."""
        return self._descriptor

    @property
    def serial(self) -> str:
        """The serial number (empty when unreadable): how a returning printer is matched."""
        return self._descriptor.serial

    @property
    def gone(self) -> bool:
        """Whether a transfer showed that the printer left the bus."""
        with self._lock:
            return self._gone

    # -- the device side (called by the USB core) ----------------------------------------------

    def connect(self, kick: Callable[[], None]) -> None:
        """Take the printer from the kernel: configuration, detach, claim (see PyusbPrinter).

        Raises:
            DeviceError: it could not be taken (AccessDenied, Busy... with a remedy).

        """
        self.printer.open()
        with self._lock:
            self._kick = kick

    def disconnect(self) -> None:
        """Unplugged (or the host let go): cancel transfers, give the printer back."""
        with self._lock:
            self._kick = None
            for transfer in self._transfers.values():
                transfer.cancelled = True
        self.printer.close()

    def control(
        self, request_type: int, request: int, value: int, index: int, data: bytes | int
    ) -> bytes | int:
        """A control transfer to the printer, straight through the backend."""
        try:
            return self.printer.raw_control(request_type, request, value, index, data)
        except usb.core.USBError as exc:
            raise TransferFailed(-_status(exc)) from None

    def set_interface(self, number: int, alternate: int) -> None:
        """SET_INTERFACE on the real device."""
        try:
            self.printer.device.set_interface_altsetting(number, alternate)
        except usb.core.USBError as exc:
            raise TransferFailed(-_status(exc)) from None

    def service(
        self, endpoint: int, length: int, payload: bytes, started: float, now: float
    ) -> Completion | float | None:
        """Start the transfer on a worker the first time; hand its completion over later."""
        key = (endpoint, started)
        with self._lock:
            transfer = self._transfers.get(key)
            early = self._leftover.get(endpoint)
            if early:
                # Data a killed read took off the wire comes first; this transfer's own
                # worker (if any) is let go, and anything it reads joins the leftovers.
                if transfer is not None:
                    del self._transfers[key]
                    transfer.cancelled = True
                    if transfer.result is not None and transfer.result.data:
                        early += transfer.result.data
                chunk = bytes(early[:length])
                del early[:length]
                return Completion(0, len(chunk), chunk)
            if transfer is None:
                if self._gone:
                    return Completion(-errno.ESHUTDOWN)
                transfer = self._transfers[key] = _Transfer()
                start = True
            else:
                start = False
                if transfer.result is not None:
                    del self._transfers[key]
                    return transfer.result
        if start:
            worker = threading.Thread(
                target=self._run,
                args=(key, transfer, length, payload),
                name=f"pyusb-ep{endpoint:02x}",
                daemon=True,
            )
            worker.start()
        return None

    def cancel(self, endpoint: int, started: float) -> None:
        """The URB was killed: let its worker stop at the next slice, forget the transfer."""
        with self._lock:
            transfer = self._transfers.pop((endpoint, started), None)
            if transfer is not None:
                transfer.cancelled = True

    def suspend(self) -> None:
        """Nothing to do: pyusb cannot suspend a device; the driver's URB kills suffice."""

    def resume(self) -> None:
        """Nothing to do (see :meth:`suspend`)."""

    # -- workers ----------------------------------------------------------------------------

    def _cancelled(self, transfer: _Transfer) -> bool:
        with self._lock:
            return transfer.cancelled

    def _run(
        self, key: tuple[int, float], transfer: _Transfer, length: int, payload: bytes
    ) -> None:
        endpoint = key[0]
        if endpoint & 0x80:
            result = self._read(endpoint, transfer, length)
        else:
            result = self._write(transfer, payload)
        with self._lock:
            if transfer.cancelled and result.status == 0 and result.data:
                # A killed read's bytes came off the wire: the next read must get them.
                self._leftover.setdefault(endpoint, bytearray()).extend(result.data)
            transfer.result = result
            kick = self._kick
        if result.status in (-errno.ENODEV, -errno.ESHUTDOWN):
            self._went_away()
        if kick is not None:
            kick()

    def _write(self, transfer: _Transfer, payload: bytes) -> Completion:
        sent = 0
        view = memoryview(payload)
        while sent < len(view) and not self._cancelled(transfer):
            try:
                sent += self.printer.write_once(view[sent:], SLICE)
            except usb.core.USBTimeoutError:
                continue  # NAKs (out of paper...): a real URB waits too
            except usb.core.USBError as exc:
                return Completion(self._failure(exc), sent)
        return Completion(0 if sent == len(view) else -errno.ENOENT, sent)

    def _read(self, endpoint: int, transfer: _Transfer, length: int) -> Completion:
        while not self._cancelled(transfer):
            try:
                data = bytes(self.printer.device.read(endpoint, length, round(SLICE * 1000)))
            except usb.core.USBTimeoutError:
                continue
            except usb.core.USBError as exc:
                return Completion(self._failure(exc))
            return Completion(0, len(data), data)
        return Completion(-errno.ENOENT)

    def _failure(self, exc: usb.core.USBError) -> int:
        """The URB status for a failed transfer; -ESHUTDOWN when the printer is gone."""
        code = _status(exc)
        # The same test of "gone" as PyusbPrinter's errors: the first error after an unplug is
        # often EIO, and the device leaves the bus a little later.
        if code == errno.ENODEV or (
            code in (errno.EIO, errno.EPROTO) and self.printer.left_the_bus()
        ):
            return -errno.ESHUTDOWN
        return -errno.EPROTO if code == errno.EIO else -code

    def _went_away(self) -> None:
        with self._lock:
            if self._gone:
                return
            self._gone = True
        if self.on_gone is not None:
            self.on_gone(self)

    def __repr__(self) -> str:
        return f"<PyusbModel {self.printer.name}>"


def _status(exc: usb.core.USBError) -> int:
    if isinstance(exc, usb.core.USBTimeoutError):
        return errno.ETIMEDOUT
    return int(exc.errno) if exc.errno else errno.EIO


def _descriptor_of(printer: PyusbPrinter) -> DeviceDescriptor:
    """The core's view: the configuration the printer interface lives in, every interface."""
    dev = printer.device
    chosen = printer.best_interface()
    cfg = next(c for c in dev if c.bConfigurationValue == chosen.configuration)
    by_number: dict[int, list[AltSetting]] = {}
    for intf in cfg:
        endpoints = tuple(
            Endpoint(ep.bEndpointAddress, ep.bmAttributes, ep.wMaxPacketSize) for ep in intf
        )
        by_number.setdefault(intf.bInterfaceNumber, []).append(
            AltSetting(
                number=intf.bInterfaceNumber,
                alternate=intf.bAlternateSetting,
                interface_class=intf.bInterfaceClass,
                interface_subclass=intf.bInterfaceSubClass,
                interface_protocol=intf.bInterfaceProtocol,
                endpoints=endpoints,
            )
        )
    interfaces = tuple(tuple(by_number[n]) for n in sorted(by_number))
    return DeviceDescriptor(
        vendor_id=printer.vendor_id,
        product_id=printer.product_id,
        manufacturer=printer.manufacturer or "",
        product=printer.product or "",
        serial=printer.serial or "",
        interfaces=interfaces,
    )

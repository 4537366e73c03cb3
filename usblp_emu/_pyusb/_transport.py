"""Real USB printers through pyusb: discovery, open, Device ID, status, reset, bulk I/O.

What CUPS' USB backend learned the hard way, done here once:
- A printer is any device with an interface of class 7 (subclass 1, protocol 1, 2 or 3) in
  any configuration and alt setting; most printers have bDeviceClass 0.
- The configuration is set only when the active one differs: setting it again acts as a
  light reset on some printers and makes later writes time out.
- The kernel driver (usblp) is detached from the printer interface only, never from the
  others of a composite device, and re-attached on close.
- The printer interface is claimed explicitly, and class requests go to the backend
  directly: pyusb's ``ctrl_transfer`` auto-claims interface ``wIndex & 0xff``, which for
  GET_DEVICE_ID is the alt setting, so on a composite device it claims (or fails on) the
  wrong interface.
- A bulk write may end short on a timeout without raising: every return is counted, and
  bytes are never sent twice.
- After an unplug the first error may be EIO and the later ones ENODEV: an EIO from a device
  that is no longer on the bus is reported as :class:`NoDevice`.

Errors reach callers as :class:`~usblp_emu.DeviceError` subclasses with ``remedy`` set where
we know one, never as raw ``usb.core.USBError``.

Thread rules: a :class:`PyusbPrinter` is driven by one thread at a time except that
:meth:`PyusbPrinter.write` and :meth:`PyusbPrinter.read` may run concurrently with each other
(libusb allows transfers on different endpoints from different threads).
"""

from __future__ import annotations

import array
import contextlib
import errno
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

import usb.backend
import usb.backend.libusb1
import usb.core
import usb.util

from usblp_emu._abi import (
    PRINTER_PROTOCOLS,
    REQ_GET_DEVICE_ID,
    REQ_GET_PORT_STATUS,
    REQ_SOFT_RESET,
    RT_CLASS_IN,
    RT_CLASS_OUT,
    RT_SOFT_RESET_USBLP,
    USB_CLASS_PRINTER,
    USB_CLASS_VENDOR_SPEC,
)
from usblp_emu._errors import (
    AccessDenied,
    Busy,
    DeviceError,
    EmulatorUsageError,
    NoDevice,
    Stalled,
    TimedOut,
    error_from_errno,
)
from usblp_emu._ieee1284 import DeviceId, PortStatus, cups_uri, parse_device_id
from usblp_emu._pyusb._sysfs import holders, udev_rule
from usblp_emu._usblp._ids import QUIRK_BAD_CLASS, quirks_for

__all__ = [
    "NoUsbBackend",
    "PrinterInterface",
    "PyusbPrinter",
    "default_backend",
    "find_printers",
    "translate_usb_error",
]

_DEVICE_ID_MAX = 1024  # what usblp asks for (USBLP_DEVICE_ID_SIZE)
_CONTROL_TIMEOUT_MS = 5000
DEFAULT_CHUNK = 8192  # CUPS writes 8 KiB at a time
GONE_GRACE = 0.5  # seconds a device that failed with EIO has to leave the bus to count as gone


class NoUsbBackend(EmulatorUsageError):
    """pyusb found no libusb to work with (an environment problem: exit status 2)."""


def default_backend() -> usb.backend.IBackend:
    """The system's libusb-1.0, else the one libusb-package ships.

    Raises:
        NoUsbBackend: neither is there; the message says what to install.

    """
    backend = usb.backend.libusb1.get_backend()
    if backend is None:
        try:
            import libusb_package  # noqa: PLC0415 - optional until a real device is wanted
        except ImportError:
            backend = None
        else:
            backend = libusb_package.get_libusb1_backend()
    if backend is None:
        raise NoUsbBackend(
            "no libusb-1.0 found: pip install libusb-package (or apt-get install libusb-1.0-0)"
        )
    return backend


@dataclass(frozen=True)
class PrinterInterface:
    """One printer-class alt setting: where it lives and its bulk endpoints."""

    configuration: int  # bConfigurationValue
    config_index: int  # position among the device's configurations (GET_DEVICE_ID's wValue)
    interface: int
    alternate: int
    protocol: int  # 1 unidirectional, 2 bidirectional, 3 IEEE 1284.4
    ep_out: int
    ep_in: int | None


def _printer_interfaces(dev: usb.core.Device) -> tuple[PrinterInterface, ...]:
    found: list[PrinterInterface] = []
    # usblp's QUIRK_BAD_CLASS printers (CUPS' "vendor-class") say 0xFF instead of 7.
    bad_class = bool(quirks_for(dev.idVendor, dev.idProduct) & QUIRK_BAD_CLASS)
    for index, cfg in enumerate(dev):
        for intf in cfg:
            wanted = intf.bInterfaceClass == USB_CLASS_PRINTER or (
                bad_class and intf.bInterfaceClass == USB_CLASS_VENDOR_SPEC
            )
            if not wanted or intf.bInterfaceProtocol not in PRINTER_PROTOCOLS:
                continue
            ep_out = ep_in = None
            for ep in intf:
                if usb.util.endpoint_type(ep.bmAttributes) != usb.util.ENDPOINT_TYPE_BULK:
                    continue
                if usb.util.endpoint_direction(ep.bEndpointAddress) == usb.util.ENDPOINT_IN:
                    ep_in = ep_in if ep_in is not None else ep.bEndpointAddress
                else:
                    ep_out = ep_out if ep_out is not None else ep.bEndpointAddress
            if ep_out is None:
                continue  # usblp too ignores a printer interface it cannot write to
            found.append(
                PrinterInterface(
                    configuration=cfg.bConfigurationValue,
                    config_index=index,
                    interface=intf.bInterfaceNumber,
                    alternate=intf.bAlternateSetting,
                    protocol=intf.bInterfaceProtocol,
                    ep_out=ep_out,
                    ep_in=ep_in if intf.bInterfaceProtocol != 1 else None,
                )
            )
    return tuple(found)


def _is_printer(dev: usb.core.Device) -> bool:
    try:
        return bool(_printer_interfaces(dev))
    except (usb.core.USBError, ValueError, NotImplementedError):
        return False  # descriptors unreadable: not something we can drive


def find_printers(backend: usb.backend.IBackend | None = None) -> list[PyusbPrinter]:
    """Every attached device with a usable printer interface, by bus and address.

    Raises:
        NoUsbBackend: no backend given and no libusb found.
        DeviceError: the bus could not be listed.

    """
    if backend is None:
        backend = default_backend()
    try:
        devices = usb.core.find(find_all=True, backend=backend, custom_match=_is_printer)
        found = [PyusbPrinter(dev, backend) for dev in devices]
    except usb.core.USBError as exc:
        raise translate_usb_error(exc, "listing USB devices") from None
    return sorted(found, key=lambda p: (p.bus, p.address))


def translate_usb_error(
    exc: usb.core.USBError,
    what: str,
    *,
    bus: int | None = None,
    address: int | None = None,
    vendor_id: int | None = None,
    product_id: int | None = None,
    gone: bool = False,
) -> DeviceError:
    """Turn pyusb's error into ours, with a remedy where there is one.

    Args:
        exc: what pyusb raised.
        what: what we were doing, for the message ("writing", "claiming interface 0").
        bus: the device's bus, to find who holds it.
        address: its address on the bus.
        vendor_id: its idVendor, for the udev rule.
        product_id: its idProduct, for the udev rule.
        gone: the caller checked and the device is no longer on the bus.

    """
    if isinstance(exc, usb.core.USBTimeoutError):
        return TimedOut(what)
    code = exc.errno if exc.errno else errno.EIO
    if gone or code == errno.ENODEV:
        return NoDevice(f"{what}: the printer was unplugged")
    detail = f"{what}: {exc.strerror or exc}"
    if code == errno.EACCES:
        error: DeviceError = AccessDenied(detail)
        error.remedy = udev_rule(vendor_id, product_id)
    elif code == errno.EBUSY:
        error = Busy(detail)
        held = holders(bus, address) if bus is not None and address is not None else []
        error.remedy = (
            "held by " + ", ".join(held) + "; stop it or unbind it first"
            if held
            else "another program or kernel driver holds it (ipp-usb? cups? usblp?)"
        )
    elif code == errno.EPIPE:
        error = Stalled(detail)
    elif code == errno.ETIMEDOUT:
        error = TimedOut(detail)
    else:
        error = error_from_errno(code, detail)
    return error


class PyusbPrinter:
    """One USB printer reached through pyusb.

    Use it as a context manager (or :meth:`open` / :meth:`close`) around requests and I/O.

    Args:
        device: the pyusb device.
        backend: the backend it was found with (to look for it on the bus again).

    """

    def __init__(self, device: usb.core.Device, backend: usb.backend.IBackend) -> None:
        self.device = device
        self._backend = backend
        self.interfaces = _printer_interfaces(device)
        if not self.interfaces:
            raise EmulatorUsageError(f"{self.name} has no usable printer interface")
        self._strings: dict[str, str | None] = {}
        self._open: PrinterInterface | None = None
        self._reattach = False

    # -- identity --------------------------------------------------------------------------

    @property
    def bus(self) -> int:
        """The bus number."""
        return int(self.device.bus or 0)

    @property
    def address(self) -> int:
        """The device address on its bus."""
        return int(self.device.address or 0)

    @property
    def vendor_id(self) -> int:
        """The vendor id (idVendor)."""
        return int(self.device.idVendor)

    @property
    def product_id(self) -> int:
        """The product id (idProduct)."""
        return int(self.device.idProduct)

    @property
    def name(self) -> str:
        """``bus 1 address 4 (04b8:0202)``."""
        return f"bus {self.bus} address {self.address} ({self.vendor_id:04x}:{self.product_id:04x})"

    def _string(self, attr: str) -> str | None:
        if attr not in self._strings:
            try:
                value = getattr(self.device, attr)
            except (usb.core.USBError, ValueError, NotImplementedError):
                value = None  # no permission, no LANGID table, or gone: unknown, not fatal
            self._strings[attr] = value
        return self._strings[attr]

    @property
    def serial(self) -> str | None:
        """The serial number string, or None if unreadable."""
        return self._string("serial_number")

    @property
    def manufacturer(self) -> str | None:
        """The manufacturer string, or None if unreadable."""
        return self._string("manufacturer")

    @property
    def product(self) -> str | None:
        """The product string, or None if unreadable."""
        return self._string("product")

    def uri(self, device_id: DeviceId | None = None) -> str:
        """The CUPS-style ``usb://MFG/MDL?serial=`` URI (from the Device ID when given)."""
        if device_id is not None:
            return cups_uri(
                device_id.manufacturer or self.manufacturer,
                device_id.model or self.product,
                self.serial or device_id.serial,
            )
        return cups_uri(self.manufacturer, self.product, self.serial)

    def best_interface(self, protocol: int | None = None) -> PrinterInterface:
        """The alt setting to use: ``protocol`` if given, else bidirectional, then 1, then 3.

        Raises:
            EmulatorUsageError: no alt setting speaks ``protocol``.

        """
        order = (protocol,) if protocol is not None else (2, 1, 3)
        for wanted in order:
            for candidate in self.interfaces:
                if candidate.protocol == wanted:
                    return candidate
        offered = sorted({i.protocol for i in self.interfaces})
        raise EmulatorUsageError(f"{self.name} offers protocols {offered}, not {protocol}")

    # -- errors ----------------------------------------------------------------------------

    def present(self) -> bool:
        """Whether this device (same bus and address) is still on the bus."""
        try:
            for dev in usb.core.find(find_all=True, backend=self._backend):
                if dev.bus == self.device.bus and dev.address == self.device.address:
                    return True
        except usb.core.USBError:
            return False
        return False

    def left_the_bus(self, within: float = GONE_GRACE) -> bool:
        """Whether the device leaves the bus within ``within`` seconds.

        A wire error (EIO/EPROTO) usually comes tens of milliseconds before the kernel
        notices the disconnect, so one look right away would often still find it there.
        """
        deadline = time.monotonic() + within
        while self.present():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def _error(self, exc: usb.core.USBError, what: str) -> DeviceError:
        gone = exc.errno in (errno.EIO, errno.EPROTO) and self.left_the_bus()
        return translate_usb_error(
            exc,
            what,
            bus=self.bus,
            address=self.address,
            vendor_id=self.vendor_id,
            product_id=self.product_id,
            gone=gone,
        )

    # -- open and close ----------------------------------------------------------------------

    def kernel_driver_active(self, interface: int | None = None) -> bool:
        """Whether a kernel driver (usblp) is bound to the printer interface.

        False on backends that cannot tell (only libusb-1.0 can).
        """
        number = self.interfaces[0].interface if interface is None else interface
        try:
            return bool(self.device.is_kernel_driver_active(number))
        except NotImplementedError:
            return False
        except usb.core.USBError as exc:
            raise self._error(exc, "asking for the kernel driver") from None

    @property
    def opened(self) -> PrinterInterface | None:
        """The alt setting claimed by :meth:`open`, or None."""
        return self._open

    def open(self, protocol: int | None = None) -> PrinterInterface:
        """Take the printer interface: configuration, kernel driver, claim, alt setting.

        Raises:
            DeviceError: AccessDenied (with the udev rule), Busy (with who holds it),
                NoDevice, or another typed error.
            EmulatorUsageError: already open, or no alt setting speaks ``protocol``.

        """
        if self._open is not None:
            raise EmulatorUsageError(f"{self.name} is already open")
        chosen = self.best_interface(protocol)
        dev = self.device
        try:
            self._set_configuration(chosen.configuration)
            if self.kernel_driver_active(chosen.interface):
                dev.detach_kernel_driver(chosen.interface)
                self._reattach = True
            usb.util.claim_interface(dev, chosen.interface)
            alts = sum(1 for i in self.interfaces if i.interface == chosen.interface)
            if alts > 1 or chosen.alternate != 0:
                dev.set_interface_altsetting(chosen.interface, chosen.alternate)
        except usb.core.USBError as exc:
            error = self._error(exc, f"opening interface {chosen.interface}")
            self._release(chosen)
            raise error from None
        self._open = chosen
        return chosen

    def _set_configuration(self, value: int) -> None:
        try:
            active = self.device.get_active_configuration().bConfigurationValue
        except usb.core.USBError as exc:
            if exc.errno in (errno.ENODEV, errno.EACCES, errno.EBUSY):
                raise
            active = None  # unconfigured: pyusb raises rather than returning 0
        if active != value:
            self.device.set_configuration(value)

    def close(self) -> None:
        """Release the interface and give it back to the kernel driver. Safe after unplug."""
        chosen, self._open = self._open, None
        if chosen is not None:
            self._release(chosen)

    def _release(self, chosen: PrinterInterface) -> None:
        # Every step may fail after an unplug; none of that is the user's problem.
        with contextlib.suppress(usb.core.USBError, ValueError):
            usb.util.release_interface(self.device, chosen.interface)
        if self._reattach:
            self._reattach = False
            with contextlib.suppress(usb.core.USBError, NotImplementedError):
                self.device.attach_kernel_driver(chosen.interface)
        usb.util.dispose_resources(self.device)

    def __enter__(self) -> PyusbPrinter:
        if self._open is None:
            self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _claimed(self) -> PrinterInterface:
        if self._open is None:
            raise EmulatorUsageError(f"{self.name} is not open: call open() or use 'with'")
        return self._open

    # -- control requests ----------------------------------------------------------------------

    def raw_control(
        self, request_type: int, request: int, value: int, index: int, data: bytes | int
    ) -> bytes | int:
        """A control transfer straight to the backend (no auto-claim: see the module doc).

        Returns:
            The bytes read (IN, ``data`` is the length) or the count written (OUT).

        Raises:
            usb.core.USBError: as the backend raised it (callers translate).

        """
        ctx = self.device._ctx  # private on purpose: bypasses the auto-claim
        ctx.managed_open()
        if isinstance(data, int):
            buffer = usb.util.create_buffer(data)
            count = ctx.backend.ctrl_transfer(
                ctx.handle, request_type, request, value, index, buffer, _CONTROL_TIMEOUT_MS
            )
            return bytes(buffer[:count])
        return int(
            ctx.backend.ctrl_transfer(
                ctx.handle,
                request_type,
                request,
                value,
                index,
                _array(data),
                _CONTROL_TIMEOUT_MS,
            )
        )

    def device_id(self) -> DeviceId:
        """GET_DEVICE_ID, parsed.

        Raises:
            DeviceError: the request failed (typed); MalformedDeviceId: a 0/1-byte answer.

        """
        chosen = self._claimed()
        try:
            answer = self.raw_control(
                RT_CLASS_IN,
                REQ_GET_DEVICE_ID,
                chosen.config_index,
                (chosen.interface << 8) | chosen.alternate,
                _DEVICE_ID_MAX,
            )
        except usb.core.USBError as exc:
            raise self._error(exc, "reading the Device ID") from None
        assert isinstance(answer, bytes)
        return parse_device_id(answer)

    def port_status(self) -> PortStatus:
        """GET_PORT_STATUS, decoded.

        Raises:
            DeviceError: the request failed, or the printer answered nothing.

        """
        chosen = self._claimed()
        try:
            answer = self.raw_control(RT_CLASS_IN, REQ_GET_PORT_STATUS, 0, chosen.interface, 1)
        except usb.core.USBError as exc:
            raise self._error(exc, "reading the port status") from None
        assert isinstance(answer, bytes)
        if not answer:
            raise error_from_errno(errno.EIO, "the printer sent an empty port status")
        return PortStatus(answer[0])

    def soft_reset(self) -> None:
        """SOFT_RESET: bmRequestType 0x23 (as usblp sends it), then 0x21 (the class spec's).

        Raises:
            DeviceError: both forms failed (typed after the second).

        """
        chosen = self._claimed()
        try:
            self.raw_control(RT_SOFT_RESET_USBLP, REQ_SOFT_RESET, 0, chosen.interface, b"")
            return
        except usb.core.USBError as exc:
            if exc.errno != errno.EPIPE:
                raise self._error(exc, "soft reset") from None
        try:
            self.raw_control(RT_CLASS_OUT, REQ_SOFT_RESET, 0, chosen.interface, b"")
        except usb.core.USBError as exc:
            raise self._error(exc, "soft reset") from None

    # -- bulk I/O --------------------------------------------------------------------------

    def write_once(self, data: bytes | memoryview, timeout: float | None) -> int:
        """One bulk OUT transfer: the count the device accepted (short on a timeout).

        Raises:
            usb.core.USBError: as pyusb raised it (USBTimeoutError when nothing moved).

        """
        chosen = self._claimed()
        return int(self.device.write(chosen.ep_out, data, _ms(timeout)))

    def _write_retrying_a_stall(self, chunk: memoryview, timeout: float | None) -> int:
        """One transfer; after a stall, clear the halt and try once more (as CUPS does)."""
        try:
            return self.write_once(chunk, timeout)
        except usb.core.USBError as exc:
            if isinstance(exc, usb.core.USBTimeoutError) or exc.errno != errno.EPIPE:
                raise
        # A stalled endpoint stays halted until cleared: without this every later write
        # would fail too.
        self.device.clear_halt(self._claimed().ep_out)
        return self.write_once(chunk, timeout)

    def write(
        self,
        data: bytes | bytearray | memoryview,
        *,
        timeout: float | None = None,
        chunk_size: int = DEFAULT_CHUNK,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Send ``data`` in chunks, counting every short return; nothing is sent twice.

        Args:
            data: the bytes.
            timeout: seconds a chunk may take (None: wait for ever, as a printer out of paper
                needs).
            chunk_size: bytes per transfer.
            progress: called with the running total after each transfer.

        Returns:
            len(data).

        Raises:
            DeviceError: TimedOut, NoDevice, Stalled (twice in a row)... with ``written`` set
                to the bytes the printer accepted before the failure (exact after a timeout,
                a lower bound after other errors: libusb drops a failed transfer's count).

        """
        if chunk_size <= 0:
            raise EmulatorUsageError(f"chunk_size must be > 0, not {chunk_size}")
        view = memoryview(bytes(data))
        written = 0
        while written < len(view):
            chunk = view[written : written + chunk_size]
            try:
                count = self._write_retrying_a_stall(chunk, timeout)
            except usb.core.USBError as exc:
                error = self._error(exc, f"writing at byte {written}")
                # libusb drops the count of a transfer that failed other than by a timeout:
                # ``written`` is then a lower bound (the bytes of whole transfers).
                error.written = written
                raise error from None
            written += count
            if progress is not None:
                progress(written)
            if count < len(chunk):
                # pyusb returns a short count instead of raising when a timeout cut a
                # transfer after some bytes moved: resending them would print them twice.
                error = TimedOut(f"writing at byte {written}: the printer stopped taking data")
                error.written = written
                raise error
        return written

    def read(self, size: int = 512, timeout: float | None = 1.0) -> bytes:
        """Read up to ``size`` bytes from the back channel; b"" when nothing came in time.

        Raises:
            EmulatorUsageError: the alt setting is unidirectional.
            DeviceError: NoDevice, Stalled... (typed).

        """
        chosen = self._claimed()
        if chosen.ep_in is None:
            raise EmulatorUsageError(f"{self.name}: protocol {chosen.protocol} has no way back")
        try:
            return bytes(self.device.read(chosen.ep_in, size, _ms(timeout)))
        except usb.core.USBTimeoutError:
            return b""
        except usb.core.USBError as exc:
            if exc.errno == errno.EPIPE:
                with contextlib.suppress(usb.core.USBError):
                    self.device.clear_halt(chosen.ep_in)  # so the next read can work
            raise self._error(exc, "reading") from None

    def __repr__(self) -> str:
        return f"<PyusbPrinter {self.name} serial={self.serial!r}>"


def _ms(timeout: float | None) -> int:
    # pyusb: 0 means forever; a tiny positive timeout must not round to it.
    if timeout is None:
        return 0
    if not math.isfinite(timeout) or timeout < 0:
        raise EmulatorUsageError(f"timeout must be >= 0 seconds or None, not {timeout}")
    return max(1, round(timeout * 1000))


def _array(data: bytes) -> array.array[int]:
    return array.array("B", data)

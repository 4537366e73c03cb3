"""VirtualBackend: a pyusb backend over virtual printers, so pyusb runs without hardware.

``usb.core.find(find_all=True, backend=VirtualBackend(printers))`` lists the plugged
:class:`~usblp_emu.VirtualPrinter` models as USB devices, and everything pyusb does with them
(descriptors, strings, claiming, kernel-driver detach, control and bulk transfers) behaves as
pyusb's libusb1 backend over Linux usbfs does, down to the libusb error code and errno of
each failure. What is modelled, and from where:

- The bus: one bus (1) with its root hub at address 1 (listed last, as libusb on Linux lists
  devices newest first; the parent of every printer, the hub driver bound to it); a plugged
  printer gets the next free address in 2..127, round robin, so an address is not reused
  until the bus wraps (the kernel's allocator), and the lowest free root-hub port.
- The kernel: with ``kernel_driver=True`` the kernel configured each device at plug time
  (configuration 1) and bound usblp to every printer interface (class 7/1, protocol 1-3 in
  alt setting 0). Claiming a bound interface fails EBUSY, as does setting the configuration
  while any interface is bound or claimed. With ``kernel_driver=False`` nothing configured
  the device (configuration 0) and no driver ever binds.
- usbfs: a class or standard request to an interface or endpoint, or a bulk transfer, on an
  interface this handle has not claimed claims it implicitly (libusb does not know: such a
  claim lasts until the handle closes); if someone else holds it the submission fails, which
  libusb reports as LIBUSB_ERROR_IO. GET_DEVICE_ID of a printer-class alt setting is exempt,
  as in the kernel, so it works while usblp is bound.
- libusb: its own checks come first (interface numbers >= 32, releasing or switching the alt
  setting of an interface this handle did not claim) and its error codes are mapped to errno
  with pyusb's table; LIBUSB_ERROR_TIMEOUT raises ``usb.core.USBTimeoutError``.
- Unplug: the device leaves the enumeration at once; a handle to it fails every call with
  ENODEV, except that the first failure after the unplug (per plug of a device, over all its
  handles) carries ``first_unplug_error`` (EIO: what real hosts report for the transfer in
  flight). A bulk transfer blocked at the unplug wakes and fails the same way. Descriptors
  stay readable (libusb caches them) and ``close_device`` never fails, so
  ``usb.util.dispose_resources`` is always safe.
- Transfers, as libusb's synchronous API gives them: a bulk OUT transfer that times out
  reports the whole packets the printer took by then (pyusb returns that count when it is
  not 0, and raises USBTimeoutError when it is); a read whose buffer ends inside the packet
  that comes is LIBUSB_ERROR_OVERFLOW (errno 75); a stall also halts the endpoint for
  GET_STATUS until CLEAR_FEATURE or ``clear_halt``. A control request the printer leaves
  unanswered takes the transfer's timeout (hazard's clock: the explorer's mock clock under
  it); other control failures are at once. Interrupt transfers go to the endpoints of the
  printer's extra interfaces (an interrupt transfer to a bulk endpoint is refused: IO). A
  high-speed device answers DEVICE_QUALIFIER and OTHER_SPEED_CONFIGURATION, a full-speed
  one stalls them. :meth:`VirtualBackend.unplug_after` pulls a printer out after exactly N
  more bytes. Closing a handle under a blocked transfer cancels
  it (LIBUSB_ERROR_IO, as libusb reports a cancelled synchronous transfer); calling a closed
  handle is an :class:`~usblp_emu.EmulatorUsageError` (undefined behaviour in libusb).

Concurrency rules and invariants:

- Every piece of mutable state (the plugged devices, each device's configuration, bindings,
  claims, alt settings and halts, each handle's claims) is guarded by one :class:`hazard.Lock`
  (``_lock``); objects documented as immutable are never written after they are published.
- A bulk transfer asks the printer to ``service`` it and, until it completes, waits on its
  device's :class:`hazard.Condition` (over ``_lock``). The printer's ``kick`` and ``unplug``
  notify that condition under ``_lock``, and a transfer calls ``service`` with ``_lock`` held
  until it waits, so no wake-up is lost between the two.
- Lock order: ``_lock`` before the printer's own lock (``service``, ``control``,
  ``connect``, ``disconnect`` are called under ``_lock``). A printer releases its lock before
  it kicks, and a kick from a thread that already holds ``_lock`` (a model kicking from inside
  a call we made) notifies without re-taking it, so neither order can deadlock.
- Time comes from :func:`hazard.monotonic`, waits from hazard's Condition, so the interleaving
  explorer controls both.
- pyusb disposes of a Device from a garbage-collection finalizer, which can run on a thread
  that is inside one of our critical sections: ``close_device`` and ``release_interface``
  called while this thread holds ``_lock`` are queued and applied when it leaves the section,
  instead of deadlocking on the non-reentrant lock.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol

import usb.backend
import usb.core

from hazard import Condition, Lock, monotonic
from usblp_emu._abi import REQ_GET_DEVICE_ID, RT_CLASS_IN, USB_CLASS_PRINTER
from usblp_emu._core._descriptors import AltSetting, Completion, DeviceDescriptor, TransferFailed
from usblp_emu._errors import EmulatorUsageError
from usblp_emu._usblp._ids import usblp_binds
from usblp_emu._virtual._libusb_errors import (
    FROM_ERRNO,
    LIBUSB_ERROR_BUSY,
    LIBUSB_ERROR_INVALID_PARAM,
    LIBUSB_ERROR_IO,
    LIBUSB_ERROR_NO_DEVICE,
    LIBUSB_ERROR_NOT_FOUND,
    LIBUSB_ERROR_OTHER,
    LIBUSB_ERROR_TIMEOUT,
    code_for_errno,
    usb_error,
)
from usblp_emu._virtual._printer import DeviceSilent, VirtualPrinter
from usblp_emu._virtual._pyusb_descriptors import (
    DT_CONFIG,
    DT_DEVICE,
    DT_DEVICE_QUALIFIER,
    DT_OTHER_SPEED_CONFIG,
    DT_STRING,
    ConfigFields,
    DeviceFields,
    EndpointFields,
    InterfaceFields,
    config_bytes,
    config_fields,
    device_bytes,
    qualifier_bytes,
    string_bytes,
    string_table,
)
from usblp_emu._virtual._roothub import HUB_CLASS, RootHub

__all__ = ["KernelDriver", "VirtualBackend"]

BUS = 1
_HUB_ADDRESS = 1
_FIRST_ADDRESS, _LAST_ADDRESS = 2, 127  # 0 is the default address, 1 the root hub
_MAX_INTERFACES = 32  # libusb's USB_MAXINTERFACES: larger numbers are INVALID_PARAM

# Standard requests (USB 2.0 table 9-4) and descriptor types.
_GET_STATUS, _CLEAR_FEATURE, _GET_DESCRIPTOR, _GET_CONFIGURATION, _GET_INTERFACE = 0, 1, 6, 8, 10
_RECIPIENT_DEVICE, _RECIPIENT_INTERFACE, _RECIPIENT_ENDPOINT = 0, 1, 2
_TYPE_STANDARD, _TYPE_VENDOR = 0, 2
_ENDPOINT_HALT = 0
_INTERRUPT = 3


def _driver_binds(descriptor: DeviceDescriptor, alts: tuple[AltSetting, ...]) -> bool:
    """Whether usblp's id table, or the hub driver, matches this interface (its alt 0)."""
    first = next((a for a in alts if a.alternate == 0), alts[0])
    if first.interface_class == HUB_CLASS:
        return True
    return usblp_binds(
        descriptor.vendor_id,
        descriptor.product_id,
        first.interface_class,
        first.interface_subclass,
        first.interface_protocol,
    )


class KernelDriver(Protocol):
    """Told when the emulated kernel binds or unbinds its driver on a printer interface.

    Called on the thread that made the change (a plug, an unplug, a program's detach or
    attach, a new configuration), after the backend's lock is released and before that call
    returns, one call at a time, in order.
    """

    def bind(self, printer: VirtualPrinter, interface: int) -> None:
        """The kernel bound usblp to ``interface`` of ``printer`` (its probe runs)."""

    def unbind(self, printer: VirtualPrinter, interface: int) -> None:
        """The kernel unbound usblp from it (its disconnect runs)."""


# -- the bus's view of a device, and handles -----------------------------------------------------


@dataclass(eq=False)
class _Device:
    """One plug of a printer: the device identification pyusb holds (``dev``).

    ``printer`` through ``config_blob`` are immutable; the rest is guarded by the backend's
    lock.
    """

    printer: VirtualPrinter | RootHub
    descriptor: DeviceDescriptor
    fields: DeviceFields
    config: ConfigFields
    device_blob: bytes
    config_blob: bytes
    other_speed_blob: bytes | None  # None: a full-speed device (it stalls the request)
    cond: Condition  # over the backend's lock: kicks and unplug wake blocked transfers
    configuration: int
    bound: set[int]  # interface numbers a kernel driver (usblp, hub) is bound to
    alt: dict[int, int] = field(default_factory=dict)  # interface number -> current alt
    halted: set[int] = field(default_factory=set)  # endpoints that stalled, until cleared
    owners: dict[int, _Handle] = field(default_factory=dict)  # interface number -> claimant
    gone: bool = False
    first_error_pending: bool = True  # the next failure after the unplug is the first one
    budget: int | None = None  # bytes to accept before the unplug_after() unplug

    def alts_of(self, number: int) -> tuple[AltSetting, ...] | None:
        """The alt settings of interface ``number`` in the active configuration, or None."""
        if self.configuration == 0:
            return None
        for alts in self.descriptor.interfaces:
            if alts and alts[0].number == number:
                return alts
        return None

    def endpoint_type(self, endpoint: int) -> int | None:
        """The transfer type (bmAttributes & 3) of ``endpoint`` in a current alt setting."""
        number = self.interface_of(endpoint)
        for alts in self.descriptor.interfaces if number is not None else ():
            for alt in alts:
                if alt.number == number and alt.alternate == self.alt.get(number, 0):
                    for e in alt.endpoints:
                        if e.address == endpoint:
                            return e.attributes & 3
        return None

    def interface_of(self, endpoint: int) -> int | None:
        """The interface whose current alt setting has ``endpoint`` (usbfs' findintfep)."""
        if self.configuration == 0:
            return None
        for alts in self.descriptor.interfaces:
            number = alts[0].number
            current = self.alt.get(number, 0)
            for alt in alts:
                if alt.alternate == current and any(e.address == endpoint for e in alt.endpoints):
                    return number
        return None

    def reset_interface(self, number: int) -> None:
        """An interface lost its driver: the kernel puts it back in alt setting 0."""
        self.alt.pop(number, None)
        alts = self.alts_of(number) or ()
        for alt in alts:
            self.halted.difference_update(e.address for e in alt.endpoints)


@dataclass(eq=False)
class _Handle:
    """An open device handle; all but ``device`` is guarded by the backend's lock."""

    device: _Device
    claimed: set[int] = field(default_factory=set)  # what libusb knows this handle claimed
    implicit: set[int] = field(default_factory=set)  # claimed by usbfs on first use
    closed: bool = False


class VirtualBackend(usb.backend.IBackend):  # type: ignore[misc]  # pyusb is untyped
    """A pyusb backend whose bus holds virtual printers, pluggable from any thread.

    Args:
        printers: plugged at once, in order.
        kernel_driver: the kernel configured each device and bound usblp to its printer
            interfaces at plug time (False: unconfigured, and no driver ever binds).
        first_unplug_error: the errno of the first failure after an unplug (later ones are
            ENODEV); EIO emulates real hosts and dummy_hcd. Mapped to a libusb code as
            Linux libusb would (EIO and EPROTO -> LIBUSB_ERROR_IO).
        kernel: told of every bind and unbind of the kernel's driver on a printer interface
            (``usblp-emu run`` runs the emulated usblp there, on its heap).

    Raises:
        EmulatorUsageError: ``first_unplug_error`` is not a positive errno, or a printer is
            already plugged in somewhere.

    """

    def __init__(
        self,
        printers: Iterable[VirtualPrinter] = (),
        *,
        kernel_driver: bool = True,
        first_unplug_error: int = errno.ENODEV,
        kernel: KernelDriver | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(first_unplug_error, int) or first_unplug_error <= 0:
            raise EmulatorUsageError(
                f"first_unplug_error must be a positive errno, not {first_unplug_error!r}"
            )
        self._kernel_driver = kernel_driver  # immutable
        self._first_code = code_for_errno(first_unplug_error)  # immutable
        self._lock = Lock("virtual-backend")
        self._devices: list[_Device] = []  # plugged, in plug order; guarded by _lock
        self._next_address = _FIRST_ADDRESS  # guarded by _lock
        self._deferred: list[tuple[_Handle, int | None]] = []  # guarded by _lock
        self._kernel = kernel  # immutable
        self._events: list[tuple[VirtualPrinter, int, bool]] = []  # guarded by _lock
        self._kernel_lock = Lock("virtual-backend.kernel")  # one driver call at a time
        self._hub = self._new_device(RootHub(), _HUB_ADDRESS, 0, configured=True)  # immutable
        for printer in printers:
            self.plug(printer)

    # -- the lock ------------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold ``_lock``; on the way out, apply closes a finalizer queued meanwhile."""
        self._lock.acquire()
        try:
            yield
        finally:
            try:
                while self._deferred:
                    handle, number = self._deferred.pop(0)
                    if number is None:
                        self._close_locked(handle)
                    else:
                        self._release_quietly_locked(handle, number)
            finally:
                self._lock.release()
            if self._kernel is not None:
                self._tell_kernel()

    def _tell_kernel(self) -> None:
        """Run the bind and unbind calls queued under the lock, in order."""
        assert self._kernel is not None
        with self._kernel_lock:
            while True:
                with self._lock:
                    if not self._events:
                        return
                    printer, number, bound = self._events.pop(0)
                if bound:
                    self._kernel.bind(printer, number)
                else:
                    self._kernel.unbind(printer, number)

    def _set_bound_locked(self, device: _Device, bound: set[int]) -> None:
        """Change which interfaces the driver holds, queuing the kernel's calls."""
        if isinstance(device.printer, VirtualPrinter):
            printer = device.printer
            self._events += [(printer, n, False) for n in sorted(device.bound - bound)]
            self._events += [(printer, n, True) for n in sorted(bound - device.bound)]
        device.bound = bound

    # -- the bus -----------------------------------------------------------------------------

    def plug(self, printer: VirtualPrinter) -> tuple[int, int]:
        """Plug ``printer`` in (from any thread): it appears at a new address.

        Returns:
            (bus, address).

        Raises:
            EmulatorUsageError: it is already plugged in (here or into another host), or the
                bus already holds 126 devices.

        """
        with self._locked():
            if any(d.printer is printer for d in self._devices):
                raise EmulatorUsageError(f"{printer!r} is already plugged into this bus")
            address = self._free_address_locked()
            ports = {d.fields.port_number for d in self._devices}
            port = next(p for p in range(1, len(ports) + 2) if p not in ports)
            device = self._new_device(printer, address, port, configured=self._kernel_driver)
            printer.connect(self._kicker(device))  # raises if plugged into another host
            bound, device.bound = device.bound, set()
            self._set_bound_locked(device, bound)  # the kernel probes at enumeration
            self._next_address = address + 1 if address < _LAST_ADDRESS else _FIRST_ADDRESS
            self._devices.append(device)
        return BUS, address

    def _new_device(
        self, model: VirtualPrinter | RootHub, address: int, port: int, *, configured: bool
    ) -> _Device:
        """The bus's view of ``model`` at ``address`` on root port ``port`` (0: the hub)."""
        descriptor = model.descriptor
        info = model.usb_info
        strings = string_table(descriptor)
        hub = isinstance(model, RootHub)
        fields = DeviceFields(
            idVendor=descriptor.vendor_id,
            idProduct=descriptor.product_id,
            # Index 0 means "no string": pyusb then answers None without asking.
            iManufacturer=1 if strings[0] else 0,
            iProduct=2 if strings[1] else 0,
            iSerialNumber=3 if strings[2] else 0,
            bus=BUS,
            address=address,
            port_number=port,
            port_numbers=(port,) if port else None,
            speed=info.libusb_speed,
            bcdUSB=info.bcd_usb,
            bcdDevice=info.bcd_device,
            bDeviceClass=HUB_CLASS if hub else 0,
            bDeviceProtocol=1 if hub else 0,  # a hub with a single transaction translator
        )
        power, powered = info.max_power_ma, info.self_powered
        interval = 12 if hub else 4  # 2^(12-1) microframes: a Linux root hub's 256 ms
        config = config_fields(
            descriptor, max_power_ma=power, self_powered=powered, interval=interval
        )
        blob_args = {"attributes": config.bmAttributes, "power": config.bMaxPower}
        other = None
        if info.speed == "high" and not hub:
            slow = config_fields(
                descriptor, max_power_ma=power, self_powered=powered, interval=1, packet=64
            )
            other = config_bytes(slow.interfaces, kind=DT_OTHER_SPEED_CONFIG, **blob_args)
        return _Device(
            printer=model,
            descriptor=descriptor,
            fields=fields,
            config=config,
            device_blob=device_bytes(fields),
            config_blob=config_bytes(config.interfaces, **blob_args),
            other_speed_blob=other,
            cond=Condition(self._lock, name=f"usb {BUS}-{address}"),
            configuration=1 if configured else 0,
            bound=self._probe(descriptor) if configured or hub else set(),
        )

    def _free_address_locked(self) -> int:
        used = {d.fields.address for d in self._devices}
        span = _LAST_ADDRESS - _FIRST_ADDRESS + 1
        for step in range(span):
            candidate = _FIRST_ADDRESS + (self._next_address - _FIRST_ADDRESS + step) % span
            if candidate not in used:
                return candidate
        raise EmulatorUsageError(f"bus {BUS} is full: {span} devices plugged in")

    def _probe(self, descriptor: DeviceDescriptor) -> set[int]:
        """The interfaces a driver binds to when the configuration is set (usblp, hub)."""
        hub = descriptor.interfaces[0][0].interface_class == HUB_CLASS
        if not self._kernel_driver and not hub:
            return set()
        return {
            alts[0].number
            for alts in descriptor.interfaces
            if alts and _driver_binds(descriptor, alts)
        }

    def _kicker(self, device: _Device) -> Callable[[], None]:
        def kick() -> None:
            if self._lock.held_by_me():
                device.cond.notify_all()  # kicked from inside a call we made under the lock
                return
            with self._locked():
                device.cond.notify_all()

        return kick

    def unplug(self, printer: VirtualPrinter) -> None:
        """Pull ``printer`` out (from any thread); transfers blocked on it fail at once.

        Raises:
            EmulatorUsageError: it is not plugged into this bus.

        """
        with self._locked():
            self._unplug_locked(self._device_of_locked(printer))

    def _unplug_locked(self, device: _Device) -> None:
        self._set_bound_locked(device, set())  # the driver's disconnect runs
        self._devices.remove(device)
        device.gone = True
        device.printer.disconnect()
        device.cond.notify_all()

    def unplug_after(self, printer: VirtualPrinter, count: int) -> None:
        """Pull ``printer`` out once it has accepted ``count`` more bytes on its bulk OUT.

        The transfer that reaches the mark moves only the bytes up to it and fails as the
        unplug makes it fail (LIBUSB_ERROR_NO_DEVICE, or ``first_unplug_error``); one that
        ends exactly on it completes, and the printer is gone after it.

        Raises:
            EmulatorUsageError: ``count`` < 0, or the printer is not plugged in here.

        """
        if count < 0:
            raise EmulatorUsageError(f"count must be >= 0 bytes, not {count!r}")
        with self._locked():
            device = self._device_of_locked(printer)
            if count == 0:
                self._unplug_locked(device)
            else:
                device.budget = count

    def _device_of_locked(self, printer: VirtualPrinter) -> _Device:
        for device in self._devices:
            if device.printer is printer:
                return device
        raise EmulatorUsageError(f"{printer!r} is not plugged into this bus")

    def bus_address(self, printer: VirtualPrinter) -> tuple[int, int]:
        """Where ``printer`` is plugged in: (bus, address).

        Raises:
            EmulatorUsageError: it is not plugged into this bus.

        """
        with self._locked():
            fields = self._device_of_locked(printer).fields
        return fields.bus, fields.address

    @property
    def printers(self) -> tuple[VirtualPrinter, ...]:
        """The printers plugged in now, in plug order."""
        with self._locked():
            return tuple(d.printer for d in self._devices if isinstance(d.printer, VirtualPrinter))

    def close(self) -> None:
        """Unplug every printer, so each can be plugged into another host."""
        for printer in self.printers:
            with suppress(EmulatorUsageError):  # another thread unplugged it meanwhile
                self.unplug(printer)

    def __enter__(self) -> VirtualBackend:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<VirtualBackend bus {BUS}: {len(self.printers)} printer(s)>"

    # -- enumeration and descriptors (pyusb's IBackend) ------------------------------------------

    def enumerate_devices(self) -> list[_Device]:
        """The devices plugged in now (a snapshot), the root hub last."""
        with self._locked():
            return [*self._devices, self._hub]

    def get_parent(self, dev: _Device) -> _Device | None:
        """The root hub for a printer; None for the root hub itself."""
        return None if dev is self._hub else self._hub

    def get_device_descriptor(self, dev: _Device) -> DeviceFields:
        """The device descriptor's 14 fields plus bus, address, ports and speed."""
        return dev.fields

    def get_configuration_descriptor(self, dev: _Device, config: int) -> ConfigFields:
        """Configuration ``config`` (an index; there is one).

        Raises:
            usb.core.USBError: LIBUSB_ERROR_NOT_FOUND for any other index.

        """
        if config != 0:
            raise usb_error(LIBUSB_ERROR_NOT_FOUND)
        return dev.config

    def get_interface_descriptor(
        self, dev: _Device, intf: int, alt: int, config: int
    ) -> InterfaceFields:
        """Interface ``intf``, alt setting ``alt`` (indexes).

        Raises:
            IndexError: no such interface or alt setting (pyusb's iteration stops on it).
            usb.core.USBError: no such configuration.

        """
        interfaces = self.get_configuration_descriptor(dev, config).interfaces
        if not 0 <= intf < len(interfaces):
            raise IndexError(f"Invalid interface index {intf}")
        if not 0 <= alt < len(interfaces[intf]):
            raise IndexError(f"Invalid alternate setting index {alt}")
        return interfaces[intf][alt]

    def get_endpoint_descriptor(
        self, dev: _Device, ep: int, intf: int, alt: int, config: int
    ) -> EndpointFields:
        """Endpoint ``ep`` (an index) of an alt setting.

        Raises:
            IndexError: no such endpoint, interface or alt setting.

        """
        endpoints = self.get_interface_descriptor(dev, intf, alt, config).endpoints
        if not 0 <= ep < len(endpoints):
            raise IndexError(f"Invalid endpoint index {ep}")
        return endpoints[ep]

    # -- handles -------------------------------------------------------------------------------

    def open_device(self, dev: _Device) -> _Handle:
        """Open a handle.

        Raises:
            usb.core.USBError: LIBUSB_ERROR_NO_DEVICE once the device is unplugged.

        """
        with self._locked():
            if dev.gone:
                raise usb_error(LIBUSB_ERROR_NO_DEVICE)
            return _Handle(dev)

    def close_device(self, dev_handle: _Handle) -> None:
        """Close a handle, releasing its claims; never fails (pyusb calls it from finalizers)."""
        if self._lock.held_by_me():
            self._deferred.append((dev_handle, None))  # a finalizer inside our own section
            return
        with self._locked():
            self._close_locked(dev_handle)

    def _close_locked(self, handle: _Handle) -> None:
        if handle.closed:
            return
        handle.closed = True
        device = handle.device
        for number in handle.claimed | handle.implicit:
            self._unclaim_locked(handle, number)
        handle.claimed.clear()
        handle.implicit.clear()
        device.cond.notify_all()  # a transfer still blocked on this handle is cancelled

    def _unclaim_locked(self, handle: _Handle, number: int) -> None:
        device = handle.device
        if device.owners.get(number) is handle:
            del device.owners[number]
            device.reset_interface(number)

    def _live_locked(self, handle: _Handle) -> _Device:
        """The handle's device, or the error for calling it after close or unplug."""
        if handle.closed:
            raise EmulatorUsageError("a closed device handle was used (libusb: undefined)")
        device = handle.device
        if device.gone:
            raise self._gone_locked(device)
        return device

    def _gone_locked(self, device: _Device) -> usb.core.USBError:
        if device.first_error_pending:
            device.first_error_pending = False
            return usb_error(self._first_code)
        return usb_error(LIBUSB_ERROR_NO_DEVICE)

    # -- configuration, interfaces, kernel driver ------------------------------------------------

    def set_configuration(self, dev_handle: _Handle, config_value: int) -> None:
        """SET_CONFIGURATION (0 or -1: unconfigured).

        Raises:
            usb.core.USBError: BUSY while an interface is bound or claimed (usbfs refuses
                to pull it from under its driver), NOT_FOUND for an unknown value.

        """
        with self._locked():
            device = self._live_locked(dev_handle)
            value = 0 if config_value == -1 else config_value
            if value not in (0, 1):
                raise usb_error(LIBUSB_ERROR_NOT_FOUND)
            if device.configuration != 0 and (device.bound or device.owners):
                raise usb_error(LIBUSB_ERROR_BUSY)
            if value != device.configuration:
                # A new configuration has new interfaces, and the kernel probes drivers for
                # them; the same one again is only a lightweight reset (no re-probe).
                self._set_bound_locked(device, self._probe(device.descriptor) if value else set())
            device.configuration = value
            device.alt.clear()
            device.halted.clear()

    def get_configuration(self, dev_handle: _Handle) -> int:
        """The active bConfigurationValue (0: unconfigured), as the kernel caches it."""
        with self._locked():
            return self._live_locked(dev_handle).configuration

    def claim_interface(self, dev_handle: _Handle, intf: int) -> None:
        """Claim interface number ``intf`` for this handle.

        Raises:
            usb.core.USBError: BUSY while usblp or another handle holds it, NOT_FOUND if
                the active configuration has no such interface.

        """
        with self._locked():
            if not 0 <= intf < _MAX_INTERFACES:
                raise usb_error(LIBUSB_ERROR_INVALID_PARAM)
            if intf in dev_handle.claimed:
                return  # libusb answers from its own bookkeeping, without asking the kernel
            device = self._live_locked(dev_handle)
            if intf in dev_handle.implicit:
                dev_handle.implicit.discard(intf)
                dev_handle.claimed.add(intf)
                return
            if device.alts_of(intf) is None:
                raise usb_error(LIBUSB_ERROR_NOT_FOUND)
            if intf in device.bound or intf in device.owners:
                raise usb_error(LIBUSB_ERROR_BUSY)
            device.owners[intf] = dev_handle
            dev_handle.claimed.add(intf)

    def release_interface(self, dev_handle: _Handle, intf: int) -> None:
        """Release a claimed interface; it returns to alt setting 0.

        Raises:
            usb.core.USBError: NOT_FOUND if this handle did not claim it, NO_DEVICE after
                an unplug.

        """
        if self._lock.held_by_me():
            self._deferred.append((dev_handle, intf))  # a finalizer inside our own section
            return
        with self._locked():
            if not 0 <= intf < _MAX_INTERFACES:
                raise usb_error(LIBUSB_ERROR_INVALID_PARAM)
            if intf not in dev_handle.claimed:
                raise usb_error(LIBUSB_ERROR_NOT_FOUND)
            # libusb forgets the claim even when the kernel says the device is gone.
            dev_handle.claimed.discard(intf)
            self._live_locked(dev_handle)
            self._unclaim_locked(dev_handle, intf)

    def _release_quietly_locked(self, handle: _Handle, number: int) -> None:
        if not handle.closed and number in handle.claimed:
            handle.claimed.discard(number)
            self._unclaim_locked(handle, number)

    def set_interface_altsetting(self, dev_handle: _Handle, intf: int, altsetting: int) -> None:
        """SET_INTERFACE on a claimed interface.

        Raises:
            usb.core.USBError: NOT_FOUND if the interface is not claimed or has no such alt
                setting; OTHER if the device refused.

        """
        with self._locked():
            if not 0 <= intf < _MAX_INTERFACES:
                raise usb_error(LIBUSB_ERROR_INVALID_PARAM)
            if intf not in dev_handle.claimed:
                raise usb_error(LIBUSB_ERROR_NOT_FOUND)
            device = self._live_locked(dev_handle)
            alts = device.alts_of(intf)
            if alts is None or not any(a.alternate == altsetting for a in alts):
                raise usb_error(LIBUSB_ERROR_NOT_FOUND)  # the kernel's EINVAL, as libusb maps it
            try:
                device.printer.set_interface(intf, altsetting)
            except TransferFailed as exc:
                # The kernel forgives a stall when there is only one alt setting; libusb
                # reports any other failure of this ioctl as OTHER.
                if not (exc.status == -errno.EPIPE and len(alts) == 1):
                    code = code_for_errno(-exc.status)
                    code = code if code == LIBUSB_ERROR_NO_DEVICE else LIBUSB_ERROR_OTHER
                    raise usb_error(code) from None
            device.reset_interface(intf)
            device.alt[intf] = altsetting

    def is_kernel_driver_active(self, dev_handle: _Handle, intf: int) -> bool:
        """Whether usblp is bound to interface ``intf`` (a usbfs claim is not a driver)."""
        with self._locked():
            return intf in self._live_locked(dev_handle).bound

    def detach_kernel_driver(self, dev_handle: _Handle, intf: int) -> None:
        """Unbind usblp from ``intf``.

        Raises:
            usb.core.USBError: NOT_FOUND if no kernel driver is bound (or a handle holds
                it), INVALID_PARAM for no such interface, OTHER when unconfigured.

        """
        with self._locked():
            device = self._live_locked(dev_handle)
            self._check_driver_ioctl_locked(device, intf)
            if intf in device.owners or intf not in device.bound:
                raise usb_error(LIBUSB_ERROR_NOT_FOUND)
            self._set_bound_locked(device, device.bound - {intf})
            device.reset_interface(intf)

    def attach_kernel_driver(self, dev_handle: _Handle, intf: int) -> None:
        """Let usblp bind to ``intf`` again.

        Raises:
            usb.core.USBError: BUSY if a driver or a handle holds it, NOT_FOUND if no
                driver wants it, INVALID_PARAM for no such interface, OTHER when
                unconfigured.

        """
        with self._locked():
            device = self._live_locked(dev_handle)
            self._check_driver_ioctl_locked(device, intf)
            if intf in device.owners or intf in device.bound:
                raise usb_error(LIBUSB_ERROR_BUSY)
            if intf not in self._probe(device.descriptor):
                raise usb_error(LIBUSB_ERROR_NOT_FOUND)
            self._set_bound_locked(device, device.bound | {intf})

    def _check_driver_ioctl_locked(self, device: _Device, number: int) -> None:
        if device.configuration == 0:
            raise usb_error(LIBUSB_ERROR_OTHER)  # EHOSTUNREACH, which libusb does not map
        if device.alts_of(number) is None:
            raise usb_error(LIBUSB_ERROR_INVALID_PARAM)

    def _checkintf_locked(self, handle: _Handle, device: _Device, number: int) -> bool:
        """Do what usbfs' checkintf does: use of an unclaimed interface claims it.

        Returns:
            False if it cannot (not configured, no such interface, held by someone else).

        """
        if device.configuration == 0:
            return False
        if number in handle.claimed or number in handle.implicit:
            return True
        if device.alts_of(number) is None:
            return False
        if number in device.bound or number in device.owners:
            return False
        device.owners[number] = handle
        handle.implicit.add(number)
        return True

    def clear_halt(self, dev_handle: _Handle, ep: int) -> None:
        """CLEAR_FEATURE(ENDPOINT_HALT).

        Raises:
            usb.core.USBError: NOT_FOUND for an endpoint of no current alt setting, OTHER
                if another driver holds its interface.

        """
        with self._locked():
            device = self._live_locked(dev_handle)
            number = device.interface_of(ep)
            if number is None:
                raise usb_error(LIBUSB_ERROR_NOT_FOUND)
            if not self._checkintf_locked(dev_handle, device, number):
                raise usb_error(LIBUSB_ERROR_OTHER)
            device.halted.discard(ep)

    def reset_device(self, dev_handle: _Handle) -> None:
        """A port reset: halts cleared, alt settings back to 0; claims and drivers stay.

        (libusb releases and re-claims this handle's interfaces around the reset, and the
        kernel re-binds the drivers it unbound, so both end as they were.)
        """
        with self._locked():
            device = self._live_locked(dev_handle)
            device.alt.clear()
            device.halted.clear()

    # -- control transfers --------------------------------------------------------------------

    def ctrl_transfer(
        self,
        dev_handle: _Handle,
        bmRequestType: int,  # pyusb's names, as libusb1's backend has them
        bRequest: int,
        wValue: int,
        wIndex: int,
        data: Any,
        timeout: int,
    ) -> int:
        """A control transfer: IN fills ``data`` (an array) in place; both return the count.

        Standard requests are answered here (GET_DESCRIPTOR, GET_STATUS, GET_CONFIGURATION,
        GET_INTERFACE, CLEAR_FEATURE(ENDPOINT_HALT); any other stalls), class and vendor
        requests by the printer. A request the printer leaves unanswered (its TIMEOUT fault)
        fails after ``timeout`` ms (0: the fault's duration); other failures are at once.

        Raises:
            usb.core.USBError: PIPE for a stall, IO when usbfs refuses the recipient,
                USBTimeoutError for a timeout, as libusb reports them.

        """
        with memoryview(data) as raw:
            length = raw.nbytes
            payload = b"" if bmRequestType & 0x80 else raw.tobytes()
        with self._locked():
            device = self._live_locked(dev_handle)
            if not self._control_allowed_locked(
                dev_handle, device, bmRequestType, bRequest, wIndex
            ):
                raise usb_error(LIBUSB_ERROR_IO)  # usbfs refused the URB: libusb says IO
            kind = (bmRequestType >> 5) & 3
            try:
                if kind == _TYPE_STANDARD:
                    answer = self._standard_locked(
                        device, bmRequestType, bRequest, wValue, wIndex, length
                    )
                elif kind == 3:
                    raise TransferFailed(-errno.EPIPE)  # reserved type: the device stalls
                else:
                    request: bytes | int = length if bmRequestType & 0x80 else payload
                    answer = self._class_request_locked(
                        device, (bmRequestType, bRequest, wValue, wIndex), request, timeout
                    )
            except TransferFailed as exc:
                raise usb_error(code_for_errno(-exc.status)) from None
        if not bmRequestType & 0x80:
            return length
        assert isinstance(answer, bytes)
        return _copy_into(data, answer)

    def _class_request_locked(
        self, device: _Device, setup: tuple[int, int, int, int], data: bytes | int, timeout: int
    ) -> bytes | int:
        """Ask the printer; a request it leaves unanswered fails after the timeout.

        The wait releases the lock (an unplug ends it with the device's error). With no
        timeout (0), libusb would wait for ever: the fault's duration bounds the wait.
        """
        try:
            return device.printer.control(*setup, data)
        except DeviceSilent as silent:
            deadline = monotonic() + (silent.duration if timeout == 0 else timeout / 1000)
            while not device.gone and (left := deadline - monotonic()) > 0:
                device.cond.wait(left)
            if device.gone:
                raise self._gone_locked(device) from None
            raise TransferFailed(-errno.ETIMEDOUT) from None

    def _control_allowed_locked(
        self, handle: _Handle, device: _Device, request_type: int, request: int, index: int
    ) -> bool:
        """Do what usbfs' check_ctrlrecip does: may this handle address the recipient."""
        if (request_type >> 5) & 3 == _TYPE_VENDOR:
            return True
        if request_type == RT_CLASS_IN and request == REQ_GET_DEVICE_ID:
            # The kernel lets GET_DEVICE_ID through to a printer-class alt setting unclaimed
            # (ink levels are read this way while usblp owns the printer).
            alts = device.alts_of(index >> 8) or ()
            if any(
                a.alternate == index & 0xFF and a.interface_class == USB_CLASS_PRINTER for a in alts
            ):
                return True
        recipient = request_type & 0x1F
        if recipient == _RECIPIENT_INTERFACE:
            return self._checkintf_locked(handle, device, index & 0xFF)
        if recipient == _RECIPIENT_ENDPOINT and index & 0x7F:
            number = device.interface_of(index & 0xFF)
            return number is not None and self._checkintf_locked(handle, device, number)
        return True

    def _standard_locked(
        self, device: _Device, request_type: int, request: int, value: int, index: int, length: int
    ) -> bytes | int:
        """A standard request the device itself answers (bytes for IN, 0 for OUT).

        Raises:
            TransferFailed: -EPIPE (a stall) for anything else.

        """
        if request == _GET_DESCRIPTOR and request_type == 0x80:
            return _get_descriptor(device, value)[:length]
        if request == _GET_STATUS and request_type & 0x80:
            return _get_status(device, request_type & 0x1F, index & 0xFF)[:length]
        if request == _GET_CONFIGURATION and request_type == 0x80:
            return bytes([device.configuration])[:length]
        if request == _GET_INTERFACE and request_type == 0x81:
            if device.alts_of(index & 0xFF) is None:
                raise TransferFailed(-errno.EPIPE)
            return bytes([device.alt.get(index & 0xFF, 0)])[:length]
        if request == _CLEAR_FEATURE and request_type == 0x02 and value == _ENDPOINT_HALT:
            if device.interface_of(index & 0xFF) is None:
                raise TransferFailed(-errno.EPIPE)
            device.halted.discard(index & 0xFF)
            return 0
        raise TransferFailed(-errno.EPIPE)

    # -- bulk and interrupt transfers ---------------------------------------------------------

    def bulk_write(self, dev_handle: _Handle, ep: int, intf: int, data: Any, timeout: int) -> int:
        """Send ``data`` (an array) to bulk OUT endpoint ``ep``; return the count accepted.

        ``timeout`` is in milliseconds, 0 for ever. A timeout that cut the transfer returns
        the count that went, as pyusb's libusb1 backend does.

        Raises:
            usb.core.USBTimeoutError: nothing was accepted in time.
            usb.core.USBError: PIPE (stall), IO (protocol error, or usbfs refused the
                endpoint), NO_DEVICE or the first-unplug error.

        """
        return _pyusb_count(*self.transfer(dev_handle, ep, data, timeout))

    def bulk_read(self, dev_handle: _Handle, ep: int, intf: int, buff: Any, timeout: int) -> int:
        """Read from bulk IN endpoint ``ep`` into ``buff`` (an array) in place; return the count.

        Raises:
            usb.core.USBTimeoutError: nothing came in time.
            usb.core.USBError: as for :meth:`bulk_write`; OVERFLOW if the packet that came
                did not fit in what was left of ``buff``.

        """
        return _pyusb_count(*self.transfer(dev_handle, ep, buff, timeout))

    def intr_write(self, dev_handle: _Handle, ep: int, intf: int, data: Any, timeout: int) -> int:
        """An interrupt OUT transfer (as :meth:`bulk_write`)."""
        return _pyusb_count(*self.transfer(dev_handle, ep, data, timeout, interrupt=True))

    def intr_read(self, dev_handle: _Handle, ep: int, intf: int, buff: Any, timeout: int) -> int:
        """An interrupt IN transfer into ``buff`` (as :meth:`bulk_read`)."""
        return _pyusb_count(*self.transfer(dev_handle, ep, buff, timeout, interrupt=True))

    def transfer(
        self, handle: _Handle, ep: int, buff: Any, timeout: int, *, interrupt: bool = False
    ) -> tuple[int, int]:
        """A synchronous bulk or interrupt transfer, as libusb's returns it.

        ``buff`` (an array or any writable buffer) is sent for OUT, filled for IN.

        Returns:
            (libusb code, bytes transferred): the code is 0 or the failure, and the count is
            meaningful with a failure too (a timeout or an unplug that cut the transfer).

        Raises:
            usb.core.USBError: a failure before anything was submitted (a closed handle's
                EmulatorUsageError aside): INVALID_PARAM, IO (usbfs refused the endpoint),
                NO_DEVICE.

        """
        out = not ep & 0x80
        with memoryview(buff) as raw:
            length = raw.nbytes
            payload = raw.tobytes() if out else b""
        with self._locked():
            device = self._live_locked(handle)
            kind = device.endpoint_type(ep)
            number = device.interface_of(ep)
            if number is None or not self._checkintf_locked(handle, device, number):
                raise usb_error(LIBUSB_ERROR_IO)  # usbfs refused the URB
            if interrupt and kind != _INTERRUPT:
                raise usb_error(LIBUSB_ERROR_IO)  # usbfs: EINVAL for that endpoint type
            cut = out and device.budget is not None and len(payload) >= device.budget
            if cut and device.budget is not None:
                payload = payload[: device.budget]  # the cable goes after the last of these
            size = len(payload) if out else length
            result = self._run_locked(handle, device, ep, size, payload, timeout)
            if out and device.budget is not None:
                device.budget -= result.actual
                if device.budget == 0:  # the mark is reached: the cable goes now
                    self._unplug_locked(device)
                    if cut and len(payload) < length:
                        return self._gone_locked(device).backend_error_code, result.actual
            if result.status == -errno.EPIPE:
                device.halted.add(ep)  # reported by GET_STATUS until cleared
            code = code_for_errno(-result.status) if result.status else 0
            count = result.actual if out else _copy_into(buff, result.data)
        return code, count

    def _run_locked(
        self, handle: _Handle, device: _Device, ep: int, length: int, payload: bytes, timeout: int
    ) -> Completion:
        """Service the transfer until it completes, waiting on the device between tries."""
        printer = device.printer
        started = monotonic()
        deadline = None if timeout == 0 else started + timeout / 1000
        while True:
            if device.gone:
                # Unplugged while we waited: the URB dies with the device. This comes first:
                # a driver often closes its handle on unplug before we wake.
                printer.cancel(ep, started)
                return Completion(-_errno_of(self._gone_locked(device)))
            if handle.closed:
                # Another thread closed the handle under us: libusb cancels the transfer, and
                # a cancelled synchronous transfer returns LIBUSB_ERROR_IO.
                printer.cancel(ep, started)
                return Completion(-errno.EIO)
            now = monotonic()
            result = printer.service(ep, length, payload, started, now)
            if isinstance(result, Completion):
                return result
            if deadline is not None and now >= deadline:
                # libusb cancels a transfer that timed out; the packets that went stay gone.
                went = printer.cut(ep, payload, started, now) if payload else 0
                printer.cancel(ep, started)
                return Completion(-errno.ETIMEDOUT, went)
            wake = result
            if deadline is not None:
                wake = deadline if wake is None else min(wake, deadline)
            if wake is None:
                device.cond.wait()
            elif wake > now:
                device.cond.wait(wake - now)


def _errno_of(exc: usb.core.USBError) -> int:
    """The kernel errno Linux libusb maps to this error's libusb code."""
    code = exc.backend_error_code
    return next(number for number, c in FROM_ERRNO.items() if c == code)


def _pyusb_count(code: int, count: int) -> int:
    """What pyusb's libusb1 backend makes of a transfer's (code, count)."""
    # libusb1.py: "do not assume LIBUSB_ERROR_TIMEOUT means no I/O".
    if code and not (code == LIBUSB_ERROR_TIMEOUT and count):
        raise usb_error(code)
    return count


def _get_descriptor(device: _Device, value: int) -> bytes:
    """GET_DESCRIPTOR of the device, configuration 0, strings (and more at high speed).

    A high-speed device also answers DEVICE_QUALIFIER and OTHER_SPEED_CONFIGURATION; the
    device stalls anything else.
    """
    kind, number = value >> 8, value & 0xFF
    answer: bytes | None = None
    if kind == DT_DEVICE:
        answer = device.device_blob
    elif kind == DT_CONFIG and number == 0:
        answer = device.config_blob
    elif kind == DT_DEVICE_QUALIFIER and device.other_speed_blob is not None:
        answer = qualifier_bytes(device.fields)  # a high-speed device: at full speed it would be
    elif kind == DT_OTHER_SPEED_CONFIG and number == 0:
        answer = device.other_speed_blob
    elif kind == DT_STRING:
        answer = string_bytes(device.descriptor, number)
    if answer is None:
        raise TransferFailed(-errno.EPIPE)
    return answer


def _get_status(device: _Device, recipient: int, index: int) -> bytes:
    """GET_STATUS: self-powered device, plain interfaces, endpoints halted after a stall."""
    if recipient == _RECIPIENT_DEVICE:
        return b"\x01\x00"  # self-powered, no remote wake-up
    if recipient == _RECIPIENT_INTERFACE and device.alts_of(index) is not None:
        return b"\x00\x00"
    if recipient == _RECIPIENT_ENDPOINT and (
        index & 0x7F == 0 or device.interface_of(index) is not None
    ):
        return bytes([index in device.halted, 0])
    raise TransferFailed(-errno.EPIPE)


def _copy_into(buff: Any, data: bytes) -> int:
    """Copy ``data`` into the start of array ``buff``; return the count copied."""
    with memoryview(buff) as raw, raw.cast("B") as view:
        count = min(len(data), len(view))
        view[:count] = data[:count]
    return count

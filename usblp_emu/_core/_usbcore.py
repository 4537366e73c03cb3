"""The USB core, emulated: devices, interfaces, intfdata, 16 minors, runtime PM, transfers.

Rules and invariants:
- Probe and disconnect of one host never run concurrently: the caller (the hub thread, here
  ``Host.plug``/``Host.unplug``) holds the hub lock, as khubd's single thread does.
- ``minors[m]`` is published with an atomic store and read with an atomic load; registration
  and deregistration take ``minor_rwsem`` for writing, ``usb_open`` holds it for reading
  across the driver's open. With ``minor_rwsem=False`` that backstop is gone, to show what a
  driver alone guarantees; the minor allocator stays serialised by ``_minor_lock``.
- An interface lives on the heap with a kref: the core holds one reference from enumeration to
  disconnect, drivers take more with ``get_intf``; the last ``put_intf`` frees it.
- Runtime PM state (usage counts, suspended) is guarded by the device's ``pm_lock``; resuming
  a device (which may take the device's resume latency) happens under it.
- When a device is unplugged its in-flight URBs fail first (-ESHUTDOWN), then each bound
  driver's disconnect runs, then the core drops its interface references: the order the real
  kernel shows (docs/lifetime.md, section 3, write).
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from hazard import AtomicRef, Heap, HeapObject, Lock, Refcount, RwSemaphore, _checkpoint
from usblp_emu._core._descriptors import AltSetting, DeviceModel, TransferFailed
from usblp_emu._core._urb import HcdDevice, HostController

__all__ = ["MINORS", "Interface", "UsbCore", "UsbDev", "UsbDriver"]

MINORS = 16  # usblp's minors: lp0..lp15
# Seconds between failing an unplugged device's URBs and unbinding its drivers, in real time
# (tools/differential.py: with it a blocked writer gets EIO as on the kernel, 6.1 in QEMU).
DISCONNECT_SETTLE = 0.002


class UsbDriver(Protocol):
    """What the core calls in a driver."""

    def probe(self, intf: Interface) -> int:
        """Bind to ``intf``: 0, or a negative errno."""

    def disconnect(self, intf: Interface) -> None:
        """``intf``'s device is gone."""

    def suspend(self, intf: Interface) -> int:
        """Runtime suspend."""

    def resume(self, intf: Interface) -> int:
        """Runtime resume."""

    def open(self, minor: int) -> object:
        """fops->open: the opened object, or a negative errno."""


class UsbDev:
    """``struct usb_device``: the core's record of a plugged device (not under test)."""

    def __init__(self, model: DeviceModel, hcd_device: HcdDevice, busnum: int, devnum: int) -> None:
        self.model = model
        self.hcd_device = hcd_device
        self.descriptor = model.descriptor
        self.busnum = busnum
        self.devnum = devnum
        self.interfaces: list[Interface] = []
        self.pm_lock = Lock("usb_device.pm_lock")
        self.suspended = False  # guarded by pm_lock

    def __repr__(self) -> str:
        d = self.descriptor
        return f"<UsbDev {self.busnum}-{self.devnum} {d.vendor_id:04x}:{d.product_id:04x}>"


class Interface(HeapObject):
    """``struct usb_interface``: alt settings, the driver's intfdata, the minor, a kref."""

    __embedded__ = ("refs", "intfdata")

    def __init__(self, dev: UsbDev, number: int, altsettings: tuple[AltSetting, ...]) -> None:
        self.refs = Refcount(1, "usb_interface.kref")  # the core's reference
        self.dev = dev
        self.number = number
        self.altsettings = altsettings
        self.cur_alt = altsettings[0].alternate
        self.intfdata: AtomicRef[Any] = AtomicRef(None)  # the driver's void *
        self.minor = -1  # written under the core's _minor_lock
        self.bound = False  # written by the hub thread only
        self.pm_usage = 0  # guarded by dev.pm_lock


DriverT = TypeVar("DriverT", bound=UsbDriver)


class UsbCore(Generic[DriverT]):
    """One bus: devices, the minor table, transfers through a host controller, one driver.

    Args:
        heap: where interfaces and URBs live.
        driver: builds the bus's driver from the core (the driver needs the core's heap and
            host controller; the core calls the driver on every probe, open and unplug).
        minor_rwsem: hold ``minor_rwsem`` across open and in deregistration (the kernel's
            backstop); False to see what the driver alone guarantees.

    """

    def __init__(
        self,
        heap: Heap,
        driver: Callable[[UsbCore[DriverT]], DriverT],
        *,
        minor_rwsem: bool = True,
        errors: list[BaseException],
    ) -> None:
        self.heap = heap
        self.use_minor_rwsem = minor_rwsem
        self.minor_rwsem = RwSemaphore("minor_rwsem")
        self.minors: list[AtomicRef[Interface | None]] = [AtomicRef(None) for _ in range(MINORS)]
        self._minor_owner: list[Interface | None] = [None] * MINORS  # guarded by _minor_lock
        self._minor_lock = Lock("usb_minors")
        self.hcd = HostController(heap, errors)
        self._next_devnum = 2  # devnum 1 is the root hub; written by the hub thread only
        self.busnum = 1
        self.disconnect_settle = DISCONNECT_SETTLE
        self.driver: DriverT = driver(self)  # last: it may use everything above

    # -- enumeration -------------------------------------------------------------------------

    def connect(self, model: DeviceModel) -> UsbDev:
        """Enumerate ``model`` and probe each of its interfaces with the driver."""
        dev = UsbDev(model, self.hcd.attach(model), self.busnum, self._next_devnum)
        self._next_devnum = 2 if self._next_devnum >= 127 else self._next_devnum + 1
        model.connect(self.hcd.kick)  # first: it refuses a device plugged in elsewhere
        for number, alts in enumerate(model.descriptor.interfaces):
            dev.interfaces.append(self.heap.alloc(Interface, dev, number, alts))
        for intf in dev.interfaces:
            if self.driver.probe(intf) == 0:
                intf.bound = True
        return dev

    def disconnect(self, dev: UsbDev) -> None:
        """Unplug: fail in-flight URBs, run each driver's disconnect, drop the core's refs."""
        self.hcd.flush_device(dev.hcd_device)
        dev.model.disconnect()
        if _checkpoint.scheduler is None and self.disconnect_settle:
            # The kernel's hub thread spends milliseconds between failing the URBs and
            # unbinding the drivers (usb_disable_device, device_del); a woken writer runs on
            # another CPU meanwhile and sees its URB's error (EIO) before disconnect clears
            # ``present`` (ENODEV). Real time only: the explorer tries both orders anyway.
            time.sleep(self.disconnect_settle)
        for intf in dev.interfaces:
            if intf.bound:
                self.driver.disconnect(intf)
                intf.bound = False
        for intf in dev.interfaces:
            self.put_intf(intf)
        dev.interfaces.clear()

    def get_intf(self, intf: Interface) -> Interface:
        """usb_get_intf()."""
        intf.refs.inc()
        return intf

    def put_intf(self, intf: Interface) -> None:
        """usb_put_intf(): the last reference frees the interface."""
        if intf.refs.dec_and_test():
            self.heap.free(intf)

    # -- minors ------------------------------------------------------------------------------

    def register_dev(self, intf: Interface) -> int:
        """usb_register_dev(): give ``intf`` a minor; 0 or -EXFULL."""
        if self.use_minor_rwsem:
            self.minor_rwsem.down_write()
        try:
            with self._minor_lock:
                for minor, owner in enumerate(self._minor_owner):
                    if owner is None:
                        self._minor_owner[minor] = intf
                        intf.minor = minor
                        self.minors[minor].store(intf)
                        return 0
            return -errno.EXFULL
        finally:
            if self.use_minor_rwsem:
                self.minor_rwsem.up_write()

    def deregister_dev(self, intf: Interface) -> None:
        """usb_deregister_dev(): free ``intf``'s minor.

        With the rwsem backstop on, once it returns no open of this minor runs or will start.
        """
        if self.use_minor_rwsem:
            self.minor_rwsem.down_write()
        try:
            with self._minor_lock:
                minor = intf.minor
                if minor >= 0:
                    self.minors[minor].store(None)
                    self._minor_owner[minor] = None
                    intf.minor = -1
        finally:
            if self.use_minor_rwsem:
                self.minor_rwsem.up_write()

    def find_interface(self, minor: int) -> Interface | None:
        """usb_find_interface(): the interface registered at ``minor`` (no reference taken)."""
        if not 0 <= minor < MINORS:
            return None
        return self.minors[minor].load()

    def open(self, minor: int) -> object:
        """usb_open(): the driver's open under ``minor_rwsem`` (when on); -ENODEV if unused."""
        if not 0 <= minor < MINORS:
            return -errno.ENODEV
        if self.use_minor_rwsem:
            self.minor_rwsem.down_read()
        try:
            if self.minors[minor].load() is None:
                return -errno.ENODEV
            return self.driver.open(minor)
        finally:
            if self.use_minor_rwsem:
                self.minor_rwsem.up_read()

    # -- runtime PM --------------------------------------------------------------------------

    def autopm_get(self, intf: Interface) -> int:
        """usb_autopm_get_interface(): resume the device if suspended; 0 or -ENODEV."""
        dev = intf.dev
        with dev.pm_lock:
            if not self.hcd.is_attached(dev.hcd_device):
                return -errno.ENODEV
            intf.pm_usage += 1
            if dev.suspended:
                dev.model.resume()
                dev.suspended = False
                if intf.bound:
                    self.driver.resume(intf)
        return 0

    def autopm_put(self, intf: Interface) -> None:
        """usb_autopm_put_interface(): the last user lets the device autosuspend."""
        dev = intf.dev
        with dev.pm_lock:
            intf.pm_usage -= 1
            if intf.pm_usage == 0 and not dev.suspended and self.hcd.is_attached(dev.hcd_device):
                if intf.bound:
                    self.driver.suspend(intf)
                dev.model.suspend()
                dev.suspended = True

    def suspend(self, dev: UsbDev) -> None:
        """System suspend of ``dev``: drivers' suspend, then the device's."""
        with dev.pm_lock:
            if dev.suspended:
                return
            for intf in dev.interfaces:
                if intf.bound:
                    self.driver.suspend(intf)
            dev.model.suspend()
            dev.suspended = True

    def resume(self, dev: UsbDev) -> None:
        """System resume of ``dev``: the device (its resume latency), then drivers' resume."""
        with dev.pm_lock:
            if not dev.suspended:
                return
            dev.model.resume()
            dev.suspended = False
            for intf in dev.interfaces:
                if intf.bound:
                    self.driver.resume(intf)

    # -- transfers ---------------------------------------------------------------------------

    def control_msg(
        self,
        dev: UsbDev,
        request_type: int,
        request: int,
        value: int,
        index: int,
        data: bytes | int,
    ) -> bytes | int:
        """usb_control_msg(): bytes read (IN) or the count written (OUT), or a negative errno."""
        if not self.hcd.is_attached(dev.hcd_device):
            return -errno.ENODEV
        try:
            return dev.model.control(request_type, request, value, index, data)
        except TransferFailed as exc:
            return exc.status

    def set_interface(self, intf: Interface, alternate: int) -> int:
        """usb_set_interface(): 0 or a negative errno."""
        dev = intf.dev
        if not any(a.alternate == alternate for a in intf.altsettings):
            return -errno.EINVAL
        if not self.hcd.is_attached(dev.hcd_device):
            return -errno.ENODEV
        try:
            dev.model.set_interface(intf.number, alternate)
        except TransferFailed as exc:
            return exc.status
        intf.cur_alt = alternate
        return 0

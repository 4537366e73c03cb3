"""VirtualLibusb: libusb-1.0's C API in Python, over a VirtualBackend's bus.

pyusb's own libusb1 backend (``usb.backend.libusb1._LibUSB``) drives a C library through
ctypes: it calls ``lib.libusb_bulk_transfer(handle, ep, buffer, length, byref(transferred),
timeout)`` and so on, and turns the returned codes into ``USBError``. A VirtualLibusb stands in
for that library: every function pyusb calls, with its C signature and the ``libusb.h``
structure layouts, answered from a :class:`~usblp_emu._virtual._backend.VirtualBackend`. So a
program that checks which backend it got (python-escpos detaches the kernel driver only when
``device.backend.__module__`` ends in ``libusb1``) sees the truth: pyusb's libusb1 backend,
over a library that happens to be virtual, as libusb-package supplies a real one.

Rules and invariants:
- Tokens stand for C pointers: a device's is the ``id`` of its bus entry, kept alive in
  ``_devices`` for the library's life (one entry per plug), so a token is never reused; a
  handle's lives from ``libusb_open`` to ``libusb_close``. Descriptor trees are built once per
  device, immutable, and outlive every pointer handed out (``libusb_free_config_descriptor``
  frees nothing).
- The token tables and device lists are guarded by one :class:`hazard.Lock`. pyusb frees
  device lists and unreferences devices from finalizers, which may run on a thread inside
  that lock: such calls are queued and applied when the lock is released (the backend does
  the same for closes).
- Failures are returned as libusb codes, never raised: the backend's ``USBError`` carries its
  code, which is what the C function would have returned.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from ctypes import POINTER, Structure, c_int, c_ubyte, c_uint8, c_uint16, c_void_p
from typing import Any

import usb.core

from hazard import Lock
from usblp_emu._virtual._backend import VirtualBackend, _Device, _Handle
from usblp_emu._virtual._libusb_errors import LIBUSB_ERROR_INVALID_PARAM, strerror

__all__ = ["ConfigDescriptor", "DeviceDescriptorStruct", "VirtualLibusb"]


# -- libusb.h's structures ------------------------------------------------------------------------


class EndpointDescriptor(Structure):
    """struct libusb_endpoint_descriptor."""

    _fields_ = [
        ("bLength", c_uint8),
        ("bDescriptorType", c_uint8),
        ("bEndpointAddress", c_uint8),
        ("bmAttributes", c_uint8),
        ("wMaxPacketSize", c_uint16),
        ("bInterval", c_uint8),
        ("bRefresh", c_uint8),
        ("bSynchAddress", c_uint8),
        ("extra", POINTER(c_ubyte)),
        ("extra_length", c_int),
    ]


class InterfaceDescriptor(Structure):
    """struct libusb_interface_descriptor."""

    _fields_ = [
        ("bLength", c_uint8),
        ("bDescriptorType", c_uint8),
        ("bInterfaceNumber", c_uint8),
        ("bAlternateSetting", c_uint8),
        ("bNumEndpoints", c_uint8),
        ("bInterfaceClass", c_uint8),
        ("bInterfaceSubClass", c_uint8),
        ("bInterfaceProtocol", c_uint8),
        ("iInterface", c_uint8),
        ("endpoint", POINTER(EndpointDescriptor)),
        ("extra", POINTER(c_ubyte)),
        ("extra_length", c_int),
    ]


class Interface(Structure):
    """struct libusb_interface."""

    _fields_ = [("altsetting", POINTER(InterfaceDescriptor)), ("num_altsetting", c_int)]


class ConfigDescriptor(Structure):
    """struct libusb_config_descriptor."""

    _fields_ = [
        ("bLength", c_uint8),
        ("bDescriptorType", c_uint8),
        ("wTotalLength", c_uint16),
        ("bNumInterfaces", c_uint8),
        ("bConfigurationValue", c_uint8),
        ("iConfiguration", c_uint8),
        ("bmAttributes", c_uint8),
        ("bMaxPower", c_uint8),
        ("interface", POINTER(Interface)),
        ("extra", POINTER(c_ubyte)),
        ("extra_length", c_int),
    ]


class DeviceDescriptorStruct(Structure):
    """struct libusb_device_descriptor."""

    _fields_ = [
        ("bLength", c_uint8),
        ("bDescriptorType", c_uint8),
        ("bcdUSB", c_uint16),
        ("bDeviceClass", c_uint8),
        ("bDeviceSubClass", c_uint8),
        ("bDeviceProtocol", c_uint8),
        ("bMaxPacketSize0", c_uint8),
        ("idVendor", c_uint16),
        ("idProduct", c_uint16),
        ("bcdDevice", c_uint16),
        ("iManufacturer", c_uint8),
        ("iProduct", c_uint8),
        ("iSerialNumber", c_uint8),
        ("bNumConfigurations", c_uint8),
    ]


def _config_tree(device: _Device) -> tuple[ConfigDescriptor, list[object]]:
    """The configuration as libusb allocates it, and every object its pointers point into."""
    keep: list[object] = []
    config = device.config
    interfaces = (Interface * len(config.interfaces))()
    for i, alts in enumerate(config.interfaces):
        descs = (InterfaceDescriptor * len(alts))()
        for j, alt in enumerate(alts):
            eps = (EndpointDescriptor * max(1, len(alt.endpoints)))()
            for k, e in enumerate(alt.endpoints):
                eps[k] = EndpointDescriptor(
                    e.bLength, e.bDescriptorType, e.bEndpointAddress, e.bmAttributes,
                    e.wMaxPacketSize, e.bInterval, e.bRefresh, e.bSynchAddress,
                )  # fmt: skip
            descs[j] = InterfaceDescriptor(
                alt.bLength, alt.bDescriptorType, alt.bInterfaceNumber, alt.bAlternateSetting,
                alt.bNumEndpoints, alt.bInterfaceClass, alt.bInterfaceSubClass,
                alt.bInterfaceProtocol, alt.iInterface,
                ctypes.cast(eps, POINTER(EndpointDescriptor)),
            )  # fmt: skip
            keep.append(eps)
        interfaces[i] = Interface(ctypes.cast(descs, POINTER(InterfaceDescriptor)), len(alts))
        keep.append(descs)
    keep.append(interfaces)
    tree = ConfigDescriptor(
        config.bLength, config.bDescriptorType, config.wTotalLength, config.bNumInterfaces,
        config.bConfigurationValue, config.iConfiguration, config.bmAttributes, config.bMaxPower,
        ctypes.cast(interfaces, POINTER(Interface)),
    )  # fmt: skip
    return tree, keep


def _obj(ref: Any) -> Any:
    """The object a ``byref()`` argument refers to (what the C function writes through)."""
    return ref._obj


def _store_pointer(target: Any, address: int) -> None:
    """``*target = (void *)address`` for a ctypes pointer object, whatever its type."""
    ctypes.memmove(
        ctypes.addressof(target), ctypes.byref(c_void_p(address)), ctypes.sizeof(c_void_p)
    )


def _handle_value(handle: Any) -> int | None:
    return handle.value if isinstance(handle, c_void_p) else handle


class VirtualLibusb:
    """The libusb-1.0 functions pyusb's libusb1 backend calls, over ``backend``'s bus."""

    def __init__(self, backend: VirtualBackend) -> None:
        self.backend = backend  # immutable
        self._lock = Lock("virtual-libusb")
        # Guarded by _lock.
        self._devices: dict[int, _Device] = {}
        self._trees: dict[int, tuple[ConfigDescriptor, list[object]]] = {}
        self._handles: dict[int, _Handle] = {}
        self._lists: dict[int, object] = {}
        self._deferred: list[int] = []  # device lists freed by a finalizer inside the lock

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self._lock.acquire()
        try:
            yield
        finally:
            try:
                while self._deferred:
                    self._lists.pop(self._deferred.pop(), None)
            finally:
                self._lock.release()

    def _token(self, device: _Device) -> int:
        with self._locked():
            self._devices[id(device)] = device
        return id(device)

    def _device(self, token: int | None) -> _Device | None:
        with self._locked():
            return self._devices.get(token or 0)

    def _handle(self, handle: Any) -> _Handle | None:
        with self._locked():
            return self._handles.get(_handle_value(handle) or 0)

    def owns(self, token: int | None) -> bool:
        """Whether ``token`` is one of this library's device, handle or list pointers."""
        with self._locked():
            key = token or 0
            return key in self._devices or key in self._handles or key in self._lists

    def owns_tree(self, address: int | None) -> bool:
        """Whether ``address`` is a configuration descriptor this library handed out."""
        with self._locked():
            return any(ctypes.addressof(t[0]) == address for t in self._trees.values())

    def _call(self, handle: Any, action: Callable[[_Handle], object]) -> int:
        """Run ``action`` on the handle; its USBError becomes the code libusb returns."""
        h = self._handle(handle)
        if h is None:
            return LIBUSB_ERROR_INVALID_PARAM
        try:
            result = action(h)
        except usb.core.USBError as exc:
            return int(exc.backend_error_code)
        return int(result) if isinstance(result, (bool, int)) else 0

    # -- library and enumeration ------------------------------------------------------------------

    def libusb_init(self, ctx: Any) -> int:
        """libusb_init(&ctx): one context, this object."""
        _obj(ctx).value = id(self)
        return 0

    def libusb_exit(self, ctx: Any) -> None:
        """libusb_exit(): the backend outlives pyusb's context."""

    def libusb_strerror(self, code: int) -> bytes:
        """libusb_strerror(): the English text."""
        return strerror(code).encode()

    def libusb_get_device_list(self, ctx: Any, list_ref: Any) -> int:
        """libusb_get_device_list(): a NULL-terminated array of device pointers."""
        tokens = [self._token(d) for d in self.backend.enumerate_devices()]
        array = (c_void_p * (len(tokens) + 1))(*tokens, None)
        with self._locked():
            self._lists[ctypes.addressof(array)] = array
        _store_pointer(_obj(list_ref), ctypes.addressof(array))
        return len(tokens)

    def libusb_free_device_list(self, device_list: Any, unref: int) -> None:
        """libusb_free_device_list() (from a finalizer too)."""
        address = ctypes.cast(device_list, c_void_p).value or 0
        if self._lock.held_by_me():
            self._deferred.append(address)
            return
        with self._locked():
            self._lists.pop(address, None)

    def libusb_ref_device(self, dev: int) -> int:
        """libusb_ref_device(): devices live as long as the library here."""
        return dev

    def libusb_unref_device(self, dev: int) -> None:
        """libusb_unref_device() (from a finalizer): nothing to free, see the module's rules."""

    def libusb_get_parent(self, dev: int) -> int | None:
        """libusb_get_parent(): the root hub for a printer, NULL for the hub."""
        device = self._device(dev)
        parent = None if device is None else self.backend.get_parent(device)
        return None if parent is None else self._token(parent)

    def libusb_get_device_descriptor(self, dev: int, desc_ref: Any) -> int:
        """libusb_get_device_descriptor(): the cached 18 bytes, parsed."""
        device = self._device(dev)
        if device is None:
            return LIBUSB_ERROR_INVALID_PARAM
        desc = _obj(desc_ref)
        fields = device.fields
        for name, *_ in DeviceDescriptorStruct._fields_:
            setattr(desc, name, getattr(fields, name))
        return 0

    def _fields(self, dev: int) -> Any:
        device = self._device(dev)
        assert device is not None, "a device pointer libusb never handed out"
        return device.fields

    def libusb_get_bus_number(self, dev: int) -> int:
        """libusb_get_bus_number()."""
        return int(self._fields(dev).bus)

    def libusb_get_device_address(self, dev: int) -> int:
        """libusb_get_device_address()."""
        return int(self._fields(dev).address)

    def libusb_get_device_speed(self, dev: int) -> int:
        """libusb_get_device_speed(): 2 full, 3 high."""
        return int(self._fields(dev).speed)

    def libusb_get_port_number(self, dev: int) -> int:
        """libusb_get_port_number(): 0 for a root hub."""
        return int(self._fields(dev).port_number)

    def libusb_get_port_numbers(self, dev: int, buff: Any, length: int) -> int:
        """libusb_get_port_numbers(): the path from the root hub; 0 entries for the hub."""
        ports = self._fields(dev).port_numbers or ()
        for i, port in enumerate(ports[:length]):
            buff[i] = port
        return min(len(ports), length)

    def libusb_get_config_descriptor(self, dev: int, index: int, config_ref: Any) -> int:
        """libusb_get_config_descriptor(): NOT_FOUND for any index but 0."""
        device = self._device(dev)
        if device is None:
            return LIBUSB_ERROR_INVALID_PARAM
        try:
            self.backend.get_configuration_descriptor(device, index)
        except usb.core.USBError as exc:
            return int(exc.backend_error_code)
        with self._locked():
            if id(device) not in self._trees:
                self._trees[id(device)] = _config_tree(device)
            tree = self._trees[id(device)][0]
        _store_pointer(_obj(config_ref), ctypes.addressof(tree))
        return 0

    def libusb_free_config_descriptor(self, config: Any) -> None:
        """libusb_free_config_descriptor(): the tree is the device's, freed with it."""

    # -- handles ---------------------------------------------------------------------------------

    def libusb_open(self, dev: int, handle_ref: Any) -> int:
        """libusb_open()."""
        device = self._device(dev)
        if device is None:
            return LIBUSB_ERROR_INVALID_PARAM
        try:
            handle = self.backend.open_device(device)
        except usb.core.USBError as exc:
            return int(exc.backend_error_code)
        with self._locked():
            self._handles[id(handle)] = handle
        _obj(handle_ref).value = id(handle)
        return 0

    def libusb_close(self, handle: Any) -> None:
        """libusb_close(): releases the handle's claims; never fails."""
        h = self._handle(handle)
        if h is None:
            return
        self.backend.close_device(h)
        if not self._lock.held_by_me():  # else a finalizer inside our section: leave the entry
            with self._locked():
                self._handles.pop(id(h), None)

    def libusb_set_configuration(self, handle: Any, value: int) -> int:
        """libusb_set_configuration()."""
        return self._call(handle, lambda h: self.backend.set_configuration(h, value))

    def libusb_get_configuration(self, handle: Any, config_ref: Any) -> int:
        """libusb_get_configuration(&config)."""

        def get(h: _Handle) -> None:
            _obj(config_ref).value = self.backend.get_configuration(h)

        return self._call(handle, get)

    def libusb_claim_interface(self, handle: Any, number: int) -> int:
        """libusb_claim_interface()."""
        return self._call(handle, lambda h: self.backend.claim_interface(h, number))

    def libusb_release_interface(self, handle: Any, number: int) -> int:
        """libusb_release_interface()."""
        return self._call(handle, lambda h: self.backend.release_interface(h, number))

    def libusb_set_interface_alt_setting(self, handle: Any, number: int, alt: int) -> int:
        """libusb_set_interface_alt_setting()."""
        return self._call(handle, lambda h: self.backend.set_interface_altsetting(h, number, alt))

    def libusb_clear_halt(self, handle: Any, endpoint: int) -> int:
        """libusb_clear_halt()."""
        return self._call(handle, lambda h: self.backend.clear_halt(h, endpoint))

    def libusb_reset_device(self, handle: Any) -> int:
        """libusb_reset_device()."""
        return self._call(handle, self.backend.reset_device)

    def libusb_kernel_driver_active(self, handle: Any, number: int) -> int:
        """libusb_kernel_driver_active(): 1, 0, or a negative code."""
        return self._call(handle, lambda h: self.backend.is_kernel_driver_active(h, number))

    def libusb_detach_kernel_driver(self, handle: Any, number: int) -> int:
        """libusb_detach_kernel_driver()."""
        return self._call(handle, lambda h: self.backend.detach_kernel_driver(h, number))

    def libusb_attach_kernel_driver(self, handle: Any, number: int) -> int:
        """libusb_attach_kernel_driver()."""
        return self._call(handle, lambda h: self.backend.attach_kernel_driver(h, number))

    # -- transfers ---------------------------------------------------------------------------------

    def libusb_control_transfer(
        self,
        handle: Any,
        request_type: int,
        request: int,
        value: int,
        index: int,
        data: Any,
        length: int,
        timeout: int,
    ) -> int:
        """libusb_control_transfer(): the count, or a negative code."""
        buffer = _buffer(data, length)
        return self._call(
            handle,
            lambda h: self.backend.ctrl_transfer(
                h, request_type, request, value, index, buffer, timeout
            ),
        )

    def libusb_bulk_transfer(
        self, handle: Any, endpoint: int, data: Any, length: int, transferred: Any, timeout: int
    ) -> int:
        """libusb_bulk_transfer(): 0 or a code, with ``*transferred`` set either way."""
        return self._transfer(handle, endpoint, data, length, transferred, timeout, False)

    def libusb_interrupt_transfer(
        self, handle: Any, endpoint: int, data: Any, length: int, transferred: Any, timeout: int
    ) -> int:
        """libusb_interrupt_transfer(): as libusb_bulk_transfer()."""
        return self._transfer(handle, endpoint, data, length, transferred, timeout, True)

    def _transfer(
        self,
        handle: Any,
        endpoint: int,
        data: Any,
        length: int,
        transferred: Any,
        timeout: int,
        interrupt: bool,
    ) -> int:
        buffer = _buffer(data, length)
        count = _obj(transferred)
        count.value = 0

        def run(h: _Handle) -> int:
            code, moved = self.backend.transfer(h, endpoint, buffer, timeout, interrupt=interrupt)
            count.value = moved
            return code

        return self._call(handle, run)


def _buffer(data: Any, length: int) -> Any:
    """The caller's ``length`` bytes at ``data`` (a ``unsigned char *``), as a writable buffer."""
    if length == 0:
        return bytearray()
    address = ctypes.cast(data, c_void_p).value
    return (c_ubyte * length).from_address(address or 0)

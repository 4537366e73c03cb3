"""USB descriptors and the seam between the USB core and a device (virtual or real).

A device model answers control requests synchronously and services bulk transfers when the
host controller asks; it never calls into the core except through the ``kick`` callback it is
given at connect time, which tells the host controller to look at its transfers again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "AltSetting",
    "Completion",
    "DeviceDescriptor",
    "DeviceModel",
    "Endpoint",
    "TransferFailed",
]

BULK = 2


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An endpoint descriptor: ``address`` has bit 7 set for IN."""

    address: int
    attributes: int = BULK
    max_packet: int = 512

    @property
    def is_bulk_in(self) -> bool:
        """usb_endpoint_is_bulk_in()."""
        return bool(self.address & 0x80) and self.attributes & 3 == BULK

    @property
    def is_bulk_out(self) -> bool:
        """usb_endpoint_is_bulk_out()."""
        return not self.address & 0x80 and self.attributes & 3 == BULK


@dataclass(frozen=True, slots=True)
class AltSetting:
    """One alternate setting of an interface (bInterfaceClass/SubClass/Protocol, endpoints)."""

    number: int
    alternate: int
    interface_class: int
    interface_subclass: int
    interface_protocol: int
    endpoints: tuple[Endpoint, ...]


@dataclass(frozen=True, slots=True)
class DeviceDescriptor:
    """What the core reads at enumeration: ids, strings, and every interface's alt settings."""

    vendor_id: int
    product_id: int
    manufacturer: str
    product: str
    serial: str
    interfaces: tuple[tuple[AltSetting, ...], ...]


@dataclass(frozen=True, slots=True)
class Completion:
    """How a bulk transfer ended: ``status`` 0 or a negative errno, and the bytes moved.

    For OUT transfers ``actual`` is the number of bytes the device accepted; for IN transfers
    ``data`` holds what it sent.
    """

    status: int
    actual: int = 0
    data: bytes = b""


class TransferFailed(Exception):
    """A control transfer failed with the negative errno ``status`` (``-EPIPE`` for a stall)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class DeviceModel(Protocol):
    """What the USB core needs from a device: the transport seam."""

    @property
    def descriptor(self) -> DeviceDescriptor:
        """The device's descriptors."""

    def connect(self, kick: Callable[[], None]) -> None:
        """The device was plugged into a host; call ``kick`` when a transfer may progress."""

    def disconnect(self) -> None:
        """The device was unplugged: forget the host."""

    def control(
        self, request_type: int, request: int, value: int, index: int, data: bytes | int
    ) -> bytes | int:
        """A control transfer: IN requests take a length and return bytes, OUT ones data.

        Raises:
            TransferFailed: the device stalled or did not answer.

        """

    def set_interface(self, number: int, alternate: int) -> None:
        """SET_INTERFACE.

        Raises:
            TransferFailed: the device refused.

        """

    def service(
        self, endpoint: int, length: int, payload: bytes, started: float, now: float
    ) -> Completion | float | None:
        """Try to finish a bulk transfer submitted at ``started``.

        Returns:
            A Completion when it is done; else the time to ask again, or None to wait for a
            kick.

        """

    def cancel(self, endpoint: int, started: float) -> None:
        """The transfer submitted at ``started`` was killed before the device finished it."""

    def suspend(self) -> None:
        """The host suspended the device."""

    def resume(self) -> None:
        """The host resumes the device; returns when it is awake (may take time)."""

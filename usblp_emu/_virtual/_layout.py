"""How a VirtualPrinter looks on the bus: its interfaces, endpoints, speed and power.

Real printers differ in what programs trip over: the endpoint addresses (0x01/0x82 on many,
0x02/0x81 or 0x03/0x84 on others), the printer interface's number (a composite device puts a
scanner, a mass-storage or a vendor interface first), which alt setting comes first (HP's
alt 0 is bidirectional, alt 1 IEEE 1284.4), full speed (64-byte packets) or high speed (512),
bcdUSB, bcdDevice and bMaxPower. :func:`printer_layout` builds the descriptors from those
choices and refuses an impossible device with one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from usblp_emu._abi import USB_SUBCLASS_PRINTER
from usblp_emu._core._descriptors import AltSetting, Endpoint
from usblp_emu._errors import EmulatorUsageError

__all__ = ["SPEEDS", "ExtraInterface", "UsbInfo", "printer_layout"]

BULK, INTERRUPT = 2, 3
_TYPES = {"bulk": BULK, "interrupt": INTERRUPT}
# Speed name -> (libusb's enum libusb_speed, the largest bulk packet, bcdUSB's usual value).
SPEEDS = {"full": (2, 64, 0x0110), "high": (3, 512, 0x0200)}


@dataclass(frozen=True, slots=True)
class ExtraInterface:
    """An interface beside the printer's (a composite device's scanner, storage, vendor one).

    Args:
        number: bInterfaceNumber.
        interface_class, interface_subclass, interface_protocol: its class triple (0xFF:
            vendor specific, 8: mass storage, 3: HID).
        endpoints: ``(address, "bulk" | "interrupt")`` pairs; bit 7 of the address is IN.

    """

    number: int
    interface_class: int = 0xFF
    interface_subclass: int = 0
    interface_protocol: int = 0
    endpoints: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True, slots=True)
class UsbInfo:
    """Device-level facts the USB core's descriptor leaves out: what libusb reports."""

    speed: str = "high"  # "full" or "high"
    bcd_usb: int = 0x0200
    bcd_device: int = 0x0100
    max_power_ma: int = 2  # bMaxPower is in 2 mA units
    self_powered: bool = True

    @property
    def libusb_speed(self) -> int:
        """libusb_get_device_speed()'s value (2 full, 3 high)."""
        return SPEEDS[self.speed][0]

    @property
    def max_packet(self) -> int:
        """The wMaxPacketSize of a bulk endpoint at this speed."""
        return SPEEDS[self.speed][1]


def _check_byte(name: str, value: int, low: int = 0, high: int = 0xFF) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise EmulatorUsageError(f"{name} must be an integer in {low}..{high}, not {value!r}")


def printer_layout(
    *,
    protocols: tuple[int, ...],
    interface_class: int,
    interface_number: int,
    out_endpoint: int,
    in_endpoint: int,
    extra_interfaces: Sequence[ExtraInterface],
    info: UsbInfo,
) -> tuple[tuple[AltSetting, ...], ...]:
    """Every interface's alt settings, in interface-number order.

    Raises:
        EmulatorUsageError: a bad endpoint address or speed, endpoints used twice, or
            interface numbers that are not 0..n-1 once each.

    """
    if info.speed not in SPEEDS:
        raise EmulatorUsageError(f"speed must be one of {', '.join(SPEEDS)}, not {info.speed!r}")
    _check_byte("bcd_usb", info.bcd_usb, 0, 0xFFFF)
    _check_byte("bcd_device", info.bcd_device, 0, 0xFFFF)
    _check_byte("max_power_ma", info.max_power_ma, 0, 500)
    _check_byte("out_endpoint", out_endpoint, 0x01, 0x0F)
    _check_byte("in_endpoint", in_endpoint, 0x81, 0x8F)
    packet = info.max_packet
    printer_alts = tuple(
        AltSetting(
            number=interface_number,
            alternate=i,
            interface_class=interface_class,
            interface_subclass=USB_SUBCLASS_PRINTER,
            interface_protocol=p,
            endpoints=(Endpoint(out_endpoint, BULK, packet),)
            if p == 1
            else (Endpoint(out_endpoint, BULK, packet), Endpoint(in_endpoint, BULK, packet)),
        )
        for i, p in enumerate(protocols)
    )
    interfaces = {interface_number: printer_alts}
    used = {out_endpoint} | ({in_endpoint} if any(p != 1 for p in protocols) else set())
    for extra in extra_interfaces:
        if extra.number in interfaces:
            raise EmulatorUsageError(f"interface {extra.number} is defined twice")
        endpoints = []
        for address, kind in extra.endpoints:
            if kind not in _TYPES:
                raise EmulatorUsageError(f"endpoint type must be bulk or interrupt, not {kind!r}")
            _check_byte("an endpoint address", address & 0x7F, 0x01, 0x0F)
            if address in used:
                raise EmulatorUsageError(f"endpoint 0x{address:02x} is used twice")
            used.add(address)
            # An interrupt endpoint's packet is small; polled every 2^(4-1) microframes.
            endpoints.append(Endpoint(address, _TYPES[kind], packet if kind == "bulk" else 8))
        interfaces[extra.number] = (
            AltSetting(
                extra.number,
                0,
                extra.interface_class,
                extra.interface_subclass,
                extra.interface_protocol,
                tuple(endpoints),
            ),
        )
    if sorted(interfaces) != list(range(len(interfaces))):
        raise EmulatorUsageError(
            f"interface numbers must be 0..{len(interfaces) - 1}, once each; "
            f"got {sorted(interfaces)}"
        )
    return tuple(interfaces[n] for n in sorted(interfaces))

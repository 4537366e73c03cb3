"""The descriptors VirtualBackend hands pyusb: libusb's structures, and their wire bytes.

Built from a :class:`~usblp_emu._core._descriptors.DeviceDescriptor` once per plug, immutable
after: the records whose attributes pyusb reads (``get_device_descriptor`` and friends), and the
bytes a GET_DESCRIPTOR request returns (device, configuration, strings).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from usblp_emu._core._descriptors import DeviceDescriptor

__all__ = [
    "DT_CONFIG",
    "DT_DEVICE",
    "DT_DEVICE_QUALIFIER",
    "DT_ENDPOINT",
    "DT_INTERFACE",
    "DT_OTHER_SPEED_CONFIG",
    "DT_STRING",
    "LANGID_EN_US",
    "LIBUSB_SPEED_HIGH",
    "STRING_MAX",
    "ConfigFields",
    "DeviceFields",
    "EndpointFields",
    "InterfaceFields",
    "config_bytes",
    "config_fields",
    "device_bytes",
    "qualifier_bytes",
    "string_bytes",
    "string_table",
]

LIBUSB_SPEED_HIGH = 3  # 512-byte bulk packets: a high-speed device
LANGID_EN_US = 0x0409
STRING_MAX = 252  # UTF-16 bytes in a string descriptor (bLength is one byte, and even)
DT_DEVICE, DT_CONFIG, DT_STRING, DT_INTERFACE, DT_ENDPOINT = 1, 2, 3, 4, 5
DT_DEVICE_QUALIFIER, DT_OTHER_SPEED_CONFIG = 6, 7
_RESERVED, _SELF_POWERED = 0x80, 0x40  # bmAttributes: bit 7 reserved (set), bit 6 self-powered
_INTERRUPT = 3

# -- descriptors -------------------------------------------------------------------------------
# pyusb reads these objects' attributes: the libusb structure fields under their USB names, plus
# what libusb1's backend adds (extra_descriptors; bus, address, ports and speed on the device).
# Immutable, built once per plug.


@dataclass(frozen=True, slots=True)
class EndpointFields:
    bEndpointAddress: int
    bmAttributes: int
    wMaxPacketSize: int
    bLength: int = 7
    bDescriptorType: int = DT_ENDPOINT
    bInterval: int = 0
    bRefresh: int = 0
    bSynchAddress: int = 0
    extra_descriptors: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class InterfaceFields:
    bInterfaceNumber: int
    bAlternateSetting: int
    bNumEndpoints: int
    bInterfaceClass: int
    bInterfaceSubClass: int
    bInterfaceProtocol: int
    endpoints: tuple[EndpointFields, ...]
    bLength: int = 9
    bDescriptorType: int = DT_INTERFACE
    iInterface: int = 0
    extra_descriptors: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class ConfigFields:
    wTotalLength: int
    bNumInterfaces: int
    interfaces: tuple[tuple[InterfaceFields, ...], ...]
    bLength: int = 9
    bDescriptorType: int = DT_CONFIG
    bConfigurationValue: int = 1
    iConfiguration: int = 0
    bmAttributes: int = _RESERVED | _SELF_POWERED
    bMaxPower: int = 1  # in 2 mA units: a printer powers itself
    extra_descriptors: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class DeviceFields:
    idVendor: int
    idProduct: int
    iManufacturer: int
    iProduct: int
    iSerialNumber: int
    bus: int
    address: int
    port_number: int
    port_numbers: tuple[int, ...] | None  # None for a root hub, as libusb1 reports it
    speed: int = LIBUSB_SPEED_HIGH
    bLength: int = 18
    bDescriptorType: int = DT_DEVICE
    bcdUSB: int = 0x0200
    bDeviceClass: int = 0  # the class is per interface, as on most printers
    bDeviceSubClass: int = 0
    bDeviceProtocol: int = 0
    bMaxPacketSize0: int = 64
    bcdDevice: int = 0x0100
    bNumConfigurations: int = 1


def string_table(descriptor: DeviceDescriptor) -> tuple[str, str, str]:
    """String descriptors 1, 2 and 3."""
    return descriptor.manufacturer, descriptor.product, descriptor.serial


def config_fields(
    descriptor: DeviceDescriptor,
    *,
    max_power_ma: int = 2,
    self_powered: bool = True,
    interval: int = 4,
    packet: int | None = None,
) -> ConfigFields:
    """The configuration as libusb parses it.

    Args:
        descriptor: the device's interfaces.
        max_power_ma: bMaxPower, in mA (rounded up to its 2 mA units).
        self_powered: bmAttributes' self-powered bit.
        interval: bInterval of the interrupt endpoints.
        packet: every bulk endpoint's wMaxPacketSize instead of its own (the other speed's
            configuration).

    """
    interfaces = tuple(
        tuple(
            InterfaceFields(
                bInterfaceNumber=alt.number,
                bAlternateSetting=alt.alternate,
                bNumEndpoints=len(alt.endpoints),
                bInterfaceClass=alt.interface_class,
                bInterfaceSubClass=alt.interface_subclass,
                bInterfaceProtocol=alt.interface_protocol,
                endpoints=tuple(
                    EndpointFields(
                        ep.address,
                        ep.attributes,
                        packet
                        if packet is not None and ep.attributes & 3 != _INTERRUPT
                        else ep.max_packet,
                        bInterval=interval if ep.attributes & 3 == _INTERRUPT else 0,
                    )
                    for ep in alt.endpoints
                ),
            )
            for alt in alts
        )
        for alts in descriptor.interfaces
    )
    attributes = _RESERVED | (_SELF_POWERED if self_powered else 0)
    power = (max_power_ma + 1) // 2
    # Measured on what GET_DESCRIPTOR sends, so the two can never disagree.
    total = len(config_bytes(interfaces))
    return ConfigFields(
        wTotalLength=total,
        bNumInterfaces=len(interfaces),
        interfaces=interfaces,
        bmAttributes=attributes,
        bMaxPower=power,
    )


def config_bytes(
    interfaces: tuple[tuple[InterfaceFields, ...], ...],
    *,
    attributes: int = _RESERVED | _SELF_POWERED,
    power: int = 1,
    kind: int = DT_CONFIG,
) -> bytes:
    """The configuration descriptor's wire bytes (``kind``: DT_OTHER_SPEED_CONFIG too)."""
    body = b"".join(
        struct.pack(
            "<9B",
            i.bLength,
            i.bDescriptorType,
            i.bInterfaceNumber,
            i.bAlternateSetting,
            i.bNumEndpoints,
            i.bInterfaceClass,
            i.bInterfaceSubClass,
            i.bInterfaceProtocol,
            i.iInterface,
        )
        + b"".join(
            struct.pack(
                "<4BHB",
                e.bLength,
                e.bDescriptorType,
                e.bEndpointAddress,
                e.bmAttributes,
                e.wMaxPacketSize,
                e.bInterval,
            )
            for e in i.endpoints
        )
        for alts in interfaces
        for i in alts
    )
    header = struct.pack(
        "<2BH5B",
        9,
        kind,
        9 + len(body),  # wTotalLength
        len(interfaces),
        1,  # bConfigurationValue
        0,  # iConfiguration
        attributes,
        power,
    )
    return header + body


def qualifier_bytes(fields: DeviceFields) -> bytes:
    """DEVICE_QUALIFIER: how a high-speed device would look at the other speed."""
    return struct.pack(
        "<2BH6B",
        10,
        DT_DEVICE_QUALIFIER,
        fields.bcdUSB,
        fields.bDeviceClass,
        fields.bDeviceSubClass,
        fields.bDeviceProtocol,
        64,  # bMaxPacketSize0 at full speed
        fields.bNumConfigurations,
        0,  # bReserved
    )


def device_bytes(fields: DeviceFields) -> bytes:
    return struct.pack(
        "<2BH4B3H4B",
        fields.bLength,
        fields.bDescriptorType,
        fields.bcdUSB,
        fields.bDeviceClass,
        fields.bDeviceSubClass,
        fields.bDeviceProtocol,
        fields.bMaxPacketSize0,
        fields.idVendor,
        fields.idProduct,
        fields.bcdDevice,
        fields.iManufacturer,
        fields.iProduct,
        fields.iSerialNumber,
        fields.bNumConfigurations,
    )


def string_bytes(descriptor: DeviceDescriptor, index: int) -> bytes | None:
    """String descriptor ``index`` (0: the LANGID table), or None: the device stalls."""
    if index == 0:
        return struct.pack("<2BH", 4, DT_STRING, LANGID_EN_US)
    strings = string_table(descriptor)
    if not 1 <= index <= len(strings) or not strings[index - 1]:
        return None
    encoded = strings[index - 1].encode("utf-16-le")[:STRING_MAX]
    if 0xD8 <= encoded[-1] <= 0xDB:
        encoded = encoded[:-2]  # the cut split a surrogate pair: drop its first half
    return bytes([2 + len(encoded), DT_STRING]) + encoded

"""The printer's USB descriptors and alt settings, and the record lines umockdev reads."""

from __future__ import annotations

import struct
from dataclasses import dataclass

# --- descriptors --------------------------------------------------------------------------

VENDOR_ID = 0x1209  # pid.codes: its test product ids are free for exactly this
LANGID_EN_US = 0x0409


def device_descriptor(vid: int, pid: int, device_class: int = 0) -> bytes:
    """The 18-byte device descriptor (USB 2.0, strings 1-3, one configuration)."""
    return struct.pack(
        "<BBHBBBBHHHBBBB", 18, 1, 0x0200, device_class, 0, 0, 64, vid, pid, 0x0100, 1, 2, 3, 1
    )


def interface_descriptor(number: int, alt: int, cls: int, sub: int, proto: int, eps: int) -> bytes:
    """A 9-byte interface descriptor."""
    return struct.pack("<BBBBBBBBB", 9, 4, number, alt, eps, cls, sub, proto, 0)


def bulk_endpoint(address: int) -> bytes:
    """A 7-byte bulk endpoint descriptor (512-byte packets: high speed)."""
    return struct.pack("<BBBBHB", 7, 5, address, 2, 512, 0)


def config_descriptor(interfaces: int, body: bytes) -> bytes:
    """A configuration descriptor (value 1, self-powered) followed by ``body``."""
    total = 9 + len(body)
    return struct.pack("<BBHBBBBB", 9, 2, total, interfaces, 1, 0, 0xC0, 50) + body


def string_descriptor(text: str) -> bytes:
    """A string descriptor: UTF-16LE after a length and type byte."""
    data = text.encode("utf-16-le")
    return bytes([2 + len(data), 3]) + data


def encode_device_id(text: str) -> bytes:
    """GET_DEVICE_ID's answer: a big-endian length that counts itself, then the text."""
    body = text.encode()
    return (len(body) + 2).to_bytes(2, "big") + body


@dataclass
class Alt:
    """One alternate setting of an interface."""

    number: int
    alt: int
    cls: int
    subclass: int
    protocol: int
    endpoints: tuple[int, ...]

    def descriptor(self) -> bytes:
        """Interface descriptor plus its endpoints."""
        head = interface_descriptor(
            self.number, self.alt, self.cls, self.subclass, self.protocol, len(self.endpoints)
        )
        return head + b"".join(bulk_endpoint(ep) for ep in self.endpoints)


def simple_printer_alts() -> list[Alt]:
    """bDeviceClass 0, one interface: printer class, bidirectional, bulk OUT 0x01 and IN 0x82."""
    return [Alt(0, 0, 7, 1, 2, (0x01, 0x82))]


def composite_printer_alts() -> list[Alt]:
    """A multifunction device: card reader, scanner, then the printer with two alt settings.

    The printer is interface 2 with alt settings 0 (protocol 1) and 1 (protocol 2), so
    GET_DEVICE_ID's wIndex is 0x0201: a client that claims ``wIndex & 0xff`` (as pyusb's
    ``ctrl_transfer`` does) claims the scanner, and that shows in ``claim_history``.
    """
    return [
        Alt(0, 0, 8, 6, 0x50, (0x03, 0x84)),  # mass storage, bound to usb-storage
        Alt(1, 0, 0xFF, 0xFF, 0xFF, (0x05, 0x86)),  # vendor-specific scanner, no driver
        Alt(2, 0, 7, 1, 1, (0x01,)),
        Alt(2, 1, 7, 1, 2, (0x01, 0x82)),
    ]


def sysfs_newlines(lines: list[str]) -> list[str]:
    """End every ``A:`` attribute with a newline, as sysfs does (libusb warns otherwise).

    The record format unescapes ``\\n`` in attribute values into a newline.
    """
    return [line + "\\n" if line.startswith("A: ") else line for line in lines]

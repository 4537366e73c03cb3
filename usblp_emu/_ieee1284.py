"""What a printer says about itself: the IEEE 1284 Device ID and the port status byte.

The Device ID answer to GET_DEVICE_ID is a two-byte length that counts itself, then
``KEY:value;`` pairs. The standard says big-endian; some printers send it little-endian, and
some send a length that does not fit the answer. We read it the way CUPS' USB backend does:
big-endian when it is plausible (at least 14 and within the answer), else little-endian when
that is, else the whole answer (a short length would only cut a real ID off). Nothing here
raises on a printer's odd answer except an answer too short to hold a length at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal
from urllib.parse import quote

__all__ = [
    "DeviceId",
    "MalformedDeviceId",
    "PortStatus",
    "cups_uri",
    "parse_device_id",
]

# CUPS treats a big-endian length under 14 as a sign of a little-endian printer: no real ID
# ("MFG:x;MDL:y;" plus the length) is shorter.
_MIN_PLAUSIBLE = 14

# Keys the standard and real printers use for the same thing, long forms first.
_ALIASES: dict[str, tuple[str, ...]] = {
    "manufacturer": ("MANUFACTURER", "MFG"),
    "model": ("MODEL", "MDL"),
    "command_set": ("COMMAND SET", "CMD", "COMMANDSET"),
    "serial": ("SERIALNUMBER", "SERN", "SN"),
    "description": ("DESCRIPTION", "DES"),
    "device_class": ("CLASS", "CLS"),
}


class MalformedDeviceId(ValueError):
    """The GET_DEVICE_ID answer is too short to hold its own length (0 or 1 bytes)."""


@dataclass(frozen=True)
class DeviceId:
    """A parsed IEEE 1284 Device ID.

    Attributes:
        raw: the answer as received, length bytes included.
        text: the ID text, decoded (UTF-8 when valid, else Latin-1), trailing NULs dropped.
        fields: every ``KEY:value`` pair, keys upper-cased and stripped, in order; a key
            given twice keeps its first value.
        byte_order: how the length field was read.
        truncated: the length field claimed more than the answer held.

    """

    raw: bytes
    text: str
    fields: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    byte_order: Literal["big", "little"] = "big"
    truncated: bool = False

    def _first(self, what: str) -> str | None:
        for key in _ALIASES[what]:
            value = self.fields.get(key)
            if value:
                return value
        return None

    @property
    def manufacturer(self) -> str | None:
        """MFG or MANUFACTURER."""
        return self._first("manufacturer")

    @property
    def model(self) -> str | None:
        """MDL or MODEL."""
        return self._first("model")

    @property
    def command_set(self) -> tuple[str, ...]:
        """CMD or COMMAND SET, split on commas (the page description languages)."""
        value = self._first("command_set")
        if value is None:
            return ()
        return tuple(part.strip() for part in value.split(",") if part.strip())

    @property
    def serial(self) -> str | None:
        """SN, SERN or SERIALNUMBER."""
        return self._first("serial")

    @property
    def description(self) -> str | None:
        """DES or DESCRIPTION."""
        return self._first("description")

    @property
    def device_class(self) -> str | None:
        """CLS or CLASS (``PRINTER`` for printers)."""
        return self._first("device_class")


def parse_device_id(answer: bytes) -> DeviceId:
    """Parse a GET_DEVICE_ID answer (the length bytes included).

    Raises:
        MalformedDeviceId: the answer has fewer than two bytes.

    """
    answer = bytes(answer)
    if len(answer) < 2:
        raise MalformedDeviceId(
            f"Device ID answer of {len(answer)} byte(s) cannot hold its 2-byte length"
        )
    big = int.from_bytes(answer[:2], "big")
    little = int.from_bytes(answer[:2], "little")
    size = len(answer)
    order: Literal["big", "little"] = "big"
    truncated = False
    if _MIN_PLAUSIBLE <= big <= size:
        length = big
    elif _MIN_PLAUSIBLE <= little <= size:
        length, order = little, "little"
    else:
        # Neither reading fits: take everything the answer holds (CUPS clamps to its buffer
        # too), and say whether the length claimed more than came.
        length, truncated = size, min(big, little) > size
    text = _decode(answer[2:length]).rstrip("\x00")
    return DeviceId(
        raw=answer,
        text=text,
        fields=MappingProxyType(_fields(text)),
        byte_order=order,
        truncated=truncated,
    )


def _decode(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return body.decode("latin-1")  # never fails: every byte is a character


def _fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for pair in text.split(";"):
        key, sep, value = pair.partition(":")
        key = key.strip().upper()
        if sep and key and key not in fields:
            fields[key] = value.strip()
    return fields


@dataclass(frozen=True)
class PortStatus:
    """The GET_PORT_STATUS byte, decoded (bits as on a parallel port's status lines)."""

    raw: int

    @property
    def paper_empty(self) -> bool:
        """0x20: out of paper."""
        return bool(self.raw & 0x20)

    @property
    def selected(self) -> bool:
        """0x10: on-line."""
        return bool(self.raw & 0x10)

    @property
    def no_error(self) -> bool:
        """0x08: the error line is not asserted."""
        return bool(self.raw & 0x08)

    def describe(self) -> str:
        """A short human description, e.g. ``"on-line, no error"``."""
        parts = ["on-line" if self.selected else "off-line"]
        if self.paper_empty:
            parts.append("paper out")
        parts.append("no error" if self.no_error else "error")
        return ", ".join(parts)


def cups_uri(manufacturer: str | None, model: str | None, serial: str | None) -> str:
    """The ``usb://MFG/MDL?serial=SN`` URI CUPS would give this printer.

    Missing parts become ``Unknown`` (as in CUPS); the serial query is left out without one.
    """
    make = quote(manufacturer or "Unknown", safe="")
    mdl = quote(model or "Unknown", safe="")
    uri = f"usb://{make}/{mdl}"
    if serial:
        uri += f"?serial={quote(serial, safe='')}"
    return uri

"""Outcomes as tokens: how a step's result or errno, a poll mask, bytes read or received are
written so that the kernel's and the emulator's can be compared. Standard library only."""

from __future__ import annotations

import errno
import hashlib

from tools.opdiff.script import POLL_BITS


def pattern(seed: int, count: int) -> bytes:
    """``count`` bytes of a pattern that differs per seed (the write's step number)."""
    block = bytes((seed * 31 + i) % 251 for i in range(251))
    return (block * (count // 251 + 1))[:count]


def digest(data: bytes) -> str:
    """A short content digest."""
    return hashlib.sha256(data).hexdigest()[:12]


def bytes_token(data: bytes) -> str:
    """``LEN:DIGEST`` (``0`` when empty)."""
    return f"{len(data)}:{digest(data)}" if data else "0"


def poll_token(mask: int) -> str:
    """A poll mask as names (only what ``poll F`` asks for, plus ERR, HUP and NVAL)."""
    names = [name for name, bit in POLL_BITS if mask & bit]
    return "|".join(names) or "none"


def ioctl_token(name: str, value: object) -> tuple[str, str]:
    """(token, detail) for an ioctl's result."""
    if isinstance(value, bytes):  # GET_DEVICE_ID
        return f"id:{bytes_token(value)}", repr(value[2:].decode("latin-1"))
    if isinstance(value, tuple):
        first, second = value
        if name == "GET_BUS_ADDRESS":
            # The device number grows with every enumeration (and the rig re-enumerates
            # between scripts): only its shape is the driver's business.
            ok = first >= 1 and 1 <= second <= 127
            return ("bus-address" if ok else f"bus-address:{first}:{second}"), f"{value}"
        if name == "GET_VID_PID":
            return f"{first:04x}:{second:04x}", ""
        return f"{first}:{second:#x}", ""  # GET_PROTOCOLS: current, mask
    if name == "LPGETSTATUS" and isinstance(value, int):
        return f"status:{value:#04x}", ""
    return str(value), ""


def errno_token(exc: OSError) -> str:
    """The errno's name (``ENODEV``)."""
    return errno.errorcode.get(exc.errno or 0, f"errno{exc.errno}")

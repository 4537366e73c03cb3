"""What usbfs speaks: its ioctl numbers (x86-64), the URB layout, and a client's state."""

from __future__ import annotations

import errno
import os
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from usblp_emu._abi import (
    IOC_NONE,
    IOC_READ,
    IOC_WRITE,
    ioc,
)

# --- usbfs ioctl numbers (x86-64: <linux/usbdevice_fs.h>) -----------------------------------


def _ioc(direction: int, nr: int, size: int) -> int:
    return ioc(direction, "U", nr, size)


USBDEVFS_CONTROL = _ioc(IOC_READ | IOC_WRITE, 0, 24)
USBDEVFS_SETINTERFACE = _ioc(IOC_READ, 4, 8)
USBDEVFS_SETCONFIGURATION = _ioc(IOC_READ, 5, 4)
USBDEVFS_GETDRIVER = _ioc(IOC_WRITE, 8, 260)
USBDEVFS_SUBMITURB = _ioc(IOC_READ, 10, 56)
USBDEVFS_DISCARDURB = _ioc(IOC_NONE, 11, 0)
USBDEVFS_REAPURB = _ioc(IOC_WRITE, 12, 8)
USBDEVFS_REAPURBNDELAY = _ioc(IOC_WRITE, 13, 8)
USBDEVFS_CLAIMINTERFACE = _ioc(IOC_READ, 15, 4)
USBDEVFS_RELEASEINTERFACE = _ioc(IOC_READ, 16, 4)
USBDEVFS_CONNECTINFO = _ioc(IOC_WRITE, 17, 8)
USBDEVFS_IOCTL = _ioc(IOC_READ | IOC_WRITE, 18, 16)
USBDEVFS_RESET = _ioc(IOC_NONE, 20, 0)
USBDEVFS_CLEAR_HALT = _ioc(IOC_READ, 21, 4)
USBDEVFS_DISCONNECT = _ioc(IOC_NONE, 22, 0)
USBDEVFS_CONNECT = _ioc(IOC_NONE, 23, 0)
USBDEVFS_GET_CAPABILITIES = _ioc(IOC_READ, 26, 4)
USBDEVFS_DISCONNECT_CLAIM = _ioc(IOC_READ, 27, 264)

IOCTL_NAMES = {
    value: name
    for name, value in globals().items()
    if name.startswith("USBDEVFS_") and isinstance(value, int)
}

# What an xHCI host reports (no MMAP: libusb would mmap the socket umockdev hands it).
CAPABILITIES = 0x01 | 0x02 | 0x04 | 0x08 | 0x10  # ZERO_PACKET .. REAP_AFTER_DISCONNECT

URB_TYPE_CONTROL = 2
URB_TYPE_BULK = 3
URB_SIZE = 56  # struct usbdevfs_urb on x86-64: type 0, endpoint 1, status 4, flags 8,
# buffer 16, buffer_length 24, actual_length 28, ... usercontext 48

ERRNO_BY_NAME = {name: getattr(errno, name) for name in ("ESHUTDOWN", "EPROTO", "ENODEV", "EIO")}


# --- URBs and clients -------------------------------------------------------------------------


@dataclass
class Urb:
    """A URB the client submitted and has not reaped yet."""

    struct_data: Any  # UMockdev.IoctlData of the struct, resolved at submit
    buffer: Any  # UMockdev.IoctlData of the buffer, or None
    address: int  # the client's address of the struct (DISCARDURB names it)
    type: int
    endpoint: int
    length: int
    payload: bytes  # what the client's buffer held at submit (OUT data, control setup)
    accepted: int = 0  # OUT: bytes the device took so far
    status: int = 0
    actual: int = 0
    answer: bytes = b""  # IN data (for control, after the setup packet)
    done: bool = False
    stuck: bool = False  # a short write: in flight until discarded
    stall: bool | None = None  # whether the stall command picked it (None: not decided yet)


@dataclass
class ClientState:
    """What usbfs keeps per open file: claimed interfaces and URBs."""

    claimed: set[int] = field(default_factory=set)
    pending: list[Urb] = field(default_factory=list)
    completed: deque[Urb] = field(default_factory=deque)


class Stop(Exception):
    """Answer the ioctl with -1 and this errno."""

    def __init__(self, code: int) -> None:
        super().__init__(os.strerror(code))
        self.code = code


def read_u32(arg: Any) -> int:
    """The unsigned int an ioctl argument points to."""
    value: int = struct.unpack("<I", bytes(arg.resolve(0, 4).retrieve()))[0]
    return value

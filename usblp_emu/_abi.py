"""The kernel's numbers: ioctl commands (``<linux/lp.h>``, usblp.c), poll bits, port status."""

from __future__ import annotations

__all__ = [
    "IOCNR_GET_BUS_ADDRESS",
    "IOCNR_GET_DEVICE_ID",
    "IOCNR_GET_PROTOCOLS",
    "IOCNR_GET_VID_PID",
    "IOCNR_HP_SET_CHANNEL",
    "IOCNR_SET_PROTOCOL",
    "IOCNR_SOFT_RESET",
    "LPABORT",
    "LPGETSTATUS",
    "LPIOC_GET_BUS_ADDRESS",
    "LPIOC_GET_DEVICE_ID",
    "LPIOC_GET_PROTOCOLS",
    "LPIOC_GET_VID_PID",
    "LPIOC_HP_SET_CHANNEL",
    "LPIOC_SET_PROTOCOL",
    "LPIOC_SOFT_RESET",
    "LP_PERRORP",
    "LP_POUTPA",
    "LP_PSELECD",
    "POLLHUP",
    "POLLIN",
    "POLLOUT",
    "POLLRDNORM",
    "POLLWRNORM",
]

# <asm-generic/ioctl.h>: nr in bits 0-7, type 8-15, size 16-29, direction 30-31.
_IOC_NONE = 0
_IOC_WRITE = 1
_IOC_READ = 2
_IOC_SIZEMASK = (1 << 14) - 1


def _ioc(direction: int, nr: int, size: int) -> int:
    if not 0 <= size <= _IOC_SIZEMASK:
        raise ValueError(f"ioctl size must be 0..{_IOC_SIZEMASK}, not {size}")
    return (direction << 30) | (size << 16) | (ord("P") << 8) | nr


def ioc_dir(cmd: int) -> int:
    """_IOC_DIR(cmd)."""
    return (cmd >> 30) & 3


def ioc_type(cmd: int) -> int:
    """_IOC_TYPE(cmd)."""
    return (cmd >> 8) & 0xFF


def ioc_nr(cmd: int) -> int:
    """_IOC_NR(cmd)."""
    return cmd & 0xFF


def ioc_size(cmd: int) -> int:
    """_IOC_SIZE(cmd)."""
    return (cmd >> 16) & _IOC_SIZEMASK


IOCNR_GET_DEVICE_ID = 1
IOCNR_GET_PROTOCOLS = 2
IOCNR_SET_PROTOCOL = 3
IOCNR_HP_SET_CHANNEL = 4
IOCNR_GET_BUS_ADDRESS = 5
IOCNR_GET_VID_PID = 6
IOCNR_SOFT_RESET = 7

_TWO_INTS = 8


def LPIOC_GET_DEVICE_ID(length: int) -> int:
    """The GET_DEVICE_ID command for a buffer of ``length`` bytes."""
    return _ioc(_IOC_READ, IOCNR_GET_DEVICE_ID, length)


def LPIOC_GET_PROTOCOLS(length: int = _TWO_INTS) -> int:
    """The GET_PROTOCOLS command (two ints)."""
    return _ioc(_IOC_READ, IOCNR_GET_PROTOCOLS, length)


LPIOC_SET_PROTOCOL = _ioc(_IOC_WRITE, IOCNR_SET_PROTOCOL, 0)
LPIOC_HP_SET_CHANNEL = _ioc(_IOC_WRITE, IOCNR_HP_SET_CHANNEL, 0)


def LPIOC_GET_BUS_ADDRESS(length: int = _TWO_INTS) -> int:
    """The GET_BUS_ADDRESS command (two ints)."""
    return _ioc(_IOC_READ, IOCNR_GET_BUS_ADDRESS, length)


def LPIOC_GET_VID_PID(length: int = _TWO_INTS) -> int:
    """The GET_VID_PID command (two ints)."""
    return _ioc(_IOC_READ, IOCNR_GET_VID_PID, length)


LPIOC_SOFT_RESET = _ioc(_IOC_NONE, IOCNR_SOFT_RESET, 0)

# Old-style commands from <linux/lp.h>.
LPABORT = 0x0604
LPGETSTATUS = 0x060B

# Port status bits (GET_PORT_STATUS, as in the parallel port's status register).
LP_PERRORP = 0x08  # not error
LP_PSELECD = 0x10  # selected (on-line)
LP_POUTPA = 0x20  # paper empty

# <uapi/asm-generic/poll.h>
POLLIN = 0x0001
POLLOUT = 0x0004
POLLHUP = 0x0010
POLLRDNORM = 0x0040
POLLWRNORM = 0x0100

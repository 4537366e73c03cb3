"""Errors: what a file operation on ``/dev/usb/lpN`` returns, as ``OSError`` subclasses.

The driver paths return negative errno values, as the kernel's do; the file API turns them into
these exceptions, so ``exc.errno`` is the errno the kernel would give.
"""

from __future__ import annotations

import errno
import os

__all__ = [
    "AccessDenied",
    "BadFile",
    "Busy",
    "DeviceError",
    "EmulatorUsageError",
    "IOFailure",
    "Interrupted",
    "InvalidArgument",
    "NoDevice",
    "NoSpace",
    "NotATypewriter",
    "OutOfMemory",
    "Stalled",
    "TimedOut",
    "WouldBlock",
    "error_from_errno",
]


class DeviceError(OSError):
    """Root of the errors a driver call gives; raise a leaf (or use :func:`error_from_errno`).

    Attributes:
        errno: the kernel's errno for this failure (positive, as in ``OSError``).
        remedy: what the user can do about it, when we know (the pyusb transport sets it:
            the udev rule for EACCES, who holds the device for EBUSY).
        written: for a failed write through the pyusb transport, the bytes the device
            accepted before the failure (None elsewhere).

    """

    ERRNO: int = 0
    remedy: str | None = None
    written: int | None = None

    def __init__(self, detail: str = "", *, errno_value: int | None = None) -> None:
        code = self.ERRNO if errno_value is None else errno_value
        if code == 0:
            raise TypeError("DeviceError is abstract: raise a leaf or use error_from_errno()")
        message = os.strerror(code) if not detail else f"{os.strerror(code)}: {detail}"
        super().__init__(code, message)


class NoDevice(DeviceError):
    """ENODEV: the printer is gone (unplugged, or never there)."""

    ERRNO = errno.ENODEV


class Busy(DeviceError):
    """EBUSY: the printer is already open (usblp's open is exclusive)."""

    ERRNO = errno.EBUSY


class IOFailure(DeviceError):
    """EIO: a transfer failed."""

    ERRNO = errno.EIO


class WouldBlock(DeviceError):
    """EAGAIN: a nonblocking call would have waited."""

    ERRNO = errno.EAGAIN


class NoSpace(DeviceError):
    """ENOSPC: the printer is out of paper and LPABORT is set."""

    ERRNO = errno.ENOSPC


class InvalidArgument(DeviceError):
    """EINVAL: a bad argument, or read() on a unidirectional printer."""

    ERRNO = errno.EINVAL


class NotATypewriter(DeviceError):
    """ENOTTY: an ioctl command the driver does not know."""

    ERRNO = errno.ENOTTY


class Interrupted(DeviceError):
    """EINTR: the call was interrupted before it did anything."""

    ERRNO = errno.EINTR


class OutOfMemory(DeviceError):
    """ENOMEM: an allocation failed."""

    ERRNO = errno.ENOMEM


class BadFile(DeviceError):
    """EBADF: an operation on a file that was already closed."""

    ERRNO = errno.EBADF


class AccessDenied(DeviceError):
    """EACCES: no permission to open the USB device node (a udev rule is missing)."""

    ERRNO = errno.EACCES


class TimedOut(DeviceError):
    """ETIMEDOUT: the device did not finish the transfer in time (it may have taken part)."""

    ERRNO = errno.ETIMEDOUT


class Stalled(DeviceError):
    """EPIPE: the endpoint stalled (the device refused the request or the data)."""

    ERRNO = errno.EPIPE


_LEAVES: dict[int, type[DeviceError]] = {
    cls.ERRNO: cls
    for cls in (
        NoDevice,
        Busy,
        IOFailure,
        WouldBlock,
        NoSpace,
        InvalidArgument,
        NotATypewriter,
        Interrupted,
        OutOfMemory,
        BadFile,
        AccessDenied,
        TimedOut,
        Stalled,
    )
}


class _OtherDeviceError(DeviceError):
    """Any other errno (a raw USB error passed through, as SOFT_RESET does)."""


def error_from_errno(code: int, detail: str = "") -> DeviceError:
    """The exception for errno ``code`` (the sign is ignored: kernel paths return ``-code``)."""
    code = abs(code)
    leaf = _LEAVES.get(code)
    if leaf is not None:
        return leaf(detail)
    return _OtherDeviceError(detail, errno_value=code)


class EmulatorUsageError(ValueError):
    """A mistake in how the emulator itself is used (unknown strategy, foreign printer...)."""

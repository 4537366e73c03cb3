"""libusb's error codes, and how pyusb's libusb1 backend and Linux libusb report failures.

VirtualBackend raises exactly what pyusb over libusb over usbfs raises: the libusb code, its
message and errno (:data:`LIBUSB_ERRORS`), and for a kernel errno the code Linux libusb turns
it into (:data:`FROM_ERRNO`). The message is ``libusb_strerror``'s (English), which pyusb's
libusb1 backend uses whenever the library has it (libusb >= 1.0.16, so every libusb in use);
its own fallback table, ``_str_error_map``, words some differently ("Input/output error",
"Unknown error").
"""

from __future__ import annotations

import errno

import usb.core

__all__ = [
    "FROM_ERRNO",
    "LIBUSB_ERRORS",
    "LIBUSB_ERROR_ACCESS",
    "LIBUSB_ERROR_BUSY",
    "LIBUSB_ERROR_INTERRUPTED",
    "LIBUSB_ERROR_INVALID_PARAM",
    "LIBUSB_ERROR_IO",
    "LIBUSB_ERROR_NOT_FOUND",
    "LIBUSB_ERROR_NOT_SUPPORTED",
    "LIBUSB_ERROR_NO_DEVICE",
    "LIBUSB_ERROR_NO_MEM",
    "LIBUSB_ERROR_OTHER",
    "LIBUSB_ERROR_OVERFLOW",
    "LIBUSB_ERROR_PIPE",
    "LIBUSB_ERROR_TIMEOUT",
    "code_for_errno",
    "strerror",
    "usb_error",
]

# libusb error codes (libusb.h), as pyusb's libusb1 backend raises them.
LIBUSB_ERROR_IO = -1
LIBUSB_ERROR_INVALID_PARAM = -2
LIBUSB_ERROR_ACCESS = -3
LIBUSB_ERROR_NO_DEVICE = -4
LIBUSB_ERROR_NOT_FOUND = -5
LIBUSB_ERROR_BUSY = -6
LIBUSB_ERROR_TIMEOUT = -7
LIBUSB_ERROR_OVERFLOW = -8
LIBUSB_ERROR_PIPE = -9
LIBUSB_ERROR_INTERRUPTED = -10
LIBUSB_ERROR_NO_MEM = -11
LIBUSB_ERROR_NOT_SUPPORTED = -12
LIBUSB_ERROR_OTHER = -99

# code -> (message, errno): libusb_strerror()'s text (libusb/strerror.c, English) and pyusb's
# ``_libusb_errno``; tests check both against the real libusb and pyusb.
LIBUSB_ERRORS: dict[int, tuple[str, int | None]] = {
    LIBUSB_ERROR_IO: ("Input/Output Error", errno.EIO),
    LIBUSB_ERROR_INVALID_PARAM: ("Invalid parameter", errno.EINVAL),
    LIBUSB_ERROR_ACCESS: ("Access denied (insufficient permissions)", errno.EACCES),
    LIBUSB_ERROR_NO_DEVICE: ("No such device (it may have been disconnected)", errno.ENODEV),
    LIBUSB_ERROR_NOT_FOUND: ("Entity not found", errno.ENOENT),
    LIBUSB_ERROR_BUSY: ("Resource busy", errno.EBUSY),
    LIBUSB_ERROR_TIMEOUT: ("Operation timed out", errno.ETIMEDOUT),
    LIBUSB_ERROR_OVERFLOW: ("Overflow", errno.EOVERFLOW),
    LIBUSB_ERROR_PIPE: ("Pipe error", errno.EPIPE),
    LIBUSB_ERROR_INTERRUPTED: ("System call interrupted (perhaps due to signal)", errno.EINTR),
    LIBUSB_ERROR_NO_MEM: ("Insufficient memory", errno.ENOMEM),
    LIBUSB_ERROR_NOT_SUPPORTED: (
        "Operation not supported or unimplemented on this platform",
        errno.ENOSYS,
    ),
    LIBUSB_ERROR_OTHER: ("Other error", None),
}

# A kernel errno (a URB status or an ioctl failure) -> the libusb code Linux libusb reports.
# Anything else is LIBUSB_ERROR_IO, libusb's catch-all for a failed transfer.
FROM_ERRNO = {
    errno.EIO: LIBUSB_ERROR_IO,
    errno.EPROTO: LIBUSB_ERROR_IO,  # a protocol error on the wire: LIBUSB_TRANSFER_ERROR
    errno.EILSEQ: LIBUSB_ERROR_IO,
    errno.EINVAL: LIBUSB_ERROR_INVALID_PARAM,
    errno.EACCES: LIBUSB_ERROR_ACCESS,
    errno.EPERM: LIBUSB_ERROR_ACCESS,
    errno.ENODEV: LIBUSB_ERROR_NO_DEVICE,
    errno.ESHUTDOWN: LIBUSB_ERROR_NO_DEVICE,  # the host controller killed it: device gone
    errno.ENOENT: LIBUSB_ERROR_NOT_FOUND,
    errno.EBUSY: LIBUSB_ERROR_BUSY,
    errno.ETIMEDOUT: LIBUSB_ERROR_TIMEOUT,
    errno.EOVERFLOW: LIBUSB_ERROR_OVERFLOW,
    errno.EPIPE: LIBUSB_ERROR_PIPE,
    errno.EINTR: LIBUSB_ERROR_INTERRUPTED,
    errno.ENOMEM: LIBUSB_ERROR_NO_MEM,
}


def strerror(code: int) -> str:
    """``libusb_strerror(code)``: "Success" for 0, "Other error" for an unknown code."""
    if code == 0:
        return "Success"
    return LIBUSB_ERRORS.get(code, LIBUSB_ERRORS[LIBUSB_ERROR_OTHER])[0]


def usb_error(code: int) -> usb.core.USBError:
    """The exception pyusb's libusb1 backend raises for libusb error ``code``."""
    message, number = LIBUSB_ERRORS[code]
    cls = usb.core.USBTimeoutError if code == LIBUSB_ERROR_TIMEOUT else usb.core.USBError
    return cls(message, code, number)


def code_for_errno(number: int) -> int:
    """The libusb code Linux libusb reports for a kernel errno (LIBUSB_ERROR_IO if unknown)."""
    return FROM_ERRNO.get(number, LIBUSB_ERROR_IO)

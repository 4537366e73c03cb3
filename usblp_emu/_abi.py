"""The kernel's numbers: ioctl encoding, usblp's and lp's commands, printer-class requests.

Everything the driver, the devices, the tools and the tests say in the kernel's or the USB
spec's numbers is written here once: the ``_IOC`` encoding (``<asm-generic/ioctl.h>``), the
``LPIOC_*`` commands of usblp.c and the old-style ``LP*`` ones of ``<linux/lp.h>``, the port
status bits, the printer class's requests and bmRequestTypes (USB Printer Class 1.1), the class
codes and protocols usblp binds, the poll bits and the gadget's ``GADGET_*`` commands
(``<linux/usb/g_printer.h>``).

Rule: standard library only, and nothing that imports more. The rig's guest side, the
umockdev device (under Debian's own python3) and the tests import it as is;
``tests/usblp_emu/test_abi.py`` checks that importing it loads neither pyusb, rich nor cereggii.
"""

from __future__ import annotations

__all__ = [
    "GADGET_GET_PRINTER_STATUS",
    "GADGET_SET_PRINTER_STATUS",
    "IOCNR_GET_BUS_ADDRESS",
    "IOCNR_GET_DEVICE_ID",
    "IOCNR_GET_PROTOCOLS",
    "IOCNR_GET_VID_PID",
    "IOCNR_HP_SET_CHANNEL",
    "IOCNR_SET_PROTOCOL",
    "IOCNR_SOFT_RESET",
    "IOC_NONE",
    "IOC_READ",
    "IOC_WRITE",
    "LPABORT",
    "LPCHAR",
    "LPGETSTATUS",
    "LPIOC_GET_BUS_ADDRESS",
    "LPIOC_GET_DEVICE_ID",
    "LPIOC_GET_PROTOCOLS",
    "LPIOC_GET_VID_PID",
    "LPIOC_HP_SET_CHANNEL",
    "LPIOC_SET_PROTOCOL",
    "LPIOC_SOFT_RESET",
    "LP_ABORT",
    "LP_PERRORP",
    "LP_POUTPA",
    "LP_PSELECD",
    "POLLERR",
    "POLLHUP",
    "POLLIN",
    "POLLNVAL",
    "POLLOUT",
    "POLLRDNORM",
    "POLLWRNORM",
    "PRINTER_PROTOCOLS",
    "PROTOCOL_BIDIRECTIONAL",
    "PROTOCOL_IEEE1284_4",
    "PROTOCOL_UNIDIRECTIONAL",
    "REQ_GET_DEVICE_ID",
    "REQ_GET_PORT_STATUS",
    "REQ_HP_CHANNEL_CHANGE_REQUEST",
    "REQ_SOFT_RESET",
    "RT_CLASS_IN",
    "RT_CLASS_OUT",
    "RT_SOFT_RESET_USBLP",
    "USB_CLASS_PRINTER",
    "USB_CLASS_VENDOR_SPEC",
    "USB_DIR_IN",
    "USB_DIR_OUT",
    "USB_RECIP_INTERFACE",
    "USB_RECIP_OTHER",
    "USB_SUBCLASS_PRINTER",
    "USB_TYPE_CLASS",
    "USB_TYPE_VENDOR",
    "ioc",
    "ioc_dir",
    "ioc_nr",
    "ioc_size",
    "ioc_type",
]

# -- <asm-generic/ioctl.h>: nr in bits 0-7, type 8-15, size 16-29, direction 30-31 ----------------

IOC_NONE = 0
IOC_WRITE = 1
IOC_READ = 2
_IOC_SIZEMASK = (1 << 14) - 1


def ioc(direction: int, kind: str, nr: int, size: int) -> int:
    """``_IOC(dir, type, nr, size)``: an ioctl command number.

    Raises:
        ValueError: ``size`` does not fit the 14 bits the encoding gives it.

    """
    if not 0 <= size <= _IOC_SIZEMASK:
        raise ValueError(f"ioctl size must be 0..{_IOC_SIZEMASK}, not {size}")
    return (direction << 30) | (size << 16) | (ord(kind) << 8) | nr


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


# -- usblp.c's new-style commands: type 'P' -------------------------------------------------------

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
    return ioc(IOC_READ, "P", IOCNR_GET_DEVICE_ID, length)


def LPIOC_GET_PROTOCOLS(length: int = _TWO_INTS) -> int:
    """The GET_PROTOCOLS command (two ints)."""
    return ioc(IOC_READ, "P", IOCNR_GET_PROTOCOLS, length)


LPIOC_SET_PROTOCOL = ioc(IOC_WRITE, "P", IOCNR_SET_PROTOCOL, 0)
LPIOC_HP_SET_CHANNEL = ioc(IOC_WRITE, "P", IOCNR_HP_SET_CHANNEL, 0)


def LPIOC_GET_BUS_ADDRESS(length: int = _TWO_INTS) -> int:
    """The GET_BUS_ADDRESS command (two ints)."""
    return ioc(IOC_READ, "P", IOCNR_GET_BUS_ADDRESS, length)


def LPIOC_GET_VID_PID(length: int = _TWO_INTS) -> int:
    """The GET_VID_PID command (two ints)."""
    return ioc(IOC_READ, "P", IOCNR_GET_VID_PID, length)


LPIOC_SOFT_RESET = ioc(IOC_NONE, "P", IOCNR_SOFT_RESET, 0)

# -- <linux/lp.h>: the old-style commands usblp takes, and one it does not ------------------------

LPCHAR = 0x0601  # lp.c's, not usblp's: usblp answers ENOTTY
LPABORT = 0x0604
LPGETSTATUS = 0x060B
LP_ABORT = 0x0040  # the flag LPABORT sets: the only bit usblp keeps in ``flags``

# Port status bits (GET_PORT_STATUS's byte, as in the parallel port's status register).
LP_PERRORP = 0x08  # not error
LP_PSELECD = 0x10  # selected (on-line)
LP_POUTPA = 0x20  # paper empty

# -- USB: the printer class (USB Printer Class 1.1, and what usblp.c sends) -----------------------

USB_CLASS_PRINTER = 7
USB_CLASS_VENDOR_SPEC = 0xFF  # what QUIRK_BAD_CLASS printers report instead
USB_SUBCLASS_PRINTER = 1
PROTOCOL_UNIDIRECTIONAL = 1
PROTOCOL_BIDIRECTIONAL = 2
PROTOCOL_IEEE1284_4 = 3
PRINTER_PROTOCOLS = (PROTOCOL_UNIDIRECTIONAL, PROTOCOL_BIDIRECTIONAL, PROTOCOL_IEEE1284_4)

# bmRequestType pieces (<linux/usb/ch9.h>).
USB_DIR_OUT = 0x00
USB_DIR_IN = 0x80
USB_TYPE_CLASS = 0x20
USB_TYPE_VENDOR = 0x40
USB_RECIP_INTERFACE = 0x01
USB_RECIP_OTHER = 0x03

RT_CLASS_IN = USB_DIR_IN | USB_TYPE_CLASS | USB_RECIP_INTERFACE  # 0xA1
RT_CLASS_OUT = USB_DIR_OUT | USB_TYPE_CLASS | USB_RECIP_INTERFACE  # 0x21: SOFT_RESET per spec
RT_SOFT_RESET_USBLP = USB_DIR_OUT | USB_TYPE_CLASS | USB_RECIP_OTHER  # 0x23: as usblp sends it

REQ_GET_DEVICE_ID = 0x00  # wIndex (interface << 8) | alt setting
REQ_GET_PORT_STATUS = 0x01  # wIndex interface, 1 byte
REQ_SOFT_RESET = 0x02
REQ_HP_CHANNEL_CHANGE_REQUEST = 0x00  # vendor request, HP printers only

# -- <uapi/asm-generic/poll.h> --------------------------------------------------------------------

POLLIN = 0x0001
POLLOUT = 0x0004
POLLERR = 0x0008
POLLHUP = 0x0010
POLLNVAL = 0x0020
POLLRDNORM = 0x0040
POLLWRNORM = 0x0100

# -- <linux/usb/g_printer.h>: the gadget side's status byte, used by the kernel rig ---------------

GADGET_GET_PRINTER_STATUS = ioc(IOC_READ, "g", 0x21, 1)
GADGET_SET_PRINTER_STATUS = ioc(IOC_READ | IOC_WRITE, "g", 0x22, 1)

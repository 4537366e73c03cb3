"""usblp_emu: the usblp printer driver's object lifetime, emulated.

A USB core, the usblp driver's real paths and five interchangeable lifetime strategies, on an
emulated heap that reports use-after-free, double free and leaks; virtual printers to plug
and unplug from any thread, and real printers through pyusb (or virtual ones through
:class:`VirtualBackend`, a pure-Python pyusb backend, and :func:`virtual_usb`, which makes
them what unchanged pyusb programs find)::

    from usblp_emu import Host, VirtualPrinter
    host = Host(strategy="hazard")
    minor = host.plug(VirtualPrinter())
    with host.open(minor) as f:
        f.write(b"hello")

The layers, lowest first (``docs/architecture.md`` draws them): ``_abi`` (the kernel's numbers,
standard library only), ``_errors`` and ``_ieee1284`` (what every layer says); ``_core`` (the
emulated USB core, URBs, descriptors); ``_usblp`` (the driver, its id and quirk tables, the
lifetime strategies); ``_host`` (the core, the driver and the open files, assembled);
``_virtual`` (VirtualPrinter and VirtualBackend); ``_pyusb`` (real printers through pyusb);
``_check`` (race scenarios, stress); ``_bench``; ``_cli``. ``tests/usblp_emu/test_layers.py``
keeps every import pointing down.

The public names below load on first use, so that importing ``usblp_emu._abi`` (the tools do,
some under an interpreter without this project's dependencies) pulls in neither pyusb, rich
nor cereggii.
"""

import importlib as _importlib
import typing as _typing

# Each public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "IOCNR_GET_BUS_ADDRESS": "usblp_emu._abi",
    "IOCNR_GET_DEVICE_ID": "usblp_emu._abi",
    "IOCNR_GET_PROTOCOLS": "usblp_emu._abi",
    "IOCNR_GET_VID_PID": "usblp_emu._abi",
    "IOCNR_HP_SET_CHANNEL": "usblp_emu._abi",
    "IOCNR_SET_PROTOCOL": "usblp_emu._abi",
    "IOCNR_SOFT_RESET": "usblp_emu._abi",
    "LP_PERRORP": "usblp_emu._abi",
    "LP_POUTPA": "usblp_emu._abi",
    "LP_PSELECD": "usblp_emu._abi",
    "LPABORT": "usblp_emu._abi",
    "LPGETSTATUS": "usblp_emu._abi",
    "LPIOC_GET_BUS_ADDRESS": "usblp_emu._abi",
    "LPIOC_GET_DEVICE_ID": "usblp_emu._abi",
    "LPIOC_GET_PROTOCOLS": "usblp_emu._abi",
    "LPIOC_GET_VID_PID": "usblp_emu._abi",
    "LPIOC_HP_SET_CHANNEL": "usblp_emu._abi",
    "LPIOC_SET_PROTOCOL": "usblp_emu._abi",
    "LPIOC_SOFT_RESET": "usblp_emu._abi",
    "POLLHUP": "usblp_emu._abi",
    "POLLIN": "usblp_emu._abi",
    "POLLOUT": "usblp_emu._abi",
    "POLLRDNORM": "usblp_emu._abi",
    "POLLWRNORM": "usblp_emu._abi",
    "AccessDenied": "usblp_emu._errors",
    "BadFile": "usblp_emu._errors",
    "Busy": "usblp_emu._errors",
    "DeviceError": "usblp_emu._errors",
    "EmulatorUsageError": "usblp_emu._errors",
    "Interrupted": "usblp_emu._errors",
    "InvalidArgument": "usblp_emu._errors",
    "IOFailure": "usblp_emu._errors",
    "NoDevice": "usblp_emu._errors",
    "NoSpace": "usblp_emu._errors",
    "NotATypewriter": "usblp_emu._errors",
    "OutOfMemory": "usblp_emu._errors",
    "Stalled": "usblp_emu._errors",
    "TimedOut": "usblp_emu._errors",
    "WouldBlock": "usblp_emu._errors",
    "error_from_errno": "usblp_emu._errors",
    "File": "usblp_emu._host",
    "Host": "usblp_emu._host",
    "DeviceId": "usblp_emu._ieee1284",
    "MalformedDeviceId": "usblp_emu._ieee1284",
    "PortStatus": "usblp_emu._ieee1284",
    "cups_uri": "usblp_emu._ieee1284",
    "parse_device_id": "usblp_emu._ieee1284",
    "HotplugBridge": "usblp_emu._pyusb._hotplug",
    "PrinterEvent": "usblp_emu._pyusb._hotplug",
    "PrinterMonitor": "usblp_emu._pyusb._hotplug",
    "PyusbModel": "usblp_emu._pyusb._model",
    "NoUsbBackend": "usblp_emu._pyusb._transport",
    "PrinterInterface": "usblp_emu._pyusb._transport",
    "PyusbPrinter": "usblp_emu._pyusb._transport",
    "default_backend": "usblp_emu._pyusb._transport",
    "find_printers": "usblp_emu._pyusb._transport",
    "CORRECT_STRATEGIES": "usblp_emu._usblp._strategies",
    "STRATEGIES": "usblp_emu._usblp._strategies",
    "VirtualBackend": "usblp_emu._virtual._backend",
    "BrotherQLStatus": "usblp_emu._virtual._firmware",
    "DymoStatus": "usblp_emu._virtual._firmware",
    "EscPosStatus": "usblp_emu._virtual._firmware",
    "Firmware": "usblp_emu._virtual._firmware",
    "PaperState": "usblp_emu._virtual._firmware",
    "PjlStatus": "usblp_emu._virtual._firmware",
    "virtual_usb": "usblp_emu._virtual._install",
    "ExtraInterface": "usblp_emu._virtual._layout",
    "DEFAULT_DEVICE_ID": "usblp_emu._virtual._printer",
    "Fault": "usblp_emu._virtual._printer",
    "VirtualPrinter": "usblp_emu._virtual._printer",
    "encode_device_id": "usblp_emu._virtual._printer",
}

__all__ = sorted(_EXPORTS)  # noqa: PLE0605 - the names of the table above

if _typing.TYPE_CHECKING:
    from usblp_emu._abi import IOCNR_GET_BUS_ADDRESS as IOCNR_GET_BUS_ADDRESS
    from usblp_emu._abi import IOCNR_GET_DEVICE_ID as IOCNR_GET_DEVICE_ID
    from usblp_emu._abi import IOCNR_GET_PROTOCOLS as IOCNR_GET_PROTOCOLS
    from usblp_emu._abi import IOCNR_GET_VID_PID as IOCNR_GET_VID_PID
    from usblp_emu._abi import IOCNR_HP_SET_CHANNEL as IOCNR_HP_SET_CHANNEL
    from usblp_emu._abi import IOCNR_SET_PROTOCOL as IOCNR_SET_PROTOCOL
    from usblp_emu._abi import IOCNR_SOFT_RESET as IOCNR_SOFT_RESET
    from usblp_emu._abi import LP_PERRORP as LP_PERRORP
    from usblp_emu._abi import LP_POUTPA as LP_POUTPA
    from usblp_emu._abi import LP_PSELECD as LP_PSELECD
    from usblp_emu._abi import LPABORT as LPABORT
    from usblp_emu._abi import LPGETSTATUS as LPGETSTATUS
    from usblp_emu._abi import LPIOC_GET_BUS_ADDRESS as LPIOC_GET_BUS_ADDRESS
    from usblp_emu._abi import LPIOC_GET_DEVICE_ID as LPIOC_GET_DEVICE_ID
    from usblp_emu._abi import LPIOC_GET_PROTOCOLS as LPIOC_GET_PROTOCOLS
    from usblp_emu._abi import LPIOC_GET_VID_PID as LPIOC_GET_VID_PID
    from usblp_emu._abi import LPIOC_HP_SET_CHANNEL as LPIOC_HP_SET_CHANNEL
    from usblp_emu._abi import LPIOC_SET_PROTOCOL as LPIOC_SET_PROTOCOL
    from usblp_emu._abi import LPIOC_SOFT_RESET as LPIOC_SOFT_RESET
    from usblp_emu._abi import POLLHUP as POLLHUP
    from usblp_emu._abi import POLLIN as POLLIN
    from usblp_emu._abi import POLLOUT as POLLOUT
    from usblp_emu._abi import POLLRDNORM as POLLRDNORM
    from usblp_emu._abi import POLLWRNORM as POLLWRNORM
    from usblp_emu._errors import AccessDenied as AccessDenied
    from usblp_emu._errors import BadFile as BadFile
    from usblp_emu._errors import Busy as Busy
    from usblp_emu._errors import DeviceError as DeviceError
    from usblp_emu._errors import EmulatorUsageError as EmulatorUsageError
    from usblp_emu._errors import Interrupted as Interrupted
    from usblp_emu._errors import InvalidArgument as InvalidArgument
    from usblp_emu._errors import IOFailure as IOFailure
    from usblp_emu._errors import NoDevice as NoDevice
    from usblp_emu._errors import NoSpace as NoSpace
    from usblp_emu._errors import NotATypewriter as NotATypewriter
    from usblp_emu._errors import OutOfMemory as OutOfMemory
    from usblp_emu._errors import Stalled as Stalled
    from usblp_emu._errors import TimedOut as TimedOut
    from usblp_emu._errors import WouldBlock as WouldBlock
    from usblp_emu._errors import error_from_errno as error_from_errno
    from usblp_emu._host import File as File
    from usblp_emu._host import Host as Host
    from usblp_emu._ieee1284 import DeviceId as DeviceId
    from usblp_emu._ieee1284 import MalformedDeviceId as MalformedDeviceId
    from usblp_emu._ieee1284 import PortStatus as PortStatus
    from usblp_emu._ieee1284 import cups_uri as cups_uri
    from usblp_emu._ieee1284 import parse_device_id as parse_device_id
    from usblp_emu._pyusb._hotplug import HotplugBridge as HotplugBridge
    from usblp_emu._pyusb._hotplug import PrinterEvent as PrinterEvent
    from usblp_emu._pyusb._hotplug import PrinterMonitor as PrinterMonitor
    from usblp_emu._pyusb._model import PyusbModel as PyusbModel
    from usblp_emu._pyusb._transport import NoUsbBackend as NoUsbBackend
    from usblp_emu._pyusb._transport import PrinterInterface as PrinterInterface
    from usblp_emu._pyusb._transport import PyusbPrinter as PyusbPrinter
    from usblp_emu._pyusb._transport import default_backend as default_backend
    from usblp_emu._pyusb._transport import find_printers as find_printers
    from usblp_emu._usblp._strategies import CORRECT_STRATEGIES as CORRECT_STRATEGIES
    from usblp_emu._usblp._strategies import STRATEGIES as STRATEGIES
    from usblp_emu._virtual._backend import VirtualBackend as VirtualBackend
    from usblp_emu._virtual._firmware import BrotherQLStatus as BrotherQLStatus
    from usblp_emu._virtual._firmware import DymoStatus as DymoStatus
    from usblp_emu._virtual._firmware import EscPosStatus as EscPosStatus
    from usblp_emu._virtual._firmware import Firmware as Firmware
    from usblp_emu._virtual._firmware import PaperState as PaperState
    from usblp_emu._virtual._firmware import PjlStatus as PjlStatus
    from usblp_emu._virtual._install import virtual_usb as virtual_usb
    from usblp_emu._virtual._layout import ExtraInterface as ExtraInterface
    from usblp_emu._virtual._printer import DEFAULT_DEVICE_ID as DEFAULT_DEVICE_ID
    from usblp_emu._virtual._printer import Fault as Fault
    from usblp_emu._virtual._printer import VirtualPrinter as VirtualPrinter
    from usblp_emu._virtual._printer import encode_device_id as encode_device_id
else:

    def __getattr__(name: str) -> object:
        """Load a public name from its module on first use (PEP 562)."""
        module = _EXPORTS.get(name)
        if module is None:
            raise AttributeError(f"module 'usblp_emu' has no attribute {name!r}")
        value = getattr(_importlib.import_module(module), name)
        globals()[name] = value  # later lookups find it without coming here
        return value

    def __dir__() -> list[str]:
        """The module's names, the public ones included before they are loaded."""
        return sorted({*globals(), *__all__})

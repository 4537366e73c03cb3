"""PyusbHost: a Host whose virtual printers are reached through pyusb over a VirtualBackend.

The conformance suite runs over it as well as over plain Hosts: the printer is the same
VirtualPrinter, but every transfer goes VirtualPrinter -> VirtualBackend -> pyusb ->
PyusbPrinter -> PyusbModel -> the emulated USB core -> usblp, the path a real printer takes.
Unplugging removes the printer from the virtual bus first (so pyusb sees ENODEV) and then
runs the hub's disconnect, as the kernel does.
"""

from __future__ import annotations

from typing import Any

from hazard import Lock
from usblp_emu import (
    EmulatorUsageError,
    Host,
    NoDevice,
    PyusbModel,
    VirtualBackend,
    VirtualPrinter,
    find_printers,
)


class PyusbHost(Host):
    """A Host that takes VirtualPrinters but drives them through pyusb."""

    def __init__(self, strategy: str = "static-mutex", **kwargs: Any) -> None:
        super().__init__(strategy, **kwargs)
        self.backend = VirtualBackend()
        self._models_lock = Lock("pyusb-host")
        self._models: dict[int, tuple[VirtualPrinter, PyusbModel]] = {}  # by id(printer)
        self._unbound: list[VirtualPrinter] = []

    def plug(self, printer: Any) -> int:
        if not isinstance(printer, VirtualPrinter):
            return super().plug(printer)
        with self._models_lock:
            if id(printer) in self._models:
                raise EmulatorUsageError(f"{printer!r} is already plugged into this host")
        bus, address = self.backend.plug(printer)
        found = [p for p in find_printers(self.backend) if (p.bus, p.address) == (bus, address)]
        if not found:  # not a printer to pyusb (another interface class): usblp won't bind
            with self._models_lock:
                self._unbound.append(printer)  # plugged in, unbound, as on a real bus
            raise NoDevice(f"usblp did not bind to {printer!r}")
        model = PyusbModel(found[0])
        with self._models_lock:
            self._models[id(printer)] = (printer, model)
        return super().plug(model)

    def _model(self, printer: Any) -> Any:
        with self._models_lock:
            entry = self._models.get(id(printer))
        return printer if entry is None else entry[1]

    def unplug(self, printer: Any) -> bool:
        with self._models_lock:
            entry = self._models.pop(id(printer), None)
        if entry is None:
            return super().unplug(printer)
        self.backend.unplug(printer)  # the device leaves the bus: pyusb calls fail now
        return super().unplug(entry[1])

    def minor_of(self, printer: Any) -> int | None:
        return super().minor_of(self._model(printer))

    def suspend(self, printer: Any) -> None:
        super().suspend(self._model(printer))

    def resume(self, printer: Any) -> None:
        super().resume(self._model(printer))

    def close(self) -> None:
        with self._models_lock:
            printers = [p for p, _ in self._models.values()] + self._unbound
            self._models.clear()
            self._unbound.clear()
        for printer in printers:
            if printer.plugged:
                self.backend.unplug(printer)
        super().close()

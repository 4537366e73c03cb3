"""Hotplug for real printers: notice arrivals and departures, probe and disconnect them.

pyusb has no hotplug, so :class:`PrinterMonitor` polls the bus (what CUPS does), and when
pyudev is installed it also listens to the kernel's USB uevents so a change is seen at once
rather than at the next poll. :class:`HotplugBridge` feeds what the monitor sees into a
:class:`~usblp_emu.Host`: an arrival is wrapped in a :class:`PyusbModel` and probed by usblp, a
departure runs usblp's disconnect path. A printer that comes back is matched by its serial
number (its bus address changes on every plug).

Rules and invariants:
- A monitor is driven by one thread (``poll`` / ``events``); the bridge's table of plugged
  printers is guarded by a :class:`hazard.Lock` because a transfer failing on a worker thread
  may report a departure (``on_gone``) before the next poll does; whichever comes first
  unplugs, the other finds nothing to do.
- A device is identified by (bus, address): the kernel never gives a live address to two
  devices, and a replugged device gets a new one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import usb.backend

from hazard import Lock, monotonic
from usblp_emu._errors import DeviceError, EmulatorUsageError
from usblp_emu._pyusb._model import PyusbModel
from usblp_emu._pyusb._transport import PyusbPrinter, find_printers

__all__ = ["HotplugBridge", "PrinterEvent", "PrinterMonitor"]

Key = tuple[int, int]


@dataclass(frozen=True)
class PrinterEvent:
    """A printer arrived or left.

    Attributes:
        kind: "arrival" or "departure".
        key: (bus, address).
        printer: the printer (for a departure: as it was when it arrived).
        returning: an arrival whose serial number was seen before.
        at: when it was noticed (monotonic seconds).

    """

    kind: Literal["arrival", "departure"]
    key: Key
    printer: PyusbPrinter
    returning: bool = False
    at: float = 0.0


def _udev_monitor() -> Any | None:
    """A pyudev netlink monitor on the usb subsystem, or None where there is none."""
    try:
        import pyudev  # noqa: PLC0415 - optional
    except ImportError:
        return None
    try:
        monitor = pyudev.Monitor.from_netlink(pyudev.Context())
        monitor.filter_by("usb")
        monitor.start()
    except (OSError, ValueError):
        return None  # no netlink here (a container, no udev)
    return monitor


class PrinterMonitor:
    """Reports printers arriving and leaving, by polling the bus (and udev when present).

    Args:
        backend: the pyusb backend (default: libusb, see ``default_backend``).
        interval: seconds between polls.
        udev: listen to udev events too: None = when pyudev is installed.

    """

    def __init__(
        self,
        backend: usb.backend.IBackend | None = None,
        *,
        interval: float = 1.0,
        udev: bool | None = None,
    ) -> None:
        if interval <= 0:
            raise EmulatorUsageError(f"interval must be > 0 seconds, not {interval}")
        self.backend = backend
        self.interval = interval
        self._known: dict[Key, PyusbPrinter] = {}
        self._serials: set[str] = set()
        self._udev = _udev_monitor() if udev is not False else None
        if udev and self._udev is None:
            raise EmulatorUsageError("udev events asked for, but pyudev or netlink is missing")

    @property
    def source(self) -> str:
        """How changes are noticed: ``"poll"`` or ``"poll+udev"``."""
        return "poll+udev" if self._udev is not None else "poll"

    def poll(self) -> list[PrinterEvent]:
        """Scan the bus once: the departures, then the arrivals since the last scan."""
        now = monotonic()
        found = {(p.bus, p.address): p for p in find_printers(self.backend)}
        events = [
            PrinterEvent("departure", key, printer, at=now)
            for key, printer in self._known.items()
            if key not in found
        ]
        for key, printer in found.items():
            if key in self._known:
                continue
            serial = printer.serial
            events.append(
                PrinterEvent("arrival", key, printer, returning=serial in self._serials, at=now)
            )
            if serial:
                self._serials.add(serial)
        self._known = {key: self._known.get(key, printer) for key, printer in found.items()}
        return events

    def events(self, stop: threading.Event | None = None) -> Iterator[PrinterEvent]:
        """Poll for ever (or until ``stop`` is set), yielding each change as it is seen."""
        stop = stop if stop is not None else threading.Event()
        while not stop.is_set():
            yield from self.poll()
            self._wait(stop)

    def _wait(self, stop: threading.Event) -> None:
        if self._udev is None:
            stop.wait(self.interval)
            return
        # A uevent ends the wait early; drain the burst (add/bind/... come together).
        deadline = monotonic() + self.interval
        while not stop.is_set() and monotonic() < deadline:
            if self._udev.poll(timeout=min(0.2, self.interval)) is not None:
                while self._udev.poll(timeout=0.05) is not None:
                    pass
                return


class HotplugBridge:
    """Plugs arriving printers into a Host (usblp probes them) and unplugs departing ones.

    Args:
        host: the host whose usblp driver binds to them.
        on_change: called after each plug or unplug with the event and the minor (None when
            usblp did not bind or the printer left), e.g. to update a table.

    """

    def __init__(
        self,
        host: Any,
        on_change: Callable[[PrinterEvent, int | None, str | None], None] | None = None,
    ) -> None:
        self.host = host
        self.on_change = on_change
        self._lock = Lock("hotplug-bridge")
        self._models: dict[Key, PyusbModel] = {}  # guarded by _lock

    def handle(self, event: PrinterEvent) -> int | None:
        """Apply one event: plug and probe, or unplug. Returns the minor on an arrival."""
        if event.kind == "arrival":
            return self._arrive(event)
        self._leave(event.key)
        if self.on_change is not None:
            self.on_change(event, None, None)
        return None

    def _arrive(self, event: PrinterEvent) -> int | None:
        model = PyusbModel(event.printer, on_gone=lambda m: self._leave(event.key))
        minor: int | None = None
        problem: str | None = None
        with self._lock:
            # Before plug: a transfer may fail (on_gone) as soon as usblp submits one.
            self._models[event.key] = model
        try:
            minor = self.host.plug(model)
        except DeviceError as exc:
            # Not bound (NoDevice: stays plugged, unplugged on departure) or not taken at
            # all (AccessDenied, Busy: unplug below finds nothing to do).
            problem = str(exc) + (f" ({exc.remedy})" if exc.remedy else "")
        if self.on_change is not None:
            self.on_change(event, minor, problem)
        return minor

    def _leave(self, key: Key) -> None:
        with self._lock:
            model = self._models.pop(key, None)
        if model is not None:
            self.host.unplug(model)

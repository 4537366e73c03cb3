"""The real-printer hotplug path, over VirtualBackend: monitor, bridge, PyusbModel.

A printer arriving on the (virtual) bus is probed by usblp through pyusb; leaving runs
usblp's disconnect; a returning one is recognised by its serial; a transfer that fails
because the printer left unplugs it before the next poll does. Every host is closed and its
heap checked: nothing may leak on any of these paths.
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable

import pytest

from usblp_emu import (
    DeviceError,
    EmulatorUsageError,
    Host,
    HotplugBridge,
    IOFailure,
    NoDevice,
    PrinterMonitor,
    PyusbModel,
    VirtualBackend,
    VirtualPrinter,
    find_printers,
)


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.002)


@pytest.fixture
def host():
    h = Host("hazard")
    yield h
    h.close()
    h.check()


def test_monitor_reports_arrival_departure_and_return_by_serial():
    printer = VirtualPrinter(serial="SN-A")
    backend = VirtualBackend()
    monitor = PrinterMonitor(backend, interval=0.01)
    assert monitor.poll() == []
    first = backend.plug(printer)
    [arrival] = monitor.poll()
    assert (arrival.kind, arrival.key, arrival.returning) == ("arrival", first, False)
    assert monitor.poll() == []  # nothing changed
    backend.unplug(printer)
    [departure] = monitor.poll()
    assert (departure.kind, departure.key) == ("departure", first)
    second = backend.plug(printer)
    [back] = monitor.poll()
    assert back.returning and back.key == second != first  # a new address every plug


def test_monitor_rejects_a_bad_interval():
    with pytest.raises(EmulatorUsageError):
        PrinterMonitor(VirtualBackend(), interval=0)


def test_bridge_probes_arrivals_and_disconnects_departures(host):
    printer = VirtualPrinter(serial="SN-B")
    backend = VirtualBackend()
    monitor = PrinterMonitor(backend, interval=0.01)
    seen = []
    bridge = HotplugBridge(host, lambda event, minor, problem: seen.append((event.kind, minor)))
    backend.plug(printer)
    for event in monitor.poll():
        bridge.handle(event)
    assert seen == [("arrival", 0)]
    with host.open(0) as f:
        assert f.write(b"hello through pyusb") == 19
        wait_until(lambda: printer.received == b"hello through pyusb", "the bytes")
        backend.unplug(printer)
        for event in monitor.poll():
            bridge.handle(event)
        assert seen[-1] == ("departure", None)
        with pytest.raises(NoDevice):
            f.write(b"more")
    with pytest.raises(NoDevice):
        host.open(0)


def test_a_failed_transfer_unplugs_before_the_monitor_notices(host):
    """The writer blocked on a printer that leaves is woken by the transfer's failure."""
    printer = VirtualPrinter(serial="SN-C")
    printer.set_paper_out()  # the write URB stays pending
    backend = VirtualBackend()
    backend.plug(printer)
    [pp] = find_printers(backend)
    gone = threading.Event()

    def on_gone(model):
        gone.set()
        threading.Thread(target=host.unplug, args=(model,)).start()

    minor = host.plug(PyusbModel(pp, on_gone=on_gone))
    f = host.open(minor)
    outcome: list[object] = []
    writer = threading.Thread(target=lambda: _capture(outcome, f.write, bytes(4096)))
    writer.start()
    time.sleep(0.1)
    backend.unplug(printer)
    assert gone.wait(5.0)
    writer.join(5.0)
    assert not writer.is_alive()
    [result] = outcome
    assert isinstance(result, DeviceError)
    assert result.errno in (errno.EIO, errno.ENODEV)  # usblp: EIO for the dead URB
    assert isinstance(result, (IOFailure, NoDevice))
    f.close()


def _capture(outcome: list[object], fn: Callable[..., object], *args: object) -> None:
    try:
        outcome.append(fn(*args))
    except DeviceError as exc:
        outcome.append(exc)


def test_plugging_a_busy_device_gives_a_typed_error_with_a_remedy(host):
    printer = VirtualPrinter(serial="SN-D")
    backend = VirtualBackend()
    backend.plug(printer)
    [first] = find_printers(backend)
    [second] = find_printers(backend)
    first.open()
    try:
        with pytest.raises(DeviceError) as info:
            host.plug(PyusbModel(second))
        assert info.value.errno == errno.EBUSY
        assert info.value.remedy
    finally:
        first.close()

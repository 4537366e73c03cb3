"""virtual_usb(): pyusb's own libusb1 backend over VirtualLibusb, and transfers as libusb's.

The same operations run through VirtualBackend directly and through pyusb's libusb1 backend
over VirtualLibusb must raise the same errors (code, errno, libusb_strerror's text): the two
ways a program reaches a virtual printer cannot drift apart.
"""

from __future__ import annotations

import ctypes
import errno
import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import usb.core
import usb.util
from usb.backend import libusb1

from hazard import monotonic
from hazard.testing import explore
from usblp_emu import EmulatorUsageError, ExtraInterface, Host, VirtualPrinter, virtual_usb
from usblp_emu._virtual import _libusb
from usblp_emu._virtual._backend import VirtualBackend

OUT, IN = 0x01, 0x82


def find_printer(**kwargs: Any) -> usb.core.Device:
    device = usb.core.find(idProduct=0x0104, **kwargs)
    assert device is not None
    return device


# -- the installation --------------------------------------------------------------------------


def test_find_without_a_backend_sees_the_printers_through_pyusbs_libusb1_backend():
    before = (libusb1._lib, libusb1._lib_object)
    with virtual_usb([VirtualPrinter(serial="A"), VirtualPrinter(serial="B")]) as bus:
        found = list(usb.core.find(find_all=True, bDeviceClass=0))
        assert [d.serial_number for d in found] == ["A", "B"]
        assert found[0].backend.__module__ == "usb.backend.libusb1"  # pyusb's own, no lie
        assert isinstance(found[0].backend, libusb1._LibUSB)
        assert libusb1.get_backend() is found[0].backend  # pyusb's lookup, not a new find
        assert bus.printers[0].serial == "A"
    assert (libusb1._lib, libusb1._lib_object) == before  # restored
    assert bus.printers == ()  # unplugged on exit


def test_nested_installs_restore_in_order():
    with virtual_usb([VirtualPrinter(serial="OUTER")]):
        outer = libusb1._lib_object
        with virtual_usb([VirtualPrinter(serial="INNER")]):
            assert find_printer().serial_number == "INNER"
        assert libusb1._lib_object is outer
        assert find_printer().serial_number == "OUTER"


def test_devices_kept_past_the_exit_are_retired_not_handed_to_another_libusb():
    with virtual_usb([VirtualPrinter()]):
        kept = find_printer()
        kept_config = kept.get_active_configuration()
        wrapper = kept._ctx.dev
    assert wrapper._finalize_called  # a later real libusb never sees its fake pointer
    del kept, kept_config, wrapper
    gc.collect()


def test_struct_layouts_are_libusb_h_as_pyusb_reads_them():
    pairs = [
        (_libusb.EndpointDescriptor, libusb1._libusb_endpoint_descriptor),
        (_libusb.InterfaceDescriptor, libusb1._libusb_interface_descriptor),
        (_libusb.Interface, libusb1._libusb_interface),
        (_libusb.ConfigDescriptor, libusb1._libusb_config_descriptor),
        (_libusb.DeviceDescriptorStruct, libusb1._libusb_device_descriptor),
    ]
    for ours, pyusbs in pairs:
        assert ctypes.sizeof(ours) == ctypes.sizeof(pyusbs)
        assert [f[0] for f in ours._fields_] == [f[0] for f in pyusbs._fields_]
        for name, *_ in ours._fields_:
            assert getattr(ours, name).offset == getattr(pyusbs, name).offset, name


# -- the same errors both ways ---------------------------------------------------------------


@contextmanager
def direct(printer: VirtualPrinter) -> Iterator[usb.core.Device]:
    with VirtualBackend([printer]) as bus:
        yield usb.core.find(backend=bus, idProduct=printer.descriptor.product_id)


def outcome(action: Callable[[], object]) -> Any:
    try:
        return ("ok", action())
    except usb.core.USBError as exc:
        return (type(exc).__name__, exc.backend_error_code, exc.errno, exc.strerror)


def scenario(dev: usb.core.Device, printer: VirtualPrinter) -> list[Any]:
    """A run of failures and successes, as a program meets them."""
    results = [outcome(lambda: usb.util.claim_interface(dev, 0))]  # usblp bound: EBUSY
    results.append(outcome(dev.set_configuration))  # EBUSY too
    results.append(outcome(lambda: dev.detach_kernel_driver(0)))
    results.append(outcome(lambda: dev.detach_kernel_driver(0)))  # nothing bound: NOT_FOUND
    results.append(outcome(lambda: dev.set_interface_altsetting(0, 1)))
    results.append(outcome(lambda: dev.write(OUT, b"job", 1000)))
    printer.send_to_host(b"0123456789")
    results.append(outcome(lambda: bytes(dev.read(IN, 4, 1000))))  # OVERFLOW
    results.append(outcome(lambda: bytes(dev.read(IN, 512, 20))))  # TIMEOUT
    printer.inject("stall")
    results.append(outcome(lambda: dev.write(OUT, b"x", 1000)))  # PIPE
    results.append(outcome(lambda: dev.ctrl_transfer(0x80, 6, 0x0309, 0x0409, 255)))  # stall
    results.append(outcome(lambda: bytes(dev.ctrl_transfer(0x80, 6, 0x0600, 0, 10))))
    results.append(outcome(lambda: dev.parent.idProduct))
    return results


def test_direct_and_through_libusb_give_the_same_results():
    def make() -> VirtualPrinter:
        return VirtualPrinter(bytes_per_second=None)

    with direct(make()) as dev:
        a = scenario(dev, dev._ctx.backend.printers[0])
    with virtual_usb([make()]) as bus:
        b = scenario(find_printer(), bus.printers[0])
    assert a == b
    assert a[0] == ("USBError", -6, errno.EBUSY, "Resource busy")
    assert a[6] == ("USBError", -8, errno.EOVERFLOW, "Overflow")
    assert a[7] == ("USBTimeoutError", -7, errno.ETIMEDOUT, "Operation timed out")
    assert a[8] == ("USBError", -9, errno.EPIPE, "Pipe error")
    assert a[10][0] == "ok" and len(a[10][1]) == 10  # DEVICE_QUALIFIER at high speed
    assert a[11] == ("ok", 0x0002)  # the root hub


# -- transfers ---------------------------------------------------------------------------------


def test_a_write_cut_by_its_timeout_reports_the_packets_that_went():
    printer = VirtualPrinter(bytes_per_second=512 * 100)  # 100 packets a second
    with virtual_usb([printer]):
        dev = find_printer()
        dev.detach_kernel_driver(0)
        job = bytes(range(256)) * 100  # 25,600 bytes: 0.5 s at that rate
        count = dev.write(OUT, job, 100)  # pyusb returns libusb's count: no exception
        assert 0 < count < len(job)
        assert count % 512 == 0  # whole packets
        assert printer.received == job[:count]  # exactly what went, nothing resent


def test_a_write_that_moved_nothing_by_its_timeout_raises():
    printer = VirtualPrinter()
    printer.set_paper_out()  # NAKs
    with virtual_usb([printer]):
        dev = find_printer()
        dev.detach_kernel_driver(0)
        with pytest.raises(usb.core.USBTimeoutError):
            dev.write(OUT, b"job", 50)
        assert printer.received == b""


def test_unplug_after_cuts_the_transfer_at_the_mark():
    printer = VirtualPrinter()
    with virtual_usb([printer]) as bus:
        dev = find_printer()
        dev.detach_kernel_driver(0)
        bus.unplug_after(printer, 1000)
        assert dev.write(OUT, b"a" * 600, 1000) == 600
        with pytest.raises(usb.core.USBError) as info:
            dev.write(OUT, b"b" * 600, 1000)
        assert info.value.errno == errno.ENODEV
        assert printer.received == b"a" * 600 + b"b" * 400
        assert not printer.plugged
        with pytest.raises(EmulatorUsageError):
            bus.unplug_after(printer, -1)


def test_a_silent_control_request_takes_its_timeout():
    printer = VirtualPrinter()
    printer.inject("timeout", where="control", duration=5.0)
    with virtual_usb([printer]):
        dev = find_printer()
        dev.detach_kernel_driver(0)  # pyusb claims interface wIndex for a class request
        start = time.monotonic()
        with pytest.raises(usb.core.USBTimeoutError):
            dev.ctrl_transfer(0xA1, 0, 0, 0, 255, timeout=200)
        assert 0.19 < time.monotonic() - start < 2.0
        # The fault is spent: the next request is answered at once.
        assert bytes(dev.ctrl_transfer(0xA1, 1, 0, 0, 1, timeout=200)) == b"\x18"


def test_a_silent_control_request_waits_on_the_explorers_mock_clock():
    def body() -> None:
        printer = VirtualPrinter()
        printer.inject("timeout", where="control", duration=30.0)
        with VirtualBackend([printer]) as bus:
            handle = bus.open_device(bus.enumerate_devices()[0])
            start = monotonic()
            buf = usb.util.create_buffer(255)
            with pytest.raises(usb.core.USBTimeoutError):
                bus.ctrl_transfer(handle, 0xA1, 0, 0, 0, buf, 20_000)
            assert monotonic() - start >= 20.0  # 20 s of mock time
            bus.close_device(handle)

    started = time.monotonic()
    result = explore(body, preemption_bound=0)
    assert result.failure is None, result.failure and result.failure.report
    assert time.monotonic() - started < 10  # not 20 s of real time


def test_a_silent_request_without_a_timeout_fails_after_the_faults_duration():
    printer = VirtualPrinter()
    printer.inject("timeout", where="control", duration=0.1)
    with virtual_usb([printer]):
        dev = find_printer()
        dev.detach_kernel_driver(0)
        start = time.monotonic()
        with pytest.raises(usb.core.USBTimeoutError):
            dev.ctrl_transfer(0xA1, 1, 0, 0, 1, timeout=0)  # libusb: for ever; here bounded
        assert time.monotonic() - start >= 0.1


def test_interrupt_transfers_on_an_extra_interface():
    vendor = ExtraInterface(1, 0xFF, endpoints=((0x83, "interrupt"), (0x04, "interrupt")))
    printer = VirtualPrinter(extra_interfaces=[vendor])
    with virtual_usb([printer]) as bus:
        dev = find_printer()
        assert dev.is_kernel_driver_active(1) is False  # no driver for a vendor interface
        assert dev.write(0x04, b"ping", 100) == 4  # an interrupt OUT (pyusb: intr_write)
        assert printer.received_at(0x04) == b"ping"
        printer.send_to_host(b"\x01\x02", endpoint=0x83)
        assert bytes(dev.read(0x83, 8, 100)) == b"\x01\x02"
        ep = usb.util.find_descriptor(dev[0][(1, 0)], bEndpointAddress=0x83)
        assert (ep.bmAttributes, ep.wMaxPacketSize, ep.bInterval) == (3, 8, 4)
        # An interrupt transfer to a bulk endpoint: usbfs refuses it (libusb: IO).
        handle = dev._ctx.handle
        dev.detach_kernel_driver(0)
        with pytest.raises(usb.core.USBError) as info:
            dev._ctx.backend.intr_write(handle, OUT, 0, usb.util.create_buffer(1), 100)
        assert info.value.errno == errno.EIO
        del bus


def test_the_root_hub_is_the_parent_and_its_driver_holds_it():
    with virtual_usb([VirtualPrinter()]):
        dev = find_printer()
        hub = dev.parent
        assert (hub.idVendor, hub.idProduct, hub.bDeviceClass, hub.address) == (0x1D6B, 2, 9, 1)
        assert hub.parent is None
        assert dev.port_numbers == (dev.port_number,) and hub.port_numbers is None
        assert hub.is_kernel_driver_active(0) is True
        with pytest.raises(usb.core.USBError) as info:
            usb.util.claim_interface(hub, 0)
        assert info.value.errno == errno.EBUSY
        assert hub.manufacturer.startswith("Linux")


def test_speed_and_descriptor_fields_follow_the_printer():
    full = VirtualPrinter(speed="full", bcd_device=0x0207, max_power_ma=100, self_powered=False)
    with virtual_usb([full]):
        dev = find_printer()
        assert (dev.speed, dev.bcdUSB, dev.bcdDevice) == (2, 0x0110, 0x0207)
        cfg = dev.get_active_configuration()
        assert (cfg.bmAttributes, cfg.bMaxPower) == (0x80, 50)  # bus-powered, 100 mA
        assert [e.wMaxPacketSize for e in cfg[(0, 1)]] == [64, 64]
        with pytest.raises(usb.core.USBError) as info:  # full speed only: no qualifier
            dev.ctrl_transfer(0x80, 6, 0x0600, 0, 10)
        assert info.value.errno == errno.EPIPE
    with virtual_usb([VirtualPrinter()]):
        dev = find_printer()
        qualifier = bytes(dev.ctrl_transfer(0x80, 6, 0x0600, 0, 10))
        assert qualifier == bytes([10, 6, 0x00, 0x02, 0, 0, 0, 64, 1, 0])
        other = bytes(dev.ctrl_transfer(0x80, 6, 0x0700, 0, 255))
        assert other[1] == 7 and other[:1] == bytes([9])
        assert bytes([7, 5, OUT, 2, 64, 0]) in other  # bulk at 64 bytes at full speed


def test_the_printer_interface_can_be_any_number_with_its_own_endpoints():
    scanner = ExtraInterface(0, 0xFF, endpoints=((0x81, "bulk"), (0x02, "bulk")))
    printer = VirtualPrinter(
        interface_number=1,
        out_endpoint=0x03,
        in_endpoint=0x84,
        protocols=(2, 1),  # alt setting 0 is the bidirectional one
        extra_interfaces=[scanner],
    )
    with virtual_usb([printer]):
        dev = find_printer()
        numbers = [(i.bInterfaceNumber, i.bAlternateSetting, i.bInterfaceClass) for i in dev[0]]
        assert numbers == [(0, 0, 0xFF), (1, 0, 7), (1, 1, 7)]
        assert dev[0][(1, 0)].bInterfaceProtocol == 2
        assert dev.is_kernel_driver_active(1) and not dev.is_kernel_driver_active(0)
        dev.detach_kernel_driver(1)
        assert dev.write(0x03, b"job", 100) == 3
        assert printer.received == b"job"
        assert printer.endpoints == (0x03, 0x84) and printer.interface_number == 1
    # The emulated usblp binds to interface 1 as well.
    host = Host(strategy="hazard")
    minor = host.plug(printer)
    with host.open(minor) as f:
        f.write(b"+lp")
    assert printer.received == b"job+lp"
    host.close()
    host.check()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"out_endpoint": 0x81}, "out_endpoint must be an integer in 1..15"),
        ({"in_endpoint": 0x02}, "in_endpoint must be an integer in 129..143"),
        ({"speed": "super"}, "speed must be one of full, high"),
        ({"interface_number": 1}, "interface numbers must be 0..0, once each; got [1]"),
        (
            {"extra_interfaces": [ExtraInterface(0)]},
            "interface 0 is defined twice",
        ),
        (
            {"extra_interfaces": [ExtraInterface(1, endpoints=((0x01, "bulk"),))]},
            "endpoint 0x01 is used twice",
        ),
        (
            {"extra_interfaces": [ExtraInterface(1, endpoints=((0x83, "iso"),))]},
            "endpoint type must be bulk or interrupt",
        ),
        ({"max_power_ma": 900}, "max_power_ma must be an integer in 0..500"),
        ({"firmware": "escpos"}, "firmware must have a receive(data) method, not str"),
    ],
)
def test_an_impossible_printer_is_refused_with_one_line(kwargs, message):
    with pytest.raises(EmulatorUsageError) as info:
        VirtualPrinter(**kwargs)
    assert message in str(info.value)
    assert "\n" not in str(info.value)

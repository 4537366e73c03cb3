"""VirtualBackend: the whole pyusb path over virtual printers, and libusb's errors exactly."""

from __future__ import annotations

import array
import ctypes
import errno
import threading
import time
from collections.abc import Iterator
from typing import Any

import libusb_package
import pytest
import usb.core
import usb.util
from usb.backend import libusb1

from hazard.testing import Deadlock, explore, spawn
from usblp_emu import EmulatorUsageError, VirtualPrinter, encode_device_id
from usblp_emu._abi import REQ_GET_DEVICE_ID, REQ_GET_PORT_STATUS, REQ_SOFT_RESET
from usblp_emu._pyusb._transport import find_printers
from usblp_emu._virtual._backend import VirtualBackend
from usblp_emu._virtual._libusb_errors import LIBUSB_ERRORS, strerror

OUT, IN = 0x01, 0x82
GET_DEVICE_ID, GET_PORT_STATUS, SOFT_RESET = REQ_GET_DEVICE_ID, REQ_GET_PORT_STATUS, REQ_SOFT_RESET
ID_TEXT = "MFG:Acme;MDL:Laser 1;CMD:PCL,PJL;CLS:PRINTER;"

# (libusb code, errno) of what libusb1's backend raises.
PIPE = (-9, errno.EPIPE)
IO = (-1, errno.EIO)
NO_DEVICE = (-4, errno.ENODEV)
NOT_FOUND = (-5, errno.ENOENT)
BUSY = (-6, errno.EBUSY)
TIMEOUT = (-7, errno.ETIMEDOUT)
INVALID_PARAM = (-2, errno.EINVAL)


def is_printer(dev: usb.core.Device) -> bool:
    return any(usb.util.find_descriptor(cfg, bInterfaceClass=7) is not None for cfg in dev)


def printers_on(backend: VirtualBackend) -> list[usb.core.Device]:
    return list(usb.core.find(find_all=True, backend=backend, custom_match=is_printer))


def assert_usb_error(info: pytest.ExceptionInfo[usb.core.USBError], expected: tuple[int, int]):
    code, number = expected
    exc = info.value
    assert (exc.backend_error_code, exc.errno) == (code, number), repr(exc)
    # Exactly the class libusb1's backend raises: only timeouts are USBTimeoutError.
    wanted = usb.core.USBTimeoutError if code == -7 else usb.core.USBError
    assert type(exc) is wanted


@pytest.fixture
def printer() -> VirtualPrinter:
    return VirtualPrinter(ID_TEXT)


@pytest.fixture
def backend(printer: VirtualPrinter) -> Iterator[VirtualBackend]:
    with VirtualBackend([printer]) as bus:
        yield bus


@pytest.fixture
def dev(backend: VirtualBackend) -> Iterator[usb.core.Device]:
    """The printer, detached from usblp and claimed, in its bidirectional alt setting."""
    (device,) = printers_on(backend)
    device.detach_kernel_driver(0)
    usb.util.claim_interface(device, 0)
    device.set_interface_altsetting(0, 1)
    yield device
    usb.util.dispose_resources(device)


# -- discovery and descriptors ---------------------------------------------------------------


def test_find_by_interface_class_over_every_configuration_and_alt_setting():
    laser = VirtualPrinter(serial="LASER")
    scanner = VirtualPrinter(serial="NOTAPRINTER", interface_class=0xFF)
    with VirtualBackend([laser, scanner]) as bus:
        everything = list(usb.core.find(find_all=True, backend=bus))
        assert len(everything) == 3  # and the root hub, last
        assert (everything[-1].idVendor, everything[-1].idProduct) == (0x1D6B, 0x0002)
        found = printers_on(bus)
        assert [d.serial_number for d in found] == ["LASER"]
        (device,) = found
        alts = [(i.bInterfaceNumber, i.bAlternateSetting, i.bInterfaceProtocol) for i in device[0]]
        assert alts == [(0, 0, 1), (0, 1, 2)]
        assert [e.bEndpointAddress for e in device[0][(0, 1)]] == [OUT, IN]
        assert usb.core.find(backend=bus, idVendor=0x1D6B, custom_match=is_printer) is not None


def test_string_descriptors_and_langids(backend):
    (device,) = printers_on(backend)
    assert device.manufacturer == "Acme"
    assert device.product == "Laser 1"
    assert device.serial_number == "VP0001"
    assert device.langids == (0x0409,)


def test_an_empty_string_has_index_zero_and_reads_as_none():
    with VirtualBackend([VirtualPrinter(serial="")]) as bus:
        (device,) = printers_on(bus)
        assert device.iSerialNumber == 0
        assert device.serial_number is None
        # ...and asking for index 3 anyway stalls, as a device without it does.
        with pytest.raises(usb.core.USBError) as info:
            device.ctrl_transfer(0x80, 6, 0x0303, 0x0409, 255)
        assert_usb_error(info, PIPE)


def test_device_descriptor_fields(backend):
    (device,) = printers_on(backend)
    assert (device.bLength, device.bDescriptorType, device.bcdUSB) == (18, 1, 0x0200)
    assert (device.bDeviceClass, device.bMaxPacketSize0, device.bNumConfigurations) == (0, 64, 1)
    assert (device.iManufacturer, device.iProduct, device.iSerialNumber) == (1, 2, 3)
    assert (device.idVendor, device.idProduct) == (0x1D6B, 0x0104)
    assert (device.bus, device.address) == backend.bus_address(backend.printers[0])
    assert device.port_numbers == (device.port_number,)
    assert device.speed == 3  # LIBUSB_SPEED_HIGH
    hub = device.parent  # the root hub, as libusb on Linux has it
    assert (hub.idVendor, hub.idProduct, hub.bDeviceClass, hub.address) == (0x1D6B, 2, 9, 1)
    assert hub.parent is None and hub.port_numbers is None


def test_descriptors_on_the_wire_match_the_parsed_ones(backend):
    (device,) = printers_on(backend)
    raw_device = bytes(device.ctrl_transfer(0x80, 6, 0x0100, 0, 64))
    assert len(raw_device) == 18
    assert raw_device[8:12] == bytes([0x6B, 0x1D, 0x04, 0x01])  # idVendor, idProduct
    cfg = device[0]
    assert (cfg.bConfigurationValue, cfg.bmAttributes, cfg.bMaxPower) == (1, 0xC0, 1)
    assert list(cfg.extra_descriptors) == []
    raw_config = bytes(device.ctrl_transfer(0x80, 6, 0x0200, 0, 1024))
    assert len(raw_config) == cfg.wTotalLength == 9 + 2 * 9 + 3 * 7
    assert int.from_bytes(raw_config[2:4], "little") == cfg.wTotalLength
    header = bytes(device.ctrl_transfer(0x80, 6, 0x0200, 0, 9))  # what a host reads first
    assert header == raw_config[:9]
    ep = cfg[(0, 1)][1]
    assert (ep.bRefresh, ep.bSynchAddress, list(ep.extra_descriptors)) == (0, 0, [])
    assert ep.wMaxPacketSize == 512


def test_missing_interface_alt_setting_endpoint_and_configuration():
    bus = VirtualBackend([VirtualPrinter()])
    dev_id = bus.enumerate_devices()[0]
    bus.get_interface_descriptor(dev_id, 0, 1, 0)
    with pytest.raises(IndexError):
        bus.get_interface_descriptor(dev_id, 0, 2, 0)
    with pytest.raises(IndexError):
        bus.get_interface_descriptor(dev_id, 1, 0, 0)
    with pytest.raises(IndexError):
        bus.get_endpoint_descriptor(dev_id, 2, 0, 1, 0)
    with pytest.raises(usb.core.USBError) as info:
        bus.get_configuration_descriptor(dev_id, 1)
    assert_usb_error(info, NOT_FOUND)
    bus.close()


def test_active_configuration_is_the_one_the_kernel_set(backend):
    (device,) = printers_on(backend)
    assert device.get_active_configuration().bConfigurationValue == 1


def test_without_a_kernel_the_device_is_unconfigured_until_set():
    with VirtualBackend([VirtualPrinter()], kernel_driver=False) as bus:
        (device,) = printers_on(bus)
        with pytest.raises(usb.core.USBError, match="Configuration not set"):
            device.get_active_configuration()
        assert device.is_kernel_driver_active(0) is False
        device.set_configuration()
        assert device.get_active_configuration().bConfigurationValue == 1
        assert device.is_kernel_driver_active(0) is False  # no driver ever binds
        with pytest.raises(usb.core.USBError) as info:
            device.attach_kernel_driver(0)
        assert_usb_error(info, NOT_FOUND)
        assert device.write(OUT, b"ok") == 2


def test_libusb_error_table_matches_libusb_strerror_and_pyusbs_errnos():
    # The messages are the real library's (libusb-package ships one), the errnos pyusb's.
    lib = ctypes.CDLL(str(libusb_package.get_library_path()))
    lib.libusb_strerror.restype = ctypes.c_char_p
    lib.libusb_strerror.argtypes = [ctypes.c_int]
    for code, (message, number) in LIBUSB_ERRORS.items():
        assert lib.libusb_strerror(code).decode() == message == strerror(code)
        assert libusb1._libusb_errno[code] == number
    assert set(LIBUSB_ERRORS) == set(libusb1._libusb_errno) - {0}
    assert strerror(0) == "Success"
    assert strerror(-1234) == "Other error" == lib.libusb_strerror(-1234).decode()


# -- the kernel driver --------------------------------------------------------------------------


def test_kernel_driver_busy_then_detach_claim_attach(backend, printer):
    (device,) = printers_on(backend)
    assert device.is_kernel_driver_active(0) is True
    with pytest.raises(usb.core.USBError) as info:
        usb.util.claim_interface(device, 0)
    assert_usb_error(info, BUSY)
    with pytest.raises(usb.core.USBError) as info:  # the python-escpos way: EBUSY too
        device.set_configuration()
    assert_usb_error(info, BUSY)
    device.detach_kernel_driver(0)
    assert device.is_kernel_driver_active(0) is False
    with pytest.raises(usb.core.USBError) as info:
        device.detach_kernel_driver(0)
    assert_usb_error(info, NOT_FOUND)
    usb.util.claim_interface(device, 0)
    assert device.is_kernel_driver_active(0) is False  # a usbfs claim is not a kernel driver
    with pytest.raises(usb.core.USBError) as info:
        device.attach_kernel_driver(0)
    assert_usb_error(info, BUSY)
    assert device.write(OUT, b"x") == 1
    usb.util.release_interface(device, 0)
    device.attach_kernel_driver(0)
    assert device.is_kernel_driver_active(0) is True
    with pytest.raises(usb.core.USBError) as info:
        device.attach_kernel_driver(0)
    assert_usb_error(info, BUSY)
    with pytest.raises(usb.core.USBError) as info:
        device.detach_kernel_driver(3)
    assert_usb_error(info, INVALID_PARAM)
    assert printer.received == b"x"


def test_set_configuration_again_is_a_light_reset_but_a_new_one_rebinds_usblp(backend):
    (device,) = printers_on(backend)
    device.detach_kernel_driver(0)
    device.set_configuration(1)  # the same configuration: no re-probe
    assert device.is_kernel_driver_active(0) is False
    device.set_configuration(0)  # unconfigured: the interfaces are gone
    with pytest.raises(usb.core.USBError) as info:
        usb.util.claim_interface(device, 0)
    assert_usb_error(info, NOT_FOUND)
    assert bytes(device.ctrl_transfer(0x80, 8, 0, 0, 1)) == b"\x00"  # GET_CONFIGURATION
    device.set_configuration(1)  # new interfaces: the kernel probes drivers, usblp binds
    assert device.is_kernel_driver_active(0) is True
    assert bytes(device.ctrl_transfer(0x80, 8, 0, 0, 1)) == b"\x01"
    assert bytes(device.ctrl_transfer(0x80, 0, 0, 0, 2)) == b"\x01\x00"  # self-powered


def test_writing_while_usblp_is_bound_fails_busy(backend, printer):
    (device,) = printers_on(backend)
    with pytest.raises(usb.core.USBError) as info:
        device.write(OUT, b"lost")  # pyusb claims first: libusb says EBUSY
    assert_usb_error(info, BUSY)
    assert printer.received == b""


def test_claimed_by_another_handle_is_busy(backend):
    (first,) = printers_on(backend)
    (second,) = printers_on(backend)
    first.detach_kernel_driver(0)
    usb.util.claim_interface(first, 0)
    with pytest.raises(usb.core.USBError) as info:
        usb.util.claim_interface(second, 0)
    assert_usb_error(info, BUSY)
    with pytest.raises(usb.core.USBError) as info:
        second.detach_kernel_driver(0)  # libusb: the driver is usbfs, nothing to detach
    assert_usb_error(info, NOT_FOUND)
    usb.util.dispose_resources(first)  # closing the handle releases its claim
    usb.util.claim_interface(second, 0)
    usb.util.dispose_resources(second)


def test_claiming_an_interface_that_does_not_exist(backend):
    (device,) = printers_on(backend)
    with pytest.raises(usb.core.USBError) as info:
        usb.util.claim_interface(device, 1)
    assert_usb_error(info, NOT_FOUND)
    with pytest.raises(usb.core.USBError) as info:
        usb.util.claim_interface(device, 32)
    assert_usb_error(info, INVALID_PARAM)


def test_set_interface_needs_a_claim_and_an_existing_alt_setting(backend):
    bus = backend
    handle = bus.open_device(bus.enumerate_devices()[0])
    with pytest.raises(usb.core.USBError) as info:
        bus.set_interface_altsetting(handle, 0, 1)
    assert_usb_error(info, NOT_FOUND)
    bus.detach_kernel_driver(handle, 0)
    bus.claim_interface(handle, 0)
    with pytest.raises(usb.core.USBError) as info:
        bus.set_interface_altsetting(handle, 0, 5)
    assert_usb_error(info, NOT_FOUND)
    bus.set_interface_altsetting(handle, 0, 1)
    assert bus.ctrl_transfer(handle, 0x81, 10, 0, 0, buf := array.array("B", [9]), 100) == 1
    assert buf[0] == 1  # GET_INTERFACE
    bus.close_device(handle)


# -- printer-class requests --------------------------------------------------------------------


def raw_control(dev: usb.core.Device, request_type, request, value, index, length) -> bytes:
    """A control IN straight to the backend, as PyusbPrinter.raw_control does (no auto-claim)."""
    ctx = dev._ctx
    ctx.managed_open()
    buf = usb.util.create_buffer(length)
    count = ctx.backend.ctrl_transfer(ctx.handle, request_type, request, value, index, buf, 1000)
    return bytes(buf[:count])


@pytest.mark.parametrize("alternate", [0, 1])
def test_get_device_id_returns_the_encoded_id(dev, alternate):
    # wValue: the configuration index; wIndex: interface << 8 | alt setting.
    answer = raw_control(dev, 0xA1, GET_DEVICE_ID, 0, (0 << 8) | alternate, 1024)
    assert answer == encode_device_id(ID_TEXT)


def test_pyusb_ctrl_transfer_claims_the_alt_setting_number_as_an_interface(dev):
    # pyusb auto-claims interface wIndex & 0xff, which for GET_DEVICE_ID is the alt setting:
    # alt setting 0 happens to work, alt setting 1 makes it claim interface 1, which does not
    # exist. Real libusb fails the same way; this is why PyusbPrinter bypasses the auto-claim.
    assert bytes(dev.ctrl_transfer(0xA1, GET_DEVICE_ID, 0, 0x0000, 1024)) == encode_device_id(
        ID_TEXT
    )
    with pytest.raises(usb.core.USBError) as info:
        dev.ctrl_transfer(0xA1, GET_DEVICE_ID, 0, 0x0001, 1024)
    assert_usb_error(info, NOT_FOUND)


def test_get_device_id_works_while_usblp_is_bound_but_port_status_does_not(backend, printer):
    # The kernel lets GET_DEVICE_ID reach a printer interface without a claim; any other
    # interface request from an unclaimed handle makes usbfs claim it, which usblp prevents.
    bus = backend
    handle = bus.open_device(bus.enumerate_devices()[0])
    buf = usb.util.create_buffer(1024)
    count = bus.ctrl_transfer(handle, 0xA1, GET_DEVICE_ID, 0, 0x0001, buf, 1000)
    assert bytes(buf[:count]) == encode_device_id(ID_TEXT)
    with pytest.raises(usb.core.USBError) as info:
        bus.ctrl_transfer(handle, 0xA1, GET_PORT_STATUS, 0, 0, usb.util.create_buffer(1), 1000)
    assert_usb_error(info, IO)
    bus.detach_kernel_driver(handle, 0)
    # Now the implicit claim succeeds, and holds the interface until the handle closes.
    assert bus.ctrl_transfer(handle, 0xA1, GET_PORT_STATUS, 0, 0, buf, 1000) == 1
    assert buf[0] == printer.port_status
    with pytest.raises(usb.core.USBError) as info:
        bus.attach_kernel_driver(handle, 0)
    assert_usb_error(info, BUSY)
    with pytest.raises(usb.core.USBError) as info:
        bus.release_interface(handle, 0)  # libusb never knew of the implicit claim
    assert_usb_error(info, NOT_FOUND)
    bus.close_device(handle)
    other = bus.open_device(bus.enumerate_devices()[0])
    bus.attach_kernel_driver(other, 0)
    bus.close_device(other)


def test_get_port_status_returns_the_printers_status(dev, printer):
    assert bytes(dev.ctrl_transfer(0xA1, GET_PORT_STATUS, 0, 0, 1)) == bytes([0x18])
    printer.set_paper_out()
    answer = dev.ctrl_transfer(0xA1, GET_PORT_STATUS, 0, 0, 1)
    assert answer[0] == printer.port_status == 0x38


def test_soft_reset_both_request_types(dev, printer):
    assert dev.ctrl_transfer(0x23, SOFT_RESET, 0, 0, None) == 0
    assert printer.resets == 1
    assert dev.ctrl_transfer(0x21, SOFT_RESET, 0, 0, None) == 0
    assert printer.resets == 2


def test_an_unknown_class_request_and_a_control_fault_stall(dev, printer):
    with pytest.raises(usb.core.USBError) as info:
        dev.ctrl_transfer(0xA1, 7, 0, 0, 8)
    assert_usb_error(info, PIPE)
    printer.inject("eio", where="control")
    with pytest.raises(usb.core.USBError) as info:
        dev.ctrl_transfer(0xA1, GET_PORT_STATUS, 0, 0, 1)
    assert_usb_error(info, IO)
    printer.inject("timeout", where="control")
    with pytest.raises(usb.core.USBTimeoutError) as info:
        dev.ctrl_transfer(0xA1, GET_PORT_STATUS, 0, 0, 1)
    assert_usb_error(info, TIMEOUT)


@pytest.mark.parametrize(
    ("request_type", "b_request", "value"),
    [(0x00, 9, 1), (0x80, 6, 0x2200), (0x80, 6, 0x0201), (0x00, 3, 1), (0x60, 0, 0)],
    ids=["set-configuration", "hid-report-descriptor", "config-1", "set-feature", "reserved"],
)
def test_unknown_standard_requests_stall(dev, request_type, b_request, value):
    data = 8 if request_type & 0x80 else None
    with pytest.raises(usb.core.USBError) as info:
        dev.ctrl_transfer(request_type, b_request, value, 0, data)
    assert_usb_error(info, PIPE)


# -- bulk transfers ----------------------------------------------------------------------------


def test_a_megabyte_arrives_byte_exact(dev, printer):
    data = bytes(range(256)) * 4096
    assert dev.write(OUT, data, 5000) == len(data)
    assert printer.received == data


def test_paper_out_times_out_and_moves_nothing(dev, printer):
    printer.set_paper_out()
    start = time.monotonic()
    with pytest.raises(usb.core.USBTimeoutError) as info:
        dev.write(OUT, b"page", 50)
    assert_usb_error(info, TIMEOUT)
    assert time.monotonic() - start >= 0.045
    assert printer.received == b""


def test_paper_loaded_from_another_thread_finishes_a_blocked_write(dev, printer):
    printer.set_paper_out()
    loader = threading.Timer(0.05, printer.set_paper_out, args=(False,))
    loader.start()
    assert dev.write(OUT, b"page", 0) == 4  # 0: wait for ever
    loader.join()
    assert printer.received == b"page"


def test_short_write_returns_the_short_count(dev, printer):
    printer.inject("short")
    assert dev.write(OUT, b"abcdefgh") == 4
    assert printer.received == b"abcd"


def test_stall_is_epipe_and_halts_the_endpoint_until_cleared(dev, printer):
    printer.inject("stall")
    with pytest.raises(usb.core.USBError) as info:
        dev.write(OUT, b"x")
    assert_usb_error(info, PIPE)
    assert bytes(dev.ctrl_transfer(0x82, 0, 0, OUT, 2)) == b"\x01\x00"  # GET_STATUS: halted
    dev.clear_halt(OUT)
    assert bytes(dev.ctrl_transfer(0x82, 0, 0, OUT, 2)) == b"\x00\x00"
    assert dev.write(OUT, b"y") == 1
    assert printer.received == b"y"


def test_protocol_error_is_libusb_io(dev, printer):
    printer.inject("eio")
    with pytest.raises(usb.core.USBError) as info:
        dev.write(OUT, b"x")
    assert_usb_error(info, IO)


def test_bulk_read_of_read_back_data(dev, printer):
    printer.send_to_host(b"@PJL INFO STATUS\r\n")
    assert bytes(dev.read(IN, 512, 1000)) == b"@PJL INFO STATUS\r\n"
    message = bytes(600)
    printer.send_to_host(message)
    assert len(dev.read(IN, 512, 1000)) == 512  # a transfer carries at most what was asked
    assert len(dev.read(IN, 512, 1000)) == 88
    with pytest.raises(usb.core.USBTimeoutError) as info:
        dev.read(IN, 512, 20)
    assert_usb_error(info, TIMEOUT)


def test_a_read_shorter_than_the_packet_is_an_overflow(dev, printer):
    # libusb: the device sent a packet larger than the buffer's rest: LIBUSB_ERROR_OVERFLOW.
    printer.send_to_host(b"0123456789")
    printer.send_to_host(b"next")
    with pytest.raises(usb.core.USBError) as info:
        dev.read(IN, 4, 1000)
    assert_usb_error(info, (-8, errno.EOVERFLOW))
    assert info.value.errno == 75 and str(info.value) == "[Errno 75] Overflow"
    assert bytes(dev.read(IN, 16, 1000)) == b"next"  # the overflowed packet's rest is lost


def test_reading_an_endpoint_of_another_alt_setting_is_refused(backend):
    bus = backend
    handle = bus.open_device(bus.enumerate_devices()[0])
    bus.detach_kernel_driver(handle, 0)
    bus.claim_interface(handle, 0)  # alt setting 0: protocol 1, no IN endpoint
    with pytest.raises(usb.core.USBError) as info:
        bus.bulk_read(handle, IN, 0, usb.util.create_buffer(8), 10)
    assert_usb_error(info, IO)  # usbfs finds no such endpoint: the URB is refused
    bus.close_device(handle)


# -- unplug and hotplug ------------------------------------------------------------------------


def blocked_write(dev: usb.core.Device, started: threading.Event) -> BaseException | None:
    started.set()
    try:
        dev.write(OUT, b"page", 0)
    except BaseException as exc:  # handed to the test thread
        return exc
    return None


@pytest.mark.parametrize(
    ("first_unplug_error", "first"), [(errno.ENODEV, NO_DEVICE), (errno.EIO, IO)]
)
def test_unplug_fails_a_blocked_write_then_everything_is_enodev(first_unplug_error, first):
    printer = VirtualPrinter()
    bus = VirtualBackend([printer], first_unplug_error=first_unplug_error)
    (device,) = printers_on(bus)
    device.detach_kernel_driver(0)
    printer.set_paper_out()
    result: list[BaseException | None] = []
    started = threading.Event()
    writer = threading.Thread(target=lambda: result.append(blocked_write(device, started)))
    writer.start()
    started.wait()
    time.sleep(0.05)  # let it block in the backend
    assert writer.is_alive()
    bus.unplug(printer)
    writer.join(5)
    assert not writer.is_alive()
    (exc,) = result
    assert isinstance(exc, usb.core.USBError)
    assert (exc.backend_error_code, exc.errno) == first
    assert type(exc) is usb.core.USBError
    # Later failures are ENODEV, whatever the first was.
    with pytest.raises(usb.core.USBError) as info:
        device.write(OUT, b"again", 100)
    assert_usb_error(info, NO_DEVICE)
    with pytest.raises(usb.core.USBError) as info:
        device.ctrl_transfer(0xA1, GET_PORT_STATUS, 0, 0, 1)
    assert_usb_error(info, NO_DEVICE)
    usb.util.dispose_resources(device)  # safe after unplug
    with pytest.raises(usb.core.USBError) as info:
        device.is_kernel_driver_active(0)  # needs a new handle: open fails
    assert_usb_error(info, NO_DEVICE)
    assert printers_on(bus) == []
    assert printer.received == b""
    assert not printer.plugged


def test_first_unplug_error_is_per_plug_and_over_all_handles():
    printer = VirtualPrinter()
    bus = VirtualBackend([printer], first_unplug_error=errno.EIO)
    handles = [bus.open_device(bus.enumerate_devices()[0]) for _ in range(2)]
    bus.unplug(printer)
    errors = []
    for handle in [*handles, handles[0]]:
        with pytest.raises(usb.core.USBError) as info:
            bus.get_configuration(handle)
        errors.append(info.value.errno)
    assert errors == [errno.EIO, errno.ENODEV, errno.ENODEV]
    for handle in handles:
        bus.close_device(handle)  # never fails
    bus.plug(printer)  # a new plug has its own first error
    handle = bus.open_device(bus.enumerate_devices()[0])
    bus.unplug(printer)
    with pytest.raises(usb.core.USBError) as info:
        bus.get_configuration(handle)
    assert info.value.errno == errno.EIO


def test_descriptors_stay_readable_after_unplug(backend, printer):
    (device,) = printers_on(backend)
    backend.unplug(printer)
    assert is_printer(device)  # libusb caches descriptors: no traffic, no error
    # A string read is traffic; pyusb swallows the LANGID request's USBError and then
    # complains that there is no LANGID, with a ValueError.
    with pytest.raises(ValueError, match="no langid"):
        _ = device.serial_number


def test_hotplug_addresses_increase_and_a_replug_gets_a_new_one(backend, printer):
    (first,) = printers_on(backend)
    second_printer = VirtualPrinter(serial="VP0002")
    bus_number, address = backend.plug(second_printer)
    assert (bus_number, address) == (first.bus, first.address + 1)
    found = {(d.serial_number, d.address) for d in printers_on(backend)}
    assert found == {("VP0001", first.address), ("VP0002", address)}
    assert backend.printers == (printer, second_printer)
    backend.unplug(second_printer)
    assert [d.serial_number for d in printers_on(backend)] == ["VP0001"]
    assert backend.plug(second_printer) == (bus_number, address + 1)  # never the old address


def test_addresses_wrap_around_like_the_kernels_and_skip_live_ones():
    keeper, mover = VirtualPrinter(serial="KEEP"), VirtualPrinter(serial="MOVE")
    bus = VirtualBackend([keeper])  # address 2, kept for the whole test
    seen = []
    for _ in range(130):
        seen.append(bus.plug(mover)[1])
        bus.unplug(mover)
    assert seen[:3] == [3, 4, 5]
    assert seen[124:128] == [127, 3, 4, 5]  # 2 is still taken
    bus.close()


def test_plug_and_unplug_misuse():
    printer = VirtualPrinter()
    bus = VirtualBackend([printer])
    with pytest.raises(EmulatorUsageError, match="already plugged"):
        bus.plug(printer)
    with pytest.raises(EmulatorUsageError, match="already plugged"):
        VirtualBackend([printer])  # into another host
    with pytest.raises(EmulatorUsageError, match="not plugged"):
        bus.unplug(VirtualPrinter())
    with pytest.raises(EmulatorUsageError, match="first_unplug_error"):
        VirtualBackend(first_unplug_error=0)
    bus.close()
    assert not printer.plugged
    assert bus.printers == ()


def test_a_closed_handle_is_a_usage_error(backend):
    handle = backend.open_device(backend.enumerate_devices()[0])
    backend.close_device(handle)
    backend.close_device(handle)  # twice is harmless, as pyusb may do
    with pytest.raises(EmulatorUsageError, match="closed device handle"):
        backend.get_configuration(handle)


def test_closing_the_handle_under_a_blocked_write_cancels_it(backend, printer):
    handle = backend.open_device(backend.enumerate_devices()[0])
    backend.detach_kernel_driver(handle, 0)
    printer.set_paper_out()
    result: list[Any] = []

    def write() -> None:
        try:
            backend.bulk_write(handle, OUT, 0, array.array("B", b"page"), 0)
        except BaseException as exc:  # handed to the test thread
            result.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(0.05)
    backend.close_device(handle)
    writer.join(5)
    assert not writer.is_alive()
    (exc,) = result
    # libusb cancels it; a cancelled synchronous transfer is LIBUSB_ERROR_IO.
    assert type(exc) is usb.core.USBError
    assert (exc.backend_error_code, exc.errno) == IO
    assert printer.received == b""


def test_a_close_from_a_finalizer_inside_a_critical_section_is_deferred(backend):
    # pyusb closes handles from garbage-collection finalizers, which may run on a thread that
    # is inside one of the backend's critical sections: the close must neither deadlock nor
    # fail, and must still happen.
    handle = backend.open_device(backend.enumerate_devices()[0])
    backend.detach_kernel_driver(handle, 0)
    backend.claim_interface(handle, 0)
    with backend._locked():
        backend.release_interface(handle, 0)
        backend.close_device(handle)
        assert not handle.closed
    assert handle.closed
    other = backend.open_device(backend.enumerate_devices()[0])
    backend.claim_interface(other, 0)  # the claim went with the close
    backend.close_device(other)


# -- with the project's own pyusb layer, and under the explorer --------------------------------


def test_pyusb_printer_end_to_end(backend, printer):
    (found,) = find_printers(backend)
    assert found.serial == "VP0001"
    with found:
        assert found.opened is not None and found.opened.protocol == 2
        assert found.device_id().model == "Laser 1"
        assert found.write(b"x" * 20_000, timeout=5) == 20_000
    assert printer.received == b"x" * 20_000
    assert found.kernel_driver_active() is True  # re-attached on close


def unplug_races_a_blocked_write(close_too: bool = False) -> None:
    """An explorer body: a write blocked on paper out, and an unplug on another thread.

    With ``close_too`` the unplugging thread also closes the handle at once, as a driver's
    disconnect does, possibly before the writer wakes: the writer must still see the unplug.
    """
    printer = VirtualPrinter()
    bus = VirtualBackend([printer], first_unplug_error=errno.EIO)
    handle = bus.open_device(bus.enumerate_devices()[0])
    bus.detach_kernel_driver(handle, 0)
    printer.set_paper_out()

    def write() -> int | None:
        try:
            bus.bulk_write(handle, OUT, 0, array.array("B", b"page"), 0)
        except usb.core.USBError as exc:
            return int(exc.errno)
        except EmulatorUsageError:
            return -1  # the handle was closed before the write began: not this race
        return None

    writer = spawn(write)
    bus.unplug(printer)
    if close_too:
        bus.close_device(handle)
    assert writer.join() in (errno.EIO, -1)  # the first error after the unplug is EIO


@pytest.mark.parametrize("close_too", [False, True], ids=["unplug", "unplug-and-close"])
def test_unplug_racing_a_blocked_write_never_loses_the_wake_up(close_too):
    result = explore(lambda: unplug_races_a_blocked_write(close_too), preemption_bound=2)
    print(result.summary())
    if result.failure is not None:
        pytest.fail(result.failure.report)
    assert result.complete
    assert result.schedules > 1


def test_an_unplug_that_forgets_to_wake_the_writer_is_a_deadlock(monkeypatch):
    # Negative control: without the notify, the explorer must find the writer stuck.
    def unplug_without_wake_up(self: VirtualBackend, printer: VirtualPrinter) -> None:
        with self._locked():
            device = self._device_of_locked(printer)
            self._devices.remove(device)
            device.gone = True
            printer.disconnect()

    monkeypatch.setattr(VirtualBackend, "unplug", unplug_without_wake_up)
    result = explore(unplug_races_a_blocked_write, preemption_bound=2)
    assert result.failure is not None
    assert type(result.failure.exception) is Deadlock

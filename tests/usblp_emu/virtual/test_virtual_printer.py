"""VirtualPrinter: validation, the Device ID encoding, the device side alone, faults and speed."""

from __future__ import annotations

import errno
import time
from collections.abc import Iterator

import pytest

from tests.usblp_emu.conftest import managed_host
from usblp_emu import (
    DEFAULT_DEVICE_ID,
    EmulatorUsageError,
    Fault,
    Host,
    IOFailure,
    VirtualPrinter,
    encode_device_id,
)
from usblp_emu._abi import REQ_GET_DEVICE_ID, REQ_GET_PORT_STATUS, RT_CLASS_IN
from usblp_emu._core._descriptors import Completion, TransferFailed

OUT, IN = 0x01, 0x82  # the printer's bulk endpoints
GET_DEVICE_ID = (RT_CLASS_IN, REQ_GET_DEVICE_ID)
GET_PORT_STATUS = (RT_CLASS_IN, REQ_GET_PORT_STATUS)


@pytest.fixture
def host() -> Iterator[Host]:
    with managed_host("static-mutex") as h:
        yield h


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("protocols", [(), (0,), (4,), (1, 5), (2, -1)])
def test_bad_protocols_are_a_usage_error(protocols):
    with pytest.raises(EmulatorUsageError) as info:
        VirtualPrinter(protocols=protocols)
    assert str(info.value) == f"protocols must be a non-empty tuple of 1, 2, 3; got {protocols!r}"


@pytest.mark.parametrize("kwargs", [{"latency": -0.1}, {"resume_latency": -1.0}])
def test_negative_latency_is_a_usage_error(kwargs):
    with pytest.raises(EmulatorUsageError, match=r"^latency and resume_latency must be >= 0 "):
        VirtualPrinter(**kwargs)


@pytest.mark.parametrize("rate", [0, -5.0])
def test_non_positive_bytes_per_second_is_a_usage_error(rate):
    with pytest.raises(EmulatorUsageError) as info:
        VirtualPrinter(bytes_per_second=rate)
    assert str(info.value) == f"bytes_per_second must be > 0, not {rate!r}"


def test_device_id_of_the_wrong_type_is_a_usage_error():
    with pytest.raises(EmulatorUsageError) as info:
        VirtualPrinter(device_id=1284)  # type: ignore[arg-type]
    assert str(info.value) == "device_id must be str or bytes, not int"


def test_unknown_fault_name_is_a_usage_error_listing_the_names():
    printer = VirtualPrinter()
    with pytest.raises(EmulatorUsageError) as info:
        printer.inject("melt")
    assert str(info.value) == "unknown fault 'melt'; choose from stall, timeout, epipe, eio, short"


@pytest.mark.parametrize("where", ["bulk", "interrupt", "BULK-OUT", ""])
def test_bad_where_is_a_usage_error_listing_the_places(where):
    printer = VirtualPrinter()
    with pytest.raises(EmulatorUsageError) as info:
        printer.inject("stall", where=where)
    assert str(info.value) == f"where must be one of bulk-out, bulk-in, control, not {where!r}"


@pytest.mark.parametrize("kwargs", [{"count": 0}, {"count": -1}, {"duration": -0.5}])
def test_bad_fault_count_or_duration_is_a_usage_error(kwargs):
    with pytest.raises(EmulatorUsageError, match=r"^count must be >= 1 and duration >= 0$"):
        VirtualPrinter().inject("timeout", **kwargs)


def test_sending_nothing_to_the_host_is_a_usage_error():
    with pytest.raises(EmulatorUsageError, match=r"needs at least one byte"):
        VirtualPrinter().send_to_host(b"")


def test_usage_errors_are_value_errors():
    assert issubclass(EmulatorUsageError, ValueError)


def test_plugging_a_printer_into_a_second_host_is_a_usage_error_and_leaks_nothing(host):
    printer = VirtualPrinter()
    host.plug(printer)
    other = Host("static-mutex")
    with pytest.raises(EmulatorUsageError, match=r"already plugged into a host"):
        other.plug(printer)
    other.close()
    other.check()
    assert printer.plugged  # still in the first host


# -- encode_device_id ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "wire"),
    [
        ("", b"\x00\x02"),
        ("MFG:A;", b"\x00\x08MFG:A;"),
        ("x" * 300, b"\x01\x2e" + b"x" * 300),
        ("MDL:Caf\u00e9;", b"\x00\x0cMDL:Caf\xc3\xa9;"),
        ("MDL:\u2603;", b"\x00\x0aMDL:\xe2\x98\x83;"),
    ],
    ids=["empty", "short", "300 bytes", "utf-8", "utf-8 3 bytes"],
)
def test_encode_device_id_prefixes_the_big_endian_length_counting_itself(text, wire):
    assert encode_device_id(text) == wire


def test_str_device_id_is_encoded_and_bytes_are_sent_as_given():
    assert VirtualPrinter().control(*GET_DEVICE_ID, 0, 0, 1023) == encode_device_id(
        DEFAULT_DEVICE_ID
    )
    assert VirtualPrinter(device_id="MFG:B;").control(*GET_DEVICE_ID, 0, 0, 1023) == (
        b"\x00\x08MFG:B;"
    )
    raw = b"\x08\x00MFG:B;"  # little-endian, kept as is
    assert VirtualPrinter(device_id=raw).control(*GET_DEVICE_ID, 0, 0, 1023) == raw


# -- the printer alone ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "protocols"),
    [({}, (1, 2)), ({"bidirectional": False}, (1,)), ({"protocols": (3, 1)}, (3, 1))],
)
def test_descriptor_offers_one_alt_setting_per_protocol(kwargs, protocols):
    alts = VirtualPrinter(**kwargs).descriptor.interfaces[0]
    assert tuple(a.interface_protocol for a in alts) == protocols
    assert [a.alternate for a in alts] == list(range(len(protocols)))
    for alt in alts:
        assert (alt.interface_class, alt.interface_subclass) == (7, 1)
        addresses = [e.address for e in alt.endpoints]
        assert addresses == ([OUT] if alt.interface_protocol == 1 else [OUT, IN])


def test_descriptor_fields_and_repr():
    printer = VirtualPrinter(vendor_id=0x04B8, product_id=0x0202, serial="S1", interface_class=9)
    d = printer.descriptor
    assert (d.vendor_id, d.product_id, d.serial) == (0x04B8, 0x0202, "S1")
    assert d.interfaces[0][0].interface_class == 9
    assert printer.serial == "S1"
    assert repr(printer) == "<VirtualPrinter 04b8:0202 serial='S1'>"


def test_port_status_follows_paper_offline_and_error():
    printer = VirtualPrinter()
    assert printer.port_status == 0x18
    printer.set_paper_out()
    assert printer.port_status == 0x38
    printer.set_offline()
    assert printer.port_status == 0x28
    printer.set_error()
    assert printer.port_status == 0x20
    printer.set_paper_out(False)
    printer.set_offline(False)
    assert printer.port_status == 0x10
    printer.set_error(False)
    assert printer.port_status == 0x18
    assert printer.control(*GET_PORT_STATUS, 0, 0, 1) == b"\x18"


def test_control_answers_device_id_truncated_to_the_requested_length():
    printer = VirtualPrinter(device_id="MFG:A;")
    assert printer.control(*GET_DEVICE_ID, 0, 0, 4) == b"\x00\x08MF"
    assert printer.control(*GET_DEVICE_ID, 0, 0, 0) == b""


@pytest.mark.parametrize("request_type", [0x23, 0x21])
def test_soft_reset_counts_and_drops_queued_read_back_data(request_type):
    printer = VirtualPrinter()
    printer.send_to_host(b"stale")
    assert printer.control(request_type, 2, 0, 0, b"") == 0
    assert printer.resets == 1
    assert printer.service(IN, 1024, b"", 0.0, 0.0) is None


def test_hp_channel_request_echoes_the_channel():
    assert VirtualPrinter().control(0xC1, 0, 3, 0, 1) == b"\x03"


def test_unsupported_control_request_stalls():
    with pytest.raises(TransferFailed) as info:
        VirtualPrinter().control(0x40, 9, 0, 0, b"")
    assert info.value.status == -errno.EPIPE


def test_set_interface_accepts_only_existing_alt_settings():
    printer = VirtualPrinter()
    printer.set_interface(0, 1)
    for number, alternate in [(0, 2), (1, 0)]:
        with pytest.raises(TransferFailed) as info:
            printer.set_interface(number, alternate)
        assert info.value.status == -errno.EPIPE


def test_bulk_out_accepts_the_payload():
    printer = VirtualPrinter()
    assert printer.service(OUT, 3, b"abc", 0.0, 0.0) == Completion(0, 3)
    assert printer.service(OUT, 2, b"de", 0.0, 0.0) == Completion(0, 2)
    assert printer.received == b"abcde"


@pytest.mark.parametrize("state", ["paper", "offline", "suspended"])
def test_bulk_out_naks_while_out_of_paper_offline_or_suspended(state):
    printer = VirtualPrinter()
    {"paper": printer.set_paper_out, "offline": printer.set_offline, "suspended": printer.suspend}[
        state
    ]()
    assert printer.service(OUT, 3, b"abc", 0.0, 0.0) is None
    assert printer.received == b""


def test_hold_bulk_out_takes_its_buffers_then_naks_until_released():
    printer = VirtualPrinter()
    kicks = []
    printer.connect(lambda: kicks.append(1))
    printer.hold_bulk_out(2)  # like f_printer with two receive requests queued, no reader
    assert printer.service(OUT, 1, b"a", 0.0, 0.0) == Completion(0, 1)
    assert printer.service(OUT, 1, b"b", 0.0, 0.0) == Completion(0, 1)
    assert printer.service(OUT, 1, b"c", 0.0, 0.0) is None  # NAK: waits for a kick
    assert printer.port_status == 0x18  # still selected, unlike set_offline
    printer.release_bulk_out()
    assert kicks  # the host controller is told to look again
    assert printer.service(OUT, 1, b"c", 0.0, 0.0) == Completion(0, 1)
    assert printer.received == b"abc"


def test_hold_bulk_out_rejects_negative_buffers():
    with pytest.raises(EmulatorUsageError):
        VirtualPrinter().hold_bulk_out(-1)


def test_set_port_status_overrides_the_derived_byte_until_none():
    printer = VirtualPrinter()
    printer.set_port_status(0x28)  # "paper empty" while it still takes data
    assert printer.port_status == 0x28
    assert printer.control(0xA1, 1, 0, 0, 1) == b"\x28"
    assert printer.service(OUT, 3, b"abc", 0.0, 0.0) == Completion(0, 3)
    printer.set_port_status(None)
    assert printer.port_status == 0x18
    for bad in (-1, 256):
        with pytest.raises(EmulatorUsageError):
            printer.set_port_status(bad)


def test_latency_and_rate_give_the_earliest_completion_time():
    printer = VirtualPrinter(latency=0.5, bytes_per_second=100.0)
    assert printer.service(OUT, 50, b"x" * 50, 10.0, 10.2) == pytest.approx(11.0)
    assert printer.received == b""
    assert printer.service(OUT, 50, b"x" * 50, 10.0, 11.0) == Completion(0, 50)


def test_bulk_in_splits_a_message_on_packet_boundaries():
    printer = VirtualPrinter(speed="full")  # 64-byte packets
    assert printer.service(IN, 1024, b"", 0.0, 0.0) is None
    message = bytes(range(100))
    printer.send_to_host(message)
    printer.send_to_host(b"!")
    assert printer.service(IN, 64, b"", 0.0, 0.0) == Completion(0, 64, message[:64])
    assert printer.service(IN, 1024, b"", 0.0, 0.0) == Completion(0, 36, message[64:])
    assert printer.service(IN, 1024, b"", 0.0, 0.0) == Completion(0, 1, b"!")


def test_a_buffer_that_ends_inside_a_packet_overflows_and_loses_the_packets_rest():
    printer = VirtualPrinter(speed="full")
    printer.send_to_host(bytes(range(100)))
    printer.send_to_host(b"!")
    # 3 bytes asked, a 64-byte packet came: babble, -EOVERFLOW, the packet's rest is gone.
    assert printer.service(IN, 3, b"", 0.0, 0.0) == Completion(-errno.EOVERFLOW, 3, b"\0\1\2")
    assert printer.service(IN, 1024, b"", 0.0, 0.0) == Completion(0, 36, bytes(range(64, 100)))
    assert printer.service(IN, 3, b"", 0.0, 0.0) == Completion(0, 1, b"!")  # it fits


def test_short_fault_accepts_half_the_bytes_once():
    printer = VirtualPrinter()
    printer.inject("short")
    assert printer.service(OUT, 10, b"0123456789", 0.0, 0.0) == Completion(0, 5)
    assert printer.received == b"01234"
    assert printer.service(OUT, 2, b"ab", 0.0, 0.0) == Completion(0, 2)
    assert printer.received == b"01234ab"


@pytest.mark.parametrize(
    ("fault", "status"),
    [(Fault.STALL, -errno.EPIPE), ("epipe", -errno.EPIPE), ("eio", -errno.EPROTO)],
)
@pytest.mark.parametrize("where", ["bulk-out", "bulk-in"])
def test_bulk_fault_fails_count_transfers_then_clears(fault, status, where):
    printer = VirtualPrinter()
    printer.inject(fault, where=where, count=2)
    endpoint = OUT if where == "bulk-out" else IN
    printer.send_to_host(b"data")
    for _ in range(2):
        assert printer.service(endpoint, 4, b"data", 0.0, 0.0) == Completion(status)
    if where == "bulk-out":
        assert printer.service(endpoint, 4, b"data", 0.0, 0.0) == Completion(0, 4)
        assert printer.received == b"data"
    else:
        assert printer.service(endpoint, 4, b"", 0.0, 0.0) == Completion(0, 4, b"data")
        assert printer.received == b""


def test_timeout_fault_naks_for_its_duration():
    printer = VirtualPrinter()
    printer.inject("timeout", duration=1.0)
    assert printer.service(OUT, 1, b"x", 5.0, 5.0) == pytest.approx(6.0)
    assert printer.service(OUT, 1, b"x", 5.0, 5.5) == pytest.approx(6.0)
    assert printer.received == b""
    printer.service(OUT, 1, b"x", 5.0, 6.0)  # the fault expires
    assert printer.service(OUT, 1, b"x", 5.0, 6.0) == Completion(0, 1)
    assert printer.received == b"x"


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        ("stall", -errno.EPIPE),
        ("epipe", -errno.EPIPE),
        ("eio", -errno.EPROTO),
        ("timeout", -errno.ETIMEDOUT),
        ("short", -errno.EREMOTEIO),
    ],
)
def test_control_fault_fails_one_request_and_leaves_bulk_alone(fault, status):
    printer = VirtualPrinter()
    printer.inject(fault, where="control")
    assert printer.service(OUT, 1, b"x", 0.0, 0.0) == Completion(0, 1)
    with pytest.raises(TransferFailed) as info:
        printer.control(*GET_PORT_STATUS, 0, 0, 1)
    assert info.value.status == status
    assert printer.control(*GET_PORT_STATUS, 0, 0, 1) == b"\x18"


def test_connect_twice_is_a_usage_error():
    printer = VirtualPrinter()
    printer.connect(lambda: None)
    assert printer.plugged
    with pytest.raises(EmulatorUsageError, match=r"^printer VP0001 is already plugged"):
        printer.connect(lambda: None)
    printer.disconnect()
    assert not printer.plugged


def test_state_changes_kick_the_host():
    kicks: list[int] = []
    printer = VirtualPrinter()
    printer.connect(lambda: kicks.append(1))
    printer.set_paper_out(False)
    printer.send_to_host(b"x")
    printer.resume()
    assert len(kicks) == 3


# -- through a Host ------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["stall", "epipe", "eio"])
def test_failing_bulk_out_makes_the_write_eio_and_the_next_write_works(host, fault):
    printer = VirtualPrinter()
    printer.inject(fault)
    with host.open(host.plug(printer)) as f:
        with pytest.raises(IOFailure) as info:
            f.write(b"lost")
        assert info.value.errno == errno.EIO
        assert printer.received == b""
        assert f.write(b"kept") == 4
    assert printer.received == b"kept"


def test_short_bulk_out_through_a_host_counts_only_the_accepted_bytes(host):
    printer = VirtualPrinter()
    printer.inject("short")
    data = bytes(range(100))
    with host.open(host.plug(printer)) as f:
        # usblp adds what the device accepted and sends the rest in a new URB.
        assert f.write(data) == 100
    assert printer.received == data


def test_timeout_bulk_out_completes_the_write_after_the_duration(host):
    printer = VirtualPrinter()
    printer.inject("timeout", duration=0.05)
    with host.open(host.plug(printer)) as f:
        start = time.monotonic()
        assert f.write(b"late") == 4
        assert time.monotonic() - start >= 0.04
    assert printer.received == b"late"


@pytest.mark.parametrize(
    "kwargs",
    [{"bytes_per_second": 100_000.0}, {"latency": 0.1}],
    ids=["bytes_per_second", "latency"],
)
def test_rate_and_latency_slow_a_write(host, kwargs):
    printer = VirtualPrinter(**kwargs)
    data = b"z" * 10_000  # 0.1 s at 100 kB/s
    with host.open(host.plug(printer)) as f:
        start = time.monotonic()
        assert f.write(data) == len(data)
        assert time.monotonic() - start >= 0.08
    assert printer.received == data


def test_resume_latency_slows_a_resume(host):
    printer = VirtualPrinter(resume_latency=0.1)
    host.plug(printer)
    host.suspend(printer)
    assert printer.suspended
    start = time.monotonic()
    host.resume(printer)
    assert time.monotonic() - start >= 0.08
    assert not printer.suspended


def test_received_and_plugged_follow_the_host(host):
    printer = VirtualPrinter()
    assert not printer.plugged
    minor = host.plug(printer)
    assert printer.plugged
    with host.open(minor) as f:
        f.write(b"abc")
    host.unplug(printer)
    assert not printer.plugged
    assert printer.received == b"abc"

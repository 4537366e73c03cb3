"""Conformance: every correct lifetime strategy gives the usblp behaviour of the reference.

One suite over every strategy in CORRECT_STRATEGIES (ids are the strategy names), as trio's
test_sync runs one suite over every lock. Every host a test builds is closed and checked at
teardown, so each test also proves that nothing leaked and no memory error happened.
Section numbers in comments refer to docs/lifetime.md.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.usblp_emu.conftest import managed_host
from tests.usblp_emu.usblp.pyusb_host import PyusbHost
from usblp_emu import (
    CORRECT_STRATEGIES,
    DEFAULT_DEVICE_ID,
    LPABORT,
    LPGETSTATUS,
    LPIOC_GET_BUS_ADDRESS,
    LPIOC_GET_DEVICE_ID,
    LPIOC_GET_PROTOCOLS,
    LPIOC_GET_VID_PID,
    LPIOC_HP_SET_CHANNEL,
    LPIOC_SET_PROTOCOL,
    LPIOC_SOFT_RESET,
    POLLHUP,
    POLLIN,
    POLLOUT,
    POLLWRNORM,
    BadFile,
    Busy,
    DeviceError,
    File,
    Host,
    InvalidArgument,
    IOFailure,
    NoDevice,
    NoSpace,
    NotATypewriter,
    VirtualPrinter,
    WouldBlock,
    encode_device_id,
)

# Every case runs on a plain Host (VirtualPrinter straight on the emulated bus) and through
# pyusb (VirtualPrinter -> VirtualBackend -> pyusb -> PyusbModel -> the bus): the path a real
# printer takes.
pytestmark = [
    pytest.mark.parametrize("strategy", CORRECT_STRATEGIES),
    pytest.mark.parametrize("transport", ["direct", "pyusb"]),
]

CHUNK = 8192  # usblp's largest write URB
ID_MAX = 1023  # usblp_cache_device_id_string clamps the length to [2, USBLP_DEVICE_ID_SIZE - 1]
TIMEOUT = 5.0  # seconds: generous bound for anything that must happen "soon"
DEFAULT_ID = encode_device_id(DEFAULT_DEVICE_ID)

# <asm-generic/ioctl.h>, rebuilt here so wrong-direction commands can be made.
IOC_NONE, IOC_WRITE, IOC_READ = 0, 1, 2


def ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (ord("P") << 8) | nr


def pattern(n: int) -> bytes:
    # A period prime to the chunk size, so a misplaced or repeated chunk changes the bytes.
    return bytes(i % 251 for i in range(n))


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.001)


class Worker:
    """Runs one call in a daemon thread; ``outcome()`` joins with a timeout and fails on a hang."""

    def __init__(self, fn: Callable[[], Any], name: str) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), name=name, daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.result = fn()
        except BaseException as exc:
            self.error = exc

    def alive_after(self, seconds: float) -> bool:
        self._thread.join(seconds)
        return self._thread.is_alive()

    def outcome(self, timeout: float = TIMEOUT) -> Any:
        self._thread.join(timeout)
        if self._thread.is_alive():
            pytest.fail(f"thread {self._thread.name} still running after {timeout} s")
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture
def host(strategy: str, transport: str) -> Iterator[Host]:
    with managed_host(strategy, transport) as h:
        yield h


@pytest.fixture
def make_host(strategy: str, transport: str) -> Iterator[Callable[..., Host]]:
    with contextlib.ExitStack() as stack:
        yield lambda **kwargs: stack.enter_context(managed_host(strategy, transport, **kwargs))


def plugged(host: Host, **printer_kwargs: Any) -> tuple[VirtualPrinter, int]:
    printer = VirtualPrinter(**printer_kwargs)
    return printer, host.plug(printer)


def wait_readable(f: File) -> None:
    wait_until(lambda: bool(f.poll() & POLLIN), "POLLIN")


def wait_writable(f: File) -> None:
    wait_until(lambda: bool(f.poll() & POLLOUT), "POLLOUT")


def wait_write_pending(f: File) -> None:
    # A submitted, unfinished chunk clears wcomplete, which is what POLLOUT reports.
    wait_until(lambda: not f.poll() & POLLOUT, "a write chunk in flight")


# -- open ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("minor", [0, 7, 15, 16, -1])
def test_open_of_an_unused_minor_is_enodev(host, minor):
    with pytest.raises(NoDevice) as info:
        host.open(minor)
    assert info.value.errno == errno.ENODEV


def test_open_of_an_unused_minor_is_enodev_while_another_is_bound(host):
    _, minor = plugged(host)
    assert minor == 0
    with pytest.raises(NoDevice) as info:
        host.open(1)
    assert info.value.errno == errno.ENODEV


def test_open_after_unplug_is_enodev(host):
    printer, minor = plugged(host)
    host.unplug(printer)
    with pytest.raises(NoDevice) as info:
        host.open(minor)
    assert info.value.errno == errno.ENODEV


def test_second_open_is_ebusy_and_the_first_file_keeps_working(host):
    printer, minor = plugged(host)
    with host.open(minor) as f:
        with pytest.raises(Busy) as info:
            host.open(minor)
        assert info.value.errno == errno.EBUSY
        assert f.write(b"still mine") == 10
    assert printer.received == b"still mine"


def test_close_then_reopen_works(host):
    printer, minor = plugged(host)
    with host.open(minor) as f:
        assert f.write(b"first ") == 6
    with host.open(minor) as f:
        assert f.write(b"second") == 6
        printer.send_to_host(b"back")
        wait_readable(f)
        assert f.read(16) == b"back"
    assert printer.received == b"first second"


# -- write ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, CHUNK, CHUNK + 1, 3 * CHUNK + 17])
def test_write_returns_byte_count_and_printer_receives_exact_bytes(host, size):
    printer, minor = plugged(host)
    data = pattern(size)
    with host.open(minor) as f:
        assert f.write(data) == size
    assert printer.received == data


def test_zero_byte_write_returns_zero_and_sends_nothing(host):
    printer, minor = plugged(host)
    with host.open(minor) as f:
        assert f.write(b"") == 0
        assert f.write(b"x") == 1
        assert f.write(b"") == 0
    assert printer.received == b"x"


def test_nonblocking_write_out_of_paper_counts_the_chunk_then_would_block(host):
    printer, minor = plugged(host)
    data = pattern(CHUNK + 100)
    printer.set_paper_out()
    with host.open(minor, nonblock=True) as f:
        # The in-flight chunk counts as written ("presume it will complete well").
        assert f.write(data) == CHUNK
        assert not f.poll() & POLLOUT
        for attempt in (b"more", b""):
            with pytest.raises(WouldBlock) as info:
                f.write(attempt)
            assert info.value.errno == errno.EAGAIN
        assert printer.received == b""
        printer.set_paper_out(False)
        wait_writable(f)
        assert printer.received == data[:CHUNK]
        assert f.write(data[CHUNK:]) == 100
        wait_writable(f)
    assert printer.received == data


def test_blocking_zero_byte_write_drains_the_pending_chunk(host):
    printer, minor = plugged(host)
    printer.set_paper_out()
    with host.open(minor, nonblock=True) as f:
        assert f.write(b"abc") == 3
        f.nonblock = False  # fcntl(F_SETFL) without O_NONBLOCK
        drain = Worker(lambda: f.write(b""), "drainer")
        assert drain.alive_after(0.05), "a 0-byte write returned while a chunk was pending"
        printer.set_paper_out(False)
        assert drain.outcome() == 0
        assert printer.received == b"abc"


def test_blocked_writer_woken_by_unplug_gets_enodev_or_eio(host):
    printer, minor = plugged(host)
    printer.set_paper_out()
    with host.open(minor) as f:
        writer = Worker(lambda: f.write(pattern(2 * CHUNK)), "writer")
        wait_write_pending(f)
        host.unplug(printer)
        # Nothing reached the printer, so no byte count: the URB fails first (EIO) or
        # disconnect wins the race (ENODEV).
        with pytest.raises((NoDevice, IOFailure)) as info:
            writer.outcome()
        assert info.value.errno in (errno.ENODEV, errno.EIO)
        # The URB failed with -ESHUTDOWN while present was still 1: before disconnect ran.
        # Through pyusb the transfer's failure and the hub's disconnect race (as on real
        # hardware), so the completion may come after disconnect and print nothing.
        if not isinstance(host, PyusbHost):
            assert "usblp0: nonzero write bulk status received: -108" in host.log
        with pytest.raises(NoDevice):
            f.write(b"later")
    assert printer.received == b""


def test_writer_unplugged_mid_transfer_returns_bytes_the_printer_accepted(host):
    # About 50 ms a chunk: the write is still going when the first chunk has landed.
    printer, minor = plugged(host, bytes_per_second=CHUNK * 20)
    data = pattern(40 * CHUNK)
    with host.open(minor) as f:
        writer = Worker(lambda: f.write(data), "writer")
        wait_until(lambda: len(printer.received) >= CHUNK, "the first chunk to land")
        host.unplug(printer)
        try:
            written = writer.outcome()
        except (NoDevice, IOFailure):
            written = 0
    received = printer.received
    assert received == data[: len(received)]
    assert len(received) < len(data)
    # Disconnect may win the race against a chunk that already landed, never more than one.
    assert len(received) - written in (0, CHUNK)
    assert written > 0 or len(received) == CHUNK


def test_lpabort_with_paper_out_fails_a_blocked_writer_with_enospc(host):
    printer, minor = plugged(host)
    printer.set_paper_out()
    with host.open(minor, nonblock=True) as f:
        assert f.ioctl(LPABORT, 1) == 0
        assert f.write(b"a" * 100) == 100  # the chunk stays in flight
        f.nonblock = False
        start = time.monotonic()
        writer = Worker(lambda: f.write(b"b"), "writer")
        with pytest.raises(NoSpace) as info:
            writer.outcome()
        assert info.value.errno == errno.ENOSPC
        assert time.monotonic() - start >= 1.4  # only after the 1.5 s prod
    assert "usblp0: out of paper" in host.log
    assert printer.received == b""


# -- after unplug --------------------------------------------------------------------------------

EVERY_IOCTL = [
    LPIOC_GET_DEVICE_ID(1024),
    LPIOC_GET_PROTOCOLS(),
    LPIOC_SET_PROTOCOL,
    LPIOC_HP_SET_CHANNEL,
    LPIOC_GET_BUS_ADDRESS(),
    LPIOC_GET_VID_PID(),
    LPIOC_SOFT_RESET,
    LPGETSTATUS,
    LPABORT,
    ioc(IOC_WRITE, 1, 1024),  # wrong direction: EINVAL while present
    ioc(IOC_NONE, 99, 0),  # unknown 'P' command: ENOTTY while present
    0x1234,  # unknown command: ENOTTY while present
]


def test_every_call_after_unplug_is_enodev(host):
    printer, minor = plugged(host)
    with host.open(minor) as f:
        host.unplug(printer)
        calls: list[tuple[str, Callable[[], object]]] = [
            ("write", lambda: f.write(b"x")),
            ("write 0", lambda: f.write(b"")),
            ("read", lambda: f.read(10)),
        ]
        calls += [(f"ioctl {cmd:#x}", functools.partial(f.ioctl, cmd, 2)) for cmd in EVERY_IOCTL]
        for name, call in calls:
            with pytest.raises(NoDevice) as info:
                call()
            assert info.value.errno == errno.ENODEV, name


def test_poll_after_unplug_has_pollhup(host):
    printer, minor = plugged(host)
    with host.open(minor) as f:
        assert not f.poll() & POLLHUP
        host.unplug(printer)
        assert f.poll() & POLLHUP


def test_blocked_reader_woken_by_unplug_gets_enodev_or_eio(host):
    printer, minor = plugged(host)
    with host.open(minor) as f:
        reader = Worker(lambda: f.read(10), "reader")
        host.unplug(printer)
        with pytest.raises((NoDevice, IOFailure)) as info:
            reader.outcome()
        assert info.value.errno in (errno.ENODEV, errno.EIO)
        assert "usblp0: nonzero read bulk status received: -108" in host.log
        with pytest.raises(NoDevice):
            f.read(10)


# -- poll and read -------------------------------------------------------------------------------


@pytest.mark.parametrize("bidirectional", [True, False], ids=["bidir", "unidir"])
def test_poll_on_a_fresh_open_is_writable_only(host, bidirectional):
    _, minor = plugged(host, bidirectional=bidirectional)
    with host.open(minor) as f:
        assert f.poll() == POLLOUT | POLLWRNORM


def test_pollin_once_the_printer_sent_data_and_read_returns_it(host):
    printer, minor = plugged(host)
    with host.open(minor) as f:
        assert not f.poll() & POLLIN
        printer.send_to_host(b"status: ready")
        wait_readable(f)
        assert f.read(100) == b"status: ready"
        assert not f.poll() & POLLIN  # the buffer was consumed and a new read submitted


def test_read_returns_at_most_size_and_the_rest_next(host):
    printer, minor = plugged(host)
    with host.open(minor) as f:
        printer.send_to_host(b"0123456789")
        wait_readable(f)
        assert f.read(4) == b"0123"
        assert f.poll() & POLLIN
        assert f.read(100) == b"456789"
        printer.send_to_host(b"next")
        wait_readable(f)
        assert f.read(100) == b"next"


def test_read_on_a_unidirectional_printer_is_einval_even_after_unplug(host):
    printer, minor = plugged(host, bidirectional=False)
    with host.open(minor) as f:
        with pytest.raises(InvalidArgument) as info:
            f.read(10)
        assert info.value.errno == errno.EINVAL
        host.unplug(printer)
        with pytest.raises(InvalidArgument) as info:
            f.read(10)
        assert info.value.errno == errno.EINVAL


def test_nonblocking_read_with_nothing_is_eagain(host):
    printer, minor = plugged(host)
    with host.open(minor, nonblock=True) as f:
        with pytest.raises(WouldBlock) as info:
            f.read(10)
        assert info.value.errno == errno.EAGAIN
        printer.send_to_host(b"now")
        wait_readable(f)
        assert f.read(10) == b"now"


def test_read_urb_error_gives_eio_then_the_next_read_works(host):
    printer, minor = plugged(host)
    printer.inject("eio", where="bulk-in")
    with host.open(minor) as f:  # open submits the read URB the fault fails
        wait_readable(f)
        with pytest.raises(IOFailure) as info:
            f.read(10)
        assert info.value.errno == errno.EIO
        assert not f.poll() & POLLIN  # the failed read was resubmitted
        printer.send_to_host(b"recovered")
        wait_readable(f)
        assert f.read(10) == b"recovered"


# -- release frees -------------------------------------------------------------------------------


def test_release_after_unplug_frees_the_struct_and_logs_removed(host):
    printer, minor = plugged(host)
    f = host.open(minor)
    f.write(b"x")
    host.unplug(printer)
    assert f.poll() & POLLHUP  # the struct outlives the device while the file is open
    assert "usblp0: removed" not in host.log
    assert host.heap.statistics().live > 0
    f.close()
    wait_until(lambda: "usblp0: removed" in host.log, "the struct to be freed")
    wait_until(lambda: host.heap.statistics().live == 0, "every object to be freed")
    host.check()


def test_unplug_of_a_closed_device_frees_it(host):
    printer, minor = plugged(host)
    with host.open(minor) as f:
        f.write(b"x")
    assert host.heap.statistics().live > 0
    host.unplug(printer)
    wait_until(lambda: "usblp0: removed" in host.log, "the struct to be freed")
    wait_until(lambda: host.heap.statistics().live == 0, "every object to be freed")
    assert host.log.count("usblp0: removed") == 1


# -- ioctl: device ID ----------------------------------------------------------------------------


def test_get_device_id_returns_the_prefixed_id(host):
    _, minor = plugged(host)
    with host.open(minor) as f:
        assert f.ioctl(LPIOC_GET_DEVICE_ID(1024)) == DEFAULT_ID
        assert DEFAULT_ID[:2] == (len(DEFAULT_DEVICE_ID) + 2).to_bytes(2, "big")


@pytest.mark.parametrize("size", [0, 1, 2, 10, len(DEFAULT_ID) - 1])
def test_get_device_id_truncates_to_the_buffer_length(host, size):
    _, minor = plugged(host)
    with host.open(minor) as f:
        assert f.ioctl(LPIOC_GET_DEVICE_ID(size)) == DEFAULT_ID[:size]


@pytest.mark.parametrize("fault", ["stall", "timeout", "eio"])
def test_get_device_id_requeries_the_device_each_call(host, fault):
    printer, minor = plugged(host)
    with host.open(minor) as f:
        assert f.ioctl(LPIOC_GET_DEVICE_ID(1024)) == DEFAULT_ID
        printer.inject(fault, where="control")
        with pytest.raises(IOFailure) as info:
            f.ioctl(LPIOC_GET_DEVICE_ID(1024))
        assert info.value.errno == errno.EIO
        assert f.ioctl(LPIOC_GET_DEVICE_ID(1024)) == DEFAULT_ID


def _zero_padded(raw: bytes, length: int) -> bytes:
    return raw[:length] + bytes(max(0, length - len(raw)))


LE_ID = (len(DEFAULT_DEVICE_ID) + 2).to_bytes(2, "little") + DEFAULT_DEVICE_ID.encode()
LONG_ID = (2000).to_bytes(2, "big") + b"A" * 1998

# (raw answer, buffer length, what the ioctl returns): the length is the big-endian prefix,
# clamped to [2, 1023]; bytes past what the device sent are zero.
MALFORMED_IDS = {
    "empty answer": (b"", 1024, b"\0\0"),
    "one byte": (b"\x00", 1024, b"\0\0"),
    "length 0": (b"\x00\x00MFG:X;", 1024, b"\x00\x00"),
    "length 1": (b"\x00\x01MFG:X;", 1024, b"\x00\x01"),
    "length cuts text": (b"\x00\x05MFG:X;", 1024, b"\x00\x05MFG"),
    "length past answer": (b"\x00\x40MFG:X;", 1024, _zero_padded(b"\x00\x40MFG:X;", 64)),
    "length 1023": (b"\x03\xffMFG:X;", 1024, _zero_padded(b"\x03\xffMFG:X;", ID_MAX)),
    "length 1024": (b"\x04\x00MFG:X;", 1024, _zero_padded(b"\x04\x00MFG:X;", ID_MAX)),
    "length 0xffff": (b"\xff\xffMFG:X;", 1024, _zero_padded(b"\xff\xffMFG:X;", ID_MAX)),
    "length 0xffff small buffer": (b"\xff\xffMFG:X;", 6, b"\xff\xffMFG:"),
    "little-endian": (LE_ID, 1024, _zero_padded(LE_ID, ID_MAX)),
    "answer longer than buffer": (LONG_ID, 4096, LONG_ID[:ID_MAX]),
}


@pytest.mark.parametrize(
    ("raw", "size", "expected"), list(MALFORMED_IDS.values()), ids=list(MALFORMED_IDS)
)
def test_get_device_id_of_malformed_answers_clamps_the_length(make_host, raw, size, expected):
    host = make_host()
    _, minor = plugged(host, device_id=raw)  # probe ignores a bad ID and binds anyway
    with host.open(minor) as f:
        assert f.ioctl(LPIOC_GET_DEVICE_ID(size)) == expected


# -- ioctl: protocols ----------------------------------------------------------------------------

PROTOCOL_CASES = {
    "default (1, 2)": ({}, (2, 0b110)),
    "unidirectional": ({"bidirectional": False}, (1, 0b10)),
    "(1, 2, 3)": ({"protocols": (1, 2, 3)}, (2, 0b1110)),
    "(1, 3)": ({"protocols": (1, 3)}, (1, 0b1010)),
    "(3, 2)": ({"protocols": (3, 2)}, (2, 0b1100)),
    "(3,)": ({"protocols": (3,)}, (3, 0b1000)),
}


@pytest.mark.parametrize(
    ("printer_kwargs", "expected"), list(PROTOCOL_CASES.values()), ids=list(PROTOCOL_CASES)
)
def test_get_protocols_reports_current_and_supported_mask(host, printer_kwargs, expected):
    _, minor = plugged(host, **printer_kwargs)
    with host.open(minor) as f:
        assert f.ioctl(LPIOC_GET_PROTOCOLS()) == expected


def test_set_protocol_1_makes_the_printer_unidirectional(host):
    printer, minor = plugged(host)
    with host.open(minor) as f:
        assert f.ioctl(LPIOC_SET_PROTOCOL, 1) == 0
        assert f.ioctl(LPIOC_GET_PROTOCOLS()) == (1, 0b110)
        with pytest.raises(InvalidArgument) as info:
            f.read(10)
        assert info.value.errno == errno.EINVAL
        assert not f.poll() & POLLIN
        assert f.write(b"proto 1") == 7
    assert printer.received == b"proto 1"


@pytest.mark.parametrize("protocol", [0, 3, 4, -1])
def test_set_protocol_unsupported_is_einval_and_keeps_the_current(host, protocol):
    printer, minor = plugged(host)
    with host.open(minor) as f:
        with pytest.raises(InvalidArgument) as info:
            f.ioctl(LPIOC_SET_PROTOCOL, protocol)
        assert info.value.errno == errno.EINVAL
        assert f.ioctl(LPIOC_GET_PROTOCOLS()) == (2, 0b110)
        assert f.write(b"ok") == 2
    assert printer.received == b"ok"


def test_set_protocol_does_not_resubmit_the_read(host):
    printer, minor = plugged(host)
    with host.open(minor) as f:
        assert f.ioctl(LPIOC_SET_PROTOCOL, 1) == 0  # kills the read URB
        assert f.ioctl(LPIOC_SET_PROTOCOL, 2) == 0
        assert f.ioctl(LPIOC_GET_PROTOCOLS()) == (2, 0b110)
        # The killed read's status is what the next read sees; that read resubmits.
        with pytest.raises(IOFailure) as info:
            f.read(10)
        assert info.value.errno == errno.EIO
        printer.send_to_host(b"bidir again")
        wait_readable(f)
        assert f.read(20) == b"bidir again"


# -- ioctl: the rest -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vendor_id", "product_id"),
    [(0x1D6B, 0x0104), (0x03F0, 0x0004), (0x03F0, 0x0104)],
    ids=["not-hp", "hp-quirk-bidir-895c", "hp-quirk-bidir-880c"],
)
def test_hp_set_channel_is_einval_unless_hp_without_quirk_bidir(host, vendor_id, product_id):
    _, minor = plugged(host, vendor_id=vendor_id, product_id=product_id)
    with host.open(minor) as f:
        with pytest.raises(InvalidArgument) as info:
            f.ioctl(LPIOC_HP_SET_CHANNEL, 1)
        assert info.value.errno == errno.EINVAL


def test_hp_set_channel_on_an_hp_printer_sends_the_vendor_request(host):
    printer, minor = plugged(host, vendor_id=0x03F0, product_id=0x1234)
    with host.open(minor) as f:
        assert f.ioctl(LPIOC_HP_SET_CHANNEL, 2) == 0
        printer.inject("stall", where="control")
        with pytest.raises(IOFailure) as info:  # proves the request reached the device
            f.ioctl(LPIOC_HP_SET_CHANNEL, 2)
        assert info.value.errno == errno.EIO


def test_get_bus_address_and_vid_pid_are_two_ints(host):
    _, first = plugged(host, vendor_id=0x04F9, product_id=0x0042)
    _, second = plugged(host, serial="VP0002")
    with host.open(first) as f:
        assert f.ioctl(LPIOC_GET_BUS_ADDRESS()) == (1, 2)  # devnum 1 is the root hub
        assert f.ioctl(LPIOC_GET_VID_PID()) == (0x04F9, 0x0042)
    with host.open(second) as f:
        bus, dev = f.ioctl(LPIOC_GET_BUS_ADDRESS())
        assert (type(bus), type(dev)) == (int, int)
        assert (bus, dev) == (1, 3)
        assert f.ioctl(LPIOC_GET_VID_PID()) == (0x1D6B, 0x0104)


def test_soft_reset_returns_zero_and_reaches_the_printer(host):
    printer, minor = plugged(host)
    with host.open(minor) as f:
        assert printer.resets == 0
        assert f.ioctl(LPIOC_SOFT_RESET) == 0
        assert printer.resets == 1
        assert f.ioctl(LPIOC_SOFT_RESET) == 0
        assert printer.resets == 2


def test_soft_reset_returns_the_raw_usb_error(host):
    printer, minor = plugged(host)
    with host.open(minor) as f:
        printer.inject("stall", where="control")
        with pytest.raises(DeviceError) as info:
            f.ioctl(LPIOC_SOFT_RESET)
        assert info.value.errno == errno.EPIPE
        assert printer.resets == 0


STATUS_CASES = {
    "ready": ((), 0x18),
    "paper out": (("paper",), 0x38),
    "offline": (("offline",), 0x08),
    "error": (("error",), 0x10),
    "all three": (("paper", "offline", "error"), 0x20),
}


@pytest.mark.parametrize(
    ("conditions", "expected"), list(STATUS_CASES.values()), ids=list(STATUS_CASES)
)
def test_lpgetstatus_returns_the_port_status_byte(host, conditions, expected):
    printer, minor = plugged(host)
    setters = {
        "paper": printer.set_paper_out,
        "offline": printer.set_offline,
        "error": printer.set_error,
    }
    with host.open(minor) as f:
        for condition in conditions:
            setters[condition]()
        assert f.ioctl(LPGETSTATUS) == expected


def test_lpgetstatus_failure_is_eio(host):
    printer, minor = plugged(host)
    with host.open(minor) as f:
        printer.inject("eio", where="control")
        with pytest.raises(IOFailure) as info:
            f.ioctl(LPGETSTATUS)
        assert info.value.errno == errno.EIO
        assert f.ioctl(LPGETSTATUS) == 0x18


WRONG_DIRECTION = {
    "GET_DEVICE_ID write": ioc(IOC_WRITE, 1, 1024),
    "GET_DEVICE_ID none": ioc(IOC_NONE, 1, 0),
    "GET_PROTOCOLS write": ioc(IOC_WRITE, 2, 8),
    "SET_PROTOCOL read": ioc(IOC_READ, 3, 4),
    "HP_SET_CHANNEL read": ioc(IOC_READ, 4, 4),
    "GET_BUS_ADDRESS none": ioc(IOC_NONE, 5, 8),
    "GET_VID_PID write": ioc(IOC_WRITE, 6, 8),
    "SOFT_RESET read": ioc(IOC_READ, 7, 0),
    "GET_PROTOCOLS 4-byte buffer": ioc(IOC_READ, 2, 4),
}


@pytest.mark.parametrize("cmd", list(WRONG_DIRECTION.values()), ids=list(WRONG_DIRECTION))
def test_wrong_direction_ioctl_is_einval(host, cmd):
    printer, minor = plugged(host)
    with host.open(minor) as f:
        with pytest.raises(InvalidArgument) as info:
            f.ioctl(cmd, 1)
        assert info.value.errno == errno.EINVAL
    assert printer.resets == 0


@pytest.mark.parametrize(
    "cmd", [0x1234, ioc(IOC_NONE, 99, 0), ioc(IOC_READ, 0, 8), 0x0601], ids=hex
)
def test_unknown_ioctl_is_enotty(host, cmd):
    _, minor = plugged(host)
    with host.open(minor) as f:
        with pytest.raises(NotATypewriter) as info:
            f.ioctl(cmd)
        assert info.value.errno == errno.ENOTTY


# -- probe ---------------------------------------------------------------------------------------


def test_probe_logs_the_binding(host):
    plugged(host)
    plugged(host, bidirectional=False, serial="VP0002", vendor_id=0x04F9, product_id=0x0042)
    assert host.log == [
        "usblp0: USB Bidirectional printer dev 2 if 0 alt 1 proto 2 vid 0x1D6B pid 0x0104",
        "usblp1: USB Unidirectional printer dev 3 if 0 alt 0 proto 1 vid 0x04F9 pid 0x0042",
    ]


def test_quirk_bidir_printer_is_unidirectional(host):
    printer, minor = plugged(host, vendor_id=0x03F0, product_id=0x0004)
    assert any("Disabling reads from problematic bidirectional printer" in m for m in host.log)
    assert any(m.startswith("usblp0: USB Unidirectional printer") for m in host.log)
    with host.open(minor) as f:
        assert f.ioctl(LPIOC_GET_PROTOCOLS()) == (2, 0b110)
        printer.send_to_host(b"ignored")
        with pytest.raises(InvalidArgument) as info:
            f.read(10)
        assert info.value.errno == errno.EINVAL
        assert not f.poll() & POLLIN
        assert f.write(b"ok") == 2


@pytest.mark.parametrize("interface_class", [0xFF, 6, 8])
def test_non_printer_class_does_not_bind(host, interface_class):
    printer = VirtualPrinter(interface_class=interface_class)
    with pytest.raises(NoDevice) as info:
        host.plug(printer)
    assert info.value.errno == errno.ENODEV
    assert host.minor_of(printer) is None
    assert printer.plugged  # plugged in, unbound
    with pytest.raises(NoDevice):
        host.open(0)
    assert host.log == []


def test_bad_class_quirk_binds_a_vendor_class_printer(host):
    printer, minor = plugged(host, vendor_id=0x04B8, product_id=0x0202, interface_class=0xFF)
    assert minor == 0
    with host.open(minor) as f:
        assert f.write(b"receipt") == 7
    assert printer.received == b"receipt"


def test_sixteen_printers_get_minors_0_to_15_and_the_17th_does_not_bind(host):
    printers = [VirtualPrinter(serial=f"VP{i:04d}") for i in range(17)]
    assert [host.plug(p) for p in printers[:16]] == list(range(16))
    with pytest.raises(NoDevice) as info:
        host.plug(printers[16])
    assert info.value.errno == errno.ENODEV
    assert host.minor_of(printers[16]) is None
    host.unplug(printers[5])
    assert host.plug(VirtualPrinter(serial="VP0099")) == 5  # a freed minor is reused


def test_proto_bias_1_picks_protocol_1(make_host):
    host = make_host(proto_bias=1)
    _, minor = plugged(host)
    assert "alt 0 proto 1" in host.log[0]
    with host.open(minor) as f:
        assert f.ioctl(LPIOC_GET_PROTOCOLS()) == (1, 0b110)
        with pytest.raises(InvalidArgument):
            f.read(10)


def test_proto_bias_for_a_missing_protocol_falls_back_to_2(make_host):
    host = make_host(proto_bias=3)
    _, minor = plugged(host)
    with host.open(minor) as f:
        assert f.ioctl(LPIOC_GET_PROTOCOLS()) == (2, 0b110)


def test_probe_ignores_a_device_id_error(host):
    printer = VirtualPrinter()
    printer.inject("stall", where="control")
    minor = host.plug(printer)
    with host.open(minor) as f:
        assert f.ioctl(LPIOC_GET_DEVICE_ID(1024)) == DEFAULT_ID


# -- replug, suspend, closed files ---------------------------------------------------------------


def test_replug_after_unplug_gives_a_working_device(host):
    printer, minor = plugged(host)
    with host.open(minor) as f:
        f.write(b"one ")
    host.unplug(printer)
    assert host.plug(printer) == minor
    with host.open(minor) as f:
        assert f.write(b"two") == 3
        printer.send_to_host(b"hello again")
        wait_readable(f)
        assert f.read(20) == b"hello again"
    assert printer.received == b"one two"


def test_suspend_resume_with_an_open_file_then_read_works(host):
    if isinstance(host, PyusbHost):
        pytest.skip("pyusb cannot suspend a device: USB power management is the kernel's")
    printer, minor = plugged(host)
    with host.open(minor) as f:
        host.suspend(printer)
        assert printer.suspended
        assert f.poll() & POLLIN  # the killed read URB completed
        host.resume(printer)
        assert not printer.suspended
        assert not f.poll() & POLLIN  # resume submitted a new read
        printer.send_to_host(b"after resume")
        wait_readable(f)
        assert f.read(20) == b"after resume"
        assert f.write(b"still printing") == 14
    assert printer.received == b"still printing"


def test_operations_on_a_closed_file_are_ebadf_and_close_is_idempotent(host):
    _, minor = plugged(host)
    f = host.open(minor)
    f.close()
    f.close()
    assert f.closed
    operations: list[Callable[[], object]] = [
        lambda: f.write(b"x"),
        lambda: f.write(b""),
        lambda: f.read(1),
        f.poll,
        lambda: f.ioctl(LPGETSTATUS),
        lambda: f.ioctl(0x1234),
    ]
    for op in operations:
        with pytest.raises(BadFile) as info:
            op()
        assert info.value.errno == errno.EBADF
    with host.open(minor) as again:  # the one release freed the minor for a new open
        assert again.poll() & POLLOUT

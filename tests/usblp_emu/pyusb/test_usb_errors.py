"""pyusb errors become typed DeviceErrors; PyusbPrinter.write counts short returns; _ms."""

from __future__ import annotations

import errno
from collections.abc import Callable

import pytest
import usb.core

from usblp_emu._errors import (
    AccessDenied,
    Busy,
    DeviceError,
    EmulatorUsageError,
    IOFailure,
    NoDevice,
    Stalled,
    TimedOut,
)
from usblp_emu._pyusb import _transport as _pyusb_device
from usblp_emu._pyusb._transport import (
    DEFAULT_CHUNK,
    PrinterInterface,
    PyusbPrinter,
    _ms,
    translate_usb_error,
)

# libusb's own codes, as pyusb's libusb1 backend passes them with the errno.
LIBUSB_ERROR_IO = -1
LIBUSB_ERROR_ACCESS = -3
LIBUSB_ERROR_NO_DEVICE = -4
LIBUSB_ERROR_BUSY = -6
LIBUSB_ERROR_TIMEOUT = -7
LIBUSB_ERROR_OVERFLOW = -8
LIBUSB_ERROR_PIPE = -9
LIBUSB_ERROR_OTHER = -99


def usb_error(code: int | None, backend_code: int = LIBUSB_ERROR_OTHER) -> usb.core.USBError:
    return usb.core.USBError(f"libusb error {backend_code}", backend_code, code)


def timeout_error() -> usb.core.USBError:
    return usb.core.USBTimeoutError("Operation timed out", LIBUSB_ERROR_TIMEOUT, errno.ETIMEDOUT)


def check(error: DeviceError, cls: type[DeviceError], code: int) -> None:
    assert type(error) is cls
    assert error.errno == code
    assert isinstance(error, DeviceError)
    assert not isinstance(error, usb.core.USBError)


@pytest.fixture
def no_holders(monkeypatch):
    """holders() must not look at the real /sys and /proc in these tests."""
    calls: list[tuple[int, int]] = []

    def fake(bus: int, address: int) -> list[str]:
        calls.append((bus, address))
        return []

    monkeypatch.setattr(_pyusb_device, "holders", fake)
    return calls


# -- translate_usb_error ------------------------------------------------------------------


def test_enodev_is_no_device():
    error = translate_usb_error(usb_error(errno.ENODEV, LIBUSB_ERROR_NO_DEVICE), "writing")
    check(error, NoDevice, errno.ENODEV)
    assert "writing" in str(error)
    assert "unplugged" in str(error)
    assert error.remedy is None


def test_eio_from_a_device_that_is_gone_is_no_device():
    error = translate_usb_error(usb_error(errno.EIO, LIBUSB_ERROR_IO), "reading", gone=True)
    check(error, NoDevice, errno.ENODEV)
    assert "reading" in str(error)


def test_eio_from_a_device_still_there_is_an_io_failure():
    error = translate_usb_error(usb_error(errno.EIO, LIBUSB_ERROR_IO), "reading", gone=False)
    check(error, IOFailure, errno.EIO)
    assert "reading" in str(error)
    assert "libusb error -1" in str(error)  # pyusb's message is kept


@pytest.mark.parametrize("code", [errno.EPIPE, errno.EACCES, errno.EOVERFLOW])
def test_gone_wins_over_any_errno(code):
    check(translate_usb_error(usb_error(code), "x", gone=True), NoDevice, errno.ENODEV)


@pytest.mark.parametrize(
    ("vendor_id", "product_id", "ids"),
    [(0x04B8, 0x0202, ("04b8", "0202")), (0x1, 0xAB, ("0001", "00ab"))],
)
def test_eacces_is_access_denied_with_the_udev_rule(vendor_id, product_id, ids):
    error = translate_usb_error(
        usb_error(errno.EACCES, LIBUSB_ERROR_ACCESS),
        "opening interface 0",
        bus=1,
        address=4,
        vendor_id=vendor_id,
        product_id=product_id,
    )
    check(error, AccessDenied, errno.EACCES)
    assert "opening interface 0" in str(error)
    assert error.remedy is not None
    assert f'ATTR{{idVendor}}=="{ids[0]}"' in error.remedy
    assert f'ATTR{{idProduct}}=="{ids[1]}"' in error.remedy
    assert "uaccess" in error.remedy
    assert "udevadm" in error.remedy


def test_eacces_without_ids_gives_the_generic_printer_rule():
    error = translate_usb_error(usb_error(errno.EACCES, LIBUSB_ERROR_ACCESS), "opening")
    check(error, AccessDenied, errno.EACCES)
    assert error.remedy is not None
    assert "ID_USB_INTERFACES" in error.remedy
    assert "0701" in error.remedy
    assert "uaccess" in error.remedy
    assert "idVendor" not in error.remedy


def test_ebusy_names_who_holds_the_device(monkeypatch):
    asked: list[tuple[int, int]] = []

    def fake_holders(bus: int, address: int) -> list[str]:
        asked.append((bus, address))
        return ["ipp-usb (pid 42)"]

    monkeypatch.setattr(_pyusb_device, "holders", fake_holders)
    error = translate_usb_error(
        usb_error(errno.EBUSY, LIBUSB_ERROR_BUSY), "claiming interface 0", bus=1, address=4
    )
    check(error, Busy, errno.EBUSY)
    assert asked == [(1, 4)]
    assert error.remedy is not None
    assert "ipp-usb (pid 42)" in error.remedy
    assert error.remedy == "held by ipp-usb (pid 42); stop it or unbind it first"


def test_ebusy_lists_every_holder(monkeypatch):
    monkeypatch.setattr(
        _pyusb_device,
        "holders",
        lambda bus, address: ["kernel driver usblp (interface 0)", "ipp-usb (pid 42)"],
    )
    error = translate_usb_error(usb_error(errno.EBUSY), "claiming", bus=1, address=4)
    assert error.remedy == (
        "held by kernel driver usblp (interface 0), ipp-usb (pid 42); stop it or unbind it first"
    )


def test_ebusy_with_no_known_holder_gives_the_generic_text(no_holders):
    error = translate_usb_error(usb_error(errno.EBUSY), "claiming", bus=1, address=4)
    check(error, Busy, errno.EBUSY)
    assert no_holders == [(1, 4)]
    assert error.remedy == "another program or kernel driver holds it (ipp-usb? cups? usblp?)"


@pytest.mark.parametrize(("bus", "address"), [(None, None), (1, None), (None, 4)])
def test_ebusy_without_a_location_does_not_look_for_holders(no_holders, bus, address):
    error = translate_usb_error(usb_error(errno.EBUSY), "claiming", bus=bus, address=address)
    check(error, Busy, errno.EBUSY)
    assert no_holders == []
    assert error.remedy is not None
    assert "another program" in error.remedy


def test_epipe_is_stalled():
    error = translate_usb_error(usb_error(errno.EPIPE, LIBUSB_ERROR_PIPE), "soft reset")
    check(error, Stalled, errno.EPIPE)
    assert "soft reset" in str(error)


def test_a_usb_timeout_is_timed_out():
    error = translate_usb_error(timeout_error(), "writing at byte 0")
    check(error, TimedOut, errno.ETIMEDOUT)
    assert "writing at byte 0" in str(error)


def test_a_timeout_without_an_errno_is_still_timed_out():
    exc = usb.core.USBTimeoutError("Operation timed out", LIBUSB_ERROR_TIMEOUT)
    assert exc.errno is None
    check(translate_usb_error(exc, "writing"), TimedOut, errno.ETIMEDOUT)


def test_a_plain_usb_error_with_etimedout_is_timed_out():
    check(translate_usb_error(usb_error(errno.ETIMEDOUT), "writing"), TimedOut, errno.ETIMEDOUT)


@pytest.mark.parametrize("code", [None, 0])
def test_no_errno_is_an_io_failure(code):
    exc = usb_error(code, LIBUSB_ERROR_OTHER)
    assert not exc.errno
    error = translate_usb_error(exc, "reading the Device ID")
    check(error, IOFailure, errno.EIO)
    assert "reading the Device ID" in str(error)


@pytest.mark.parametrize("code", [errno.EOVERFLOW, errno.EPROTO, errno.ENOSYS])
def test_an_unusual_errno_keeps_its_errno(code):
    error = translate_usb_error(usb_error(code, LIBUSB_ERROR_OVERFLOW), "reading")
    assert isinstance(error, DeviceError)
    assert not isinstance(error, usb.core.USBError)
    assert error.errno == code
    assert "reading" in str(error)


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (errno.ENOMEM, "OutOfMemory"),
        (errno.EINVAL, "InvalidArgument"),
        (errno.EINTR, "Interrupted"),
    ],
)
def test_other_known_errnos_get_their_leaf(code, cls):
    error = translate_usb_error(usb_error(code), "x")
    assert type(error).__name__ == cls
    assert error.errno == code


def test_the_exception_passed_in_is_not_returned_or_modified():
    exc = usb_error(errno.EIO, LIBUSB_ERROR_IO)
    error = translate_usb_error(exc, "x")
    assert error is not exc
    assert exc.errno == errno.EIO
    assert exc.backend_error_code == LIBUSB_ERROR_IO


# -- PyusbPrinter.write, without hardware -------------------------------------------------

IFACE = PrinterInterface(
    configuration=1,
    config_index=0,
    interface=0,
    alternate=0,
    protocol=2,
    ep_out=0x01,
    ep_in=0x82,
)

Step = int | BaseException | None


class FakeDevice:
    """Just what write(), write_once() and _error() touch on a usb.core.Device."""

    bus = 1
    address = 4
    idVendor = 0x04B8  # pyusb's name
    idProduct = 0x0202  # pyusb's name

    def __init__(self, steps: list[Step] | None = None) -> None:
        # Each write takes the next step: None accepts it all, an int accepts that many
        # bytes, an exception is raised. Once the steps run out every write is accepted.
        self.steps = list(steps or [])
        self.calls: list[tuple[int, bytes, int]] = []
        self.cleared: list[int] = []

    def clear_halt(self, endpoint: int) -> None:
        self.cleared.append(endpoint)

    def write(self, endpoint: int, data: memoryview, timeout: int) -> int:
        self.calls.append((endpoint, bytes(data), timeout))
        step = self.steps.pop(0) if self.steps else None
        if isinstance(step, BaseException):
            raise step
        return len(data) if step is None else step

    @property
    def sent(self) -> bytes:
        return b"".join(data for _, data, _ in self.calls)


def make_printer(
    monkeypatch: pytest.MonkeyPatch,
    device: FakeDevice,
    *,
    present: bool = True,
    opened: PrinterInterface | None = IFACE,
) -> PyusbPrinter:
    printer = object.__new__(PyusbPrinter)
    printer.device = device
    printer._backend = None
    printer.interfaces = (IFACE,)
    printer._strings = {}
    printer._open = opened
    printer._reattach = False
    monkeypatch.setattr(printer, "present", lambda: present)
    monkeypatch.setattr(_pyusb_device, "holders", lambda bus, address: [])
    return printer


def recorder() -> tuple[list[int], Callable[[int], None]]:
    seen: list[int] = []
    return seen, seen.append


def test_the_fake_printer_looks_like_the_real_one(monkeypatch):
    printer = make_printer(monkeypatch, FakeDevice())
    assert printer.name == "bus 1 address 4 (04b8:0202)"
    assert printer.opened is IFACE


def test_data_is_split_into_chunks_of_chunk_size(monkeypatch):
    device = FakeDevice()
    printer = make_printer(monkeypatch, device)
    data = bytes(range(256)) * 80  # 20480 bytes
    seen, progress = recorder()
    assert printer.write(data, chunk_size=8000, timeout=2.5, progress=progress) == len(data)
    assert [len(d) for _, d, _ in device.calls] == [8000, 8000, 4480]
    assert device.sent == data
    assert {ep for ep, _, _ in device.calls} == {IFACE.ep_out}
    assert {ms for _, _, ms in device.calls} == {2500}
    assert seen == [8000, 16000, 20480]


def test_the_default_chunk_is_8_kib_and_no_timeout_waits_for_ever(monkeypatch):
    device = FakeDevice()
    printer = make_printer(monkeypatch, device)
    data = b"x" * (DEFAULT_CHUNK * 2 + 1)
    assert printer.write(data) == len(data)
    assert DEFAULT_CHUNK == 8192
    assert [len(d) for _, d, _ in device.calls] == [8192, 8192, 1]
    assert {ms for _, _, ms in device.calls} == {0}


def test_an_exact_multiple_makes_no_empty_last_transfer(monkeypatch):
    device = FakeDevice()
    printer = make_printer(monkeypatch, device)
    assert printer.write(b"a" * 16, chunk_size=8) == 16
    assert [len(d) for _, d, _ in device.calls] == [8, 8]


def test_empty_data_makes_no_transfer(monkeypatch):
    device = FakeDevice()
    printer = make_printer(monkeypatch, device)
    seen, progress = recorder()
    assert printer.write(b"", progress=progress) == 0
    assert device.calls == []
    assert seen == []


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_bytes_like_data_is_accepted(monkeypatch, kind):
    device = FakeDevice()
    printer = make_printer(monkeypatch, device)
    data = b"hello printer"
    assert printer.write(kind(data), chunk_size=5) == len(data)
    assert device.sent == data


def test_the_data_is_copied_before_sending(monkeypatch):
    # A caller's bytearray changed during the write must not change what is sent.
    buffer = bytearray(b"aaaabbbb")
    device = FakeDevice()
    printer = make_printer(monkeypatch, device)

    def progress(total: int) -> None:
        buffer[:] = b"zzzzzzzz"

    printer.write(buffer, chunk_size=4, progress=progress)
    assert device.sent == b"aaaabbbb"


def test_a_short_return_raises_timed_out_with_the_bytes_accepted_and_resends_nothing(
    monkeypatch,
):
    device = FakeDevice([None, 100])
    printer = make_printer(monkeypatch, device)
    data = bytes(range(250)) * 20  # 5000 bytes
    seen, progress = recorder()
    with pytest.raises(TimedOut) as info:
        printer.write(data, chunk_size=1000, timeout=1.0, progress=progress)
    error = info.value
    check(error, TimedOut, errno.ETIMEDOUT)
    assert error.written == 1100
    assert "1100" in str(error)
    assert len(device.calls) == 2  # stopped at the short return
    assert device.calls[1][1] == data[1000:2000]  # the second chunk was offered once
    assert seen == [1000, 1100]


def test_a_short_return_of_zero_counts_nothing_more(monkeypatch):
    device = FakeDevice([None, None, 0])
    printer = make_printer(monkeypatch, device)
    with pytest.raises(TimedOut) as info:
        printer.write(b"x" * 100, chunk_size=10)
    assert info.value.written == 20
    assert len(device.calls) == 3


def test_a_short_return_on_the_last_chunk_is_still_an_error(monkeypatch):
    device = FakeDevice([None, 3])
    printer = make_printer(monkeypatch, device)
    with pytest.raises(TimedOut) as info:
        printer.write(b"x" * 15, chunk_size=10)  # last chunk is 5 bytes, 3 accepted
    assert info.value.written == 13


@pytest.mark.parametrize(
    ("exc", "cls", "code"),
    [
        (usb_error(errno.EPIPE, LIBUSB_ERROR_PIPE), Stalled, errno.EPIPE),
        (usb_error(errno.ENODEV, LIBUSB_ERROR_NO_DEVICE), NoDevice, errno.ENODEV),
        (timeout_error(), TimedOut, errno.ETIMEDOUT),
        (usb_error(None, LIBUSB_ERROR_OTHER), IOFailure, errno.EIO),
    ],
)
def test_a_usb_error_mid_job_raises_the_translated_error_with_written(monkeypatch, exc, cls, code):
    stalls = code == errno.EPIPE  # a stall is cleared and retried once: it must come twice
    device = FakeDevice([None, None, exc, exc] if stalls else [None, None, exc])
    printer = make_printer(monkeypatch, device)
    seen, progress = recorder()
    with pytest.raises(DeviceError) as info:
        printer.write(b"y" * 5000, chunk_size=1000, progress=progress)
    error = info.value
    check(error, cls, code)
    assert error.written == 2000
    assert "writing at byte 2000" in str(error)
    assert seen == [1000, 2000]  # no progress for the failed transfer
    assert len(device.calls) == (4 if stalls else 3)  # nothing after the error
    assert device.cleared == ([0x01] if stalls else [])
    assert error.__cause__ is None
    assert error.__suppress_context__ is True  # raised "from None": no pyusb traceback


def test_one_stall_is_cleared_and_the_chunk_sent_again(monkeypatch):
    device = FakeDevice([None, usb_error(errno.EPIPE, LIBUSB_ERROR_PIPE)])
    printer = make_printer(monkeypatch, device)
    assert printer.write(b"s" * 3000, chunk_size=1000) == 3000
    assert device.cleared == [0x01]
    assert device.sent == b"s" * 4000  # the stalled transfer took nothing; sent again


def test_a_usb_error_on_the_first_chunk_has_written_zero(monkeypatch):
    device = FakeDevice([usb_error(errno.EPIPE), usb_error(errno.EPIPE)])
    printer = make_printer(monkeypatch, device)
    with pytest.raises(Stalled) as info:
        printer.write(b"z" * 10)
    assert info.value.written == 0


@pytest.mark.parametrize("code", [errno.EIO, errno.EPROTO])
def test_eio_or_eproto_mid_job_from_an_unplugged_printer_is_no_device(monkeypatch, code):
    device = FakeDevice([None, usb_error(code)])
    printer = make_printer(monkeypatch, device, present=False)
    with pytest.raises(NoDevice) as info:
        printer.write(b"q" * 20, chunk_size=10)
    check(info.value, NoDevice, errno.ENODEV)
    assert info.value.written == 10


def test_eio_mid_job_from_a_printer_still_there_is_an_io_failure(monkeypatch):
    device = FakeDevice([None, usb_error(errno.EIO, LIBUSB_ERROR_IO)])
    printer = make_printer(monkeypatch, device, present=True)
    with pytest.raises(IOFailure) as info:
        printer.write(b"q" * 20, chunk_size=10)
    check(info.value, IOFailure, errno.EIO)
    assert info.value.written == 10


def test_a_busy_error_mid_job_gets_the_holders_of_this_device(monkeypatch):
    device = FakeDevice([usb_error(errno.EBUSY)])
    printer = make_printer(monkeypatch, device)
    asked: list[tuple[int, int]] = []

    def fake_holders(bus: int, address: int) -> list[str]:
        asked.append((bus, address))
        return ["ipp-usb (pid 42)"]

    monkeypatch.setattr(_pyusb_device, "holders", fake_holders)
    with pytest.raises(Busy) as info:
        printer.write(b"q")
    assert asked == [(1, 4)]
    assert info.value.remedy is not None
    assert "ipp-usb (pid 42)" in info.value.remedy
    assert info.value.written == 0


def test_an_access_error_mid_job_gets_the_rule_for_this_device(monkeypatch):
    device = FakeDevice([usb_error(errno.EACCES)])
    printer = make_printer(monkeypatch, device)
    with pytest.raises(AccessDenied) as info:
        printer.write(b"q")
    assert info.value.remedy is not None
    assert '"04b8"' in info.value.remedy
    assert '"0202"' in info.value.remedy


def test_write_through_a_patched_write_once(monkeypatch):
    printer = make_printer(monkeypatch, FakeDevice())
    offered: list[tuple[bytes, float | None]] = []
    answers = iter([4, 4, 2])

    def write_once(data: bytes | memoryview, timeout: float | None) -> int:
        offered.append((bytes(data), timeout))
        return next(answers)

    monkeypatch.setattr(printer, "write_once", write_once)
    seen, progress = recorder()
    with pytest.raises(TimedOut) as info:
        printer.write(b"abcdefghijkl", chunk_size=4, timeout=0.5, progress=progress)
    assert offered == [(b"abcd", 0.5), (b"efgh", 0.5), (b"ijkl", 0.5)]
    assert info.value.written == 10
    assert seen == [4, 8, 10]


@pytest.mark.parametrize("chunk_size", [0, -1, -8192])
def test_a_chunk_size_of_zero_or_less_is_a_usage_error(monkeypatch, chunk_size):
    device = FakeDevice()
    printer = make_printer(monkeypatch, device)
    with pytest.raises(EmulatorUsageError, match="chunk_size must be > 0"):
        printer.write(b"data", chunk_size=chunk_size)
    assert device.calls == []


def test_a_chunk_size_of_zero_is_refused_even_for_empty_data(monkeypatch):
    printer = make_printer(monkeypatch, FakeDevice())
    with pytest.raises(EmulatorUsageError):
        printer.write(b"", chunk_size=0)


def test_writing_to_a_printer_not_open_is_a_usage_error(monkeypatch):
    device = FakeDevice()
    printer = make_printer(monkeypatch, device, opened=None)
    with pytest.raises(EmulatorUsageError, match="is not open"):
        printer.write(b"data")
    assert device.calls == []


def test_a_negative_timeout_is_a_usage_error_before_anything_is_sent(monkeypatch):
    device = FakeDevice()
    printer = make_printer(monkeypatch, device)
    with pytest.raises(EmulatorUsageError, match="timeout must be >= 0"):
        printer.write(b"data", timeout=-1)
    assert device.calls == []


def test_write_once_sends_one_transfer_to_the_out_endpoint(monkeypatch):
    device = FakeDevice([7])
    printer = make_printer(monkeypatch, device)
    assert printer.write_once(b"0123456789", 0.25) == 7
    assert device.calls == [(IFACE.ep_out, b"0123456789", 250)]


def test_write_once_lets_pyusb_errors_through_untranslated(monkeypatch):
    exc = usb_error(errno.EPIPE)
    printer = make_printer(monkeypatch, FakeDevice([exc]))
    with pytest.raises(usb.core.USBError) as info:
        printer.write_once(b"x", None)
    assert info.value is exc


# -- _ms ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "ms"),
    [
        (None, 0),  # pyusb's "for ever"
        (0.0001, 1),  # tiny but positive: must not become "for ever"
        (0.0004, 1),
        (0, 1),  # zero seconds is "as short as possible", not "for ever"
        (0.0, 1),
        (0.001, 1),
        (0.002, 2),
        (0.25, 250),
        (1, 1000),
        (2.5, 2500),
        (60, 60000),
    ],
)
def test_ms(seconds, ms):
    result = _ms(seconds)
    assert result == ms
    assert type(result) is int


@pytest.mark.parametrize("seconds", [-0.0001, -1, -1e9])
def test_ms_rejects_negative_timeouts(seconds):
    with pytest.raises(EmulatorUsageError, match="timeout must be >= 0 seconds or None"):
        _ms(seconds)

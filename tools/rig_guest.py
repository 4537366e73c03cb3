#!/usr/bin/env python3
"""Helpers for commands that run inside the kernel rig's guest (see tools/kernel_rig.py).

Import it as ``tools.rig_guest`` (the repository root on ``sys.path``); it uses the standard library
only. In the guest, ``/dev/usb/lp0`` is usblp's node for a configfs printer gadget on dummy_hcd, and
``/dev/g_printer0`` is the gadget's side of the same printer: what the host writes to lp0 is read
there. Everything here is the guest's root (the command runs as root).

- ``unplug(method)`` pulls the printer off the bus, in one of ``UNPLUG_METHODS`` ways;
  ``replug()`` plugs it back in (a full reset of the virtual bus).
- ``gadget_drain()`` / ``GadgetSink`` read what the device received; ``gadget_prime()`` makes
  the gadget accept data without a reader (the rig does it once at boot and ``replug`` again).
- ``gadget_set_status()`` sets the byte GET_PORT_STATUS answers (usblp's LPGETSTATUS).
- ``device_id()`` / ``port_status()`` are usblp's LPIOC_GET_DEVICE_ID and LPGETSTATUS.
- ``modprobe()`` / ``rmmod()`` load and unload the guest kernel's modules (the host has no
  /lib/modules for that kernel: its modules live in the rig's cache, ``RIG_MODULES``).

``python tools/rig_guest.py selftest`` checks all of it and prints one JSON object (the kernel
test tier runs it; ``--methods`` picks unplug methods).

What an unplug does to a writer blocked in usblp's write() (kernel 6.1.0-56-amd64 under TCG,
11 selftest boots, each unplugging a 1 MiB write once the gadget's 80 KiB of buffers were full;
the write first returns the 81920 bytes it got through, then fails):

- ``port-disable``: EIO 11 of 11;
- ``remove``: EIO 11 of 11;
- ``soft-disconnect``: EIO 9, ENODEV 2;
- ``unbind``: EIO 10, ENODEV 1;
- ``rmmod-hcd``: EIO 10, ENODEV 1.

EIO when the killed URB's completion (-ESHUTDOWN, or -EPROTO from dummy_hcd) reaches usblp
before its disconnect clears ``present``, ENODEV the other way round: a race, so a test must
accept both (``EXPECTED_FIRST_ERRNO``). After usblp's disconnect has returned, every write and
ioctl on the old file gives ENODEV and an open gives ENOENT (the node is gone). In the short
window between the node's removal and the end of disconnect a write still gets EIO and an
LPGETSTATUS EIO: wait for the USB device to leave sysfs, as the selftest does, to be past it.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import fcntl
import json
import os
import select
import struct
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

# Run as a script (python tools/NAME.py), sys.path has tools/: add the root, so the kernel's
# numbers (usblp_emu._abi, standard library only like this module) import.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from usblp_emu._abi import (
    GADGET_GET_PRINTER_STATUS,
    GADGET_SET_PRINTER_STATUS,
    LPGETSTATUS,
    LPIOC_GET_DEVICE_ID,
)

# f_printer's status bits (<linux/usb/g_printer.h>) are the GET_PORT_STATUS byte's.
from usblp_emu._abi import LP_PERRORP as PRINTER_NOT_ERROR
from usblp_emu._abi import LP_POUTPA as PRINTER_PAPER_EMPTY
from usblp_emu._abi import LP_PSELECD as PRINTER_SELECTED

LP0 = "/dev/usb/lp0"
GADGET_DEV = "/dev/g_printer0"
UDC = "dummy_udc.0"
USB_DEVICES = Path("/sys/bus/usb/devices")

UNPLUG_METHODS = ("port-disable", "remove", "soft-disconnect", "unbind", "rmmod-hcd")
EXPECTED_FIRST_ERRNO = frozenset({errno.EIO, errno.ENODEV})


def in_guest() -> bool:
    """True inside the rig's guest (the rig sets ``RIG_GUEST=1``)."""
    return os.environ.get("RIG_GUEST") == "1"


def gadget_dir() -> Path:
    """The configfs gadget the rig built."""
    return Path(os.environ.get("RIG_GADGET", "/sys/kernel/config/usb_gadget/rig"))


def _write(path: str | Path, text: str) -> None:
    """One write() of ``text`` to a sysfs or configfs attribute."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def wait_for(
    path: str | Path, timeout: float = 10.0, *, gone: bool = False, interval: float = 0.02
) -> None:
    """Wait until ``path`` exists (or, with ``gone``, no longer does); TimeoutError if not."""
    deadline = time.monotonic() + timeout
    while os.path.exists(path) == gone:
        if time.monotonic() >= deadline:
            state = "still there" if gone else "not there"
            raise TimeoutError(f"{path} {state} after {timeout:g} s")
        time.sleep(interval)


# --- modules --------------------------------------------------------------------------------


def module_name(path: str) -> str:
    """``kernel/drivers/usb/gadget/udc/udc-core.ko`` -> ``udc_core`` (the kernel's spelling)."""
    return Path(path).name.split(".ko")[0].replace("-", "_")


def read_modules_dep(modules: Path) -> dict[str, tuple[str, list[str]]]:
    """modules.dep as {module name: (path relative to ``modules``, [paths of dependencies])}."""
    table: dict[str, tuple[str, list[str]]] = {}
    for line in (modules / "modules.dep").read_text().splitlines():
        path, sep, rest = line.partition(":")
        if sep:
            table[module_name(path)] = (path, rest.split())
    return table


def load_order(deps: Mapping[str, tuple[str, list[str]]], names: Sequence[str]) -> list[str]:
    """Module paths to load for ``names``, every dependency before its user.

    busybox depmod does not write modules.dep in kmod's order, so this sorts by itself.
    KeyError names a module that modules.dep does not know.
    """
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name not in seen:
            seen.add(name)
            path, needs = deps[name]
            for need in needs:
                visit(module_name(need))
            order.append(path)

    for name in names:
        visit(name)
    return order


_SYS_FINIT_MODULE = 313  # x86-64 syscall numbers
_SYS_DELETE_MODULE = 176


def _syscall(number: int, *args: object) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(number, *args) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def modprobe(name: str) -> None:
    """Load module ``name`` and its dependencies from the rig's modules (``RIG_MODULES``).

    Done with finit_module(2) directly: the host root the guest runs has no modprobe that
    knows where this kernel's modules are, and no process start is cheaper under emulation.
    """
    modules = Path(os.environ.get("RIG_MODULES", f"/lib/modules/{os.uname().release}"))
    for rel in load_order(read_modules_dep(modules), [name.replace("-", "_")]):
        if Path("/sys/module", module_name(rel)).exists():
            continue  # loaded (or built in)
        fd = os.open(modules / rel, os.O_RDONLY)
        try:
            _syscall(_SYS_FINIT_MODULE, fd, b"", 0)
        except FileExistsError:
            pass  # loaded meanwhile
        finally:
            os.close(fd)


def rmmod(name: str, timeout: float = 10.0) -> None:
    """Unload module ``name``, retrying while it is still in use (a disconnect finishing)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _syscall(_SYS_DELETE_MODULE, name.replace("-", "_").encode(), os.O_NONBLOCK)
            return
        except FileNotFoundError:
            return  # not loaded
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EBUSY) or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


# --- plugging -------------------------------------------------------------------------------


def printer_device() -> str:
    """The sysfs name of the printer on dummy_hcd's bus, e.g. ``1-1``."""
    names = sorted(
        p.name
        for p in USB_DEVICES.glob("[0-9]*-*")
        if ":" not in p.name and (p / "idVendor").exists()
    )
    if not names:
        raise FileNotFoundError("no USB device on the bus (is the gadget bound?)")
    return names[0]


def unplug(method: str) -> None:
    """Pull the printer off the bus; returns once the trigger is written.

    ``port-disable``: disable the root hub's port (``usbN-portM/disable``), the hub driver
    disconnects the device. ``remove``: the device's sysfs ``remove``. ``soft-disconnect``:
    ``disconnect`` into the UDC's ``soft_connect``, the gadget drops off the wire.
    ``unbind``: empty the gadget's ``UDC``, the gadget is unbound from dummy_udc.0 (and
    /dev/g_printer0 goes away). ``rmmod-hcd``: unbind, then unload dummy_hcd, so the host
    controller itself goes. Follow any of them with ``replug()``.
    """
    if method in ("port-disable", "remove"):
        name = printer_device()
        if method == "remove":
            _write(USB_DEVICES / name / "remove", "1")
        else:
            bus, _, port = name.partition("-")
            _write(USB_DEVICES / f"{bus}-0:1.0" / f"usb{bus}-port{port}" / "disable", "1")
    elif method == "soft-disconnect":
        _write(f"/sys/class/udc/{UDC}/soft_connect", "disconnect")
    elif method == "unbind":
        _write(gadget_dir() / "UDC", "\n")
    elif method == "rmmod-hcd":
        _unbind_gadget()
        rmmod("dummy_hcd")
    else:
        raise ValueError(f"unknown unplug method {method!r}: one of {', '.join(UNPLUG_METHODS)}")


def _unbind_gadget() -> None:
    udc = gadget_dir() / "UDC"
    if udc.exists() and udc.read_text().strip():
        _write(udc, "\n")


def replug(timeout: float = 30.0, *, wait_usblp: bool | None = None, prime: bool = True) -> None:
    """Plug the printer back in, whatever unplugged it: the full reset.

    Unbind the gadget, reload dummy_hcd, bind the gadget again. A soft_connect "connect"
    alone does not work (dummy_hcd's port does not enumerate again: error -71). Then wait for
    /dev/usb/lp0, or, when usblp is not loaded (``wait_usblp`` False), for the device in
    sysfs; and prime the gadget (``gadget_prime``) as the rig did at boot.
    """
    deadline = time.monotonic() + timeout

    def left() -> float:
        return max(0.1, deadline - time.monotonic())

    _unbind_gadget()
    wait_for(LP0, left(), gone=True)
    rmmod("dummy_hcd", left())
    modprobe("dummy_hcd")
    wait_for(f"/sys/class/udc/{UDC}", left())
    _write(gadget_dir() / "UDC", UDC)
    if wait_usblp is None:
        wait_usblp = Path("/sys/module/usblp").exists()
    if wait_usblp:
        wait_for(LP0, left())
    else:
        while True:
            try:
                printer_device()
                break
            except FileNotFoundError:
                if time.monotonic() >= deadline:
                    raise TimeoutError("the printer did not come back on the bus") from None
                time.sleep(0.02)
    if prime:
        wait_for(GADGET_DEV, left())
        gadget_prime()


# --- the gadget side ------------------------------------------------------------------------


def gadget_prime() -> None:
    """Make f_printer queue its receive requests: it does so on a read or a poll only.

    Until then the host's bulk OUT URBs are NAKed and usblp's write() blocks; after it, the
    gadget takes up to ``q_len`` 8 KiB transfers without anyone reading. Does nothing when
    /dev/g_printer0 is open elsewhere (a reader is there: f_printer allows one open).
    """
    try:
        fd = os.open(GADGET_DEV, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            return
        raise
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.poll(0)
    finally:
        os.close(fd)


def _read_available(fd: int, data: bytearray) -> bool:
    """Read what is there into ``data``; False once nothing is."""
    try:
        chunk = os.read(fd, 65536)
    except BlockingIOError:
        return False
    data += chunk
    return bool(chunk)


def gadget_drain(timeout: float = 0.5, *, expect: int | None = None) -> bytes:
    """The bytes the host wrote that the gadget has not handed out yet.

    Reads /dev/g_printer0 (non-blocking, poll-driven) until ``expect`` bytes have come, or
    until ``timeout`` seconds pass with nothing new; with ``expect`` a longer wait is fine, as
    the writer may be slow under emulation. Opening it needs nobody else to have it open
    (f_printer allows one open: EBUSY). Opening and closing it toggles PRINTER_SELECTED in
    the port status, as f_printer does.

    USB, not the rig: usblp sends no zero-length packet, so the last bytes of a write whose
    length is a multiple of 512 (the bulk packet size) but not of 8192 (f_printer's request
    size) wait in a half-filled request, unreadable here until more data comes.
    """
    fd = os.open(GADGET_DEV, os.O_RDONLY | os.O_NONBLOCK)
    data = bytearray()
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while expect is None or len(data) < expect:
            events = poller.poll(timeout * 1000)
            if not events:
                break
            if any(mask & (select.POLLERR | select.POLLHUP) for _, mask in events):
                break  # the gadget was unbound
            _read_available(fd, data)
    finally:
        os.close(fd)
    return bytes(data)


class GadgetSink:
    """A thread that keeps reading /dev/g_printer0, so the host's writes never block.

    ``with GadgetSink() as sink: ...; sink.wait(n)`` returns the first ``n`` bytes received
    (and keeps the rest); ``take()`` returns everything so far. ``set_status`` sets the port
    status while the sink holds the device open (so PRINTER_SELECTED stays as set).
    """

    def __init__(self) -> None:
        self._fd = os.open(GADGET_DEV, os.O_RDONLY | os.O_NONBLOCK)
        self._data = bytearray()
        self._cond = threading.Condition()
        self._stop = False
        self.error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="gadget-sink", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        while not self._stop:
            try:
                events = poller.poll(100)
                if not events:
                    continue
                if any(mask & (select.POLLERR | select.POLLHUP) for _, mask in events):
                    raise OSError(errno.ENODEV, "the gadget was unbound")
                chunk = bytearray()
                _read_available(self._fd, chunk)
            except OSError as exc:
                with self._cond:
                    self.error = exc
                    self._cond.notify_all()
                return
            if chunk:
                with self._cond:
                    self._data += chunk
                    self._cond.notify_all()

    def wait(self, count: int, timeout: float = 30.0) -> bytes:
        """The first ``count`` bytes received, removed from the sink; TimeoutError if not."""
        with self._cond:
            self._cond.wait_for(lambda: len(self._data) >= count or self.error is not None, timeout)
            if len(self._data) < count:
                detail = f" ({self.error})" if self.error else ""
                raise TimeoutError(f"{len(self._data)} of {count} bytes came{detail}")
            head = bytes(self._data[:count])
            del self._data[:count]
            return head

    def take(self) -> bytes:
        """Everything received and not yet taken."""
        with self._cond:
            data = bytes(self._data)
            self._data.clear()
            return data

    def set_status(self, status: int) -> None:
        """GADGET_SET_PRINTER_STATUS on the sink's open file."""
        fcntl.ioctl(self._fd, GADGET_SET_PRINTER_STATUS, status)

    def close(self) -> None:
        """Stop the thread and close the device (PRINTER_SELECTED goes off)."""
        self._stop = True
        self._thread.join()
        os.close(self._fd)

    def __enter__(self) -> GadgetSink:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def gadget_set_status(status: int) -> int:
    """Set the GET_PORT_STATUS byte; returns the gadget's status read back.

    f_printer sets PRINTER_SELECTED (0x10) when /dev/g_printer0 is opened and clears it when
    closed, so through this open-set-close the SELECTED bit ends cleared whatever ``status``
    says; use ``GadgetSink.set_status`` to keep it. The argument goes by value (f_printer
    casts the ioctl argument itself, not a pointer), and GET returns it as the ioctl result.
    """
    fd = os.open(GADGET_DEV, os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, GADGET_SET_PRINTER_STATUS, status)
    finally:
        os.close(fd)
    return gadget_get_status()


def gadget_get_status() -> int:
    """The gadget's status byte (with nobody holding the device open: SELECTED is off)."""
    fd = os.open(GADGET_DEV, os.O_RDWR | os.O_NONBLOCK)
    try:
        return fcntl.ioctl(fd, GADGET_GET_PRINTER_STATUS, 0)
    finally:
        os.close(fd)


# --- the usblp side -------------------------------------------------------------------------


def device_id_raw(path: str = LP0, size: int = 1024) -> bytes:
    """LPIOC_GET_DEVICE_ID: what usblp copies out, the 2-byte big-endian length first."""
    buf = bytearray(size)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, LPIOC_GET_DEVICE_ID(size), buf, True)
    finally:
        os.close(fd)
    length = min(int.from_bytes(buf[:2], "big"), size)
    return bytes(buf[:length])


def device_id(path: str = LP0) -> str:
    """The Device ID usblp reports (it asks the device again on every call)."""
    return device_id_raw(path)[2:].decode(errors="replace")


def port_status(path: str = LP0) -> int:
    """LPGETSTATUS: the device's GET_PORT_STATUS byte."""
    buf = bytearray(4)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, LPGETSTATUS, buf, True)
    finally:
        os.close(fd)
    return int(struct.unpack("<i", buf)[0])


def kernel_log(match: Sequence[str] = ("usb", "lp0", "printer", "dummy")) -> list[str]:
    """The kernel log lines that mention any of ``match`` (from /dev/kmsg, non-blocking)."""
    lines: list[str] = []
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    try:
        while True:
            try:
                record = os.read(fd, 8192).decode(errors="replace")
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # overwritten while reading: skip ahead
                    continue
                raise
            head, _, text = record.partition(";")
            text = text.split("\n", 1)[0]
            if any(word in text for word in match):
                stamp = int(head.split(",")[2]) / 1e6 if head.count(",") >= 2 else 0.0
                lines.append(f"[{stamp:9.3f}] {text}")
    finally:
        os.close(fd)
    return lines


# --- selftest -------------------------------------------------------------------------------


def _errname(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, str(exc.errno))


def _attempt(action: Callable[[], object]) -> str:
    """``ok`` or the errno name of what ``action`` raised."""
    try:
        action()
    except OSError as exc:
        return _errname(exc)
    return "ok"


def _pattern(size: int, seed: int) -> bytes:
    """Distinct, non-repeating bytes, so a lost or doubled 8 KiB chunk shows."""
    block = bytes((i * 7 + seed) & 0xFF for i in range(251))
    counter = b"".join(i.to_bytes(4, "big") + block for i in range(size // 255 + 1))
    return counter[:size]


def _roundtrip(size: int, seed: int) -> bool:
    """Write ``size`` bytes to lp0 while a sink reads them; byte-exact?"""
    payload = _pattern(size, seed)
    with GadgetSink() as sink:
        fd = os.open(LP0, os.O_WRONLY)
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        return sink.wait(size, 30) == payload


def _unplug_case(method: str, payload: int) -> dict[str, object]:
    """A write in flight when ``method`` unplugs: what every call sees, then a replug."""
    case: dict[str, object] = {"method": method}
    fd = os.open(LP0, os.O_WRONLY)
    writes: list[int | str] = []
    data = _pattern(payload, 3)

    def writer() -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(fd, view)
            except OSError as exc:
                writes.append(_errname(exc))
                return
            writes.append(n)
            view = view[n:]

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    time.sleep(0.5)  # the gadget's q_len buffers fill at once; then write() waits on a URB
    case["blocked"] = thread.is_alive()
    device = USB_DEVICES / printer_device()
    started = time.monotonic()
    unplug(method)
    thread.join(20)
    case["writer_returned_s"] = round(time.monotonic() - started, 3)
    case["writes"] = writes if not thread.is_alive() else [*writes, "hung"]
    errors = [w for w in writes if isinstance(w, str)]
    case["first_error"] = errors[0] if errors else None
    # usblp's disconnect has returned once the device is gone from sysfs. The node goes
    # first (usb_deregister_dev), before usblp clears 'present': a write in that window still
    # gets usblp's sticky EIO, an LPGETSTATUS a failed control transfer's EIO.
    wait_for(device, 10, gone=True)
    case["write_after"] = _attempt(lambda: os.write(fd, b"x"))
    case["ioctl_after"] = _attempt(lambda: fcntl.ioctl(fd, LPGETSTATUS, bytearray(4), True))
    case["open_after"] = _attempt(lambda: os.close(os.open(LP0, os.O_WRONLY)))
    case["close"] = _attempt(lambda: os.close(fd))
    started = time.monotonic()
    replug()
    case["replug_s"] = round(time.monotonic() - started, 3)
    case["roundtrip_after_replug"] = _roundtrip(20_000, 5)
    return case


def selftest(methods: Sequence[str] = UNPLUG_METHODS, payload: int = 1 << 20) -> dict[str, object]:
    """Check the rig from inside: Device ID, data path, every unplug method and replug.

    Returns a JSON-able report; ``report["ok"]`` is the verdict.
    """
    began = time.monotonic()
    report: dict[str, object] = {"kernel": os.uname().release}
    expected_id = os.environ.get("RIG_DEVICE_ID", "")
    got_id = device_id()
    sysfs_id = Path("/sys/class/usbmisc/lp0/device/ieee1284_id").read_text()
    report["device_id"] = {
        "expected": expected_id,
        "ioctl": got_id,
        "sysfs": sysfs_id,
        "padded": os.environ.get("RIG_PNP_PADDED"),
        "pnp": os.environ.get("RIG_PNP"),
    }
    report["port_status_closed"] = port_status()
    with GadgetSink() as sink:
        report["port_status_open"] = port_status()
        sink.set_status(PRINTER_NOT_ERROR | PRINTER_SELECTED | PRINTER_PAPER_EMPTY)
        report["port_status_set"] = port_status()
        sink.set_status(PRINTER_NOT_ERROR | PRINTER_SELECTED)
    # Small write with no reader: the boot's priming must have queued the receive requests.
    # Not a multiple of 512: the short last packet ends f_printer's 8 KiB request (usblp sends
    # no zero-length packet, so 4096 bytes would wait in a half-filled request).
    small = _pattern(4000, 1)
    fd = os.open(LP0, os.O_WRONLY)
    try:
        report["unread_write"] = os.write(fd, small)
    finally:
        os.close(fd)
    report["unread_write_exact"] = gadget_drain(2.0, expect=len(small)) == small
    started = time.monotonic()
    report["roundtrip_256k"] = _roundtrip(256 * 1024, 2)
    report["roundtrip_256k_s"] = round(time.monotonic() - started, 3)
    cases = [_unplug_case(m, payload) for m in methods]
    report["unplug"] = cases
    expected = {errno.errorcode[e] for e in EXPECTED_FIRST_ERRNO}
    report["ok"] = (
        got_id == expected_id
        and sysfs_id == expected_id
        and bool(report["unread_write_exact"])
        and bool(report["roundtrip_256k"])
        and all(
            c["first_error"] in expected
            and c["write_after"] == "ENODEV"
            and c["open_after"] in ("ENODEV", "ENOENT")
            and c["roundtrip_after_replug"]
            for c in cases
        )
    )
    report["kernel_log"] = kernel_log()[-60:]
    report["seconds"] = round(time.monotonic() - began, 3)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """``selftest`` prints the report as JSON; exit 0 if it passed."""
    parser = argparse.ArgumentParser(prog="rig_guest.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    test = sub.add_parser("selftest", help="check the rig from inside the guest")
    test.add_argument("--methods", default=",".join(UNPLUG_METHODS), help="comma-separated")
    test.add_argument("--payload", type=int, default=1 << 20, help="bytes of the cut write")
    args = parser.parse_args(argv)
    if not in_guest():
        parser.error("run this inside the kernel rig's guest (tools/kernel_rig.py run -- ...)")
    methods = [m for m in args.methods.split(",") if m]
    report = selftest(methods, args.payload)
    json.dump(report, sys.stdout, indent=1)
    print()
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

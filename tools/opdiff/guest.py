"""The guest's side, inside the QEMU rig: the script against /dev/usb/lp0 and the real usblp,
the device's side on /dev/g_printer0 (:class:`GadgetPort`), results written as JSON.

Rule: the standard library only (with :mod:`usblp_emu._abi` and :mod:`tools.rig_guest`):
Python starts slowly under TCG, and the kernel side must not depend on the emulator.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import select
import struct
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tools.opdiff.runner import Runner
from tools.opdiff.script import DEVICE_ID_MAX, IOCTLS, POLL_ASKED, RESULTS_FORMAT, parse_script
from usblp_emu._abi import (
    GADGET_SET_PRINTER_STATUS,
)

LP_NODE = "/dev/usb/lp0"
GADGET_NODE = "/dev/g_printer0"
USBLP_DRIVER = Path("/sys/bus/usb/drivers/usblp")
_PORT_FD = 200  # the gadget port's descriptor, kept away from the numbers scripts get
_FIRST_FD, _LAST_FD = 300, 900  # the numbers script descriptors get, in turn


class GadgetPort:
    """The device side: reads /dev/g_printer0 in a thread, so the printer takes data.

    The port stays open (f_printer reports "selected" only while it is) and is polled every
    50 ms; a poll queues the gadget's free receive requests (``setup_rx_reqs``). Pausing it
    drains what is buffered, queues every request, then stops reading: the host can then
    complete exactly ``q_len`` more transfers, one per request, before the device NAKs.
    """

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.data = bytearray()  # guarded by cond
        self.paused = False  # guarded by cond
        self.parked = False  # guarded by cond
        self.empty_polls = 0  # guarded by cond: polls that found nothing to read
        self.fd = -1
        self.stopping = False
        self.thread: threading.Thread | None = None

    def open(self) -> None:
        """Open the gadget's node (after a replug recreated it) and start reading."""
        fd = os.open(GADGET_NODE, os.O_RDWR | os.O_NONBLOCK)
        os.dup2(fd, _PORT_FD)
        os.close(fd)
        with self.cond:
            self.fd = _PORT_FD
            self.paused = False
            self.parked = False
            self.cond.notify_all()
        if self.thread is None:
            self.thread = threading.Thread(target=self._main, daemon=True)
            self.thread.start()

    def close(self) -> None:
        """Stop reading and close the node (before a replug destroys it)."""
        self.pause()
        with self.cond:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1

    def _main(self) -> None:
        while True:
            with self.cond:
                while self.paused or self.fd < 0:
                    if self.paused and not self.parked and self.fd >= 0:
                        self._drain_locked()
                    self.parked = True
                    self.cond.notify_all()
                    self.cond.wait()
                self.parked = False
            self._poll_once(50)

    def _poll_once(self, timeout_ms: int) -> bool:
        """One poll (which queues the free requests) and a read; whether data came."""
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        try:
            events = poller.poll(timeout_ms)
        except OSError:
            events = []
        mask = events[0][1] if events else 0
        chunk = b""
        if mask & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
            time.sleep(timeout_ms / 1000)  # a disabled gadget (unplugged): nothing will come
        elif mask & select.POLLIN:
            with contextlib.suppress(OSError):  # EAGAIN, or ENODEV from a racing unplug
                chunk = os.read(self.fd, 1 << 16)
        with self.cond:
            if chunk:
                self.data += chunk
            else:
                self.empty_polls += 1
            self.cond.notify_all()
        return bool(chunk)

    def _drain_locked(self) -> None:
        # Called with cond held: poll and read until nothing is left, so that every receive
        # request is queued again, empty.
        self.cond.release()
        try:
            while self._poll_once(0):
                pass
        finally:
            self.cond.acquire()

    def pause(self) -> None:
        """Drain, then stop reading (returns once the reader is parked)."""
        with self.cond:
            if self.paused and self.parked:
                return
            self.paused = True
            self.cond.notify_all()
            if self.fd >= 0:
                self.cond.wait_for(lambda: self.parked, timeout=30)

    def resume(self) -> None:
        """Read again."""
        with self.cond:
            self.paused = False
            self.parked = False
            self.cond.notify_all()

    def settle(self, timeout: float = 30) -> None:
        """Return once everything the host sent so far has been read."""
        with self.cond:
            if self.paused or self.fd < 0:
                return
            target = self.empty_polls + 2
            self.cond.wait_for(lambda: self.empty_polls >= target, timeout=timeout)

    def take(self) -> bytes:
        """What was read since the last take."""
        with self.cond:
            data = bytes(self.data)
            self.data.clear()
        return data

    def send(self, data: bytes) -> None:
        """Queue ``data`` for the host (the gadget's bulk IN)."""
        sent = os.write(self.fd, data)
        if sent != len(data):
            raise OSError(errno.EIO, f"the gadget took {sent} of {len(data)} bytes")

    def set_status(self, status: int) -> None:
        """Set the gadget's port status byte (GADGET_SET_PRINTER_STATUS)."""
        fcntl.ioctl(self.fd, GADGET_SET_PRINTER_STATUS, status)


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


def _usblp_bound() -> bool:
    """Whether usblp is bound to an interface (its sysfs folder links one, ``1-1:1.0``)."""
    if not USBLP_DRIVER.is_dir():
        return False
    return any(p.name[0].isdigit() for p in USBLP_DRIVER.iterdir())


class GuestTarget:
    """The real usblp driver, inside the rig: /dev/usb/lp0 and the rig's triggers."""

    def __init__(self, rig: Any) -> None:
        self.rig = rig
        self.port = GadgetPort()
        self.fds: list[int] = []
        self.next_fd = _LAST_FD
        _wait(lambda: os.path.exists(LP_NODE), 60, LP_NODE)
        _wait(lambda: os.path.exists(GADGET_NODE), 60, GADGET_NODE)
        self.port.open()

    def prepare(self) -> None:
        """Before a script: the printer plugged in and bound, the port reading, nothing owed."""
        if not os.path.exists(LP_NODE) or not _usblp_bound():
            self.replug()
        self.port.resume()
        self.port.set_status(0x18)  # selected, no error: what an open port reports
        self.port.settle()
        self.port.take()

    def open(self, nonblock: bool) -> object:
        opened = os.open(LP_NODE, os.O_RDWR | (os.O_NONBLOCK if nonblock else 0))
        # A fresh number for every open, so an operation on a closed descriptor meets EBADF
        # and never a later open that reused its number (the same struct file either way).
        self.next_fd = self.next_fd + 1 if self.next_fd < _LAST_FD else _FIRST_FD
        fd = os.dup2(opened, self.next_fd)
        os.close(opened)
        self.fds.append(fd)
        return fd

    def close(self, handle: object) -> None:
        assert isinstance(handle, int)
        if handle in self.fds:
            self.fds.remove(handle)
        os.close(handle)

    def write(self, handle: object, data: bytes) -> int:
        assert isinstance(handle, int)
        return os.write(handle, data)

    def read(self, handle: object, count: int) -> bytes:
        assert isinstance(handle, int)
        return os.read(handle, count)

    def ioctl(self, handle: object, name: str, cmd: int, arg: int) -> object:
        assert isinstance(handle, int)
        spec = IOCTLS[name]
        if name == "SOFT_RESET":
            # The gadget drops what it buffered but nobody read yet; read it all first so
            # the bytes received do not depend on the reader's timing.
            self.port.settle()
        if spec.how == "value":
            return fcntl.ioctl(handle, cmd, arg)
        if spec.how == "none":
            return fcntl.ioctl(handle, cmd, 0)
        buf = bytearray(arg)
        fcntl.ioctl(handle, cmd, buf, True)
        if name == "GET_DEVICE_ID":
            # usblp copies min(length, size) bytes; the length is clamped as usblp does.
            length = min(max(int.from_bytes(buf[:2], "big"), 2), DEVICE_ID_MAX - 1)
            return bytes(buf[: min(length, arg)])
        if name == "LPGETSTATUS":
            return int(struct.unpack("<i", buf[:4])[0])
        first, second = struct.unpack("<ii", buf[:8])
        return (int(first), int(second))

    def poll(self, handle: object) -> int:
        assert isinstance(handle, int)
        poller = select.poll()
        poller.register(handle, POLL_ASKED)
        events = poller.poll(0)
        return events[0][1] if events else 0

    def unplug(self, method: str) -> None:
        # What the device accepted before the unplug was received: let its reader take it,
        # or the disabled gadget keeps it out of reach (unless the script stalled it).
        self.port.settle()
        self.rig.unplug(method)
        # The node goes first (usb_deregister_dev), the driver lets go when disconnect has
        # returned: wait for both, so the next step sees a finished unplug, as the emulator's.
        _wait(lambda: not os.path.exists(LP_NODE), 30, f"{LP_NODE} to go")
        _wait(lambda: not _usblp_bound(), 30, "usblp to unbind")

    def replug(self) -> None:
        # The rig's replug unbinds the gadget (its node goes) and primes the new one, which
        # needs the node free (f_printer allows one open): close the port around it. The
        # re-enumerated gadget has fresh buffers, and the port reads again, stalled or not.
        self.port.close()
        self.rig.replug()
        _wait(lambda: os.path.exists(LP_NODE) and _usblp_bound(), 60, f"{LP_NODE} to come back")
        _wait(lambda: os.path.exists(GADGET_NODE), 60, f"{GADGET_NODE} to come back")
        self.port.open()

    def stall(self) -> None:
        self.port.pause()

    def resume(self) -> None:
        self.port.resume()

    def device_status(self, status: int) -> None:
        self.port.set_status(status)

    def device_send(self, data: bytes) -> None:
        self.port.send(data)

    def received(self) -> bytes:
        self.port.resume()
        self.port.settle()
        return self.port.take()

    def rescue(self) -> None:
        with contextlib.suppress(Exception):
            self.rig.unplug("remove")

    def close_all(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()


def _gadget_config() -> dict[str, int]:
    """The gadget's idVendor, idProduct and q_len, read back from configfs."""
    config: dict[str, int] = {}
    for gadget in Path("/sys/kernel/config/usb_gadget").iterdir():
        for key in ("idVendor", "idProduct"):
            with contextlib.suppress(OSError, ValueError):
                config[key] = int((gadget / key).read_text().strip(), 0)
        for function in (gadget / "functions").glob("printer.*"):
            with contextlib.suppress(OSError, ValueError):
                config["q_len"] = int((function / "q_len").read_text().strip(), 0)
    return config


def run_guest(paths: Sequence[Path], out: Path, step_timeout: float) -> int:
    """Inside the rig: run every script against the real driver; write the results to ``out``."""
    from tools import rig_guest  # the rig's, inside the guest only

    started = time.monotonic()
    scripts = [parse_script(p) for p in paths]
    config: dict[str, int | str] = {**_gadget_config()}
    config["device_id"] = os.environ.get("RIG_DEVICE_ID", "")
    # "ok": usblp read the configured ID back (the rig pads pnp_string on kernels with
    # f_printer's length bug); anything else would be the rig's difference, not usblp's.
    config["pnp"] = os.environ.get("RIG_PNP", "")
    results: list[dict[str, Any]] = []
    document: dict[str, Any] = {
        "format": RESULTS_FORMAT,
        "kernel": os.uname().release,
        "gadget": config,
        "scripts": results,
    }
    target: GuestTarget | None = None
    for script in scripts:
        wanted: dict[str, int | str] = {
            "idVendor": script.device.vid,
            "idProduct": script.device.pid,
            "q_len": script.device.q_len,
            "device_id": script.device.device_id,
            "pnp": "ok",
        }
        mismatch = {k: (v, config.get(k)) for k, v in wanted.items() if config.get(k) != v}
        if mismatch:
            raise RuntimeError(f"{script.name}: the gadget is not the script's device: {mismatch}")
        if target is None:
            target = GuestTarget(rig_guest)
        target.prepare()
        result = Runner(target, step_timeout).run(script)
        results.append(result.to_json())
        print(f"{script.name}: {len(result.steps)} steps in {result.seconds:.1f} s", flush=True)
        out.write_text(json.dumps(document, indent=1))  # partial results survive a crash
    document["seconds"] = time.monotonic() - started
    out.write_text(json.dumps(document, indent=1))
    return 0

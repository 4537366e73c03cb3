"""The emulator's side: a script run on ``Host(strategy="static-mutex")`` with a VirtualPrinter
configured like the rig's gadget (one alt setting, protocol 2, ``q_len`` receive buffers)."""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

from tools.opdiff.runner import Runner, ScriptResult
from tools.opdiff.script import POLL_ASKED, Device, Script
from usblp_emu._abi import (
    POLLERR,
    POLLHUP,
    POLLNVAL,
)


class _EmuFd:
    """A descriptor: the emulator's File is the kernel's struct file, this is the fd table's
    slot (so a second close is EBADF, as close(2) gives)."""

    def __init__(self, file: Any) -> None:
        self.file = file
        self.closed = False


class EmuTarget:
    """The emulator: a Host (static-mutex, as mainline) and a VirtualPrinter like the gadget.

    The gadget (f_printer) has one interface with one alt setting, protocol 2, bulk IN and
    OUT; its port status reads 0x18 while /dev/g_printer0 is open (the rig keeps it open).

    Args:
        device: the script's device.
        host_factory: builds the Host (tests pass broken ones as negative controls).

    """

    def __init__(self, device: Device, host_factory: Callable[[], Any] | None = None) -> None:
        from usblp_emu import Host, VirtualPrinter

        self.device = device
        self.host = host_factory() if host_factory is not None else Host(strategy="static-mutex")
        self.printer = VirtualPrinter(
            device.device_id, protocols=(2,), vendor_id=device.vid, product_id=device.pid
        )
        self.minor = self.host.plug(self.printer)
        self.fds: list[_EmuFd] = []

    def open(self, nonblock: bool) -> object:
        fd = _EmuFd(self.host.open(self.minor, nonblock=nonblock))
        self.fds.append(fd)
        return fd

    @staticmethod
    def _fd(handle: object) -> _EmuFd:
        assert isinstance(handle, _EmuFd)
        return handle

    def close(self, handle: object) -> None:
        fd = self._fd(handle)
        if fd.closed:
            raise OSError(errno.EBADF, "descriptor already closed")
        fd.closed = True
        fd.file.close()

    def write(self, handle: object, data: bytes) -> int:
        return int(self._fd(handle).file.write(data))

    def read(self, handle: object, count: int) -> bytes:
        return bytes(self._fd(handle).file.read(count))

    def ioctl(self, handle: object, name: str, cmd: int, arg: int) -> object:
        value = self._fd(handle).file.ioctl(cmd, arg)
        if name == "GET_DEVICE_ID":
            return bytes(value)
        return tuple(value) if isinstance(value, tuple) else int(value)

    def poll(self, handle: object) -> int:
        fd = self._fd(handle)
        if fd.closed:
            return POLLNVAL  # what poll(2) says of a descriptor that is not open
        return int(fd.file.poll()) & (POLL_ASKED | POLLERR | POLLHUP)

    def unplug(self, method: str) -> None:
        del method  # the emulated core has one unplug: URBs fail, then disconnect
        self.host.unplug(self.printer)

    def replug(self) -> None:
        # A re-enumerated gadget starts with fresh receive buffers.
        self.printer.release_bulk_out()
        self.minor = self.host.plug(self.printer)

    def stall(self) -> None:
        self.printer.hold_bulk_out(self.device.q_len)

    def resume(self) -> None:
        self.printer.release_bulk_out()

    def device_status(self, status: int) -> None:
        self.printer.set_port_status(status)

    def device_send(self, data: bytes) -> None:
        self.printer.send_to_host(data)

    def received(self) -> bytes:
        return bytes(self.printer.received)

    def rescue(self) -> None:
        self.host.unplug(self.printer)

    def close_all(self) -> None:
        for fd in self.fds:
            if not fd.closed:
                fd.closed = True
                fd.file.close()

    def finish(self) -> str:
        """Close the host; the heap's verdict (``clean`` or the first error)."""
        self.host.close()
        try:
            self.host.check()
        except Exception as exc:  # any checker's error is the verdict, whatever its type
            return f"{type(exc).__name__}: {exc}"
        return "clean"


def run_emulator(
    script: Script, step_timeout: float = 10.0, host_factory: Callable[[], Any] | None = None
) -> ScriptResult:
    """Run ``script`` on a fresh emulator; the result includes the heap's verdict."""
    target = EmuTarget(script.device, host_factory)
    try:
        result = Runner(target, step_timeout).run(script)
    finally:
        verdict = target.finish()
    result.check = verdict
    return result

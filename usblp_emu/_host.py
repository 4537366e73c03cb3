"""Host: a USB bus with the usblp driver under one lifetime strategy, and its open files.

Rules and invariants:
- Plug and unplug run under the host's hub lock, one at a time, as the kernel's hub thread
  runs them; they may be called from any thread, and an unplug may land in the middle of any
  file operation.
- A File is the kernel's ``struct file``: the driver's release runs when the file is closed
  and no operation on it is still running (the VFS's fput), never twice.
- The host owns threads (the host controller, RCU's callback thread): ``close()`` unplugs
  every printer, stops them and finishes deferred frees. After it, ``check()`` reports what
  the heap and the checkers saw.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from hazard import AtomicInt, HazardError, Heap, Lock, RefcountViolation
from usblp_emu._abi import PRINTER_PROTOCOLS
from usblp_emu._core._descriptors import DeviceModel
from usblp_emu._core._usbcore import UsbCore, UsbDev
from usblp_emu._errors import BadFile, EmulatorUsageError, NoDevice, error_from_errno
from usblp_emu._usblp._driver import Usblp, UsblpDriver
from usblp_emu._usblp._strategies import STRATEGIES

__all__ = ["File", "Host"]

# What plug() checks a device model has (DeviceModel is a Protocol, not a base class).
_MODEL_METHODS = ("descriptor", "connect", "disconnect", "control", "service", "cancel")


class Host:
    """The USB core, the usblp driver and an emulated heap, under one lifetime strategy.

    Args:
        strategy: "static-mutex", "rcu", "hazard", "hazard-prototype" or "unprotected".
        minor_rwsem: keep the USB core's minor rwsem backstop (held across open, taken for
            writing by deregistration); False shows what the driver alone guarantees.
        heap: the heap to allocate on (default: a new one).
        proto_bias: usblp's module parameter: the preferred protocol.

    Raises:
        EmulatorUsageError: an unknown strategy or a bad argument.

    """

    def __init__(
        self,
        strategy: str = "static-mutex",
        *,
        minor_rwsem: bool = True,
        heap: Heap | None = None,
        proto_bias: int | None = None,
    ) -> None:
        cls = STRATEGIES.get(strategy)
        if cls is None:
            names = ", ".join(STRATEGIES)
            raise EmulatorUsageError(f"unknown strategy {strategy!r}; choose from {names}")
        if proto_bias is not None and proto_bias not in PRINTER_PROTOCOLS:
            raise EmulatorUsageError(f"proto_bias must be 1, 2 or 3, not {proto_bias!r}")
        self.strategy = strategy
        self.heap = heap if heap is not None else Heap(f"usblp-emu[{strategy}]")
        self.errors: list[BaseException] = []  # completion-handler errors the controller saw
        self.core: UsbCore[UsblpDriver] = UsbCore(
            self.heap,
            lambda core: UsblpDriver(core, cls, proto_bias),
            minor_rwsem=minor_rwsem,
            errors=self.errors,
        )
        self.driver = self.core.driver
        self._hub = Lock("hub")
        self._plugged: dict[int, tuple[DeviceModel, UsbDev]] = {}  # guarded by _hub
        self._closed = False  # guarded by _hub

    @property
    def log(self) -> list[str]:
        """The kernel log lines the driver printed."""
        return self.driver.log

    # -- hotplug -------------------------------------------------------------------------------

    def plug(self, printer: DeviceModel) -> int:
        """Plug ``printer`` (a VirtualPrinter, or a real one as a PyusbModel) in and probe it.

        Returns:
            The minor of its usblp device (``/dev/usb/lp<minor>``).

        Raises:
            EmulatorUsageError: it is already plugged in, or the host is closed.
            NoDevice: usblp did not bind (no usable printer interface, or no free minor);
                the printer stays plugged in, unbound.

        """
        if not all(hasattr(printer, name) for name in _MODEL_METHODS):
            raise EmulatorUsageError(
                f"plug() takes a VirtualPrinter or another device model (a PyusbModel), "
                f"not {type(printer).__name__}"
            )
        with self._hub:
            if self._closed:
                raise EmulatorUsageError("plug() on a closed Host")
            if id(printer) in self._plugged:
                raise EmulatorUsageError(f"{printer!r} is already plugged into this host")
            dev = self.core.connect(printer)
            self._plugged[id(printer)] = (printer, dev)
            minor = next((i.minor for i in dev.interfaces if i.bound), -1)
        if minor < 0:
            raise NoDevice(f"usblp did not bind to {printer!r}")
        return minor

    def unplug(self, printer: DeviceModel) -> bool:
        """Unplug ``printer``: in-flight transfers fail, then usblp's disconnect runs.

        Returns:
            False if it was not plugged into this host (so racing unpluggers are harmless).

        """
        with self._hub:
            entry = self._plugged.pop(id(printer), None)
            if entry is None:
                return False
            self.core.disconnect(entry[1])
        return True

    def minor_of(self, printer: DeviceModel) -> int | None:
        """The minor usblp gave ``printer``, or None if it is not plugged in and bound."""
        with self._hub:
            entry = self._plugged.get(id(printer))
            if entry is None:
                return None
            return next((i.minor for i in entry[1].interfaces if i.bound), None)

    def suspend(self, printer: DeviceModel) -> None:
        """System-suspend ``printer`` (usblp kills its URBs)."""
        self.core.suspend(self._dev(printer))

    def resume(self, printer: DeviceModel) -> None:
        """Resume ``printer`` (takes its resume latency; usblp resubmits its read)."""
        self.core.resume(self._dev(printer))

    def _dev(self, printer: DeviceModel) -> UsbDev:
        with self._hub:
            entry = self._plugged.get(id(printer))
        if entry is None:
            raise NoDevice(f"{printer!r} is not plugged in")
        return entry[1]

    # -- files ---------------------------------------------------------------------------------

    def open(self, minor: int, *, nonblock: bool = False) -> File:
        """Open ``/dev/usb/lp<minor>``.

        Raises:
            NoDevice: no printer at that minor (ENODEV).
            Busy: it is already open (EBUSY).
            DeviceError: another errno the driver returned (EIO...).

        """
        if not isinstance(minor, int) or isinstance(minor, bool):
            raise EmulatorUsageError(f"minor must be an int, not {type(minor).__name__}")
        result = self.core.open(minor)
        if isinstance(result, int):
            raise error_from_errno(result, f"/dev/usb/lp{minor}")
        assert isinstance(result, Usblp)
        return File(self, minor, result, nonblock)

    # -- shutdown and verdict --------------------------------------------------------------------

    def close(self) -> None:
        """Unplug every printer, stop the host's threads, finish deferred frees. Idempotent."""
        with self._hub:
            if self._closed:
                return
            self._closed = True
            plugged = list(self._plugged.values())
            self._plugged.clear()
            for _, dev in plugged:
                self.core.disconnect(dev)
        self.core.hcd.stop()
        self.driver.strategy.close()

    def check(self) -> None:
        """Raise the first violation seen.

        That is a heap error (use-after-free, double free...), an error in a completion
        handler, or leaked objects (checked only after close()).

        Raises:
            HeapError: from the heap (UseAfterFree, DoubleFree, HeapLeak...).
            RefcountViolation: a reference count went wrong in a completion handler.

        """
        errors = self.heap.errors
        if errors:
            raise errors[0]
        for exc in self.errors:
            if isinstance(exc, (HazardError, RefcountViolation)):
                raise exc
        if self._closed:
            self.heap.assert_clean()

    def __enter__(self) -> Host:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Host strategy={self.strategy} printers={len(self._plugged)}>"


class File:
    """An open ``/dev/usb/lpN``: write, read, ioctl, poll, close.

    Every method raises a :class:`DeviceError` carrying the kernel's errno on failure, and
    :class:`BadFile` (EBADF) once the file is closed.
    """

    def __init__(self, host: Host, minor: int, usblp: Usblp, nonblock: bool) -> None:
        self.minor = minor
        self.nonblock = nonblock
        self._host = host
        self._driver = host.driver
        self._usblp = usblp
        # The VFS's f_count: the descriptor's reference plus one per running operation. The
        # driver's release runs when it drops to zero.
        self._count = AtomicInt(1)
        self._closed = AtomicInt(0)

    @property
    def closed(self) -> bool:
        """Whether close() was called."""
        return bool(self._closed.load())

    def _enter(self) -> Usblp:
        # Take a reference only while one is held (fget): once the count reached zero the
        # release has run, and incrementing from zero would run it again.
        count = self._count.load()
        while count and not self._count.compare_exchange(count, count + 1):
            count = self._count.load()
        if not count:
            raise BadFile(f"/dev/usb/lp{self.minor} is closed")
        if self._closed.load():
            self._leave()
            raise BadFile(f"/dev/usb/lp{self.minor} is closed")
        return self._usblp

    def _leave(self) -> None:
        if self._count.fetch_add(-1) == 1:
            self._driver.release(self._usblp)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Write ``data``; returns the bytes the printer accepted (maybe fewer, nonblocking)."""
        payload = bytes(data)
        usblp = self._enter()
        try:
            rv = self._driver.write(usblp, payload, self.nonblock)
        finally:
            self._leave()
        if rv < 0:
            raise error_from_errno(rv)
        return rv

    def read(self, size: int = 1024) -> bytes:
        """Read up to ``size`` bytes from the printer's read-back channel."""
        if size < 0:
            raise EmulatorUsageError(f"read size must be >= 0, not {size}")
        usblp = self._enter()
        try:
            rv = self._driver.read(usblp, size, self.nonblock)
        finally:
            self._leave()
        if isinstance(rv, int):
            raise error_from_errno(rv)
        return rv

    def ioctl(self, cmd: int, arg: int | None = None) -> Any:
        """Run an ioctl; returns what the command returns (see the README's table)."""
        usblp = self._enter()
        try:
            rv = self._driver.ioctl(usblp, cmd, 0 if arg is None else int(arg))
        finally:
            self._leave()
        if isinstance(rv, int) and rv < 0:
            raise error_from_errno(rv)
        return rv

    def poll(self) -> int:
        """The poll mask: POLLIN, POLLOUT, POLLHUP (and the RDNORM/WRNORM twins)."""
        usblp = self._enter()
        try:
            return self._driver.poll(usblp)
        finally:
            self._leave()

    def close(self) -> None:
        """Close the file (idempotent); the driver's release runs once no operation is running."""
        if self._closed.exchange(1):
            return
        self._leave()

    def __enter__(self) -> File:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<File /dev/usb/lp{self.minor}{' closed' if self._closed.peek() else ''}>"

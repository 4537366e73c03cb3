"""The usblp driver's paths, as in drivers/usb/class/usblp.c, with no I/O of its own.

Rules and invariants (the kernel's, kept):
- Lock order: a strategy's existence lock (``usblp_mutex`` in mainline) -> ``mut``;
  ``wmut`` -> ``mut``; ``lock`` (the spinlock) is innermost and the only lock a URB
  completion takes. ``wcomplete rcomplete wstatus rstatus no_paper`` are guarded by ``lock``;
  ``readcount`` by ``mut``.
- ``used``, ``present`` and ``flags`` are atomics: strategies differ exactly in which lock (if
  any) orders them, so the explorer must see every access.
- Paths return what the kernel's return: a value, or a negative errno. The file API turns
  errnos into exceptions.
- Who frees the struct, and how an open finds it, is the strategy's business
  (``usblp_emu._usblp._strategies``); this module provides the bodies they share.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hazard import AtomicInt, Buffer, Condition, Heap, HeapObject, Lock, Refcount
from usblp_emu._abi import (
    IOC_NONE,
    IOC_READ,
    IOC_WRITE,
    IOCNR_GET_BUS_ADDRESS,
    IOCNR_GET_DEVICE_ID,
    IOCNR_GET_PROTOCOLS,
    IOCNR_GET_VID_PID,
    IOCNR_HP_SET_CHANNEL,
    IOCNR_SET_PROTOCOL,
    IOCNR_SOFT_RESET,
    LP_ABORT,
    LP_PERRORP,
    LP_POUTPA,
    LP_PSELECD,
    LPABORT,
    LPGETSTATUS,
    POLLHUP,
    POLLIN,
    POLLOUT,
    POLLRDNORM,
    POLLWRNORM,
    PROTOCOL_IEEE1284_4,
    PROTOCOL_UNIDIRECTIONAL,
    REQ_GET_DEVICE_ID,
    REQ_GET_PORT_STATUS,
    REQ_HP_CHANNEL_CHANGE_REQUEST,
    REQ_SOFT_RESET,
    USB_CLASS_PRINTER,
    USB_DIR_IN,
    USB_DIR_OUT,
    USB_RECIP_INTERFACE,
    USB_RECIP_OTHER,
    USB_SUBCLASS_PRINTER,
    USB_TYPE_CLASS,
    USB_TYPE_VENDOR,
    ioc_dir,
    ioc_nr,
    ioc_size,
    ioc_type,
)
from usblp_emu._core._descriptors import Endpoint
from usblp_emu._core._urb import (
    Anchor,
    Urb,
    anchor_urb,
    free_urb,
    kill_anchored_urbs,
    poison_anchored_urbs,
    unanchor_urb,
)
from usblp_emu._core._usbcore import Interface, UsbCore, UsbDev
from usblp_emu._usblp._ids import QUIRK_BAD_CLASS, QUIRK_BIDIR, quirks_for

if TYPE_CHECKING:
    from usblp_emu._usblp._strategies import Strategy

__all__ = ["Usblp", "UsblpDriver"]

BUF_SIZE = 8192  # USBLP_BUF_SIZE: the largest write chunk
BUF_SIZE_IN = 1024  # USBLP_BUF_SIZE_IN
DEVICE_ID_SIZE = 1024  # USBLP_DEVICE_ID_SIZE
STATUS_BUF_SIZE = 8
WRITE_PROD = 1.5  # a blocked writer looks at the printer every 1500 ms

FIRST_PROTOCOL = PROTOCOL_UNIDIRECTIONAL
LAST_PROTOCOL = PROTOCOL_IEEE1284_4
MAX_PROTOCOLS = LAST_PROTOCOL + 1

_MESSAGES = ("ok", "out of paper", "off-line", "on fire")


@dataclass(slots=True)
class _Protocol:
    alt_setting: int = -1
    epwrite: Endpoint | None = None
    epread: Endpoint | None = None


class Usblp(HeapObject):
    """``struct usblp``, with the reference count as its first field.

    Strategies without a reference count leave ``refcount`` alone.
    """

    __embedded__ = ("refcount", "used", "present", "flags", "urbs")

    def __init__(self, dev: UsbDev, intf: Interface) -> None:
        self.refcount = Refcount(1, "usblp.refcount")
        self.dev = dev
        self.intf = intf
        self.ifnum = intf.number
        self.minor = -1
        self.mut = Lock("usblp.mut")
        self.wmut = Lock("usblp.wmut")
        self.lock = Lock("usblp.lock")
        self.rwait = Condition(self.lock, "usblp.rwait")
        self.wwait = Condition(self.lock, "usblp.wwait")
        self.urbs = Anchor("usblp.urbs")
        self.used = AtomicInt(0)
        self.present = AtomicInt(0)
        self.flags = AtomicInt(0)
        self.readbuf: Buffer | None = None
        self.statusbuf: Buffer | None = None
        self.device_id_string: Buffer | None = None
        self.protocol = [_Protocol() for _ in range(MAX_PROTOCOLS)]
        self.current_protocol = 0
        self.bidir = False
        self.quirks = 0
        # Guarded by lock.
        self.wcomplete = 0
        self.rcomplete = 0
        self.wstatus = 0
        self.rstatus = 0
        self.no_paper = 0
        # Guarded by mut.
        self.readcount = 0

    def __repr__(self) -> str:
        return f"<usblp{self.minor}>"


class UsblpDriver:
    """usblp: probe, disconnect, the file operations, suspend and resume.

    Args:
        core: the USB core it registers with.
        strategy: a Strategy class: decides how open finds the struct and who frees it.
        proto_bias: the module parameter: the preferred protocol (1, 2 or 3), or None.

    """

    def __init__(
        self, core: UsbCore[UsblpDriver], strategy: type[Strategy], proto_bias: int | None = None
    ) -> None:
        self.core = core
        self.heap: Heap = core.heap
        self.proto_bias = proto_bias
        self.log: list[str] = []  # the kernel log (list.append is one step; kept for humans)
        self.strategy = strategy(self)

    def _info(self, message: str) -> None:
        self.log.append(message)

    # -- probe ------------------------------------------------------------------------------

    def probe(self, intf: Interface) -> int:
        """usblp_probe(): 0, or a negative errno (the interface stays unbound)."""
        dev = intf.dev
        usblp = self.heap.alloc(Usblp, dev, self.core.get_intf(intf))
        retval = 0
        usblp.device_id_string = self.heap.alloc_buffer(DEVICE_ID_SIZE, "usblp.device_id_string")
        usblp.readbuf = self.heap.alloc_buffer(BUF_SIZE_IN, "usblp.readbuf")
        usblp.statusbuf = self.heap.alloc_buffer(STATUS_BUF_SIZE, "usblp.statusbuf")
        d = dev.descriptor
        usblp.quirks = quirks_for(d.vendor_id, d.product_id)
        protocol = self._select_alts(usblp)
        if protocol < 0:
            retval = -errno.ENODEV
        elif self.set_protocol(usblp, protocol) < 0:
            retval = -errno.ENODEV  # ->probe isn't ->ioctl
        if retval == 0:
            self.cache_device_id_string(usblp)
            intf.intfdata.store(usblp)
            usblp.present.store(1)
            retval = self.core.register_dev(intf)
            if retval == 0:
                usblp.minor = intf.minor
                self.strategy.probed(usblp)
                self._info(
                    f"usblp{usblp.minor}: USB {'Bi' if usblp.bidir else 'Uni'}directional "
                    f"printer dev {dev.devnum} if {usblp.ifnum} alt "
                    f"{usblp.protocol[usblp.current_protocol].alt_setting} proto "
                    f"{usblp.current_protocol} vid 0x{d.vendor_id:04X} pid 0x{d.product_id:04X}"
                )
                return 0
            intf.intfdata.store(None)
        self._free_struct(usblp)
        return retval

    def _select_alts(self, usblp: Usblp) -> int:
        """usblp_select_alts(): record each usable protocol; pick proto_bias, else 2, 1, 3."""
        for p in usblp.protocol:
            p.alt_setting = -1
        for alt in usblp.intf.altsettings:
            if (
                alt.interface_class != USB_CLASS_PRINTER
                or alt.interface_subclass != USB_SUBCLASS_PRINTER
            ) and not usblp.quirks & QUIRK_BAD_CLASS:
                continue
            proto = alt.interface_protocol
            if not FIRST_PROTOCOL <= proto <= LAST_PROTOCOL:
                continue
            epwrite = next((e for e in alt.endpoints if e.is_bulk_out), None)
            epread = next((e for e in alt.endpoints if e.is_bulk_in), None)
            if epwrite is None or (proto > 1 and epread is None):
                continue
            if proto == 1:
                epread = None
            elif usblp.quirks & QUIRK_BIDIR:
                self._info(
                    f"usblp{usblp.minor}: Disabling reads from problematic bidirectional printer"
                )
                epread = None
            usblp.protocol[proto] = _Protocol(alt.alternate, epwrite, epread)
        bias = self.proto_bias
        if (
            bias is not None
            and FIRST_PROTOCOL <= bias <= LAST_PROTOCOL
            and usblp.protocol[bias].alt_setting != -1
        ):
            return bias
        for proto in (2, 1, 3):
            if usblp.protocol[proto].alt_setting != -1:
                return proto
        return -1

    def set_protocol(self, usblp: Usblp, protocol: int) -> int:
        """usblp_set_protocol(): switch the alt setting; 0 or a negative errno."""
        if not FIRST_PROTOCOL <= protocol <= LAST_PROTOCOL:
            return -errno.EINVAL
        # Checked before the single-alt shortcut (kernel commit "USB: usblp: return error when
        # setting unsupported protocol", in 6.1.0-56 as measured by tools/differential.py):
        # without it a protocol the printer lacks "succeeds" with no endpoints behind it.
        alts = usblp.protocol[protocol].alt_setting
        if alts < 0:
            return -errno.EINVAL
        # Don't unnecessarily set the interface if there's a single alt.
        if len(usblp.intf.altsettings) > 1:
            r = self.core.set_interface(usblp.intf, alts)
            if r < 0:
                self._info(f"usblp: can't set desired altsetting {alts} on interface {usblp.ifnum}")
                return r
        usblp.bidir = usblp.protocol[protocol].epread is not None
        usblp.current_protocol = protocol
        return 0

    def _ctrl_msg(
        self,
        usblp: Usblp,
        request: int,
        rtype: int,
        direction: int,
        recip: int,
        value: int,
        length: int,
    ) -> bytes | int:
        """usblp_ctrl_msg(): the bytes read (IN), 0 (OUT), or a negative errno."""
        index = usblp.ifnum
        if request == REQ_GET_DEVICE_ID and rtype == USB_TYPE_CLASS:
            index = (usblp.ifnum << 8) | usblp.protocol[usblp.current_protocol].alt_setting
        result = self.core.control_msg(
            usblp.dev,
            rtype | direction | recip,
            request,
            value,
            index,
            length if direction == USB_DIR_IN else b"",
        )
        if isinstance(result, int):
            return result if result < 0 else 0
        return result

    def read_status(self, usblp: Usblp) -> int:
        """usblp_read_status(): GET_PORT_STATUS into statusbuf; 0 or a negative errno."""
        result = self._ctrl_msg(
            usblp, REQ_GET_PORT_STATUS, USB_TYPE_CLASS, USB_DIR_IN, USB_RECIP_INTERFACE, 0, 1
        )
        if isinstance(result, int):
            return result
        assert usblp.statusbuf is not None
        usblp.statusbuf.write(0, result[:1])
        return 0

    def cache_device_id_string(self, usblp: Usblp) -> int:
        """usblp_cache_device_id_string(): the ID's length incl. its 2-byte prefix, or -EIO."""
        buf = usblp.device_id_string
        assert buf is not None
        # Zeroed first, so a short answer cannot expose the previous answer's bytes.
        buf.write(0, bytes(DEVICE_ID_SIZE))
        result = self._ctrl_msg(
            usblp,
            REQ_GET_DEVICE_ID,
            USB_TYPE_CLASS,
            USB_DIR_IN,
            USB_RECIP_INTERFACE,
            0,
            DEVICE_ID_SIZE - 1,
        )
        if isinstance(result, int):
            buf.write(0, b"\0\0")
            return -errno.EIO
        buf.write(0, result[: DEVICE_ID_SIZE - 1])
        length = int.from_bytes(buf.read(0, 2), "big")
        if length < 2:
            length = 2
        elif length >= DEVICE_ID_SIZE:
            length = DEVICE_ID_SIZE - 1
        buf.write(length, b"\0")
        return length

    def check_status(self, usblp: Usblp, err: int) -> int:
        """usblp_check_status(): 0 ok, 1 out of paper, 2 off-line, 3 on fire."""
        with usblp.mut:
            if self.read_status(usblp) < 0:
                self._info(f"usblp{usblp.minor}: error reading printer status")
                return 0
            assert usblp.statusbuf is not None
            status = usblp.statusbuf.read(0, 1)[0]
        newerr = 0
        if ~status & LP_PERRORP:
            newerr = 3
        if status & LP_POUTPA:
            newerr = 1
        if ~status & LP_PSELECD:
            newerr = 2
        if newerr != err:
            self._info(f"usblp{usblp.minor}: {_MESSAGES[newerr]}")
        return newerr

    # -- pieces the strategies share ----------------------------------------------------------

    def start_io(self, usblp: Usblp, intf: Interface, claim: Callable[[], bool]) -> int:
        """Open's body once the struct is found; 0 or a negative errno.

        Autopm get, ``claim()`` (the strategy sets ``used``; False means another open won:
        -EBUSY), reset the write state, submit the first read. ``used`` is claimed after the
        resume, as in mainline, so a runtime resume does not submit a read of its own. On
        failure everything is rolled back.
        """
        retval = self.core.autopm_get(intf)
        if retval < 0:
            return retval
        if not claim():
            self.core.autopm_put(intf)
            return -errno.EBUSY
        with usblp.lock:
            usblp.wcomplete = 1  # we begin writeable
            usblp.wstatus = 0
            usblp.rcomplete = 0
        if self.handle_bidir(usblp) < 0:
            self.core.autopm_put(intf)
            usblp.used.store(0)
            return -errno.EIO
        return 0

    def handle_bidir(self, usblp: Usblp) -> int:
        """Submit a read if bidirectional and open (``handle_bidir``)."""
        if usblp.bidir and usblp.used.load() and self.submit_read(usblp) < 0:
            return -errno.EIO
        return 0

    def unlink_urbs(self, usblp: Usblp) -> None:
        """usblp_unlink_urbs(): kill every anchored URB."""
        kill_anchored_urbs(self.core.hcd, usblp.urbs)

    def mark_gone(self, usblp: Usblp, intf: Interface) -> None:
        """Disconnect's common middle.

        Under ``mut``: present=0, wake everyone, clear the intfdata, kill URBs; then poison
        the anchor so no later submission can succeed.
        """
        with usblp.mut:
            usblp.present.store(0)
            with usblp.lock:
                usblp.wwait.notify_all()
                usblp.rwait.notify_all()
            intf.intfdata.store(None)
            self.unlink_urbs(usblp)
        self.poison(usblp)

    def poison(self, usblp: Usblp) -> None:
        """usb_poison_anchored_urbs(&usblp->urbs)."""
        poison_anchored_urbs(self.core.hcd, usblp.urbs)

    def cleanup(self, usblp: Usblp) -> None:
        """usblp_cleanup(): free the buffers, put the interface, free the struct."""
        self._info(f"usblp{usblp.minor}: removed")
        self._free_struct(usblp)

    def _free_struct(self, usblp: Usblp) -> None:
        for buf in (usblp.readbuf, usblp.device_id_string, usblp.statusbuf):
            if buf is not None:
                self.heap.free(buf)
        self.core.put_intf(usblp.intf)
        self.heap.free(usblp)

    # -- the core's entry points --------------------------------------------------------------

    def open(self, minor: int) -> Usblp | int:
        """fops->open, through the strategy."""
        return self.strategy.open(minor)

    def release(self, usblp: Usblp) -> int:
        """fops->release, through the strategy."""
        return self.strategy.release(usblp)

    def disconnect(self, intf: Interface) -> None:
        """usb_driver->disconnect, through the strategy."""
        self.strategy.disconnect(intf)

    def suspend(self, intf: Interface) -> int:
        """usblp_suspend(): kill URBs (waiters are not woken)."""
        usblp = intf.intfdata.load()
        if isinstance(usblp, Usblp):
            self.unlink_urbs(usblp)
        return 0

    def resume(self, intf: Interface) -> int:
        """usblp_resume(): resubmit the read if open and bidirectional."""
        usblp = intf.intfdata.load()
        if isinstance(usblp, Usblp):
            return self.handle_bidir(usblp)
        return 0

    # -- URB completions ----------------------------------------------------------------------

    def bulk_read(self, urb: Urb) -> None:
        """usblp_bulk_read(): the read URB's completion: record the result, wake the reader."""
        usblp = urb.context
        assert isinstance(usblp, Usblp)
        status = urb.status
        if status and usblp.present.load() and usblp.used.load():
            self._info(f"usblp{usblp.minor}: nonzero read bulk status received: {status}")
        with usblp.lock:
            usblp.rstatus = status if status < 0 else urb.actual_length
            usblp.rcomplete = 1
            usblp.rwait.notify_all()
        free_urb(self.heap, urb)

    def bulk_write(self, urb: Urb) -> None:
        """usblp_bulk_write(): the write URB's completion: record the result, wake the writer."""
        usblp = urb.context
        assert isinstance(usblp, Usblp)
        status = urb.status
        if status and usblp.present.load() and usblp.used.load():
            self._info(f"usblp{usblp.minor}: nonzero write bulk status received: {status}")
        with usblp.lock:
            usblp.wstatus = status if status < 0 else urb.actual_length
            usblp.no_paper = 0
            usblp.wcomplete = 1
            usblp.wwait.notify_all()
        free_urb(self.heap, urb)

    # -- read ----------------------------------------------------------------------------------

    def submit_read(self, usblp: Usblp) -> int:
        """usblp_submit_read(): 0 or a negative errno (then rstatus holds it, rcomplete=1)."""
        epread = usblp.protocol[usblp.current_protocol].epread
        assert epread is not None
        urb = self.heap.alloc(
            Urb,
            usblp.dev.hcd_device,
            epread.address,
            usblp.readbuf,
            BUF_SIZE_IN,
            self.bulk_read,
            usblp,
        )
        anchor_urb(urb, usblp.urbs)
        with usblp.lock:
            usblp.readcount = 0
            usblp.rcomplete = 0
        rc = self.core.hcd.submit(urb)
        if rc < 0:
            with usblp.lock:
                usblp.rstatus = rc
                usblp.rcomplete = 1
            unanchor_urb(self.heap, urb)
            free_urb(self.heap, urb)
            return rc
        return 0  # the completion handler frees the URB

    def _rtest(self, usblp: Usblp, nonblock: bool) -> int:
        if not usblp.present.load():
            return -errno.ENODEV
        with usblp.lock:
            if usblp.rcomplete:
                return 0
        return -errno.EAGAIN if nonblock else 1

    def _rwait_and_lock(self, usblp: Usblp, nonblock: bool) -> int:
        """usblp_rwait_and_lock(): 0 with ``mut`` held, or a negative errno without it."""
        while True:
            usblp.mut.acquire()
            rc = self._rtest(usblp, nonblock)
            if rc <= 0:
                if rc < 0:
                    usblp.mut.release()
                return rc
            usblp.mut.release()
            with usblp.lock:
                if not usblp.rcomplete and usblp.present.load():
                    usblp.rwait.wait()

    def read(self, usblp: Usblp, length: int, nonblock: bool) -> bytes | int:
        """usblp_read(): bytes, or a negative errno."""
        if not usblp.bidir:
            return -errno.EINVAL
        rv = self._rwait_and_lock(usblp, nonblock)
        if rv < 0:
            return rv
        try:
            if not usblp.present.load():
                return -errno.ENODEV
            with usblp.lock:
                avail = usblp.rstatus
            if avail < 0:
                self._info(f"usblp{usblp.minor}: error {avail} reading from printer")
                self.submit_read(usblp)
                return -errno.EIO
            count = min(length, avail - usblp.readcount)
            assert usblp.readbuf is not None
            data = usblp.readbuf.read(usblp.readcount, count) if count else b""
            usblp.readcount += count
            if usblp.readcount == avail and self.submit_read(usblp) < 0 and count == 0:
                return -errno.EIO  # we don't want to leak USB return codes into errno
            return data
        finally:
            usblp.mut.release()

    # -- write ---------------------------------------------------------------------------------

    def _wtest(self, usblp: Usblp, nonblock: bool) -> int:
        if not usblp.present.load():
            return -errno.ENODEV
        with usblp.lock:
            if usblp.wcomplete:
                return 0
        return -errno.EAGAIN if nonblock else 1

    def _wwait(self, usblp: Usblp, nonblock: bool) -> int:
        """usblp_wwait(): wait for the write path to come idle; prod the printer every 1.5 s."""
        err = 0
        while True:
            with usblp.mut:
                rc = self._wtest(usblp, nonblock)
            if rc <= 0:
                return rc
            with usblp.lock:
                # Sleep only if nothing changed since the test (the kernel sets the task state
                # before testing for the same reason: no lost wake-up).
                woken = usblp.wcomplete or not usblp.present.load() or usblp.wwait.wait(WRITE_PROD)
            if not woken:
                if usblp.flags.load() & LP_ABORT:
                    err = self.check_status(usblp, err)
                    if err == 1:  # paper out
                        return -errno.ENOSPC
                else:
                    with usblp.mut:  # prod the printer, Gentoo#251237
                        self.read_status(usblp)

    def write(self, usblp: Usblp, data: bytes, nonblock: bool) -> int:
        """usblp_write(): bytes written, or a negative errno if none were."""
        writecount = 0
        count = len(data)
        with usblp.wmut:
            rv = self._wwait(usblp, nonblock)
            if rv < 0:
                return rv
            while writecount < count:
                transfer_length = min(count - writecount, BUF_SIZE)
                epwrite = usblp.protocol[usblp.current_protocol].epwrite
                assert epwrite is not None
                writebuf = self.heap.alloc_buffer(transfer_length, "writeurb.transfer_buffer")
                urb = self.heap.alloc(
                    Urb,
                    usblp.dev.hcd_device,
                    epwrite.address,
                    writebuf,
                    transfer_length,
                    self.bulk_write,
                    usblp,
                    free_buffer=True,
                )
                anchor_urb(urb, usblp.urbs)
                writebuf.write(0, data[writecount : writecount + transfer_length])
                with usblp.lock:
                    usblp.wcomplete = 0
                rv = self.core.hcd.submit(urb)
                if rv < 0:
                    usblp.wstatus = 0
                    with usblp.lock:
                        usblp.no_paper = 0
                        usblp.wcomplete = 1
                        usblp.wwait.notify_all()
                    if rv != -errno.ENOMEM:
                        rv = -errno.EIO
                    unanchor_urb(self.heap, urb)
                    free_urb(self.heap, urb)
                    break
                rv = self._wwait(usblp, nonblock)
                if rv < 0:
                    if rv == -errno.EAGAIN:
                        writecount += transfer_length  # presume it will complete well
                    if rv == -errno.ENOSPC:
                        with usblp.lock:
                            usblp.no_paper = 1  # mark for poll(2)
                        writecount += transfer_length
                    break  # leave the URB dangling, to be cleaned on close
                with usblp.lock:
                    wstatus = usblp.wstatus
                if wstatus < 0:
                    rv = -errno.EIO
                    break
                writecount += wstatus
            else:
                return writecount
        return writecount if writecount else rv

    # -- poll and ioctl -------------------------------------------------------------------------

    def poll(self, usblp: Usblp) -> int:
        """usblp_poll(): POLLHUP once gone; POLLIN with data; POLLOUT when writable."""
        with usblp.mut:
            ret = 0 if usblp.present.load() else POLLHUP
        with usblp.lock:
            if usblp.bidir and usblp.rcomplete:
                ret |= POLLIN | POLLRDNORM
            if usblp.no_paper or usblp.wcomplete:
                ret |= POLLOUT | POLLWRNORM
        return ret

    def ioctl(self, usblp: Usblp, cmd: int, arg: int) -> object:
        """usblp_ioctl(): the command's result, or a negative errno (an int < 0).

        One dispatch over usblp.c's two switches (:data:`_IOCTLS`): new-style commands (type
        'P') by their number, EINVAL unless the direction (and for two ints the size) is the
        command's; old-style ``<linux/lp.h>`` ones by value; ENOTTY for anything else.
        """
        with usblp.mut:
            if not usblp.present.load():
                return -errno.ENODEV
            new_style = ioc_type(cmd) == ord("P")
            ioctl = _IOCTLS.get(("P", ioc_nr(cmd)) if new_style else ("lp", cmd))
            if ioctl is None:
                return -errno.ENOTTY
            if new_style and (ioc_dir(cmd) != ioctl.direction or ioc_size(cmd) < ioctl.min_size):
                return -errno.EINVAL
            return ioctl.handler(self, usblp, ioc_size(cmd), arg)

    def _ioctl_get_device_id(self, usblp: Usblp, size: int, arg: int) -> object:
        length = self.cache_device_id_string(usblp)
        if length < 0:
            return length
        assert usblp.device_id_string is not None
        return usblp.device_id_string.read(0, min(length, size))  # truncated to the buffer

    def _ioctl_get_protocols(self, usblp: Usblp, size: int, arg: int) -> object:
        mask = 0
        for i in range(FIRST_PROTOCOL, LAST_PROTOCOL + 1):
            if usblp.protocol[i].alt_setting >= 0:
                mask |= 1 << i
        return (usblp.current_protocol, mask)

    def _ioctl_set_protocol(self, usblp: Usblp, size: int, arg: int) -> object:
        self.unlink_urbs(usblp)
        retval = self.set_protocol(usblp, arg)
        if retval < 0:
            self.set_protocol(usblp, usblp.current_protocol)
        return retval

    def _ioctl_hp_set_channel(self, usblp: Usblp, size: int, arg: int) -> object:
        if usblp.dev.descriptor.vendor_id != 0x03F0 or usblp.quirks & QUIRK_BIDIR:
            return -errno.EINVAL
        result = self._ctrl_msg(
            usblp,
            REQ_HP_CHANNEL_CHANGE_REQUEST,
            USB_TYPE_VENDOR,
            USB_DIR_IN,
            USB_RECIP_INTERFACE,
            arg,
            1,
        )
        if isinstance(result, int):
            self._info(f"usblp{usblp.minor}: error = {result} setting HP channel")
            return -errno.EIO
        return 0

    def _ioctl_get_bus_address(self, usblp: Usblp, size: int, arg: int) -> object:
        return (usblp.dev.busnum, usblp.dev.devnum)

    def _ioctl_get_vid_pid(self, usblp: Usblp, size: int, arg: int) -> object:
        d = usblp.dev.descriptor
        return (d.vendor_id, d.product_id)

    def _ioctl_soft_reset(self, usblp: Usblp, size: int, arg: int) -> object:
        result = self._ctrl_msg(
            usblp, REQ_SOFT_RESET, USB_TYPE_CLASS, USB_DIR_OUT, USB_RECIP_OTHER, 0, 0
        )
        return result if isinstance(result, int) else 0

    def _ioctl_lpgetstatus(self, usblp: Usblp, size: int, arg: int) -> object:
        if self.read_status(usblp) < 0:
            self._info(f"usblp{usblp.minor}: failed reading printer status")
            return -errno.EIO
        assert usblp.statusbuf is not None
        return usblp.statusbuf.read(0, 1)[0]

    def _ioctl_lpabort(self, usblp: Usblp, size: int, arg: int) -> object:
        if arg:
            self._update_flags(usblp, LP_ABORT, 0)
        else:
            self._update_flags(usblp, 0, LP_ABORT)
        return 0

    @staticmethod
    def _update_flags(usblp: Usblp, set_bits: int, clear_bits: int) -> None:
        old = usblp.flags.load()
        while not usblp.flags.compare_exchange(old, (old | set_bits) & ~clear_bits):
            old = usblp.flags.load()

    def clear_abort(self, usblp: Usblp) -> None:
        """Release's first step: ``usblp->flags &= ~LP_ABORT``."""
        self._update_flags(usblp, 0, LP_ABORT)


@dataclass(frozen=True, slots=True)
class _Ioctl:
    """One case of usblp_ioctl()'s switch."""

    handler: Callable[[UsblpDriver, Usblp, int, int], object]  # (driver, usblp, size, arg)
    direction: int = IOC_NONE  # new-style: the _IOC direction the command must have
    min_size: int = 0  # new-style: the smallest buffer it accepts


_TWO_INTS = 8  # sizeof(twoints)

# ("P", nr) for the new-style commands, ("lp", cmd) for the old-style ones.
_IOCTLS: dict[tuple[str, int], _Ioctl] = {
    ("P", IOCNR_GET_DEVICE_ID): _Ioctl(UsblpDriver._ioctl_get_device_id, IOC_READ),
    ("P", IOCNR_GET_PROTOCOLS): _Ioctl(UsblpDriver._ioctl_get_protocols, IOC_READ, _TWO_INTS),
    ("P", IOCNR_SET_PROTOCOL): _Ioctl(UsblpDriver._ioctl_set_protocol, IOC_WRITE),
    ("P", IOCNR_HP_SET_CHANNEL): _Ioctl(UsblpDriver._ioctl_hp_set_channel, IOC_WRITE),
    ("P", IOCNR_GET_BUS_ADDRESS): _Ioctl(UsblpDriver._ioctl_get_bus_address, IOC_READ, _TWO_INTS),
    ("P", IOCNR_GET_VID_PID): _Ioctl(UsblpDriver._ioctl_get_vid_pid, IOC_READ, _TWO_INTS),
    ("P", IOCNR_SOFT_RESET): _Ioctl(UsblpDriver._ioctl_soft_reset, IOC_NONE),
    ("lp", LPGETSTATUS): _Ioctl(UsblpDriver._ioctl_lpgetstatus),
    ("lp", LPABORT): _Ioctl(UsblpDriver._ioctl_lpabort),
}

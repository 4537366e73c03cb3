"""URBs, anchors and the host controller that completes them asynchronously.

Rules and invariants:
- A URB lives on the emulated heap with a kernel-style reference count: the submitter's
  reference (dropped by ``free_urb``, usually in the completion handler) and, while it is
  submitted, the host controller's. The last put frees it (and its buffer, with FREE_BUFFER).
- The controller's pending list, each URB's ``use_count`` and the device states it reads are
  guarded by the controller's condition lock. A URB is given back exactly once per
  submission: whoever takes it off the pending list under that lock (the controller thread, a
  killer, or an unplug) runs the completion, outside the lock.
- ``kill_urb`` returns only after the URB's completion has finished, as ``usb_kill_urb``
  does; while a URB's ``reject`` count is non-zero a submission fails with -EPERM.
- Anchors are embedded in the driver's struct (a HeapObject that no heap allocates), so a walk
  of the anchor of a freed struct is a use-after-free.
- Errors raised by a completion handler (a use-after-free in the driver) are recorded by the
  controller and, under an explorer, re-raised in its thread so the schedule fails there.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable

from hazard import (
    AtomicInt,
    Buffer,
    Condition,
    HazardError,
    Heap,
    HeapObject,
    Lock,
    Refcount,
    _checkpoint,
)
from hazard._checkpoint import monotonic
from usblp_emu._core._descriptors import Completion, DeviceModel

__all__ = [
    "Anchor",
    "HcdDevice",
    "HostController",
    "Urb",
    "anchor_urb",
    "free_urb",
    "kill_anchored_urbs",
    "poison_anchored_urbs",
    "unanchor_urb",
]


class Urb(HeapObject):
    """A USB request block for a bulk endpoint."""

    __embedded__ = ("refs", "reject")

    def __init__(
        self,
        device: HcdDevice,
        endpoint: int,
        buffer: Buffer | None,
        length: int,
        complete: Callable[[Urb], None],
        context: object,
        *,
        free_buffer: bool = False,
    ) -> None:
        self.refs = Refcount(1, "urb.kref")
        self.reject = AtomicInt(0)
        self.device = device
        self.endpoint = endpoint
        self.buffer = buffer
        self.length = length
        self.complete = complete
        self.context = context
        self.free_buffer = free_buffer
        self.status = 0
        self.actual_length = 0
        self.anchor: Anchor | None = None
        # Guarded by the controller's lock.
        self.use_count = 0
        self.started = 0.0

    @property
    def is_in(self) -> bool:
        """True for a device-to-host transfer."""
        return bool(self.endpoint & 0x80)


class Anchor(HeapObject):
    """``struct usb_anchor``: the URBs a driver has in flight, killable and poisonable together.

    Embed it in a struct (list it in ``__embedded__``) rather than allocating it.
    """

    __embedded__ = ("poisoned",)

    def __init__(self, name: str = "anchor") -> None:
        self.lock = Lock(f"{name}.lock")
        self.wait = Condition(self.lock, f"{name}.wait")
        self.urbs: list[Urb] = []  # guarded by self.lock
        # Completions of URBs of this anchor running now (usb_anchor_suspend_wakeups): a kill
        # of the anchor waits for them, so the struct holding it outlives every completion.
        self.suspend_wakeups = 0  # guarded by self.lock
        self.poisoned = AtomicInt(0)


class HcdDevice:
    """What the controller knows of a device: its model and whether it is still attached."""

    __slots__ = ("attached", "model")

    def __init__(self, model: DeviceModel) -> None:
        self.model = model
        # Cleared under the controller's lock (so submit, which tests it under that lock, is
        # ordered against the flush); read without it elsewhere.
        self.attached = AtomicInt(1)


class HostController:
    """Completes submitted URBs from its own thread, when their device is ready.

    Args:
        heap: where URBs live.
        errors: where errors raised by completion handlers are recorded.

    """

    def __init__(self, heap: Heap, errors: list[BaseException]) -> None:
        self.heap = heap
        self.errors = errors
        lock = Lock("hcd.lock")
        # Two conditions on one lock: the controller thread waits for work, killers wait for
        # a URB to go idle; a giveback wakes only killers, a submit or kick only the thread.
        self._cond = Condition(lock, "hcd.work")
        self._idle = Condition(lock, "hcd.idle")
        self._pending: list[Urb] = []  # guarded by the lock
        self._stopping = False  # guarded by the lock
        # Something changed since the thread last asked the devices (a submit, a kick):
        # without it the thread sleeps until the earliest deadline a device gave.
        self._dirty = False  # guarded by the lock
        self._thread: threading.Thread | None = None

    # -- the controller thread ---------------------------------------------------------------

    def start(self) -> None:
        """Start the controller thread (idempotent)."""
        with self._cond:
            if self._thread is not None or self._stopping:
                return
            self._thread = threading.Thread(target=self._main, name="hcd", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the controller thread and wait for it."""
        with self._cond:
            self._stopping = True
            thread = self._thread
            self._cond.notify_all()
        if thread is not None:
            thread.join()

    def kick(self) -> None:
        """A device changed state: look at the pending transfers again."""
        with self._cond:
            self._dirty = True
            self._cond.notify_all()

    def _main(self) -> None:
        while True:
            with self._cond:
                ready = self._next_ready()
                while not isinstance(ready, tuple):
                    if self._stopping:
                        return
                    wait = None if ready is None else max(0.0, ready - monotonic())
                    if not self._dirty:
                        self._cond.wait(wait)
                    ready = self._next_ready()
            self._finish(*ready)

    def _next_ready(self) -> tuple[Urb, Completion] | float | None:
        """The first pending URB its device has finished, else the earliest retry time."""
        self._dirty = False
        now = monotonic()
        earliest: float | None = None
        for urb in self._pending:
            model = urb.device.model
            payload = b"" if urb.is_in or urb.buffer is None else urb.buffer.read(0, urb.length)
            outcome = model.service(urb.endpoint, urb.length, payload, urb.started, now)
            if isinstance(outcome, Completion):
                self._pending.remove(urb)
                return urb, outcome
            if outcome is not None and (earliest is None or outcome < earliest):
                earliest = outcome
        return earliest

    # -- submit, give back, kill -----------------------------------------------------------

    def attach(self, model: DeviceModel) -> HcdDevice:
        """Register a newly plugged device."""
        return HcdDevice(model)

    def submit(self, urb: Urb) -> int:
        """usb_submit_urb(): 0, or -EPERM (rejected), -ENODEV (device gone), -EBUSY."""
        if urb.reject.load():
            return -errno.EPERM
        if self._thread is None:  # a hint only: start() decides under the lock
            self.start()
        with self._cond:
            if not urb.device.attached.load():
                return -errno.ENODEV
            if urb.use_count:
                return -errno.EBUSY
            urb.refs.inc()  # the controller's reference, dropped after giveback
            urb.use_count = 1
            urb.status = -errno.EINPROGRESS
            urb.actual_length = 0
            urb.started = monotonic()
            self._pending.append(urb)
            self._dirty = True
            self._cond.notify_all()
        return 0

    def _finish(self, urb: Urb, result: Completion) -> None:
        if urb.is_in and urb.buffer is not None and result.data:
            data = result.data[: urb.length]
            urb.buffer.write(0, data)  # DMA into the driver's buffer
            urb.actual_length = len(data)
        else:
            urb.actual_length = result.actual
        urb.status = result.status
        self.giveback(urb)

    def giveback(self, urb: Urb) -> None:
        """Give the URB back: unanchor, run the completion handler, release it to killers.

        Then drop the controller's reference.
        """
        anchor = urb.anchor
        if anchor is not None:
            with anchor.lock:
                anchor.suspend_wakeups += 1
        unanchor_urb(self.heap, urb)
        try:
            urb.complete(urb)
        except HazardError as exc:
            self.errors.append(exc)
            if _checkpoint.scheduler is not None:
                raise
        finally:
            if anchor is not None:
                with anchor.lock:
                    anchor.suspend_wakeups -= 1
                    anchor.wait.notify_all()
            with self._cond:
                urb.use_count = 0
                self._idle.notify_all()
        free_urb(self.heap, urb)

    def kill(self, urb: Urb) -> None:
        """usb_kill_urb(): cancel it (completion with -ENOENT) and wait until it is idle."""
        urb.reject.fetch_add(1)
        try:
            self._cancel_and_wait(urb, -errno.ENOENT)
        finally:
            urb.reject.fetch_add(-1)

    def poison(self, urb: Urb) -> None:
        """usb_poison_urb(): kill it and make every later submission fail."""
        urb.reject.fetch_add(1)
        self._cancel_and_wait(urb, -errno.ENOENT)

    def _cancel_and_wait(self, urb: Urb, status: int) -> None:
        with self._cond:
            mine = urb in self._pending
            if mine:
                self._pending.remove(urb)
                urb.status = status
        if mine:
            urb.device.model.cancel(urb.endpoint, urb.started)
            self.giveback(urb)
        with self._cond:
            while urb.use_count:
                self._idle.wait()

    def flush_device(self, device: HcdDevice) -> None:
        """The device is gone: fail its pending URBs with -ESHUTDOWN, refuse new ones."""
        with self._cond:
            device.attached.store(0)
            victims = [u for u in self._pending if u.device is device]
            for urb in victims:
                self._pending.remove(urb)
                urb.status = -errno.ESHUTDOWN
        for urb in victims:
            device.model.cancel(urb.endpoint, urb.started)
            self.giveback(urb)

    def is_attached(self, device: HcdDevice) -> bool:
        """Whether ``device`` is still plugged in."""
        return bool(device.attached.load())


def free_urb(heap: Heap, urb: Urb) -> None:
    """usb_free_urb(): drop a reference; the last one frees the URB (and FREE_BUFFER's buffer)."""
    if urb.refs.dec_and_test():
        if urb.free_buffer and urb.buffer is not None:
            heap.free(urb.buffer)
        heap.free(urb)


def anchor_urb(urb: Urb, anchor: Anchor) -> None:
    """usb_anchor_urb(): a URB anchored to a poisoned anchor is rejected."""
    with anchor.lock:
        urb.refs.inc()  # the anchor's reference (usb_get_urb), dropped by unanchor
        anchor.urbs.append(urb)
        urb.anchor = anchor
        if anchor.poisoned.load():
            urb.reject.fetch_add(1)


def unanchor_urb(heap: Heap, urb: Urb) -> None:
    """usb_unanchor_urb()."""
    anchor = urb.anchor
    if anchor is None:
        return
    with anchor.lock:
        if urb in anchor.urbs:
            anchor.urbs.remove(urb)
        urb.anchor = None
    free_urb(heap, urb)


def kill_anchored_urbs(hcd: HostController, anchor: Anchor) -> None:
    """usb_kill_anchored_urbs(): kill every URB on the anchor, newest first.

    A URB that stays anchored after its kill (anchored but never submitted) is passed over,
    so the walk ends.
    """
    _kill_all(hcd, anchor, hcd.kill)


def poison_anchored_urbs(hcd: HostController, anchor: Anchor) -> None:
    """usb_poison_anchored_urbs(): poison the anchor, then every URB on it."""
    anchor.poisoned.store(1)
    _kill_all(hcd, anchor, hcd.poison)


def _kill_all(hcd: HostController, anchor: Anchor, kill: Callable[[Urb], None]) -> None:
    """Kill anchored URBs, newest first, until none is left and none is completing.

    The end test is the kernel's usb_anchor_check_wakeup.
    """
    attempt = 0
    while True:
        with anchor.lock:
            if not anchor.urbs:
                if anchor.suspend_wakeups == 0:
                    return
                anchor.wait.wait()
                continue
            victim = anchor.urbs[-1]
            victim.refs.inc()  # usb_get_urb: keep it alive across the kill
        kill(victim)
        still_anchored = victim.anchor is anchor
        free_urb(hcd.heap, victim)
        if still_anchored:
            # Anchored but not submitted yet (a writer between anchor and submit): the
            # kernel spins with cpu_relax() until it submits or unanchors.
            _checkpoint.pause(attempt)
            attempt += 1

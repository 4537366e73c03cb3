"""URBs, anchors and the host controller: giveback exactly once, kill waits, poison rejects."""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable

import pytest

from hazard import Event, Heap, UseAfterFree
from usblp_emu import VirtualPrinter
from usblp_emu._core._urb import (
    Anchor,
    HcdDevice,
    HostController,
    Urb,
    anchor_urb,
    free_urb,
    kill_anchored_urbs,
    poison_anchored_urbs,
)


@pytest.fixture
def hcd():
    heap = Heap("test-urb")
    controller = HostController(heap, [])
    yield controller
    controller.stop()


def _urb(
    hcd: HostController,
    device: HcdDevice,
    endpoint: int,
    complete: Callable[[Urb], None],
    length: int = 4,
    payload: bytes = b"data",
) -> Urb:
    buf = hcd.heap.alloc_buffer(length)
    if not endpoint & 0x80:
        buf.write(0, payload)
    return hcd.heap.alloc(Urb, device, endpoint, buf, length, complete, None, free_buffer=True)


def _plugged(hcd: HostController, printer: VirtualPrinter) -> HcdDevice:
    device = hcd.attach(printer)
    printer.connect(hcd.kick)
    return device


def test_bulk_out_completes_once_and_frees_the_urb_and_its_buffer(hcd):
    printer = VirtualPrinter()
    device = _plugged(hcd, printer)
    done = Event()
    seen = []

    def complete(urb):
        seen.append((urb.status, urb.actual_length))
        free_urb(hcd.heap, urb)  # the driver's reference, as usblp_bulk_write does
        done.set()

    assert hcd.submit(_urb(hcd, device, 0x01, complete)) == 0
    assert done.wait(5)
    hcd.stop()
    assert seen == [(0, 4)]
    assert printer.received == b"data"
    hcd.heap.assert_clean()


def test_kill_cancels_a_pending_in_urb_with_enoent_and_waits(hcd):
    printer = VirtualPrinter()
    device = _plugged(hcd, printer)
    statuses = []

    def complete(urb):
        statuses.append(urb.status)
        free_urb(hcd.heap, urb)

    urb = _urb(hcd, device, 0x82, complete)  # nothing to read: stays pending
    assert hcd.submit(urb) == 0
    urb.refs.inc()  # keep it to inspect after the kill
    hcd.kill(urb)
    assert statuses == [-errno.ENOENT]
    assert urb.use_count == 0
    free_urb(hcd.heap, urb)
    hcd.heap.assert_clean()


def test_poisoned_anchor_rejects_later_submissions_with_eperm(hcd):
    printer = VirtualPrinter()
    device = _plugged(hcd, printer)
    anchor = Anchor()
    poison_anchored_urbs(hcd, anchor)
    urb = _urb(hcd, device, 0x01, lambda u: free_urb(hcd.heap, u))
    anchor_urb(urb, anchor)
    assert hcd.submit(urb) == -errno.EPERM
    assert printer.received == b""


def test_unplug_fails_in_flight_urbs_with_eshutdown_and_refuses_new_ones(hcd):
    printer = VirtualPrinter()
    device = _plugged(hcd, printer)
    statuses = []

    def complete(urb):
        statuses.append(urb.status)
        free_urb(hcd.heap, urb)

    assert hcd.submit(_urb(hcd, device, 0x82, complete)) == 0
    hcd.flush_device(device)
    assert statuses == [-errno.ESHUTDOWN]
    late = _urb(hcd, device, 0x01, complete)
    assert hcd.submit(late) == -errno.ENODEV
    free_urb(hcd.heap, late)
    hcd.heap.assert_clean()


def test_kill_of_the_anchor_waits_for_a_completion_already_running(hcd):
    # The window the explorer found: the controller has unanchored the URB and is inside its
    # completion when the anchor is killed; the kill must not return before it ends.
    printer = VirtualPrinter()
    device = _plugged(hcd, printer)
    anchor = Anchor()
    entered, release = threading.Event(), threading.Event()
    order = []

    def complete(urb):
        entered.set()
        release.wait(5)
        order.append("completion done")
        free_urb(hcd.heap, urb)

    urb = _urb(hcd, device, 0x01, complete)
    anchor_urb(urb, anchor)
    assert hcd.submit(urb) == 0
    assert entered.wait(5)

    def killer_main() -> None:
        kill_anchored_urbs(hcd, anchor)
        order.append("kill returned")

    killer = threading.Thread(target=killer_main)
    killer.start()
    killer.join(0.2)
    assert killer.is_alive(), "kill_anchored_urbs returned while a completion was running"
    release.set()
    killer.join(5)
    assert order == ["completion done", "kill returned"]


def test_completion_touching_a_freed_struct_is_a_use_after_free(hcd):
    # Negative control for the controller's error path: the heap must catch a completion
    # that runs after its context was freed, and the controller must record it.
    printer = VirtualPrinter()
    device = _plugged(hcd, printer)

    ctx = hcd.heap.alloc_buffer(8, "context")
    done = Event()

    def complete(urb):
        try:
            ctx.read(0, 1)
        finally:
            free_urb(hcd.heap, urb)
            done.set()

    hcd.heap.free(ctx)
    assert hcd.submit(_urb(hcd, device, 0x01, complete)) == 0
    assert done.wait(5)
    hcd.stop()
    assert [type(e) for e in hcd.errors] == [UseAfterFree]

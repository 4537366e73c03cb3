#!/usr/bin/python3
"""A USB printer emulated at the usbfs ioctl level with umockdev, driven over stdin/stdout.

This is the device side of the umockdev test tier (tests/tiers/test_umockdev.py). Real libusb, in a
client process run under ``LD_PRELOAD=libumockdev-preload.so.0`` with ``UMOCKDEV_DIR`` set to
the directory this prints, sees a root hub and a printer in sysfs and /dev/bus/usb; every ioctl
the client makes on the printer's device node comes here and is answered the way the kernel's
usbfs would (drivers/usb/core/devio.c), with the printer behind it.

It runs under Debian's ``/usr/bin/python3``: it needs ``gi`` and the UMockdev typelib (see
tools/umockdev_setup.sh), which a venv's Python does not have. It re-executes itself under the
preload library too: the testbed sends uevents through libudev in this process, which must see
the testbed's /sys (without it ``add_from_string`` sends no "add" uevent and ``uevent()`` fails
with "No such device").

Protocol: once ready it prints ``UMOCKDEV_DIR=<dir>``; then it reads one JSON object a line on
stdin and answers each with one JSON line on stdout (``{"ok": true, ...}`` or ``{"ok": false,
"error": ...}``). Commands (``device`` picks a printer by serial, default the first):

- ``{"op": "state"}``: counters, claims, drivers, halts, control requests seen.
- ``{"op": "received", "hex": false}``: length and sha256 of the bytes the printer accepted
  on its bulk OUT endpoint (and the bytes in hex when asked); ``"clear": true`` empties it.
- ``{"op": "status", "value": 8}``: the GET_PORT_STATUS byte.
- ``{"op": "device_id", "text": "MFG:..;"}``: the GET_DEVICE_ID text (the length is added).
- ``{"op": "stall", "count": 1, "endpoint": 1, "skip": 0}``: after ``skip`` good URBs, the
  next ``count`` bulk URBs on that endpoint fail with EPIPE, each leaving it halted (every URB
  fails) until USBDEVFS_CLEAR_HALT.
- ``{"op": "nak", "seconds": 2, "after": 0}``: accept ``after`` more bytes, then NAK bulk OUT
  for ``seconds`` (the URB stays in flight; a client timeout discards it, partly done).
- ``{"op": "short", "bytes": null}``: the next bulk OUT URB takes only ``bytes`` (default
  half) and then NAKs until it is discarded.
- ``{"op": "respond", "hex": "..."}``: bytes for the bulk IN (back-channel) endpoint.
- ``{"op": "soft_reset_0x23", "accept": true}``: accept SOFT_RESET as usblp sends it
  (bmRequestType 0x23); by default only the class spec's 0x21 works and 0x23 stalls.
- ``{"op": "bind"}`` / ``{"op": "unbind"}``: bind usblp to the printer interface, or not.
- ``{"op": "unconfigure"}``: the device is unconfigured (as after a reset that set config 0);
  a SETCONFIGURATION to 1 then makes usblp bind the printer interface, as the kernel does.
- ``{"op": "unplug", "urb_status": "ESHUTDOWN", "uevent_delay": 0}``: URBs fail with
  ``urb_status`` (ESHUTDOWN as when the hub noticed first, EPROTO as when the wire failed
  first). The disconnect (the "remove" uevent, the device leaving sysfs, ENODEV for every
  later ioctl but a reap, and for a reap with nothing left) happens ``uevent_delay`` seconds
  later; with 0 it happens before any URB fails, so a client that sees the failure and looks
  at the bus again no longer finds the device.
- ``{"op": "plug", "serial": "UMOCK0002"}``: hotplug a second printer, a multifunction
  device (see composite_printer_alts), at the next address; an "add" uevent goes out.
- ``{"op": "quit"}``.

Why some things are the way they are:
- The kernel's order of work is kept where a client can see it: the control-request interface
  check (``check_ctrlrecip``, with its GET_DEVICE_ID exception), the implicit claim of an
  interface a URB uses (``checkintf``), reaping allowed after disconnect, ENODEV otherwise.
- Time-based behaviour (NAK windows) is evaluated when the client reaps: libusb polls the
  device fd for POLLOUT, which a umockdev socket always reports, so it reaps continuously
  (thousands of REAPURBNDELAY a second while a transfer is in flight).
- umockdev sends uevents as udevd does (netlink group 2, "libudev" header). libusb built with
  udev hears them; libusb's netlink backend (the one libusb-package bundles) listens to the
  kernel's group 1 only, so under umockdev it sees the bus as it was when it started.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

# Run as a script under Debian's python3 (sys.path has tools/): add the root, so `tools` imports.
sys.path.insert(0, str(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tools.umockdev_rig.descriptors import simple_printer_alts
from tools.umockdev_rig.printer import Printer
from tools.umockdev_rig.testbed import PRELOAD, Bed


def ensure_preloaded() -> None:
    """Re-run this script under umockdev's preload library if it is not already.

    The testbed sends uevents through libudev in this process, which must see the testbed's
    /sys like the clients do (umockdev-wrapper does the same for a test suite).
    """
    preload = os.environ.get("LD_PRELOAD", "")
    if PRELOAD in preload:
        return
    env = dict(os.environ, LD_PRELOAD=f"{PRELOAD}:{preload}" if preload else PRELOAD)
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def main() -> int:
    """Build the testbed with one printer, print where it is, then serve commands."""
    ensure_preloaded()
    bed = Bed()
    first = Printer(
        bed, address=2, port=1, product_id=0x0001, serial="UMOCK0001", alts=simple_printer_alts()
    )
    bed.add(first)
    print(f"UMOCKDEV_DIR={bed.root}", flush=True)
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                reply = bed.command(line)
            except (KeyError, ValueError, TypeError) as exc:
                reply = {"ok": False, "error": repr(exc)}
            print(json.dumps(reply), flush=True)
            if json.loads(line).get("op") == "quit":
                break
    finally:
        # The testbed removes its directory only when finalized, which exit does not do.
        shutil.rmtree(bed.root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

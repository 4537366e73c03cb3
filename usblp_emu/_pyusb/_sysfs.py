"""What Linux says about a USB device outside libusb: sysfs, /dev/bus/usb, /proc.

Used to explain failures (who holds a busy device, which udev rule grants access) and by
``usblp-emu doctor``. Every function answers "unknown" (None or empty) rather than raising
when the system has no such file (another OS, a container, a device gone meanwhile).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "UDEV_RULE_FILE",
    "device_node",
    "holders",
    "interface_drivers",
    "sysfs_device",
    "udev_rule",
]

UDEV_RULE_FILE = "/etc/udev/rules.d/60-usblp-emu.rules"
_SYS_USB = Path("/sys/bus/usb/devices")
_PROC = Path("/proc")


def udev_rule(vendor_id: int | None, product_id: int | None) -> str:
    """The udev rule that gives the logged-in user access, and how to load it."""
    if vendor_id is not None and product_id is not None:
        match = f'ATTR{{idVendor}}=="{vendor_id:04x}", ATTR{{idProduct}}=="{product_id:04x}"'
    else:  # any printer-class interface, as python-escpos users are told to write
        match = 'ENV{ID_USB_INTERFACES}=="*:0701*:*"'
    return (
        f'add to {UDEV_RULE_FILE}: SUBSYSTEM=="usb", {match}, MODE="0660", TAG+="uaccess" '
        "then run: sudo udevadm control --reload && sudo udevadm trigger, and replug"
    )


def device_node(bus: int, address: int) -> Path:
    """``/dev/bus/usb/BBB/DDD``: the node libusb opens."""
    return Path(f"/dev/bus/usb/{bus:03d}/{address:03d}")


def sysfs_device(bus: int, address: int, root: Path = _SYS_USB) -> Path | None:
    """The device's sysfs folder (``/sys/bus/usb/devices/1-1``), or None."""
    try:
        entries = list(root.iterdir())
    except OSError:
        return None
    for entry in entries:
        if ":" in entry.name:
            continue  # an interface, not a device
        try:
            if (
                int((entry / "busnum").read_text()) == bus
                and int((entry / "devnum").read_text()) == address
            ):
                return entry
        except (OSError, ValueError):
            continue
    return None


def interface_drivers(bus: int, address: int, root: Path = _SYS_USB) -> dict[int, str]:
    """Interface number -> the kernel driver bound to it (``usblp``...), bound ones only."""
    device = sysfs_device(bus, address, root)
    if device is None:
        return {}
    drivers: dict[int, str] = {}
    for intf in device.parent.glob(f"{device.name}:*"):
        driver = intf / "driver"
        try:
            number = int((intf / "bInterfaceNumber").read_text(), 16)
            drivers[number] = Path(os.readlink(driver)).name
        except (OSError, ValueError):
            continue
    return dict(sorted(drivers.items()))  # by interface number, whatever the folder order


def holders(bus: int, address: int, proc: Path = _PROC, root: Path = _SYS_USB) -> list[str]:
    """Who holds the device: kernel drivers and processes with its node open.

    Returns:
        E.g. ``["kernel driver usblp (interface 0)", "ipp-usb (pid 812)"]``; processes we may
        not inspect are not listed.

    """
    drivers = interface_drivers(bus, address, root)
    # "usbfs" is not a driver to unbind: it means a program claimed the interface via libusb.
    held = [
        f"a program using libusb (usbfs) on interface {n}"
        if d == "usbfs"
        else f"kernel driver {d} (interface {n})"
        for n, d in drivers.items()
    ]
    node = str(device_node(bus, address))
    try:
        pids = [p for p in proc.iterdir() if p.name.isdigit() and int(p.name) != os.getpid()]
    except OSError:
        return held
    for pid in pids:
        try:
            fds = list((pid / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target == node:
                try:
                    comm = (pid / "comm").read_text().strip()
                except OSError:
                    comm = "?"
                held.append(f"{comm} (pid {pid.name})")
                break
    return held

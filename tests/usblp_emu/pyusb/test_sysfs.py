"""sysfs, /dev/bus/usb and /proc lookups, against fake trees in tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from usblp_emu._pyusb import _sysfs
from usblp_emu._pyusb._sysfs import (
    UDEV_RULE_FILE,
    device_node,
    holders,
    interface_drivers,
    sysfs_device,
    udev_rule,
)

# -- building fake trees ------------------------------------------------------------------


def add_device(root: Path, name: str, bus: int, devnum: int) -> Path:
    """A device folder as the kernel writes it (decimal, newline-terminated)."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "busnum").write_text(f"{bus}\n")
    (folder / "devnum").write_text(f"{devnum}\n")
    return folder


def add_interface(root: Path, name: str, number: str, driver: str | None) -> Path:
    """An interface folder: bInterfaceNumber in hex text, ``driver`` a symlink when bound."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "bInterfaceNumber").write_text(f"{number}\n")
    if driver is not None:
        # Dangling on purpose: only the link's own text is read.
        (folder / "driver").symlink_to(f"../../../../bus/usb/drivers/{driver}")
    return folder


@pytest.fixture
def sys_usb(tmp_path: Path) -> Path:
    """/sys/bus/usb/devices with two buses, a printer at 1-4 and a hub's child at 1-1.2."""
    root = tmp_path / "sys" / "bus" / "usb" / "devices"
    root.mkdir(parents=True)
    add_device(root, "usb1", 1, 1)
    add_device(root, "usb2", 2, 1)
    add_device(root, "1-1", 1, 2)
    add_device(root, "1-1.2", 1, 5)
    add_device(root, "1-4", 1, 4)
    add_device(root, "2-1", 2, 4)
    # The printer: interface 0 bound to usblp, interface 1 unbound, interface 0x0a bound.
    add_interface(root, "1-4:1.0", "00", "usblp")
    add_interface(root, "1-4:1.1", "01", None)
    add_interface(root, "1-4:1.10", "0a", "usbfs")
    # Other devices' interfaces must not be counted as the printer's.
    add_interface(root, "1-1:1.0", "00", "hub")
    add_interface(root, "1-1.2:1.0", "00", "usbhid")
    add_interface(root, "2-1:1.0", "00", "usb-storage")
    return root


# -- udev_rule and device_node ------------------------------------------------------------


def test_udev_rule_with_ids_matches_the_device():
    rule = udev_rule(0x04B8, 0x0202)
    assert f"add to {UDEV_RULE_FILE}:" in rule
    assert 'SUBSYSTEM=="usb"' in rule
    assert 'ATTR{idVendor}=="04b8"' in rule
    assert 'ATTR{idProduct}=="0202"' in rule
    assert 'MODE="0660"' in rule
    assert 'TAG+="uaccess"' in rule
    assert "sudo udevadm control --reload && sudo udevadm trigger" in rule
    assert "replug" in rule
    assert "ID_USB_INTERFACES" not in rule


def test_udev_rule_pads_ids_to_four_lower_hex_digits():
    rule = udev_rule(0x1, 0xABC)
    assert 'ATTR{idVendor}=="0001"' in rule
    assert 'ATTR{idProduct}=="0abc"' in rule


@pytest.mark.parametrize(("vendor_id", "product_id"), [(None, None), (0x04B8, None), (None, 1)])
def test_udev_rule_without_both_ids_matches_any_printer(vendor_id, product_id):
    rule = udev_rule(vendor_id, product_id)
    assert 'ENV{ID_USB_INTERFACES}=="*:0701*:*"' in rule
    assert "idVendor" not in rule
    assert "idProduct" not in rule
    assert 'TAG+="uaccess"' in rule
    assert UDEV_RULE_FILE in rule


def test_udev_rule_with_id_zero_is_still_specific():
    assert 'ATTR{idVendor}=="0000"' in udev_rule(0, 0)


def test_device_node():
    assert device_node(1, 4) == Path("/dev/bus/usb/001/004")
    assert device_node(12, 127) == Path("/dev/bus/usb/012/127")


# -- sysfs_device -------------------------------------------------------------------------


def test_sysfs_device_finds_by_bus_and_address(sys_usb):
    assert sysfs_device(1, 4, sys_usb) == sys_usb / "1-4"
    assert sysfs_device(2, 4, sys_usb) == sys_usb / "2-1"
    assert sysfs_device(1, 5, sys_usb) == sys_usb / "1-1.2"
    assert sysfs_device(1, 1, sys_usb) == sys_usb / "usb1"


def test_sysfs_device_absent_is_none(sys_usb):
    assert sysfs_device(1, 99, sys_usb) is None
    assert sysfs_device(3, 4, sys_usb) is None


def test_sysfs_device_ignores_interface_folders(tmp_path):
    root = tmp_path / "devices"
    # An interface folder with busnum/devnum would match if it were not skipped.
    add_device(root, "2-7:1.0", 2, 7)
    assert sysfs_device(2, 7, root) is None
    add_device(root, "2-7", 2, 7)
    assert sysfs_device(2, 7, root) == root / "2-7"


def test_sysfs_device_skips_unreadable_and_garbage_entries(tmp_path):
    root = tmp_path / "devices"
    root.mkdir()
    (root / "a-file").write_text("not a folder")
    (root / "no-files").mkdir()
    only_bus = root / "only-bus"
    only_bus.mkdir()
    (only_bus / "busnum").write_text("1\n")
    garbage = root / "garbage"
    garbage.mkdir()
    (garbage / "busnum").write_text("one\n")
    (garbage / "devnum").write_text("4\n")
    empty = root / "empty"
    empty.mkdir()
    (empty / "busnum").write_text("")
    (empty / "devnum").write_text("")
    (root / "dangling").symlink_to(tmp_path / "nowhere")
    assert sysfs_device(1, 4, root) is None
    add_device(root, "1-4", 1, 4)
    assert sysfs_device(1, 4, root) == root / "1-4"


def test_sysfs_device_follows_symlinked_device_folders(tmp_path):
    # The real /sys/bus/usb/devices holds symlinks into /sys/devices.
    real = add_device(tmp_path / "sys" / "devices" / "pci0000:00" / "usb1", "1-4", 1, 4)
    root = tmp_path / "sys" / "bus" / "usb" / "devices"
    root.mkdir(parents=True)
    (root / "1-4").symlink_to(real)
    assert sysfs_device(1, 4, root) == root / "1-4"


@pytest.mark.parametrize("missing", ["does-not-exist", "a-file"])
def test_sysfs_device_with_no_tree_is_none(tmp_path, missing):
    (tmp_path / "a-file").write_text("x")
    assert sysfs_device(1, 4, tmp_path / missing) is None


# -- interface_drivers --------------------------------------------------------------------


def test_interface_drivers_reads_bound_interfaces_only(sys_usb):
    # bInterfaceNumber is hex text: "0a" is interface 10.
    assert interface_drivers(1, 4, sys_usb) == {0: "usblp", 10: "usbfs"}


def test_interface_drivers_does_not_mix_up_devices(sys_usb):
    assert interface_drivers(1, 2, sys_usb) == {0: "hub"}
    assert interface_drivers(1, 5, sys_usb) == {0: "usbhid"}
    assert interface_drivers(2, 4, sys_usb) == {0: "usb-storage"}
    assert interface_drivers(1, 1, sys_usb) == {}  # the root hub here has no interfaces


def test_interface_drivers_skips_bad_interface_numbers(sys_usb):
    add_interface(sys_usb, "1-4:1.2", "zz", "usblp")
    missing = sys_usb / "1-4:1.3"
    missing.mkdir()
    (missing / "driver").symlink_to("../../drivers/usblp")  # bound, but no number
    assert interface_drivers(1, 4, sys_usb) == {0: "usblp", 10: "usbfs"}


def test_interface_drivers_for_an_absent_device_is_empty(sys_usb, tmp_path):
    assert interface_drivers(1, 99, sys_usb) == {}
    assert interface_drivers(1, 4, tmp_path / "nowhere") == {}


def test_interface_drivers_with_symlinked_interfaces(tmp_path):
    real_root = tmp_path / "sys" / "devices" / "usb1"
    real_dev = add_device(real_root, "1-4", 1, 4)
    real_intf = add_interface(real_dev, "1-4:1.0", "00", "usblp")
    root = tmp_path / "sys" / "bus" / "usb" / "devices"
    root.mkdir(parents=True)
    (root / "1-4").symlink_to(real_dev)
    (root / "1-4:1.0").symlink_to(real_intf)
    assert interface_drivers(1, 4, root) == {0: "usblp"}


# -- holders ------------------------------------------------------------------------------

NODE = "/dev/bus/usb/001/004"


def add_process(proc: Path, pid: int | str, comm: str | None, fds: dict[int, str] | None) -> Path:
    folder = proc / str(pid)
    folder.mkdir(parents=True)
    if comm is not None:
        (folder / "comm").write_text(f"{comm}\n")
    if fds is not None:
        (folder / "fd").mkdir()
        for fd, target in fds.items():
            (folder / "fd" / str(fd)).symlink_to(target)
    return folder


@pytest.fixture
def no_kernel_drivers(monkeypatch):
    """holders() reads the real /sys (it takes no sysfs root): keep it out of these tests."""
    monkeypatch.setattr(_sysfs, "interface_drivers", lambda bus, address, root=None: {})


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    proc = tmp_path / "proc"
    add_process(proc, 1, "systemd", {0: "/dev/null", 1: "socket:[1234]"})
    add_process(proc, 42, "ipp-usb", {0: "/dev/null", 3: "/dev/bus/usb/001/002", 7: NODE})
    add_process(proc, 43, "cupsd", {4: "/dev/bus/usb/002/004"})  # same address, other bus
    add_process(proc, 44, "zombie", None)  # no fd folder (exited, or not ours to read)
    add_process(proc, 45, None, {9: NODE})  # comm gone meanwhile
    add_process(proc, 46, "twice", {3: NODE, 4: NODE})  # listed once
    add_process(proc, "self", "pytest", {3: NODE})  # not a pid
    add_process(proc, "net", None, None)
    (proc / "uptime").write_text("1.0 1.0\n")
    return proc


def test_holders_lists_processes_with_the_node_open(no_kernel_drivers, proc):
    found = holders(1, 4, proc)
    assert sorted(found) == sorted(["ipp-usb (pid 42)", "? (pid 45)", "twice (pid 46)"])


def test_holders_of_a_device_nobody_holds(no_kernel_drivers, proc):
    assert holders(1, 9, proc) == []


def test_holders_leaves_out_this_process(no_kernel_drivers, tmp_path):
    proc = tmp_path / "proc"
    add_process(proc, os.getpid(), "python", {3: NODE})
    add_process(proc, 42, "ipp-usb", {3: NODE})
    assert holders(1, 4, proc) == ["ipp-usb (pid 42)"]


def test_holders_skips_fds_that_are_not_links(no_kernel_drivers, tmp_path):
    proc = tmp_path / "proc"
    folder = add_process(proc, 42, "odd", {})
    (folder / "fd" / "3").write_text("a plain file, readlink fails")
    assert holders(1, 4, proc) == []


def test_holders_lists_kernel_drivers_first(monkeypatch, sys_usb, proc):
    real = interface_drivers
    monkeypatch.setattr(
        _sysfs, "interface_drivers", lambda bus, address, root=None: real(bus, address, sys_usb)
    )
    found = holders(1, 4, proc)
    # Drivers come in directory order, not interface order.
    assert sorted(found[:2]) == [
        "a program using libusb (usbfs) on interface 10",
        "kernel driver usblp (interface 0)",
    ]
    assert sorted(found[2:]) == sorted(["ipp-usb (pid 42)", "? (pid 45)", "twice (pid 46)"])


def test_holders_with_no_proc_still_gives_the_kernel_drivers(monkeypatch, tmp_path):
    monkeypatch.setattr(_sysfs, "interface_drivers", lambda bus, address, root=None: {0: "usblp"})
    assert holders(1, 4, tmp_path / "no-proc") == ["kernel driver usblp (interface 0)"]


def test_holders_with_nothing_at_all_is_empty(no_kernel_drivers, tmp_path):
    assert holders(1, 4, tmp_path / "no-proc") == []
    (tmp_path / "a-file").write_text("x")
    assert holders(1, 4, tmp_path / "a-file") == []


def test_holders_never_raises_without_sys_or_proc(tmp_path):
    # Nothing patched: the real /sys may or may not exist here; the answer is a list either way.
    assert isinstance(holders(250, 250, tmp_path / "no-proc"), list)

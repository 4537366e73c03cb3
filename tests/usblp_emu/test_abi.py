"""usblp_emu._abi and usblp's tables: the kernel's numbers, importable with the stdlib alone."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import usblp_emu
from usblp_emu import _abi
from usblp_emu._usblp import _ids

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("usb", "rich", "cereggii", "hazard")


def loaded_after(modules: str) -> set[str]:
    """The top-level packages a fresh interpreter holds after importing ``modules``.

    It runs with ``-S``: no site-packages, so pyusb, rich and cereggii are not even installed
    for it, and an import of one fails instead of passing unnoticed.
    """
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); import {modules}; "
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    proc = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return set(proc.stdout.split())


def test_the_numbers_and_tables_import_with_the_standard_library_alone():
    loaded = loaded_after(
        "usblp_emu._abi, usblp_emu._usblp._ids, tools.rig_guest, tools.opdiff.guest"
    )
    assert not loaded & set(HEAVY)


def test_the_check_sees_a_module_that_needs_pyusb():  # negative control of the check above
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); import usblp_emu._pyusb._transport"
    proc = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, check=False
    )
    assert proc.returncode != 0
    assert "ModuleNotFoundError" in proc.stderr


def test_importing_the_package_loads_nothing_until_a_name_is_used():
    assert not loaded_after("usblp_emu") & set(HEAVY)


def test_every_public_name_resolves_to_its_module_s_object():
    for name in usblp_emu.__all__:
        module = sys.modules.get(usblp_emu._EXPORTS[name]) or __import__(
            usblp_emu._EXPORTS[name], fromlist=[name]
        )
        assert getattr(usblp_emu, name) is getattr(module, name)
    assert set(usblp_emu.__all__) <= set(dir(usblp_emu))
    with pytest.raises(AttributeError, match="no attribute 'Hots'"):
        _ = usblp_emu.Hots  # type: ignore[attr-defined]


def test_the_type_checker_sees_the_same_names_as_the_loader():
    tree = ast.parse((ROOT / "usblp_emu" / "__init__.py").read_text())
    typed = {
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("usblp_")
        for alias in node.names
    }
    assert typed == {(module, name) for name, module in usblp_emu._EXPORTS.items()}


@pytest.mark.parametrize(
    ("command", "number"),
    [
        (_abi.LPIOC_GET_DEVICE_ID(1024), 0x84005001),
        (_abi.LPIOC_GET_PROTOCOLS(), 0x80085002),
        (_abi.LPIOC_SET_PROTOCOL, 0x40005003),
        (_abi.LPIOC_SOFT_RESET, 0x00005007),
        (_abi.GADGET_GET_PRINTER_STATUS, 0x80016721),
        (_abi.GADGET_SET_PRINTER_STATUS, 0xC0016722),
        (_abi.ioc(_abi.IOC_READ | _abi.IOC_WRITE, "U", 0, 24), 0xC0185500),  # USBDEVFS_CONTROL
    ],
)
def test_ioctl_numbers_are_the_kernel_s(command, number):
    assert command == number


def test_an_ioctl_size_out_of_range_is_refused():
    with pytest.raises(ValueError, match=r"ioctl size must be 0\.\.16383, not 16384"):
        _abi.LPIOC_GET_DEVICE_ID(1 << 14)


def test_the_decoders_take_a_command_apart():
    cmd = _abi.LPIOC_GET_DEVICE_ID(1024)
    assert (_abi.ioc_dir(cmd), _abi.ioc_type(cmd), _abi.ioc_nr(cmd), _abi.ioc_size(cmd)) == (
        _abi.IOC_READ,
        ord("P"),
        _abi.IOCNR_GET_DEVICE_ID,
        1024,
    )


def test_request_types_are_the_printer_class_s():
    assert (_abi.RT_CLASS_IN, _abi.RT_CLASS_OUT, _abi.RT_SOFT_RESET_USBLP) == (0xA1, 0x21, 0x23)


def test_the_quirk_table_has_every_kernel_entry():
    assert len(_ids.QUIRK_PRINTERS) == 16
    assert _ids.quirks_for(0x0409, 0xF1BE) == _ids.QUIRK_BIDIR  # NEC Picty800
    assert _ids.quirks_for(0x04B8, 0x0202) == _ids.QUIRK_BAD_CLASS
    assert _ids.quirks_for(0x1209, 0x0001) == 0


@pytest.mark.parametrize(
    ("ids", "binds"),
    [
        ((0x1209, 0x0001, 7, 1, 1), True),
        ((0x1209, 0x0001, 7, 1, 3), True),
        ((0x1209, 0x0001, 7, 1, 4), False),  # no such printer protocol
        ((0x1209, 0x0001, 7, 2, 2), False),  # not the printer subclass
        ((0x1209, 0x0001, 0xFF, 0xFF, 0xFF), False),
        ((0x04B8, 0x0202, 0xFF, 0xFF, 0xFF), True),  # matched by its vendor and product
    ],
)
def test_usblp_binds_as_its_id_table_says(ids, binds):
    assert _ids.usblp_binds(*ids) is binds

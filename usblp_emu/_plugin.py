r"""The pytest plugin: virtual printers for a test of a program that drives USB printers.

Installed with usblp-emu (entry point ``pytest11``). The ``virtual_usb`` fixture runs the test
inside :func:`usblp_emu.virtual_usb`, so the code under test finds the printers through
pyusb's default backend, unchanged; it gives the bus (plug, unplug, ``unplug_after``) and
``virtual_printer`` the first printer::

    @pytest.mark.virtual_printers(dict(vendor_id=0x04B8, product_id=0x0202, protocols=(2,)))
    def test_receipt(virtual_printer):
        my_app.print_receipt()
        assert virtual_printer.received.endswith(b"\x1dV\x00")  # cut

The marker takes printers (keyword dicts for :class:`~usblp_emu.VirtualPrinter`, callables
returning one, or instances) and ``kernel_driver=``; without it the test gets one default
VirtualPrinter with usblp bound. Dicts and callables make fresh printers for every test (an
instance is shared by every test that names it).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from usblp_emu._virtual._backend import VirtualBackend
from usblp_emu._virtual._install import virtual_usb as install
from usblp_emu._virtual._printer import VirtualPrinter

__all__ = ["pytest_configure", "virtual_printer", "virtual_usb"]

MARKER = "virtual_printers"


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker (``--strict-markers`` projects need it)."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}(*printers, kernel_driver=True): the virtual printers the virtual_usb "
        "fixture plugs in (VirtualPrinter keyword dicts, factories or instances)",
    )


def _make(spec: object) -> VirtualPrinter:
    if isinstance(spec, VirtualPrinter):
        return spec
    if isinstance(spec, Mapping):
        return VirtualPrinter(**spec)
    if callable(spec):
        made = spec()
        if isinstance(made, VirtualPrinter):
            return made
    raise pytest.UsageError(
        f"@pytest.mark.{MARKER} takes VirtualPrinter keyword dicts, factories or instances, "
        f"not {spec!r}"
    )


@pytest.fixture
def virtual_usb(request: pytest.FixtureRequest) -> Iterator[VirtualBackend]:
    """The test's virtual printers, found by every ``usb.core.find()`` meanwhile."""
    marker = request.node.get_closest_marker(MARKER)
    specs: tuple[Any, ...] = marker.args if marker is not None else ()
    options: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    printers = [_make(s) for s in specs] or [VirtualPrinter()]
    with install(printers, **options) as bus:
        yield bus


@pytest.fixture
def virtual_printer(virtual_usb: VirtualBackend) -> VirtualPrinter:
    """The first of the test's virtual printers."""
    return virtual_usb.printers[0]

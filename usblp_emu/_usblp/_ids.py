"""usblp's tables: the devices it binds (``usblp_ids[]``) and their quirks (``quirk_printers``).

Both as in drivers/usb/class/usblp.c, with every entry the kernel has. Standard library only,
like :mod:`usblp_emu._abi`: the virtual and real hardware layers, the CLI and the tools ask
:func:`usblp_binds` whether the kernel's usblp would take an interface, rather than repeat the
test.
"""

from __future__ import annotations

from dataclasses import dataclass

from usblp_emu._abi import PRINTER_PROTOCOLS, USB_CLASS_PRINTER, USB_SUBCLASS_PRINTER

__all__ = [
    "QUIRK_BAD_CLASS",
    "QUIRK_BIDIR",
    "QUIRK_PRINTERS",
    "QUIRK_USB_INIT",
    "USBLP_IDS",
    "UsbDeviceId",
    "quirks_for",
    "usblp_binds",
]

QUIRK_BIDIR = 0x1  # reports bidirectional but requires unidirectional mode (no reads)
QUIRK_USB_INIT = 0x2  # needs vendor USB init string
QUIRK_BAD_CLASS = 0x4  # descriptor uses vendor-specific class or subclass

# (idVendor, idProduct) -> quirks, in the kernel's order.
QUIRK_PRINTERS: dict[tuple[int, int], int] = {
    (0x03F0, 0x0004): QUIRK_BIDIR,  # HP DeskJet 895C
    (0x03F0, 0x0104): QUIRK_BIDIR,  # HP DeskJet 880C
    (0x03F0, 0x0204): QUIRK_BIDIR,  # HP DeskJet 815C
    (0x03F0, 0x0304): QUIRK_BIDIR,  # HP DeskJet 810C/812C
    (0x03F0, 0x0404): QUIRK_BIDIR,  # HP DeskJet 830C
    (0x03F0, 0x0504): QUIRK_BIDIR,  # HP DeskJet 885C
    (0x03F0, 0x0604): QUIRK_BIDIR,  # HP DeskJet 840C
    (0x03F0, 0x0804): QUIRK_BIDIR,  # HP DeskJet 816C
    (0x03F0, 0x1104): QUIRK_BIDIR,  # HP Deskjet 959C
    (0x0409, 0xEFBE): QUIRK_BIDIR,  # NEC Picty900 (HP OEM)
    (0x0409, 0xBEF4): QUIRK_BIDIR,  # NEC Picty760 (HP OEM)
    (0x0409, 0xF0BE): QUIRK_BIDIR,  # NEC Picty920 (HP OEM)
    (0x0409, 0xF1BE): QUIRK_BIDIR,  # NEC Picty800 (HP OEM)
    (0x0482, 0x0010): QUIRK_BIDIR,  # Kyocera Mita FS 820
    (0x04F9, 0x000D): QUIRK_BIDIR,  # Brother Industries, Ltd HL-1440 Laser Printer
    (0x04B8, 0x0202): QUIRK_BAD_CLASS,  # Seiko Epson Receipt Printer M129C
}


@dataclass(frozen=True, slots=True)
class UsbDeviceId:
    """One ``struct usb_device_id`` of the table: the fields it matches on (None: any)."""

    vendor: int | None = None
    product: int | None = None
    interface_class: int | None = None
    interface_subclass: int | None = None
    interface_protocol: int | None = None

    def matches(self, vendor: int, product: int, cls: int, subclass: int, protocol: int) -> bool:
        """``usb_match_one_id()`` for an interface of a device, on the fields this entry has."""
        wanted = (
            (self.vendor, vendor),
            (self.product, product),
            (self.interface_class, cls),
            (self.interface_subclass, subclass),
            (self.interface_protocol, protocol),
        )
        return all(field is None or field == value for field, value in wanted)


# usblp_ids[]: the printer class (matched on the interface; the kernel's USB_DEVICE_INFO entries
# for devices that say class 7 in their device descriptor find the same printers), and the one
# printer with a vendor-specific class.
USBLP_IDS: tuple[UsbDeviceId, ...] = (
    *(
        UsbDeviceId(
            interface_class=USB_CLASS_PRINTER,
            interface_subclass=USB_SUBCLASS_PRINTER,
            interface_protocol=protocol,
        )
        for protocol in PRINTER_PROTOCOLS
    ),
    UsbDeviceId(vendor=0x04B8, product=0x0202),  # Seiko Epson Receipt Printer M129C
)


def quirks_for(vendor: int, product: int) -> int:
    """The quirk bits usblp gives a device (0 for most)."""
    return QUIRK_PRINTERS.get((vendor, product), 0)


def usblp_binds(vendor: int, product: int, cls: int, subclass: int, protocol: int) -> bool:
    """Whether usblp's id table matches an interface (its alt setting 0) of this device."""
    return any(entry.matches(vendor, product, cls, subclass, protocol) for entry in USBLP_IDS)

"""Virtual hardware: a printer in memory, and the same printer behind a pyusb backend.

- ``_printer``: ``VirtualPrinter``, a ``DeviceModel`` the emulated host controller drives
  (Device ID, port status, protocols as alt settings, speed, faults, unplug at any moment).
- ``_backend``: ``VirtualBackend``, a ``usb.backend.IBackend`` over virtual printers that
  behaves as pyusb's libusb1 backend over usbfs does.
- ``_layout``: the printer's interfaces, endpoints, speed and power (``ExtraInterface``).
- ``_firmware``: the ``Firmware`` hook and canned firmwares (ESC/POS, Brother raster, PJL,
  DYMO) that answer status requests found in the data.
- ``_roothub``: the bus's root hub, the printers' parent.
- ``_libusb_errors``: libusb's error codes, messages (libusb_strerror's) and errnos.
- ``_pyusb_descriptors``: the descriptor records pyusb reads and their wire bytes.
- ``_libusb``: ``VirtualLibusb``, libusb-1.0's C API over a VirtualBackend, for pyusb's own
  libusb1 backend to drive.
- ``_install``: ``virtual_usb()``, which makes that pyusb's default backend.

Imports hazard, ``_abi``, ``_errors``, ``_core`` and pyusb's ``usb`` (it is a backend): never
the driver, the pyusb transport or the CLI.
"""

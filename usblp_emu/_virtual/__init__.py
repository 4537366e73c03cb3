"""Virtual hardware: a printer in memory, and the same printer behind a pyusb backend.

- ``_printer``: ``VirtualPrinter``, a ``DeviceModel`` the emulated host controller drives
  (Device ID, port status, protocols as alt settings, speed, faults, unplug at any moment).
- ``_backend``: ``VirtualBackend``, a ``usb.backend.IBackend`` over virtual printers that
  behaves as pyusb's libusb1 backend over usbfs does.
- ``_libusb_errors``: libusb's error codes, messages and errnos, as that backend raises them.
- ``_pyusb_descriptors``: the descriptor records pyusb reads and their wire bytes.

Imports hazard, ``_abi``, ``_errors``, ``_core`` and pyusb's ``usb`` (it is a backend): never
the driver, the pyusb transport or the CLI.
"""

"""The emulated USB core: what usblp calls in the kernel's USB stack (docs/architecture.md).

- ``_descriptors``: descriptors, and ``DeviceModel``, the seam between the core and a device
  (a VirtualPrinter, or a real printer through ``_pyusb._model``).
- ``_urb``: URBs on the heap, anchors (kill, poison), and the host controller thread that
  completes them.
- ``_usbcore``: ``UsbCore``: devices and interfaces (with their kref and intfdata), the 16
  minors and their rwsem, runtime PM, control transfers; built with its driver.

Imports hazard, ``_abi``, ``_errors`` only: never pyusb, rich, the driver or the CLI.
"""

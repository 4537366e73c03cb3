"""The umockdev printer's parts, by job (``tools/umockdev_printer.py`` is its entry point).

- ``usbfs``: what usbfs speaks: ioctl numbers, the URB layout, a client's state.
- ``descriptors``: the printers' descriptors and alt settings, and umockdev's record lines.
- ``printer``: one printer behind a usbfs node, answering the ioctls libusb makes.
- ``testbed``: the umockdev testbed (root hub, printers) and the test's commands.

All of it runs under Debian's ``/usr/bin/python3`` with ``gi``: the standard library, ``gi``,
``usblp_emu._abi`` and usblp's id table only (``tests/usblp_emu/test_layers.py`` checks).
"""

"""Real hardware through pyusb and libusb.

- ``_transport``: ``PyusbPrinter``: discovery by interface class, open and claim (the
  kernel-driver dance), Device ID, port status, soft reset, chunked bulk I/O, typed errors
  with remedies.
- ``_model``: ``PyusbModel``: a pyusb printer as a ``DeviceModel``, so the emulated core and
  driver run against it.
- ``_hotplug``: ``PrinterMonitor`` (polling, or udev) and ``HotplugBridge`` (probe arrivals,
  disconnect departures).
- ``_sysfs``: what Linux says outside libusb: sysfs, /dev/bus/usb, /proc (who holds a device).

Imports hazard, ``_abi``, ``_errors``, ``_core`` and pyusb: never the CLI.
"""

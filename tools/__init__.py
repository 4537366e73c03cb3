"""Repository tools: benchmarks, the race verdict table, the kernel rig, the umockdev rig.

Run each by its path (``python tools/NAME.py``); each puts the repository root on ``sys.path``
so that the others import as ``tools.NAME``.

- ``bench_hazard``, ``bench_explore``: hazard's primitives and the explorer, measured in one run.
- ``race_verdicts``: every race scenario under every strategy (the README's table).
- ``kernel_rig``: Debian's kernel under QEMU with the real usblp and a USB printer gadget;
  ``rig_guest``: its guest side (standard library only); ``rig_pyusb``: the pyusb transport
  against the gadget, in the guest.
- ``differential`` (its parts in ``opdiff``): the same operation scripts (``opscripts/``) on the
  real usblp and on the emulator, step by step.
- ``umockdev_printer`` (with ``umockdev_setup.sh``): a USB printer at the usbfs ioctl level for
  real libusb under umockdev.
"""

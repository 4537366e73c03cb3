"""The differential test's parts, by job (``tools/differential.py`` is its command line).

- ``script``: the operation-script language, the ioctls a script names, the parser, the
  corpus (``tools/opscripts/``).
- ``tokens``: a step's outcome as a token (counts, errno names, poll masks, digests).
- ``runner``: a script run against a target; results.
- ``emulator``: the emulator's target (``Host(strategy="static-mutex")`` and a VirtualPrinter
  like the rig's gadget).
- ``guest``: inside the QEMU rig, the real usblp's target and the gadget's side.
- ``compare``: two runs step by step, and the gold files.
- ``kernel``: the host side of a kernel run (the boots).

``script``, ``tokens``, ``runner`` and ``guest`` run in the guest: the standard library only
(with ``usblp_emu._abi`` and ``tools.rig_guest``); ``tests/usblp_emu/test_layers.py`` holds
them to it.
"""

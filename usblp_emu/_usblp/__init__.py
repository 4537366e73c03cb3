"""usblp: the driver, its tables, and the lifetime strategies it runs under.

- ``_ids``: ``usblp_ids[]`` and ``quirk_printers[]``, every kernel entry, with
  ``usblp_binds()``; standard library only.
- ``_driver``: ``struct usblp`` and the driver's paths (probe, open's body, release's and
  disconnect's shared parts, read, write, poll, ioctl, suspend, resume, the URB completions),
  named after their usblp.c functions.
- ``_strategies``: how open finds the struct and who frees it: ``static-mutex``, ``rcu``,
  ``hazard``, ``hazard-prototype``, ``unprotected``.

Imports hazard, ``_abi``, ``_errors`` and ``_core`` only (docs/lifetime.md says why the paths
are what they are).
"""

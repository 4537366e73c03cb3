"""``unprotected``: mainline without ``usblp_mutex``: no existence guarantee at all.

The negative control: the same paths as ``static-mutex`` with the global mutex removed and
nothing in its place, so the explorer must find its use-after-frees and double frees.

Lock order: ``static-mutex``'s, with ``usblp_mutex`` a no-op: ``minor_rwsem`` (read, around
open) -> the runtime PM lock; ``usblp.mut`` -> ``usblp.lock`` in disconnect.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING

from usblp_emu._usblp._strategies._static_mutex import StaticMutexStrategy

if TYPE_CHECKING:
    from usblp_emu._usblp._driver import UsblpDriver

__all__ = ["UnprotectedStrategy"]


class UnprotectedStrategy(StaticMutexStrategy):
    """Mainline's paths with ``usblp_mutex`` taken away."""

    name = "unprotected"

    def __init__(self, driver: UsblpDriver) -> None:
        super().__init__(driver)
        self.usblp_mutex = nullcontext()

"""Lifetime strategies: how open finds the ``struct usblp`` and who frees it.

Each strategy is one small module implementing :class:`Strategy`; the driver
(``usblp_emu._usblp._driver``) supplies the bodies they share. Names are exact and public:
``static-mutex``, ``rcu``, ``hazard``, ``hazard-prototype``, ``unprotected``.

- ``_base``: the interface, and mainline's unguarded ``used = 1``.
- ``_static_mutex``: mainline, one global ``usblp_mutex``; ``_unprotected``: the same without
  it (the negative control).
- ``_counted``: what ``_rcu`` and ``_hazard`` share: a reference count first in the struct,
  a table of published pointers, exclusive open by compare-and-exchange.
- ``_hazard_prototype``: the hazard-pointer conversion as posted.

Each module states its lock order; docs/lifetime.md says what each does about R1-R6.
"""

from __future__ import annotations

from usblp_emu._usblp._strategies._base import Strategy as Strategy
from usblp_emu._usblp._strategies._hazard import HazardStrategy
from usblp_emu._usblp._strategies._hazard_prototype import HazardPrototypeStrategy
from usblp_emu._usblp._strategies._rcu import RcuStrategy
from usblp_emu._usblp._strategies._static_mutex import StaticMutexStrategy
from usblp_emu._usblp._strategies._unprotected import UnprotectedStrategy

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (
        StaticMutexStrategy,
        RcuStrategy,
        HazardStrategy,
        HazardPrototypeStrategy,
        UnprotectedStrategy,
    )
}

# The strategies that claim an existence guarantee (the conformance suite runs over these).
CORRECT_STRATEGIES = ("static-mutex", "rcu", "hazard")

__all__ = ["CORRECT_STRATEGIES", "STRATEGIES", "Strategy"]

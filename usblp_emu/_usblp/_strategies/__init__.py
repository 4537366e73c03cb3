"""Lifetime strategies: how open finds the ``struct usblp`` and who frees it.

Each strategy is one small module implementing :class:`Strategy`; the driver
(``usblp_emu._usblp._driver``) supplies the bodies they share. Names are exact and public:
``static-mutex``, ``rcu``, ``hazard``, ``hazard-prototype``, ``unprotected``.
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

"""``hazard``: the seed's proposal done right.

Refcount first field, hazard-pointer lookup (protect + ``refcount_inc_not_zero``), exclusive
open by compare-and-exchange, every open file holding its own reference, and the last put
frees after a hazard-pointer scan.

Lock order: as ``_counted`` says; the hazard-pointer scan of the last put takes no lock but
the domain's own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hazard import HazardDomain, Hpref
from usblp_emu._usblp._strategies._counted import CountedStrategy

if TYPE_CHECKING:
    from usblp_emu._usblp._driver import Usblp, UsblpDriver

__all__ = ["HazardStrategy"]


class HazardStrategy(CountedStrategy):
    """Hazard pointers + refcount; see ``_counted`` for the rules."""

    name = "hazard"

    def __init__(self, driver: UsblpDriver) -> None:
        super().__init__(driver)
        self.domain = HazardDomain(name="usblp")
        self.hpref: Hpref[Usblp] = Hpref(self.domain, driver.cleanup)

    def get(self, minor: int) -> Usblp | None:
        return self.hpref.get(self.table[minor])

    def put(self, usblp: Usblp) -> None:
        self.hpref.put(usblp)

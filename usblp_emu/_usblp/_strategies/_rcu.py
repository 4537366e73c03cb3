"""``rcu``: RCU lookup + ``refcount_inc_not_zero``; the last put frees via ``call_rcu``.

Lock order: as ``_counted`` says; the free runs on RCU's callback thread, holding no lock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hazard import Rcu
from usblp_emu._usblp._strategies._counted import CountedStrategy

if TYPE_CHECKING:
    from usblp_emu._usblp._driver import Usblp, UsblpDriver

__all__ = ["RcuStrategy"]


class RcuStrategy(CountedStrategy):
    """RCU + refcount; see ``_counted`` for the rules."""

    name = "rcu"

    def __init__(self, driver: UsblpDriver) -> None:
        super().__init__(driver)
        self.rcu = Rcu("usblp")

    def get(self, minor: int) -> Usblp | None:
        with self.rcu.read():
            usblp = self.rcu.dereference(self.table[minor])
            if usblp is not None and not usblp.refcount.inc_not_zero():
                usblp = None
        return usblp

    def put(self, usblp: Usblp) -> None:
        if usblp.refcount.dec_and_test():
            cleanup = self.driver.cleanup
            self.rcu.call_rcu(lambda: cleanup(usblp))

    def close(self) -> None:
        self.rcu.barrier()
        self.rcu.close()

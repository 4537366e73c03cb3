"""The interface every lifetime strategy implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from usblp_emu._core._usbcore import Interface
    from usblp_emu._usblp._driver import Usblp, UsblpDriver

__all__ = ["Strategy", "set_used"]


class Strategy(ABC):
    """Decides how ``open`` reaches the struct, how ``used`` is claimed, and who frees it.

    Attributes:
        name: the strategy's public name.

    """

    name: ClassVar[str]

    def __init__(self, driver: UsblpDriver) -> None:
        self.driver = driver
        self.core = driver.core

    @abstractmethod
    def open(self, minor: int) -> Usblp | int:
        """fops->open: the struct the new file holds, or a negative errno."""

    @abstractmethod
    def release(self, usblp: Usblp) -> int:
        """fops->release: always 0, as in the kernel."""

    @abstractmethod
    def disconnect(self, intf: Interface) -> None:
        """usb_driver->disconnect."""

    def probed(self, usblp: Usblp) -> None:  # noqa: B027 - optional hook
        """Probe registered ``usblp`` at its minor: publish it where open looks."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """The host is shutting down: finish deferred frees (RCU callbacks)."""


def set_used(usblp: Usblp) -> bool:
    """Mainline's ``usblp->used = 1``.

    Exclusive only through the check made before it (and whatever lock the strategy held
    across both).
    """
    usblp.used.store(1)
    return True

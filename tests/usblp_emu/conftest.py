"""What the usblp_emu tests share: a host that is always closed and checked, with a watchdog."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.usblp_emu.usblp.pyusb_host import PyusbHost
from usblp_emu import Host

WATCHDOG = 10.0  # seconds a test may run before its hosts are closed under it
TIMEOUT = 5.0  # seconds the watchdog's timer gets to finish


@contextlib.contextmanager
def managed_host(strategy: str, transport: str = "direct", **kwargs: Any) -> Iterator[Host]:
    """A Host that is closed and checked on exit, with a watchdog against a stuck test.

    If the test still runs after WATCHDOG seconds, a timer closes the host: that unplugs every
    printer, which wakes every blocked call with ENODEV, so the test fails instead of hanging.
    """
    h = PyusbHost(strategy, **kwargs) if transport == "pyusb" else Host(strategy, **kwargs)
    fired = threading.Event()

    def fire() -> None:
        fired.set()
        h.close()

    timer = threading.Timer(WATCHDOG, fire)
    timer.daemon = True
    timer.start()
    yield h
    timer.cancel()
    timer.join(TIMEOUT)
    h.close()
    if fired.is_set():
        pytest.fail(f"test still running after {WATCHDOG} s: the watchdog closed the host")
    h.check()

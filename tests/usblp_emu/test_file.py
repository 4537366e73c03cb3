"""File: the VFS's reference count around the driver's release."""

from __future__ import annotations

import errno

import pytest

from hazard.testing import explore, spawn
from usblp_emu import BadFile, Host, VirtualPrinter


def test_release_runs_once_when_an_operation_races_close():
    def body() -> None:
        host = Host("hazard")
        printer = VirtualPrinter(bidirectional=False)
        f = host.open(host.plug(printer))

        def poller() -> None:
            try:
                f.poll()
            except BadFile as exc:
                assert exc.errno == errno.EBADF

        t = spawn(poller, name="poller")
        f.close()
        t.join()
        host.close()
        host.check()  # a second release would drop the file's reference twice

    result = explore(body, preemption_bound=2)
    assert result.ok, result.failure.report if result.failure else ""
    assert result.complete


def test_operations_after_close_are_ebadf_and_close_is_idempotent():
    with Host("static-mutex") as host:
        f = host.open(host.plug(VirtualPrinter()))
        f.close()
        f.close()
        for op in (lambda: f.write(b"x"), lambda: f.read(1), f.poll, lambda: f.ioctl(0)):
            with pytest.raises(BadFile) as info:
                op()
            assert info.value.errno == errno.EBADF
    host.check()

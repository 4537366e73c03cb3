"""Running a script against a :class:`Target` (the kernel's /dev/usb/lp0, or the emulator):
steps, background operations, hangs, and the results. Standard library only."""

from __future__ import annotations

import dataclasses
import errno
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from tools.opdiff.script import IOCTLS, Op, Script, Step, ioctl_command
from tools.opdiff.tokens import bytes_token, errno_token, ioctl_token, pattern, poll_token


class Target(Protocol):
    """What a script runs against: the real driver in the guest, or the emulator."""

    def open(self, nonblock: bool) -> object:
        """Open the printer's node; a handle."""

    def close(self, handle: object) -> None:
        """Close a handle (EBADF if closed already)."""

    def write(self, handle: object, data: bytes) -> int:
        """write(2)."""

    def read(self, handle: object, count: int) -> bytes:
        """read(2)."""

    def ioctl(self, handle: object, name: str, cmd: int, arg: int) -> object:
        """An ioctl: bytes (device ID), a pair of ints, or an int."""

    def poll(self, handle: object) -> int:
        """The poll mask (POLLNVAL for a closed handle)."""

    def unplug(self, method: str) -> None:
        """Unplug the printer; returns once the driver has let go of it."""

    def replug(self) -> None:
        """Plug it back; returns once the node is there."""

    def stall(self) -> None:
        """The device stops reading (its receive buffers still fill)."""

    def resume(self) -> None:
        """The device reads again."""

    def device_status(self, status: int) -> None:
        """The device reports ``status`` as its port status."""

    def device_send(self, data: bytes) -> None:
        """The device queues ``data`` for the host."""

    def received(self) -> bytes:
        """Every byte the device received since the script started (after resuming it)."""

    def rescue(self) -> None:
        """Unblock whatever a hung step is waiting in (by unplugging)."""

    def close_all(self) -> None:
        """Close every handle still open (end of script)."""


@dataclasses.dataclass
class StepResult:
    """One step's outcome."""

    step: int
    line: int
    op: str
    token: str
    detail: str = ""


@dataclasses.dataclass
class ScriptResult:
    """A script's outcomes on one target."""

    script: str
    fingerprint: str
    steps: list[StepResult]
    received: str
    seconds: float
    check: str = "clean"  # the emulator's heap verdict; always clean for the kernel

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScriptResult:
        """The inverse of :meth:`to_json`."""
        steps = [StepResult(**s) for s in data["steps"]]
        fields = {k: v for k, v in data.items() if k in {f.name for f in dataclasses.fields(cls)}}
        fields["steps"] = steps
        return cls(**fields)


HANG = "HANG"  # a step still blocked after the step timeout
NOT_RUN = "not-run"  # a step after a hang


class _Background:
    def __init__(self, run: Callable[[], tuple[str, str]]) -> None:
        self.outcome: tuple[str, str] | None = None
        self.thread = threading.Thread(target=self._main, args=(run,), daemon=True)
        self.thread.start()

    def _main(self, run: Callable[[], tuple[str, str]]) -> None:
        self.outcome = run()


class Runner:
    """Runs scripts on a target, one step at a time; background steps in threads.

    Args:
        target: the target.
        step_timeout: seconds a foreground step or a wait may block before it is a hang
            (the script then stops, and the target is rescued).

    """

    def __init__(self, target: Target, step_timeout: float) -> None:
        self.target = target
        self.step_timeout = step_timeout
        self.handles: dict[str, object] = {}
        self.jobs: list[_Background] = []  # every thread a step ran in
        self.lock = threading.Lock()

    def run(self, script: Script) -> ScriptResult:
        """Run ``script``; the result records every step (after a hang: ``not-run``)."""
        started = time.monotonic()
        self.handles.clear()
        self.jobs.clear()
        background: dict[str, _Background] = {}
        results: list[StepResult] = []
        hung = False
        for step in script.steps:
            if hung:
                results.append(StepResult(step.number, step.line, step.op.text, NOT_RUN))
                continue
            token, detail = self._step(step, background)
            hung = token == HANG
            results.append(StepResult(step.number, step.line, step.op.text, token, detail))
        if any(job.thread.is_alive() for job in self.jobs):
            self.target.rescue()
            for job in self.jobs:
                job.thread.join(self.step_timeout)
        self.target.close_all()
        received = bytes_token(self.target.received())
        return ScriptResult(
            script.name, script.fingerprint, results, received, time.monotonic() - started
        )

    def _step(self, step: Step, background: dict[str, _Background]) -> tuple[str, str]:
        op = step.op
        if op.verb == "bg":
            assert op.inner is not None
            inner = op.inner
            job = _Background(lambda: self._execute(inner, step.number))
            self.jobs.append(job)
            background[op.args[0]] = job
            return "started", ""
        if op.verb == "wait":
            job = background.pop(op.args[0])
            job.thread.join(self.step_timeout)
            return job.outcome if job.outcome is not None else (HANG, "")
        if op.verb == "expect-blocked":
            return ("blocked" if background[op.args[0]].thread.is_alive() else "done"), ""
        job = _Background(lambda: self._execute(op, step.number))
        self.jobs.append(job)
        job.thread.join(self.step_timeout)
        return job.outcome if job.outcome is not None else (HANG, "")

    def _execute(self, op: Op, number: int) -> tuple[str, str]:
        try:
            return self._dispatch(op, number)
        except OSError as exc:
            return errno_token(exc), str(exc)

    def _handle(self, name: str) -> object:
        with self.lock:
            handle = self.handles.get(name)
        if handle is None:  # its open failed: there is no descriptor to use
            raise OSError(errno.EBADF, f"{name} was not opened")
        return handle

    def _dispatch(self, op: Op, number: int) -> tuple[str, str]:  # noqa: PLR0911, PLR0912 - one case per verb
        target, args = self.target, op.args
        if op.verb == "open":
            handle = target.open(nonblock=len(args) > 1)
            with self.lock:
                self.handles[args[0]] = handle
            return "ok", ""
        if op.verb == "close":
            target.close(self._handle(args[0]))
            return "ok", ""
        if op.verb == "write":
            return str(target.write(self._handle(args[0]), pattern(number, int(args[1], 0)))), ""
        if op.verb == "read":
            data = target.read(self._handle(args[0]), int(args[1], 0))
            return f"read:{bytes_token(data)}", ""
        if op.verb == "ioctl":
            name = args[1]
            spec = IOCTLS[name]
            arg = int(args[2], 0) if len(args) > 2 else spec.size
            cmd = ioctl_command(name, arg)
            return ioctl_token(name, target.ioctl(self._handle(args[0]), name, cmd, arg))
        if op.verb == "poll":
            return poll_token(target.poll(self._handle(args[0]))), ""
        if op.verb == "unplug":
            target.unplug(args[0])
        elif op.verb == "replug":
            target.replug()
        elif op.verb == "stall-device":
            target.stall()
        elif op.verb == "resume-device":
            target.resume()
        elif op.verb == "device-status":
            target.device_status(int(args[0], 0))
        elif op.verb == "device-send":
            target.device_send(pattern(number, int(args[0], 0)))
        elif op.verb == "sleep":
            time.sleep(float(args[0]))
        else:
            raise AssertionError(f"unhandled operation {op.verb}")
        return "ok", ""

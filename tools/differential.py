"""Differential testing: the same operation scripts on the real usblp driver and on the emulator.

An operation script (``tools/opscripts/NAME.ops``) is a header, a ``---`` line, then one
operation per line; ``#`` starts a comment::

    about: a second open is refused with EBUSY while the first is open
    device-id: MFG:usblp-emu;MDL:Kernel Rig;CMD:PCL,PJL,POSTSCRIPT;CLS:PRINTER;
    vid: 0x1209
    pid: 0x0001
    q-len: 10
    ---
    open A
    open B                      # EBUSY
    write A 8193
    unplug remove
    open B | allow kernel=ENOENT emu=ENODEV: devtmpfs removed /dev/usb/lp0 ...

The header is the printer: its IEEE 1284 Device ID, idVendor, idProduct and the number of
8 KiB receive buffers the device has (f_printer's ``q_len``). The rig builds its gadget from
it; the emulator plugs a VirtualPrinter like that gadget (one alt setting, protocol 2).

Operations (F names an open file, NAME a background operation):

=====================  ==========================================================================
``open F [nonblock]``  open /dev/usb/lp0 (O_RDWR, O_NONBLOCK with ``nonblock``)
``close F``            close the descriptor (a second close is EBADF)
``write F N``          write N bytes of a pattern seeded by the step number
``read F N``           read up to N bytes
``ioctl F NAME [ARG]`` an ioctl from :data:`IOCTLS` (ARG: the int argument or the buffer size)
``poll F``             poll(2) for IN|OUT with no timeout; the mask as names
``unplug METHOD``      port-disable, remove, soft-disconnect, unbind or rmmod-hcd
``replug``             the printer comes back (the node reappears)
``stall-device``       the device stops reading: it still fills its ``q-len`` receive buffers,
                       then NAKs; its port status is unchanged
``resume-device``      the device reads again
``device-status B``    the device reports B as its port status byte
``device-send N``      the device queues N bytes for the host (the read-back channel)
``sleep S``            wait S seconds
``bg NAME: OP``        start OP in a thread; its outcome is recorded by ``wait NAME``
``wait NAME``          join a background operation
``expect-blocked NAME`` ``blocked`` if it is still running, ``done`` if it returned
=====================  ==========================================================================

Each step's outcome is one token: ``ok``, a count (write), ``read:N:DIGEST``, an ioctl's value
(normalised where it legitimately differs: GET_BUS_ADDRESS is ``bus-address``), a poll mask
(``IN|OUT|HUP``...), or the errno's name (``ENODEV``). At the end the bytes the device
received are recorded as ``LEN:DIGEST``.

A step may carry ``| allow kernel=T[,T] emu=T[,T]: reason``: a difference the emulator cannot
have (a device node, a timing-dependent count). It is reported as documented only when each
side gives one of its listed tokens (``X*`` matches a prefix); anything else is a divergence.
``allow-received: kernel=... emu=...: reason`` in the header does the same for the bytes.

Commands (``python tools/differential.py CMD``; scripts default to the whole corpus):

- ``emu [SCRIPT...]``: run on the emulator (Host(strategy="static-mutex") and a VirtualPrinter
  configured like the gadget) and print each step's token.
- ``guest SCRIPT...``: inside the QEMU rig only: run against /dev/usb/lp0 with the real driver,
  write the results as JSON into ``$RIG_OUT``.
- ``kernel [SCRIPT...]``: boot the rig once (per distinct device), run ``guest`` over every
  script, compare the real kernel with the recorded gold and with the emulator.
- ``record [SCRIPT...]``: the same boot, then store each script's kernel results next to it as
  ``NAME.kernel.json`` (the gold the default test tier compares the emulator with).
- ``compare [SCRIPT...]``: the emulator against the gold files, no boot.

Exit status: 0 every step matches or is documented, 1 a divergence, 2 bad usage or a script
that does not parse.

In the guest the device side is a thread reading /dev/g_printer0 (:class:`GadgetPort`); a
script starts with the printer plugged in (the runner replugs it if the previous script left
it unplugged), the port reading and the status byte 0x18. The emulator gets a fresh Host and
printer per script.

Rules:
- The guest side imports nothing but the standard library (and the rig's ``rig_guest``):
  Python starts slowly under TCG, and the kernel side must not depend on the emulator.
- Gold files come only from a real kernel run (``record``); they carry a fingerprint of the
  script's operations and go stale when those change.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import os
import re
import select
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parent.parent
# Run as a script (python tools/NAME.py), sys.path has tools/: add the root, so `tools` imports.
sys.path.insert(0, str(ROOT))

from usblp_emu._abi import (  # noqa: E402 - the guest side too: standard library only
    GADGET_SET_PRINTER_STATUS,
    IOC_NONE,
    IOC_READ,
    IOC_WRITE,
    IOCNR_GET_BUS_ADDRESS,
    IOCNR_GET_DEVICE_ID,
    IOCNR_GET_PROTOCOLS,
    IOCNR_GET_VID_PID,
    IOCNR_HP_SET_CHANNEL,
    IOCNR_SET_PROTOCOL,
    IOCNR_SOFT_RESET,
    LPABORT,
    LPCHAR,
    LPGETSTATUS,
    POLLERR,
    POLLHUP,
    POLLIN,
    POLLNVAL,
    POLLOUT,
    POLLRDNORM,
    POLLWRNORM,
    ioc,
)

CORPUS = ROOT / "tools" / "opscripts"
GUEST_RESULTS = "differential-guest.json"
RESULTS_FORMAT = 1

DEVICE_ID_MAX = 1024  # USBLP_DEVICE_ID_SIZE


@dataclasses.dataclass(frozen=True)
class IoctlSpec:
    """How an ioctl is issued: ``value`` (int arg), ``buffer`` (read into ARG or ``size``
    bytes), or ``none`` (arg 0)."""

    how: str
    size: int = 0  # default buffer size
    needs_arg: bool = False


IOCTLS: dict[str, IoctlSpec] = {
    "GET_DEVICE_ID": IoctlSpec("buffer", DEVICE_ID_MAX),
    "GET_PROTOCOLS": IoctlSpec("buffer", 8),
    "SET_PROTOCOL": IoctlSpec("value", needs_arg=True),
    "HP_SET_CHANNEL": IoctlSpec("value", needs_arg=True),
    "GET_BUS_ADDRESS": IoctlSpec("buffer", 8),
    "GET_VID_PID": IoctlSpec("buffer", 8),
    "SOFT_RESET": IoctlSpec("none"),
    "LPGETSTATUS": IoctlSpec("buffer", 4),
    "LPABORT": IoctlSpec("value", needs_arg=True),
    # Misuse the driver must refuse: a wrong direction, a two-int buffer too small for two
    # ints, an unknown 'P' number and an old-style lp.c command usblp does not implement.
    "GET_DEVICE_ID_WRITE": IoctlSpec("none"),
    "GET_PROTOCOLS_SHORT": IoctlSpec("buffer", 4),
    "INVALID": IoctlSpec("none"),
    "LPCHAR": IoctlSpec("value", needs_arg=True),
}


# name -> (direction, nr) of the new-style 'P' commands; an int: an old-style lp.c number.
_COMMANDS: dict[str, tuple[int, int] | int] = {
    "GET_DEVICE_ID": (IOC_READ, IOCNR_GET_DEVICE_ID),
    "GET_PROTOCOLS": (IOC_READ, IOCNR_GET_PROTOCOLS),
    "SET_PROTOCOL": (IOC_WRITE, IOCNR_SET_PROTOCOL),
    "HP_SET_CHANNEL": (IOC_WRITE, IOCNR_HP_SET_CHANNEL),
    "GET_BUS_ADDRESS": (IOC_READ, IOCNR_GET_BUS_ADDRESS),
    "GET_VID_PID": (IOC_READ, IOCNR_GET_VID_PID),
    "SOFT_RESET": (IOC_NONE, IOCNR_SOFT_RESET),
    "LPGETSTATUS": LPGETSTATUS,
    "LPABORT": LPABORT,
    "GET_DEVICE_ID_WRITE": (IOC_WRITE, IOCNR_GET_DEVICE_ID),
    "GET_PROTOCOLS_SHORT": (IOC_READ, IOCNR_GET_PROTOCOLS),
    "INVALID": (IOC_NONE, 0x42),
    "LPCHAR": LPCHAR,
}


def ioctl_command(name: str, size: int) -> int:
    """The command number of the ioctl ``name`` issued with a ``size``-byte buffer.

    The size is encoded only in the commands that read into a buffer (``IOC_READ``).
    """
    command = _COMMANDS[name]
    if isinstance(command, int):
        return command
    direction, nr = command
    return ioc(direction, "P", nr, size if direction == IOC_READ else 0)


POLL_BITS = (
    ("IN", POLLIN),
    ("RDNORM", POLLRDNORM),
    ("OUT", POLLOUT),
    ("WRNORM", POLLWRNORM),
    ("ERR", POLLERR),
    ("HUP", POLLHUP),
    ("NVAL", POLLNVAL),
)
POLL_ASKED = POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM  # ERR, HUP, NVAL always come

UNPLUG_METHODS = ("port-disable", "remove", "soft-disconnect", "unbind", "rmmod-hcd")

# -- scripts ---------------------------------------------------------------------------------


class ScriptError(ValueError):
    """A script that does not parse: one line, ``path:line: what is wrong``."""


@dataclasses.dataclass(frozen=True)
class Allow:
    """A documented difference: each side's acceptable tokens, and why they differ."""

    kernel: tuple[str, ...]
    emu: tuple[str, ...]
    reason: str

    def admits(self, kernel: str, emu: str) -> bool:
        """Whether the kernel's and the emulator's tokens are the documented ones."""
        return token_in(kernel, self.kernel) and token_in(emu, self.emu)


def token_in(token: str, allowed: Sequence[str]) -> bool:
    """Whether ``token`` is in ``allowed`` (an entry ending in ``*`` matches a prefix)."""
    return any(token.startswith(a[:-1]) if a.endswith("*") else token == a for a in allowed)


@dataclasses.dataclass(frozen=True)
class Op:
    """One operation: its verb and arguments (``bg`` wraps another Op)."""

    verb: str
    args: tuple[str, ...]
    inner: Op | None = None

    @property
    def text(self) -> str:
        """The operation as written (normalised spacing)."""
        if self.inner is not None:
            return f"bg {self.args[0]}: {self.inner.text}"
        return " ".join((self.verb, *self.args))


@dataclasses.dataclass(frozen=True)
class Step:
    """An operation at a place in a script."""

    number: int  # 1-based, in script order
    line: int
    op: Op
    allow: Allow | None


@dataclasses.dataclass(frozen=True)
class Device:
    """The printer a script runs against (the gadget's configuration in the rig)."""

    device_id: str
    vid: int
    pid: int
    q_len: int


@dataclasses.dataclass(frozen=True)
class Script:
    """A parsed operation script."""

    name: str
    path: Path
    about: str
    device: Device
    steps: tuple[Step, ...]
    allow_received: Allow | None

    @property
    def fingerprint(self) -> str:
        """A digest of what the script does (device and operations, not the allow-lists)."""
        text = "\n".join([repr(self.device), *(s.op.text for s in self.steps)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


_FILE_OPS = {"open", "close", "write", "read", "ioctl", "poll"}
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*$")
# Tokens may hold colons (``81920:*``): the reason starts after the first ": " past emu=.
_ALLOW = re.compile(r"allow\s+kernel=(\S+)\s+emu=(\S+):\s+(\S.*)$")
_HEADER_KEYS = {"about", "device-id", "vid", "pid", "q-len", "allow-received"}


def parse_script(path: Path) -> Script:
    """Parse the script at ``path``.

    Raises:
        ScriptError: a one-line ``path:line: message`` for the first problem.

    """
    lines = path.read_text(encoding="utf-8").splitlines()
    header: dict[str, tuple[int, str]] = {}
    body_start = None
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line == "---":
            body_start = number
            break
        key, sep, value = line.partition(":")
        key = key.strip()
        if not sep or key not in _HEADER_KEYS:
            keys = ", ".join(sorted(_HEADER_KEYS))
            raise ScriptError(
                f"{path}:{number}: expected a header line 'KEY: value' ({keys}) "
                f"or '---', got {line!r}"
            )
        if key in header:
            raise ScriptError(f"{path}:{number}: {key} given twice")
        header[key] = (number, value.strip())
    if body_start is None:
        raise ScriptError(f"{path}:{len(lines)}: no '---' line ends the header")
    for key in ("about", "device-id", "vid", "pid", "q-len"):
        if key not in header:
            raise ScriptError(f"{path}:{body_start}: the header has no {key!r}")

    def header_int(key: str, low: int, high: int) -> int:
        number, value = header[key]
        try:
            result = int(value, 0)
        except ValueError:
            raise ScriptError(f"{path}:{number}: {key} must be an integer, not {value!r}") from None
        if not low <= result <= high:
            raise ScriptError(f"{path}:{number}: {key} must be {low}..{high}, not {result}")
        return result

    device = Device(
        header["device-id"][1],
        header_int("vid", 0, 0xFFFF),
        header_int("pid", 0, 0xFFFF),
        header_int("q-len", 1, 64),
    )
    allow_received = None
    if "allow-received" in header:
        number, value = header["allow-received"]
        allow_received = _parse_allow(path, number, f"allow {value}")
    parser = _BodyParser(path)
    steps = [parser.step(number, raw) for number, raw in enumerate(lines, 1) if number > body_start]
    found = tuple(s for s in steps if s is not None)
    parser.finish()
    if not found:
        raise ScriptError(f"{path}:{body_start}: the script has no operations")
    return Script(path.stem, path, header["about"][1], device, found, allow_received)


def _parse_allow(path: Path, number: int, text: str) -> Allow:
    match = _ALLOW.match(text.strip())
    if match is None:
        raise ScriptError(
            f"{path}:{number}: expected 'allow kernel=T[,T] emu=T[,T]: reason', got {text!r}"
        )
    kernel, emu, reason = match.groups()
    return Allow(tuple(kernel.split(",")), tuple(emu.split(",")), reason.strip())


class _BodyParser:
    """Parses operation lines, tracking which names are open and which operations run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self.opened: set[str] = set()  # every F some earlier line opens
        self.background: dict[str, int] = {}  # started and not yet waited: NAME -> line

    def fail(self, number: int, message: str) -> ScriptError:
        return ScriptError(f"{self.path}:{number}: {message}")

    def step(self, number: int, raw: str) -> Step | None:
        text = raw.split(" #", 1)[0].strip() if not raw.strip().startswith("#") else ""
        if not text:
            return None
        text, bar, allow_text = text.partition("|")
        allow = _parse_allow(self.path, number, allow_text) if bar else None
        op = self.op(number, text.split())
        if allow is not None and op.verb in ("bg", "sleep"):
            raise self.fail(number, f"{op.verb} has no outcome to allow (annotate the wait)")
        self.count += 1
        return Step(self.count, number, op, allow)

    def op(self, number: int, words: list[str], nested: bool = False) -> Op:
        verb, args = words[0], tuple(words[1:])
        if verb == "bg":
            if nested:
                raise self.fail(number, "bg cannot start another bg")
            if not args or not args[0].endswith(":") or not _NAME.match(args[0][:-1]):
                raise self.fail(number, "expected 'bg NAME: OP'")
            name = args[0][:-1]
            if name in self.background:
                raise self.fail(number, f"{name} is still running (wait for it first)")
            if len(args) < 2 or args[1] not in _FILE_OPS:
                raise self.fail(number, f"bg runs one of {', '.join(sorted(_FILE_OPS))}")
            inner = self.op(number, list(args[1:]), nested=True)
            self.background[name] = number
            return Op("bg", (name,), inner)
        checker = getattr(self, f"_check_{verb.replace('-', '_')}", None)
        if checker is None:
            raise self.fail(number, f"unknown operation {verb!r}")
        checker(number, args)
        return Op(verb, args)

    def finish(self) -> None:
        """Every background operation must be waited for (its outcome is the wait's)."""
        for name, number in self.background.items():
            raise self.fail(number, f"bg {name} is never waited for")

    # One checker per verb: arity and argument types.

    def _arity(self, number: int, args: tuple[str, ...], low: int, high: int, usage: str) -> None:
        if not low <= len(args) <= high:
            raise self.fail(number, f"expected '{usage}'")

    def _file(self, number: int, name: str) -> None:
        if not _NAME.match(name):
            raise self.fail(number, f"bad file name {name!r}")
        if name not in self.opened:
            raise self.fail(number, f"{name} was never opened")

    def _int(self, number: int, value: str, low: int, high: int, what: str) -> int:
        try:
            result = int(value, 0)
        except ValueError:
            raise self.fail(number, f"{what} must be an integer, not {value!r}") from None
        if not low <= result <= high:
            raise self.fail(number, f"{what} must be {low}..{high}, not {result}")
        return result

    def _check_open(self, number: int, args: tuple[str, ...]) -> None:
        self._arity(number, args, 1, 2, "open F [nonblock]")
        if len(args) == 2 and args[1] != "nonblock":
            raise self.fail(number, f"open takes 'nonblock', not {args[1]!r}")
        if not _NAME.match(args[0]):
            raise self.fail(number, f"bad file name {args[0]!r}")
        # Opening a name again is allowed: the earlier open may have failed (after an unplug).
        self.opened.add(args[0])

    def _check_close(self, number: int, args: tuple[str, ...]) -> None:
        self._arity(number, args, 1, 1, "close F")
        self._file(number, args[0])

    def _check_write(self, number: int, args: tuple[str, ...]) -> None:
        self._arity(number, args, 2, 2, "write F N")
        self._file(number, args[0])
        self._int(number, args[1], 0, 64 << 20, "the byte count")

    def _check_read(self, number: int, args: tuple[str, ...]) -> None:
        self._arity(number, args, 2, 2, "read F N")
        self._file(number, args[0])
        self._int(number, args[1], 0, 1 << 20, "the byte count")

    def _check_ioctl(self, number: int, args: tuple[str, ...]) -> None:
        self._arity(number, args, 2, 3, "ioctl F NAME [ARG]")
        self._file(number, args[0])
        spec = IOCTLS.get(args[1])
        if spec is None:
            raise self.fail(number, f"unknown ioctl {args[1]!r} (one of {', '.join(IOCTLS)})")
        if spec.needs_arg and len(args) != 3:
            raise self.fail(number, f"ioctl {args[1]} needs an argument")
        if spec.how == "none" and len(args) == 3:
            raise self.fail(number, f"ioctl {args[1]} takes no argument")
        if len(args) == 3:
            low, high = (2, 4096) if spec.how == "buffer" else (-(1 << 31), (1 << 31) - 1)
            self._int(number, args[2], low, high, f"the {args[1]} argument")

    def _check_poll(self, number: int, args: tuple[str, ...]) -> None:
        self._arity(number, args, 1, 1, "poll F")
        self._file(number, args[0])

    def _check_unplug(self, number: int, args: tuple[str, ...]) -> None:
        self._arity(number, args, 1, 1, "unplug METHOD")
        if args[0] not in UNPLUG_METHODS:
            raise self.fail(number, f"unplug METHOD is one of {', '.join(UNPLUG_METHODS)}")

    def _check_replug(self, number: int, args: tuple[str, ...]) -> None:
        self._arity(number, args, 0, 0, "replug")

    def _check_stall_device(self, number: int, args: tuple[str, ...]) -> None:
        self._arity(number, args, 0, 0, "stall-device")

    def _check_resume_device(self, number: int, args: tuple[str, ...]) -> None:
        self._arity(number, args, 0, 0, "resume-device")

    def _check_device_status(self, number: int, args: tuple[str, ...]) -> None:
        self._arity(number, args, 1, 1, "device-status BYTE")
        self._int(number, args[0], 0, 0xFF, "the status byte")

    def _check_device_send(self, number: int, args: tuple[str, ...]) -> None:
        self._arity(number, args, 1, 1, "device-send N")
        # One gadget request at most, and never a multiple of the packet size: the gadget
        # would end it with a zero-length packet, a device detail the emulator does not model.
        count = self._int(number, args[0], 1, 8192, "the byte count")
        if count % 512 == 0:
            raise self.fail(number, "device-send N must not be a multiple of 512")

    def _check_sleep(self, number: int, args: tuple[str, ...]) -> None:
        self._arity(number, args, 1, 1, "sleep SECONDS")
        try:
            seconds = float(args[0])
        except ValueError:
            raise self.fail(number, f"sleep takes seconds, not {args[0]!r}") from None
        if not 0 <= seconds <= 30:
            raise self.fail(number, "sleep must be 0..30 seconds")

    def _check_wait(self, number: int, args: tuple[str, ...]) -> None:
        self._arity(number, args, 1, 1, "wait NAME")
        if self.background.pop(args[0], None) is None:
            raise self.fail(number, f"no running bg {args[0]} to wait for")

    def _check_expect_blocked(self, number: int, args: tuple[str, ...]) -> None:
        self._arity(number, args, 1, 1, "expect-blocked NAME")
        if args[0] not in self.background:
            raise self.fail(number, f"no running bg {args[0]}")


def corpus_paths() -> list[Path]:
    """Every script of the corpus, by name."""
    return sorted(CORPUS.glob("*.ops"))


def resolve(names: Sequence[str]) -> list[Path]:
    """Script paths from names (``second-open``) or paths; the whole corpus if none."""
    if not names:
        return corpus_paths()
    paths = []
    for name in names:
        path = Path(name) if name.endswith(".ops") else CORPUS / f"{name}.ops"
        if not path.is_file():
            raise ScriptError(f"{name}: no such script ({path})")
        paths.append(path)
    return paths


# -- outcomes as tokens ----------------------------------------------------------------------


def pattern(seed: int, count: int) -> bytes:
    """``count`` bytes of a pattern that differs per seed (the write's step number)."""
    block = bytes((seed * 31 + i) % 251 for i in range(251))
    return (block * (count // 251 + 1))[:count]


def digest(data: bytes) -> str:
    """A short content digest."""
    return hashlib.sha256(data).hexdigest()[:12]


def bytes_token(data: bytes) -> str:
    """``LEN:DIGEST`` (``0`` when empty)."""
    return f"{len(data)}:{digest(data)}" if data else "0"


def poll_token(mask: int) -> str:
    """A poll mask as names (only what ``poll F`` asks for, plus ERR, HUP and NVAL)."""
    names = [name for name, bit in POLL_BITS if mask & bit]
    return "|".join(names) or "none"


def ioctl_token(name: str, value: object) -> tuple[str, str]:
    """(token, detail) for an ioctl's result."""
    if isinstance(value, bytes):  # GET_DEVICE_ID
        return f"id:{bytes_token(value)}", repr(value[2:].decode("latin-1"))
    if isinstance(value, tuple):
        first, second = value
        if name == "GET_BUS_ADDRESS":
            # The device number grows with every enumeration (and the rig re-enumerates
            # between scripts): only its shape is the driver's business.
            ok = first >= 1 and 1 <= second <= 127
            return ("bus-address" if ok else f"bus-address:{first}:{second}"), f"{value}"
        if name == "GET_VID_PID":
            return f"{first:04x}:{second:04x}", ""
        return f"{first}:{second:#x}", ""  # GET_PROTOCOLS: current, mask
    if name == "LPGETSTATUS" and isinstance(value, int):
        return f"status:{value:#04x}", ""
    return str(value), ""


def errno_token(exc: OSError) -> str:
    """The errno's name (``ENODEV``)."""
    return errno.errorcode.get(exc.errno or 0, f"errno{exc.errno}")


# -- running a script ------------------------------------------------------------------------


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


# -- the emulator ----------------------------------------------------------------------------


class _EmuFd:
    """A descriptor: the emulator's File is the kernel's struct file, this is the fd table's
    slot (so a second close is EBADF, as close(2) gives)."""

    def __init__(self, file: Any) -> None:
        self.file = file
        self.closed = False


class EmuTarget:
    """The emulator: a Host (static-mutex, as mainline) and a VirtualPrinter like the gadget.

    The gadget (f_printer) has one interface with one alt setting, protocol 2, bulk IN and
    OUT; its port status reads 0x18 while /dev/g_printer0 is open (the rig keeps it open).

    Args:
        device: the script's device.
        host_factory: builds the Host (tests pass broken ones as negative controls).

    """

    def __init__(self, device: Device, host_factory: Callable[[], Any] | None = None) -> None:
        from usblp_emu import Host, VirtualPrinter

        self.device = device
        self.host = host_factory() if host_factory is not None else Host(strategy="static-mutex")
        self.printer = VirtualPrinter(
            device.device_id, protocols=(2,), vendor_id=device.vid, product_id=device.pid
        )
        self.minor = self.host.plug(self.printer)
        self.fds: list[_EmuFd] = []

    def open(self, nonblock: bool) -> object:
        fd = _EmuFd(self.host.open(self.minor, nonblock=nonblock))
        self.fds.append(fd)
        return fd

    @staticmethod
    def _fd(handle: object) -> _EmuFd:
        assert isinstance(handle, _EmuFd)
        return handle

    def close(self, handle: object) -> None:
        fd = self._fd(handle)
        if fd.closed:
            raise OSError(errno.EBADF, "descriptor already closed")
        fd.closed = True
        fd.file.close()

    def write(self, handle: object, data: bytes) -> int:
        return int(self._fd(handle).file.write(data))

    def read(self, handle: object, count: int) -> bytes:
        return bytes(self._fd(handle).file.read(count))

    def ioctl(self, handle: object, name: str, cmd: int, arg: int) -> object:
        value = self._fd(handle).file.ioctl(cmd, arg)
        if name == "GET_DEVICE_ID":
            return bytes(value)
        return tuple(value) if isinstance(value, tuple) else int(value)

    def poll(self, handle: object) -> int:
        fd = self._fd(handle)
        if fd.closed:
            return POLLNVAL  # what poll(2) says of a descriptor that is not open
        return int(fd.file.poll()) & (POLL_ASKED | POLLERR | POLLHUP)

    def unplug(self, method: str) -> None:
        del method  # the emulated core has one unplug: URBs fail, then disconnect
        self.host.unplug(self.printer)

    def replug(self) -> None:
        # A re-enumerated gadget starts with fresh receive buffers.
        self.printer.release_bulk_out()
        self.minor = self.host.plug(self.printer)

    def stall(self) -> None:
        self.printer.hold_bulk_out(self.device.q_len)

    def resume(self) -> None:
        self.printer.release_bulk_out()

    def device_status(self, status: int) -> None:
        self.printer.set_port_status(status)

    def device_send(self, data: bytes) -> None:
        self.printer.send_to_host(data)

    def received(self) -> bytes:
        return bytes(self.printer.received)

    def rescue(self) -> None:
        self.host.unplug(self.printer)

    def close_all(self) -> None:
        for fd in self.fds:
            if not fd.closed:
                fd.closed = True
                fd.file.close()

    def finish(self) -> str:
        """Close the host; the heap's verdict (``clean`` or the first error)."""
        self.host.close()
        try:
            self.host.check()
        except Exception as exc:  # any checker's error is the verdict, whatever its type
            return f"{type(exc).__name__}: {exc}"
        return "clean"


def run_emulator(
    script: Script, step_timeout: float = 10.0, host_factory: Callable[[], Any] | None = None
) -> ScriptResult:
    """Run ``script`` on a fresh emulator; the result includes the heap's verdict."""
    target = EmuTarget(script.device, host_factory)
    try:
        result = Runner(target, step_timeout).run(script)
    finally:
        verdict = target.finish()
    result.check = verdict
    return result


# -- the guest (inside the QEMU rig) ---------------------------------------------------------

LP_NODE = "/dev/usb/lp0"
GADGET_NODE = "/dev/g_printer0"
USBLP_DRIVER = Path("/sys/bus/usb/drivers/usblp")
_PORT_FD = 200  # the gadget port's descriptor, kept away from the numbers scripts get
_FIRST_FD, _LAST_FD = 300, 900  # the numbers script descriptors get, in turn


class GadgetPort:
    """The device side: reads /dev/g_printer0 in a thread, so the printer takes data.

    The port stays open (f_printer reports "selected" only while it is) and is polled every
    50 ms; a poll queues the gadget's free receive requests (``setup_rx_reqs``). Pausing it
    drains what is buffered, queues every request, then stops reading: the host can then
    complete exactly ``q_len`` more transfers, one per request, before the device NAKs.
    """

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.data = bytearray()  # guarded by cond
        self.paused = False  # guarded by cond
        self.parked = False  # guarded by cond
        self.empty_polls = 0  # guarded by cond: polls that found nothing to read
        self.fd = -1
        self.stopping = False
        self.thread: threading.Thread | None = None

    def open(self) -> None:
        """Open the gadget's node (after a replug recreated it) and start reading."""
        fd = os.open(GADGET_NODE, os.O_RDWR | os.O_NONBLOCK)
        os.dup2(fd, _PORT_FD)
        os.close(fd)
        with self.cond:
            self.fd = _PORT_FD
            self.paused = False
            self.parked = False
            self.cond.notify_all()
        if self.thread is None:
            self.thread = threading.Thread(target=self._main, daemon=True)
            self.thread.start()

    def close(self) -> None:
        """Stop reading and close the node (before a replug destroys it)."""
        self.pause()
        with self.cond:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1

    def _main(self) -> None:
        while True:
            with self.cond:
                while self.paused or self.fd < 0:
                    if self.paused and not self.parked and self.fd >= 0:
                        self._drain_locked()
                    self.parked = True
                    self.cond.notify_all()
                    self.cond.wait()
                self.parked = False
            self._poll_once(50)

    def _poll_once(self, timeout_ms: int) -> bool:
        """One poll (which queues the free requests) and a read; whether data came."""
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        try:
            events = poller.poll(timeout_ms)
        except OSError:
            events = []
        mask = events[0][1] if events else 0
        chunk = b""
        if mask & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
            time.sleep(timeout_ms / 1000)  # a disabled gadget (unplugged): nothing will come
        elif mask & select.POLLIN:
            with contextlib.suppress(OSError):  # EAGAIN, or ENODEV from a racing unplug
                chunk = os.read(self.fd, 1 << 16)
        with self.cond:
            if chunk:
                self.data += chunk
            else:
                self.empty_polls += 1
            self.cond.notify_all()
        return bool(chunk)

    def _drain_locked(self) -> None:
        # Called with cond held: poll and read until nothing is left, so that every receive
        # request is queued again, empty.
        self.cond.release()
        try:
            while self._poll_once(0):
                pass
        finally:
            self.cond.acquire()

    def pause(self) -> None:
        """Drain, then stop reading (returns once the reader is parked)."""
        with self.cond:
            if self.paused and self.parked:
                return
            self.paused = True
            self.cond.notify_all()
            if self.fd >= 0:
                self.cond.wait_for(lambda: self.parked, timeout=30)

    def resume(self) -> None:
        """Read again."""
        with self.cond:
            self.paused = False
            self.parked = False
            self.cond.notify_all()

    def settle(self, timeout: float = 30) -> None:
        """Return once everything the host sent so far has been read."""
        with self.cond:
            if self.paused or self.fd < 0:
                return
            target = self.empty_polls + 2
            self.cond.wait_for(lambda: self.empty_polls >= target, timeout=timeout)

    def take(self) -> bytes:
        """What was read since the last take."""
        with self.cond:
            data = bytes(self.data)
            self.data.clear()
        return data

    def send(self, data: bytes) -> None:
        """Queue ``data`` for the host (the gadget's bulk IN)."""
        sent = os.write(self.fd, data)
        if sent != len(data):
            raise OSError(errno.EIO, f"the gadget took {sent} of {len(data)} bytes")

    def set_status(self, status: int) -> None:
        """Set the gadget's port status byte (GADGET_SET_PRINTER_STATUS)."""
        fcntl.ioctl(self.fd, GADGET_SET_PRINTER_STATUS, status)


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


def _usblp_bound() -> bool:
    """Whether usblp is bound to an interface (its sysfs folder links one, ``1-1:1.0``)."""
    if not USBLP_DRIVER.is_dir():
        return False
    return any(p.name[0].isdigit() for p in USBLP_DRIVER.iterdir())


class GuestTarget:
    """The real usblp driver, inside the rig: /dev/usb/lp0 and the rig's triggers."""

    def __init__(self, rig: Any) -> None:
        self.rig = rig
        self.port = GadgetPort()
        self.fds: list[int] = []
        self.next_fd = _LAST_FD
        _wait(lambda: os.path.exists(LP_NODE), 60, LP_NODE)
        _wait(lambda: os.path.exists(GADGET_NODE), 60, GADGET_NODE)
        self.port.open()

    def prepare(self) -> None:
        """Before a script: the printer plugged in and bound, the port reading, nothing owed."""
        if not os.path.exists(LP_NODE) or not _usblp_bound():
            self.replug()
        self.port.resume()
        self.port.set_status(0x18)  # selected, no error: what an open port reports
        self.port.settle()
        self.port.take()

    def open(self, nonblock: bool) -> object:
        opened = os.open(LP_NODE, os.O_RDWR | (os.O_NONBLOCK if nonblock else 0))
        # A fresh number for every open, so an operation on a closed descriptor meets EBADF
        # and never a later open that reused its number (the same struct file either way).
        self.next_fd = self.next_fd + 1 if self.next_fd < _LAST_FD else _FIRST_FD
        fd = os.dup2(opened, self.next_fd)
        os.close(opened)
        self.fds.append(fd)
        return fd

    def close(self, handle: object) -> None:
        assert isinstance(handle, int)
        if handle in self.fds:
            self.fds.remove(handle)
        os.close(handle)

    def write(self, handle: object, data: bytes) -> int:
        assert isinstance(handle, int)
        return os.write(handle, data)

    def read(self, handle: object, count: int) -> bytes:
        assert isinstance(handle, int)
        return os.read(handle, count)

    def ioctl(self, handle: object, name: str, cmd: int, arg: int) -> object:
        assert isinstance(handle, int)
        spec = IOCTLS[name]
        if name == "SOFT_RESET":
            # The gadget drops what it buffered but nobody read yet; read it all first so
            # the bytes received do not depend on the reader's timing.
            self.port.settle()
        if spec.how == "value":
            return fcntl.ioctl(handle, cmd, arg)
        if spec.how == "none":
            return fcntl.ioctl(handle, cmd, 0)
        buf = bytearray(arg)
        fcntl.ioctl(handle, cmd, buf, True)
        if name == "GET_DEVICE_ID":
            # usblp copies min(length, size) bytes; the length is clamped as usblp does.
            length = min(max(int.from_bytes(buf[:2], "big"), 2), DEVICE_ID_MAX - 1)
            return bytes(buf[: min(length, arg)])
        if name == "LPGETSTATUS":
            return int(struct.unpack("<i", buf[:4])[0])
        first, second = struct.unpack("<ii", buf[:8])
        return (int(first), int(second))

    def poll(self, handle: object) -> int:
        assert isinstance(handle, int)
        poller = select.poll()
        poller.register(handle, POLL_ASKED)
        events = poller.poll(0)
        return events[0][1] if events else 0

    def unplug(self, method: str) -> None:
        # What the device accepted before the unplug was received: let its reader take it,
        # or the disabled gadget keeps it out of reach (unless the script stalled it).
        self.port.settle()
        self.rig.unplug(method)
        # The node goes first (usb_deregister_dev), the driver lets go when disconnect has
        # returned: wait for both, so the next step sees a finished unplug, as the emulator's.
        _wait(lambda: not os.path.exists(LP_NODE), 30, f"{LP_NODE} to go")
        _wait(lambda: not _usblp_bound(), 30, "usblp to unbind")

    def replug(self) -> None:
        # The rig's replug unbinds the gadget (its node goes) and primes the new one, which
        # needs the node free (f_printer allows one open): close the port around it. The
        # re-enumerated gadget has fresh buffers, and the port reads again, stalled or not.
        self.port.close()
        self.rig.replug()
        _wait(lambda: os.path.exists(LP_NODE) and _usblp_bound(), 60, f"{LP_NODE} to come back")
        _wait(lambda: os.path.exists(GADGET_NODE), 60, f"{GADGET_NODE} to come back")
        self.port.open()

    def stall(self) -> None:
        self.port.pause()

    def resume(self) -> None:
        self.port.resume()

    def device_status(self, status: int) -> None:
        self.port.set_status(status)

    def device_send(self, data: bytes) -> None:
        self.port.send(data)

    def received(self) -> bytes:
        self.port.resume()
        self.port.settle()
        return self.port.take()

    def rescue(self) -> None:
        with contextlib.suppress(Exception):
            self.rig.unplug("remove")

    def close_all(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()


def _gadget_config() -> dict[str, int]:
    """The gadget's idVendor, idProduct and q_len, read back from configfs."""
    config: dict[str, int] = {}
    for gadget in Path("/sys/kernel/config/usb_gadget").iterdir():
        for key in ("idVendor", "idProduct"):
            with contextlib.suppress(OSError, ValueError):
                config[key] = int((gadget / key).read_text().strip(), 0)
        for function in (gadget / "functions").glob("printer.*"):
            with contextlib.suppress(OSError, ValueError):
                config["q_len"] = int((function / "q_len").read_text().strip(), 0)
    return config


def run_guest(paths: Sequence[Path], out: Path, step_timeout: float) -> int:
    """Inside the rig: run every script against the real driver; write the results to ``out``."""
    from tools import rig_guest  # the rig's, inside the guest only

    started = time.monotonic()
    scripts = [parse_script(p) for p in paths]
    config: dict[str, int | str] = {**_gadget_config()}
    config["device_id"] = os.environ.get("RIG_DEVICE_ID", "")
    # "ok": usblp read the configured ID back (the rig pads pnp_string on kernels with
    # f_printer's length bug); anything else would be the rig's difference, not usblp's.
    config["pnp"] = os.environ.get("RIG_PNP", "")
    results: list[dict[str, Any]] = []
    document: dict[str, Any] = {
        "format": RESULTS_FORMAT,
        "kernel": os.uname().release,
        "gadget": config,
        "scripts": results,
    }
    target: GuestTarget | None = None
    for script in scripts:
        wanted: dict[str, int | str] = {
            "idVendor": script.device.vid,
            "idProduct": script.device.pid,
            "q_len": script.device.q_len,
            "device_id": script.device.device_id,
            "pnp": "ok",
        }
        mismatch = {k: (v, config.get(k)) for k, v in wanted.items() if config.get(k) != v}
        if mismatch:
            raise RuntimeError(f"{script.name}: the gadget is not the script's device: {mismatch}")
        if target is None:
            target = GuestTarget(rig_guest)
        target.prepare()
        result = Runner(target, step_timeout).run(script)
        results.append(result.to_json())
        print(f"{script.name}: {len(result.steps)} steps in {result.seconds:.1f} s", flush=True)
        out.write_text(json.dumps(document, indent=1))  # partial results survive a crash
    document["seconds"] = time.monotonic() - started
    out.write_text(json.dumps(document, indent=1))
    return 0


# -- comparing -------------------------------------------------------------------------------


class Divergence(AssertionError):
    """The emulator (or a new kernel run) disagrees with the kernel on an undocumented step."""


MATCH, DOCUMENTED, DIFF = "MATCH", "documented", "DIFF"


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One compared step."""

    step: int
    line: int
    op: str
    left: str
    right: str
    verdict: str
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class Report:
    """A script compared on two sides (kernel vs emulator, or gold vs a new kernel run)."""

    script: str
    left_name: str
    right_name: str
    verdicts: tuple[Verdict, ...]

    @property
    def diffs(self) -> list[Verdict]:
        """The steps that diverge."""
        return [v for v in self.verdicts if v.verdict == DIFF]

    def render(self, *, all_steps: bool = True) -> str:
        """A table: one line per step, the two tokens and the verdict."""
        counts = {k: sum(v.verdict == k for v in self.verdicts) for k in (MATCH, DOCUMENTED, DIFF)}
        summary = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
        lines = [f"{self.script}: {self.left_name} vs {self.right_name}: {summary}"]
        for v in self.verdicts:
            if not all_steps and v.verdict == MATCH:
                continue
            where = f"{v.step:>3} L{v.line:<3}" if v.step else "  -     "
            lines.append(
                f"  {where} {v.op[:30]:<30} {v.left[:24]:<24} {v.right[:24]:<24} {v.verdict}"
            )
            if v.reason:
                lines.append(f"{'':14}{v.verdict}: {v.reason}")
        return "\n".join(lines)


def compare(
    script: Script,
    left: ScriptResult,
    right: ScriptResult,
    *,
    names: tuple[str, str] = ("kernel", "emulator"),
    same_side: bool = False,
) -> Report:
    """Compare two runs of ``script`` step by step.

    Args:
        script: the parsed script (its allow-lists).
        left: the kernel's results (gold, or a run).
        right: the emulator's results, or with ``same_side`` another kernel run.
        names: the two sides' names, for the report.
        same_side: both sides are the kernel: an allow-list admits any two of its kernel
            tokens (a racy step may give either on two runs).

    """
    verdicts: list[Verdict] = []
    if left.fingerprint != script.fingerprint or right.fingerprint != script.fingerprint:
        stale = names[0] if left.fingerprint != script.fingerprint else names[1]
        verdicts.append(
            Verdict(
                0,
                0,
                "fingerprint",
                left.fingerprint,
                right.fingerprint,
                DIFF,
                f"{stale} results are for another version of the script",
            )
        )
        return Report(script.name, *names, tuple(verdicts))
    for step, a, b in zip(script.steps, left.steps, right.steps, strict=True):
        verdicts.append(
            _verdict(step.number, step.line, step.op.text, a.token, b.token, step.allow, same_side)
        )
    verdicts.append(
        _verdict(0, 0, "received", left.received, right.received, script.allow_received, same_side)
    )
    for side, result in zip(names, (left, right), strict=True):
        if result.check != "clean":
            verdicts.append(Verdict(0, 0, f"{side} heap", result.check, "", DIFF))
    return Report(script.name, *names, tuple(verdicts))


def _verdict(
    number: int, line: int, op: str, a: str, b: str, allow: Allow | None, same_side: bool
) -> Verdict:
    if a == b and a not in (HANG, NOT_RUN):
        return Verdict(number, line, op, a, b, MATCH)
    if allow is not None:
        ok = (
            (token_in(a, allow.kernel) and token_in(b, allow.kernel))
            if same_side
            else (allow.admits(a, b))
        )
        if ok:
            return Verdict(number, line, op, a, b, DOCUMENTED, allow.reason)
    return Verdict(number, line, op, a, b, DIFF)


def check(reports: Sequence[Report]) -> None:
    """Raise :class:`Divergence` listing every undocumented difference.

    Raises:
        Divergence: at least one step differs.

    """
    bad = [r for r in reports if r.diffs]
    if bad:
        count = sum(len(r.diffs) for r in bad)
        text = "\n".join(r.render(all_steps=False) for r in bad)
        raise Divergence(f"{count} undocumented difference(s) in {len(bad)} script(s):\n{text}")


# -- gold files ------------------------------------------------------------------------------


class MissingGold(LookupError):
    """A script has no recorded kernel results."""


def gold_path(script: Script) -> Path:
    """Where the kernel's recorded results for ``script`` live."""
    return script.path.with_suffix(".kernel.json")


def load_gold(script: Script) -> ScriptResult:
    """The recorded kernel results for ``script``.

    Raises:
        MissingGold: never recorded (``record`` writes it from a real kernel run).

    """
    path = gold_path(script)
    if not path.is_file():
        raise MissingGold(
            f"{path.name}: no kernel gold for {script.name}; record it with "
            f"'python tools/differential.py record {script.name}' (boots the rig)"
        )
    data = json.loads(path.read_text())
    return ScriptResult.from_json(data["result"])


def save_gold(script: Script, result: ScriptResult, kernel: str) -> Path:
    """Store a real kernel run's results as ``script``'s gold."""
    path = gold_path(script)
    document = {
        "script": script.name,
        "kernel": kernel,
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": "tools/differential.py record: the real usblp driver in the QEMU rig",
        "result": result.to_json(),
    }
    path.write_text(_one_step_per_line(document))
    return path


def _one_step_per_line(document: dict[str, Any]) -> str:
    """JSON with each step on one line: gold files are read as diffs."""
    marker = "@steps@"
    steps = document["result"]["steps"]
    text = json.dumps({**document, "result": {**document["result"], "steps": marker}}, indent=1)
    lines = ",\n".join(f"   {json.dumps(step)}" for step in steps)
    return text.replace(json.dumps(marker), f"[\n{lines}\n  ]") + "\n"


# -- the kernel run (host side) --------------------------------------------------------------


@dataclasses.dataclass
class KernelRun:
    """A rig boot that ran the guest side over scripts."""

    kernel: str
    results: dict[str, ScriptResult]
    seconds: float  # the whole boot, wall clock
    guest_seconds: float  # the scripts inside the guest


class RigFailure(RuntimeError):
    """The rig did not boot, or the guest side did not produce results."""


def run_kernel(
    scripts: Sequence[Script], *, timeout: float = 1800, out_dir: Path | None = None
) -> KernelRun:
    """Boot the rig once per distinct device and run the guest side over ``scripts``.

    Args:
        scripts: what to run (the corpus shares one device: one boot).
        timeout: seconds for each boot, start to power-off.
        out_dir: where the rig's files go (kept); a temporary folder otherwise.

    Raises:
        RigFailure: the rig did not boot or the guest side gave no results (with the
            console's tail).

    """
    from tools import kernel_rig

    groups: dict[Device, list[Script]] = {}
    for script in scripts:
        groups.setdefault(script.device, []).append(script)
    run = KernelRun("", {}, 0.0, 0.0)
    with contextlib.ExitStack() as stack:
        base = out_dir
        if base is None:
            base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="differential-")))
        try:
            kernel_rig.prepare()
            for index, (device, group) in enumerate(groups.items()):
                _boot_group(kernel_rig, device, group, base / f"boot-{index}", timeout, run)
        except kernel_rig.RigError as exc:
            raise RigFailure(f"the rig failed: {exc.reason}\n{exc.console_tail()}") from exc
    return run


def _boot_group(
    kernel_rig: Any,
    device: Device,
    group: list[Script],
    folder: Path,
    timeout: float,
    run: KernelRun,
) -> None:
    """One boot: ``group``'s scripts on ``device``; their results added to ``run``."""
    folder.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "tools/differential.py", "guest", *(str(s.path) for s in group)]
    rig = kernel_rig.run_in_guest(
        argv,
        device_id=device.device_id,
        vendor_id=device.vid,
        product_id=device.pid,
        q_len=device.q_len,
        timeout=timeout,
        out_dir=folder,
        cwd=ROOT,
    )
    run.seconds += rig.seconds
    path = folder / GUEST_RESULTS
    tail = "\n".join((rig.stderr + "\n" + rig.console).splitlines()[-40:])
    if not path.is_file():
        raise RigFailure(f"the guest wrote no results (exit {rig.returncode}):\n{tail}")
    document = json.loads(path.read_text())
    run.kernel = document["kernel"]
    run.guest_seconds += document.get("seconds", 0.0)
    for data in document["scripts"]:
        result = ScriptResult.from_json(data)
        run.results[result.script] = result
    missing = [s.name for s in group if s.name not in run.results]
    if missing or rig.returncode != 0:
        stopped = f" before {', '.join(missing)}" if missing else ""
        raise RigFailure(f"the guest side failed (exit {rig.returncode}){stopped}:\n{tail}")


# -- command line ----------------------------------------------------------------------------


def _print_result(script: Script, result: ScriptResult) -> None:
    print(f"{script.name} ({result.seconds:.2f} s, heap {result.check})")
    for r in result.steps:
        print(f"  {r.step:>3} L{r.line:<3} {r.op:<36} {r.token}")
    print(f"  received {result.received}")


def _cmd_emu(paths: list[Path], args: argparse.Namespace) -> int:
    for path in paths:
        script = parse_script(path)
        _print_result(script, run_emulator(script, args.step_timeout))
    return 0


def _cmd_guest(paths: list[Path], args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else Path(os.environ["RIG_OUT"]) / GUEST_RESULTS
    return run_guest(paths, out, args.step_timeout)


def _cmd_compare(paths: list[Path], args: argparse.Namespace) -> int:
    reports = []
    for path in paths:
        script = parse_script(path)
        reports.append(
            compare(
                script,
                load_gold(script),
                run_emulator(script, args.step_timeout),
                names=("kernel gold", "emulator"),
            )
        )
    return _finish(reports, args)


def _cmd_kernel(paths: list[Path], args: argparse.Namespace, record: bool = False) -> int:
    scripts = [parse_script(p) for p in paths]
    run = run_kernel(
        scripts, timeout=args.timeout, out_dir=Path(args.out_dir) if args.out_dir else None
    )
    print(
        f"kernel {run.kernel}: {len(scripts)} scripts, boot and run {run.seconds:.0f} s "
        f"({run.guest_seconds:.0f} s of scripts in the guest)"
    )
    reports = []
    for script in scripts:
        result = run.results[script.name]
        if record:
            print(f"recorded {save_gold(script, result, run.kernel).relative_to(ROOT)}")
        elif gold_path(script).is_file():
            reports.append(
                compare(
                    script,
                    load_gold(script),
                    result,
                    names=("kernel gold", "kernel now"),
                    same_side=True,
                )
            )
        reports.append(compare(script, result, run_emulator(script, args.step_timeout)))
    return _finish(reports, args)


def _finish(reports: list[Report], args: argparse.Namespace) -> int:
    for report in reports:
        print(report.render(all_steps=not args.quiet))
    steps = sum(len(r.verdicts) for r in reports)
    documented = sum(v.verdict == DOCUMENTED for r in reports for v in r.verdicts)
    diffs = sum(len(r.diffs) for r in reports)
    print(
        f"{len(reports)} comparisons, {steps} steps: {steps - documented - diffs} match, "
        f"{documented} documented, {diffs} differ"
    )
    return 1 if diffs else 0


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="differential.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("emu", "run scripts on the emulator"),
        ("guest", "inside the rig: run scripts on the real driver"),
        ("kernel", "boot the rig, compare the real kernel with its gold and the emulator"),
        ("record", "boot the rig, store the real kernel's results as gold"),
        ("compare", "compare the emulator with the recorded kernel gold"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("scripts", nargs="*", help="names or paths (default: the whole corpus)")
        p.add_argument("--step-timeout", type=float, default=60.0 if name == "guest" else 10.0)
        p.add_argument("-q", "--quiet", action="store_true", help="only the steps that differ")
        if name == "guest":
            p.add_argument("--out", help=f"results file (default: $RIG_OUT/{GUEST_RESULTS})")
        if name in ("kernel", "record"):
            p.add_argument("--timeout", type=float, default=1800.0, help="the whole boot")
            p.add_argument("--out-dir", help="where the rig's files go (kept)")
    args = parser.parse_args(argv)
    try:
        paths = resolve(args.scripts)
        if args.command == "guest" and not args.scripts:
            raise ScriptError("guest needs the scripts to run")
        for path in paths:
            parse_script(path)  # every script parses before anything runs
    except ScriptError as exc:
        print(f"differential.py: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "emu":
            return _cmd_emu(paths, args)
        if args.command == "guest":
            return _cmd_guest(paths, args)
        if args.command == "compare":
            return _cmd_compare(paths, args)
        return _cmd_kernel(paths, args, record=args.command == "record")
    except (MissingGold, RigFailure) as exc:
        print(f"differential.py: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The operation-script language: the ioctls a script names, the parser, the corpus.

The format is described in tools/differential.py. Standard library only (with
:mod:`usblp_emu._abi`): the rig's guest parses the scripts too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

import usblp_emu._abi as abi

ROOT = Path(__file__).resolve().parents[2]
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
    "GET_DEVICE_ID": (abi.IOC_READ, abi.IOCNR_GET_DEVICE_ID),
    "GET_PROTOCOLS": (abi.IOC_READ, abi.IOCNR_GET_PROTOCOLS),
    "SET_PROTOCOL": (abi.IOC_WRITE, abi.IOCNR_SET_PROTOCOL),
    "HP_SET_CHANNEL": (abi.IOC_WRITE, abi.IOCNR_HP_SET_CHANNEL),
    "GET_BUS_ADDRESS": (abi.IOC_READ, abi.IOCNR_GET_BUS_ADDRESS),
    "GET_VID_PID": (abi.IOC_READ, abi.IOCNR_GET_VID_PID),
    "SOFT_RESET": (abi.IOC_NONE, abi.IOCNR_SOFT_RESET),
    "LPGETSTATUS": abi.LPGETSTATUS,
    "LPABORT": abi.LPABORT,
    "GET_DEVICE_ID_WRITE": (abi.IOC_WRITE, abi.IOCNR_GET_DEVICE_ID),
    "GET_PROTOCOLS_SHORT": (abi.IOC_READ, abi.IOCNR_GET_PROTOCOLS),
    "INVALID": (abi.IOC_NONE, 0x42),
    "LPCHAR": abi.LPCHAR,
}


def ioctl_command(name: str, size: int) -> int:
    """The command number of the ioctl ``name`` issued with a ``size``-byte buffer.

    The size is encoded only in the commands that read into a buffer (``abi.IOC_READ``).
    """
    command = _COMMANDS[name]
    if isinstance(command, int):
        return command
    direction, nr = command
    return abi.ioc(direction, "P", nr, size if direction == abi.IOC_READ else 0)


# A poll mask's bits by name (POLLIN is "IN"), in the order a token lists them.
POLL_BITS: tuple[tuple[str, int], ...] = tuple(
    (name, getattr(abi, f"POLL{name}"))
    for name in ("IN", "RDNORM", "OUT", "WRNORM", "ERR", "HUP", "NVAL")
)
# What poll F asks for; ERR, HUP and NVAL always come.
POLL_ASKED = abi.POLLIN | abi.POLLOUT | abi.POLLRDNORM | abi.POLLWRNORM

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

"""``usblp-emu run -- PROGRAM``: an unchanged pyusb program against virtual printers.

The program (a script, or ``-m module``) runs in this process inside :func:`virtual_usb`, so
every ``usb.core.find()`` it makes without a backend finds the virtual printers through
pyusb's own libusb1 backend. The printers are bound to the emulated usblp, under a lifetime
strategy and on its heap, as the kernel's is on a desktop: the program's kernel-driver
detach runs usblp's disconnect, an attach its probe, an unplug (``--unplug-after``) its
disconnect. After the program ends, what each printer received (bytes, sha256, the first
bytes) and the heap's verdict go to stderr, so they never mix with the program's own stdout.

Rules:
- The exit status is the program's (an uncaught exception: 1, with its traceback, as Python
  gives it; Ctrl-C: 130). A bad option or SPEC, a missing script or module: one line, 2.
- The kernel side runs on the thread that detached or attached, before that call returns,
  as the kernel's unbind does.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import runpy
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from hazard import HazardError, Lock, RefcountViolation
from usblp_emu._cli._common import PROG, Formatter, SubParsers, fail, int_at_least, say
from usblp_emu._cli._printers import virtual_printer
from usblp_emu._errors import DeviceError, EmulatorUsageError
from usblp_emu._host import Host
from usblp_emu._usblp._strategies import CORRECT_STRATEGIES, STRATEGIES
from usblp_emu._virtual._firmware import (
    BrotherQLStatus,
    DymoStatus,
    EscPosStatus,
    Firmware,
    PjlStatus,
)
from usblp_emu._virtual._install import virtual_usb
from usblp_emu._virtual._kernel_view import KernelView
from usblp_emu._virtual._printer import VirtualPrinter

__all__ = ["FIRMWARES", "add_run", "printer_spec", "run_run"]

FIRST_BYTES = 32
FIRMWARES: dict[str, Callable[[], Firmware]] = {
    "escpos": EscPosStatus,
    "brother": BrotherQLStatus,
    "pjl": PjlStatus,
    "dymo": DymoStatus,
}
SPEC_HELP = (
    "VID:PID[,KEY=VALUE...] with keys serial, manufacturer, product, protocols (e.g. 2 or "
    "1/2, alt setting 0 first), out and in (endpoint addresses), interface (its number), "
    f"speed (full, high), firmware ({', '.join(FIRMWARES)}), and id (the IEEE 1284 Device "
    "ID; last, as it may hold commas)"
)


# -- the printers ---------------------------------------------------------------------------------


def printer_spec(text: str) -> dict[str, Any]:
    """``--printer SPEC`` as VirtualPrinter keyword arguments.

    Raises:
        argparse.ArgumentTypeError: a bad SPEC, with what is wrong (argparse's one line).

    """
    head, _, rest = text.partition(",")
    vid, colon, pid = head.partition(":")
    try:
        kwargs: dict[str, Any] = {"vendor_id": int(vid, 16), "product_id": int(pid, 16)}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected VID:PID in hex first, got {head!r}") from None
    if not colon or not all(0 <= v <= 0xFFFF for v in kwargs.values()):
        raise argparse.ArgumentTypeError(f"expected VID:PID (4 hex digits each), got {head!r}")
    while rest:
        item, _, after = rest.partition(",")
        key, equals, value = item.partition("=")
        if key == "id":
            kwargs["device_id"] = rest[len("id=") :]
            break
        rest = after
        if not equals:
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {item!r}")
        kwargs.update(_spec_item(key.strip(), value.strip()))
    try:
        _make(kwargs)  # checks the combination (endpoints, protocols...) now
    except EmulatorUsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return kwargs


def _spec_item(key: str, value: str) -> dict[str, Any]:
    try:
        if key in ("serial", "manufacturer", "product", "speed"):
            return {key: value}
        if key == "protocols":
            return {"protocols": tuple(int(p) for p in value.split("/"))}
        if key in ("out", "in"):
            return {f"{key}_endpoint": int(value, 16)}
        if key == "interface":
            return {"interface_number": int(value)}
        if key == "firmware":
            if value == "none":
                return {}
            if value not in FIRMWARES:
                raise argparse.ArgumentTypeError(
                    f"unknown firmware {value!r}; choose from {', '.join(FIRMWARES)}, none"
                )
            return {"firmware": value}  # made per printer, see _make
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad number in {key}={value!r}") from None
    keys = "serial, manufacturer, product, protocols, out, in, interface, speed, firmware, id"
    raise argparse.ArgumentTypeError(f"unknown key {key!r}; choose from {keys}")


def _make(kwargs: dict[str, Any]) -> VirtualPrinter:
    made = dict(kwargs)
    if "firmware" in made:
        made["firmware"] = FIRMWARES[made["firmware"]]()
    return VirtualPrinter(**made)


# -- usblp on the kernel's side -------------------------------------------------------------------


@dataclass
class UsblpKernel:
    """The emulated usblp as the kernel driver of the virtual printers (a KernelDriver)."""

    host: Host
    binds: int = 0
    unbinds: int = 0
    problems: list[str] = field(default_factory=list)
    _views: dict[int, KernelView] = field(default_factory=dict)
    _lock: Lock = field(default_factory=lambda: Lock("run.kernel"))

    def bind(self, printer: VirtualPrinter, interface: int) -> None:
        """Usblp's probe, on the host."""
        with self._lock:
            if id(printer) in self._views:
                return  # another interface of a device already plugged
            view = self._views[id(printer)] = KernelView(printer)
            self.binds += 1
        try:
            self.host.plug(view)
        except DeviceError as exc:  # usblp refused it: the printer stays unbound
            self.problems.append(f"usblp did not bind to {printer.serial}: {exc}")

    def unbind(self, printer: VirtualPrinter, interface: int) -> None:
        """Usblp's disconnect, on the host."""
        with self._lock:
            view = self._views.pop(id(printer), None)
            if view is None:
                return
            self.unbinds += 1
        self.host.unplug(view)


# -- the command -----------------------------------------------------------------------------------


def add_run(sub: SubParsers) -> None:
    """Add ``run`` to the command line."""
    p = sub.add_parser(
        "run",
        help="run an unchanged pyusb program against virtual printers",
        description="Run PROGRAM (a Python script, or -m MODULE) with virtual printers "
        "installed as pyusb's default backend, bound to the emulated usblp; then print what "
        "each printer received and the heap's verdict on stderr. Exit status: the program's.",
        formatter_class=Formatter,
        usage=f"{PROG} run [--virtual N | --printer SPEC ...] [--unplug-after BYTES] "
        "[--strategy S] [--no-kernel-driver] -- PROGRAM [ARGS...]",
    )
    p.add_argument(
        "--virtual",
        type=int_at_least(1),
        metavar="N",
        default=argparse.SUPPRESS,  # the global --virtual N, given before run, counts too
        help="N default virtual printers (default: 1)",
    )
    p.add_argument(
        "--printer",
        action="append",
        type=printer_spec,
        metavar="SPEC",
        help=f"a printer as you choose, repeatable: {SPEC_HELP}",
    )
    p.add_argument(
        "--unplug-after",
        type=int_at_least(0),
        metavar="BYTES",
        help="unplug each printer once it has accepted BYTES bytes (mid-transfer too)",
    )
    p.add_argument(
        "--strategy",
        choices=list(STRATEGIES),
        default="hazard",
        help="usblp's lifetime strategy on the kernel's side (default: hazard)",
    )
    p.add_argument(
        "--no-kernel-driver",
        action="store_true",
        help="no driver bound and the devices unconfigured (default: usblp bound)",
    )
    p.add_argument("program", nargs=argparse.REMAINDER, metavar="PROGRAM [ARGS...]")
    p.set_defaults(handler=run_run)


def _program(words: Sequence[str]) -> tuple[str | None, str | None, list[str]]:
    """(script, module, args) of PROGRAM ARGS; fails with one line if there is none."""
    words = list(words)
    if words and words[0] == "--":
        words = words[1:]
    if not words:
        fail(f"nothing to run: {PROG} run [OPTIONS] -- SCRIPT [ARGS] (or -m MODULE [ARGS])")
    if words[0] == "-m":
        if len(words) < 2:
            fail("-m needs a module name")
        module = words[1]
        sys.path.insert(0, os.getcwd())  # where python -m looks first
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        finally:
            sys.path.remove(os.getcwd())
        if spec is None:
            fail(f"no module named {module!r}")
        return None, module, words[2:]
    script = words[0]
    if not Path(script).is_file():
        fail(f"no such script: {script}")
    return script, None, words[1:]


def _exec(script: str | None, module: str | None, args: list[str], err: Console) -> int:
    """Run the program as ``python SCRIPT`` or ``python -m MODULE`` would; its status."""
    saved_argv, saved_path = sys.argv, list(sys.path)
    try:
        if script is not None:
            sys.argv = [script, *args]
            sys.path.insert(0, str(Path(script).resolve().parent))
            runpy.run_path(script, run_name="__main__")
        else:
            assert module is not None
            sys.argv = [module, *args]
            sys.path.insert(0, os.getcwd())
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code
        if code is None or isinstance(code, int):
            return code or 0
        print(code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BaseException:  # the program's own failure: its traceback, as Python prints it
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.argv, sys.path[:] = saved_argv, saved_path
    return 0


def first_bytes(data: bytes) -> str:
    """The first bytes of a job, escaped as a Python bytes literal, ``...`` if there are more."""
    shown = repr(data[:FIRST_BYTES])
    return shown + ("..." if len(data) > FIRST_BYTES else "")


def run_run(args: argparse.Namespace, out: Console, err: Console) -> int:
    """``usblp-emu run``."""
    count = getattr(args, "virtual", None)
    if count is not None and args.printer:
        fail("choose --virtual N or --printer SPEC, not both")
    script, module, program_args = _program(args.program)
    if args.printer:
        printers = [_make(kwargs) for kwargs in args.printer]
    else:
        printers = [virtual_printer(i) for i in range(count or 1)]
    host = Host(strategy=args.strategy)
    kernel = UsblpKernel(host)
    with virtual_usb(printers, kernel_driver=not args.no_kernel_driver, kernel=kernel) as bus:
        where = {id(p): bus.bus_address(p) for p in printers}
        if args.unplug_after is not None:
            for p in printers:
                bus.unplug_after(p, args.unplug_after)
        status = _exec(script, module, program_args, err)
        gone = {id(p) for p in printers if not p.plugged}
    host.close()
    name = " ".join([script or f"-m {module}", *program_args])
    say(err, f"{PROG} run: {name} exited {status}")
    for i, p in enumerate(printers, 1):
        data = p.received
        bus_no, address = where[id(p)]
        d = p.descriptor
        note = " (unplugged)" if id(p) in gone else ""
        say(
            err,
            f"printer {i} {d.vendor_id:04x}:{d.product_id:04x} serial {p.serial} at "
            f"{bus_no}:{address}{note}: {len(data)} bytes, sha256 "
            f"{hashlib.sha256(data).hexdigest()}, first bytes {first_bytes(data)}",
        )
    for problem in kernel.problems:
        say(err, problem)
    verdict = _verdict(host)
    tag = "" if args.strategy in CORRECT_STRATEGIES else " (a negative control)"
    say(
        err,
        f"usblp ({args.strategy}{tag}): probed {kernel.binds} time(s), disconnected "
        f"{kernel.unbinds}; heap: {verdict or 'clean (no use-after-free, double free or leak)'}",
    )
    return status


def _verdict(host: Host) -> str | None:
    try:
        host.check()
    except (HazardError, RefcountViolation) as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return None

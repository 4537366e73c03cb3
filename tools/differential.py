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

The parts, by job, in ``tools/opdiff/``: ``script`` (the language, the corpus), ``tokens``,
``runner``, ``emulator``, ``guest`` (inside the rig), ``compare`` (and the gold files),
``kernel`` (the boots); this file is the command line.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

# Run as a script (python tools/NAME.py), sys.path has tools/: add the root, so `tools` imports.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.opdiff.compare import (
    DOCUMENTED,
    MissingGold,
    Report,
    compare,
    gold_path,
    load_gold,
    save_gold,
)
from tools.opdiff.emulator import run_emulator
from tools.opdiff.guest import run_guest
from tools.opdiff.kernel import RigFailure, run_kernel
from tools.opdiff.runner import ScriptResult
from tools.opdiff.script import GUEST_RESULTS, ROOT, Script, ScriptError, parse_script, resolve


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

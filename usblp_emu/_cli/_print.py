"""``usblp-emu print`` and ``watch``: real (or virtual) printers through the emulated driver.

``print`` plugs the printer into an emulated Host as a :class:`PyusbModel`, so the job goes
through usblp's own open, write and release under the chosen lifetime strategy, on the
emulated heap; the heap's verdict is part of the result. ``watch`` runs the hotplug monitor
and probes each arrival with usblp.

Rules: results on stdout, progress and errors on stderr; an unplug mid-job is a result (exit
1, with bytes written and not written), not a crash.
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.live import Live
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from hazard import HazardError, RefcountViolation
from usblp_emu._cli._common import Formatter, SubParsers, fail, positive, say
from usblp_emu._cli._printers import Bus, open_bus, problem_text, read_job, scan
from usblp_emu._cli._printers import select_printer as _select
from usblp_emu._errors import DeviceError, EmulatorUsageError, NoDevice
from usblp_emu._host import Host
from usblp_emu._pyusb._hotplug import HotplugBridge, PrinterEvent, PrinterMonitor
from usblp_emu._pyusb._model import PyusbModel
from usblp_emu._usblp._strategies import STRATEGIES

__all__ = ["add_print_commands"]

JOB_CHUNK = 64 * 1024  # bytes per write(): the progress bar's step


def add_print_commands(sub: SubParsers) -> None:
    """Add ``print`` and ``watch`` to the command line."""
    p = sub.add_parser(
        "print",
        help="print a file through the emulated usblp driver (open, write, close)",
        description="Send FILE to a printer through the emulated usblp driver under a "
        "lifetime strategy: the real printer does the USB work, the emulator's heap checks "
        "the driver's object lifetime. Exit 0 printed and clean; 1 unplugged mid-job or a "
        "lifetime violation; 2 bad usage.",
        formatter_class=Formatter,
    )
    p.add_argument("file", metavar="FILE", help="the job (raw printer language); - for stdin")
    p.add_argument("--device", metavar="D", help="BUS:ADDR, VID:PID, serial or usb:// URI")
    p.add_argument(
        "-s",
        "--strategy",
        default="static-mutex",
        choices=list(STRATEGIES),
        metavar="S",
        help=f"lifetime strategy: {', '.join(STRATEGIES)} (default: static-mutex)",
    )
    p.add_argument(
        "--unplug-after",
        type=int,
        metavar="BYTES",
        help="with --virtual: unplug the printer once it has taken BYTES (to see an unplug)",
    )
    p.set_defaults(handler=run_print)

    p = sub.add_parser(
        "watch",
        help="live table of printers arriving and leaving, each probed by usblp",
        formatter_class=Formatter,
    )
    p.add_argument(
        "--interval", type=positive, default=1.0, metavar="S", help="poll period (default 1)"
    )
    p.add_argument(
        "--duration", type=positive, metavar="S", help="stop after S seconds (default: Ctrl-C)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="with --virtual: the hotplug generator's seed"
    )
    p.set_defaults(handler=run_watch)


# -- print ----------------------------------------------------------------------------------------


def run_print(args: argparse.Namespace, out: Console, err: Console) -> int:
    """``usblp-emu print FILE``."""
    if args.unplug_after is not None and args.virtual is None:
        fail("--unplug-after needs --virtual N (a real printer is unplugged by hand)")
    if args.unplug_after is not None and args.unplug_after < 0:
        fail(f"--unplug-after must be >= 0, not {args.unplug_after}")
    job = read_job(args.file)
    bus = open_bus(args.virtual)
    printer = _select(scan(bus), args.device)
    host = Host(args.strategy)
    model = PyusbModel(printer, on_gone=lambda m: _unplug_later(host, m))
    try:
        minor = host.plug(model)
    except DeviceError as exc:
        host.close()
        fail(f"cannot take {printer.name}: {problem_text(exc)}")
    watcher = _virtual_unplugger(bus, printer.serial, args.unplug_after)
    written, failure = _send(host, minor, job, err, lambda: model.gone)
    if watcher is not None:
        watcher.join()
    host.unplug(model)  # gives the printer back to its kernel driver
    host.close()
    verdict = _verdict(host)
    if failure is None:
        say(out, f"printed {written} bytes to {printer.name} as lp{minor} ({args.strategy})")
    else:
        say(
            out,
            f"{printer.name}: {failure}: {written} bytes written, {len(job) - written} not written",
        )
    say(out, f"heap: {verdict or 'clean (no use-after-free, double free or leak)'}")
    return 1 if failure is not None or verdict else 0


def _send(
    host: Host, minor: int, job: bytes, err: Console, gone: Callable[[], bool]
) -> tuple[int, str | None]:
    written = 0
    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err,
        transient=not err.is_terminal,
        disable=not err.is_terminal,
    )
    try:
        f = host.open(minor)
    except DeviceError as exc:
        return 0, problem_text(exc)
    try:
        with progress:
            task = progress.add_task(f"lp{minor}", total=len(job))
            while written < len(job):
                try:
                    count = f.write(job[written : written + JOB_CHUNK])
                except NoDevice:
                    return written, "unplugged mid-job"
                except DeviceError as exc:
                    if gone():  # usblp says EIO when the URB died with the device
                        return written, "unplugged mid-job"
                    return written, problem_text(exc)
                written += count
                progress.update(task, completed=written)
    finally:
        f.close()
    return written, None


def _verdict(host: Host) -> str | None:
    try:
        host.check()
    except (HazardError, RefcountViolation) as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return None


def _unplug_later(host: Host, model: PyusbModel) -> None:
    # on_gone runs on a transfer worker; the disconnect path waits for transfers, so it runs
    # on a thread of its own.
    threading.Thread(target=host.unplug, args=(model,), name="usb-gone", daemon=True).start()


def _virtual_unplugger(bus: Bus, serial: str | None, after: int | None) -> threading.Thread | None:
    """With --unplug-after: a thread that unplugs the virtual printer once it took BYTES."""
    if after is None or bus.virtual is None:
        return None
    backend = bus.virtual
    target = next(p for p in bus.printers if p.serial == serial)

    def watch() -> None:
        while len(target.received) < after and target.plugged:
            time.sleep(0.005)
        backend.unplug(target)

    thread = threading.Thread(target=watch, name="unplugger", daemon=True)
    thread.start()
    return thread


# -- watch ----------------------------------------------------------------------------------------


def run_watch(args: argparse.Namespace, out: Console, err: Console) -> int:
    """``usblp-emu watch``: until Ctrl-C or --duration."""
    bus = open_bus(args.virtual)
    try:
        monitor = PrinterMonitor(bus.backend, interval=args.interval)
    except EmulatorUsageError as exc:
        fail(str(exc))
    host = Host("static-mutex")
    rows: list[tuple[str, str, str, str, str]] = []
    start = time.monotonic()

    def on_change(event: PrinterEvent, minor: int | None, problem: str | None) -> None:
        p = event.printer
        when = f"{time.monotonic() - start:6.1f}s"
        if event.kind == "departure":
            rows.append((when, "left", f"{p.bus}:{p.address}", p.serial or "?", "disconnected"))
            return
        kind = "returned" if event.returning else "arrived"
        probed = f"usblp bound: lp{minor}" if minor is not None else f"not bound: {problem}"
        rows.append((when, kind, f"{p.bus}:{p.address}", p.serial or "?", probed))

    bridge = HotplugBridge(host, on_change)
    stop = threading.Event()
    generator = _virtual_hotplug(bus, args.seed, args.interval, stop)
    interrupted = False
    try:
        with Live(_watch_table(rows, monitor.source), console=out, auto_refresh=False) as live:
            for event in _until(monitor, stop, args.duration, start):
                bridge.handle(event)
                live.update(_watch_table(rows, monitor.source), refresh=True)
    except KeyboardInterrupt:
        interrupted = True
    except DeviceError as exc:
        fail(f"watching stopped: {problem_text(exc)}")
    finally:
        stop.set()
        if generator is not None:
            generator.join()
        host.close()
    verdict = _verdict(host)
    if not out.is_terminal:
        out.line()  # Live's last frame ends without a newline off a terminal
    say(out, f"{len(rows)} event(s); heap: {verdict or 'clean'}")
    if verdict:
        return 1
    return 130 if interrupted else 0


def _until(
    monitor: PrinterMonitor, stop: threading.Event, duration: float | None, start: float
) -> Iterator[PrinterEvent]:
    """The monitor's events until ``duration`` has passed (or for ever)."""
    if duration is not None:
        threading.Timer(max(0.0, duration - (time.monotonic() - start)), stop.set).start()
    return monitor.events(stop)


def _watch_table(rows: list[tuple[str, str, str, str, str]], source: str) -> Table:
    table = Table(title=f"USB printers (hotplug by {source}; Ctrl-C to stop)", title_justify="left")
    for column in ("time", "event", "bus:addr", "serial", "usblp"):
        table.add_column(column, overflow="fold")
    for row in rows[-30:]:
        table.add_row(*(Text(cell) for cell in row))
    return table


def _virtual_hotplug(
    bus: Bus, seed: int, interval: float, stop: threading.Event
) -> threading.Thread | None:
    """With --virtual: a generator that unplugs and replugs the virtual printers at random."""
    if bus.virtual is None:
        return None
    backend = bus.virtual
    rng = random.Random(seed)

    def run() -> None:
        while not stop.wait(interval * rng.uniform(1.5, 3.0)):
            printer = rng.choice(bus.printers)
            if printer.plugged:
                backend.unplug(printer)
            else:
                backend.plug(printer)

    thread = threading.Thread(target=run, name="virtual-hotplug", daemon=True)
    thread.start()
    return thread

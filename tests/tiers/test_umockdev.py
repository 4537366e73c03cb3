"""The umockdev tier: the pyusb transport on real libusb, against a printer emulated in usbfs.

tools/umockdev_printer.py (under Debian's python3, with gi) builds a umockdev testbed with a
root hub and a printer and answers the usbfs ioctls of its device node;
tests/tiers/umockdev_client.py runs a scenario through ``usblp_emu._pyusb._transport`` in a
child process preloaded with libumockdev-preload (this pytest process is not preloaded, so it
only steers and checks).

Run it with::

    bash tools/umockdev_setup.sh &&
    USBLP_EMU_UMOCKDEV=1 python -m pytest tests/tiers/test_umockdev.py

Without USBLP_EMU_UMOCKDEV=1 the tier skips (it needs Debian packages). With it, it never
skips: anything missing fails with a one-line reason.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from tests.tiers.umockdev_client import job_bytes

pytestmark = [pytest.mark.umockdev]

ROOT = Path(__file__).resolve().parents[2]
DEVICE_SCRIPT = ROOT / "tools" / "umockdev_printer.py"
CLIENT_SCRIPT = ROOT / "tests" / "tiers" / "umockdev_client.py"
SYSTEM_PYTHON = "/usr/bin/python3"
PRELOAD = "libumockdev-preload.so.0"
ENABLED = os.environ.get("USBLP_EMU_UMOCKDEV") == "1"
SETUP_HINT = "run: bash tools/umockdev_setup.sh"
START_TIMEOUT = 15.0
CLIENT_TIMEOUT = 30.0
LIBUSBS = ["system", "bundled"]

if not ENABLED:
    pytestmark.append(
        pytest.mark.skip(
            reason="umockdev tier: set USBLP_EMU_UMOCKDEV=1 to run it "
            "(bash tools/umockdev_setup.sh && USBLP_EMU_UMOCKDEV=1 "
            "python -m pytest tests/tiers/test_umockdev.py)"
        )
    )


def _linker_path(soname: str) -> str | None:
    """Where the dynamic linker finds ``soname``, or None."""
    try:
        listing = subprocess.run(
            ["/sbin/ldconfig", "-p"], capture_output=True, text=True, check=False
        ).stdout
    except OSError:
        return None
    for line in listing.splitlines():
        if line.strip().startswith(soname + " "):
            return line.rsplit("=>", 1)[-1].strip()
    return None


@pytest.fixture(scope="session")
def umockdev_ready() -> None:
    """Fail (never skip) with one line when something the tier needs is missing."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.fail(f"umockdev tier: {SYSTEM_PYTHON} is missing; {SETUP_HINT}", pytrace=False)
    probe = subprocess.run(
        [
            SYSTEM_PYTHON,
            "-c",
            "import gi; gi.require_version('UMockdev', '1.0'); from gi.repository import UMockdev",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.fail(
            f"umockdev tier: {SYSTEM_PYTHON} cannot load UMockdev through gi ({last}); "
            f"{SETUP_HINT}",
            pytrace=False,
        )
    if _linker_path(PRELOAD) is None:
        pytest.fail(f"umockdev tier: {PRELOAD} is not installed; {SETUP_HINT}", pytrace=False)
    if _linker_path("libusb-1.0.so.0") is None:
        pytest.fail(f"umockdev tier: no system libusb-1.0; {SETUP_HINT}", pytrace=False)
    try:
        import libusb_package  # noqa: F401 - only checked here: the clients load it
    except ImportError:
        pytest.fail(
            "umockdev tier: libusb-package is not installed (pip install -e .)", pytrace=False
        )


class _Lines:
    """A child's stdout as a queue of lines, so a read can time out."""

    def __init__(self, stream: IO[str]) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def next(self, timeout: float) -> str | None:
        """The next line; None at EOF. Raises queue.Empty after ``timeout`` seconds."""
        return self._queue.get(timeout=timeout)

    def join(self) -> None:
        """Wait for the pump thread (after the child exited)."""
        self._thread.join(timeout=5)


class Client:
    """One scenario running under the preload; see tests/tiers/umockdev_client.py."""

    def __init__(self, env: dict[str, str], scenario: str, args: dict[str, Any]) -> None:
        self.scenario = scenario
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in finish()
        self.proc = subprocess.Popen(
            [sys.executable, str(CLIENT_SCRIPT), scenario, json.dumps(args)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        assert self.proc.stdout is not None
        self.lines = _Lines(self.proc.stdout)
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.result: dict[str, Any] | None = None

    def _diagnostics(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read()[-3000:]

    def _read(self, deadline: float) -> bool:
        """Read one line; False at EOF."""
        try:
            line = self.lines.next(max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            self.kill()
            pytest.fail(
                f"client {self.scenario} timed out; stderr:\n{self._diagnostics()}", pytrace=False
            )
        if line is None:
            return False
        if line.startswith("EVENT "):
            _, name, data = line.split(" ", 2)
            self.events.append((name, json.loads(data)))
        elif line.startswith("RESULT "):
            self.result = json.loads(line.removeprefix("RESULT "))
        return True

    def wait_event(self, name: str, timeout: float = CLIENT_TIMEOUT) -> dict[str, Any]:
        """Block until the client prints ``EVENT name``."""
        deadline = time.monotonic() + timeout
        while True:
            for seen, data in self.events:
                if seen == name:
                    return data
            if not self._read(deadline):
                pytest.fail(
                    f"client {self.scenario} ended before event {name!r}; "
                    f"stderr:\n{self._diagnostics()}",
                    pytrace=False,
                )

    def finish(self, timeout: float = CLIENT_TIMEOUT) -> dict[str, Any]:
        """The scenario's RESULT (fails the test if it crashed or reported an exception)."""
        deadline = time.monotonic() + timeout
        try:
            while self._read(deadline):
                pass
            self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            self.lines.join()
            diagnostics = self._diagnostics()
        finally:
            self.kill()
        if self.result is None:
            pytest.fail(
                f"client {self.scenario} exited {self.proc.returncode} without a result; "
                f"stderr:\n{diagnostics}",
                pytrace=False,
            )
        if not self.result.get("ok"):
            pytest.fail(
                f"client {self.scenario} failed: {self.result.get('error')}\n{diagnostics}",
                pytrace=False,
            )
        return self.result

    def kill(self) -> None:
        """Stop the child (if still running) and release its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.stderr.close()


class Device:
    """tools/umockdev_printer.py: the testbed, commands to it, and clients run against it."""

    def __init__(self, libusb: str) -> None:
        self.libusb = libusb
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [SYSTEM_PYTHON, str(DEVICE_SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        assert self.proc.stdout is not None
        self.lines = _Lines(self.proc.stdout)
        self.clients: list[Client] = []
        try:
            first = self.lines.next(START_TIMEOUT)
        except queue.Empty:
            first = None
        if first is None or not first.startswith("UMOCKDEV_DIR="):
            self.close()
            pytest.fail(
                f"umockdev tier: the device side did not start ({first!r}); "
                f"stderr:\n{self.diagnostics()}",
                pytrace=False,
            )
        self.root = first.split("=", 1)[1]
        preload = os.environ.get("LD_PRELOAD")
        path = os.environ.get("PYTHONPATH")
        self.env = dict(
            os.environ,
            UMOCKDEV_DIR=self.root,
            LD_PRELOAD=f"{PRELOAD}:{preload}" if preload else PRELOAD,
            # The checkout's usblp_emu, as pytest itself imports it, installed or not.
            PYTHONPATH=f"{ROOT}{os.pathsep}{path}" if path else str(ROOT),
        )

    def diagnostics(self) -> str:
        """The device side's stderr (its log of unhandled ioctls and its own failures)."""
        if self.stderr.closed:
            return ""
        self.stderr.seek(0)
        return self.stderr.read()[-3000:]

    def cmd(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one command; returns the reply (fails the test on an error reply)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.proc.stdin.flush()
        try:
            line = self.lines.next(10.0)
        except queue.Empty:
            line = None
        if line is None:
            pytest.fail(f"device side gave no answer to {op}:\n{self.diagnostics()}")
        reply: dict[str, Any] = json.loads(line)
        if not reply.get("ok"):
            pytest.fail(f"device side refused {op}: {reply}")
        return reply

    def state(self, device: str | None = None) -> dict[str, Any]:
        """The printer's state (see Printer.state in the device script)."""
        return self.cmd("state", device=device) if device else self.cmd("state")

    def received(self, device: str | None = None) -> dict[str, Any]:
        """Length and sha256 of what the printer accepted."""
        return self.cmd("received", device=device) if device else self.cmd("received")

    def spawn(self, scenario: str, **args: Any) -> Client:
        """Start a scenario; the test drives it with wait_event() and finish()."""
        client = Client(self.env, scenario, {"libusb": self.libusb, **args})
        self.clients.append(client)
        return client

    def run(self, scenario: str, **args: Any) -> dict[str, Any]:
        """Run a scenario to its end."""
        return self.spawn(scenario, **args).finish()

    def wait_for(self, what: str, check: Any, timeout: float = 10.0) -> dict[str, Any]:
        """Poll the state until ``check(state)`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.state()
            if check(state):
                return state
            if time.monotonic() > deadline:
                pytest.fail(f"device never reached {what}: {state}")
            time.sleep(0.02)

    def close(self) -> None:
        """Quit the device side; kill it if it does not go."""
        for client in self.clients:
            client.kill()
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write('{"op": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(timeout=5)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        self.lines.join()
        self.stderr.close()
        # The device side removes it on a clean quit; not if it had to be killed.
        if getattr(self, "root", "").startswith(tempfile.gettempdir()):
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(params=LIBUSBS)
def device(request: pytest.FixtureRequest, umockdev_ready: None) -> Iterator[Device]:
    """A fresh testbed with one printer (UMOCK0001 at bus 1 address 2) per test.

    Every test runs on both libusbs a user may get through default_backend(): ``system``
    (Debian's libusb-1.0-0, udev backend) and ``bundled`` (libusb-package's, netlink backend).
    umockdev fakes uevents as udevd messages (netlink group 2, "libudev" header) and libusb's
    netlink backend accepts only the kernel's (group 1), so under umockdev the bundled libusb
    never hears of a device arriving or leaving within a process (it sees the bus as it was at
    libusb_init). Where that matters, the tests say so; with real hardware both hear it.
    """
    dev = Device(request.param)
    try:
        yield dev
        # The device side logs ioctls it does not emulate and its own failures: a libusb that
        # starts using another ioctl, or a bug there, must show up rather than pass unseen.
        log = dev.diagnostics()
        assert "unhandled ioctl" not in log, log
        assert " raised " not in log, log
    finally:
        dev.close()


# -- discovery and the kernel driver -------------------------------------------------------


def test_discovery_by_interface_class(device: Device, record_property: Any) -> None:
    result = device.run("discover")
    libusb = result["libusb"]
    record_property("libusb", libusb)
    print(f"\nlibusb used by the client ({device.libusb}): {libusb}")
    if device.libusb == "bundled":
        assert "libusb_package" in libusb["path"]
    else:
        assert libusb["path"] == "libusb-1.0.so.0"
    assert libusb["hotplug"]
    # The bus has the root hub (class 9) and the printer (bDeviceClass 0, interface class 7).
    assert sorted((d["address"], d["class"]) for d in result["all_devices"]) == [(1, 9), (2, 0)]
    assert result["printers"] == [
        {
            "bus": 1,
            "address": 2,
            "vendor_id": 0x1209,
            "product_id": 0x0001,
            "serial": "UMOCK0001",
            "manufacturer": "usblp-emu",
            "product": "Virtual Printer 0001",
            "interfaces": [
                {
                    "configuration": 1,
                    "interface": 0,
                    "alternate": 0,
                    "protocol": 2,
                    "ep_out": 0x01,
                    "ep_in": 0x82,
                }
            ],
        }
    ]
    assert result["printers_default_arg"] == 1
    # Discovery reads descriptors from sysfs and strings over the device: it claims nothing.
    state = device.state()
    assert state["claim_history"] == []
    assert state["drivers"] == {"0": "usblp"}


def test_kernel_driver_busy_then_detach_and_reattach(device: Device) -> None:
    result = device.run("kernel_driver")
    assert result["before"] is True
    assert result["raw_claim"] == {"errno": errno.EBUSY}  # usblp holds it: what users hit
    assert result["inside"] is False
    assert result["opened_interface"] == 0
    assert result["after"] is True
    state = device.state()
    assert state["detach_history"] == [0]
    assert state["attach_history"] == [0]
    assert state["claim_history"] == [0]
    assert state["drivers"] == {"0": "usblp"}
    assert state["claimed"] == []
    assert state["implicit_claims"] == []
    assert state["configuration"] == 1
    assert state["counts"].get("USBDEVFS_SETCONFIGURATION", 0) == 0  # already 1: left alone
    assert state["resets"] == 0  # and no USBDEVFS_RESET on open


def test_unconfigured_printer_gets_configured_once(device: Device) -> None:
    device.cmd("unconfigure")
    result = device.run("identity")
    assert result["device_id"]["serial"] == "UMOCK0001"
    state = device.state()
    assert state["set_configuration_count"] == 1
    assert state["configuration"] == 1
    # Configuring let usblp bind (as the kernel probes drivers): open() then detached it.
    assert state["detach_history"] == [0]
    assert state["drivers"] == {"0": "usblp"}


def test_second_open_is_busy_with_a_remedy(device: Device) -> None:
    result = device.run("busy")
    error = result["second_open"]["error"]
    assert error["type"] == "Busy"
    assert error["errno"] == errno.EBUSY
    assert error["remedy"]
    state = device.state()
    assert state["claimed"] == []
    assert state["drivers"] == {"0": "usblp"}


# -- control requests ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (0x18, {"raw": 0x18, "paper_empty": False, "selected": True, "no_error": True}),
        (0x28, {"raw": 0x28, "paper_empty": True, "selected": False, "no_error": True}),
    ],
    ids=["online", "paper-out"],
)
def test_device_id_port_status_soft_reset(
    device: Device, status: int, expected: dict[str, Any]
) -> None:
    device.cmd("status", value=status)
    result = device.run("identity")
    device_id = result["device_id"]
    assert device_id["manufacturer"] == "usblp-emu"
    assert device_id["model"] == "Virtual Printer 0001"
    assert device_id["command_set"] == ["PCL", "PJL", "POSTSCRIPT"]
    assert device_id["serial"] == "UMOCK0001"
    assert device_id["fields"]["CLS"] == "PRINTER"
    assert result["uri"] == "usb://usblp-emu/Virtual%20Printer%200001?serial=UMOCK0001"
    assert result["port_status"] == expected
    assert result["soft_reset"] == {"value": None}
    state = device.state()
    # GET_DEVICE_ID: wValue = configuration index, wIndex = interface << 8 | alt setting.
    assert [0xA1, 0, 0, 0x0000, 1024] in state["controls"]
    assert [0xA1, 1, 0, 0, 1] in state["controls"]
    # usblp's 0x23 first; this printer (like the class spec) wants 0x21, so both are sent.
    assert state["soft_resets"] == [0x23, 0x21]
    assert state["implicit_claims"] == []


# -- bulk transfers --------------------------------------------------------------------------


def test_print_job_byte_exact(device: Device) -> None:
    size = 256 * 1024
    result = device.run("print", size=size, timeout=5.0)
    assert result["write"] == {"value": size}
    assert result["progress_calls"] == size // 8192
    assert result["last_progress"] == size
    received = device.received()
    assert received["length"] == size
    assert received["sha256"] == hashlib.sha256(job_bytes(size)).hexdigest()
    state = device.state()
    assert state["discards"] == 0
    assert state["implicit_claims"] == []
    assert state["drivers"] == {"0": "usblp"}


def test_one_stall_is_cleared_and_the_job_completes(device: Device) -> None:
    device.cmd("stall", count=1, skip=2)  # two chunks go through, the third stalls once
    result = device.run("print", size=64 * 1024, timeout=2.0)
    assert result["write"] == {"value": 64 * 1024}, result
    # CLEAR_HALT went down the wire and the stalled chunk was sent again, nothing twice.
    assert device.received()["length"] == 64 * 1024


def test_a_stall_that_persists_is_typed_with_written_count(device: Device) -> None:
    device.cmd("stall", count=2, skip=2)  # the third chunk stalls, and again after the clear
    result = device.run("print", size=64 * 1024, timeout=2.0, again=True)
    error = result["write"]["error"]
    assert error["type"] == "Stalled"
    assert error["errno"] == errno.EPIPE
    assert error["written"] == 2 * 8192
    # The transport cleared the halt before its retry: the next job (2 bytes) goes through.
    assert result["again"] == {"value": 2}, result["again"]
    assert device.received()["length"] == 2 * 8192 + 2


@pytest.mark.parametrize(
    ("setup", "size", "timeout", "written"),
    [
        ({"op": "nak", "seconds": 30, "after": 20_000}, 64 * 1024, 0.5, 20_000),
        ({"op": "short"}, 8192, 0.3, 4096),
    ],
    ids=["nak-after-20000", "short-urb"],
)
def test_timeout_reports_short_write(
    device: Device, setup: dict[str, Any], size: int, timeout: float, written: int
) -> None:
    device.cmd(**setup)
    result = device.run("print", size=size, timeout=timeout)
    error = result["write"]["error"]
    assert error["type"] == "TimedOut"
    assert error["errno"] == errno.ETIMEDOUT
    assert error["written"] == written
    assert result["seconds"] < timeout + 2.0
    # The printer got exactly the bytes reported, the start of the job, nothing twice.
    received = device.cmd("received", hex=True)
    assert bytes.fromhex(received["hex"]) == job_bytes(size)[:written]
    assert device.state()["discards"] == 1


def test_busy_printer_resumes_within_timeout(device: Device) -> None:
    device.cmd("nak", seconds=0.3, after=8192)  # one chunk, then 0.3 s of NAKs
    size = 64 * 1024
    result = device.run("print", size=size, timeout=5.0)
    assert result["write"] == {"value": size}
    assert result["seconds"] >= 0.3
    assert device.received()["sha256"] == hashlib.sha256(job_bytes(size)).hexdigest()
    assert device.state()["discards"] == 0


def test_back_channel_read(device: Device) -> None:
    device.cmd("respond", hex="40454a4c20494e464f0d0a")
    result = device.run("read")
    assert result["first"] == "40454a4c20494e464f0d0a"
    assert result["empty"] == ""
    assert 0.15 <= result["waited"] < 2.0


# -- unplug and hotplug ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("urb_status", "delay"),
    [("ESHUTDOWN", 0.0), ("EPROTO", 0.0), ("EPROTO", 0.5)],
    ids=["hub-first-ESHUTDOWN", "wire-EPROTO-with-uevent", "wire-EPROTO-uevent-later"],
)
def test_unplug_mid_job(device: Device, urb_status: str, delay: float) -> None:
    accepted = 100_000
    device.cmd("nak", seconds=60, after=accepted)
    client = device.spawn("unplug", size=256 * 1024, timeout=None, pause=delay + 0.5)
    client.wait_event("writing")
    device.wait_for(
        "the job in flight and stuck",
        lambda s: s["received"] == accepted and s["in_flight"] >= 1,
    )
    device.cmd("unplug", urb_status=urb_status, uevent_delay=delay)
    result = client.finish()
    job = result["job"]["error"]
    hears_uevents = device.libusb == "system"  # see the device fixture
    if urb_status == "ESHUTDOWN" or (delay == 0 and hears_uevents):
        # libusb says NO_DEVICE, or the transport saw the printer gone from the bus.
        assert (job["type"], job["errno"]) == ("NoDevice", errno.ENODEV), job
    else:
        # EPROTO while the printer still looks present: EIO, typed (the transport may also
        # wait for the disconnect and say NoDevice).
        assert (job["type"], job["errno"]) in {
            ("IOFailure", errno.EIO),
            ("NoDevice", errno.ENODEV),
        }, job
    # Whole chunks the printer completed; the failed chunk's bytes are not counted.
    assert job["written"] == (accepted // 8192) * 8192
    for call, outcome in result["later"].items():
        assert outcome.get("error", {}).get("type") == "NoDevice", (call, outcome)
        assert outcome["error"]["errno"] == errno.ENODEV
    assert result["close"] == {"value": None}
    if hears_uevents:
        assert result["present"] is False
        assert result["printers_after"] == []
    assert device.state()["gone"] is True


def test_hotplug_arrival_seen_by_a_new_find(device: Device) -> None:
    plugged = device.cmd("plug", serial="UMOCK0002")
    assert (plugged["bus"], plugged["address"]) == (1, 3)
    found = device.run("discover")
    assert [p["serial"] for p in found["printers"]] == ["UMOCK0001", "UMOCK0002"]
    new = found["printers"][1]
    # Discovery by interface class: the printer is interface 2 of a multifunction device.
    assert [(i["interface"], i["alternate"], i["protocol"]) for i in new["interfaces"]] == [
        (2, 0, 1),
        (2, 1, 2),
    ]
    result = device.run("identity", serial="UMOCK0002")
    assert result["opened"] == {"interface": 2, "alt": 1}
    assert result["device_id"]["serial"] == "UMOCK0002"
    assert result["port_status"]["raw"] == 0x18
    state = device.state(device="UMOCK0002")
    # Only the printer interface was detached, claimed and re-attached; the card reader kept
    # usb-storage; GET_DEVICE_ID named interface 2 alt 1 and claimed nothing by its low byte.
    assert state["detach_history"] == [2]
    assert state["claim_history"] == [2]
    assert state["attach_history"] == [2]
    assert state["drivers"] == {"0": "usb-storage", "1": None, "2": "usblp"}
    assert state["implicit_claims"] == []
    assert [0xA1, 0, 0, 0x0201, 1024] in state["controls"]
    assert state["alt_setting"] == {"0": 0, "1": 0, "2": 1}
    assert state["counts"]["USBDEVFS_SETINTERFACE"] == 1


@pytest.mark.parametrize("device", ["system"], indirect=True)
def test_hotplug_callback_and_find_in_the_same_process(device: Device) -> None:
    # System libusb only: under umockdev the bundled (netlink) libusb hears no uevents.
    client = device.spawn("hotplug", serial="UMOCK0002")
    client.wait_event("ready")
    device.cmd("plug", serial="UMOCK0002")
    client.wait_event("used")
    device.cmd("unplug", device="UMOCK0002")
    result = client.finish()
    assert result["registered"] == 0
    assert [p["serial"] for p in result["before"]] == ["UMOCK0001"]
    assert result["arrived_after"] is not None, "libusb's hotplug callback never fired"
    arrivals = [c for c in result["callbacks"] if c["event"] == "arrived"]
    assert arrivals == [
        {"event": "arrived", "bus": 1, "address": 3, "vendor_id": 0x1209, "product_id": 0x0002}
    ]
    assert [p["serial"] for p in result["after"]] == ["UMOCK0001", "UMOCK0002"]
    used = result["used"]
    assert used["opened"] == {"interface": 2, "alt": 1, "protocol": 2}
    assert "SN:UMOCK0002;" in used["device_id"]["value"]
    assert used["port_status"] == {"value": 0x18}
    assert used["write"] == {"value": 10_000}
    assert used["kernel_driver_before"] is True
    assert used["kernel_driver_after"] is True
    assert result["left_after"] is not None, "libusb's hotplug callback never saw the removal"
    assert result["printers_at_end"] == ["UMOCK0001"]
    assert device.state(device="UMOCK0002")["claim_history"] == [2]

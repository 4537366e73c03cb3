"""``usblp-emu run``: an unchanged pyusb program against virtual printers, then the report."""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import pytest
from usb.backend import libusb1

from usblp_emu._cli._main import main
from usblp_emu._cli._run import first_bytes, printer_spec

PROGRAM = """\
import sys
import usb.core, usb.util
dev = usb.core.find(idVendor=0x04b8)
if dev.is_kernel_driver_active(0):
    dev.detach_kernel_driver(0)
dev.write(0x01, sys.argv[1].encode(), 1000)
usb.util.dispose_resources(dev)
dev.attach_kernel_driver(0)
print("sent", sys.argv[1])
sys.exit(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture
def program(tmp_path: Path) -> Path:
    path = tmp_path / "job.py"
    path.write_text(PROGRAM)
    return path


def test_run_a_script_reports_what_the_printer_received(capsys, program):
    before = libusb1._lib_object
    status, out, err = run(capsys, "run", "--printer", "04b8:0202", "--", str(program), "HELLO")
    assert status == 0, err
    assert out == "sent HELLO\n"  # the program's stdout, untouched
    digest = hashlib.sha256(b"HELLO").hexdigest()
    lines = err.splitlines()
    assert lines[0] == f"usblp-emu run: {program} HELLO exited 0"
    assert lines[1] == (
        f"printer 1 04b8:0202 serial VP0001 at 1:2: 5 bytes, sha256 {digest}, first bytes b'HELLO'"
    )
    # usblp probed at plug, disconnected by the detach, probed again by the attach, and
    # disconnected when the bus went away: all on the heap, which is clean.
    assert lines[2] == (
        "usblp (hazard): probed 2 time(s), disconnected 2; heap: clean "
        "(no use-after-free, double free or leak)"
    )
    assert libusb1._lib_object is before  # pyusb's cache is back


def test_the_exit_status_is_the_programs(capsys, program):
    status, _, err = run(capsys, "run", "--printer", "04b8:0202", "--", str(program), "x", "3")
    assert status == 3
    assert "exited 3" in err


def test_a_module_runs_with_dash_m(capsys, program, monkeypatch):
    monkeypatch.chdir(program.parent)
    status, out, err = run(capsys, "--virtual", "1", "run", "--printer", "04b8:0202", "--")
    assert status == 2  # --virtual and --printer together
    argv, path = list(sys.argv), list(sys.path)
    status, out, err = run(capsys, "run", "--printer", "04b8:0202", "--", "-m", "job", "M")
    assert status == 0, err
    assert out == "sent M\n"
    assert "exited 0" in err and ": 1 bytes" in err
    assert (sys.argv, sys.path) == (argv, path)  # put back


def test_unplug_after_cuts_the_job_and_the_program_sees_the_unplug(capsys, tmp_path):
    script = tmp_path / "big.py"
    script.write_text(
        "import usb.core\n"
        "dev = usb.core.find(idVendor=0x04b8)\n"
        "dev.detach_kernel_driver(0)\n"
        "try:\n"
        "    dev.write(0x01, b'x' * 5000, 1000)\n"
        "except usb.core.USBError as exc:\n"
        "    print('error', exc.errno, exc.strerror)\n"
    )
    status, out, err = run(
        capsys, "run", "--printer", "04b8:0202", "--unplug-after", "1000", "--", str(script)
    )
    assert status == 0
    assert out == "error 19 No such device (it may have been disconnected)\n"
    assert "(unplugged): 1000 bytes" in err
    assert "heap: clean" in err


def test_a_program_that_raises_exits_1_with_its_traceback(capsys, tmp_path):
    script = tmp_path / "boom.py"
    script.write_text("raise RuntimeError('boom')\n")
    status, _, err = run(capsys, "run", "--", str(script))
    assert status == 1
    assert "RuntimeError: boom" in err and "Traceback" in err
    assert "exited 1" in err
    assert "printer 1 1d6b:0104 serial VP0001" in err  # the default printer, --virtual 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run"], "nothing to run"),
        (["run", "--", "missing.py"], "no such script: missing.py"),
        (["run", "--", "-m", "no_such_module_here"], "no module named 'no_such_module_here'"),
        (["run", "--printer", "zz:1", "--", "x.py"], "expected VID:PID in hex first"),
        (["run", "--printer", "04b8:0202,colour=red", "--", "x.py"], "unknown key 'colour'"),
        (["run", "--printer", "04b8:0202,out=0x81", "--", "x.py"], "out_endpoint must be"),
        (["run", "--printer", "04b8:0202,firmware=zpl", "--", "x.py"], "unknown firmware"),
        (["run", "--printer", "04b8:0202,serial", "--", "x.py"], "expected KEY=VALUE"),
        (["run", "--unplug-after", "-1", "--", "x.py"], "must be >= 0"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(capsys, argv, message):
    status, out, err = run(capsys, *argv)
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and message in err, err


def test_printer_spec_keys():
    spec = printer_spec(
        "04f9:209b,serial=Q1,protocols=2/1,out=0x02,in=0x81,interface=0,speed=full,"
        "firmware=brother,id=MFG:Brother;CMD:PT-CBP,PJL;MDL:QL-800;"
    )
    assert spec == {
        "vendor_id": 0x04F9,
        "product_id": 0x209B,
        "serial": "Q1",
        "protocols": (2, 1),
        "out_endpoint": 0x02,
        "in_endpoint": 0x81,
        "interface_number": 0,
        "speed": "full",
        "firmware": "brother",
        "device_id": "MFG:Brother;CMD:PT-CBP,PJL;MDL:QL-800;",  # commas kept: id is last
    }
    with pytest.raises(argparse.ArgumentTypeError):
        printer_spec("04b8")


def test_first_bytes_are_escaped_and_cut():
    assert first_bytes(b"\x1b@Hi") == "b'\\x1b@Hi'"
    assert first_bytes(bytes(40)).endswith("'...")

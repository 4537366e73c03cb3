"""The printer commands (list, info, print, watch, doctor) against --virtual printers.

They run the whole pyusb path (VirtualBackend) and, for print, the emulated driver. Errors
must be one line with exit status 2, never a traceback or a raw USBError.
"""

from __future__ import annotations

import json

import pytest

from usblp_emu._cli._main import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_list_shows_every_virtual_printer_with_id_and_uri(capsys):
    status, out, err = run(capsys, "--virtual", "2", "list", "--json")
    assert status == 0, err
    data = json.loads(out)
    printers = data["printers"]
    assert [p["serial"] for p in printers] == ["VP0001", "VP0002"]
    assert printers[0]["device_id"].startswith("MFG:Acme;MDL:Laser 1;")
    assert printers[0]["uri"] == "usb://Acme/Laser%201?serial=VP0001"
    assert printers[0]["protocols"] == [1, 2]
    assert printers[0]["vendor_id"] == "1d6b"


def test_list_table(capsys):
    status, out, _ = run(capsys, "--virtual", "1", "list")
    assert status == 0
    assert "usb://Acme/Laser%201?serial=VP0001" in out


def test_info_selects_by_serial_bus_address_and_vid_pid(capsys):
    status, out, err = run(capsys, "--virtual", "2", "info", "VP0002", "--json")
    assert status == 0, err
    record = json.loads(out)
    assert record["serial"] == "VP0002"
    assert record["port_status"] == {"raw": "0x18", "meaning": "on-line, no error"}
    assert record["device_id_fields"]["MDL"] == "Laser 2"
    assert record["kernel_drivers"] == {"0": "usblp"}  # given back after info opened it
    by_address = f"{record['bus']}:{record['address']}"
    status, out, _ = run(capsys, "--virtual", "2", "info", by_address, "--json")
    assert json.loads(out)["serial"] == "VP0002"
    status, out, _ = run(capsys, "--virtual", "2", "info", "1d6b:0105", "--json")
    assert json.loads(out)["serial"] == "VP0002"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["info", "VP9999"], "no printer matches 'VP9999'"),
        (["info"], "2 printers found; choose one"),
        (["print", "/nonexistent/job.prn"], "cannot read /nonexistent/job.prn"),
        (["print", "-", "--unplug-after", "-1"], "--unplug-after must be >= 0"),
    ],
)
def test_user_mistakes_are_one_line_exit_2(capsys, argv, needle):
    status, _, err = run(capsys, "--virtual", "2", *argv)
    assert status == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err and "USBError" not in err


def test_virtual_is_rejected_for_stress(capsys):
    status, _, err = run(capsys, "--virtual", "1", "stress")
    assert status == 2 and "--virtual is for the printer commands" in err


def test_unplug_after_needs_virtual(capsys, tmp_path):
    job = tmp_path / "job.prn"
    job.write_bytes(b"x")
    status, _, err = run(capsys, "print", str(job), "--unplug-after", "1")
    assert status == 2 and "--unplug-after needs --virtual" in err


@pytest.mark.parametrize("strategy", ["static-mutex", "hazard", "rcu"])
def test_print_sends_the_job_byte_exact_through_the_driver(capsys, tmp_path, strategy):
    job = tmp_path / "job.prn"
    payload = bytes(i % 251 for i in range(300_000))
    job.write_bytes(payload)
    status, out, err = run(capsys, "--virtual", "1", "print", str(job), "-s", strategy)
    assert status == 0, out + err
    assert f"printed {len(payload)} bytes" in out
    assert "heap: clean" in out


def test_print_unplugged_mid_job_reports_written_and_not_written(capsys, tmp_path):
    job = tmp_path / "job.prn"
    job.write_bytes(bytes(1_000_000))
    status, out, err = run(capsys, "--virtual", "1", "print", str(job), "--unplug-after", "200000")
    assert status == 1, out + err
    assert "unplugged mid-job" in out
    line = next(x for x in out.splitlines() if "unplugged mid-job" in x)
    written = int(line.split(": ")[-1].split(" bytes written")[0])
    not_written = int(line.split(", ")[-1].split(" not written")[0])
    assert written + not_written == 1_000_000
    # The printer took 200000 bytes before the unplug; the CLI counts whole write() calls
    # (64 KiB each) plus what usblp reports for the one that failed, so at most one call less.
    assert 200_000 - 64 * 1024 <= written < 1_000_000
    assert "heap: clean" in out  # the disconnect path ran and nothing leaked


def test_doctor_on_virtual_printers(capsys):
    status, out, err = run(capsys, "--virtual", "1", "doctor", "--json")
    assert status == 0, out + err
    report = json.loads(out)
    assert report["ok"] is True
    details = {
        f["check"].split(" ")[-1] if "bus" in f["check"] else f["check"]: f["detail"]
        for f in report["findings"]
    }
    assert "VirtualBackend" in details["USB backend"]
    assert details["driver"] == "usblp on interface 0 (emulated; detached while used)"
    assert details["ID"].startswith("MFG:Acme;MDL:Laser 1;")
    # Nothing that only applies to a real machine (CUPS jobs waiting, permissions, holders).
    assert [f for f in report["findings"] if f["level"] != "ok"] == []
    assert not any("CUPS" in f["remedy"] or "permissions" in f["check"] for f in report["findings"])
    status, out, _ = run(capsys, "--virtual", "1", "doctor")
    assert status == 0 and "doctor" in out


def test_info_with_several_printers_names_the_positional_device(capsys):
    status, out, err = run(capsys, "--virtual", "2", "info")
    assert status == 2 and out == ""
    assert err.strip() == (
        "usblp-emu: error: 2 printers found; choose one with usblp-emu info DEVICE "
        "(1:2 serial VP0001, 1:3 serial VP0002)"
    )
    status, out, _ = run(capsys, "--virtual", "2", "info", "VP0002", "--json")
    assert status == 0 and json.loads(out)["serial"] == "VP0002"


def test_watch_reports_arrivals_departures_and_returns(capsys):
    status, out, err = run(
        capsys, "--virtual", "2", "watch", "--interval", "0.05", "--duration", "1.5", "--seed", "3"
    )
    assert status == 0, out + err
    assert "arrived" in out
    assert "usblp bound: lp0" in out
    assert "left" in out
    assert "returned" in out
    assert "heap: clean" in out

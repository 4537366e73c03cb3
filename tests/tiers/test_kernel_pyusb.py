"""The kernel tier, pyusb side: the transport and the emulated driver on a real kernel's bus.

One guest boot runs tools/rig_pyusb.py against the configfs printer gadget: discovery by
class 7 with usblp bound, the Device ID and port status through pyusb (usblp detached and
re-attached), a byte-exact 1 MB job, and the emulated driver (static-mutex and hazard) printing
through PyusbModel while the printer is unplugged mid-job: EIO or ENODEV, the disconnect path
runs, the emulated heap is clean. Same switch as tests/tiers/test_kernel_rig.py: USBLP_EMU_KERNEL=1
runs it (and then never skips), without it it is skipped with the command to run it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.tiers.conftest import KERNEL_ENABLED
from tools import kernel_rig

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools"


DEVICE_ID = "MFG:usblp-emu;MDL:Pyusb Tier;CMD:PCL,PJL;CLS:PRINTER;SN:PT1;"

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(
        not KERNEL_ENABLED,
        reason="kernel tier: set USBLP_EMU_KERNEL=1 to run it (python tools/kernel_rig.py "
        "prepare && USBLP_EMU_KERNEL=1 python -m pytest tests/tiers/test_kernel_pyusb.py)",
    ),
]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("rig-pyusb")
    try:
        result = kernel_rig.run_in_guest(
            [sys.executable, str(TOOLS / "rig_pyusb.py")],
            device_id=DEVICE_ID,
            timeout=480,
            out_dir=out,
        )
    except kernel_rig.RigError as exc:
        pytest.fail(f"kernel rig: {exc.reason}\n{exc.console_tail()}", pytrace=False)
    path = out / "rig_pyusb.json"
    if not path.exists():
        pytest.fail(f"rig_pyusb.py wrote no report:\n{result.stdout}\n{result.stderr}")
    checks: dict[str, Any] = json.loads(path.read_text())
    return checks


def _value(report: dict[str, Any], name: str) -> dict[str, Any]:
    check = report[name]
    assert check["ok"], check.get("error")
    value: dict[str, Any] = check["value"]
    return value


def test_discovery_device_id_and_status_through_pyusb(report):
    found = _value(report, "discovery")
    assert found["device_id"] == DEVICE_ID  # the rig pads f_printer's cut when needed
    assert found["protocols"] == [2]  # f_printer: one bidirectional alt setting
    assert found["port_status"].startswith("0x")


def test_a_one_megabyte_job_arrives_byte_exact(report):
    assert _value(report, "one_megabyte")["bytes"] == 1 << 20


@pytest.mark.parametrize("strategy", ["static-mutex", "hazard"])
def test_unplug_mid_job_through_the_emulated_driver(report, strategy):
    outcome = _value(report, f"unplug_mid_job[{strategy}]")
    assert outcome["writer"] in ("EIO", "ENODEV")
    assert outcome["heap"] == "clean"

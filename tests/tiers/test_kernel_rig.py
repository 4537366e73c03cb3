"""The kernel tier: the real usblp driver, in Debian's kernel under QEMU (tools/kernel_rig.py).

The guest has dummy_hcd, a configfs printer gadget and usblp; tools/rig_guest.py's selftest
runs in it and checks the Device ID through usblp's ioctl, the data path to the gadget, and
every unplug trigger with a write in flight. Run it with::

    python tools/kernel_rig.py prepare
    USBLP_EMU_KERNEL=1 python -m pytest tests/tiers/test_kernel_rig.py

Without USBLP_EMU_KERNEL=1 the guest tests skip (they need QEMU and a 70 MB kernel package);
with it they never skip: a rig that cannot prepare or boot fails them with its reason and the
console's tail. Three boots in all (~10 s each under TCG; the selftest's adds ~10 s of work).
The tests of the host-side plumbing at the end need no guest and always run.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.tiers.conftest import KERNEL_ENABLED
from tools import kernel_rig, rig_guest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools"


# Not the rig's default, and long enough that a two-character cut would show.
DEVICE_ID = "MFG:usblp-emu;MDL:Kernel Tier;CMD:PCL,PJL,POSTSCRIPT;CLS:PRINTER;DES:test;SN:KT1;"
EXPECTED_FIRST = {errno.errorcode[e] for e in rig_guest.EXPECTED_FIRST_ERRNO}

kernel = pytest.mark.kernel
needs_guest = [
    kernel,
    pytest.mark.skipif(
        not KERNEL_ENABLED,
        reason="kernel tier: set USBLP_EMU_KERNEL=1 to run it (python tools/kernel_rig.py "
        "prepare && USBLP_EMU_KERNEL=1 python -m pytest tests/tiers/test_kernel_rig.py)",
    ),
]


def _rig_failure(exc: kernel_rig.RigError) -> None:
    pytest.fail(f"kernel rig: {exc.reason}\n{exc.console_tail()}", pytrace=False)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``kernel_rig.py run ARGS`` from the repository root."""
    return subprocess.run(
        [sys.executable, str(TOOLS / "kernel_rig.py"), "run", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def selftest(tmp_path_factory: pytest.TempPathFactory) -> tuple[kernel_rig.RigResult, Any]:
    """One boot running rig_guest's selftest: the guest tests share its report."""
    out = tmp_path_factory.mktemp("rig-selftest")
    try:
        result = kernel_rig.run_in_guest(
            [sys.executable, str(TOOLS / "rig_guest.py"), "selftest"],
            device_id=DEVICE_ID,
            timeout=480,
            out_dir=out,
        )
    except kernel_rig.RigError as exc:
        _rig_failure(exc)
        raise  # not reached: pytest.fail raises
    try:
        report = json.loads(result.stdout)
    except ValueError:
        pytest.fail(
            f"selftest printed no report (exit {result.returncode}):\n{result.stderr[-3000:]}",
            pytrace=False,
        )
    print(
        f"\nkernel rig: selftest boot {result.seconds:.1f} s in all, boot and setup "
        f"{result.boot_seconds:.1f} s, command {result.command_seconds:.1f} s "
        f"(selftest work {report.get('seconds')} s), pnp padded: {result.pnp_padded}"
    )
    return result, report


class TestGuest:
    pytestmark = needs_guest

    def test_boots_and_device_id_round_trips(self, selftest):
        result, report = selftest
        ids = report["device_id"]
        # Through usblp's LPIOC_GET_DEVICE_ID (asked again of the gadget) and the ID usblp
        # cached at probe: both exactly what was configured, padding or not.
        assert ids["ioctl"] == DEVICE_ID
        assert ids["sysfs"] == DEVICE_ID
        assert result.pnp == "ok"
        assert ids["padded"] == ("1" if result.pnp_padded else "0")
        assert report["kernel"] == kernel_rig.prepare().version
        assert result.returncode == 0, result.stderr[-3000:]

    def test_port_status_follows_the_gadget(self, selftest):
        _, report = selftest
        # f_printer: NOT_ERROR, plus SELECTED while /dev/g_printer0 is open; SET_PRINTER_STATUS.
        assert report["port_status_closed"] == 0x08
        assert report["port_status_open"] == 0x18
        assert report["port_status_set"] == 0x38

    def test_written_data_arrives_byte_exact(self, selftest):
        _, report = selftest
        assert report["unread_write"] == 4000  # primed at boot: no reader needed
        assert report["unread_write_exact"]
        assert report["roundtrip_256k"]

    @pytest.mark.parametrize("method", rig_guest.UNPLUG_METHODS)
    def test_unplug_fails_the_write_then_everything(self, selftest, method):
        _, report = selftest
        case = next(c for c in report["unplug"] if c["method"] == method)
        assert case["blocked"], "the write was not in flight when the printer went"
        # Which of EIO (the URB failed first) and ENODEV (disconnect first) wins is a race.
        assert case["first_error"] in EXPECTED_FIRST, case
        assert case["writes"][-1] == case["first_error"]
        assert case["write_after"] == "ENODEV", case
        assert case["ioctl_after"] == "ENODEV", case
        assert case["open_after"] in ("ENODEV", "ENOENT"), case
        assert case["close"] == "ok"
        assert case["roundtrip_after_replug"], case

    def test_cli_passes_output_status_and_environment(self, tmp_path):
        script = (
            'echo "out $RIG_GUEST $RIG_PNP"; echo err >&2; pwd; '
            'echo written >"$RIG_OUT/from-guest"; '
            'touch "$TMPDIR/t" && echo tmp-ok; '
            "test -c /dev/usb/lp0 && test -c /dev/g_printer0 && echo nodes-ok; "
            "exit 7"
        )
        started = time.monotonic()
        proc = _cli("--timeout", "300", "--out", str(tmp_path), "--", "sh", "-c", script)
        if proc.returncode == kernel_rig.RIG_FAILURE:
            pytest.fail(f"kernel rig failed:\n{proc.stderr}", pytrace=False)
        assert proc.returncode == 7, proc.stderr
        assert proc.stdout.splitlines() == ["out 1 ok", str(ROOT), "tmp-ok", "nodes-ok"]
        assert proc.stderr == "err\n"
        assert (tmp_path / "from-guest").read_text() == "written\n"
        assert (tmp_path / ".rig" / "stdout").read_text() == proc.stdout
        print(f"\nkernel rig: a shell command's boot took {time.monotonic() - started:.1f} s")

    def test_timeout_is_a_loud_failure(self, tmp_path):
        started = time.monotonic()
        proc = _cli("--timeout", "3", "--out", str(tmp_path), "--", "sleep", "600")
        assert time.monotonic() - started < 60
        assert proc.returncode == kernel_rig.RIG_FAILURE
        first = proc.stderr.splitlines()[0]
        assert first.startswith("kernel-rig: FAIL: timed out after 3 s"), proc.stderr
        assert proc.stdout == ""


# --- host-side plumbing, no guest --------------------------------------------------------


def test_load_order_puts_dependencies_first(tmp_path):
    (tmp_path / "modules.dep").write_text(
        "kernel/a/usblp.ko: kernel/c/usbcore.ko kernel/c/usb-common.ko\n"
        "kernel/c/usbcore.ko: kernel/c/usb-common.ko\n"
        "kernel/c/usb-common.ko:\n"
        "kernel/g/udc-core.ko: kernel/c/usb-common.ko\n"
        "kernel/g/dummy_hcd.ko: kernel/g/udc-core.ko kernel/c/usbcore.ko\n"
    )
    deps = rig_guest.read_modules_dep(tmp_path)
    order = rig_guest.load_order(deps, ["dummy_hcd", "usblp"])
    assert order == [
        "kernel/c/usb-common.ko",
        "kernel/g/udc-core.ko",
        "kernel/c/usbcore.ko",
        "kernel/g/dummy_hcd.ko",
        "kernel/a/usblp.ko",
    ]
    with pytest.raises(KeyError):
        rig_guest.load_order(deps, ["g_zero"])


def test_command_script_quotes_every_argument(tmp_path):
    rig = tmp_path / ".rig"
    rig.mkdir()
    paths = kernel_rig.RigPaths(
        version="v",
        package="linux-image-v",
        directory=tmp_path,
        kernel=tmp_path / "k",
        initramfs=tmp_path / "i",
        modules=tmp_path / "m",
        qemu="qemu",
        state=tmp_path / "s",
    )
    args = ["a b", "it's", "$HOME", "`x`", "--", "=", 'q"', "\\n", ""]
    kernel_rig._write_job(
        rig,
        paths,
        ["printf", "[%s]", *args],
        cwd=str(tmp_path),
        env={"PATH": os.environ["PATH"], "RIG_X": "a'b c"},
        device_id="MFG:X;MDL:Y Z;",
        vendor_id=0x1209,
        product_id=1,
        serial="S 1",
        q_len=10,
        pad_hint=True,
    )
    # The same script the guest runs, run here by the host's sh.
    out = subprocess.run(["sh", str(rig / "cmd.sh")], capture_output=True, text=True, check=True)
    assert out.stdout == "".join(f"[{a}]" for a in args)
    assert (rig / "pnp").read_bytes() == b"MFG:X;MDL:Y Z;"
    assert (rig / "pnp-padded").read_bytes() == b"MFG:X;MDL:Y Z;" + kernel_rig.PNP_PADDING.encode()
    assert (rig / "pnp-cut").read_bytes() == b"MFG:X;MDL:Y "
    config = subprocess.run(
        ["sh", "-c", f'. {rig / "config.sh"}; echo "$RIG_MANUFACTURER|$RIG_PRODUCT|$RIG_SERIAL"'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert config.stdout == "X|Y Z|S 1\n"


def test_qemu_command_line_has_no_network_and_escapes_commas(tmp_path):
    out = tmp_path / "a,b"
    paths = kernel_rig.RigPaths(
        version="v",
        package="p",
        directory=tmp_path,
        kernel=tmp_path / "vmlinuz",
        initramfs=tmp_path / "initramfs.cpio",
        modules=tmp_path / "m",
        qemu="qemu-system-x86_64",
        state=tmp_path / "s",
    )
    argv = kernel_rig.qemu_argv(paths, out, out / "console.log")
    assert argv[argv.index("-nic") + 1] == "none"
    assert argv[argv.index("-accel") + 1] == "tcg"
    assert f"path={tmp_path}/a,,b,mount_tag=rigout" in " ".join(argv)
    assert "readonly=on" in argv[argv.index("-virtfs") + 1]


def test_static_elf_check(tmp_path):
    assert not kernel_rig._is_static_elf(os.path.realpath(sys.executable))  # uses ld.so
    assert not kernel_rig._is_static_elf(__file__)
    assert not kernel_rig._is_static_elf(str(tmp_path / "missing"))


def test_rig_guest_refuses_to_run_outside_the_guest(monkeypatch, capsys):
    monkeypatch.delenv("RIG_GUEST", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        rig_guest.main(["selftest"])
    assert exit_info.value.code == 2
    assert "inside the kernel rig" in capsys.readouterr().err

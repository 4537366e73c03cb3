"""The kernel run, host side: boot the rig once per distinct device, run ``guest`` over its
scripts, read back the results."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tools.opdiff.runner import ScriptResult
from tools.opdiff.script import GUEST_RESULTS, ROOT, Device, Script


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

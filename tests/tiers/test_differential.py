"""tools/differential.py: the emulator against the real usblp driver, step by step.

Default tier (no VM): every script of the corpus (tools/opscripts/*.ops) parses, runs on the
emulator with a clean heap, and agrees with the real kernel's recorded results (the gold files
``NAME.kernel.json``, written by ``differential.py record`` from a QEMU rig run) on every step
but the documented ones. Negative controls: a driver with a wrong errno, a printer that loses
a byte, a token outside a step's allow-list and a stale gold file are all caught, as
:class:`differential.Divergence`.

Kernel tier (``USBLP_EMU_KERNEL=1``, marker ``kernel``): boots the rig once, runs the whole
corpus on the real driver and checks it still agrees with the gold and with the emulator. When
asked for, it fails if the rig cannot boot; it never skips.
"""

from __future__ import annotations

import dataclasses
import errno
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.tiers.conftest import KERNEL_ENABLED
from tools.differential import main as differential_main
from tools.opdiff.compare import DOCUMENTED, Divergence, check, compare, gold_path, load_gold
from tools.opdiff.emulator import run_emulator
from tools.opdiff.kernel import run_kernel
from tools.opdiff.runner import HANG, NOT_RUN, ScriptResult
from tools.opdiff.script import (
    CORPUS,
    IOCTLS,
    POLL_BITS,
    UNPLUG_METHODS,
    Allow,
    Script,
    ScriptError,
    corpus_paths,
    ioctl_command,
    parse_script,
)
from usblp_emu import _abi as constants
from usblp_emu._usblp._driver import UsblpDriver
from usblp_emu._virtual._printer import VirtualPrinter

ROOT = Path(__file__).resolve().parents[2]


SCRIPTS = corpus_paths()


@pytest.fixture(scope="module")
def emulator_runs() -> dict[str, ScriptResult]:
    """Every script on the emulator, run side by side (their sleeps dominate)."""
    scripts = [parse_script(p) for p in SCRIPTS]
    with ThreadPoolExecutor(max_workers=len(scripts)) as pool:
        results = list(pool.map(run_emulator, scripts))
    return {r.script: r for r in results}


def script_named(name: str) -> Script:
    return parse_script(CORPUS / f"{name}.ops")


# -- the corpus against the gold --------------------------------------------------------------


def test_corpus_covers_the_reference():
    names = {p.stem for p in SCRIPTS}
    assert len(names) >= 25
    verbs = {s.op.verb for p in SCRIPTS for s in parse_script(p).steps}
    assert verbs >= {
        "open",
        "close",
        "write",
        "read",
        "ioctl",
        "poll",
        "unplug",
        "replug",
        "stall-device",
        "resume-device",
        "bg",
        "wait",
        "sleep",
    }
    unplugs = {
        s.op.args[0] for p in SCRIPTS for s in parse_script(p).steps if s.op.verb == "unplug"
    }
    assert unplugs == set(UNPLUG_METHODS)
    ioctls = {s.op.args[1] for p in SCRIPTS for s in parse_script(p).steps if s.op.verb == "ioctl"}
    assert ioctls == set(IOCTLS)


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_emulator_agrees_with_the_kernel_gold(path, emulator_runs):
    script = parse_script(path)
    emulator = emulator_runs[script.name]
    assert emulator.check == "clean"
    check([compare(script, load_gold(script), emulator)])


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_gold_is_a_recorded_kernel_run_of_this_script(path):
    script = parse_script(path)
    document = json.loads(gold_path(script).read_text())
    assert document["kernel"][0].isdigit()  # a kernel release, e.g. 6.1.0-56-amd64
    assert document["source"].startswith("tools/differential.py record")
    gold = load_gold(script)
    assert gold.fingerprint == script.fingerprint, "stale gold: re-record this script"
    assert [r.op for r in gold.steps] == [s.op.text for s in script.steps]
    assert all(r.token not in (HANG, NOT_RUN) for r in gold.steps)


def test_documented_differences_are_few_and_explained(emulator_runs):
    documented = []
    for path in SCRIPTS:
        script = parse_script(path)
        report = compare(script, load_gold(script), emulator_runs[script.name])
        documented += [v for v in report.verdicts if v.verdict == DOCUMENTED]
    assert all(len(v.reason) > 40 for v in documented)
    steps = sum(len(parse_script(p).steps) for p in SCRIPTS)
    assert len(documented) < steps // 10


# -- negative controls: a broken emulator must be reported -------------------------------------


def test_a_wrong_errno_for_the_second_open_is_a_divergence(monkeypatch):
    driver_open = UsblpDriver.open

    def busy_is_eio(self, minor):
        rv = driver_open(self, minor)
        return -errno.EIO if rv == -errno.EBUSY else rv

    monkeypatch.setattr(UsblpDriver, "open", busy_is_eio)
    script = script_named("second-open-ebusy")
    report = compare(script, load_gold(script), run_emulator(script))
    assert [(v.op, v.left, v.right) for v in report.diffs] == [
        ("open B", "EBUSY", "EIO"),
        ("open C nonblock", "EBUSY", "EIO"),
    ]
    with pytest.raises(Divergence, match="open B"):
        check([report])


def test_ioctl_einval_for_unknown_commands_is_a_divergence(monkeypatch):
    ioctl = UsblpDriver.ioctl

    def einval(self, usblp, cmd, arg):
        rv = ioctl(self, usblp, cmd, arg)
        return -errno.EINVAL if rv == -errno.ENOTTY else rv

    monkeypatch.setattr(UsblpDriver, "ioctl", einval)
    script = script_named("ioctl-invalid")
    with pytest.raises(Divergence, match="ioctl A INVALID"):
        check([compare(script, load_gold(script), run_emulator(script))])


def test_a_printer_that_loses_a_byte_is_a_divergence(monkeypatch):
    received = VirtualPrinter.__dict__["received"]
    assert isinstance(received, property)
    assert received.fget is not None
    getter = received.fget
    monkeypatch.setattr(VirtualPrinter, "received", property(lambda self: getter(self)[1:]))
    script = script_named("write-8192-8193")
    with pytest.raises(Divergence, match="received"):
        check([compare(script, load_gold(script), run_emulator(script))])


def test_a_token_outside_the_allow_list_is_a_divergence():
    script = script_named("open-after-unplug")
    gold = load_gold(script)
    emulator = run_emulator(script)
    assert compare(script, gold, emulator).diffs == []
    step = next(i for i, s in enumerate(script.steps) if s.allow is not None)
    steps = list(emulator.steps)
    steps[step] = dataclasses.replace(steps[step], token="EBUSY")
    with pytest.raises(Divergence, match="open A"):
        check([compare(script, gold, dataclasses.replace(emulator, steps=steps))])


def test_a_dirty_heap_is_a_divergence():
    script = script_named("open-close")
    emulator = dataclasses.replace(run_emulator(script), check="HeapLeak: 1 object")
    with pytest.raises(Divergence, match="emulator heap"):
        check([compare(script, load_gold(script), emulator)])


def test_gold_for_another_version_of_the_script_is_stale(tmp_path):
    source = CORPUS / "write-one.ops"
    changed = tmp_path / "write-one.ops"
    changed.write_text(source.read_text().replace("write A 2", "write A 3"))
    script = parse_script(changed)
    gold = load_gold(parse_script(source))
    with pytest.raises(Divergence, match="another version of the script"):
        check([compare(script, gold, run_emulator(script))])


def test_kernel_runs_agree_within_an_allow_lists_kernel_tokens():
    script = script_named("writer-blocked-unplug-remove")
    gold = load_gold(script)
    step = next(i for i, s in enumerate(script.steps) if s.allow is not None)
    flipped = "ENODEV" if gold.steps[step].token == "EIO" else "EIO"
    steps = list(gold.steps)
    steps[step] = dataclasses.replace(steps[step], token=flipped)
    again = dataclasses.replace(gold, steps=steps)
    report = compare(script, gold, again, names=("gold", "now"), same_side=True)
    assert [v.verdict for v in report.verdicts if v.op == script.steps[step].op.text] == [
        DOCUMENTED
    ]
    steps[step] = dataclasses.replace(steps[step], token="EPIPE")
    with pytest.raises(Divergence):
        check([compare(script, gold, dataclasses.replace(gold, steps=steps), same_side=True)])


# -- the script format ------------------------------------------------------------------------

HEADER = """about: a test script
device-id: MFG:A;MDL:B;CMD:PCL;
vid: 0x1209
pid: 0x0001
q-len: 10
---
"""


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("open A\nfrobnicate A\n", 8, "unknown operation 'frobnicate'"),
        ("write A 10\n", 7, "A was never opened"),
        ("open A\nwrite A ten\n", 8, "the byte count must be an integer, not 'ten'"),
        ("open A\nioctl A GET_WIDGET\n", 8, "unknown ioctl 'GET_WIDGET'"),
        ("open A\nioctl A SET_PROTOCOL\n", 8, "ioctl SET_PROTOCOL needs an argument"),
        ("open A\nbg W: write A 1\nclose A\n", 8, "bg W is never waited for"),
        ("open A\nwait W\n", 8, "no running bg W to wait for"),
        ("unplug yank\n", 7, "unplug METHOD is one of"),
        ("open A\nclose A | allow kernel=EBADF\n", 8, "expected 'allow kernel="),
        ("device-send 1024\n", 7, "must not be a multiple of 512"),
        ("", 6, "the script has no operations"),
    ],
)
def test_a_malformed_script_is_one_line_naming_its_line(tmp_path, body, line, message):
    path = tmp_path / "bad.ops"
    path.write_text(HEADER + body)
    with pytest.raises(ScriptError) as info:
        parse_script(path)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"{path}:{line}: ")
    assert message in text


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("about: x\n---\nopen A\n", 2, "the header has no 'device-id'"),
        ("about: x\nsize: 3\n---\n", 2, "expected a header line"),
        (HEADER.replace("q-len: 10", "q-len: 0") + "open A\n", 5, "q-len must be 1..64"),
        ("about: x\n", 1, "no '---' line ends the header"),
    ],
)
def test_a_malformed_header_is_one_line_naming_its_line(tmp_path, text, line, message):
    path = tmp_path / "bad.ops"
    path.write_text(text)
    with pytest.raises(ScriptError, match=f"^{path}:{line}: .*{message}"):
        parse_script(path)


def test_the_command_line_rejects_a_malformed_script_in_one_line(tmp_path, capsys):
    path = tmp_path / "bad.ops"
    path.write_text(HEADER + "open A\nclose B\n")
    assert differential_main(["emu", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == f"differential.py: {path}:8: B was never opened\n"


def test_allow_annotations_parse_tokens_with_colons(tmp_path):
    path = tmp_path / "ok.ops"
    path.write_text(
        HEADER.replace("q-len: 10", "q-len: 10\nallow-received: kernel=0 emu=81920:*: lost")
        + "open A | allow kernel=ENOENT emu=ENODEV: no device nodes here\n"
    )
    script = parse_script(path)
    assert script.steps[0].allow == Allow(("ENOENT",), ("ENODEV",), "no device nodes here")
    assert script.allow_received == Allow(("0",), ("81920:*",), "lost")
    assert script.allow_received.admits("0", "81920:4ff968b68016")
    assert not script.allow_received.admits("0", "8192:4ff968b68016")


def test_the_guest_sides_numbers_are_the_kernels():
    assert ioctl_command("GET_DEVICE_ID", 1024) == constants.LPIOC_GET_DEVICE_ID(1024)
    assert ioctl_command("GET_PROTOCOLS", 8) == constants.LPIOC_GET_PROTOCOLS()
    assert ioctl_command("GET_PROTOCOLS_SHORT", 4) == constants.LPIOC_GET_PROTOCOLS(4)
    assert ioctl_command("SET_PROTOCOL", 0) == constants.LPIOC_SET_PROTOCOL
    assert ioctl_command("HP_SET_CHANNEL", 0) == constants.LPIOC_HP_SET_CHANNEL
    assert ioctl_command("GET_BUS_ADDRESS", 8) == constants.LPIOC_GET_BUS_ADDRESS()
    assert ioctl_command("GET_VID_PID", 8) == constants.LPIOC_GET_VID_PID()
    assert ioctl_command("SOFT_RESET", 0) == constants.LPIOC_SOFT_RESET
    assert ioctl_command("LPGETSTATUS", 4) == constants.LPGETSTATUS
    assert ioctl_command("LPABORT", 0) == constants.LPABORT
    poll = dict(POLL_BITS)
    assert (poll["IN"], poll["OUT"], poll["HUP"]) == (
        constants.POLLIN,
        constants.POLLOUT,
        constants.POLLHUP,
    )
    assert (poll["RDNORM"], poll["WRNORM"]) == (constants.POLLRDNORM, constants.POLLWRNORM)


# -- kernel tier ------------------------------------------------------------------------------


@pytest.mark.kernel
@pytest.mark.skipif(
    not KERNEL_ENABLED, reason="the real kernel: set USBLP_EMU_KERNEL=1 (boots QEMU)"
)
def test_the_real_kernel_still_agrees_with_its_gold_and_the_emulator(emulator_runs, tmp_path):
    scripts = [parse_script(p) for p in SCRIPTS]
    run = run_kernel(scripts, out_dir=tmp_path)  # a rig that cannot boot raises: a failure
    reports = []
    pair = ("kernel gold", "kernel now")
    for script in scripts:
        now = run.results[script.name]
        reports.append(compare(script, load_gold(script), now, names=pair, same_side=True))
        reports.append(compare(script, now, emulator_runs[script.name]))
    check(reports)

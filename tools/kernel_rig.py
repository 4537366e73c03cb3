#!/usr/bin/env python3
"""The kernel rig: Debian's own kernel under QEMU, with a real usblp driver and a USB printer.

Contract (kept stable for tools/differential.py and the kernel test tier):

- ``prepare() -> RigPaths`` installs what is missing and builds the cache; idempotent, fast
  when done (no download, no apt-get call but one ``apt-cache depends``).
- ``run_in_guest(cmd, *, device_id, timeout, vendor_id=0x1209, product_id=0x0001,
  serial="RIG0001", out_dir=None, cwd=None, env=None, q_len=10, accel="tcg") ->
  RigResult(returncode, stdout, stderr, console, seconds, boot_seconds, command_seconds,
  pnp_padded, pnp, out_dir)``; a guest that does not boot, a setup that fails, or a timeout
  raises ``RigError`` (``RigTimeout``) with ``reason``, ``console_tail()`` and the command's
  output so far. Measured on the 2-core dev machine under TCG: ~6-9 s wall from QEMU start
  to the command (guest ~4.5 s), a Python start in the guest ~2 s (cold 9p cache).
- In the guest the command runs chrooted into the host's ``/`` (read-only), in the host's cwd, with
  ``RIG_OUT`` a writable folder that is ``out_dir`` on the host, ``RIG_GUEST=1``, ``RIG_DEVICE_ID``,
  ``RIG_PNP_PADDED`` (see below), ``TMPDIR`` writable, and ``from tools import rig_guest`` working
  with the repository root on ``sys.path``. ``/dev/usb/lp0`` (usblp) and ``/dev/g_printer0`` (the
  gadget side) exist when it starts, and the gadget's OUT endpoint has receive requests queued
  (``rig_guest.gadget_prime``), so usblp writes up to ``q_len`` x 8 KiB complete without a reader.

Usage::

    python tools/kernel_rig.py prepare
    python tools/kernel_rig.py run [--device-id ID] [--timeout S] [--vid 0x1209 --pid 0x0001
        --serial S] [--q-len N] [--out DIR] [--console] [-v] -- CMD ARGS...

``run`` prints the command's stdout and stderr and exits with its status; a rig failure (guest
did not boot, setup failed, timeout) prints one ``kernel-rig: FAIL: reason`` line and the tail
of the serial console on stderr and exits with ``RIG_FAILURE`` (125, as env(1) and timeout(1)
do for their own failures, so it does not collide with pytest's or a shell's statuses); bad
usage exits 2.

How it works. ``prepare`` installs ``qemu-system-x86`` and ``busybox-static`` with apt-get,
downloads the kernel image package that ``linux-image-amd64`` depends on, extracts it with
``dpkg -x``, runs ``busybox depmod`` and builds a small initramfs: static busybox, the modules
for 9p over virtio and for the USB stack (dummy_hcd, libcomposite, usb_f_printer, usblp and
their dependencies) and an ``/init`` script. All of it lives in
``$XDG_CACHE_HOME/usblp-emu/kernel-rig/<kernel version>/`` (``~/.cache`` by default), never in
the clone. ``run`` writes the command and the gadget's settings into ``OUT/.rig/`` and boots
the guest (``-accel tcg -cpu max -smp 2 -m 1024``, no network, serial console into
``OUT/.rig/console.log``) under timeout(1). ``/init`` mounts the host's ``/`` over 9p
(read-only, ``cache=loose``) and ``OUT`` over a second 9p share, builds a configfs printer
gadget on dummy_hcd's UDC, loads usblp, waits for ``/dev/usb/lp0``, then runs the command
chrooted into the host root with its stdout, stderr and exit status written to ``OUT/.rig/``
(read by the host, more reliable than parsing the console), and powers off.

The kernel 6.1 f_printer Device ID bug: its GET_DEVICE_ID reply puts ``strlen(pnp_string)``
in the length field where it should put that + 2, so usblp gets the ID without its last two
characters. ``/init`` detects it instead of assuming it: it compares what usblp read at probe
(sysfs ``ieee1284_id``) with the configured ID and, when two characters are missing, rebuilds
the gadget with two padding characters appended to ``pnp_string``. The command sees
``RIG_PNP_PADDED=1`` then (0 otherwise) and ``RIG_PNP`` (``ok``, ``empty`` or ``mismatch``:
the ID usblp got is neither, e.g. one too long for usblp's 1 KiB buffer). What a boot found is
remembered per kernel version, so the next boot starts with the right gadget and only checks.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import lzma
import os
import platform
import re
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

# Run as a script (python tools/NAME.py), sys.path has tools/: add the root, so `tools` imports.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.rig_guest import load_order, module_name, read_modules_dep

RIG_FAILURE = 125
"""Exit status of ``kernel_rig.py run`` when the rig itself failed (boot, setup, timeout)."""

LAYOUT = 1
"""Version of the cache layout (ready.json): bumping it unpacks every kernel again."""

DEFAULT_DEVICE_ID = "MFG:usblp-emu;MDL:Kernel Rig;CMD:PCL,PJL,POSTSCRIPT;CLS:PRINTER;"
DEFAULT_VENDOR_ID = 0x1209  # pid.codes, whose test product ids are free for exactly this
DEFAULT_PRODUCT_ID = 0x0001
DEFAULT_SERIAL = "RIG0001"
DEFAULT_TIMEOUT = 300.0
PNP_PADDING = "  "
"""Appended to pnp_string on a kernel with the f_printer length bug; never reaches usblp."""

GUEST_OUT = "/run/rig-out"
GUEST_TMP = "/run/rig-tmp"
GUEST_GADGET = "/sys/kernel/config/usb_gadget/rig"

BOOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p")
USB_MODULES = ("dummy_hcd", "libcomposite", "usb_f_printer", "usblp")
HOST_PACKAGES = ("qemu-system-x86", "busybox-static")
KERNEL_META_PACKAGE = "linux-image-amd64"
QEMU = "qemu-system-x86_64"
BUSYBOX = "/bin/busybox"

# Variables of the host's environment the command inherits (the rest is the rig's own).
PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV", "USER")


class RigError(RuntimeError):
    """The rig failed: the guest did not boot, its setup failed, or it ran out of time."""

    def __init__(self, reason: str, console: str = "", *, stdout: str = "", stderr: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.console = console
        self.stdout = stdout  # whatever the command had written when it failed, if it ran
        self.stderr = stderr

    def console_tail(self, lines: int = 25) -> str:
        """The last ``lines`` lines of the serial console."""
        return "\n".join(self.console.rstrip("\n").splitlines()[-lines:])


class RigTimeout(RigError):
    """The guest, or the command in it, did not finish within the timeout."""


@dataclass(frozen=True)
class RigPaths:
    """Where ``prepare`` put things, for one kernel version."""

    version: str  # the kernel release, e.g. 6.1.0-56-amd64
    package: str  # the Debian package it came from
    directory: Path  # the cache directory of this version
    kernel: Path
    initramfs: Path
    modules: Path  # lib/modules/<version> with modules.dep, visible in the guest at this path
    qemu: str
    state: Path  # what boots found out (the f_printer bug)


@dataclass(frozen=True)
class RigResult:
    """What a guest run gave."""

    returncode: int
    stdout: str
    stderr: str
    console: str
    seconds: float  # wall time of the whole run, QEMU start to exit
    boot_seconds: float  # wall time until the command started (boot and USB setup)
    command_seconds: float  # guest time the command ran
    pnp_padded: bool  # the gadget's pnp_string carries the f_printer padding
    pnp: str  # "ok", "empty" or "mismatch" (see the module docstring)
    out_dir: Path | None  # None when run_in_guest made (and removed) a temporary one


def log(message: str) -> None:
    """Progress on stderr, so stdout stays the command's."""
    print(f"kernel-rig: {message}", file=sys.stderr, flush=True)


# --- prepare -------------------------------------------------------------------------------


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/usblp-emu/kernel-rig`` (``~/.cache`` when unset or not absolute)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return root / "usblp-emu" / "kernel-rig"


def _run(argv: Sequence[str], *, cwd: Path | None = None, quiet: bool = True) -> str:
    """Run a host command; raise RigError with its output when it fails."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C")
    proc = subprocess.run(
        list(argv),
        check=False,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-3:]
        raise RigError(f"{' '.join(argv[:3])} failed ({proc.returncode}): {' / '.join(detail)}")
    if not quiet:
        log(proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "done")
    return proc.stdout


def _is_static_elf(path: str) -> bool:
    """True if ``path`` is an ELF executable without a program interpreter (statically linked).

    The initramfs has no libc, so a dynamic busybox (Debian's ``busybox`` package) would not
    start there; this is the check that ``busybox-static`` is what provides /bin/busybox.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit only: the rig is x86-64
                return False
            (phoff,) = struct.unpack_from("<Q", head, 32)
            phentsize, phnum = struct.unpack_from("<HH", head, 54)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return False
    pt_interp = 3
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != pt_interp for i in range(phnum))


def _host_tools_ready() -> bool:
    return shutil.which(QEMU) is not None and _is_static_elf(BUSYBOX)


def _apt_get(*args: str) -> None:
    """apt-get with the package lists refreshed once if the first try fails (a fresh machine)."""
    if os.geteuid() != 0:
        raise RigError(f"needs root for 'apt-get {' '.join(args)}' (or install it beforehand)")
    try:
        _run(["apt-get", *args])
    except RigError:
        log("apt-get failed; running apt-get update and trying again")
        _run(["apt-get", "update"])
        _run(["apt-get", *args])


def _ensure_host_tools() -> str:
    if not _host_tools_ready():
        log(f"installing {' '.join(HOST_PACKAGES)}")
        _apt_get("install", "-y", "--no-install-recommends", *HOST_PACKAGES)
        if not _host_tools_ready():
            raise RigError(f"{QEMU} or a static {BUSYBOX} still missing after apt-get install")
    qemu = shutil.which(QEMU)
    assert qemu is not None
    return qemu


def _kernel_package() -> str | None:
    """The package ``linux-image-amd64`` depends on, per the local lists (no download)."""
    try:
        out = _run(["apt-cache", "depends", KERNEL_META_PACKAGE])
    except RigError:
        return None
    match = re.search(r"^\s*Depends:\s*(linux-image-\S+)\s*$", out, re.M)
    return match.group(1) if match else None


def _current_package(root: Path) -> str:
    """The kernel package to use: the lists' choice, else (no lists, offline) the cached one."""
    package = _kernel_package()
    if package is None and not _cached_versions(root):
        _apt_get("update")  # a fresh machine: apt-cache has no lists yet
        package = _kernel_package()
    if package is None:
        cached = _cached_versions(root)
        if not cached:
            raise RigError(f"apt-cache knows no {KERNEL_META_PACKAGE} and nothing is cached")
        package = f"linux-image-{cached[-1]}"
    return package


def _cached_versions(root: Path) -> list[str]:
    """Kernel versions in the cache, oldest first (6.1.0-9 before 6.1.0-56)."""
    if not root.is_dir():
        return []

    def key(version: str) -> list[tuple[int, str]]:
        return [
            (int(part), "") if part.isdigit() else (-1, part)
            for part in re.split(r"(\d+)", version)
        ]

    return sorted((p.parent.name for p in root.glob("*/ready.json")), key=key)


def _initramfs_key(version: str) -> str:
    """What the initramfs is made of, hashed: editing /init or the module list rebuilds it."""
    text = "\0".join([INIT, version, *BOOT_MODULES, *USB_MODULES])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _paths(root: Path, info: Mapping[str, str], qemu: str) -> RigPaths:
    directory = root / info["version"]
    return RigPaths(
        version=info["version"],
        package=info["package"],
        directory=directory,
        kernel=directory / info["kernel"],
        initramfs=directory / f"initramfs-{_initramfs_key(info['version'])}.cpio",
        modules=directory / info["modules"],
        qemu=qemu,
        state=directory / "state.json",
    )


def _load_ready(directory: Path) -> dict[str, str] | None:
    try:
        info = json.loads((directory / "ready.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("layout") != LAYOUT:
        return None
    return {k: str(v) for k, v in info.items()}


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Serialize slow prepares (two test processes, or the differential tool beside a test)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def prepare(*, verbose: bool = False) -> RigPaths:
    """Install QEMU and busybox if needed, fetch and unpack the kernel, build the initramfs.

    Idempotent: when the cache for the current kernel exists, this costs one ``apt-cache
    depends`` and a few stats. Without package lists (or offline) it falls back to the newest
    kernel already cached.
    """
    if platform.machine() != "x86_64":
        raise RigError(f"the kernel rig needs an x86-64 host, not {platform.machine()}")
    qemu = _ensure_host_tools()
    root = cache_root()
    package = _current_package(root)
    version = package.removeprefix("linux-image-")
    directory = root / version
    info = _load_ready(directory)
    if info is None:
        with _locked(root):
            info = _load_ready(directory)  # someone else may have built it meanwhile
            if info is None:
                try:
                    info = _build(root, package, version, verbose=verbose)
                except RigError as exc:
                    cached = _cached_versions(root)
                    if not cached:
                        raise
                    # Offline with a newer kernel announced: the cached one still works.
                    log(f"{exc}; using the cached kernel {cached[-1]}")
                    info = _load_ready(root / cached[-1])
                    if info is None:
                        raise
    paths = _paths(root, info, qemu)
    for needed in (paths.kernel, paths.modules / "modules.dep"):
        if not needed.exists():
            raise RigError(f"cache damaged: {needed} is missing (remove {directory})")
    if not paths.initramfs.exists():
        with _locked(root):
            if not paths.initramfs.exists():
                _build_initramfs(paths, read_modules_dep(paths.modules))
    return paths


_PREPARED: list[RigPaths] = []


def _prepared() -> RigPaths:
    """``prepare()`` once per process: a tool booting many guests skips apt-cache each time."""
    if not _PREPARED or not _PREPARED[0].initramfs.exists():
        _PREPARED[:] = [prepare()]
    return _PREPARED[0]


def _build(root: Path, package: str, version: str, *, verbose: bool) -> dict[str, str]:
    """Download, unpack and build into a fresh folder, then move it in place atomically."""
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=root))
    try:
        log(f"downloading {package}")
        _run(["apt-get", "download", package], cwd=work)
        debs = sorted(work.glob("*.deb"))
        if len(debs) != 1:
            raise RigError(f"apt-get download {package} gave {len(debs)} .deb files")
        log(f"unpacking {debs[0].name}")
        _run(["dpkg", "-x", str(debs[0]), str(work / "root")])
        debs[0].unlink()  # 70 MB we never need again: the unpacked tree is the cache
        kernel = work / "root" / "boot" / f"vmlinuz-{version}"
        if not kernel.is_file():
            raise RigError(f"{package} has no boot/vmlinuz-{version}")
        base = next(
            (b for b in (work / "root", work / "root" / "usr") if (b / "lib/modules").is_dir()),
            None,
        )
        if base is None:
            raise RigError(f"{package} has no lib/modules")
        modules = base / "lib" / "modules" / version
        _decompress_modules(modules)
        _run([BUSYBOX, "depmod", "-b", str(base), version])
        info = {
            "layout": str(LAYOUT),
            "version": version,
            "package": package,
            "kernel": str(kernel.relative_to(work)),
            "modules": str(modules.relative_to(work)),
        }
        (work / "ready.json").write_text(json.dumps(info | {"layout": LAYOUT}, indent=1) + "\n")
        work.chmod(0o755)  # mkdtemp's 0700 is for the build, not for the cache
        target = root / version
        if target.exists():  # a stale or damaged build: replace it
            shutil.rmtree(target)
        os.replace(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if verbose:
        log(f"prepared {version} in {time.monotonic() - started:.1f} s")
    return info


def _decompress_modules(modules: Path) -> None:
    """Debian 12 ships plain .ko files; later releases ship .ko.xz, which busybox may not load."""
    for packed in modules.rglob("*.ko.xz"):
        packed.with_suffix("").write_bytes(lzma.decompress(packed.read_bytes()))
        packed.unlink()


def _build_initramfs(paths: RigPaths, deps: Mapping[str, tuple[str, list[str]]]) -> None:
    """Static busybox with its applet links, the modules the rig loads, and /init."""
    for old in paths.directory.glob("initramfs-*.cpio"):
        old.unlink()  # made by another version of this file
    version, modules = paths.version, paths.modules
    stage = Path(tempfile.mkdtemp(prefix=".initramfs.", dir=paths.directory))
    for sub in ("bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "newroot"):
        (stage / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, stage / "bin" / "busybox")
    # Applet links made here, not by 'busybox --install' at boot: every boot saves the work.
    applets = _run([BUSYBOX, "--list-full"]).split()
    for applet in applets:
        link = stage / applet
        if not link.exists():
            link.symlink_to("/bin/busybox")
    moddir = stage / "lib" / "modules" / version
    try:
        needed = load_order(deps, BOOT_MODULES + USB_MODULES)
    except KeyError as exc:
        raise RigError(f"module {exc} is not in {version}'s modules.dep") from None
    for rel in needed:
        (moddir / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(modules / rel, moddir / rel)
    # A modules.dep of what is here, so busybox modprobe works before the root is mounted.
    lines = [f"{deps[module_name(p)][0]}: {' '.join(deps[module_name(p)][1])}" for p in needed]
    (moddir / "modules.dep").write_text("\n".join(lines) + "\n")
    init = stage / "init"
    init.write_text(INIT.replace("@VERSION@", version))
    init.chmod(0o755)
    # The host has no cpio(1); busybox's writes the newc format the kernel unpacks.
    names = [".", *sorted(str(p.relative_to(stage)) for p in stage.rglob("*"))]
    tmp = paths.initramfs.with_name(f".{paths.initramfs.name}.{os.getpid()}")
    try:
        with open(tmp, "wb") as out:
            proc = subprocess.run(
                [BUSYBOX, "cpio", "-o", "-H", "newc"],
                check=False,
                cwd=stage,
                input="\n".join(names).encode() + b"\n",
                stdout=out,
                stderr=subprocess.PIPE,
            )
        if proc.returncode != 0:
            detail = proc.stderr.decode(errors="replace").strip()
            raise RigError(f"busybox cpio failed: {detail}")
        os.replace(tmp, paths.initramfs)
    finally:
        tmp.unlink(missing_ok=True)
        shutil.rmtree(stage, ignore_errors=True)


# --- the guest's /init ---------------------------------------------------------------------

INIT = r"""#!/bin/busybox sh
# The kernel rig's /init, written by tools/kernel_rig.py: see its docstring.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
read up _ </proc/uptime
echo "rig: init at ${up}s"
RIG=
fail() {
    echo "RIG-FAIL: $*"
    if [ -n "$RIG" ]; then printf '%s\n' "$*" >"$RIG/failure"; fi
    sync
    poweroff -f
}
# wait_path PATH present|absent SECONDS
wait_path() {
    n=$(($3 * 50))
    while [ "$n" -gt 0 ]; do
        if [ -e "$1" ]; then [ "$2" = present ] && return 0; else [ "$2" = absent ] && return 0; fi
        sleep 0.02
        n=$((n - 1))
    done
    return 1
}

modprobe -a virtio_pci 9pnet_virtio 9p || fail "cannot load the 9p modules"
mkdir -p /out
# 512000 is the largest msize the 6.1 virtio transport takes: fewer round trips per read.
opts=trans=virtio,version=9p2000.L,msize=512000
mount -t 9p -o "$opts" rigout /out || fail "cannot mount the work folder (9p tag rigout)"
RIG=/out/.rig
. "$RIG/config.sh" || fail "cannot read $RIG/config.sh"
mount -t 9p -o "ro,cache=loose,$opts" hostroot /newroot || fail "cannot mount the host root"
[ -d /newroot/run ] || fail "the host root has no /run to mount the guest's tmpfs on"
mount -t tmpfs -o mode=0755 tmpfs /newroot/run
mkdir -p /newroot@GUEST_OUT@ /newroot@GUEST_TMP@
chmod 1777 /newroot@GUEST_TMP@
mount --bind /out /newroot@GUEST_OUT@
# All modules, for the kernel's own request_module (it runs /sbin/modprobe here, not in the
# chroot); the few the rig needs are in the initramfs already.
mount --bind "/newroot$RIG_MODULES" /lib/modules/@VERSION@ || fail "no $RIG_MODULES in the guest"

modprobe -a dummy_hcd libcomposite usb_f_printer || fail "cannot load dummy_hcd, libcomposite"
mount -t configfs configfs /sys/kernel/config || fail "cannot mount configfs"
wait_path /sys/class/udc/dummy_udc.0 present 10 || fail "dummy_hcd made no dummy_udc.0"
G=@GUEST_GADGET@
F=$G/functions/printer.usb0
mkdir "$G" "$G/strings/0x409" "$F" "$G/configs/c.1" "$G/configs/c.1/strings/0x409" ||
    fail "cannot make the configfs gadget"
echo "$RIG_VID" >"$G/idVendor"
echo "$RIG_PID" >"$G/idProduct"
echo 0x0200 >"$G/bcdUSB"
printf '%s' "$RIG_MANUFACTURER" >"$G/strings/0x409/manufacturer"
printf '%s' "$RIG_PRODUCT" >"$G/strings/0x409/product"
printf '%s' "$RIG_SERIAL" >"$G/strings/0x409/serialnumber"
echo "$RIG_QLEN" >"$F/q_len" || fail "q_len $RIG_QLEN refused"
echo printer >"$G/configs/c.1/strings/0x409/configuration"
echo 0xc0 >"$G/configs/c.1/bmAttributes"
ln -s "$F" "$G/configs/c.1/" || fail "cannot link printer.usb0 into the configuration"
# set_pnp 0|1: pnp_string without or with the padding; one write() (configfs keeps the last).
set_pnp() {
    if [ "$1" = 1 ]; then src=$RIG/pnp-padded; else src=$RIG/pnp; fi
    if [ -s "$src" ]; then dd if="$src" of="$F/pnp_string" bs=8192 2>/dev/null ||
        fail "cannot write pnp_string"; fi
}
bind_udc() {
    echo dummy_udc.0 >"$G/UDC" || fail "cannot bind the gadget to dummy_udc.0"
    wait_path /dev/usb/lp0 present 30 || fail "no /dev/usb/lp0 after binding the gadget"
}
modprobe usblp || fail "cannot load usblp"
pad=$RIG_PAD_HINT
set_pnp "$pad"
bind_udc

# The f_printer length bug: compare what usblp read at probe with what was configured.
got=/sys/class/usbmisc/lp0/device/ieee1284_id
same() { cat "$got" >/tmp/got 2>/dev/null && cmp -s /tmp/got "$1"; }
rebind() {
    echo >"$G/UDC"
    wait_path /dev/usb/lp0 absent 10 || fail "/dev/usb/lp0 stays after unbinding the gadget"
    pad=$1
    set_pnp "$pad"
    bind_udc
}
pnp=mismatch
if [ ! -s "$RIG/pnp" ]; then
    pnp=empty
elif same "$RIG/pnp"; then
    pnp=ok
elif [ "$pad" = 0 ] && same "$RIG/pnp-cut"; then
    echo "rig: usblp got the Device ID two characters short: padding pnp_string"
    rebind 1
    same "$RIG/pnp" && pnp=ok
elif [ "$pad" = 1 ] && same "$RIG/pnp-padded"; then
    echo "rig: usblp got the padding too (f_printer fixed): unpadding pnp_string"
    rebind 0
    same "$RIG/pnp" && pnp=ok
fi
[ "$pnp" = mismatch ] && echo "rig: usblp's Device ID differs from the configured one"

# Queue the gadget's receive requests (f_printer does it on the first read or poll), so
# usblp's writes complete without a reader until its q_len buffers are full.
cat /dev/g_printer0 >/dev/null &
reader=$!
n=100
while [ "$n" -gt 0 ] && [ "$(cat /proc/$reader/wchan 2>/dev/null)" != printer_read ]; do
    sleep 0.01
    n=$((n - 1))
done
kill "$reader"
wait "$reader" 2>/dev/null

mount --bind /proc /newroot/proc
mount --bind /sys /newroot/sys
mount --bind /sys/kernel/config /newroot/sys/kernel/config
mount --bind /dev /newroot/dev
mount -t tmpfs -o mode=1777 tmpfs /newroot/dev/shm 2>/dev/null
mount -t devpts devpts /newroot/dev/pts 2>/dev/null
read t0 _ </proc/uptime
printf 'padded=%s\npnp=%s\nt_command=%s\n' "$pad" "$pnp" "$t0" >>"$RIG/guest.env"
echo "rig: running the command at ${t0}s"
env -i RIG_PNP_PADDED="$pad" RIG_PNP="$pnp" chroot /newroot /bin/sh @GUEST_OUT@/.rig/cmd.sh \
    </dev/null >"$RIG/stdout" 2>"$RIG/stderr"
status=$?
read t1 _ </proc/uptime
printf 't_end=%s\nstatus=%s\n' "$t1" "$status" >>"$RIG/guest.env"
echo "rig: command exited with $status at ${t1}s"
sync
poweroff -f
"""
INIT = (
    INIT.replace("@GUEST_OUT@", GUEST_OUT)
    .replace("@GUEST_TMP@", GUEST_TMP)
    .replace("@GUEST_GADGET@", GUEST_GADGET)
)


# --- run -----------------------------------------------------------------------------------


def _read_state(paths: RigPaths) -> dict[str, object]:
    try:
        state = json.loads(paths.state.read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _write_state(paths: RigPaths, state: Mapping[str, object]) -> None:
    tmp = paths.state.with_name(f".state.{os.getpid()}")
    tmp.write_text(json.dumps(dict(state), indent=1) + "\n")
    os.replace(tmp, paths.state)


def _id_field(device_id: str, *keys: str) -> str | None:
    """One field of an IEEE 1284 Device ID (``MFG``/``MANUFACTURER`` ...), for USB strings."""
    for item in device_id.split(";"):
        key, sep, value = item.partition(":")
        if sep and key.strip().upper() in keys and value.strip():
            return value.strip()
    return None


def _qemu_path(path: Path) -> str:
    """QEMU option values escape a comma by doubling it."""
    return str(path).replace(",", ",,")


def _guest_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
    env.setdefault("HOME", "/root")
    env.setdefault("LANG", "C.UTF-8")
    # The root is read-only: no bytecode writes, a tmpfs for temporary files, and unbuffered
    # output so a command that times out still shows how far it got.
    env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1", TMPDIR=GUEST_TMP)
    env.update(extra or {})
    return env


def _write_job(
    rig: Path,
    paths: RigPaths,
    cmd: Sequence[str],
    *,
    cwd: str,
    env: Mapping[str, str],
    device_id: str,
    vendor_id: int,
    product_id: int,
    serial: str,
    q_len: int,
    pad_hint: bool,
) -> None:
    manufacturer = _id_field(device_id, "MFG", "MANUFACTURER") or "usblp-emu"
    product = _id_field(device_id, "MDL", "MODEL") or "Kernel Rig Printer"
    config = {
        "RIG_VID": f"{vendor_id:#06x}",
        "RIG_PID": f"{product_id:#06x}",
        "RIG_SERIAL": serial,
        "RIG_MANUFACTURER": manufacturer,
        "RIG_PRODUCT": product,
        "RIG_QLEN": str(q_len),
        "RIG_PAD_HINT": "1" if pad_hint else "0",
        "RIG_MODULES": str(paths.modules),
    }
    (rig / "config.sh").write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in config.items()))
    raw = device_id.encode()
    (rig / "pnp").write_bytes(raw)
    (rig / "pnp-padded").write_bytes(raw + PNP_PADDING.encode() if raw else b"")
    (rig / "pnp-cut").write_bytes(raw[:-2])
    lines = ["# The command the kernel rig runs in the guest (written by tools/kernel_rig.py)."]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    lines.append(f"cd -- {shlex.quote(cwd)} || exit 126")
    lines.append("exec " + " ".join(shlex.quote(a) for a in cmd))
    (rig / "cmd.sh").write_text("\n".join(lines) + "\n")


def _read_env(path: Path) -> dict[str, str]:
    try:
        text = path.read_text()
    except OSError:
        return {}
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _text(path: Path) -> str:
    try:
        return path.read_bytes().decode(errors="replace")
    except OSError:
        return ""


def qemu_argv(paths: RigPaths, out: Path, console: Path, *, accel: str = "tcg") -> list[str]:
    """The QEMU command line (without the timeout wrapper)."""
    cpu = "host" if accel == "kvm" else "max"
    append = " ".join(
        [
            "console=ttyS0",
            "rdinit=/init",
            "panic=-1",  # a panic reboots, which -no-reboot turns into QEMU exiting at once
            "quiet",  # the console is a 115200-baud UART, and printk is slow under TCG
            "mitigations=off",  # a throwaway guest: the speculation workarounds only cost time
        ]
    )
    share = "local,security_model=none,multidevs=remap"
    return [
        paths.qemu,
        *("-accel", accel, "-cpu", cpu, "-smp", "2", "-m", "1024"),
        *("-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"),
        *("-nic", "none", "-monitor", "none", "-serial", f"file:{_qemu_path(console)}"),
        *("-kernel", _qemu_path(paths.kernel), "-initrd", _qemu_path(paths.initramfs)),
        *("-append", append),
        *("-virtfs", f"{share},path=/,mount_tag=hostroot,readonly=on"),
        *("-virtfs", f"{share},path={_qemu_path(out)},mount_tag=rigout"),
    ]


def run_in_guest(
    cmd: Sequence[str],
    *,
    device_id: str = DEFAULT_DEVICE_ID,
    timeout: float = DEFAULT_TIMEOUT,
    vendor_id: int = DEFAULT_VENDOR_ID,
    product_id: int = DEFAULT_PRODUCT_ID,
    serial: str = DEFAULT_SERIAL,
    out_dir: str | os.PathLike[str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    q_len: int = 10,
    accel: str = "tcg",
) -> RigResult:
    """Boot the guest, plug the printer, run ``cmd`` there and return what it did.

    ``timeout`` covers the whole run (boot ~10 s under TCG, then the command). ``out_dir`` is
    the command's ``RIG_OUT`` (kept; the rig's own files go to ``out_dir/.rig/``); without it a
    temporary folder is used and removed. ``cwd`` defaults to the current directory, ``env``
    adds variables to the command's environment. Raises ``RigError`` if the guest does not get
    to run the command or dies, ``RigTimeout`` if the timeout expires.
    """
    if not cmd:
        raise ValueError("run_in_guest needs a command")
    paths = _prepared()
    state = _read_state(paths)
    temporary = out_dir is None
    out = Path(tempfile.mkdtemp(prefix="usblp-rig-")) if out_dir is None else Path(out_dir)
    try:
        out = out.resolve()
        out.mkdir(parents=True, exist_ok=True)
        rig = out / ".rig"
        shutil.rmtree(rig, ignore_errors=True)  # a previous run's files must not be read
        rig.mkdir()
        guest_env = _guest_env(env)
        guest_env.update(
            RIG_GUEST="1",
            RIG_OUT=GUEST_OUT,
            RIG_DEVICE_ID=device_id,
            RIG_GADGET=GUEST_GADGET,
            RIG_MODULES=str(paths.modules),
            RIG_KERNEL=paths.version,
        )
        _write_job(
            rig,
            paths,
            cmd,
            cwd=os.fspath(cwd) if cwd is not None else os.getcwd(),
            env=guest_env,
            device_id=device_id,
            vendor_id=vendor_id,
            product_id=product_id,
            serial=serial,
            q_len=q_len,
            pad_hint=bool(state.get("pnp_padding", False)),
        )
        result = _boot(paths, out, rig, timeout=timeout, accel=accel)
        # Remember what this kernel needs, so the next boot builds the gadget right first.
        if result.pnp == "ok" and state.get("pnp_padding") != result.pnp_padded:
            _write_state(paths, {**state, "pnp_padding": result.pnp_padded})
        return dataclasses.replace(result, out_dir=None if temporary else out)
    finally:
        if temporary:
            shutil.rmtree(out, ignore_errors=True)


def _boot(paths: RigPaths, out: Path, rig: Path, *, timeout: float, accel: str) -> RigResult:
    console = rig / "console.log"
    argv = [
        "timeout",
        "--kill-after=5",
        f"{timeout:.1f}",
        *qemu_argv(paths, out, console, accel=accel),
    ]
    started = time.monotonic()
    try:
        proc = subprocess.run(
            argv,
            check=False,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout + 30,  # timeout(1) should have ended it long before
        )
        returncode = proc.returncode
        qemu_err = proc.stderr.strip()
    except subprocess.TimeoutExpired:
        returncode, qemu_err = 124, ""
    seconds = time.monotonic() - started
    guest = _read_env(rig / "guest.env")
    console_text = _text(console)
    stdout, stderr = _text(rig / "stdout"), _text(rig / "stderr")
    if "status" not in guest:
        if returncode == 124:
            where = "in the command" if "t_command" in guest else "before the command started"
            raise RigTimeout(
                f"timed out after {timeout:g} s {where}",
                console_text,
                stdout=stdout,
                stderr=stderr,
            )
        # /init writes its reason into OUT/.rig/failure, or only to the console if it failed
        # before the work folder was mounted.
        failure = _text(rig / "failure").strip() or next(
            (
                line.partition("RIG-FAIL: ")[2].strip()
                for line in reversed(console_text.splitlines())
                if "RIG-FAIL: " in line
            ),
            "",
        )
        if failure:
            reason = f"guest setup failed: {failure}"
        elif qemu_err:
            reason = f"QEMU failed ({returncode}): {qemu_err.splitlines()[-1]}"
        elif "t_command" in guest:
            reason = "the guest died while the command ran (no exit status)"
        else:
            reason = "the guest did not boot to the command (see the console)"
        raise RigError(reason, console_text, stdout=stdout, stderr=stderr)
    t_command = float(guest.get("t_command", "0"))
    command_seconds = float(guest.get("t_end", "0")) - t_command
    return RigResult(
        returncode=int(guest["status"]),
        stdout=stdout,
        stderr=stderr,
        console=console_text,
        seconds=seconds,
        boot_seconds=max(0.0, seconds - command_seconds),
        command_seconds=command_seconds,
        pnp_padded=guest.get("padded") == "1",
        pnp=guest.get("pnp", "mismatch"),
        out_dir=out,
    )


# --- command line --------------------------------------------------------------------------


def _int(text: str) -> int:
    return int(text, 0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kernel_rig.py",
        description="Run a command in a QEMU guest with Debian's kernel, dummy_hcd, a configfs "
        "printer gadget and usblp (/dev/usb/lp0).",
    )
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("prepare", help="install and build what the rig needs (idempotent)")
    run = sub.add_parser("run", help="boot the guest and run CMD there")
    run.add_argument("--device-id", default=DEFAULT_DEVICE_ID, help="IEEE 1284 Device ID")
    run.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds, in all")
    run.add_argument("--vid", type=_int, default=DEFAULT_VENDOR_ID, help="idVendor")
    run.add_argument("--pid", type=_int, default=DEFAULT_PRODUCT_ID, help="idProduct")
    run.add_argument("--serial", default=DEFAULT_SERIAL, help="iSerialNumber string")
    run.add_argument("--q-len", type=int, default=10, help="f_printer's q_len (8 KiB buffers)")
    run.add_argument("--out", help="the command's RIG_OUT folder (default: a temporary one)")
    run.add_argument("--accel", choices=("tcg", "kvm"), default="tcg")
    run.add_argument("--console", action="store_true", help="print the console log on stderr")
    run.add_argument(
        "-v", "--verbose", action="store_true", help="a summary line (times) on stderr at the end"
    )
    run.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    return parser


def _fail(exc: RigError, err: TextIO) -> int:
    print(f"kernel-rig: FAIL: {exc.reason}", file=err)
    for name, text in (("stdout", exc.stdout), ("stderr", exc.stderr)):
        if text:
            print(f"--- the command's {name} so far (tail) ---", file=err)
            print("\n".join(text.rstrip("\n").splitlines()[-25:]), file=err)
    if exc.console:
        print("--- console (tail) ---", file=err)
        print(exc.console_tail(), file=err)
    return RIG_FAILURE


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.action == "prepare":
            started = time.monotonic()
            paths = prepare(verbose=True)
            print(f"kernel {paths.version}: {paths.directory}")
            log(f"ready in {time.monotonic() - started:.1f} s")
            return 0
        cmd = list(args.cmd)
        if cmd[:1] == ["--"]:
            cmd = cmd[1:]
        if not cmd:
            parser.error("run needs a command after --")
        result = run_in_guest(
            cmd,
            device_id=args.device_id,
            timeout=args.timeout,
            vendor_id=args.vid,
            product_id=args.pid,
            serial=args.serial,
            q_len=args.q_len,
            out_dir=args.out,
            accel=args.accel,
        )
    except RigError as exc:
        return _fail(exc, sys.stderr)
    if args.console:
        sys.stderr.write(result.console)
    sys.stdout.write(result.stdout)
    sys.stdout.flush()
    sys.stderr.write(result.stderr)
    if args.verbose:
        log(
            f"exit {result.returncode}; {result.seconds:.1f} s in all, boot and setup "
            f"{result.boot_seconds:.1f} s, pnp {result.pnp}"
            + (" (padded for the f_printer length bug)" if result.pnp_padded else "")
        )
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())

"""The import layers: every module's imports, read from its source, point down the layers.

The layers, lowest first (docs/architecture.md draws them): hazard (knows nothing of USB); the
kernel's numbers (``_abi``) and usblp's tables (``_usblp._ids``), standard library only; what
every layer says (``_errors``, ``_ieee1284``); the emulated USB core; the usblp driver and its
strategies; the host that assembles them; virtual hardware; real hardware through pyusb;
checking (scenarios, stress); bench; the CLI. Each layer lists what it may import; anything
else, and any module no layer claims, fails the test with the offending import named.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Third-party distributions a layer may name, besides the standard library.
PYUSB = {"usb", "libusb_package", "pyudev"}
RICH = {"rich"}

# Layer -> module-name prefixes it holds (the longest prefix wins).
LAYERS: dict[str, tuple[str, ...]] = {
    "hazard": ("hazard",),
    "abi": ("usblp_emu._abi", "usblp_emu._usblp._ids"),
    "vocabulary": ("usblp_emu._errors", "usblp_emu._ieee1284"),
    "core": ("usblp_emu._core",),
    "driver": ("usblp_emu._usblp",),
    "host": ("usblp_emu._host",),
    "virtual": ("usblp_emu._virtual",),
    "pyusb": ("usblp_emu._pyusb",),
    "check": ("usblp_emu._check",),
    "bench": ("usblp_emu._bench",),
    "plugin": ("usblp_emu._plugin",),  # the pytest plugin: virtual printers for a test
    "cli": ("usblp_emu._cli", "usblp_emu.__main__"),
    "api": ("usblp_emu$",),  # the package itself (``$``: this module only): the public names
    # Runs in the QEMU guest: the standard library and _abi. The differential's guest side
    # (tools/opdiff: the scripts, their tokens and runner, the guest's target) too.
    "guest": (
        "tools.rig_guest",
        "tools.opdiff.script",
        "tools.opdiff.tokens",
        "tools.opdiff.runner",
        "tools.opdiff.guest",
    ),
    "umockdev": ("tools.umockdev_printer", "tools.umockdev_rig"),  # Debian's python3, with gi
}

# Layer -> the layers and third-party packages it may import. A layer may import itself.
ALLOWED: dict[str, set[str]] = {
    "hazard": {"cereggii", "pytest", *RICH},  # rich for the explorer's report, pytest its plugin
    "abi": set(),
    "vocabulary": {"abi"},
    "core": {"hazard", "abi", "vocabulary"},
    "driver": {"hazard", "abi", "vocabulary", "core"},
    "host": {"hazard", "abi", "vocabulary", "core", "driver"},
    "virtual": {"hazard", "abi", "vocabulary", "core", "usb"},  # a pyusb backend, not pyusb's users
    "pyusb": {"hazard", "abi", "vocabulary", "core", *PYUSB},
    "check": {"hazard", "abi", "vocabulary", "core", "driver", "host", "virtual"},
    "bench": {"hazard", "abi", "vocabulary", "driver", "host", "virtual", "matplotlib", *RICH},
    "plugin": {"hazard", "abi", "vocabulary", "core", "virtual", "pytest", "usb"},
    "cli": {
        "hazard",
        "abi",
        "vocabulary",
        "driver",
        "host",
        "virtual",
        "pyusb",
        "check",
        "bench",
        *PYUSB,
        *RICH,
    },
    "api": {"abi", "vocabulary", "driver", "host", "virtual", "pyusb"},
    "guest": {"abi"},
    "umockdev": {"abi", "gi"},
}

STDLIB = set(sys.stdlib_module_names) | {"_typeshed"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


# Every module of the repository's packages, to tell ``from package import module`` apart.
MODULES = {
    module_name(path)
    for folder in ("hazard", "usblp_emu", "tools")
    for path in (ROOT / folder).glob("**/*.py")
}


def layer_of(module: str) -> str | None:
    """The layer that holds ``module`` (the longest matching prefix), or None."""
    best: tuple[int, str | None] = (-1, None)
    for layer, prefixes in LAYERS.items():
        for prefix in prefixes:
            exact = prefix.endswith("$")
            prefix = prefix.rstrip("$")  # noqa: PLW2901 - the same prefix, without its marker
            held = module == prefix or (not exact and module.startswith(prefix + "."))
            if held and len(prefix) > best[0]:
                best = (len(prefix), layer)
    return best[1]


def imports_of(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Every module ``source`` imports, anywhere in it (TYPE_CHECKING blocks too), with lines."""
    found: list[tuple[int, str]] = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base == "__future__":
                continue
            # ``from tools import rig_guest`` imports the module tools.rig_guest, ``from x
            # import name`` a name of module x.
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((node.lineno, sub if sub in MODULES else base))
    return found


def violations(sources: dict[str, tuple[str, bool]]) -> list[str]:
    """What goes against the layers in ``sources`` (module -> (source, is_package))."""
    problems: list[str] = []
    for module, (source, is_package) in sorted(sources.items()):
        layer = layer_of(module)
        if layer is None:
            problems.append(f"{module}: in no layer (add it to LAYERS)")
            continue
        for line, imported in imports_of(source, module, is_package):
            top = imported.split(".")[0]
            if top in STDLIB:
                continue
            target = layer_of(imported) if top in ("usblp_emu", "hazard", "tools") else top
            if target is None:
                problems.append(f"{module}:{line}: imports {imported}, which is in no layer")
            elif target != layer and target not in ALLOWED[layer]:
                problems.append(f"{module}:{line}: {layer} imports {imported} ({target})")
            elif imported == "usblp_emu" and layer != "api":
                problems.append(f"{module}:{line}: imports the package root, not the module")
    return problems


def project_sources() -> dict[str, tuple[str, bool]]:
    paths = [*ROOT.glob("hazard/**/*.py"), *ROOT.glob("usblp_emu/**/*.py")]
    tools = ROOT / "tools"
    paths += [tools / "rig_guest.py", tools / "umockdev_printer.py"]
    paths += [tools / "opdiff" / f"{name}.py" for name in ("script", "tokens", "runner", "guest")]
    paths += [*(tools / "umockdev_rig").glob("*.py")]
    return {module_name(p): (p.read_text(), p.name == "__init__.py") for p in paths}


def test_every_import_points_down_the_layers():
    sources = project_sources()
    assert len(sources) > 60  # the glob found the packages
    assert violations(sources) == []


@pytest.mark.parametrize(
    ("module", "source", "problem"),
    [
        (
            "usblp_emu._core._usbcore",
            "import usb.core\n",
            "usblp_emu._core._usbcore:1: core imports usb.core (usb)",
        ),
        (
            "usblp_emu._usblp._driver",
            "from rich.console import Console\n",
            "usblp_emu._usblp._driver:1: driver imports rich.console (rich)",
        ),
        (
            "usblp_emu._usblp._driver",
            "if TYPE_CHECKING:\n    from usblp_emu._cli._main import main\n",
            "usblp_emu._usblp._driver:2: driver imports usblp_emu._cli._main (cli)",
        ),
        (
            "hazard._heap",
            "from usblp_emu._host import Host\n",
            "hazard._heap:1: hazard imports usblp_emu._host (host)",
        ),
        (
            "usblp_emu._virtual._backend",
            "from usblp_emu._pyusb._transport import find_printers\n",
            "usblp_emu._virtual._backend:1: virtual imports usblp_emu._pyusb._transport (pyusb)",
        ),
        (
            "usblp_emu._abi",
            "import hazard\n",
            "usblp_emu._abi:1: abi imports hazard (hazard)",
        ),
        (
            "usblp_emu._check._stress",
            "from usblp_emu import Host\n",
            "usblp_emu._check._stress:1: check imports usblp_emu (api)",
        ),
        (
            "usblp_emu._core._urb",
            "from .._host import Host\n",
            "usblp_emu._core._urb:1: core imports usblp_emu._host (host)",
        ),
        (
            "tools.opdiff.guest",
            "from usblp_emu._host import Host\n",
            "tools.opdiff.guest:1: guest imports usblp_emu._host (host)",
        ),
        (
            "tools.rig_guest",
            "from tools import kernel_rig\n",
            "tools.rig_guest:1: imports tools.kernel_rig, which is in no layer",
        ),
        ("usblp_emu._gadget", "", "usblp_emu._gadget: in no layer (add it to LAYERS)"),
    ],
)
def test_an_import_against_the_layers_is_caught(module, source, problem):  # negative controls
    assert violations({module: (source, False)}) == [problem]

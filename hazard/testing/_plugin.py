"""pytest plugin: ``@pytest.mark.explore(...)`` runs a plain test function under the explorer.

A marked test's body is the exploration body: it is called once per schedule with its fixtures
(fixtures are set up once; create shared state inside the test). A failure prints the shrunk
report and a one-line pytest command that replays it (``--hazard-replay TOKEN``).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from hazard.testing._errors import ExplorationFailed
from hazard.testing._explore import explore, replay

_OPTION = "--hazard-replay"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--hazard-replay TOKEN``."""
    parser.addoption(
        _OPTION,
        action="store",
        default=None,
        metavar="TOKEN",
        help="replay one schedule of an @pytest.mark.explore test instead of exploring",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker."""
    config.addinivalue_line(
        "markers",
        "explore(preemption_bound=2, mode='dfs', runs=None, seed=None, timeout=None): run the "
        "test body under hazard's interleaving explorer",
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, Any, None]:
    """Wrap a marked test's call in explore() (or replay())."""
    marker = pyfuncitem.get_closest_marker("explore")
    if marker is None:
        yield
        return
    fn = pyfuncitem.obj
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}

    def body() -> None:
        fn(**kwargs)

    token = pyfuncitem.config.getoption(_OPTION)
    original = pyfuncitem.obj

    def run_it(**_: object) -> None:
        if token:
            replay(body, token)
            return
        hint = f"pytest {pyfuncitem.nodeid!r} {_OPTION} {{token}}"
        result = explore(body, replay_hint=hint, **marker.kwargs)
        if result.failure is not None:
            raise ExplorationFailed(f"{result.summary()}\n\n{result.failure.report}") from None

    pyfuncitem.obj = run_it
    try:
        yield
    finally:
        pyfuncitem.obj = original

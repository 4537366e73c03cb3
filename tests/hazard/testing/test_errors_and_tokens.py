import io

import pytest
from rich.console import Console

from hazard import HazardError, HazardUsageError
from hazard.testing import explore, print_report
from hazard.testing._token import decode, encode
from tests.hazard.testing.conftest import lost_update


def test_the_error_root_cannot_be_raised_directly():
    with pytest.raises(TypeError, match="HazardError is abstract"):
        raise HazardError("nope")
    assert isinstance(HazardUsageError("bad"), ValueError)


def test_tokens_round_trip_and_reject_garbage():
    deviations = [(0, 1), (5, 2), (300, 0)]
    token = encode(deviations)
    assert token.startswith("hz1-")
    assert decode(token) == deviations
    assert decode(encode([])) == []
    with pytest.raises(HazardUsageError, match="not a replay token"):
        decode("abc")
    with pytest.raises(HazardUsageError, match="corrupt replay token"):
        decode("hz1-!!!!")
    with pytest.raises(ValueError, match="must increase"):
        encode([(3, 1), (3, 2)])


def test_report_renders_as_a_rich_table_on_a_terminal_and_as_text_otherwise():
    failure = explore(lost_update).failure
    assert failure is not None
    names = sorted({f"T{s.tid}" for s in failure.trace})
    terminal = Console(file=io.StringIO(), force_terminal=True, width=160, color_system=None)
    print_report(failure.trace, names, failure.report, terminal)
    shown = terminal.file.getvalue()  # type: ignore[attr-defined]
    assert "Failing schedule (> preemption, * conflicting access)" in shown
    assert "Replay token: hz1-" in shown
    plain = Console(file=io.StringIO(), force_terminal=False, width=160)
    print_report(failure.trace, names, failure.report, plain)
    assert plain.file.getvalue().startswith("Failing schedule:")  # type: ignore[attr-defined]

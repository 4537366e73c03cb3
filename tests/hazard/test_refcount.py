import threading

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from hazard import (
    REFCOUNT_MAX,
    REFCOUNT_SATURATED,
    Refcount,
    RefcountViolation,
    Violation,
    ViolationKind,
    set_refcount_reporter,
)


@pytest.fixture
def collected():
    seen: list[Violation] = []
    previous = set_refcount_reporter(seen.append)
    try:
        yield seen
    finally:
        set_refcount_reporter(previous)


def test_last_dec_and_test_is_true_once():
    r = Refcount(2)
    assert not r.dec_and_test()
    assert r.dec_and_test()
    assert r.read() == 0


def test_inc_not_zero_fails_at_zero_and_succeeds_above():
    r = Refcount(1)
    assert r.inc_not_zero()
    assert r.read() == 2
    dead = Refcount(0)
    assert not dead.inc_not_zero()
    assert dead.read() == 0


def test_increment_from_zero_raises_add_uaf_with_callers_stack():
    r = Refcount(0, name="usblp")
    with pytest.raises(RefcountViolation) as info:
        r.inc()
    assert info.value.kind is ViolationKind.ADD_UAF
    assert "addition on 0; use-after-free." in str(info.value)
    assert "(usblp, was 0)" in str(info.value)
    assert any("test_increment_from_zero" in frame for frame in info.value.violation.stack)
    assert r.read() == REFCOUNT_SATURATED


def test_underflow_raises_sub_uaf_and_saturates():
    r = Refcount(1)
    assert r.dec_and_test()
    with pytest.raises(RefcountViolation) as info:
        r.dec_and_test()
    assert info.value.kind is ViolationKind.SUB_UAF
    assert r.read() == REFCOUNT_SATURATED


def test_overflow_saturates_and_stays_saturated(collected):
    r = Refcount(REFCOUNT_MAX)
    r.inc()
    assert [v.kind for v in collected] == [ViolationKind.ADD_OVF]
    assert r.read() == REFCOUNT_SATURATED
    assert not r.dec_and_test()  # a saturated count never reaches zero: it leaks
    assert r.read() == REFCOUNT_SATURATED
    assert [v.kind for v in collected][-1] is ViolationKind.SUB_UAF


def test_inc_not_zero_overflow_saturates(collected):
    r = Refcount(REFCOUNT_MAX)
    assert r.inc_not_zero()
    assert [v.kind for v in collected] == [ViolationKind.ADD_NOT_ZERO_OVF]
    assert r.read() == REFCOUNT_SATURATED


def test_dec_to_zero_is_a_leak_violation():
    r = Refcount(1)
    with pytest.raises(RefcountViolation) as info:
        r.dec()
    assert info.value.kind is ViolationKind.DEC_LEAK


def test_bad_initial_values_rejected_with_exact_messages():
    with pytest.raises(ValueError, match=r"refcount value must be in 0\.\.2147483647, not -1"):
        Refcount(-1)
    with pytest.raises(TypeError, match="refcount value must be an int, not float"):
        Refcount(1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="refcount reporter must be callable"):
        set_refcount_reporter(3)  # type: ignore[arg-type]


def test_reporter_none_restores_raising(collected):
    set_refcount_reporter(None)
    with pytest.raises(RefcountViolation):
        Refcount(0).inc()


def test_exactly_one_thread_sees_the_last_reference():
    for _ in range(50):
        r = Refcount(8)
        winners: list[int] = []
        barrier = threading.Barrier(8)

        def drop(i: int, r: Refcount = r, winners: list[int] = winners) -> None:
            barrier.wait()
            if r.dec_and_test():
                winners.append(i)

        threads = [threading.Thread(target=drop, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(winners) == 1


class RefcountModel(RuleBasedStateMachine):
    """Refcount against a model of include/linux/refcount.h (violations collected)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Violation] = []
        self.previous = set_refcount_reporter(self.seen.append)
        self.r = Refcount(1)
        self.model = 1
        self.expected: list[ViolationKind] = []

    def teardown(self) -> None:
        set_refcount_reporter(self.previous)

    def _saturate(self, kind: ViolationKind) -> None:
        self.model = REFCOUNT_SATURATED
        self.expected.append(kind)

    @rule()
    def inc(self) -> None:
        self.r.inc()
        old = self.model
        if old == 0:
            self._saturate(ViolationKind.ADD_UAF)
        elif old < 0 or old + 1 > REFCOUNT_MAX:
            self._saturate(ViolationKind.ADD_OVF)
        else:
            self.model += 1

    @rule()
    def inc_not_zero(self) -> None:
        got = self.r.inc_not_zero()
        old = self.model
        assert got == (old != 0)
        if old == 0:
            return
        if old < 0 or old + 1 > REFCOUNT_MAX:
            self._saturate(ViolationKind.ADD_NOT_ZERO_OVF)
        else:
            self.model += 1

    @rule()
    def dec_and_test(self) -> None:
        last = self.r.dec_and_test()
        old = self.model
        assert last == (old == 1)
        if old <= 0:
            self._saturate(ViolationKind.SUB_UAF)
        else:
            self.model -= 1

    @rule()
    def dec(self) -> None:
        self.r.dec()
        old = self.model
        if old <= 1:
            self._saturate(ViolationKind.DEC_LEAK)
        else:
            self.model -= 1

    @precondition(lambda self: self.model >= 0)
    @rule(value=st.sampled_from([0, 1, 2, REFCOUNT_MAX - 1, REFCOUNT_MAX]))
    def set(self, value: int) -> None:
        self.r.set(value)
        self.model = value

    @invariant()
    def agrees_with_model(self) -> None:
        assert self.r.read() == self.model
        assert [v.kind for v in self.seen] == self.expected


TestRefcountModel = RefcountModel.TestCase

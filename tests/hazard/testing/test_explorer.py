"""The explorer finds classic bugs and every mutation of hazard's algorithms, minimally."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hazard import AtomicInt, Condition, Lock, RefcountViolation, UseAfterFree, _hazptr
from hazard.testing import (
    Deadlock,
    ExploreResult,
    LockOrderInversion,
    ReplayDrift,
    explore,
    replay,
    spawn,
)
from tests import models
from tests.hazard.testing.conftest import lost_update


def assert_found(
    result: ExploreResult, body: Callable[[], None], kind: type[BaseException]
) -> None:
    """The search failed with exactly ``kind``, and its token replays that failure."""
    assert result.failure is not None, "the explorer missed the bug"
    assert type(result.failure.exception) is kind
    with pytest.raises(kind):
        replay(body, result.failure.token)


def test_lost_update_is_found_with_one_preemption_and_replays():
    result = explore(lost_update)
    assert not result.ok
    failure = result.failure
    assert failure is not None
    assert type(failure.exception) is AssertionError
    assert failure.preemptions == 1
    assert "Replay token: hz1-" in failure.report
    with pytest.raises(AssertionError, match="lost update"):
        replay(lost_update, failure.token)
    assert explore(lost_update).failure.token == failure.token  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", ["pct", "random"])
def test_sampling_modes_find_the_lost_update(mode):
    result = explore(lost_update, mode=mode, runs=500, seed=1)
    assert result.failure is not None
    assert type(result.failure.exception) is AssertionError


def test_atomic_increment_explores_completely():
    def body() -> None:
        n = AtomicInt(0)
        threads = [spawn(n.fetch_add, 1) for _ in range(3)]
        for t in threads:
            t.join()
        assert n.load() == 3

    result = explore(body, preemption_bound=2)
    assert result.ok and result.complete
    print(result.summary())


def test_lock_order_inversion_is_reported_before_any_deadlock_happens():
    def body() -> None:
        a, b = Lock("A"), Lock("B")

        def one() -> None:
            with a, b:
                pass

        def two() -> None:
            with b, a:
                pass

        threads = [spawn(one), spawn(two)]
        for t in threads:
            t.join()

    result = explore(body)
    assert result.failure is not None
    assert type(result.failure.exception) is LockOrderInversion
    text = str(result.failure.exception)
    assert "Lock A -> Lock B" in text and "Lock B -> Lock A" in text
    assert "in one" in text and "in two" in text  # both orders' stacks


def test_missed_wake_up_is_a_deadlock():
    def body() -> None:
        ready = AtomicInt(0)
        cond = Condition(name="cond")

        def waiter() -> None:
            if not ready.load():  # checked without the lock: the wake-up can slip in here
                with cond:
                    cond.wait()

        def notifier() -> None:
            ready.store(1)
            with cond:
                cond.notify()

        threads = [spawn(waiter), spawn(notifier)]
        for t in threads:
            t.join()

    result = explore(body)
    assert result.failure is not None
    assert type(result.failure.exception) is Deadlock


@pytest.mark.parametrize(
    "name,body",
    [
        ("protect+synchronize", models.protect_model("synchronize")),
        ("protect+retire", models.protect_model("retire")),
        ("hpref", models.hpref_model()),
    ],
)
def test_correct_algorithms_explore_completely_at_bound_2(name, body):
    result = explore(body, preemption_bound=2)
    print(name, result.summary())
    assert result.ok, result.failure.report if result.failure else ""
    assert result.complete


@pytest.mark.parametrize("broken", [models.publish_without_reload, models.publish_after_reload])
def test_protect_mutations_are_use_after_free(monkeypatch, broken):
    monkeypatch.setattr(_hazptr, "publish", broken)
    body = models.protect_model("synchronize")
    assert_found(explore(body, preemption_bound=2), body, UseAfterFree)


def test_synchronize_before_unpublish_is_use_after_free():
    body = models.synchronize_first_model()
    assert_found(explore(body, preemption_bound=2), body, UseAfterFree)


def test_hpref_plain_inc_is_a_refcount_violation():
    body = models.hpref_model(models.PlainIncHpref)
    assert_found(explore(body, preemption_bound=2), body, RefcountViolation)


def test_hpref_free_before_synchronize_is_use_after_free():
    body = models.hpref_model(models.FreeBeforeSynchronizeHpref)
    assert_found(explore(body, preemption_bound=2), body, UseAfterFree)


def test_replay_of_a_token_that_no_longer_fits_says_where():
    def single() -> None:
        AtomicInt(0).load()

    with pytest.raises(ReplayDrift, match="decision"):
        replay(single, "hz1-aqba")


def test_lock_orders_are_compared_by_lock_class_across_schedules():
    # Locks are made anew in every schedule; two made on different lines and always taken
    # in one order must never be reported, however their ids fall from run to run.
    def body() -> None:
        outer = Lock("outer")
        inner = Lock("inner")

        def nested() -> None:
            with outer, inner:
                pass

        threads = [spawn(nested), spawn(nested)]
        for t in threads:
            t.join()

    result = explore(body, preemption_bound=2)
    assert result.ok and result.complete


def test_plain_threading_inside_the_body_is_controlled():
    import threading

    def body() -> None:
        n = AtomicInt(0)
        lock = threading.Lock()

        def inc() -> None:
            with lock:  # a controlled lock: the increment is atomic, no failure anywhere
                n.store(n.load() + 1)

        threads = [threading.Thread(target=inc) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert n.load() == 2

    result = explore(body, preemption_bound=2)
    assert result.ok and result.complete
    assert result.schedules > 1  # threading.Thread really ran under the explorer


def test_uncontrollable_primitives_fail_loudly():
    import threading

    from hazard.testing import UncontrolledThreadError

    def body() -> None:
        threading.RLock()

    result = explore(body)
    assert result.failure is not None
    assert type(result.failure.exception) is UncontrolledThreadError


def test_a_body_that_changes_between_runs_is_reported_as_nondeterministic():
    from hazard.testing import NondeterminismError

    calls = [0]

    def body() -> None:
        calls[0] += 1  # state kept outside the body: the second run differs from the first
        n = AtomicInt(0)
        threads = [spawn(n.fetch_add, 1) for _ in range(2 if calls[0] == 1 else 3)]
        for t in threads:
            t.join()

    result = explore(body, shrink=False)
    assert result.failure is not None
    assert type(result.failure.exception) is NondeterminismError

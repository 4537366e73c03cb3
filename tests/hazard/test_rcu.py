"""Tests of hazard._rcu: read sections, grace periods, call_rcu and barrier."""

from __future__ import annotations

import random
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hazard import _checkpoint
from hazard._atomics import AtomicRef
from hazard._errors import HazardUsageError
from hazard._rcu import Rcu, RcuStatistics

WAIT = 5.0  # seconds: a bound on waits that only a hang would reach


@pytest.fixture
def rcu() -> Iterator[Rcu]:
    with Rcu("test") as domain:
        yield domain


def _exact(message: str) -> str:
    return f"^{re.escape(message)}$"


def _eventually(predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(1e-3)
    return True


def _start(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


# -- broken variants: the negative controls ----------------------------------------------------


class _NoWaitRcu(Rcu):
    """Counts a grace period without waiting for any reader."""

    def synchronize(self) -> None:
        self._grace_periods.fetch_add(1)


class _QuiescentRcu(Rcu):
    """Waits until no reader at all is inside, so it also waits for readers that came later."""

    def synchronize(self) -> None:
        attempt = 0
        while self.statistics().readers_active:
            _checkpoint.pause(attempt)
            attempt = min(attempt + 1, 24)


# -- the checks, written once so that the broken variants can be run through them -------------


def waits_for_preexisting_reader(domain: Rcu, hold: float = 0.05) -> bool:
    """Return whether synchronize() returned only after a reader already inside had left."""
    inside, leaving = threading.Event(), threading.Event()

    def reader() -> None:
        with domain.read():
            inside.set()
            time.sleep(hold)
            leaving.set()

    thread = _start(reader)
    assert inside.wait(WAIT)
    domain.synchronize()
    waited = leaving.is_set()
    thread.join(WAIT)
    return waited


def callback_waits_for_preexisting_reader(domain: Rcu, hold: float = 0.05) -> bool:
    """Return whether a callback queued while a reader was inside ran after it left."""
    inside, leaving = threading.Event(), threading.Event()
    seen: list[bool] = []

    def reader() -> None:
        with domain.read():
            inside.set()
            time.sleep(hold)
            leaving.set()

    def callback() -> None:
        seen.append(leaving.is_set())

    thread = _start(reader)
    assert inside.wait(WAIT)
    domain.call_rcu(callback)
    domain.barrier()
    thread.join(WAIT)
    assert len(seen) == 1
    return seen[0]


def returns_while_later_reader_inside(
    domain: Rcu, monkeypatch: pytest.MonkeyPatch, timeout: float = WAIT
) -> bool:
    """Return whether synchronize() returned while a reader that entered after it was inside.

    The later reader enters only once synchronize() is spinning on the earlier one (it has
    called pause()), so it certainly started after the grace period did.
    """
    spinning = threading.Event()
    real_pause = _checkpoint.pause

    def pause(attempt: int = 0) -> None:
        spinning.set()
        real_pause(attempt)

    monkeypatch.setattr(_checkpoint, "pause", pause)
    early_inside, early_release = threading.Event(), threading.Event()
    late_inside, late_release = threading.Event(), threading.Event()
    synced = threading.Event()

    def early() -> None:
        with domain.read():
            early_inside.set()
            early_release.wait(WAIT)

    def late() -> None:
        with domain.read():
            late_inside.set()
            late_release.wait(WAIT)

    def updater() -> None:
        domain.synchronize()
        synced.set()

    threads = [_start(early)]
    assert early_inside.wait(WAIT)
    threads.append(_start(updater))
    assert spinning.wait(WAIT)
    threads.append(_start(late))
    assert late_inside.wait(WAIT)
    early_release.set()
    returned = synced.wait(timeout) and not late_release.is_set()
    late_release.set()
    for thread in threads:
        thread.join(WAIT)
    return returned


# -- readers -----------------------------------------------------------------------------------


def test_read_sections_nest_and_only_the_outermost_unlock_ends_them(rcu: Rcu) -> None:
    rcu.read_lock()
    rcu.read_lock()
    with rcu.read():
        assert rcu.statistics().readers_active == 1
    rcu.read_unlock()
    assert rcu.read_lock_held()
    assert rcu.statistics().readers_active == 1
    rcu.read_unlock()
    assert not rcu.read_lock_held()
    assert rcu.statistics().readers_active == 0


@given(st.lists(st.booleans(), max_size=40))
def test_nesting_matches_a_depth_counter(ops: list[bool]) -> None:
    domain = Rcu("model")
    depth = 0
    for lock in ops:
        if lock:
            domain.read_lock()
            depth += 1
        elif depth == 0:
            with pytest.raises(HazardUsageError):
                domain.read_unlock()
        else:
            domain.read_unlock()
            depth -= 1
        assert domain.read_lock_held() == (depth > 0)
        assert domain.statistics().readers_active == (depth > 0)
    for _ in range(depth):
        domain.read_unlock()


def test_read_block_ends_its_section_when_it_raises(rcu: Rcu) -> None:
    with pytest.raises(KeyError), rcu.read():
        raise KeyError("x")
    assert not rcu.read_lock_held()
    assert rcu.statistics().readers_active == 0


def test_dereference_returns_what_the_pointer_holds(rcu: Rcu) -> None:
    obj = object()
    src = AtomicRef(obj)
    with rcu.read():
        assert rcu.dereference(src) is obj


def test_read_sections_of_two_domains_are_independent() -> None:
    first, second = Rcu("first"), Rcu("second")
    with first.read():
        assert not second.read_lock_held()
        second.synchronize()  # not inside a section of *this* domain: no deadlock, no error


# -- grace periods -----------------------------------------------------------------------------


def test_synchronize_waits_for_a_reader_that_was_inside(rcu: Rcu) -> None:
    assert waits_for_preexisting_reader(rcu)


def test_negative_control_a_synchronize_that_does_not_wait_is_caught() -> None:
    assert not waits_for_preexisting_reader(_NoWaitRcu("broken"))


def test_synchronize_does_not_wait_for_a_reader_that_started_after_it(
    rcu: Rcu, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert returns_while_later_reader_inside(rcu, monkeypatch)


def test_negative_control_a_synchronize_that_waits_for_later_readers_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert not returns_while_later_reader_inside(_QuiescentRcu("broken"), monkeypatch, timeout=0.2)


def test_synchronize_with_no_reader_inside_takes_microseconds(rcu: Rcu) -> None:
    with rcu.read():
        pass  # registered but idle: its counter must be read, and is even
    start = time.perf_counter()
    for _ in range(1000):
        rcu.synchronize()
    assert (time.perf_counter() - start) / 1000 < 1e-4
    assert rcu.statistics().grace_periods == 1000


def test_synchronize_returns_within_milliseconds_after_the_reader_leaves(rcu: Rcu) -> None:
    latencies = []
    for _ in range(5):
        inside = threading.Event()
        left_at: list[float] = []

        def reader() -> None:
            with rcu.read():
                inside.set()
                time.sleep(0.03)
                left_at.append(time.perf_counter())

        thread = _start(reader)
        assert inside.wait(WAIT)
        rcu.synchronize()
        latencies.append(time.perf_counter() - left_at[0])
        thread.join(WAIT)
    assert statistics.median(latencies) < 0.02


def test_thread_exit_unregisters_its_reader(rcu: Rcu) -> None:
    def reader() -> None:
        with rcu.read():
            pass

    thread = _start(reader)
    thread.join(WAIT)
    assert _eventually(lambda: rcu.statistics().readers_registered == 0)
    assert rcu.statistics().readers_abandoned == 0


def test_thread_exiting_inside_a_section_does_not_block_grace_periods(rcu: Rcu) -> None:
    thread = _start(rcu.read_lock)
    thread.join(WAIT)
    assert _eventually(lambda: rcu.statistics().readers_registered == 0)
    updater = _start(rcu.synchronize)
    updater.join(WAIT)
    assert not updater.is_alive()
    s = rcu.statistics()
    assert (s.readers_abandoned, s.readers_active) == (1, 0)


# -- call_rcu and barrier ----------------------------------------------------------------------


def test_call_rcu_runs_only_after_a_reader_that_was_inside_leaves(rcu: Rcu) -> None:
    assert callback_waits_for_preexisting_reader(rcu)


def test_negative_control_a_callback_without_grace_period_is_caught() -> None:
    with _NoWaitRcu("broken") as broken:
        assert not callback_waits_for_preexisting_reader(broken)


def test_callbacks_run_in_order_on_a_daemon_helper_started_lazily() -> None:
    name = "lazy"
    helper_name = f"{name} call_rcu helper"
    ran_on: list[threading.Thread] = []
    order: list[int] = []

    def helpers() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == helper_name]

    with Rcu(name) as domain:
        assert helpers() == []
        for i in range(10):

            def callback(i: int = i) -> None:
                ran_on.append(threading.current_thread())
                order.append(i)

            domain.call_rcu(callback)
        domain.barrier()
        (helper,) = helpers()
        assert helper.daemon
        assert set(ran_on) == {helper}
        assert order == list(range(10))
    assert not helper.is_alive()


def test_barrier_waits_for_every_callback_queued_before_it(rcu: Rcu) -> None:
    ran: list[int] = []
    producers = []
    for p in range(4):

        def produce(p: int = p) -> None:
            for i in range(10):

                def slow(i: int = i) -> None:
                    time.sleep(1e-3)
                    ran.append(p * 100 + i)

                rcu.call_rcu(slow)
            rcu.barrier()
            # Everything this producer queued has run, in its order.
            mine = [x for x in ran if x // 100 == p]
            assert mine == [p * 100 + i for i in range(10)]

        producers.append(_start(produce))
    for thread in producers:
        thread.join(WAIT)
    rcu.barrier()
    assert len(ran) == 40
    s = rcu.statistics()
    assert (s.callbacks_queued, s.callbacks_pending, s.callbacks_invoked) == (40, 0, 40)


def test_barrier_without_callbacks_returns_at_once(rcu: Rcu) -> None:
    rcu.barrier()
    assert rcu.statistics().grace_periods == 0


def test_barrier_reraises_a_callback_error_with_its_type(rcu: Rcu) -> None:
    ran: list[str] = []

    def fail(message: str) -> Callable[[], None]:
        def callback() -> None:
            raise LookupError(message)

        return callback

    rcu.call_rcu(fail("first"))
    rcu.call_rcu(fail("second"))
    rcu.call_rcu(lambda: ran.append("after"))
    with pytest.raises(LookupError, match="^first$"):
        rcu.barrier()
    assert ran == ["after"]  # the helper survived the errors
    assert [str(e) for e in rcu.errors] == ["first", "second"]
    rcu.barrier()  # each error is raised by one barrier only
    rcu.call_rcu(fail("third"))
    with pytest.raises(LookupError, match="^third$"):
        rcu.barrier()
    assert rcu.statistics().callbacks_failed == 3


def test_callbacks_may_wait_for_a_grace_period_but_not_for_the_helper(rcu: Rcu) -> None:
    rcu.call_rcu(rcu.synchronize)
    rcu.call_rcu(rcu.barrier)
    rcu.call_rcu(rcu.close)
    with pytest.raises(HazardUsageError) as excinfo:
        rcu.barrier()
    assert str(excinfo.value) == (
        "rcu_barrier() from a call_rcu callback: it would wait for itself forever"
    )
    assert [str(e) for e in rcu.errors] == [
        "rcu_barrier() from a call_rcu callback: it would wait for itself forever",
        "close() from a call_rcu callback: it would wait for itself forever",
    ]


def test_callback_left_inside_a_section_is_reported_and_does_not_wedge_the_helper(
    rcu: Rcu,
) -> None:
    rcu.call_rcu(rcu.read_lock)
    with pytest.raises(HazardUsageError, match="returned inside a read-side critical section"):
        rcu.barrier()
    ran: list[int] = []
    rcu.call_rcu(lambda: ran.append(1))
    rcu.barrier()
    assert ran == [1]
    assert rcu.statistics().readers_active == 0


def test_close_runs_pending_callbacks_and_is_idempotent() -> None:
    domain = Rcu("closing")
    inside = threading.Event()
    ran: list[str] = []

    def reader() -> None:
        with domain.read():
            inside.set()
            time.sleep(0.03)

    thread = _start(reader)
    assert inside.wait(WAIT)
    domain.call_rcu(lambda: ran.append("drained"))
    domain.close()
    assert ran == ["drained"]
    domain.close()
    domain.barrier()
    domain.synchronize()  # grace periods outlive the helper
    thread.join(WAIT)


def test_leaving_the_with_block_closes_the_domain() -> None:
    with Rcu("scoped") as domain:
        domain.call_rcu(lambda: None)
    with pytest.raises(HazardUsageError, match=_exact("call_rcu() on scoped, which is closed")):
        domain.call_rcu(lambda: None)


# -- misuse ------------------------------------------------------------------------------------

_IN_SECTION = "inside a read-side critical section: it would wait for itself forever"


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (Rcu.synchronize, f"synchronize_rcu() {_IN_SECTION}"),
        (Rcu.barrier, f"rcu_barrier() {_IN_SECTION}"),
        (Rcu.close, f"close() {_IN_SECTION}"),
    ],
    ids=["synchronize", "barrier", "close"],
)
def test_waiting_inside_a_read_section_is_a_usage_error(
    rcu: Rcu, action: Callable[[Rcu], None], message: str
) -> None:
    with rcu.read(), pytest.raises(HazardUsageError, match=_exact(message)):
        action(rcu)


def test_read_unlock_without_read_lock_is_a_usage_error(rcu: Rcu) -> None:
    message = _exact("rcu_read_unlock() without a matching rcu_read_lock()")
    with pytest.raises(HazardUsageError, match=message):
        rcu.read_unlock()  # this thread never read: no reader record yet
    with rcu.read():
        pass
    with pytest.raises(HazardUsageError, match=message):
        rcu.read_unlock()
    section = rcu.read()
    with pytest.raises(HazardUsageError, match=message):
        section.__exit__(None, None, None)


def test_dereference_outside_a_read_section_is_a_usage_error(rcu: Rcu) -> None:
    message = _exact("rcu_dereference() outside a read-side critical section")
    src = AtomicRef(1)
    with pytest.raises(HazardUsageError, match=message):
        rcu.dereference(src)
    with rcu.read():
        pass
    with pytest.raises(HazardUsageError, match=message):
        rcu.dereference(src)


def test_dereference_of_something_else_than_an_atomic_ref_is_a_type_error(rcu: Rcu) -> None:
    with (
        rcu.read(),
        pytest.raises(TypeError, match=_exact("rcu_dereference() needs an AtomicRef, not list")),
    ):
        rcu.dereference([1])  # type: ignore[arg-type]


def test_call_rcu_with_a_non_callable_is_a_type_error(rcu: Rcu) -> None:
    with pytest.raises(TypeError, match=_exact("call_rcu callback must be callable, not int")):
        rcu.call_rcu(3)  # type: ignore[arg-type]
    assert rcu.statistics().callbacks_queued == 0


# -- introspection -----------------------------------------------------------------------------


def test_statistics_and_repr_show_readers_grace_periods_and_callbacks(rcu: Rcu) -> None:
    assert rcu.statistics() == RcuStatistics(0, 0, 0, 0, 0, 0, 0, 0)
    rcu.call_rcu(lambda: None)
    rcu.barrier()
    rcu.read_lock()
    s = rcu.statistics()
    assert s.readers_registered == s.readers_active == 1
    assert s.grace_periods == 1
    assert (s.callbacks_queued, s.callbacks_pending, s.callbacks_invoked) == (1, 0, 1)
    assert repr(rcu) == "<Rcu test readers=1/1 grace_periods=1 pending=0>"
    rcu.read_unlock()


# -- stress ------------------------------------------------------------------------------------


class _Node:
    __slots__ = ("reclaimed", "serial")

    def __init__(self, serial: int) -> None:
        self.serial = serial
        self.reclaimed = False

    def reclaim(self) -> None:
        self.reclaimed = True


@pytest.mark.stress
def test_stress_readers_never_see_a_reclaimed_object() -> None:
    seed = 20240611
    master = random.Random(seed)
    duration = 1.0
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        with Rcu("stress") as domain:
            src = AtomicRef(_Node(0))
            retired: list[_Node] = []
            stop = threading.Event()
            violations: list[str] = []
            reads = [0] * 4

            def reader(k: int, rng: random.Random) -> None:
                while not stop.is_set():
                    with domain.read():
                        node = domain.dereference(src)
                        if rng.random() < 0.3:
                            with domain.read():  # nested: must not end the outer section
                                pass
                        for _ in range(rng.randrange(4)):
                            time.sleep(0)  # let the updater run while we hold the node
                        if node.reclaimed:
                            violations.append(f"reader {k} saw node {node.serial} reclaimed")
                    reads[k] += 1

            def updater(rng: random.Random) -> None:
                serial = 0
                while not stop.is_set():
                    serial += 1
                    old = src.exchange(_Node(serial))
                    retired.append(old)
                    if rng.random() < 0.2:
                        domain.synchronize()
                        old.reclaim()
                    else:
                        domain.call_rcu(old.reclaim)
                    if serial % 200 == 0:
                        domain.barrier()  # keep the callback queue bounded

            threads = [
                threading.Thread(target=reader, args=(k, random.Random(master.random())))
                for k in range(len(reads))
            ]
            threads.append(threading.Thread(target=updater, args=(random.Random(seed),)))
            for thread in threads:
                thread.start()
            time.sleep(duration)
            stop.set()
            for thread in threads:
                thread.join(WAIT)
            domain.barrier()
            assert violations == []
            assert all(reads), reads
            assert len(retired) > 10
            assert all(node.reclaimed for node in retired)
            assert not src.load().reclaimed
            s = domain.statistics()
            assert (s.callbacks_pending, s.callbacks_failed, s.readers_active) == (0, 0, 0)
    finally:
        sys.setswitchinterval(old_interval)

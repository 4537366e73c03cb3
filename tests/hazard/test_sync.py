import threading

import pytest

from hazard import HazardUsageError, Lock, _checkpoint
from hazard._checkpoint import Access
from tests.stubs import NullScheduler


def test_lock_excludes_and_reports_state():
    lock = Lock("dev")
    assert repr(lock) == "<Lock dev free>"
    with lock:
        assert lock.locked()
        assert lock.held_by_me()
        assert "held by" in repr(lock)
        assert not acquire_elsewhere(lock)
    assert not lock.locked()
    assert acquire_elsewhere(lock)


def acquire_elsewhere(lock: Lock) -> bool:
    result: list[bool] = []

    def try_it() -> None:
        got = lock.acquire(blocking=False)
        result.append(got)
        if got:
            lock.release()

    t = threading.Thread(target=try_it)
    t.start()
    t.join()
    return result[0]


def test_release_of_a_lock_not_held_fails_loudly():
    lock = Lock("dev")
    with pytest.raises(HazardUsageError, match="dev: release\\(\\) of a Lock this thread"):
        lock.release()


def test_release_by_another_thread_fails_loudly():
    lock = Lock("dev")
    lock.acquire()
    errors: list[BaseException] = []

    def release() -> None:
        try:
            lock.release()
        except HazardUsageError as exc:
            errors.append(exc)

    t = threading.Thread(target=release)
    t.start()
    t.join()
    assert len(errors) == 1
    lock.release()


def test_recursive_acquire_fails_loudly_instead_of_deadlocking():
    lock = Lock("dev")
    with lock, pytest.raises(HazardUsageError, match="already holds"):
        lock.acquire()


def test_lock_counts_under_contention():
    lock = Lock()
    box = [0]

    def work() -> None:
        for _ in range(5000):
            with lock:
                box[0] += 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert box[0] == 20000


class PauseCounting(NullScheduler):
    def __init__(self, lock: Lock) -> None:
        self.lock = lock
        self.calls: list[tuple[Access, str]] = []
        self.pauses = 0

    def checkpoint(self, obj: object, access: Access, op: str) -> None:
        self.calls.append((access, op))

    def pause(self, timeout: float | None = None) -> bool:
        # Stand-in for an explorer switching to the holder: release on its behalf.
        self.pauses += 1
        self.lock._owner = None
        self.lock._lock.release()
        return True


def test_lock_under_scheduler_pauses_instead_of_blocking():
    lock = Lock()
    lock._lock.acquire()
    lock._owner = -1  # held by a thread that the stand-in scheduler "switches to"
    sched = PauseCounting(lock)
    _checkpoint.install(sched)
    try:
        assert not lock.acquire(blocking=False)
        assert lock.acquire()
        lock.release()
    finally:
        _checkpoint.uninstall(sched)
    assert sched.pauses == 1
    assert sched.calls == [
        (Access.READ, "acquire"),
        (Access.READ, "acquire"),
        (Access.READ, "acquire"),
        (Access.WRITE, "release"),
    ]

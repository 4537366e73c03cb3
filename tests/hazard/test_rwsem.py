import threading

import pytest

from hazard import AtomicInt, HazardUsageError, RwSemaphore
from hazard.testing import Deadlock, explore, spawn


def exclusion_body(sem_factory=RwSemaphore) -> None:
    sem = sem_factory("minor_rwsem")
    readers = AtomicInt(0)
    writers = AtomicInt(0)

    def reader() -> None:
        with sem.read():
            readers.fetch_add(1)
            assert writers.load() == 0, "a reader ran beside the writer"
            readers.fetch_add(-1)

    def writer() -> None:
        with sem.write():
            writers.fetch_add(1)
            assert readers.load() == 0, "the writer ran beside a reader"
            writers.fetch_add(-1)

    threads = [spawn(reader), spawn(reader), spawn(writer)]
    for t in threads:
        t.join()


def test_readers_and_the_writer_exclude_each_other_in_every_schedule():
    result = explore(exclusion_body, preemption_bound=2)
    print(result.summary())
    assert result.ok and result.complete


class WriterIgnoresReaders(RwSemaphore):
    """Negative control: down_write only waits for another writer."""

    def down_write(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: not self._writer)
            self._writer = True


def test_a_writer_that_ignores_readers_is_caught():
    result = explore(lambda: exclusion_body(WriterIgnoresReaders), preemption_bound=2)
    assert result.failure is not None
    assert type(result.failure.exception) is AssertionError


def test_a_reader_that_reenters_while_a_writer_waits_deadlocks():
    def body() -> None:
        sem = RwSemaphore()
        inside = AtomicInt(0)

        def reader() -> None:
            with sem.read():
                inside.store(1)
                while sem._writers_waiting == 0 and inside.load() == 1:
                    inside.store(2)  # give the writer a chance to queue (a checkpoint)
                with sem.read():  # the kernel forbids this too
                    pass

        def writer() -> None:
            while not inside.load():
                from hazard.testing import yield_now

                yield_now()
            with sem.write():
                pass

        threads = [spawn(reader), spawn(writer)]
        for t in threads:
            t.join()

    result = explore(body, preemption_bound=2)
    assert result.failure is not None
    assert type(result.failure.exception) is Deadlock


def test_misuse_fails_loudly():
    sem = RwSemaphore("s")
    with pytest.raises(HazardUsageError, match="s: up_read\\(\\) without a read hold"):
        sem.up_read()
    with pytest.raises(HazardUsageError, match="s: up_write\\(\\) without the write hold"):
        sem.up_write()


def test_real_threads_share_reads_and_exclude_the_writer():
    sem = RwSemaphore()
    both_inside = threading.Barrier(2, timeout=5)
    order: list[str] = []

    def reader() -> None:
        with sem.read():
            both_inside.wait()  # two readers hold it at once, or this times out
            order.append("read")

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with sem.write():
        order.append("write")
    assert order == ["read", "read", "write"]
    assert "0 readers" in repr(sem)

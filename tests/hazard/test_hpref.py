import threading

import pytest

from hazard import AtomicRef, HazardDomain, Hpref, Refcount


class Node:
    def __init__(self) -> None:
        self.refcount = Refcount(1)


def make() -> tuple[Hpref[Node], list[Node]]:
    released: list[Node] = []
    return Hpref(HazardDomain(), released.append), released


def test_get_takes_a_reference_and_releases_the_slot():
    hpref, _ = make()
    node = Node()
    src: AtomicRef[Node | None] = AtomicRef(node)
    assert hpref.get(src) is node
    assert node.refcount.read() == 2
    assert hpref.domain.statistics().protected == 0


def test_get_returns_none_for_an_unpublished_or_dying_object():
    hpref, _ = make()
    assert hpref.get(AtomicRef(None)) is None
    dying = Node()
    dying.refcount.set(0)
    assert hpref.get(AtomicRef(dying)) is None
    assert dying.refcount.read() == 0


def test_last_put_releases_once_and_earlier_puts_do_not():
    hpref, released = make()
    node = Node()
    src: AtomicRef[Node | None] = AtomicRef(node)
    got = hpref.get(src)
    assert got is node
    src.store(None)
    assert not hpref.put(node)  # the publisher's reference
    assert released == []
    assert hpref.put(got)
    assert released == [node]


def test_borrow_puts_on_exit_even_on_error():
    hpref, released = make()
    node = Node()
    src: AtomicRef[Node | None] = AtomicRef(node)
    with pytest.raises(KeyError), hpref.borrow(src) as got:
        assert got is node
        assert node.refcount.read() == 2
        raise KeyError("boom")
    assert node.refcount.read() == 1
    with hpref.borrow(AtomicRef(None)) as nothing:
        assert nothing is None
    assert released == []


def test_last_put_waits_for_a_reader_still_holding_the_hazard_pointer():
    hpref, released = make()
    node = Node()
    src: AtomicRef[Node | None] = AtomicRef(node)
    inside, leave = threading.Event(), threading.Event()

    def reader() -> None:
        with hpref.domain.protect(src):
            inside.set()
            leave.wait()
            assert released == []  # still protected: must not be released yet

    t = threading.Thread(target=reader)
    t.start()
    inside.wait()
    src.store(None)
    threading.Timer(0.05, leave.set).start()
    assert hpref.put(node)
    t.join()
    assert released == [node]


def test_constructor_validates():
    with pytest.raises(TypeError, match="domain must be a HazardDomain, not NoneType"):
        Hpref(None, print)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="release must be callable, not int"):
        Hpref(HazardDomain(), 1)  # type: ignore[arg-type]


def test_get_and_put_validate_their_arguments():
    hpref, _ = make()
    with pytest.raises(TypeError, match="get\\(\\) needs an AtomicRef, not list"):
        hpref.get([])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="put\\(None\\)"):
        hpref.put(None)  # type: ignore[arg-type]

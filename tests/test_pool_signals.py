"""Signals during acquire/release (issue 12, defect 5): an exception raised by a signal handler
(as Ctrl-C raises KeyboardInterrupt) at any point of thousands of acquire/release cycles leaves
the pool exact: nothing counted in use that nobody holds, every buffer acquirable again, no
warning and no error from a destructor."""

from __future__ import annotations

import random
import signal
import threading
from collections.abc import Iterator
from types import FrameType

import pytest

from devalloc.heaps.memfd import MemfdHeap
from devalloc.pool import BufferPool, PooledBuffer

SIZE = 4096
COUNT = 3
OWNERS = ("a", "b", None, "a", 7, b"c")


class Tick(BaseException):
    """What the timer's handler raises: a BaseException, like KeyboardInterrupt."""


def _raise_tick(signum: int, frame: FrameType | None) -> None:
    raise Tick


@pytest.fixture(autouse=True)
def _no_fd_leak(no_fd_leak: None) -> None:
    """Every test proves it leaves no fd open."""


@pytest.fixture
def ticking() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers run in the main thread only")
    previous = signal.signal(signal.SIGALRM, _raise_tick)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _cycle(pool: BufferPool, owner: object, delay: float, *, write: bool) -> bool:
    """One acquire (+ write) + release with a one-shot timer armed ``delay`` s ahead; whatever
    the caller got is released after the timer is off. True if the tick interrupted it."""
    lent: PooledBuffer | None = None
    interrupted = False
    try:
        signal.setitimer(signal.ITIMER_REAL, delay)
        lent = pool.acquire(timeout=2, owner=owner)  # type: ignore[arg-type]
        if write:
            with lent.cpu_access("w") as view:
                view[0] = 1
        lent.release()
        signal.setitimer(signal.ITIMER_REAL, 0)
    except Tick:
        interrupted = True  # one-shot: it has fired, no other tick can come
    if lent is not None:
        lent.release()  # idempotent: what the caller got is the caller's to give back
    return interrupted


def _check_exact(pool: BufferPool) -> None:
    stats = pool.stats()
    assert (stats.in_use, stats.free, stats.count) == (0, COUNT, COUNT), stats
    assert stats.acquires == stats.releases
    held = [pool.acquire(timeout=0, owner="check") for _ in range(COUNT)]  # all acquirable
    for lent in held:
        with lent.cpu_access("r") as view:
            assert view[0] == 0  # another owner's write never shows
        lent.release()
    assert pool.stats().in_use == 0


@pytest.mark.parametrize("write", [False, True])
def test_thousands_of_interrupted_cycles_leave_the_pool_exact(ticking: None, write: bool) -> None:
    rng = random.Random(5)
    with BufferPool(MemfdHeap(), SIZE, COUNT, name="signals") as pool:
        # Calibrate: the ticks are spread over one cycle's length, so they land everywhere in
        # acquire and release (and in the test's own lines between them).
        for i in range(200):
            _cycle(pool, OWNERS[i % len(OWNERS)], 0, write=write)
        interrupted = 0
        for i in range(4000):
            delay = rng.uniform(1e-6, 40e-6)
            interrupted += _cycle(pool, OWNERS[i % len(OWNERS)], delay, write=write)
        assert interrupted >= 400, f"only {interrupted} cycles were interrupted"
        _check_exact(pool)


def test_interrupted_waits_leave_the_pool_exact(ticking: None) -> None:
    """A waiter interrupted in its wait (the pool empty) leaves no stale waiter behind."""
    rng = random.Random(9)
    with BufferPool(MemfdHeap(), SIZE, COUNT, name="waits") as pool:
        held = [pool.acquire(owner="holder") for _ in range(COUNT)]
        interrupted = 0
        for _ in range(300):
            try:
                signal.setitimer(signal.ITIMER_REAL, rng.uniform(1e-6, 2e-4))
                pool.acquire(timeout=1).release()
                raise AssertionError("acquired from an empty pool")
            except Tick:
                interrupted += 1
        assert interrupted == 300
        stats = pool.stats()
        assert (stats.in_use, stats.free, stats.timeouts) == (COUNT, 0, 0)
        assert not pool._waiters
        for lent in held:
            lent.release()
        _check_exact(pool)

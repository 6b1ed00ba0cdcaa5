"""Host tests of BufferPool over the memfd heap: blocking, timeouts, growth and its bound, many
threads, zeroing between owners, stats, closing with buffers lent, forgotten buffers."""

from __future__ import annotations

import errno
import random
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

import devalloc.limits
import devalloc.pool
from devalloc.buffer import Buffer
from devalloc.errors import (
    AllocationLimitError,
    ClosedResourceError,
    OutOfMemoryError,
    TimedOutError,
    UsageError,
)
from devalloc.formats.layout import LayoutRules, layout
from devalloc.heaps.memfd import MemfdHeap
from devalloc.pool import BufferPool, PooledBuffer

from .conftest import assert_fd_closed

SIZE = 8192


@pytest.fixture(autouse=True)
def _no_fd_leak(no_fd_leak: None) -> None:
    """Every pool test proves it leaves no fd open."""


@pytest.fixture
def pool() -> Iterator[BufferPool]:
    with BufferPool(MemfdHeap(), SIZE, 2, name="frames") as p:
        yield p


def _write(buf: PooledBuffer, data: bytes) -> None:
    with buf.cpu_access("w") as view:
        view[: len(data)] = data


def _ident(buf: PooledBuffer) -> int:
    """Which of the pool's buffers ``buf`` is (its inode: info() does not hand the fd out)."""
    return buf.info().inode


def _read(buf: PooledBuffer, n: int) -> bytes:
    with buf.cpu_access("r") as view:
        return bytes(view[:n])


def test_preallocates_and_lends(pool: BufferPool) -> None:
    stats = pool.stats()
    assert (stats.count, stats.free, stats.in_use, stats.max_count) == (2, 2, 0, 2)
    a = pool.acquire()
    b = pool.acquire()
    assert _ident(a) != _ident(b)
    assert a.size == b.size == SIZE
    assert a.fileno() == a.buffer.fileno()
    assert a.info().size == SIZE
    stats = pool.stats()
    assert (stats.free, stats.in_use, stats.peak_in_use, stats.acquires) == (0, 2, 2, 2)
    a.release()
    b.release()
    stats = pool.stats()
    assert (stats.free, stats.in_use, stats.releases, stats.misses) == (2, 0, 2, 0)


def test_the_last_returned_buffer_is_lent_first(pool: BufferPool) -> None:
    a = pool.acquire()
    buf = _ident(a)
    a.release()
    with pool.acquire() as again:
        assert _ident(again) == buf


def test_release_is_idempotent_and_use_after_release_fails(pool: BufferPool) -> None:
    lent = pool.acquire()
    lent.release()
    lent.release()
    lent.close()
    assert lent.closed
    assert pool.stats().releases == 1
    for use in (lent.fileno, lent.export, lent.info, lambda: lent.cpu_access("r")):
        with pytest.raises(ClosedResourceError, match="pool frames"):
            use()
    with pytest.raises(ClosedResourceError), lent:
        pass


def test_context_manager_releases(pool: BufferPool) -> None:
    with pool.acquire() as lent:
        assert pool.stats().in_use == 1
    assert lent.closed
    assert pool.stats().in_use == 0


def test_export_is_an_owned_fd(pool: BufferPool) -> None:
    with pool.acquire() as lent, lent.export() as exported:
        assert exported.fileno() != lent.fileno()


def test_acquire_waits_for_a_release(pool: BufferPool) -> None:
    held = [pool.acquire(), pool.acquire()]
    first = _ident(held[0])

    def release_later() -> None:
        time.sleep(0.2)
        held[0].release()

    thread = threading.Thread(target=release_later)
    thread.start()
    started = time.monotonic()
    with pool.acquire(timeout=10) as lent:
        waited = time.monotonic() - started
        assert _ident(lent) == first
    thread.join()
    held[1].release()
    assert waited >= 0.15
    stats = pool.stats()
    assert (stats.waits, stats.timeouts, stats.acquires) == (1, 0, 3)


def test_a_release_wakes_a_waiter(monkeypatch: pytest.MonkeyPatch, pool: BufferPool) -> None:
    # With the GC-return polling slice made long, only the release's notify can wake the waiter
    # within the test's time: the release path must notify when someone waits.
    monkeypatch.setattr(devalloc.pool, "_WAIT_SLICE", 60.0)
    held = [pool.acquire(), pool.acquire()]
    got: list[float] = []

    def wait_for_one() -> None:
        started = time.monotonic()
        with pool.acquire(timeout=60):
            got.append(time.monotonic() - started)

    thread = threading.Thread(target=wait_for_one)
    thread.start()
    while pool.stats().waits == 0:  # counted under the pool lock before the waiter waits
        time.sleep(0.01)
    held[0].release()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the waiter was not woken by the release"
    held[1].release()
    assert got
    assert got[0] < 30


def test_timeout_is_a_typed_error_naming_the_pool(pool: BufferPool) -> None:
    held = [pool.acquire(), pool.acquire()]
    started = time.monotonic()
    with pytest.raises(TimedOutError) as info:
        pool.acquire(timeout=0.1)
    assert time.monotonic() - started >= 0.09
    err = info.value
    assert err.errno == errno.ETIMEDOUT
    assert isinstance(err, TimeoutError)
    assert "buffer pool frames" in str(err)
    assert "within 0.1 s" in str(err)
    assert "2 of 2 in use" in str(err)
    with pytest.raises(TimedOutError, match="within 0 s"):
        pool.acquire(timeout=0)
    stats = pool.stats()
    assert (stats.timeouts, stats.waits) == (2, 1)
    for lent in held:
        lent.release()


@pytest.mark.parametrize("bad", [-1, float("nan"), "1", True])
def test_bad_timeout(pool: BufferPool, bad: object) -> None:
    with pytest.raises(UsageError, match="timeout"):
        pool.acquire(timeout=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [["a"], True, 1.0, ("a",), object()])
def test_an_owner_is_a_str_bytes_or_int(pool: BufferPool, bad: object) -> None:
    with pytest.raises(UsageError, match="owner must be None, a str, bytes or an int"):
        pool.acquire(owner=bad)  # type: ignore[arg-type]
    assert pool.stats().in_use == 0


def test_growth_up_to_the_bound() -> None:
    with BufferPool(MemfdHeap(), SIZE, 1, grow=True, max_count=3) as pool:
        lent = [pool.acquire(timeout=0) for _ in range(3)]
        stats = pool.stats()
        assert (stats.count, stats.misses, stats.peak_in_use) == (3, 2, 3)
        with pytest.raises(TimedOutError, match="3 of 3 in use"):
            pool.acquire(timeout=0.05)
        for item in lent:
            item.release()
        assert pool.stats().free == 3


def test_no_growth_without_grow() -> None:
    with BufferPool(MemfdHeap(), SIZE, 1) as pool, pool.acquire():
        with pytest.raises(TimedOutError, match="grow=False"):
            pool.acquire(timeout=0)
        assert pool.stats().count == 1


def test_a_growing_pool_may_start_empty() -> None:
    with BufferPool(MemfdHeap(), SIZE, 0, grow=True, max_count=1) as pool:
        assert pool.stats().count == 0
        with pool.acquire():
            assert pool.stats().misses == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": 0, "count": 1}, "size must be an integer of at least 1"),
        ({"size": SIZE, "count": -1}, "count must be"),
        ({"size": SIZE, "count": 0}, "can never lend"),
        ({"size": SIZE, "count": 1, "grow": True}, "needs max_count"),
        ({"size": SIZE, "count": 2, "grow": True, "max_count": 1}, "max_count must be"),
        ({"size": SIZE, "count": 1, "max_count": 4}, "pass grow=True"),
        ({"size": SIZE, "count": 1, "grow": "yes"}, "grow is True or False"),
        ({"size": SIZE, "count": 1, "zero_on_reuse": "sometimes"}, "zero_on_reuse must be"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        BufferPool(MemfdHeap(), **kwargs)  # type: ignore[arg-type]


def test_not_a_heap() -> None:
    with pytest.raises(UsageError, match="not a heap"):
        BufferPool(object(), SIZE, 1)  # type: ignore[arg-type]


def test_a_function_is_a_heap_too() -> None:
    sizes: list[int] = []

    def allocate(size: int) -> Buffer:
        sizes.append(size)
        return MemfdHeap().allocate(size)

    with BufferPool(allocate, SIZE, 2, name="fn") as pool:
        assert sizes == [SIZE, SIZE]
        assert pool.name == "fn"


def test_a_heap_giving_too_little_is_refused() -> None:
    with pytest.raises(UsageError, match="not a Buffer of at least 16384 bytes"):
        BufferPool(lambda size: MemfdHeap().allocate(4096), 16384, 1)


def test_a_failing_heap_leaves_nothing_open() -> None:
    made: list[Buffer] = []

    def allocate(size: int) -> Buffer:
        if len(made) == 2:
            raise OutOfMemoryError(errno.ENOMEM, "test heap is full")
        made.append(MemfdHeap().allocate(size))
        return made[-1]

    with pytest.raises(OutOfMemoryError, match="test heap is full"):
        BufferPool(allocate, SIZE, 4)
    assert all(buf.closed for buf in made)


# -- zeroing between owners ------------------------------------------------------------------


def test_same_owner_keeps_data_other_owner_gets_zeros() -> None:
    with BufferPool(MemfdHeap(), SIZE, 1) as pool:
        with pool.acquire(owner="a") as lent:
            _write(lent, b"secret")
        with pool.acquire(owner="a") as lent:
            assert _read(lent, 6) == b"secret"  # same trust domain: no zeroing
        assert pool.stats().zeroings == 0
        with pool.acquire(owner="b") as lent:
            assert _read(lent, 6) == bytes(6)
            with lent.cpu_access("r") as view:
                assert view.tobytes() == bytes(SIZE)
            _write(lent, b"b-data")
        stats = pool.stats()
        assert (stats.zeroings, stats.zeroed_bytes) == (1, SIZE)
        assert stats.zero_ns > 0


def test_unknown_owner_always_gets_zeros() -> None:
    with BufferPool(MemfdHeap(), SIZE, 1) as pool:
        for _ in range(3):
            with pool.acquire() as lent:
                assert _read(lent, 4) == bytes(4)
                _write(lent, b"junk")
        assert pool.stats().zeroings == 2  # the first one was fresh from the heap


def test_always_zeroes_even_for_the_same_owner() -> None:
    with BufferPool(MemfdHeap(), SIZE, 1, zero_on_reuse="always") as pool:
        with pool.acquire(owner="a") as lent:
            _write(lent, b"old")
        with pool.acquire(owner="a") as lent:
            assert _read(lent, 3) == bytes(3)
        assert pool.stats().zeroings == 1


def test_never_zeroes() -> None:
    with BufferPool(MemfdHeap(), SIZE, 1, zero_on_reuse="never") as pool:
        with pool.acquire(owner="a") as lent:
            _write(lent, b"kept")
        with pool.acquire(owner="b") as lent:
            assert _read(lent, 4) == b"kept"
        assert pool.stats().zeroings == 0


# -- threads ---------------------------------------------------------------------------------


def test_many_threads_never_share_a_buffer_and_never_exceed_the_bound() -> None:
    threads, rounds, bound = 16, 150, 5
    holders: dict[int, int] = {}
    guard = threading.Lock()
    errors: list[BaseException] = []
    with BufferPool(MemfdHeap(), SIZE, 2, grow=True, max_count=bound) as pool:

        def work(me: int) -> None:
            rng = random.Random(me)
            try:
                for _ in range(rounds):
                    owner = rng.choice(["x", "y", None])
                    with pool.acquire(timeout=30, owner=owner) as lent:
                        key = _ident(lent)
                        with guard:
                            assert key not in holders, "a buffer was lent twice at once"
                            holders[key] = me
                            assert len(holders) <= bound
                        with lent.cpu_access("rw") as view:
                            view[0] = me
                            time.sleep(0)
                            assert view[0] == me  # nobody else writes into a lent buffer
                        with guard:
                            del holders[key]
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        assert not errors, errors
        stats = pool.stats()
        assert stats.acquires == stats.releases == threads * rounds
        assert stats.in_use == 0
        assert 2 <= stats.count <= bound
        assert stats.peak_in_use <= bound
        assert stats.free == stats.count


# -- closing and forgetting ------------------------------------------------------------------


def test_close_with_buffers_lent() -> None:
    pool = BufferPool(MemfdHeap(), SIZE, 2)
    lent = pool.acquire()
    free_fd = pool.acquire()
    free_fd_number = free_fd.fileno()
    free_fd.release()
    lent_fd = lent.fileno()
    pool.close()
    pool.close()
    assert pool.closed
    assert_fd_closed(free_fd_number)  # free buffers close at once
    _write(lent, b"still usable")  # a lent one stays usable until released
    with pytest.raises(ClosedResourceError, match="is closed"):
        pool.acquire(timeout=0)
    lent.release()
    assert_fd_closed(lent_fd)
    assert pool.stats().count == 0


def test_close_wakes_waiters() -> None:
    pool = BufferPool(MemfdHeap(), SIZE, 1, name="waiters")
    lent = pool.acquire()
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            pool.acquire(timeout=30)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.1)
    pool.close()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], ClosedResourceError)
    assert "waiters" in str(outcome[0])
    lent.release()


def test_entering_a_closed_pool_fails() -> None:
    pool = BufferPool(MemfdHeap(), SIZE, 1)
    pool.close()
    with pytest.raises(ClosedResourceError), pool:
        pass


def test_a_forgotten_buffer_returns_to_the_pool() -> None:
    with BufferPool(MemfdHeap(), SIZE, 1, name="forgetful") as pool:
        lent: PooledBuffer | None = pool.acquire(owner="a")
        assert lent is not None
        _write(lent, b"left behind")
        with pytest.warns(ResourceWarning, match="pool forgetful was never released"):
            del lent  # no reference cycle: collected at once
        stats = pool.stats()
        assert (stats.in_use, stats.free, stats.releases) == (0, 1, 1)
        with pool.acquire(owner="a") as again:
            assert _read(again, 11) == b"left behind"  # still owner a's data
        with pool.acquire(owner="b") as again:
            assert _read(again, 11) == bytes(11)


def test_a_buffer_forgotten_after_close_is_closed() -> None:
    pool = BufferPool(MemfdHeap(), SIZE, 1)
    lent: PooledBuffer | None = pool.acquire()
    assert lent is not None
    fd = lent.fileno()
    pool.close()
    with pytest.warns(ResourceWarning, match="never released"):
        del lent
    assert_fd_closed(fd)


def test_a_buffer_forgotten_while_the_pool_is_busy_is_adopted_later() -> None:
    """The GC may collect a lent buffer while another thread holds the pool's lock: it is
    queued, and taken back by the next pool operation."""
    with BufferPool(MemfdHeap(), SIZE, 1) as pool:
        lent: PooledBuffer | None = pool.acquire()
        assert lent is not None
        with pool._lock, pytest.warns(ResourceWarning):
            del lent
        stats = pool.stats()
        assert (stats.in_use, stats.free) == (0, 1)


# -- plans -----------------------------------------------------------------------------------


def test_from_plan_single_buffer() -> None:
    plan = SimpleNamespace(layout=layout("NV12", 64, 48))
    assert plan.layout.size == 64 * 48 * 3 // 2
    with BufferPool.from_plan(plan, MemfdHeap(), 2, name="nv12") as pool:
        assert pool.size == 64 * 48 * 3 // 2
        assert pool.stats().count == 2


def test_from_plan_refuses_multi_buffer_and_opaque_layouts() -> None:
    multi = SimpleNamespace(layout=layout("NV12", 64, 48, rules=LayoutRules(multi_buffer=True)))
    with pytest.raises(UsageError, match="2 buffers per image"):
        BufferPool.from_plan(multi, MemfdHeap(), 1)
    opaque = SimpleNamespace(layout=SimpleNamespace(size=None, buffer_sizes=()))
    with pytest.raises(UsageError, match="opaque"):
        BufferPool.from_plan(opaque, MemfdHeap(), 1)
    with pytest.raises(UsageError, match="no layout"):
        BufferPool.from_plan(object(), MemfdHeap(), 1)


def test_a_pool_beyond_the_caps_is_refused_before_allocating() -> None:
    made: list[int] = []

    def heap(size: int) -> Buffer:
        made.append(size)
        return MemfdHeap().allocate(size)

    with pytest.raises(AllocationLimitError, match="buffer pool huge") as info:
        BufferPool(heap, 1 << 40, 2, name="huge")
    assert isinstance(info.value, UsageError)
    assert made == []
    total = devalloc.limits.max_total()
    with pytest.raises(AllocationLimitError, match="buffer pool bound"):
        BufferPool(heap, SIZE, 1, grow=True, max_count=total // SIZE + 1, name="bound")
    assert made == []

"""Pool isolation on the host (memfd): nothing a lend handed out outlives the release, a buffer
something else still holds never goes to another owner, and owners are compared by type and
value (issue 12, defect 2)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devalloc.errors import ClosedResourceError, UsageError
from devalloc.heaps.memfd import MemfdHeap
from devalloc.pool import BufferPool, PooledBuffer

from .conftest import assert_fd_closed

SIZE = 8192
SECRET = b"owner A's secret"
B_DATA = b"owner B's data!!"


@pytest.fixture(autouse=True)
def _no_fd_leak(no_fd_leak: None) -> None:
    """Every test proves it leaves no fd open."""


@pytest.fixture
def pool() -> Iterator[BufferPool]:
    with BufferPool(MemfdHeap(), SIZE, 1, grow=True, max_count=2, name="iso") as p:
        yield p


def _write(lent: PooledBuffer, data: bytes) -> None:
    with lent.cpu_access("w") as view:
        view[: len(data)] = data


def _read(lent: PooledBuffer, n: int) -> bytes:
    with lent.cpu_access("r") as view:
        return bytes(view[:n])


def test_a_released_buffers_buffer_is_dead(pool: BufferPool) -> None:
    lent = pool.acquire(owner="A")
    _write(lent, SECRET)
    stale = lent.buffer
    assert lent.buffer is stale  # one Buffer for the whole lend
    early = stale.cpu_access("r")  # made before the release, entered after
    lent.release()
    assert stale.closed
    with pool.acquire(owner="B") as other:
        _write(other, B_DATA)
        for use in (
            lambda: stale.cpu_access("r").__enter__(),
            early.__enter__,
            stale.fileno,
            stale.export,
            stale.info,
        ):
            with pytest.raises(ClosedResourceError, match="released to its pool"):
                use()
        assert _read(other, len(B_DATA)) == B_DATA
    stats = pool.stats()
    assert (stats.evictions, stats.in_use, stats.count) == (0, 0, 1)  # nothing escaped: reused


def test_closing_the_lent_buffer_only_revokes_it(pool: BufferPool) -> None:
    with pool.acquire(owner="A") as lent:
        fd = lent.fileno()
        first = lent.buffer
        first.close()
        assert first.closed
        assert not lent.closed
        assert lent.buffer is not first
        assert _read(lent, 4) == bytes(4)  # the lend goes on, through a new Buffer
    with pool.acquire(owner="A") as again:
        assert again.fileno() == fd  # the pool's fd was not closed by it


def test_a_view_kept_past_its_block_is_never_lent_to_another_owner(pool: BufferPool) -> None:
    view_kept_past_its_block_evicts(pool)


def view_kept_past_its_block_evicts(pool: BufferPool) -> None:
    """A view kept past its lend evicts the buffer at an owner change (kernel tier too)."""
    lent = pool.acquire(owner="A")
    with lent.cpu_access("rw") as view:
        view[: len(SECRET)] = SECRET
        kept = view[:]
    inode = lent.info().inode
    lent.release()
    with pool.acquire(owner="B") as other:
        assert other.info().inode != inode  # evicted and replaced
        assert _read(other, len(SECRET)) == bytes(len(SECRET))
        _write(other, B_DATA)
        kept[: len(SECRET)] = b"A writes again!!"  # into the evicted buffer only
        assert _read(other, len(B_DATA)) == B_DATA
    assert bytes(kept[: len(B_DATA)]) != B_DATA
    stats = pool.stats()
    assert (stats.evictions, stats.misses, stats.count) == (1, 1, 1)
    kept.release()


def test_the_mapping_object_kept_is_an_escape_too(pool: BufferPool) -> None:
    lent = pool.acquire(owner="A")
    with lent.cpu_access("rw") as view:
        mapping = view.obj  # the mmap itself: readable and writable at any time
    lent.release()
    with pool.acquire(owner="B"):
        pass
    assert pool.stats().evictions == 1
    del mapping


def test_the_same_owner_may_keep_views(pool: BufferPool) -> None:
    lent = pool.acquire(owner="A")
    with lent.cpu_access("rw") as view:
        view[:4] = b"keep"
        kept = view[:4]
    inode = lent.info().inode
    lent.release()
    with pool.acquire(owner="A") as again:
        assert again.info().inode == inode
    kept.release()
    with pool.acquire(owner="B") as other:  # the view is gone: nothing holds it any more
        assert other.info().inode == inode
        assert _read(other, 4) == bytes(4)
    assert pool.stats().evictions == 0


@pytest.mark.parametrize("hand_out", ["fileno", "export", "buffer.fileno"])
def test_a_memfd_whose_fd_was_handed_out_is_evicted(pool: BufferPool, hand_out: str) -> None:
    lent = pool.acquire(owner="A")
    inode = lent.info().inode
    if hand_out == "export":
        lent.export().close()
    elif hand_out == "fileno":
        lent.fileno()
    else:
        lent.buffer.fileno()
    lent.release()
    with pool.acquire(owner="A") as again:  # the same owner: kept
        assert again.info().inode == inode
    with pool.acquire(owner="B") as other:  # memfd has no reference count: never shared
        assert other.info().inode != inode
    assert pool.stats().evictions == 1


def test_an_fd_that_never_left_the_pool_needs_no_eviction(pool: BufferPool) -> None:
    for owner in ("A", "B", "A", None):
        with pool.acquire(owner=owner) as lent:
            _write(lent, SECRET)
            lent.info()  # reads fdinfo without handing the fd out
    stats = pool.stats()
    assert (stats.evictions, stats.zeroings, stats.count) == (0, 3, 1)


@pytest.mark.parametrize(
    ("first", "second"),
    [(1, "1"), ("1", b"1"), (0, b""), (1, 2), ("a", "b")],
)
def test_owners_differ_by_type_and_value(pool: BufferPool, first: object, second: object) -> None:
    with pool.acquire(owner=first) as lent:  # type: ignore[arg-type]
        _write(lent, SECRET)
    with pool.acquire(owner=second) as lent:  # type: ignore[arg-type]
        assert _read(lent, len(SECRET)) == bytes(len(SECRET))


@pytest.mark.parametrize("alias", [True, 1.0, 1 + 0j])
def test_an_owner_that_equals_an_int_is_refused(pool: BufferPool, alias: object) -> None:
    with pool.acquire(owner=1) as lent:
        _write(lent, SECRET)
    with pytest.raises(UsageError, match="compared by type and value"):
        pool.acquire(owner=alias)  # type: ignore[arg-type]
    assert pool.stats().in_use == 0


def test_a_str_subclass_cannot_pose_as_an_owner(pool: BufferPool) -> None:
    class Anyone(str):
        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = str.__hash__

    with pytest.raises(UsageError, match="owner must be"):
        pool.acquire(owner=Anyone("A"))


def test_a_forgotten_lend_revokes_its_buffer(pool: BufferPool) -> None:
    lent: PooledBuffer | None = pool.acquire(owner="A")
    assert lent is not None
    stale = lent.buffer
    with pytest.warns(ResourceWarning, match="never released"):
        del lent  # no reference cycle: collected at once
    assert stale.closed
    with pytest.raises(ClosedResourceError):
        stale.cpu_access("r").__enter__()


def test_an_evicted_buffer_is_closed() -> None:
    with BufferPool(MemfdHeap(), SIZE, 2) as pool:  # no replacement to reuse the fd number
        lent = pool.acquire(owner="A")
        fd = lent.fileno()
        lent.release()
        with pool.acquire(owner="B") as other:
            assert other.fileno() != fd
        assert_fd_closed(fd)
        assert (pool.stats().evictions, pool.stats().count) == (1, 1)

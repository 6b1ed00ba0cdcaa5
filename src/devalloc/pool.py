"""BufferPool: preallocated buffers handed out and taken back in O(1), zeroed between owners.

Example:
    >>> from devalloc.heaps.memfd import MemfdHeap
    >>> with BufferPool(MemfdHeap(), 4096, 2, name="frames") as pool:
    ...     with pool.acquire(owner="decoder") as buf:
    ...         with buf.cpu_access("w") as view:
    ...             view[:4] = b"abcd"
    ...     with pool.acquire(owner="display") as buf, buf.cpu_access("r") as view:
    ...         bytes(view[:4])  # another owner: the pool zeroed it first
    ...     pool.stats().zeroings
    b'\\x00\\x00\\x00\\x00'
    1

A pool allocates ``count`` buffers of ``size`` bytes from a heap (anything with
``allocate(size) -> Buffer``: a dma-heap, a :class:`~devalloc.heaps.carveout.Carveout`, the memfd
heap) when it is made. :meth:`BufferPool.acquire` hands one out as a :class:`PooledBuffer` (a
deque pop under a lock: O(1)); it blocks up to ``timeout`` seconds when none is free, and raises
:class:`~devalloc.errors.TimedOutError` (ETIMEDOUT) naming the pool when that passes. With
``grow=True`` an empty pool allocates another buffer instead of waiting, up to ``max_count``.
Buffers come back with :meth:`PooledBuffer.release` (or the ``with`` block, or ``close()``);
releasing twice is harmless (idempotent, like every ``close()`` in devalloc), and any other use
of a released PooledBuffer raises :class:`~devalloc.errors.ClosedResourceError`. A PooledBuffer
that is never released is returned to the pool by the garbage collector, with a ResourceWarning
(it keeps its owner: the data in it is still that owner's); after :meth:`BufferPool.close` it is
closed instead. The pool's state is guarded by one lock; the GC's returns never wait for it (they
are queued and taken in by the next pool operation, or by a waiter within 0.25 s).

**Zeroing between owners (trust domains).** The kernel zeroes every buffer a heap allocates, so a
client never sees another client's data; a pool recycles buffers and must not weaken that. An
*owner* is any hashable token for a trust domain (a client id, a process, a session). With the
default ``zero_on_reuse="on-owner-change"`` a returned buffer is zeroed (through
``cpu_access("w")``, so caches are maintained) before it goes to a different owner; ``owner=None``
(the default) is an unknown owner that never matches, so anonymous acquisitions always get zeroed
buffers. ``"always"`` zeroes every reuse, ``"never"`` none (for a single trust domain). Zeroing
is the only part of ``acquire`` whose cost grows with the size; it is counted in the stats.

On an owner change the pool also asks the kernel whether anything else still holds the dma-buf:
``count`` in its fdinfo (every fd, mmap and device import) is compared with the count the pool
recorded when it got the buffer (its own fd, its CPU mapping, which the pool makes at once, and a
carveout's pin). A buffer still held elsewhere (an ``export()``, a device import, an fd passed to
another process) cannot be isolated from its previous owner, so it is *evicted*: the pool closes
its own fd, forgets the buffer and allocates a replacement when needed (``evictions``,
``misses``). Keeping imports alive across acquisitions by the same owner (a display that keeps its
framebuffers) is fine. memfd buffers have no such count, so exports of them cannot be detected.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Literal

from ._fd import FdResource
from .buffer import AccessMode, Buffer, DmaBufInfo
from .errors import ClosedResourceError, UsageError, error_from_errno
from .heaps.carveout import Allocates, dmabuf_file_count, fill_zero, heap_label

ZeroPolicy = Literal["on-owner-change", "always", "never"]
_ZERO_POLICIES: tuple[ZeroPolicy, ...] = ("on-owner-change", "always", "never")
#: The longest a waiter sleeps before looking again for buffers the GC returned.
_WAIT_SLICE = 0.25
_pool_numbers = itertools.count(1)
_new_object = object.__new__


class _Nobody:
    """The previous owner of a buffer nobody has had yet."""


_NOBODY = _Nobody()


@dataclass(eq=False)
class _Slot:
    buffer: Buffer
    owner: Hashable = _NOBODY
    dirty: bool = False  # handed out since it was allocated or zeroed
    # The kernel's reference count of the dma-buf when only the pool held it (its fd, its CPU
    # mapping, a carveout's pin); None when it cannot be read (memfd buffers).
    base_refs: int | None = None


@dataclass(frozen=True)
class PoolStats:
    """Counters and the state of a pool at one moment.

    Attributes:
        name: the pool's name.
        size: bytes per buffer.
        count: buffers the pool owns now.
        max_count: the most it may own.
        free: buffers ready to be acquired.
        in_use: buffers acquired and not released.
        peak_in_use: the most ever in use at once.
        acquires: successful acquisitions.
        releases: releases (including the garbage collector's).
        waits: acquisitions that had to wait.
        timeouts: acquisitions that gave up (TimedOutError).
        misses: buffers allocated after the pool was made (growth or replacement).
        evictions: buffers dropped because another reference still held them at an owner change.
        zeroings: buffers zeroed before reuse.
        zeroed_bytes: bytes zeroed before reuse.
        zero_ns: nanoseconds spent zeroing.
    """

    name: str
    size: int
    count: int
    max_count: int
    free: int
    in_use: int
    peak_in_use: int
    acquires: int
    releases: int
    waits: int
    timeouts: int
    misses: int
    evictions: int
    zeroings: int
    zeroed_bytes: int
    zero_ns: int


class PooledBuffer:
    """A buffer lent by a :class:`BufferPool` (a wrapper around the pool's Buffer, not a copy).

    Use it like a Buffer (``fileno()``, ``cpu_access()``, ``export()``, ``info()``, ``size``, or
    :attr:`buffer` for APIs that take a Buffer), then :meth:`release` it, or use it as a context
    manager. After release every use raises ClosedResourceError; release again is a no-op.

    Attributes:
        pool: the pool it came from.
        owner: the owner token it was acquired for.
        size: bytes of the buffer (at least the pool's size: heaps round up to pages).
    """

    # Lent at acquisition rate: no instance dict, and a __del__ safety net rather than a
    # weakref.finalize (which alone cost more than a Lock + deque round trip, see bench/). Made
    # only by BufferPool.acquire, which sets the fields itself.
    __slots__ = ("_slot", "owner", "pool", "size")

    pool: BufferPool
    owner: Hashable | None
    size: int
    _slot: _Slot | None

    def __del__(self) -> None:
        slot = self._slot
        if slot is not None:
            self._slot = None
            self.pool._return_forgotten(slot)

    @property
    def buffer(self) -> Buffer:
        """The pool's Buffer, borrowed: do not close it (release this object instead)."""
        slot = self._slot
        if slot is None:
            raise ClosedResourceError(
                f"a buffer of pool {self.pool.name} was used after it was released"
            )
        return slot.buffer

    @property
    def closed(self) -> bool:
        """True once released."""
        return self._slot is None

    def fileno(self) -> int:
        """The dma-buf fd, borrowed (valid until release)."""
        return self.buffer.fileno()

    def cpu_access(self, mode: AccessMode = "rw") -> AbstractContextManager[memoryview]:
        """CPU access to the buffer (see :meth:`devalloc.buffer.Buffer.cpu_access`)."""
        return self.buffer.cpu_access(mode)

    def export(self) -> FdResource:
        """A new fd for the buffer. An export still open when the buffer goes to another owner
        makes the pool evict the buffer rather than share it."""
        return self.buffer.export()

    def info(self) -> DmaBufInfo:
        """The kernel's view of the dma-buf (fdinfo)."""
        return self.buffer.info()

    def release(self) -> None:
        """Give the buffer back to the pool. Idempotent."""
        slot = self._slot
        if slot is None:
            return
        self._slot = None
        pool = self.pool
        with pool._lock:
            if pool._orphans or pool._closed:
                pool._adopt_orphans()
                pool._give_back(slot)
                return
            # BufferPool._give_back's common case, inlined (the hot path)
            pool._in_use -= 1
            pool._releases += 1
            pool._free.append(slot)
            if pool._waiting:
                pool._cond.notify()

    close = release

    def __enter__(self) -> PooledBuffer:
        self.fileno()  # refuse a released one
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if self._slot is None else f"fd={self._slot.buffer.fileno()}"
        return f"<PooledBuffer of pool {self.pool.name} owner={self.owner!r} {state}>"


def _check_count(label: str, value: object, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise UsageError(f"{label} must be an integer of at least {minimum}, not {value!r}")
    return value


class BufferPool:
    """A bounded, thread-safe pool of same-size buffers from one heap (see the module).

    Args:
        heap: a heap (``allocate(size) -> Buffer``) or such a function.
        size: bytes per buffer.
        count: buffers allocated now.
        grow: allocate more when none is free, up to ``max_count``, instead of waiting.
        max_count: the bound with ``grow`` (required then; at least ``count``).
        zero_on_reuse: ``"on-owner-change"`` (default), ``"always"`` or ``"never"``.
        name: for messages and stats.

    Raises:
        UsageError: a bad argument.
        KernelError: the heap could not allocate the first ``count`` buffers (none is kept).
    """

    def __init__(
        self,
        heap: Allocates | Callable[[int], Buffer],
        size: int,
        count: int,
        *,
        grow: bool = False,
        max_count: int | None = None,
        zero_on_reuse: ZeroPolicy = "on-owner-change",
        name: str | None = None,
    ) -> None:
        self.name = name if name is not None else f"{heap_label(heap)}#{next(_pool_numbers)}"
        self.size = _check_count(f"pool {self.name}: size", size, 1)
        _check_count(f"pool {self.name}: count", count, 0)
        if not isinstance(grow, bool):
            raise UsageError(f"pool {self.name}: grow is True or False, not {grow!r}")
        if grow:
            if max_count is None:
                raise UsageError(f"pool {self.name}: a growing pool needs max_count (its bound)")
            _check_count(f"pool {self.name}: max_count", max_count, max(count, 1))
        elif max_count not in (None, count):
            raise UsageError(
                f"pool {self.name}: max_count {max_count!r} differs from count {count} but the "
                "pool cannot grow (pass grow=True)"
            )
        elif count == 0:
            raise UsageError(f"pool {self.name}: count 0 without grow=True can never lend a buffer")
        if zero_on_reuse not in _ZERO_POLICIES:
            raise UsageError(
                f"pool {self.name}: zero_on_reuse must be one of {', '.join(_ZERO_POLICIES)}, "
                f"not {zero_on_reuse!r}"
            )
        allocate = getattr(heap, "allocate", None)
        if allocate is None:
            if not callable(heap):
                raise UsageError(f"pool {self.name}: {heap!r} is not a heap (no allocate())")
            allocate = heap
        self._allocate: Callable[[int], Buffer] = allocate
        self.heap = heap
        self.grow = grow
        self.max_count = max_count if max_count is not None else count
        self._zero_on_reuse: ZeroPolicy = zero_on_reuse
        self._zeroing = zero_on_reuse != "never"
        self._always = zero_on_reuse == "always"
        # One lock guards the state; ``with self._lock`` on the hot paths (the Condition's own
        # __enter__ is a Python-level call), the Condition only to wait and wake.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._waiting = 0  # acquirers inside cond.wait: release notifies only when there are any
        self._free: deque[_Slot] = deque()
        self._orphans: deque[_Slot] = deque()  # slots of PooledBuffers the GC collected
        self._closed = False
        self._count = 0  # buffers owned (free + lent + being prepared)
        self._allocating = 0
        self._in_use = self._peak = 0
        self._acquires = self._releases = self._waits = self._timeouts = 0
        self._misses = self._evictions = self._zeroings = 0
        self._zeroed_bytes = self._zero_ns = 0
        with contextlib.ExitStack() as stack:
            for _ in range(count):
                slot = self._new_slot()
                stack.callback(slot.buffer.close)
                self._free.append(slot)
            self._count = count
            stack.pop_all()

    @classmethod
    def from_plan(
        cls,
        plan: object,
        heap: Allocates | Callable[[int], Buffer],
        count: int,
        *,
        grow: bool = False,
        max_count: int | None = None,
        zero_on_reuse: ZeroPolicy = "on-owner-change",
        name: str | None = None,
    ) -> BufferPool:
        """A pool sized for a negotiated plan: ``plan.layout.buffer_sizes`` (one buffer) or
        ``plan.layout.size``.

        Raises:
            UsageError: the plan has no layout, an opaque one (no size), or several buffers per
                image (make one pool per buffer).
        """
        layout = getattr(plan, "layout", None)
        if layout is None:
            raise UsageError(f"{plan!r} has no layout to size a pool from")
        sizes = tuple(getattr(layout, "buffer_sizes", ()) or ())
        if len(sizes) > 1:
            raise UsageError(
                f"the plan's layout has {len(sizes)} buffers per image ({sizes}): make one pool "
                "per buffer"
            )
        size = sizes[0] if sizes else getattr(layout, "size", None)
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise UsageError(
                f"the plan's layout gives no buffer size (opaque layouts are sized by the "
                f"exporter): {size!r}"
            )
        return cls(
            heap,
            size,
            count,
            grow=grow,
            max_count=max_count,
            zero_on_reuse=zero_on_reuse,
            name=name,
        )

    def _new_slot(self) -> _Slot:
        """A buffer from the heap, mapped for the CPU once, with its reference count recorded."""
        buf = self._allocate(self.size)
        if not isinstance(buf, Buffer) or buf.size < self.size:
            with contextlib.suppress(Exception):
                buf.close()
            raise UsageError(
                f"pool {self.name}: the heap gave {buf!r}, not a Buffer of at least {self.size} "
                "bytes"
            )
        slot = _Slot(buf)
        try:
            if buf.is_dmabuf:
                # The CPU mapping holds references to the dma-buf (the mmap, and CPython's dup of
                # the fd): made now, the pool's own references stay the same from here on.
                with contextlib.suppress(UsageError), buf.cpu_access("r"):
                    pass
                slot.base_refs = dmabuf_file_count(buf.fileno())
        except BaseException:
            buf.close()
            raise
        return slot

    # -- acquire -----------------------------------------------------------------------------

    def acquire(self, timeout: float | None = None, owner: Hashable | None = None) -> PooledBuffer:
        """Take a buffer, waiting up to ``timeout`` seconds (None: as long as it takes; 0: not at
        all) when none is free.

        Args:
            timeout: seconds to wait at most.
            owner: the trust domain it is lent to (see the module); None is an unknown owner.

        Raises:
            TimedOutError: no buffer became free in time (ETIMEDOUT).
            ClosedResourceError: the pool is closed (also raised to those waiting when it closes).
            UsageError: a bad timeout or an unhashable owner.
            KernelError: a new buffer could not be allocated, or zeroing failed.
        """
        if timeout is not None and (
            not isinstance(timeout, int | float) or isinstance(timeout, bool) or not timeout >= 0
        ):
            raise UsageError(f"pool {self.name}: timeout must be None or >= 0, not {timeout!r}")
        try:
            hash(owner)
        except TypeError:
            raise UsageError(f"pool {self.name}: owner must be hashable, not {owner!r}") from None
        with self._lock:
            if self._free and not self._orphans and not self._closed:
                # The common case, in one short locked section (_take's first branch, inlined:
                # this is the hot path).
                slot = self._free.pop()  # the most recently returned: warm, often same owner
                self._acquires += 1
                in_use = self._in_use = self._in_use + 1
                if in_use > self._peak:
                    self._peak = in_use
            else:
                slot = None
        if slot is None or (
            # Reuse by the same owner, or with zeroing off, needs nothing more.
            slot.dirty
            and self._zeroing
            and (self._always or owner is None or slot.owner is _NOBODY or slot.owner != owner)
        ):
            slot = self._acquire_slow(slot, timeout, owner)
        slot.owner = owner if owner is not None else _NOBODY
        slot.dirty = True
        # The only place a PooledBuffer is made: its fields set directly (no __init__ call on
        # the hot path).
        lent = _new_object(PooledBuffer)  # PooledBuffer.__init__'s work, without the call
        lent.pool = self
        lent.owner = owner
        lent.size = slot.buffer.size
        lent._slot = slot
        return lent

    def _acquire_slow(
        self, slot: _Slot | None, timeout: float | None, owner: Hashable | None
    ) -> _Slot:
        """Everything but the common case: ``slot`` (taken and counted as lent) needs zeroing or
        an eviction check, or there was none free (wait, grow, or adopt the GC's returns).
        Returns a slot counted as lent and fit for ``owner``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if slot is None:
                slot = self._take(timeout, deadline)
            if slot is None:
                slot = self._grow()
            elif (
                slot.dirty
                and self._zeroing
                and (self._always or owner is None or slot.owner is _NOBODY or slot.owner != owner)
                and not self._prepare(slot, owner)
            ):
                slot = None
                continue  # evicted: take another
            return slot

    def _take(self, timeout: float | None, deadline: float | None) -> _Slot | None:
        """A free slot, counted as lent; or None when the caller must allocate one (counted as
        allocating; :meth:`_grow` counts it as lent)."""
        with self._lock:
            waited = False
            while True:
                self._adopt_orphans()
                if self._closed:
                    raise ClosedResourceError(f"buffer pool {self.name} is closed")
                if self._free:
                    slot = self._free.pop()
                    self._lent()
                    return slot
                # Below max_count: growth, or (either way) the replacement of an evicted buffer.
                if self._count + self._allocating < self.max_count:
                    self._allocating += 1
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    self._timeouts += 1
                    raise error_from_errno(
                        errno.ETIMEDOUT,
                        f"buffer pool {self.name}: no buffer free within {timeout} s "
                        f"({self._in_use} of {self.max_count} in use"
                        f"{'' if self.grow else ', grow=False'})",
                        operation="acquire",
                    )
                if not waited:
                    waited = True
                    self._waits += 1
                self._waiting += 1
                try:
                    self._cond.wait(
                        _WAIT_SLICE if remaining is None else min(remaining, _WAIT_SLICE)
                    )
                finally:
                    self._waiting -= 1

    def _lent(self) -> None:
        """Count one more buffer lent (lock held)."""
        self._acquires += 1
        self._in_use += 1
        self._peak = max(self._peak, self._in_use)

    def _unlent(self) -> None:
        """Undo :meth:`_lent` for a slot that could not be lent after all (lock held)."""
        self._acquires -= 1
        self._in_use -= 1

    def _grow(self) -> _Slot:
        try:
            slot = self._new_slot()
        except BaseException:
            with self._cond:
                self._allocating -= 1
                self._cond.notify()
            raise
        with self._cond:
            self._allocating -= 1
            if self._closed:
                slot.buffer.close()
                raise ClosedResourceError(f"buffer pool {self.name} is closed")
            self._count += 1
            self._misses += 1
            self._lent()
        return slot

    def _prepare(self, slot: _Slot, owner: Hashable | None) -> bool:
        """Make a reused (lent, dirty) slot fit for ``owner``: False if it had to be evicted
        instead (and is no longer counted as lent)."""
        if self.zero_on_reuse == "never":
            return True
        changed = owner is None or slot.owner is _NOBODY or slot.owner != owner
        try:
            if (
                changed
                and slot.base_refs is not None
                and dmabuf_file_count(slot.buffer.fileno()) > slot.base_refs
            ):
                self._evict(slot)  # someone else still holds it: it cannot change hands
                return False
            if changed or self.zero_on_reuse == "always":
                started = time.perf_counter_ns()
                with slot.buffer.cpu_access("w") as view:
                    fill_zero(view)
                elapsed = time.perf_counter_ns() - started
                slot.dirty = False
                with self._cond:
                    self._zeroings += 1
                    self._zeroed_bytes += slot.buffer.size
                    self._zero_ns += elapsed
        except BaseException:
            self._put_back(slot)
            raise
        return True

    def _evict(self, slot: _Slot) -> None:
        with self._cond:
            self._unlent()
            self._count -= 1
            self._evictions += 1
            slot.buffer.close()
            self._cond.notify()

    def _put_back(self, slot: _Slot) -> None:
        with self._cond:
            self._unlent()
            if self._closed:
                self._count -= 1
                slot.buffer.close()
            else:
                self._free.append(slot)
                self._cond.notify()

    # -- release -----------------------------------------------------------------------------

    def _give_back(self, slot: _Slot) -> None:
        """Take a lent slot back (lock held)."""
        self._in_use -= 1
        self._releases += 1
        if self._closed:
            self._count -= 1
            slot.buffer.close()
        else:
            self._free.append(slot)
            if self._waiting:
                self._cond.notify()

    def _return_forgotten(self, slot: _Slot) -> None:
        """The GC collected a PooledBuffer that was never released."""
        # This may run inside one of the pool's own locked sections: never block here.
        self._orphans.append(slot)
        if self._cond.acquire(blocking=False):
            try:
                self._adopt_orphans()
            finally:
                self._cond.release()
        warnings.warn(
            f"a buffer of pool {self.name} was never released; the garbage collector returned it",
            ResourceWarning,
            stacklevel=2,
        )

    def _adopt_orphans(self) -> None:
        while self._orphans:
            self._give_back(self._orphans.popleft())

    # -- state -------------------------------------------------------------------------------

    def stats(self) -> PoolStats:
        """The counters and the current state."""
        with self._cond:
            self._adopt_orphans()
            return PoolStats(
                name=self.name,
                size=self.size,
                count=self._count,
                max_count=self.max_count,
                free=len(self._free),
                in_use=self._in_use,
                peak_in_use=self._peak,
                acquires=self._acquires,
                releases=self._releases,
                waits=self._waits,
                timeouts=self._timeouts,
                misses=self._misses,
                evictions=self._evictions,
                zeroings=self._zeroings,
                zeroed_bytes=self._zeroed_bytes,
                zero_ns=self._zero_ns,
            )

    @property
    def zero_on_reuse(self) -> ZeroPolicy:
        """The zeroing policy, fixed when the pool was made."""
        return self._zero_on_reuse

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._closed

    def close(self) -> None:
        """Close every free buffer now and every lent one when it is released; wake waiters
        (they raise ClosedResourceError). Idempotent."""
        with self._cond:
            self._adopt_orphans()
            self._closed = True
            free, self._free = list(self._free), deque()
            self._count -= len(free)
            for slot in free:
                slot.buffer.close()
            self._cond.notify_all()

    def __enter__(self) -> BufferPool:
        if self._closed:
            raise ClosedResourceError(f"buffer pool {self.name} is closed")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._free)} free of {self._count}"
        return f"<BufferPool {self.name} {self.size} bytes x {state}>"

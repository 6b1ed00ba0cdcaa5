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
closed instead. The GC's returns never wait for the pool's lock (they are queued and taken in by
the next pool operation, or by a waiter within 0.25 s).

**Zeroing between owners (trust domains).** The kernel zeroes every buffer a heap allocates, so a
client never sees another client's data; a pool recycles buffers and must not weaken that. An
*owner* names a trust domain (a client id, a process, a session): ``None``, or a ``str``, ``bytes``
or ``int`` (exactly those types; ``bool``, floats, subclasses and other objects are refused with a
UsageError). Two owners are the same when they have the same type and the same value, so ``1``,
``True`` and ``1.0`` can never pass for one another, nor ``"1"`` for ``b"1"``. With the default
``zero_on_reuse="on-owner-change"`` a returned buffer is zeroed (between DMA_BUF_IOCTL_SYNC START
and END, so caches are maintained) before it goes to a different owner; ``owner=None`` (the
default) is an unknown owner that never matches, so anonymous acquisitions always get zeroed
buffers. ``"always"`` zeroes every reuse, ``"never"`` none (for a single trust domain). Zeroing
is the only part of ``acquire`` whose cost grows with the size; it is counted in the stats.

**Isolation: nothing an owner was given outlives its lend.** What a PooledBuffer hands out -- the
:attr:`PooledBuffer.buffer` (a Buffer made for this lend, sharing the pool's fd and mapping),
every ``cpu_access`` of it -- is revoked by the release: using it raises ClosedResourceError. What
cannot be revoked makes the pool *evict* the buffer (close it, forget it, allocate a replacement
when needed; counted in ``evictions`` and ``misses``) rather than lend it to a different owner:

- a view of the CPU mapping kept past its ``cpu_access`` block (``kept = view[:]``, a plane
  array, ``view.obj``): Python cannot revoke a memoryview. The pool keeps one mapping per buffer
  and notices any reference to it beyond its own (a reference count compared with the one it
  recorded, a few dozen nanoseconds);
- the fd, once handed out (``fileno()``, ``export()``, the lent buffer's ``fileno()``): the pool
  then asks the kernel whether anything else still holds the dma-buf (``count`` in its fdinfo,
  every fd, mmap and device import, against the count recorded when the pool got the buffer:
  its fd, its mapping, a carveout's pin). A buffer still held elsewhere (an export, a device
  import, an fd passed to another process) is evicted. A memfd has no such count, so a memfd
  whose fd was handed out is always evicted at an owner change. A lend whose fd never left the
  pool (the common case: CPU access only) skips the kernel query.

Keeping imports and views alive across acquisitions by the same owner (a display that keeps its
framebuffers) is fine: the checks run only when the buffer changes hands.

**Signals.** An exception raised by a signal handler (KeyboardInterrupt included) in the middle of
:meth:`~BufferPool.acquire` or :meth:`~PooledBuffer.release` leaves the pool exact: a buffer is
always in exactly one place (free, lent to a PooledBuffer that the caller got, or queued for
return), every move between those is a step no handler can interrupt (CPython runs handlers only
between such steps), and an acquisition interrupted before it returned gives its buffer back.
Waiting uses a lock per waiter, not ``threading.Condition`` (whose Python-level bookkeeping an
interrupt can leave with the pool's lock released twice).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Literal

from . import limits
from ._fd import FdResource
from .buffer import _SYNC, _SYNC_ARGS, AccessMode, Buffer, DmaBufInfo, _ioctl
from .errors import ClosedResourceError, UsageError, error_from_errno
from .heaps.carveout import Allocates, dmabuf_file_count, fill_zero, heap_label

ZeroPolicy = Literal["on-owner-change", "always", "never"]
Owner = str | bytes | int
"""A trust domain: compared by type and value (see the module)."""
_ZERO_POLICIES: tuple[ZeroPolicy, ...] = ("on-owner-change", "always", "never")
_OWNER_TYPES = (str, bytes, int)
#: The longest a waiter sleeps before looking again for buffers the GC returned.
_WAIT_SLICE = 0.25
_pool_numbers = itertools.count(1)
_new_object = object.__new__
_new_lock = threading.Lock
_refs = sys.getrefcount
_now = time.perf_counter_ns


class _Nobody:
    """The previous owner of a buffer nobody has had yet."""


_NOBODY = _Nobody()


class _Slot:
    """One buffer the pool owns, with what the pool knows about it."""

    __slots__ = (
        "base_refs",
        "buffer",
        "dirty",
        "exposed",
        "fd",
        "map_refs",
        "mapping",
        "owner",
        "sync",
        "zeros",
    )

    def __init__(self, buffer: Buffer) -> None:
        self.buffer = buffer
        self.fd = buffer._fd
        self.owner: object = _NOBODY
        self.dirty = False  # handed out since it was allocated or zeroed
        self.exposed = False  # its fd was handed out since the last owner change
        # The kernel's reference count of the dma-buf when only the pool held it (its fd, its
        # CPU mapping, a carveout's pin); None when it cannot be read (memfd buffers).
        self.base_refs: int | None = None
        self.mapping = buffer._map  # the pool's one CPU mapping, shared by every lend
        self.map_refs = 0  # references to it when only the pool holds it
        self.zeros = b""  # as many zero bytes as the mapping, to zero it with one copy
        self.sync: tuple[bytearray, bytearray] | None = None  # the START/END of a write access


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
        releases: releases (including the garbage collector's, and the return of a buffer whose
            acquisition was interrupted).
        waits: acquisitions that had to wait.
        timeouts: acquisitions that gave up (TimedOutError).
        misses: buffers allocated after the pool was made (growth or replacement).
        evictions: buffers dropped at an owner change because something the pool cannot revoke
            (an fd, an import, a view of the mapping) still held them.
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


class _LentBuffer(Buffer):
    """The :class:`~devalloc.buffer.Buffer` a PooledBuffer hands out for one lend: the pool's fd
    and CPU mapping, borrowed. The release revokes it (its fd and mapping are forgotten, so every
    use raises ClosedResourceError); it never closes what it borrowed, and ``close()`` only
    revokes it early. Handing out its fd (``fileno()``, ``export()``) is recorded, so the pool
    checks the kernel's reference count before the buffer changes hands."""

    _slot: _Slot

    def fileno(self) -> int:
        fd = self._fd
        if fd < 0:
            raise ClosedResourceError(f"{self.description} was released to its pool")
        self._slot.exposed = True
        return fd

    def _live_fd(self) -> int:
        fd = self._fd
        if fd < 0:
            raise ClosedResourceError(f"{self.description} was released to its pool")
        return fd

    def add_close_hook(self, hook: Callable[[int], None]) -> None:
        raise UsageError(f"{self.description} is lent by its pool: it is never closed")

    def close(self) -> None:
        """Stop using it (the pool's buffer stays open until the PooledBuffer is released)."""
        self._fd = -1
        self._map = None

    def __del__(self, _forgotten: object = None) -> None:
        pass  # owns nothing


class PooledBuffer:
    """A buffer lent by a :class:`BufferPool`.

    Use it like a Buffer (``fileno()``, ``cpu_access()``, ``export()``, ``info()``, ``size``, or
    :attr:`buffer` for APIs that take a Buffer), then :meth:`release` it, or use it as a context
    manager. After release every use raises ClosedResourceError, of this object and of everything
    it handed out (see the module); release again is a no-op.

    Attributes:
        pool: the pool it came from.
        owner: the owner it was acquired for.
        size: bytes of the buffer (at least the pool's size: heaps round up to pages).
    """

    # Lent at acquisition rate: no instance dict, and a __del__ safety net rather than a
    # weakref.finalize (which alone cost more than a Lock + deque round trip, see bench/). Made
    # only by BufferPool.acquire, which sets the fields itself.
    __slots__ = ("_handle", "_slot", "owner", "pool", "size")

    pool: BufferPool
    owner: Owner | None
    size: int
    _slot: _Slot | None
    _handle: _LentBuffer | None

    def __del__(self) -> None:
        try:
            slot = self._slot
        except AttributeError:  # interrupted before acquire set it: holds nothing
            return
        if slot is not None:
            self._slot = None
            self._revoke()
            self.pool._return_forgotten(slot)

    def _revoke(self) -> None:
        # The revoked handle stays referenced here: dropping it now would run its finalizer
        # inside release(), where a signal handler could interrupt it.
        handle = self._handle
        if handle is not None:
            handle._fd = -1
            handle._map = None

    def _released(self) -> ClosedResourceError:
        return ClosedResourceError(
            f"a buffer of pool {self.pool.name} was used after it was released"
        )

    @property
    def buffer(self) -> Buffer:
        """The buffer as a :class:`~devalloc.buffer.Buffer`, for this lend only: it shares the
        pool's fd and mapping and is revoked by the release (``close()`` on it only revokes it).
        The same object for the whole lend, unless it was closed."""
        handle = self._handle
        if handle is not None and handle._fd >= 0:
            return handle
        slot = self._slot
        if slot is None:
            raise self._released()
        buf = slot.buffer
        handle = _new_object(_LentBuffer)
        handle.__dict__.update(buf.__dict__)
        handle.description = f"lent {buf.description} (pool {self.pool.name})"
        handle._close_hooks = ()
        handle._map = slot.mapping
        handle._slot = slot
        self._handle = handle
        if self._slot is not slot:  # released meanwhile (another thread)
            self._revoke()
            raise self._released()
        return handle

    @property
    def closed(self) -> bool:
        """True once released."""
        return self._slot is None

    def fileno(self) -> int:
        """The dma-buf fd, borrowed (valid until release)."""
        return self.buffer.fileno()

    def cpu_access(self, mode: AccessMode = "rw") -> AbstractContextManager[memoryview]:
        """CPU access to the buffer (see :meth:`devalloc.buffer.Buffer.cpu_access`); the access
        is revoked with the lend."""
        return self.buffer.cpu_access(mode)

    def export(self) -> FdResource:
        """A new fd for the buffer. An export still open when the buffer goes to another owner
        makes the pool evict the buffer rather than share it."""
        return self.buffer.export()

    def info(self) -> DmaBufInfo:
        """The kernel's view of the dma-buf (fdinfo)."""
        return self.buffer.info()

    def release(self) -> None:
        """Give the buffer back to the pool, revoking everything this lend handed out.
        Idempotent."""
        slot = self._slot
        if slot is None:
            return
        self._revoke()
        pool = self.pool
        with pool._lock:
            if self._slot is not slot:
                return  # released by another thread meanwhile
            # The slot moves from this object to the free list with no step in between where a
            # signal handler could run (see the module).
            self._slot = None
            if pool._orphans or pool._closed:
                pool._orphans.append(slot)  # a C call: it is in there before a handler can run
                pool._adopt_orphans()
                return
            # BufferPool._give_back's common case, inlined (the hot path)
            pool._in_use -= 1
            pool._releases += 1
            pool._free.append(slot)
            if pool._waiters:
                pool._waiters.popleft().release()

    close = release

    def __enter__(self) -> PooledBuffer:
        if self._slot is None:
            raise self._released()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        slot = self._slot
        state = "released" if slot is None else f"fd={slot.fd}"
        return f"<PooledBuffer of pool {self.pool.name} owner={self.owner!r} {state}>"


def _check_count(label: str, value: object, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise UsageError(f"{label} must be an integer of at least {minimum}, not {value!r}")
    return value


def _changes_hands(slot: _Slot, owner: Owner | None) -> bool:
    """Whether lending ``slot`` to ``owner`` is an owner change (type and value, see the module)."""
    previous = slot.owner
    return (
        owner is None
        or previous is _NOBODY
        or type(previous) is not type(owner)
        or previous != owner
    )


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
        AllocationLimitError: ``max_count`` buffers of ``size`` bytes would pass devalloc's caps
            (:mod:`devalloc.limits`); refused before anything is allocated.
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
        if name is not None and not isinstance(name, str):
            raise UsageError(f"a pool's name must be a string, not {name!r}")
        self.name = name if name is not None else f"{heap_label(heap)}#{next(_pool_numbers)}"
        self.size = _check_count(f"pool {self.name}: size", size, 1)
        _check_count(f"pool {self.name}: count", count, 0)
        if not isinstance(grow, bool):
            raise UsageError(f"pool {self.name}: grow is True or False, not {grow!r}")
        if grow:
            if max_count is None:
                raise UsageError(f"pool {self.name}: a growing pool needs max_count (its bound)")
            _check_count(f"pool {self.name}: max_count", max_count, max(count, 1))
        elif max_count is not None and (
            isinstance(max_count, bool) or not isinstance(max_count, int) or max_count != count
        ):
            raise UsageError(
                f"pool {self.name}: max_count {max_count!r} differs from count {count} but the "
                "pool cannot grow (pass grow=True)"
            )
        elif count == 0:
            raise UsageError(f"pool {self.name}: count 0 without grow=True can never lend a buffer")
        if not isinstance(zero_on_reuse, str) or zero_on_reuse not in _ZERO_POLICIES:
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
        self._check_limits()
        self._zero_on_reuse: ZeroPolicy = zero_on_reuse
        self._zeroing = zero_on_reuse != "never"
        self._always = zero_on_reuse == "always"
        # One lock guards the state. Waiters wait on a lock of their own (see the module).
        self._lock = threading.Lock()
        self._waiters: deque[threading.Lock] = deque()
        self._free: deque[_Slot] = deque()
        # Slots given back outside the lock (the GC's returns, interrupted acquisitions); None
        # for an interrupted allocation. Taken in by the next operation that holds the lock.
        self._orphans: deque[_Slot | None] = deque()
        self._zeros: dict[int, bytes] = {}
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
                stack.callback(self._close_buffer, slot)
                self._free.append(slot)
            self._count = count
            stack.pop_all()

    def _check_limits(self) -> None:
        """Refuse a pool whose bound (``max_count`` buffers of ``size``) passes devalloc's caps,
        before allocating anything."""
        limits.check(self.size, self.max_count, what=f"buffer pool {self.name}")

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
        try:
            sizes = tuple(getattr(layout, "buffer_sizes", ()) or ())
        except TypeError:
            raise UsageError(f"{plan!r} has no layout to size a pool from") from None
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
        """A buffer from the heap, mapped for the CPU once, with its reference counts recorded."""
        buf = self._allocate(self.size)
        try:  # from the next instruction on: a signal in here closes the buffer too
            if not isinstance(buf, Buffer) or buf.size < self.size:
                raise UsageError(
                    f"pool {self.name}: the heap gave {buf!r}, not a Buffer of at least "
                    f"{self.size} bytes"
                )
            if buf.cpu_mappable:
                buf._mapping()  # the one mapping every lend shares (its references count below)
            slot = _Slot(buf)
            if buf.is_dmabuf:
                slot.sync = _SYNC_ARGS["w"]
                slot.base_refs = dmabuf_file_count(slot.fd)
            if slot.mapping is not None and buf._writable:
                zeros = self._zeros.get(buf.size)
                if zeros is None:
                    zeros = self._zeros[buf.size] = bytes(buf.size)
                slot.zeros = zeros
            slot.map_refs = _refs(slot.mapping)
        except BaseException:
            if isinstance(buf, Buffer):
                with contextlib.suppress(Exception):
                    buf.close()
            raise
        return slot

    @staticmethod
    def _close_buffer(slot: _Slot) -> None:
        """Close a slot's buffer; a view of its mapping still alive is the holder's mistake (the
        buffer is closed all the same: see Buffer.close)."""
        slot.mapping = None
        with contextlib.suppress(UsageError):
            slot.buffer.close()

    # -- acquire -----------------------------------------------------------------------------

    def acquire(self, timeout: float | None = None, owner: Owner | None = None) -> PooledBuffer:
        """Take a buffer, waiting up to ``timeout`` seconds (None: as long as it takes; 0: not at
        all) when none is free.

        Args:
            timeout: seconds to wait at most.
            owner: the trust domain it is lent to: None (unknown), or a str, bytes or int
                (compared by type and value, see the module).

        Raises:
            TimedOutError: no buffer became free in time (ETIMEDOUT).
            ClosedResourceError: the pool is closed (also raised to those waiting when it closes).
            UsageError: a bad timeout or owner.
            KernelError: a new buffer could not be allocated, or zeroing failed.
        """
        if timeout is not None:
            self._check_timeout(timeout)
        if owner is not None and type(owner) not in _OWNER_TYPES:
            raise UsageError(
                f"pool {self.name}: owner must be None, a str, bytes or an int (not a bool, a "
                f"float, a subclass or another object: owners are compared by type and value), "
                f"not {owner!r}"
            )
        lent = _new_object(PooledBuffer)  # PooledBuffer.__init__'s work, without the call
        lent._slot = None
        lent._handle = None
        lent.pool = self
        lent.owner = owner
        try:
            with self._lock:
                free = self._free
                if free and not self._orphans and not self._closed:
                    # The common case, in one short locked section. The slot moves from the
                    # free list to ``lent`` by subscripts and attribute stores: no call, so no
                    # point where a signal handler can run in between (see the module).
                    slot = free[-1]  # the most recently returned: warm, often the same owner
                    del free[-1]
                    lent._slot = slot
                    self._acquires += 1
                    in_use = self._in_use = self._in_use + 1
                    if in_use > self._peak:
                        self._peak = in_use
                else:
                    slot = None
            if slot is None or (
                slot.dirty
                and self._zeroing
                # _changes_hands, inlined (the hot path)
                and (
                    owner is None
                    or slot.owner is _NOBODY
                    or type(slot.owner) is not type(owner)
                    or slot.owner != owner
                )
            ):
                slot = self._acquire_slow(lent, timeout, owner)
            elif self._always and slot.dirty:
                self._zero(slot)
            slot.owner = owner if owner is not None else _NOBODY
            slot.dirty = True
            lent.size = slot.buffer.size
            return lent
        except BaseException:
            # Interrupted or failed before the caller got it: the buffer goes back. (Attribute
            # stores and one append: nothing a signal can split.)
            slot = lent._slot
            if slot is not None:
                lent._slot = None
                self._orphans.append(slot)
            raise

    def _check_timeout(self, timeout: object) -> None:
        if isinstance(timeout, int | float) and not isinstance(timeout, bool):
            with contextlib.suppress(OverflowError):
                if float(timeout) >= 0:  # NaN is not
                    return
        raise UsageError(
            f"pool {self.name}: timeout must be None or a number of seconds >= 0, not {timeout!r}"
        )

    def _acquire_slow(
        self, lent: PooledBuffer, timeout: float | None, owner: Owner | None
    ) -> _Slot:
        """Everything but the common case: ``lent`` holds a slot that needs checks and zeroing,
        or none (wait, grow, or adopt the GC's returns). Returns the slot ``lent`` now holds,
        counted as lent and fit for ``owner``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            slot = lent._slot
            if slot is None:
                slot = self._take(lent, timeout, deadline)
            if self._zeroing and slot.dirty and _changes_hands(slot, owner):
                if not self._fit_for_another_owner(lent, slot):
                    continue  # evicted: take another
            elif self._always and slot.dirty:
                self._zero(slot)
            return slot

    def _take(self, lent: PooledBuffer, timeout: float | None, deadline: float | None) -> _Slot:
        """Give ``lent`` a free slot, counted as lent, or a new one when below the bound;
        wait for one otherwise."""
        waited = False
        while True:
            waiter = None
            allocating = False
            try:
                with self._lock:
                    self._adopt_orphans()
                    if self._closed:
                        raise ClosedResourceError(f"buffer pool {self.name} is closed")
                    free = self._free
                    if free:
                        # No call from here to the counts (see the module).
                        slot = free[-1]
                        del free[-1]
                        lent._slot = slot
                        self._acquires += 1
                        in_use = self._in_use = self._in_use + 1
                        if in_use > self._peak:
                            self._peak = in_use
                        return slot
                    # Below max_count: growth, or (either way) the replacement of an evicted
                    # buffer.
                    if self._count + self._allocating < self.max_count:
                        self._allocating += 1
                        allocating = True  # no call in between: a signal cannot split the two
                    else:
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
                        waiter = _new_lock()
                        waiter.acquire()
                        self._waiters.append(waiter)
                if allocating:
                    slot = self._new_slot()
                    with self._lock:
                        allocating = False
                        self._allocating -= 1
                        if self._closed:
                            self._close_buffer(slot)
                            raise ClosedResourceError(f"buffer pool {self.name} is closed")
                        lent._slot = slot
                        self._count += 1
                        self._misses += 1
                        self._acquires += 1
                        in_use = self._in_use = self._in_use + 1
                        if in_use > self._peak:
                            self._peak = in_use
                    return slot
                if waiter is not None:
                    waiter.acquire(
                        True, _WAIT_SLICE if remaining is None else min(remaining, _WAIT_SLICE)
                    )
            except BaseException:
                if allocating:
                    self._orphans.append(None)  # the allocation is off (taken in under the lock)
                raise
            finally:
                if waiter is not None:
                    with self._lock, contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)

    def _wake_one(self) -> None:
        """Wake the longest waiter, if any (lock held)."""
        if self._waiters:
            self._waiters.popleft().release()

    def _fit_for_another_owner(self, lent: PooledBuffer, slot: _Slot) -> bool:
        """Make ``slot`` (held by ``lent``) fit for a different owner: evict it when something
        the pool cannot revoke still holds it (False), else zero it (True)."""
        # (Counted exactly as _new_slot counted them: no local name holds the mapping here.)
        if slot.mapping is not None and _refs(slot.mapping) != slot.map_refs:
            self._evict(lent, slot)  # a view of the mapping outlived its lend
            return False
        if slot.exposed:
            base = slot.base_refs
            if base is None or dmabuf_file_count(slot.fd) > base:
                self._evict(lent, slot)  # its fd went out and is (or may be) still held
                return False
            slot.exposed = False
        self._zero(slot)
        return True

    def _zero(self, slot: _Slot) -> None:
        """Zero a slot's buffer: one copy of zeros into the pool's mapping, between
        DMA_BUF_IOCTL_SYNC START and END with prebuilt arguments."""
        started = _now()
        zeros = slot.zeros
        if not zeros:  # not mapped or not writable: the ordinary access (which says why not)
            with slot.buffer.cpu_access("w") as view:
                fill_zero(view)
        else:
            sync = slot.sync
            if sync is None:
                slot.mapping[:] = zeros  # type: ignore[index]
            else:
                fd = slot.fd
                try:
                    _ioctl(fd, _SYNC, sync[0], True)
                except OSError as exc:
                    slot.buffer._sync_failed(fd, sync[0], exc)
                try:
                    slot.mapping[:] = zeros  # type: ignore[index]
                finally:
                    try:
                        _ioctl(fd, _SYNC, sync[1], True)
                    except OSError as exc:
                        slot.buffer._sync_failed(fd, sync[1], exc)
        slot.dirty = False
        elapsed = _now() - started
        with self._lock:
            self._zeroings += 1
            self._zeroed_bytes += slot.buffer.size
            self._zero_ns += elapsed

    def _evict(self, lent: PooledBuffer, slot: _Slot) -> None:
        with self._lock:
            lent._slot = None
            self._acquires -= 1
            self._in_use -= 1
            self._count -= 1
            self._evictions += 1
            self._wake_one()  # below the bound now: a waiter may allocate a replacement
        self._close_buffer(slot)

    # -- release -----------------------------------------------------------------------------

    def _return_forgotten(self, slot: _Slot) -> None:
        """The GC collected a PooledBuffer that was never released."""
        # This may run inside one of the pool's own locked sections: never block here.
        self._orphans.append(slot)
        if self._lock.acquire(blocking=False):
            try:
                self._adopt_orphans()
            finally:
                self._lock.release()
        warnings.warn(
            f"a buffer of pool {self.name} was never released; the garbage collector returned it",
            ResourceWarning,
            stacklevel=2,
        )

    def _adopt_orphans(self) -> None:
        """Take in the slots given back outside the lock (lock held)."""
        orphans = self._orphans
        while orphans:
            # Subscripts, not popleft(), and no call before the slot is in its new place: no
            # signal handler can run in between (see the module).
            slot = orphans[0]
            del orphans[0]
            if slot is None:
                self._allocating -= 1
            else:
                self._in_use -= 1
                self._releases += 1
                if self._closed:
                    self._count -= 1
                    self._close_buffer(slot)
                    continue
                self._free.append(slot)
            if self._waiters:
                self._waiters.popleft().release()

    # -- state -------------------------------------------------------------------------------

    def stats(self) -> PoolStats:
        """The counters and the current state."""
        with self._lock:
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
        with self._lock:
            self._adopt_orphans()
            self._closed = True
            free, self._free = list(self._free), deque()
            self._count -= len(free)
            for slot in free:
                self._close_buffer(slot)
            while self._waiters:
                self._wake_one()

    def __enter__(self) -> BufferPool:
        if self._closed:
            raise ClosedResourceError(f"buffer pool {self.name} is closed")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._free)} free of {self._count}"
        return f"<BufferPool {self.name} {self.size} bytes x {state}>"

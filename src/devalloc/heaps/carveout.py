"""A userspace carveout: one region reserved up front, dma-bufs carved out of it with udmabuf.

Example:
    >>> from devalloc.heaps.dmaheap import DmaHeap
    >>> with DmaHeap("/dev/dma_heap/system") as system, \\
    ...         Carveout(64 << 20, fallback=system, name="camera") as carveout:  # doctest: +SKIP
    ...     with carveout.allocate(3 << 20) as buf:
    ...         buf.offset, buf.size, buf.info().exp_name
    ...     carveout.stats().carved
    (0, 3145728, 'udmabuf')
    1

**The region.** :class:`Carveout` creates one memfd of the requested size (shmem by default,
``hugetlb=True`` for 2 MiB huge pages), seals it (F_SEAL_SHRINK, which udmabuf requires, plus
F_SEAL_GROW and F_SEAL_SEAL), allocates every page at once with fallocate and maps it once
(MAP_POPULATE) for zeroing. The memfd never leaves the object, so no dma-buf other than the
carved ones can cover the region. The whole region is committed memory from then on.

**Carving.** Each :meth:`Carveout.allocate` takes a page-aligned range from :class:`RangeAllocator`
and turns it into a dma-buf with UDMABUF_CREATE; the buffer is a :class:`CarvedBuffer`
(``exp_name`` "udmabuf"). Because the pages already exist, the kernel only pins them: nothing is
allocated or zeroed on this path. What still grows with the size is udmabuf's own bookkeeping,
which is per *folio*: per 4 KiB page with ordinary shmem, per 2 MiB with huge folios (hugetlb, or
shmem THP where the system enables it). Measured in the test VM (Debian 6.12.117 under QEMU TCG,
``bench/carveout_pool_probe.py``, medians): shmem carves of 4 KiB / 1 MiB / 8 MiB take 0.42 /
0.54 / 1.7 ms (UDMABUF_CREATE alone 0.08 / 0.16 / 1.05 ms, ~0.45 us per page), hugetlb carves
0.41 / 0.42 / 0.77 ms; without the fallocate the first 8 MiB carve also allocates and zeroes its
pages (~44 ms there). So 8 MiB stays within 2x of 4 KiB on huge folios only; a
:class:`~devalloc.pool.BufferPool` over a carveout gives constant latency at any size.

**Allocator** (:class:`RangeAllocator`): first-fit over the free blocks in address order, with
offsets aligned to ``align`` (a page by default) and lengths rounded up to it. A free block is
merged with its neighbours at once (coalescing), so an empty carveout is always one block again.
On hugetlb regions a buffer of at most 2 MiB never straddles a huge-page boundary, and a longer
one starts on one, so every buffer is made of as few physically contiguous 2 MiB chunks as
possible. Fragmentation is external only (no size classes, no internal waste beyond the page
rounding); :meth:`Carveout.stats` reports ``1 - largest_free_block / free_bytes``. Complexity:
allocate O(F) in the number of free blocks, free O(log F) to find the neighbours (plus a list
insertion), queries O(F).

**When the range comes back.** The carveout keeps one extra reference of its own to every carved
dma-buf (a private O_CLOEXEC dup, the *pin*). When the :class:`CarvedBuffer` is closed (by its
owner or, forgotten, by the garbage collector), the carveout asks the kernel how many references
the dma-buf still has (``count`` in /proc/self/fdinfo of the pin: every fd in every process, every
mmap, every device import holds one). Only when the pin is the last one is the range zeroed and
returned to the free list; otherwise the range stays *pending* (an ``export()`` still open, a DRM
or V4L2 import still holding it, an fd passed to another process) and is checked again whenever a
request does not fit, or on :meth:`Carveout.reclaim`. So a range is never handed out again while
any dma-buf over it is alive, whoever holds it. Each carved buffer costs two fds (its own and the
pin) until it is settled; a forked child inherits both (and holds the range until it closes them).

**Zeroing.** The kernel zeroes every fresh heap allocation, and a carveout must not hand out old
data: a settled range is zeroed (memset through the region mapping) before it is free again, so
the free list only ever holds zeroed memory and carving stays free of size-dependent zeroing. The
time is in :attr:`CarveoutStats.zero_ns` (measured: ~1.7 ms per MiB under TCG). No dma-buf covers
the range while it is zeroed; the next importer's DMA mapping does the cache maintenance.

**Full region.** A request that does not fit (after reclaiming pending ranges) goes to the
``fallback`` heap if there is one, recorded as a ``"fallback"`` :class:`CarveoutEvent` (kept in
:attr:`Carveout.events` and passed to ``on_event``) and counted in the stats; without a fallback
it raises :class:`~devalloc.errors.OutOfMemoryError` (ENOMEM, like a kernel heap that is full),
naming the carveout, its size, the request and the largest free block.

**Huge pages and the kernel's CPU mapping.** ``hugetlb=True`` needs reserved 2 MiB huge pages
(/proc/sys/vm/nr_hugepages); each huge page is physically contiguous (:attr:`contiguous_chunk`).
But since udmabuf was converted to folios (commit 5e72b2b41a21), its ``vmap`` (the kernel's own
CPU mapping, used by importers such as vivid or a DRM driver that writes with the CPU) maps the
first page of each folio for every page of it, so with huge folios the kernel's CPU reads and
writes land on the wrong pages (seen by this project on Debian's 6.12.107 and 6.12.117; fixed
upstream by "udmabuf: fix vmap missed offset page", which stable kernels may lack). User mmap
and device DMA are not affected. Such a carveout says so: its ``kernel_cpu_mapping_safe`` is
False and :meth:`Carveout.properties_hint` carries the flag and the reason. Shmem regions are
flagged the same way when the system's shmem THP settings can give them huge folios
(:func:`shmem_large_folios_possible`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import itertools
import mmap
import os
import threading
import time
import weakref
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from .._fd import FdResource, check_path, ioctl
from ..buffer import Buffer, named
from ..errors import ClosedResourceError, UsageError, error_from_errno, error_from_oserror
from ..limits import charge as _charge
from ..limits import check_buffer as _check_buffer
from ..limits import discharge as _discharge
from ..uapi import udmabuf as _uapi
from .properties import HeapProperties
from .udmabuf import UDMABUF_PATH, UdmabufDevice, size_limit_bytes

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
#: The huge-page size a ``hugetlb=True`` carveout uses (MFD_HUGE_2MB).
HUGE_PAGE_SIZE = 2 << 20
#: udmabuf's per-buffer limit when the module parameter cannot be read (its default, 64 MiB).
UDMABUF_DEFAULT_LIMIT = 64 << 20

HUGEPAGES_SYSFS = "/sys/kernel/mm/hugepages/hugepages-2048kB"
THP_SYSFS = "/sys/kernel/mm/transparent_hugepage"

_HUGETLB_NOTE = (
    "udmabuf's vmap maps the first page of each folio for every page of it: with 2 MiB hugetlb "
    "folios, kernel CPU access through an importer (vivid, a DRM driver's vmap) hits the wrong "
    "pages (kernels with udmabuf on folios but without 'udmabuf: fix vmap missed offset page'; "
    "seen on Debian 6.12.107 and 6.12.117). User mmap and device DMA are correct."
)
_THP_NOTE = (
    "shmem transparent huge pages are enabled ({setting}): the region may get huge folios, and "
    "udmabuf's vmap maps the first page of each folio for every page of it (kernels without "
    "'udmabuf: fix vmap missed offset page'), so kernel CPU access through an importer may hit "
    "the wrong pages. User mmap and device DMA are correct."
)


class Allocates(Protocol):
    """Anything that allocates buffers: a heap (``DmaHeap``, ``MemfdHeap``, a :class:`Carveout`)."""

    def allocate(self, size: int, /) -> Buffer:
        """A new buffer of at least ``size`` bytes, owned by the caller."""
        ...


def heap_label(heap: object) -> str:
    """A short name for a heap in messages: its ``name`` attribute, else its type."""
    name = getattr(heap, "name", None)
    return name if isinstance(name, str) and name else type(heap).__name__


def fill_zero(view: memoryview) -> None:
    """Zero a writable, contiguous memoryview in place (one memset; the GIL is released)."""
    size = view.nbytes
    if size == 0:
        return
    target = (ctypes.c_char * size).from_buffer(view)
    try:
        ctypes.memset(target, 0, size)
    finally:
        del target  # drop the export at once, so the view can be released


def _check_positive_int(label: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise UsageError(f"{label} must be a positive integer, not {value!r}")
    return value


def _round_up(value: int, unit: int) -> int:
    return -(-value // unit) * unit


class RangeAllocator:
    """First-fit allocator of aligned ranges in ``[0, size)`` with immediate coalescing (pure).

    Args:
        size: the space, a multiple of ``align``.
        align: every offset and length is a multiple of this (a power of two).
        chunk: if set (a multiple of ``align``), a range of at most ``chunk`` bytes never crosses
            a multiple of ``chunk``, and a longer one starts on one.

    Example:
        >>> ranges = RangeAllocator(16 * 4096)
        >>> ranges.alloc(8192), ranges.alloc(4096)
        (0, 8192)
        >>> ranges.free(0)
        >>> ranges.blocks()
        ((0, 8192), (12288, 53248))
    """

    def __init__(self, size: int, *, align: int = PAGE_SIZE, chunk: int | None = None) -> None:
        _check_positive_int("RangeAllocator align", align)
        if align & (align - 1):
            raise UsageError(f"RangeAllocator align must be a power of two, not {align}")
        _check_positive_int("RangeAllocator size", size)
        if size % align:
            raise UsageError(f"RangeAllocator size {size} is not a multiple of align {align}")
        if chunk is not None and (_check_positive_int("chunk", chunk) % align):
            raise UsageError(f"RangeAllocator chunk {chunk} is not a multiple of align {align}")
        self.size = size
        self.align = align
        self.chunk = chunk
        self._starts: list[int] = [0]  # free blocks, sorted by start
        self._lengths: list[int] = [size]
        self._used: dict[int, int] = {}  # allocated offset -> length
        self._free_bytes = size

    def _placement(self, start: int, length: int) -> int:
        """Where a range of ``length`` may begin in a free block starting at ``start``."""
        chunk = self.chunk
        if chunk is None:
            return start
        if length > chunk:
            return _round_up(start, chunk)
        if start // chunk != (start + length - 1) // chunk:
            return _round_up(start, chunk)
        return start

    def alloc(self, length: int) -> int | None:
        """Reserve ``length`` bytes (a positive multiple of ``align``): the offset, or None when no
        free block can hold it."""
        _check_positive_int("length", length)
        if length % self.align:
            raise UsageError(f"length {length} is not a multiple of align {self.align}")
        for i, (start, size) in enumerate(zip(self._starts, self._lengths, strict=True)):
            if size < length:
                continue
            offset = self._placement(start, length)
            end = start + size
            if offset + length > end:
                continue
            del self._starts[i], self._lengths[i]
            pieces = [(start, offset - start), (offset + length, end - offset - length)]
            for j, (piece_start, piece_len) in enumerate(p for p in pieces if p[1] > 0):
                self._starts.insert(i + j, piece_start)
                self._lengths.insert(i + j, piece_len)
            self._used[offset] = length
            self._free_bytes -= length
            return offset
        return None

    def free(self, offset: int) -> None:
        """Return the range that starts at ``offset``; it merges with free neighbours at once."""
        length = self._used.pop(offset, None)
        if length is None:
            raise UsageError(f"no range is allocated at offset {offset}")
        self._free_bytes += length
        i = bisect_left(self._starts, offset)
        start, end = offset, offset + length
        if i < len(self._starts) and self._starts[i] == end:  # merge with the next block
            end += self._lengths[i]
            del self._starts[i], self._lengths[i]
        if i > 0 and self._starts[i - 1] + self._lengths[i - 1] == start:  # and the previous
            self._lengths[i - 1] = end - self._starts[i - 1]
            return
        self._starts.insert(i, start)
        self._lengths.insert(i, end - start)

    @property
    def free_bytes(self) -> int:
        """Bytes in free blocks."""
        return self._free_bytes

    @property
    def used_bytes(self) -> int:
        """Bytes in allocated ranges."""
        return self.size - self._free_bytes

    def largest_free(self) -> int:
        """The longest free block (0 when full)."""
        return max(self._lengths, default=0)

    def fragmentation(self) -> float:
        """``1 - largest free block / free bytes``: 0 when the free space is one block (or none),
        close to 1 when it is scattered in small pieces."""
        if self._free_bytes == 0:
            return 0.0
        return 1.0 - self.largest_free() / self._free_bytes

    def blocks(self) -> tuple[tuple[int, int], ...]:
        """The free blocks as (offset, length), in address order."""
        return tuple(zip(self._starts, self._lengths, strict=True))

    def allocations(self) -> dict[int, int]:
        """The allocated ranges, offset -> length."""
        return dict(self._used)


def _selected(path: str) -> str | None:
    """The bracketed choice of a sysfs setting ("always [never]" -> "never"), None if unreadable."""
    try:
        with open(path, encoding="ascii") as f:
            text = f.read()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else None


def shmem_large_folios_possible(thp_sysfs: str = THP_SYSFS) -> str | None:
    """Whether shmem (and so a memfd) may be given huge folios on this system.

    Reads ``shmem_enabled`` under ``thp_sysfs`` and the per-size ``hugepages-*/shmem_enabled``
    (Linux 6.11+); "advise" does not count (only an madvise on a mapping enables it, and a
    carveout never does that).

    Returns:
        None when it cannot happen, else the setting that allows it (``"shmem_enabled=always"``).
    """
    top = _selected(os.path.join(thp_sysfs, "shmem_enabled"))
    if top == "force":
        return "shmem_enabled=force"
    if top == "deny":
        return None
    try:
        sizes = sorted(n for n in os.listdir(thp_sysfs) if n.startswith("hugepages-"))
    except OSError:
        sizes = []
    per_size = [(n, _selected(os.path.join(thp_sysfs, n, "shmem_enabled"))) for n in sizes]
    per_size = [(n, s) for n, s in per_size if s is not None]
    if not per_size:
        return f"shmem_enabled={top}" if top in ("always", "within_size") else None
    for name, setting in per_size:
        effective = top if setting == "inherit" else setting
        if effective in ("always", "within_size"):
            return f"{name}/shmem_enabled={setting}" + (f" ({top})" if setting == "inherit" else "")
    return None


def hugetlb_pages_free(sysfs: str = HUGEPAGES_SYSFS) -> int | None:
    """Free reserved 2 MiB huge pages, or None when the kernel has no hugetlb support."""
    try:
        with open(os.path.join(sysfs, "free_hugepages"), encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def dmabuf_file_count(fd: int) -> int:
    """References the kernel holds on the dma-buf behind ``fd`` (``count`` in its fdinfo: every
    fd in every process, every mmap, every device import).

    Raises:
        KernelError: the fdinfo cannot be read, or has no count (not a dma-buf).
    """
    path = f"/proc/self/fdinfo/{fd}"
    try:
        info = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            text = os.read(info, 4096)
        finally:
            os.close(info)
    except OSError as exc:
        raise error_from_oserror(exc, f"cannot read the fdinfo of fd {fd}", path=path) from exc
    for line in text.splitlines():
        key, _, value = line.partition(b":")
        if key == b"count":
            return int(value)
    raise error_from_errno(errno.EINVAL, f"fd {fd} is not a dma-buf: no count in fdinfo", path=path)


EventKind = Literal["fallback", "out-of-memory", "deferred"]


@dataclass(frozen=True)
class CarveoutEvent:
    """Something the allocator should know about a carveout.

    Attributes:
        kind: ``"fallback"`` (a request went to the fallback heap), ``"out-of-memory"`` (it did
            not fit and there is no fallback), ``"deferred"`` (a closed buffer's range stays out
            of the free list because other references to its dma-buf remain).
        carveout: the carveout's name.
        requested: the bytes asked for (for "deferred": the range's length).
        largest_free: the largest free block at that moment.
        free_bytes: all free bytes at that moment.
        detail: a sentence for logs.
    """

    kind: EventKind
    carveout: str
    requested: int
    largest_free: int
    free_bytes: int
    detail: str


@dataclass(frozen=True)
class CarveoutStats:
    """Counters and the state of a carveout at one moment.

    Attributes:
        name: the carveout's name.
        size: region bytes.
        hugetlb: backed by 2 MiB huge pages.
        carved: buffers carved so far.
        fallbacks: requests sent to the fallback heap.
        failures: requests refused with OutOfMemoryError.
        live: carved buffers not closed yet.
        pending: closed buffers whose dma-buf is still referenced elsewhere.
        bytes_in_use: bytes not free (live + pending ranges).
        bytes_pending: bytes in pending ranges.
        free_bytes: bytes in the free list.
        largest_free_block: the longest free block.
        free_blocks: how many free blocks.
        fragmentation: ``1 - largest_free_block / free_bytes`` (0: one block).
        zeroed_bytes: bytes zeroed before reuse.
        zero_ns: nanoseconds spent zeroing.
    """

    name: str
    size: int
    hugetlb: bool
    carved: int
    fallbacks: int
    failures: int
    live: int
    pending: int
    bytes_in_use: int
    bytes_pending: int
    free_bytes: int
    largest_free_block: int
    free_blocks: int
    fragmentation: float
    zeroed_bytes: int
    zero_ns: int


@dataclass(eq=False)
class _Carve:
    offset: int
    length: int
    pin: FdResource  # the carveout's own reference to the dma-buf


class CarvedBuffer(Buffer):
    """A dma-buf carved from a :class:`Carveout`: a :class:`~devalloc.buffer.Buffer` that tells
    its carveout when it closes (by :meth:`close` or the garbage collector).

    Attributes:
        carveout: where it was carved.
        offset: where its range starts in the region.
    """

    def __init__(self, fd: int, *, carveout: Carveout, ticket: int, offset: int, size: int) -> None:
        super().__init__(fd, exporter=f"carveout {carveout.name}", size=size)
        self.carveout = carveout
        self.offset = offset
        self._ticket = ticket
        self._gone = weakref.finalize(self, carveout._buffer_gone, ticket, True)
        self._gone.atexit = False

    def close(self) -> None:
        """Close the fd (unmapping first) and hand the range back to the carveout. Idempotent."""
        try:
            super().close()
        finally:
            if self._gone.detach() is not None:
                self.carveout._buffer_gone(self._ticket, False)


class Carveout:
    """A region reserved up front; buffers carved from it with UDMABUF_CREATE (see the module).

    Args:
        size: region bytes (rounded up to ``align``; to 2 MiB with ``hugetlb``).
        hugetlb: back the region with 2 MiB huge pages (MFD_HUGETLB | MFD_HUGE_2MB), which must be
            reserved in /proc/sys/vm/nr_hugepages.
        fallback: where requests go when the region is full (recorded as events), else None.
        name: for messages, events and the memfd.
        align: offset alignment of every buffer (a power-of-two multiple of the page size).
        on_event: called with every :class:`CarveoutEvent` (outside the carveout's lock).
        history: how many events :attr:`events` keeps.
        udmabuf_path: the udmabuf node.

    Raises:
        UsageError: a bad argument.
        AllocationLimitError: the region is above a cap of :mod:`devalloc.limits` (it is
            charged to the process's total until :meth:`close`).
        NoSpaceError, OutOfMemoryError: the region could not be reserved (for hugetlb: not
            enough free huge pages).
        NotFoundError, PermissionDeniedError: /dev/udmabuf cannot be opened.
    """

    importable_by_devices = True

    def __init__(
        self,
        size: int,
        *,
        hugetlb: bool = False,
        fallback: Allocates | None = None,
        name: str = "default",
        align: int = PAGE_SIZE,
        on_event: Callable[[CarveoutEvent], None] | None = None,
        history: int = 64,
        udmabuf_path: str = UDMABUF_PATH,
    ) -> None:
        if not isinstance(name, str) or "\0" in name or len(name) > 200:
            raise UsageError(f"carveout: name must be a string without NUL, not {name!r:.80}")
        try:
            name.encode()
        except UnicodeError:
            raise UsageError(f"carveout: name {name!r:.80} cannot be encoded") from None
        _check_positive_int(f"carveout {name}: size", size)
        _check_positive_int(f"carveout {name}: align", align)
        if not isinstance(history, int) or isinstance(history, bool) or not 0 <= history < 1 << 20:
            raise UsageError(
                f"carveout {name}: history must be an int in [0, 2**20), not {history!r}"
            )
        if fallback is not None and not callable(getattr(fallback, "allocate", None)):
            raise UsageError(f"carveout {name}: fallback must be a heap (with allocate) or None")
        if on_event is not None and not callable(on_event):
            raise UsageError(f"carveout {name}: on_event must be callable or None")
        udmabuf_path = check_path(udmabuf_path, what=f"carveout {name}: udmabuf_path")
        if align % PAGE_SIZE or align & (align - 1):
            raise UsageError(
                f"carveout {name}: align must be a power-of-two multiple of {PAGE_SIZE}, "
                f"not {align}"
            )
        if not isinstance(hugetlb, bool):
            raise UsageError(f"carveout {name}: hugetlb is True or False, not {hugetlb!r}")
        self.name = name
        self.hugetlb = hugetlb
        self.fallback = fallback
        self.align = align
        self.size = _round_up(size, max(align, HUGE_PAGE_SIZE if hugetlb else PAGE_SIZE))
        #: The longest run that is physically contiguous: a huge page, or a page.
        self.contiguous_chunk = HUGE_PAGE_SIZE if hugetlb else PAGE_SIZE
        self.udmabuf_limit = size_limit_bytes() or UDMABUF_DEFAULT_LIMIT
        #: The largest buffer it can carve: the region, or udmabuf's per-buffer limit.
        self.max_size = min(self.size, self.udmabuf_limit)
        thp = None if hugetlb else shmem_large_folios_possible()
        #: Whether the kernel's own CPU mapping (vmap) of its buffers is right (see the module).
        self.kernel_cpu_mapping_safe = not hugetlb and thp is None
        self.kernel_cpu_mapping_note = (
            _HUGETLB_NOTE if hugetlb else _THP_NOTE.format(setting=thp) if thp else ""
        )
        self._on_event = on_event
        self._events: deque[CarveoutEvent] = deque(maxlen=history)
        self._ranges = RangeAllocator(
            self.size, align=align, chunk=HUGE_PAGE_SIZE if hugetlb else None
        )
        self._cond = threading.Condition(threading.Lock())
        self._closed = False
        self._busy = 0  # carves in flight outside the lock (they use the memfd and the node)
        self._live: dict[int, _Carve] = {}
        self._pending: dict[int, _Carve] = {}
        self._orphans: deque[int] = deque()  # tickets of buffers the GC closed
        self._tickets = itertools.count()
        self._carved = self._fallbacks = self._failures = 0
        self._zeroed_bytes = self._zero_ns = 0
        # The region is this process's memory from now on: charged to devalloc's total (and
        # refused above a cap) until close; carving from it charges nothing more.
        _charge(self.size, f"carveout {name}")
        with contextlib.ExitStack() as stack:
            stack.callback(_discharge, self.size)
            self._memfd = self._reserve(stack)
            self._udmabuf = stack.enter_context(UdmabufDevice(udmabuf_path))
            try:
                flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
                self._map = mmap.mmap(self._memfd.fileno(), self.size, flags)
            except OSError as exc:
                raise error_from_oserror(exc, f"cannot map the region of {self._what()}") from exc
            stack.callback(self._map.close)
            stack.pop_all()

    def _what(self) -> str:
        kind = "hugetlb" if self.hugetlb else "shmem"
        return f"carveout {self.name} ({self.size} bytes of {kind})"

    def _reserve(self, stack: contextlib.ExitStack) -> FdResource:
        flags = os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
        if self.hugetlb:
            flags |= os.MFD_HUGETLB | os.MFD_HUGE_2MB
        try:
            fd = os.memfd_create(f"devalloc-carveout-{self.name}", flags)
        except OSError as exc:
            raise error_from_oserror(exc, f"memfd_create for {self._what()} failed") from exc
        memfd = stack.enter_context(FdResource(fd, description=f"memfd of {self._what()}"))
        seals = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
        try:
            os.ftruncate(fd, self.size)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
        except OSError as exc:
            raise error_from_oserror(
                exc, f"cannot size and seal the memfd of {self._what()}"
            ) from exc
        try:
            os.posix_fallocate(fd, 0, self.size)
        except OSError as exc:
            hint = ""
            if self.hugetlb:
                hint = (
                    f": {self.size // HUGE_PAGE_SIZE} huge pages of 2 MiB needed, "
                    f"{hugetlb_pages_free()} free (reserve them in /proc/sys/vm/nr_hugepages)"
                )
            raise error_from_oserror(
                exc, f"cannot allocate the pages of {self._what()}{hint}", operation="fallocate"
            ) from exc
        return memfd

    # -- allocation --------------------------------------------------------------------------

    def allocate(self, size: int, /) -> Buffer:
        """A zero-filled dma-buf of ``size`` bytes (rounded up to ``align``) carved from the region,
        or from the fallback heap when the region cannot hold it.

        Raises:
            UsageError: a bad size, or one above udmabuf's per-buffer limit with no fallback.
            AllocationLimitError: above devalloc's per-buffer cap (:mod:`devalloc.limits`).
            OutOfMemoryError: it does not fit and there is no fallback (ENOMEM).
            ClosedResourceError: the carveout is closed.
            KernelError: what UDMABUF_CREATE (or the fallback heap) said.
        """
        _check_positive_int(f"carveout {self.name}: size", size)
        _check_buffer(size, what=f"carveout {self.name}")
        length = _round_up(size, self.align)
        events: list[CarveoutEvent] = []
        error: Exception | None = None
        with self._cond:
            self._check_open()
            self._settle_orphans(events)
            fits = length <= self.max_size
            offset = self._ranges.alloc(length) if fits else None
            if offset is None and fits and self._pending:
                self._reclaim_locked(events)
                offset = self._ranges.alloc(length)
            if offset is not None:
                self._busy += 1
            elif self.fallback is None:
                reason = self._no_fit_reason(length)
                self._failures += 1
                events.append(self._event("out-of-memory", size, reason))
                error = self._no_fit_error(size, length, reason)
            else:
                reason = self._no_fit_reason(length)
                self._fallbacks += 1
                target = heap_label(self.fallback)
                events.append(self._event("fallback", size, f"{reason}: sent to {target}"))
        self._dispatch(events)
        if error is not None:
            raise error
        if offset is None:
            assert self.fallback is not None
            return self.fallback.allocate(size)
        carve: tuple[CarvedBuffer, _Carve] | None = None
        try:
            carve = self._carve(offset, length)
            return carve[0]
        finally:
            with self._cond:
                if carve is None:
                    self._ranges.free(offset)
                else:
                    self._live[carve[0]._ticket] = carve[1]
                    self._carved += 1
                self._busy -= 1
                if self._busy == 0:
                    self._cond.notify_all()

    def _no_fit_reason(self, length: int) -> str:
        if length > self.size:
            return f"{length} bytes is more than the whole region"
        if length > self.udmabuf_limit:
            return (
                f"{length} bytes is above udmabuf's per-buffer limit of "
                f"{self.udmabuf_limit >> 20} MiB (udmabuf.size_limit_mb)"
            )
        pending = sum(c.length for c in self._pending.values())
        return (
            f"largest free block {self._ranges.largest_free()} bytes "
            f"({self._ranges.free_bytes} bytes free in {len(self._ranges.blocks())} blocks, "
            f"{pending} bytes held by dma-bufs still referenced after close)"
        )

    def _no_fit_error(self, size: int, length: int, reason: str) -> Exception:
        if self.size >= length > self.udmabuf_limit:
            return UsageError(f"{self._what()} cannot carve {size} bytes: {reason}")
        return error_from_errno(
            errno.ENOMEM,
            f"{self._what()} cannot fit {size} bytes: {reason}; no fallback heap",
            operation="carve",
        )

    def _carve(self, offset: int, length: int) -> tuple[CarvedBuffer, _Carve]:
        """UDMABUF_CREATE over the range, and the pin (the caller registers both)."""
        arg = _uapi.udmabuf_create(
            memfd=self._memfd.fileno(),
            flags=_uapi.UDMABUF_FLAGS_CLOEXEC,
            offset=offset,
            size=length,
        )
        fd = ioctl(
            self._udmabuf.fileno(),
            _uapi.UDMABUF_CREATE,
            arg,
            name="UDMABUF_CREATE",
            what=f"carve {length} bytes at offset {offset} of {self._what()}",
            path=self._udmabuf.path,
        )
        try:
            pin_fd = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 0)
        except OSError as exc:
            os.close(fd)
            raise error_from_oserror(exc, f"cannot pin a buffer of {self._what()}") from exc
        pin = FdResource(pin_fd, description=f"pin of [{offset}, +{length}) in {self._what()}")
        try:
            buf = CarvedBuffer(
                fd, carveout=self, ticket=next(self._tickets), offset=offset, size=length
            )
        except BaseException:
            pin.close()
            raise
        return buf, _Carve(offset, length, pin)

    # -- release -----------------------------------------------------------------------------

    def _buffer_gone(self, ticket: int, collected: bool) -> None:
        """A carved buffer closed (``collected``: by the garbage collector)."""
        if collected:
            # The GC may run this inside one of our own locked sections: never block here.
            self._orphans.append(ticket)
            if not self._cond.acquire(blocking=False):
                return  # whoever holds the lock settles orphans on its next call
            try:
                events: list[CarveoutEvent] = []
                self._settle_orphans(events)
            finally:
                self._cond.release()
        else:
            events = []
            with self._cond:
                self._settle_ticket(ticket, events)
        self._dispatch(events)

    def _settle_orphans(self, events: list[CarveoutEvent]) -> None:
        while self._orphans:
            self._settle_ticket(self._orphans.popleft(), events)

    def _settle_ticket(self, ticket: int, events: list[CarveoutEvent]) -> None:
        carve = self._live.pop(ticket, None)
        if carve is None:
            return
        if self._closed:
            carve.pin.close()
            return
        if not self._settle(carve):
            self._pending[ticket] = carve
            events.append(
                self._event(
                    "deferred",
                    carve.length,
                    f"range [{carve.offset}, +{carve.length}) stays out of the free list: its "
                    "dma-buf is still referenced (an export, an import or another process)",
                )
            )

    def _settle(self, carve: _Carve) -> bool:
        """Free the range if the pin is the dma-buf's last reference (lock held)."""
        try:
            if dmabuf_file_count(carve.pin.fileno()) > 1:
                return False
        except OSError:
            return False  # cannot tell: keep it out of the free list
        carve.pin.close()
        started = time.perf_counter_ns()
        target = (ctypes.c_char * carve.length).from_buffer(self._map, carve.offset)
        try:
            ctypes.memset(target, 0, carve.length)
        finally:
            del target
        self._zero_ns += time.perf_counter_ns() - started
        self._zeroed_bytes += carve.length
        self._ranges.free(carve.offset)
        return True

    def _reclaim_locked(self, events: list[CarveoutEvent]) -> int:
        self._settle_orphans(events)
        freed = 0
        for ticket, carve in list(self._pending.items()):
            if self._settle(carve):
                del self._pending[ticket]
                freed += carve.length
        return freed

    def reclaim(self) -> int:
        """Check the ranges of closed buffers that were still referenced; free (zeroed) those
        whose dma-buf is gone now. Returns the bytes freed."""
        events: list[CarveoutEvent] = []
        with self._cond:
            self._check_open()
            freed = self._reclaim_locked(events)
        self._dispatch(events)
        return freed

    # -- reporting ---------------------------------------------------------------------------

    def _event(self, kind: EventKind, requested: int, detail: str) -> CarveoutEvent:
        event = CarveoutEvent(
            kind=kind,
            carveout=self.name,
            requested=requested,
            largest_free=self._ranges.largest_free(),
            free_bytes=self._ranges.free_bytes,
            detail=f"{self._what()}: {detail}",
        )
        self._events.append(event)
        return event

    def _dispatch(self, events: list[CarveoutEvent]) -> None:
        if self._on_event is not None:
            for event in events:
                self._on_event(event)

    @property
    def events(self) -> tuple[CarveoutEvent, ...]:
        """The latest events (fallbacks, refusals, deferred releases), oldest first."""
        with self._cond:
            return tuple(self._events)

    def stats(self) -> CarveoutStats:
        """Counters and the current state (ranges of GC-closed buffers are settled first)."""
        events: list[CarveoutEvent] = []
        with self._cond:
            if not self._closed:
                self._settle_orphans(events)
            pending = sum(c.length for c in self._pending.values())
            stats = CarveoutStats(
                name=self.name,
                size=self.size,
                hugetlb=self.hugetlb,
                carved=self._carved,
                fallbacks=self._fallbacks,
                failures=self._failures,
                live=len(self._live),
                pending=len(self._pending),
                bytes_in_use=self._ranges.used_bytes,
                bytes_pending=pending,
                free_bytes=self._ranges.free_bytes,
                largest_free_block=self._ranges.largest_free(),
                free_blocks=len(self._ranges.blocks()),
                fragmentation=self._ranges.fragmentation(),
                zeroed_bytes=self._zeroed_bytes,
                zero_ns=self._zero_ns,
            )
        self._dispatch(events)
        return stats

    def properties_hint(self) -> dict[str, object]:
        """What this carveout offers, as plain data for the heap registry to wrap."""
        return {
            "kind": "carveout",
            "name": self.name,
            "exporter": "udmabuf",
            "backing": "hugetlb" if self.hugetlb else "shmem",
            "contiguous": False,
            "contiguous_chunk": self.contiguous_chunk,
            "cpu_cache": "cached",
            "location": "system",
            "max_size": self.max_size,
            "region_size": self.size,
            "alignment": self.align,
            "hugetlb": self.hugetlb,
            "huge_page_size": HUGE_PAGE_SIZE if self.hugetlb else None,
            "kernel_cpu_mapping_safe": self.kernel_cpu_mapping_safe,
            "kernel_cpu_mapping_note": self.kernel_cpu_mapping_note or None,
            "zeroed": True,
            "fallback": heap_label(self.fallback) if self.fallback is not None else None,
        }

    # -- lifetime ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedResourceError(f"{self._what()} is closed")

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._closed

    def close(self) -> None:
        """Release the region, the udmabuf node and the pins. Idempotent.

        Buffers carved before stay valid (each dma-buf pins its own pages) and close as usual.
        """
        with self._cond:
            if self._closed:
                return
            self._closed = True
            while self._busy:
                self._cond.wait()
            carves = [*self._live.values(), *self._pending.values()]
            self._live.clear()
            self._pending.clear()
            self._orphans.clear()
            for carve in carves:
                carve.pin.close()
            self._map.close()
            self._udmabuf.close()
            self._memfd.close()
            _discharge(self.size)

    def __enter__(self) -> Carveout:
        self._check_open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self._ranges.free_bytes} bytes free"
        return f"<Carveout {self._what()} {state}>"


class CarveoutHeap:
    """A :class:`Carveout` as a heap of the registry (``HeapRegistry.add(CarveoutHeap(c))``).

    Example:
        >>> registry.add(CarveoutHeap(Carveout(64 << 20, fallback=system)))  # doctest: +SKIP

    Its properties come from :meth:`Carveout.properties_hint`: scattered (shmem) or
    huge-page-contiguous chunks (hugetlb, ``chunk`` = 2 MiB), cached, system memory. A hugetlb
    carveout whose buffers the kernel may map wrongly (``kernel_cpu_mapping_safe`` False) says so
    in its ``name``, which every explanation shows, so nobody is offered it silently.
    """

    def __init__(self, carveout: Carveout) -> None:
        if not isinstance(carveout, Carveout):
            raise UsageError(f"CarveoutHeap needs a Carveout, not {carveout!r:.80}")
        self.carveout = carveout
        hint = carveout.properties_hint()
        label = f"carveout {carveout.name} ({hint['backing']})"
        if not carveout.kernel_cpu_mapping_safe:
            label += (
                " [kernel CPU mappings unsafe: "
                + (carveout.kernel_cpu_mapping_note or "see Carveout.kernel_cpu_mapping_note")[:80]
                + "]"
            )
        chunk = hint["contiguous_chunk"]
        self.properties = HeapProperties(
            "carveout",
            label,
            contiguous=False,
            cpu_cache="cached",
            protected=False,
            cpu_mappable=True,
            location="system",
            max_size=carveout.max_size,
            chunk=chunk if isinstance(chunk, int) and chunk > 0 else None,
        )

    def allocate(self, size: int, *, name: str | None = None) -> Buffer:
        """Carve ``size`` bytes (or fall back, as the carveout does); name the dma-buf."""
        buf = self.carveout.allocate(size)
        return named(buf, name)

    def close(self) -> None:
        """Close the carveout (its region is freed once every carved buffer is closed)."""
        self.carveout.close()

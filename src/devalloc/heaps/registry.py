"""The heap registry: every heap this machine offers, chosen by properties, carried as HeapIds.

Example:
    >>> with HeapRegistry.discover() as registry:
    ...     heap = registry.select(HeapRequest(device_importable=False))
    ...     with registry.allocate(heap, 4096, name="scratch") as buf:
    ...         buf.size
    ...     registry.stats(heap).allocations
    4096
    1

Discovery finds the dma-heap nodes, udmabuf, the DRM card nodes that can allocate dumb buffers
("device heaps") and, always last, the CPU-only memfd heap. A node this process cannot open is
listed with ``accessible=False`` and the reason, and selection moves on.

Selection order (the order of :meth:`HeapRegistry.heaps`), decided by properties, never names:

1. dma-heaps: scattered cached (``system``), scattered write-combined (``system-uncached``),
   contiguous (CMA), protected, then those with unknown properties;
2. udmabuf; 3. device heaps; 4. carveouts; 5. memfd.

So an ordinary request gets the system heap and leaves CMA alone, a contiguous one gets CMA
before a carveout, and memfd is chosen only when devices need not import the buffer. A
``cpu_cache`` preference moves heaps with that cache mode to the front without excluding others.

Guards before the kernel: a size that is not a positive int, and a single allocation above the
registry's cap, are refused with :class:`UsageError`. The cap is devalloc's per-buffer cap
(:func:`devalloc.limits.max_buffer`, which every heap enforces and which ``DEVALLOC_MAX_BUFFER``
or ``limits.set_limits`` raise) unless ``HeapRegistry(cap=...)`` sets a registry's own; the
process total (:func:`devalloc.limits.max_total`) applies in the heaps either way.
"""

from __future__ import annotations

import errno as _errno
import os
import time
from collections.abc import Callable, Iterator, Sized
from dataclasses import dataclass, field
from typing import NoReturn, Protocol, Self

from .._fd import check_path
from ..buffer import Buffer, CloseHook, check_name
from ..drm import drm_nodes
from ..errors import (
    ClosedResourceError,
    DevallocError,
    KernelError,
    NoPlanError,
    PermissionDeniedError,
    UsageError,
    error_from_errno,
)
from ..limits import CLOSE_HOOKS as LIMITS_CLOSE_HOOKS
from ..limits import max_buffer as _max_buffer
from ..limits import mem_total
from ..limits import read_meminfo as read_meminfo
from .device import DeviceHeap
from .dmaheap import DmaHeap, DmaHeapBackend, heap_paths
from .memfd import MemfdHeap
from .properties import HeapProperties, HeapRequest, dma_heap_properties, unmet
from .stats import FOLD_AT, HeapStats, StatsSnapshot
from .udmabuf import DEFAULT_SIZE_LIMIT, UdmabufHeap, size_limit_bytes, udmabuf_properties


class HeapBackend(Protocol):
    """What the registry needs of a heap: its properties, ``allocate`` and ``close``."""

    @property
    def properties(self) -> HeapProperties: ...

    def allocate(self, size: int, *, name: str | None = None) -> Buffer: ...

    def close(self) -> None: ...


class HeapId:
    """An opaque handle on one heap of one :class:`HeapRegistry`: hashable, compared by
    identity, valid for the registry's life. Its repr shows the heap's name for debugging only."""

    __slots__ = ("_name", "_owner")

    def __init__(self, owner: object, name: str) -> None:
        self._owner = owner
        self._name = name

    def __repr__(self) -> str:
        return f"<HeapId {self._name}>"

    def __copy__(self) -> HeapId:
        return self

    def __deepcopy__(self, memo: object) -> HeapId:
        return self

    def __reduce__(self) -> NoReturn:
        raise TypeError("a HeapId is valid only in the process and registry that made it")


@dataclass(frozen=True)
class Candidate:
    """One heap considered for a request: accepted when ``reasons`` is empty.

    Attributes:
        heap_id: the heap.
        properties: its properties.
        reasons: why it was rejected, one phrase each ("is scattered", "is not accessible: ...").
    """

    heap_id: HeapId
    properties: HeapProperties
    reasons: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when the heap satisfies the request."""
        return not self.reasons

    def explain(self) -> str:
        """``"NAME ok"`` or ``"NAME is scattered and ..."``."""
        return f"{self.properties.name} {' and '.join(self.reasons) or 'ok'}"


class NoHeapError(NoPlanError):
    """No accessible heap satisfies a request. ``conflicts`` holds the rejected
    :class:`Candidate` objects, each with its reasons."""


_UNBOUNDED = 1 << 64
_now = time.perf_counter_ns
_KIND_RANK = {"dma-heap": 0, "udmabuf": 1, "device": 2, "carveout": 3, "memfd": 4}


def selection_rank(props: HeapProperties) -> tuple[int, int]:
    """Where a heap goes in the selection order (lower first), from its properties alone."""
    sub = 0
    if props.kind == "dma-heap":
        if props.protected is True:
            sub = 3
        elif props.protected is None or props.contiguous is None:
            sub = 4  # unknown properties
        elif props.contiguous:
            sub = 2
        elif props.cpu_cache != "cached":
            sub = 1
    return _KIND_RANK.get(props.kind, len(_KIND_RANK)), sub


@dataclass(slots=True)
class _Entry:
    heap_id: HeapId
    properties: HeapProperties
    backend: HeapBackend | None
    stats: HeapStats
    errno: int
    rank: tuple[int, int, int]
    # The hot path of HeapRegistry.allocate, computed once: the backend's allocate(size) (its
    # unnamed fast form when it has one), the largest size it takes (the heap's and the
    # registry's own cap; 0: not accessible), the stats' logs and the close hooks every buffer
    # gets (``charged_hooks`` for a buffer the heap charged to devalloc.limits, the common case:
    # the counters' log alone, which discharges it; ``close_hooks`` added to any other's).
    cap: int = _UNBOUNDED
    allocate: Callable[[int], Buffer] | None = None
    max_size: int = 0
    close_hooks: tuple[CloseHook, ...] = ()
    charged_hooks: tuple[CloseHook, ...] = ()
    latency_hook: Callable[[int], None] = field(init=False)
    event_hook: Callable[[int], None] = field(init=False)
    events: Sized = field(init=False)

    def __post_init__(self) -> None:
        stats = self.stats
        self.latency_hook, self.event_hook, self.events = (
            stats.latency_hook,
            stats.close_hook,
            stats.log,
        )
        backend = self.backend
        if backend is not None:
            self.allocate = getattr(backend, "allocate_unnamed", None) or backend.allocate
            self.max_size = min(self.properties.max_size or _UNBOUNDED, self.cap)
        self.close_hooks = (self.stats.record_close,)
        self.charged_hooks = (self.stats.close_hook,)


class HeapRegistry:
    """Heaps by HeapId: discovery, selection by properties, allocation, per-heap counters.

    Args:
        cap: the largest single allocation in bytes (default: devalloc's per-buffer cap,
            :func:`devalloc.limits.max_buffer`, which applies in every heap anyway).
        proc: where procfs is mounted (kept for compatibility: the caps come from
            :mod:`devalloc.limits`).

    The registry owns every backend added to it (open heap nodes) and closes them with
    :meth:`close`; buffers already allocated stay valid.
    """

    def __init__(self, *, cap: int | None = None, proc: str = "/proc") -> None:
        if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap <= 0):
            raise UsageError(f"heap registry: cap must be a positive integer of bytes, not {cap!r}")
        check_path(proc, what="heap registry: proc")
        self._entries: list[_Entry] = []
        self._by_id: dict[HeapId, _Entry] = {}
        self._token = object()
        self._closed = False
        self._cap = cap  # None: devalloc.limits' per-buffer cap, checked by the heaps
        # HeapId -> entry, for accessible heaps while the registry is open (the hot path's
        # lookup: one dict.get stands for "known, accessible, open")
        self._open: dict[HeapId, _Entry] = {}

    @property
    def cap(self) -> int:
        """The largest single allocation in bytes: ``HeapRegistry(cap=...)``, else devalloc's
        per-buffer cap (:func:`devalloc.limits.max_buffer`)."""
        return self._cap if self._cap is not None else _max_buffer()

    @classmethod
    def discover(
        cls,
        dev: str = "/dev",
        sysfs: str = "/sys",
        *,
        cap: int | None = None,
        proc: str = "/proc",
    ) -> HeapRegistry:
        """Find every heap: dma-heap nodes, udmabuf, DRM card nodes with dumb buffers, memfd.

        Args:
            dev, sysfs, proc: where /dev, /sys and /proc are (another tree for tests).
            cap: the largest single allocation (default: :func:`devalloc.limits.max_buffer`).
        """
        dev, sysfs = check_path(dev, what="dev"), check_path(sysfs, what="sysfs")
        registry = cls(cap=cap, proc=proc)
        try:
            ram_bits = system_ram_bits(proc)
            cma = read_meminfo(proc).get("CmaTotal")
            for path in heap_paths(os.path.join(dev, "dma_heap")):
                props = dma_heap_properties(
                    os.path.basename(path), path=path, dma_bits=ram_bits, cma_bytes=cma
                )
                try:
                    registry.add(DmaHeapBackend(DmaHeap(path, properties=props)))
                except KernelError as exc:
                    registry.add_unavailable(
                        props.unavailable(str(exc)), errno=exc.errno or _errno.EACCES
                    )
            udmabuf = os.path.join(dev, "udmabuf")
            if os.path.exists(udmabuf):
                param = os.path.join(sysfs, "module", "udmabuf", "parameters", "size_limit_mb")
                try:
                    registry.add(UdmabufHeap(udmabuf, size_limit_param=param, dma_bits=ram_bits))
                except KernelError as exc:
                    limit = size_limit_bytes(param) or DEFAULT_SIZE_LIMIT
                    props = udmabuf_properties(limit, dma_bits=ram_bits)
                    registry.add_unavailable(
                        props.unavailable(str(exc)), errno=exc.errno or _errno.EACCES
                    )
            for path in drm_nodes(os.path.join(dev, "dri")):
                if not os.path.basename(path).startswith("card"):
                    continue  # render nodes refuse dumb buffers
                try:
                    registry.add(DeviceHeap(path, sysfs=sysfs, dma_bits=ram_bits))
                except PermissionDeniedError as exc:
                    props = HeapProperties(kind="device", name=path)
                    reason = f"{exc}; whether it can allocate dumb buffers is unknown"
                    registry.add_unavailable(
                        props.unavailable(reason), errno=exc.errno or _errno.EACCES
                    )
                except KernelError:
                    continue  # no dumb buffers here: not a heap
            registry.add(MemfdHeap(dma_bits=ram_bits))
        except BaseException:
            registry.close()
            raise
        return registry

    # -- membership ------------------------------------------------------------------------

    def _insert(self, entry: _Entry) -> HeapId:
        index = len(self._entries)
        while index and self._entries[index - 1].rank > entry.rank:
            index -= 1
        self._entries.insert(index, entry)
        self._by_id[entry.heap_id] = entry
        if entry.backend is not None:
            self._open[entry.heap_id] = entry
        return entry.heap_id

    def _new_entry(self, props: HeapProperties, backend: HeapBackend | None, err: int) -> _Entry:
        rank = (*selection_rank(props), len(self._entries))
        cap = _UNBOUNDED if self._cap is None else self._cap
        heap_id = HeapId(self._token, props.name)
        return _Entry(heap_id, props, backend, HeapStats(charged_closes=True), err, rank, cap)

    def add(self, backend: HeapBackend) -> HeapId:
        """Register an open heap; the registry now owns it (and closes it with :meth:`close`).
        It takes its place in the selection order by its properties."""
        self._check_open()
        props = getattr(backend, "properties", None)
        if (
            not isinstance(props, HeapProperties)
            or not props.accessible
            or not callable(getattr(backend, "allocate", None))
            or not callable(getattr(backend, "close", None))
        ):
            raise UsageError(f"heap registry: {backend!r} must have accessible HeapProperties")
        return self._insert(self._new_entry(props, backend, 0))

    def add_unavailable(self, properties: HeapProperties, *, errno: int = _errno.EACCES) -> HeapId:
        """List a heap this process cannot use (``properties.accessible`` False, with the
        reason); allocating from it raises the errno's error."""
        self._check_open()
        if not isinstance(properties, HeapProperties):
            raise UsageError(f"heap registry: expected HeapProperties, not {properties!r:.80}")
        if not isinstance(errno, int) or isinstance(errno, bool) or not 0 < errno < 4096:
            raise UsageError(f"heap registry: errno must be an errno number, not {errno!r}")
        if properties.accessible:
            raise UsageError(
                f"heap registry: {properties.name} is listed as unavailable but marked accessible"
            )
        return self._insert(self._new_entry(properties, None, errno))

    # -- queries ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedResourceError("the heap registry is closed")

    def _entry(self, heap_id: HeapId) -> _Entry:
        self._check_open()
        try:
            entry = self._by_id.get(heap_id)
        except TypeError:
            entry = None
        if entry is not None:
            return entry
        if isinstance(heap_id, HeapId):
            raise UsageError(
                f"{heap_id!r} belongs to another heap registry (HeapIds are per registry)"
            )
        raise UsageError(f"not a HeapId: {heap_id!r}")

    def __iter__(self) -> Iterator[HeapId]:
        self._check_open()
        return iter([e.heap_id for e in self._entries])

    def heaps(self) -> list[tuple[HeapId, HeapProperties]]:
        """Every heap with its properties, in selection order."""
        self._check_open()
        return [(e.heap_id, e.properties) for e in self._entries]

    def properties(self, heap_id: HeapId) -> HeapProperties:
        """The properties of one heap."""
        return self._entry(heap_id).properties

    def candidates(self, request: HeapRequest) -> list[Candidate]:
        """Every heap judged against ``request``: the accepted ones first, in the order
        :meth:`select` tries them, then the rejected ones (registry order), each with its
        reasons. Never raises for a request nothing satisfies (see :meth:`select`)."""
        self._check_open()
        if not isinstance(request, HeapRequest):
            raise UsageError(f"heap registry: expected a HeapRequest, not {request!r}")
        judged = []
        for entry in self._entries:
            props = entry.properties
            reasons = unmet(props, request)
            if not props.accessible:
                reasons.insert(0, f"is not accessible ({props.reason})")
            judged.append(Candidate(entry.heap_id, props, tuple(reasons)))
        preferred = request.cpu_cache
        accepted = [c for c in judged if c.ok]
        if preferred is not None:
            accepted.sort(key=lambda c: c.properties.cpu_cache != preferred)
        return accepted + [c for c in judged if not c.ok]

    def select(self, request: HeapRequest) -> HeapId:
        """The first accessible heap whose known properties satisfy ``request``.

        Raises:
            NoHeapError: none does; the message names what is missing and why each heap was
                rejected ("no accessible contiguous, device-importable, CPU rw heap:
                /dev/dma_heap/system is scattered; udmabuf is scattered; ...").
        """
        candidates = self.candidates(request)
        if candidates and candidates[0].ok:
            return candidates[0].heap_id
        detail = "; ".join(c.explain() for c in candidates) or "no heaps at all"
        raise NoHeapError(
            f"no accessible {request.describe()} heap: {detail}", conflicts=candidates
        )

    # -- allocation ------------------------------------------------------------------------

    def allocate(self, heap_id: HeapId, size: int, *, name: str | None = None) -> Buffer:
        """Allocate ``size`` bytes (rounded up by the heap) from one heap.

        Args:
            heap_id: from :meth:`select` or :meth:`heaps` of this registry.
            size: bytes, a positive int no larger than :attr:`cap`.
            name: a dma-buf name (at most 31 bytes; the memfd's name on the memfd heap).

        Raises:
            UsageError: an unknown HeapId, a bad size or name, a size above the cap or the heap's
                ``max_size``.
            ClosedResourceError: the registry is closed.
            PermissionDeniedError (or the errno's error): the heap is not accessible.
            KernelError: what the kernel said (counted as a failure in the heap's stats).
        """
        entry = self._open.get(heap_id) if type(heap_id) is HeapId else None
        if (
            entry is None
            or name is not None
            or type(size) is not int
            or not 0 < size <= entry.max_size
        ):
            # Everything but the common case: the full checks, each with its own message.
            entry = self._checked_entry(heap_id, size, name)
        allocate = entry.allocate
        start = _now()
        try:
            # (_checked_entry refused an inaccessible heap: allocate and backend are set)
            buf = (
                allocate(size)  # type: ignore[misc]
                if name is None
                else entry.backend.allocate(size, name=name)  # type: ignore[union-attr]
            )
        except Exception as exc:
            if not isinstance(exc, UsageError):  # a cap's refusal did not reach the kernel
                entry.stats.record_failure()
            raise
        latency = _now() - start
        # The buffer was made just now by the backend: no one else holds it yet. Its close hook
        # is set before the allocation is logged, with no call in between, so that a signal's
        # exception (raised only after a call) leaves both logged or neither.
        hooks = buf._close_hooks
        if hooks is LIMITS_CLOSE_HOOKS:
            # the heap charged devalloc.limits (every built-in heap): one hook, the counters'
            # log, which passes the close on to devalloc.limits when it folds
            buf._close_hooks = entry.charged_hooks
        else:
            buf._close_hooks = hooks + entry.close_hooks
        # HeapStats.record_allocation, inlined (one call less at allocation rate)
        entry.event_hook(-buf.size)
        entry.latency_hook(latency)
        if len(entry.events) >= FOLD_AT:
            entry.stats.fold()
        return buf

    def _checked_entry(self, heap_id: HeapId, size: int, name: str | None) -> _Entry:
        entry = self._entry(heap_id)
        props = entry.properties
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise UsageError(
                f"heap {props.name}: size must be a positive integer of bytes, not {size!r}"
            )
        if self._cap is not None and size > self._cap:
            raise UsageError(
                f"heap {props.name}: {size} bytes is above this registry's per-allocation cap "
                f"of {self._cap} bytes (HeapRegistry(cap=...) sets it)"
            )
        if props.max_size is not None and size > props.max_size:
            raise UsageError(
                f"heap {props.name}: {size} bytes is above the heap's largest buffer, "
                f"{props.max_size} bytes"
            )
        if name is not None:
            check_name(name)
        if entry.backend is None:
            raise error_from_errno(
                entry.errno or _errno.EACCES,
                f"heap {props.name} is not accessible: {props.reason}",
            )
        return entry

    # -- counters --------------------------------------------------------------------------

    def stats(self, heap_id: HeapId) -> StatsSnapshot:
        """The in-process counters of one heap."""
        entry = self._entry(heap_id)
        return entry.stats.snapshot(entry.properties.name, entry.properties.kind)

    def stats_all(self) -> dict[HeapId, StatsSnapshot]:
        """The counters of every heap, in selection order."""
        self._check_open()
        return {
            e.heap_id: e.stats.snapshot(e.properties.name, e.properties.kind) for e in self._entries
        }

    # -- lifetime --------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._closed

    def close(self) -> None:
        """Close every heap the registry owns. Idempotent; allocated buffers stay valid."""
        if self._closed:
            return
        self._closed = True
        self._open.clear()
        errors: list[BaseException] = []
        for entry in self._entries:
            entry.stats.retire()  # devalloc.limits folds them until their buffers are closed
            if entry.backend is not None:
                try:
                    entry.backend.close()
                except DevallocError as exc:  # pragma: no cover - closing an fd does not fail
                    errors.append(exc)
        if errors:  # pragma: no cover
            raise errors[0]

    def __del__(self) -> None:
        # A registry dropped without close(): its counters retire all the same (devalloc.limits
        # folds them until their buffers are closed, then lets them go).
        for entry in self.__dict__.get("_entries", ()):
            entry.stats.retire()

    def __enter__(self) -> Self:
        self._check_open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._entries)} heaps"
        return f"<HeapRegistry {state}>"


# -- /proc readers -------------------------------------------------------------------------


def default_cap(proc: str = "/proc") -> int:
    """Half of MemTotal (from sysconf when /proc/meminfo cannot be read): the per-buffer rule of
    :mod:`devalloc.limits` for a machine without a cgroup limit."""
    return max(mem_total(proc) // 2, 1)


def system_ram_bits(proc: str = "/proc") -> int | None:
    """Address bits that cover every "System RAM" range of /proc/iomem (the physical reach of
    any page of main memory); None when the addresses are hidden (not root) or unreadable."""
    proc = check_path(proc, what="proc")
    try:
        with open(os.path.join(proc, "iomem"), encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    top = 0
    for line in lines:
        span, _, what = line.partition(" : ")
        if what.strip() != "System RAM" or line.startswith(" "):
            continue
        try:
            end = int(span.strip().partition("-")[2], 16)
        except ValueError:
            continue
        top = max(top, end)
    return top.bit_length() if top else None

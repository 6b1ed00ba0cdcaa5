"""The front door: devices' constraints -> a plan -> a heap chosen by properties -> buffers.

Example:
    >>> from devalloc.allocator import Allocator
    >>> with Allocator(discover_devices=False) as alloc:               # doctest: +SKIP
    ...     with alloc.allocate(1920, 1080, usages=["rkisp1:mainpath", "rk3399-vop:primary"],
    ...                         count=4, allow_cpu_only=True) as frames:
    ...         frames.plan.format.name, len(frames.buffers)
    ('NV12', 4)

What :meth:`Allocator.allocate` does:

1. resolves every usage: an explicit :class:`~devalloc.constraints.Constraints`, a live device
   found by discovery (``"vivid-000-vid-cap:capture"``), a bundled profile
   (``"rk3399-vop:primary"``) or a device file (``"board/isp.toml:main"``); a usage may be
   ``"device"`` (every usage of it) or ``"device:usage"``;
2. negotiates them (:func:`devalloc.negotiate.negotiate`: a :class:`NegotiationError` carries
   the conflicts and a copy-path proposal);
3. turns the plan's memory rules into a :class:`HeapRequest` and lets the heap registry pick the
   first heap whose *known* properties satisfy it (no heap is chosen by name);
4. allocates ``count`` images (one dma-buf per image, or one per plane for per-plane layouts);
5. with ``verify=True``, imports them into every live device (:func:`devalloc.devices.verify`).
   A failure with a named cause (size, contiguity, modifier) becomes a learned constraint of
   that device: the allocator re-negotiates with it, picks a heap again and retries, and keeps
   what it learned for later calls. When no heap can serve what was learned, the
   :class:`NoPlanError` says what is missing and what would fix it (e.g. a CMA region).

Negotiation is a pure function of the resolved constraints and the image request, so the
allocator keeps the plans it made (:data:`PLAN_CACHE_SIZE`, ``plan_cache_size``): an
allocation asked for again skips step 2 (the heap is still selected and the buffers allocated
every time). The key is everything the plan depends on: the resolved constraints (learned ones
included), width, height, formats, CPU access, the cache preference and (for :meth:`plan`) the
application's buffer counts and slack; what verification learns also empties the cache.

On a machine with no device-importable heap (no /dev/dma_heap access, no udmabuf),
``allow_cpu_only=True`` falls back to the CPU-only memfd heap so that a pipeline can still be
planned, laid out and filled; :attr:`Allocation.notes` says that no device can import such
buffers. Devices known only from profiles are never "verified": the allocation records that.

With no usages at all (``usages=[]``, ``devalloc alloc`` without ``-d``) the buffers are for the
application alone: its formats (a drm-format such as ``NV12:0x0100000000000002`` names the
modifier too) and its CPU access decide, any heap will do (CPU-only memfd included), the plan's
``devices`` is empty and the first note says that no device took part.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from . import limits
from .buffer import Buffer
from .constraints import BufferCounts, Constraints, CpuAccess, load_constraints
from .devices.discover import DeviceInfo, Discovery, discover
from .devices.verify import Verdict
from .devices.verify import verify as verify_import
from .errors import (
    ClosedResourceError,
    NoPlanError,
    OutOfMemoryError,
    UsageError,
    error_from_errno,
)
from .formats import DRM_FORMAT_MOD_LINEAR, lookup_format, parse_drm_format
from .heaps.properties import HeapProperties, HeapRequest
from .heaps.registry import HeapId, HeapRegistry, NoHeapError
from .negotiate import APPLICATION, Plan, negotiate
from .negotiate.combine import DEFAULT_SLACK
from .pool import BufferPool, ZeroPolicy

__all__ = ["Allocation", "Allocator", "Attempt", "UsageSpec", "heap_request"]

#: A usage: explicit constraints, "device", "device:usage" or (device, usage).
UsageSpec = Constraints | str | tuple[str, str]

#: Re-negotiations after learned constraints before giving up.
MAX_ATTEMPTS = 4

#: Plans an :class:`Allocator` keeps by default (the oldest goes first when full).
PLAN_CACHE_SIZE = 256

#: A plan cache key: resolved constraints, width, height, formats, CPU access, cache preference,
#: the application's buffer counts and the slack.
_PlanKey = tuple[
    tuple[Constraints, ...],
    int,
    int,
    tuple[str | int, ...] | None,
    str,
    bool,
    BufferCounts | None,
    int,
]


def heap_request(plan: Plan, *, device_importable: bool = True) -> HeapRequest:
    """What ``plan`` needs of its heap.

    Example:
        >>> from devalloc.constraints import Constraints, MemoryRules
        >>> from devalloc.formats import fourcc_code
        >>> c = Constraints("npu", "input", ((fourcc_code("XR24"), 0),),
        ...                 memory=MemoryRules(contiguous=True, dma_bits=32))
        >>> heap_request(negotiate([c], 64, 64)).describe()
        'contiguous, device-importable, below 2**32, in system memory, 16384 bytes'
    """
    if not isinstance(plan, Plan):
        raise UsageError(f"heap_request takes a Plan, not {plan!r:.80}")
    if not isinstance(device_importable, bool):
        raise UsageError(f"device_importable is True or False, not {device_importable!r:.80}")
    memory = plan.memory
    sizes = plan.layout.buffer_sizes or ((plan.layout.size,) if plan.layout.size else ())
    return HeapRequest(
        contiguous=memory.contiguous,
        dma_bits=memory.dma_bits if memory.dma_bits < 64 else None,
        protected=memory.protected,
        location=None if memory.location == "any" else memory.location,
        cpu_access=memory.cpu_access,
        cpu_cache="write-combined" if plan.cache.cpu_mapping == "write-combined" else None,
        device_importable=device_importable,
        size=max(sizes) if sizes else None,
    )


@dataclass(frozen=True)
class Attempt:
    """One round of negotiate -> allocate -> verify that did not stick.

    Attributes:
        plan: what was negotiated.
        heap: the chosen heap's name (diagnostics only).
        verdicts: what the live devices said.
        learned: "device:usage learned <kind>" lines.
    """

    plan: Plan
    heap: str
    verdicts: tuple[Verdict, ...]
    learned: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """Plan summary, heap, verdicts and what was learned."""
        return {
            "format": self.plan.format.name,
            "modifier": self.plan.modifier.name,
            "heap": self.heap,
            "verdicts": [v.to_json() for v in self.verdicts],
            "learned": list(self.learned),
        }


@dataclass
class Allocation:
    """Buffers every named device can use, with the plan and how they were chosen.

    Attributes:
        plan: the negotiated plan (format, modifier, layout, memory, cache policy).
        heap: the heap the buffers came from (opaque).
        heap_properties: that heap's properties.
        images: one tuple of Buffers per image (one Buffer, or one per plane).
        verdicts: per live device, what verification found (empty without ``verify``).
        unverified: labels of devices that were not verified (profiles, or ``verify=False``).
        attempts: earlier rounds whose verification failed and taught a constraint.
        notes: anything the caller must know (CPU-only fallback, learned constraints...).
    """

    plan: Plan
    heap: HeapId
    heap_properties: HeapProperties
    images: tuple[tuple[Buffer, ...], ...]
    verdicts: tuple[Verdict, ...] = ()
    unverified: tuple[str, ...] = ()
    attempts: tuple[Attempt, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def buffers(self) -> list[Buffer]:
        """The first buffer of every image (every buffer for single-buffer layouts)."""
        return [image[0] for image in self.images]

    @property
    def closed(self) -> bool:
        """Every buffer is closed."""
        return all(b.closed for image in self.images for b in image)

    def close(self) -> None:
        """Close every buffer (idempotent)."""
        for image in self.images:
            for buf in image:
                buf.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def to_json(self) -> dict[str, Any]:
        """The plan, the heap's properties, per-buffer fd info, verdicts, attempts and notes."""
        buffers = []
        for i, image in enumerate(self.images):
            for j, buf in enumerate(image):
                entry: dict[str, Any] = {"image": i, "buffer": j, "size": buf.size}
                if not buf.closed and buf.is_dmabuf:
                    info = buf.info()
                    entry.update(inode=info.inode, exporter=info.exp_name, name=info.name)
                buffers.append(entry)
        return {
            "plan": self.plan.to_json(),
            "heap": self.heap_properties.to_json(),
            "buffers": buffers,
            "verdicts": [v.to_json() for v in self.verdicts],
            "unverified": list(self.unverified),
            "attempts": [a.to_json() for a in self.attempts],
            "notes": list(self.notes),
        }


class Allocator:
    """Discovers heaps and devices once, then negotiates and allocates for any set of usages.

    Args:
        registry: the heaps to choose from (default: :meth:`HeapRegistry.discover`); the
            allocator closes it only if it created it.
        discovery: live devices (default: :func:`devalloc.devices.discover` when
            ``discover_devices``; none otherwise).
        discover_devices: look for live DRM and V4L2 devices.
        constraints: extra explicit constraints, addressable by their ``device`` name.
        dev: the /dev directory for discovery.
        sysfs: the /sys directory for discovery.
        plan_cache_size: plans kept for requests asked for again (0: negotiate every time).

    Attributes:
        learned: what verification taught, by label.
        negotiations: negotiations run so far (a plan taken from the cache is not one).
    """

    def __init__(
        self,
        *,
        registry: HeapRegistry | None = None,
        discovery: Discovery | None = None,
        discover_devices: bool = True,
        constraints: Iterable[Constraints] = (),
        dev: str = "/dev",
        sysfs: str = "/sys",
        plan_cache_size: int = PLAN_CACHE_SIZE,
    ) -> None:
        self._registry: HeapRegistry | None = None
        self._own_registry = registry is None
        _check_arguments(registry, discovery, discover_devices, dev, sysfs)
        if (
            isinstance(plan_cache_size, bool)
            or not isinstance(plan_cache_size, int)
            or plan_cache_size < 0
        ):
            raise UsageError(
                f"plan_cache_size is a count of plans (0: none kept), not {plan_cache_size!r:.80}"
            )
        self._plan_cache_size = plan_cache_size
        self._plans: dict[_PlanKey, Plan] = {}
        self.negotiations = 0
        self._registry = registry if registry is not None else HeapRegistry.discover(dev, sysfs)
        try:
            if discovery is None:
                discovery = discover(dev, sysfs) if discover_devices else Discovery()
        except BaseException:
            self.close()
            raise
        self.discovery = discovery
        self._explicit: dict[str, list[Constraints]] = {}
        try:
            for c in _constraints_list(constraints):
                self._explicit.setdefault(c.device, []).append(c)
        except BaseException:
            self.close()
            raise
        #: What verification taught, by label; used by every later negotiation.
        self.learned: dict[str, Constraints] = {}

    @property
    def registry(self) -> HeapRegistry:
        """The heap registry."""
        if self._registry is None:
            raise ClosedResourceError("the allocator is closed")
        return self._registry

    @property
    def closed(self) -> bool:
        """The allocator was closed."""
        return self._registry is None

    def close(self) -> None:
        """Close the heap registry if this allocator created it (idempotent)."""
        registry, self._registry = self._registry, None
        if registry is not None and self._own_registry:
            registry.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- usages ---------------------------------------------------------------------------------

    def _live(self, name: str) -> DeviceInfo | None:
        for device in self.discovery.devices():
            if name == device.name or name == getattr(device, "path", None):
                return device
        return None

    def resolve(self, spec: UsageSpec) -> list[tuple[Constraints, DeviceInfo | None]]:
        """The constraints a usage names, each with its live device (None for profiles/files).

        Raises:
            UsageError: an unknown device or usage, a bad file.
        """
        if isinstance(spec, Constraints):
            return [(self.learned.get(spec.label, spec), None)]
        if isinstance(spec, tuple):
            if len(spec) != 2 or not all(isinstance(s, str) for s in spec):
                raise UsageError(
                    f"a usage is 'device', 'device:usage' or (device, usage): {spec!r}"
                )
            name, usage = spec
            wanted: str | None = usage
        elif isinstance(spec, str):
            name, _, usage = spec.rpartition(":") if ":" in spec else (spec, "", "")
            wanted = usage or None
        else:
            raise UsageError(f"a usage is 'device', 'device:usage' or (device, usage): {spec!r}")
        found: list[tuple[Constraints, DeviceInfo | None]]
        device = self._live(name)
        if device is not None:
            pairs: list[tuple[Constraints, DeviceInfo | None]] = [
                (c, device) for c in device.usages
            ]
            found = [p for p in pairs if wanted is None or p[0].usage == wanted]
            if not found:
                usages = ", ".join(c.usage for c in device.usages) or "none"
                raise UsageError(f"device {name} has no usage {wanted!r} (it has: {usages})")
        elif name in self._explicit:
            found = [(c, None) for c in self._explicit[name] if wanted in (None, c.usage)]
            if not found:
                usages = ", ".join(c.usage for c in self._explicit[name])
                raise UsageError(f"device {name} has no usage {wanted!r} (it has: {usages})")
        else:
            target = name if wanted is None else f"{name}:{wanted}"
            found = [(c, None) for c in load_constraints(target)]
        return [(self.learned.get(c.label, c), d) for c, d in found]

    def _resolve_all(
        self, usages: Sequence[UsageSpec]
    ) -> tuple[list[Constraints], dict[str, DeviceInfo]]:
        if (
            isinstance(usages, str | bytes | bytearray | Constraints)
            or not isinstance(usages, Iterable)
            or not usages
        ):
            raise UsageError(
                f"usages is a non-empty list of 'device[:usage]' or Constraints, not {usages!r:.80}"
            )
        constraints: list[Constraints] = []
        live: dict[str, DeviceInfo] = {}
        for spec in usages:
            for c, device in self.resolve(spec):
                constraints.append(c)
                if device is not None:
                    live[c.label] = device
        return constraints, live

    # --- planning and allocation ------------------------------------------------------------------

    def plan(
        self,
        width: int,
        height: int,
        *,
        usages: Sequence[UsageSpec],
        formats: Sequence[str | int] | None = None,
        cpu_access: CpuAccess = "none",
        prefer_uncached: bool = False,
        counts: BufferCounts | None = None,
        slack: int = DEFAULT_SLACK,
    ) -> Plan:
        """Negotiate without allocating: the plan :meth:`allocate` would start from (raises
        NegotiationError when there is no plan).

        Buffers come from a heap, so a vendor-private pair (whose size only its exporter knows)
        is passed over for the next pair every device accepts; the plan's ``skipped``
        provenance record says so.

        ``counts`` (the application's own holds and bounds; a fixed count is
        ``BufferCounts(min_count=n, max_count=n)``) and ``slack`` decide ``Plan.count`` as in
        :func:`~devalloc.negotiate.negotiate`; bounds that cannot meet are a count conflict
        (a NegotiationError naming the parties). Leaving both out gives the plan
        :meth:`allocate` starts from.
        """
        constraints, _ = self._resolve_all(usages)
        return self._negotiate(
            constraints, width, height, formats, cpu_access, prefer_uncached, counts, slack
        )

    def _negotiate(
        self,
        constraints: Sequence[Constraints],
        width: int,
        height: int,
        formats: Sequence[str | int] | None,
        cpu_access: CpuAccess,
        prefer_uncached: bool,
        counts: BufferCounts | None = None,
        slack: int = DEFAULT_SLACK,
    ) -> Plan:
        """:func:`negotiate` for a heap allocation, or the plan it gave for the same inputs
        before (arguments of any other type than the plain ones are not cached: negotiate
        judges them, and ``True`` never stands for a width of 1)."""
        key = _plan_key(
            constraints, width, height, formats, cpu_access, prefer_uncached, counts, slack
        )
        if key is not None and self._plan_cache_size:
            try:
                plan = self._plans.get(key)
            except TypeError:  # something unhashable inside: negotiate judges it
                key = None
            else:
                if plan is not None:
                    return plan
        self.negotiations += 1
        plan = negotiate(
            constraints,
            width,
            height,
            formats,
            cpu_access=cpu_access,
            prefer_uncached=prefer_uncached,
            known_layout=True,
            counts=counts,
            slack=slack,
        )
        if key is not None and self._plan_cache_size:
            if len(self._plans) >= self._plan_cache_size:
                del self._plans[next(iter(self._plans))]
            self._plans[key] = plan
        return plan

    def allocate_plan(
        self,
        plan: Plan,
        *,
        count: int = 1,
        allow_cpu_only: bool = False,
        name: str | None = None,
        unverified: Sequence[str] = (),
        notes: Sequence[str] = (),
    ) -> Allocation:
        """Allocate ``count`` images of a plan negotiated before (:meth:`plan`, or an
        Allocation's ``plan``), without negotiating again and without verification: the heap is
        selected now, with :meth:`allocate`'s CPU-only and out-of-memory fallbacks and caps.

        What a service does for a repeated request: negotiation is a pure function of the
        constraints, so a plan may be kept; heaps and memory are not, so they are asked again.

        Args:
            plan: the plan.
            count: images to allocate.
            allow_cpu_only: fall back to the CPU-only memfd heap when no device-importable heap
                can serve the plan (a plan with no device takes any heap anyway).
            name: a dma-buf name prefix, as :meth:`allocate`'s.
            unverified: labels of the plan's devices to report as not verified.
            notes: notes the caller has about the plan, first in the Allocation's notes.

        Raises:
            NoPlanError: no heap serves the plan.
            OutOfMemoryError: every heap that serves it is out of memory.
            UsageError: bad arguments, or a plan whose layout devalloc cannot allocate.
        """
        if not isinstance(plan, Plan):
            raise UsageError(f"plan must be a devalloc Plan, not {plan!r:.80}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise UsageError(f"count must be a positive integer, not {count!r:.80}")
        if not isinstance(allow_cpu_only, bool):
            raise UsageError(f"allow_cpu_only is True or False, not {allow_cpu_only!r:.80}")
        _check_name(name)
        for what, texts in (("unverified", unverified), ("notes", notes)):
            if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
                raise UsageError(f"{what} is a sequence of strings, not {texts!r:.80}")
        heap, chunk, heap_notes = self._select(plan, allow_cpu_only or not plan.devices, False)
        images, heap = self._allocate_with_fallback(plan, heap, count, name, chunk, heap_notes)
        return Allocation(
            plan,
            heap,
            self.registry.properties(heap),
            images,
            (),
            tuple(unverified),
            (),
            tuple(notes) + tuple(heap_notes),
        )

    def _select(
        self, plan: Plan, allow_cpu_only: bool, verify: bool
    ) -> tuple[HeapId, int | None, list[str]]:
        """The heap for ``plan``, the size to allocate each buffer at (None: the plan's), notes."""
        request = heap_request(plan)
        try:
            return self.registry.select(request), None, []
        except NoHeapError as exc:
            chunked = self._chunk_heap(request) if verify else None
            if chunked is not None:
                heap, chunk = chunked
                return (
                    heap,
                    chunk,
                    [
                        f"no contiguous heap here: each buffer is one {chunk}-byte block of the"
                        f" {self.registry.properties(heap).name} heap, whose allocator takes"
                        f" {chunk}-byte physically contiguous chunks first (best effort:"
                        " verification checks it)"
                    ],
                )
            if not allow_cpu_only or plan.memory.protected:
                hint = ""
                if not verify and self._chunk_heap(request) is not None:
                    hint = (
                        "; these buffers are small enough for one contiguous chunk of a"
                        " scattered heap: allocate with verify=True (--verify) to try it"
                    )
                raise NoPlanError(
                    f"{exc}; the plan for {', '.join(plan.devices)} needs {plan.heap_hint}"
                    f"{_fix_hint(plan)}{hint}",
                    exc.conflicts,
                ) from exc
        relaxed = dataclasses.replace(
            request, contiguous=False, dma_bits=None, location=None, device_importable=False
        )
        heap = self.registry.select(relaxed)
        note = (
            f"no device-importable heap here serves {request.describe()}: the buffers come from"
            f" the {self.registry.properties(heap).kind} heap (CPU only: no device can import"
            " them; the plan's layout is kept, its memory rules are not met)"
        )
        return heap, None, [note]

    def _chunk_heap(self, request: HeapRequest) -> tuple[HeapId, int] | None:
        """A scattered heap whose first-choice chunk holds a whole buffer of ``request``."""
        if not request.contiguous or request.size is None:
            return None
        loose = dataclasses.replace(request, contiguous=False)
        for candidate in self.registry.candidates(loose):
            chunk = candidate.properties.chunk
            if candidate.ok and chunk is not None and request.size <= chunk:
                return candidate.heap_id, chunk
        return None

    def _allocate_images(
        self, plan: Plan, heap: HeapId, count: int, name: str | None, size: int | None = None
    ) -> Any:
        sizes = plan.layout.buffer_sizes or ((plan.layout.size,) if plan.layout.size else ())
        if size is not None:
            sizes = tuple(max(s, size) for s in sizes)
        if sizes:
            _check_limits(plan, sizes, count)
        if not sizes:
            raise UsageError(
                f"the plan's {plan.format.name} layout with modifier {plan.modifier.name} is"
                " vendor-private: its size is decided by the exporting device, which devalloc"
                " cannot allocate from a heap, and no other pair every device accepts fits;"
                " fix: a device list with a LINEAR (or other computed) modifier for a common"
                " format"
            )
        with contextlib.ExitStack() as stack:
            images: list[tuple[Buffer, ...]] = []
            for i in range(count):
                image = []
                for j, size in enumerate(sizes):
                    label = None if name is None else f"{name}{i}" + (f".{j}" if j else "")
                    buf = stack.enter_context(self.registry.allocate(heap, size, name=label))
                    image.append(buf)
                images.append(tuple(image))
            stack.pop_all()
            return tuple(images)

    def _allocate_with_fallback(
        self,
        plan: Plan,
        heap: HeapId,
        count: int,
        name: str | None,
        chunk: int | None,
        notes: list[str],
    ) -> tuple[Any, HeapId]:
        """Allocate from ``heap``; when it runs out of memory, from the next heap that also
        satisfies the plan (recorded in ``notes``); when none is left, the out-of-memory error
        names every heap tried."""
        if chunk is not None:  # a best-effort chunk of one particular heap: no substitute
            return self._allocate_images(plan, heap, count, name, chunk), heap
        request = heap_request(plan)
        tried: list[str] = []
        candidates = [c.heap_id for c in self.registry.candidates(request) if c.ok]
        order = [heap, *[h for h in candidates if h is not heap]]
        for current in order:
            try:
                images = self._allocate_images(plan, current, count, name)
            except OutOfMemoryError as exc:
                props = self.registry.properties(current)
                size = f" ({props.max_size} bytes in all)" if props.max_size else ""
                tried.append(f"{props.name}{size}: {exc.strerror or exc}")
                last = exc
                continue
            if tried:
                notes.append(
                    f"fell back to {self.registry.properties(current).name} after out of memory"
                    " in " + "; ".join(tried)
                )
            return images, current
        assert tried
        raise error_from_errno(
            errno.ENOMEM,
            f"{count} x {plan.layout.size} bytes for {', '.join(plan.devices)}: every heap that"
            f" serves {request.describe()} is out of memory: " + "; ".join(tried),
            operation=last.operation,
        ) from last

    def pool(
        self,
        width: int,
        height: int,
        *,
        usages: Sequence[UsageSpec],
        count: int,
        formats: Sequence[str | int] | None = None,
        cpu_access: CpuAccess = "none",
        prefer_uncached: bool = False,
        grow: bool = False,
        max_count: int | None = None,
        zero_on_reuse: ZeroPolicy = "on-owner-change",
    ) -> tuple[Plan, BufferPool]:
        """A negotiated plan and a :class:`~devalloc.pool.BufferPool` of ``count`` buffers for it,
        from the heap the plan's memory rules select (no verification, no CPU-only fallback).

        Raises:
            NegotiationError: no plan.
            NoPlanError: no heap serves it.
            UsageError: a per-plane (multi-buffer) or vendor-private layout, bad arguments.
        """
        plan = self.plan(
            width,
            height,
            usages=usages,
            formats=formats,
            cpu_access=cpu_access,
            prefer_uncached=prefer_uncached,
        )
        layout = plan.layout
        if layout.size is None or len(layout.buffer_sizes) > 1:
            raise UsageError(
                f"a pool holds single-buffer images; the {plan.format.name} plan has "
                + ("a vendor-private layout" if layout.size is None else "one buffer per plane")
            )
        heap, _, _ = self._select(plan, allow_cpu_only=False, verify=False)
        registry = self.registry

        def allocate(size: int) -> Buffer:
            return registry.allocate(heap, size)

        pool = BufferPool(
            allocate,
            layout.size,
            count,
            grow=grow,
            max_count=max_count,
            zero_on_reuse=zero_on_reuse,
            name=f"{plan.format.name} {width}x{height}",
        )
        return plan, pool

    def allocate(
        self,
        width: int,
        height: int,
        *,
        usages: Sequence[UsageSpec],
        formats: Sequence[str | int] | None = None,
        count: int = 1,
        cpu_access: CpuAccess = "none",
        prefer_uncached: bool = False,
        verify: bool = False,
        frames: int = 1,
        allow_cpu_only: bool = False,
        name: str | None = None,
    ) -> Allocation:
        """Buffers that every usage can use (see the module doc for the steps).

        Args:
            width: image width in pixels.
            height: image height in pixels.
            usages: who will use the buffers ('device', 'device:usage', (device, usage) or
                Constraints); empty: no device, the buffers are for the application alone
                (``formats`` decide; the plan's ``devices`` is empty and a note says so).
            formats: the application's candidate formats, in its order of preference (with no
                usages, a drm-format ``NV12:0x...`` also names the modifier).
            count: images to allocate.
            cpu_access: the application's own CPU access.
            prefer_uncached: prefer write-combined memory when the CPU only writes.
            verify: import the buffers into every live device (and learn from failures).
            frames: frames each live V4L2 device must deliver during verification.
            allow_cpu_only: fall back to the CPU-only memfd heap when no device-importable heap
                can serve the plan.
            name: a dma-buf name prefix (``name0``, ``name1``...), shown by ``devalloc ps``.

        Raises:
            NegotiationError: no plan (conflicts, copy-path proposal).
            NoPlanError: no heap serves the plan, or verification failed for a reason devalloc
                cannot turn into a constraint.
            UsageError: bad arguments.
        """
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise UsageError(f"count must be a positive integer, not {count!r:.80}")
        _check_name(name)
        for flag, value in (("verify", verify), ("allow_cpu_only", allow_cpu_only)):
            if not isinstance(value, bool):
                raise UsageError(f"{flag} is True or False, not {value!r:.80}")
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
            raise UsageError(f"frames must be a positive integer, not {frames!r:.80}")
        alone = _no_usages(usages)
        attempts: list[Attempt] = []
        notes: list[str] = []
        if alone:
            # No device: the application's formats and CPU access decide; any heap will do.
            constraints = [application_alone(formats)]
            live: dict[str, DeviceInfo] = {}
            formats, allow_cpu_only = None, True
            notes.append(ALONE_NOTE)
        else:
            constraints, live = self._resolve_all(usages)
        for _ in range(MAX_ATTEMPTS):
            plan = self._negotiate(constraints, width, height, formats, cpu_access, prefer_uncached)
            if alone:
                plan = dataclasses.replace(plan, devices=())
            skipped = plan.find("skipped")
            if skipped is not None and skipped.note not in notes:
                notes.append(skipped.note)
            try:
                heap, chunk, heap_notes = self._select(plan, allow_cpu_only, verify)
            except NoPlanError as exc:
                if attempts:
                    raise NoPlanError(_after_learning(str(exc), attempts), exc.conflicts) from exc
                raise
            images, heap = self._allocate_with_fallback(plan, heap, count, name, chunk, heap_notes)
            props = self.registry.properties(heap)
            unverified = tuple(c.label for c in constraints if not verify or c.label not in live)
            if alone:
                unverified = ()  # no device to verify with
            if not verify or not live or not props.device_importable:
                if verify and live and not props.device_importable:
                    heap_notes.append("not verified: CPU-only buffers cannot be imported")
                    unverified = tuple(c.label for c in constraints)
                return Allocation(
                    plan,
                    heap,
                    props,
                    images,
                    (),
                    unverified,
                    tuple(attempts),
                    tuple(notes + heap_notes),
                )
            targets = [(live[label], label.rpartition(":")[2]) for label in sorted(live)]
            try:
                verdicts = tuple(verify_import(plan, images, targets, frames=frames))
            except BaseException:
                _close(images)
                raise
            failed = [v for v in verdicts if not v.ok]
            if not failed:
                return Allocation(
                    plan,
                    heap,
                    props,
                    images,
                    verdicts,
                    unverified,
                    tuple(attempts),
                    tuple(notes + heap_notes),
                )
            _close(images)
            learned = [v for v in failed if v.learned and v.constraints is not None]
            if len(learned) != len(failed):
                unnamed = [v for v in failed if not (v.learned and v.constraints is not None)]
                raise NoPlanError(
                    "verification failed: " + "; ".join(str(v) for v in unnamed),
                    [v.to_json() for v in unnamed],
                )
            current = {c.label: c for c in constraints}
            if all(current.get(v.label) == v.constraints for v in learned):
                raise NoPlanError(
                    "verification failed again with nothing new to learn: "
                    + "; ".join(str(v) for v in learned)
                    + "".join(f"; {n}" for n in heap_notes)
                    + _fix_hint(plan),
                    [v.to_json() for v in learned],
                )
            lines = []
            self._plans.clear()  # what was learned changes later plans
            for v in learned:
                assert v.constraints is not None
                self.learned[v.label] = v.constraints
                constraints = [v.constraints if c.label == v.label else c for c in constraints]
                lines.append(f"{v.label} learned {v.learned} ({v.message})")
            attempts.append(Attempt(plan, props.name, verdicts, tuple(lines)))
            notes.extend(lines)
        raise NoPlanError(
            f"verification still fails after {MAX_ATTEMPTS} attempts: "
            + "; ".join(a for at in attempts for a in at.learned)
        )


#: The allocation note when no device takes part.
ALONE_NOTE = (
    "no device takes part: buffers for the application alone (its formats and CPU access"
    " decide; the heap registry chose the heap, CPU-only memfd included)"
)


def _no_usages(usages: object) -> bool:
    return (
        isinstance(usages, Sequence)
        and not isinstance(usages, str | bytes | bytearray)
        and len(usages) == 0
    )


def application_alone(formats: Sequence[str | int] | None) -> Constraints:
    """The constraints of an application that allocates for itself (no device takes part): the
    formats it names, in its order, LINEAR unless it names a modifier (``NV12:0x...``, GStreamer's
    drm-format, or ``XRGB8888:INTEL_Y_TILED``).

    Raises:
        UsageError: no formats (with no device, nothing else decides the format).
    """
    if formats is None or isinstance(formats, str | bytes | bytearray) or not formats:
        raise UsageError(
            "with no device, the application's formats decide the buffer: give at least one"
            " (formats=[...], --format)"
        )
    pairs: dict[tuple[int, int], None] = {}
    for item in formats:
        if isinstance(item, str):
            fmt, modifier = parse_drm_format(item)
            pairs[(fmt.fourcc, modifier.value)] = None
        else:
            pairs[(lookup_format(item).fourcc, DRM_FORMAT_MOD_LINEAR)] = None
    return Constraints(
        APPLICATION, "alone", tuple(pairs), description="the application alone: no device"
    )


_NO_COUNTS = BufferCounts()


def _plan_key(
    constraints: Sequence[Constraints],
    width: object,
    height: object,
    formats: object,
    cpu_access: object,
    prefer_uncached: object,
    counts: object,
    slack: object,
) -> _PlanKey | None:
    """The plan cache's key for these inputs, None when one is not of its plain type (an int
    width, height and slack, text CPU access, a bool preference, None or a list/tuple of format
    names and fourccs, Constraints, None or BufferCounts): such a request is negotiated (and
    judged) every time. No counts is the same request as ``BufferCounts()``."""
    if type(width) is not int or type(height) is not int or type(slack) is not int:
        return None
    # no counts is None in the key, and so is BufferCounts() (the same request, as for
    # negotiate): a BufferCounts made and hashed for every allocation cost ~13k instructions
    if counts is not None:
        if type(counts) is not BufferCounts:
            return None
        if counts == _NO_COUNTS:
            counts = None
    if type(cpu_access) is not str or type(prefer_uncached) is not bool:
        return None
    wanted: tuple[str | int, ...] | None = None
    if formats is not None:
        if not isinstance(formats, list | tuple):
            return None
        wanted = tuple(formats)
        if not all(type(f) is str or type(f) is int for f in wanted):
            return None
    resolved = tuple(constraints)
    if not all(type(c) is Constraints for c in resolved):
        return None
    return (resolved, width, height, wanted, cpu_access, prefer_uncached, counts, slack)


def _check_limits(plan: Plan, sizes: Sequence[int], count: int) -> None:
    """Refuse ``count`` images of ``sizes`` before the first buffer is made when a buffer is
    above devalloc's per-buffer cap or the images would take the process total above its cap
    (:mod:`devalloc.limits`)."""
    what = f"Allocator.allocate ({plan.format.name} {plan.width}x{plan.height})"
    if len(sizes) == 1:
        limits.check(sizes[0], count, what=what)
        return
    limits.check(max(sizes), 1, what=what)
    # The total, exactly, in units every buffer size is a multiple of (each below the cap).
    unit = math.gcd(*sizes)
    limits.check(unit, count * sum(sizes) // unit, what=f"{what}, {len(sizes)} buffers per image")


def _check_arguments(
    registry: object, discovery: object, discover_devices: object, dev: object, sysfs: object
) -> None:
    """Allocator's arguments have the right types (before anything is opened)."""
    if registry is not None and not isinstance(registry, HeapRegistry):
        raise UsageError(f"registry is a HeapRegistry or None, not {registry!r:.80}")
    if discovery is not None and not isinstance(discovery, Discovery):
        raise UsageError(f"discovery is a Discovery or None, not {discovery!r:.80}")
    if not isinstance(discover_devices, bool):
        raise UsageError(f"discover_devices is True or False, not {discover_devices!r:.80}")
    for what, path in (("dev", dev), ("sysfs", sysfs)):
        if not isinstance(path, str) or "\0" in path:
            raise UsageError(f"{what} is a directory path, not {path!r:.80}")
        try:
            path.encode()
        except UnicodeEncodeError:
            raise UsageError(f"{what} {path!r:.80} is not valid UTF-8 text") from None


def _constraints_list(constraints: object) -> list[Constraints]:
    """``constraints`` as a list, or a UsageError naming what it is instead."""
    what = "constraints is a list of Constraints"
    if not isinstance(constraints, Iterable) or isinstance(constraints, str | bytes | bytearray):
        raise UsageError(f"{what}, not {constraints!r:.80}")
    items = list(constraints)
    for item in items:
        if not isinstance(item, Constraints):
            raise UsageError(f"{what}, not one holding {item!r:.80}")
    return items


def _check_name(name: object) -> None:
    """A dma-buf name prefix: None, or text the kernel can take (UTF-8, no NUL)."""
    if name is None:
        return
    if not isinstance(name, str):
        raise UsageError(f"name is a text prefix for the buffers' names, not {name!r:.80}")
    try:
        name.encode()
    except UnicodeEncodeError:
        raise UsageError(f"name {name!r:.80} is not valid UTF-8 text") from None
    if "\0" in name:
        raise UsageError(f"name {name!r:.80} holds a NUL character")


def _close(images: Iterable[tuple[Buffer, ...]]) -> None:
    for image in images:
        for buf in image:
            buf.close()


def _fix_hint(plan: Plan) -> str:
    memory = plan.memory
    if memory.protected:
        return "; fix: a protected dma-heap (e.g. a TEE-backed protected,* heap)"
    if memory.contiguous:
        return (
            "; fix: a contiguous dma-heap: a CMA region (cma=SIZE on the kernel command line or a"
            " reserved-memory node) with CONFIG_DMABUF_HEAPS_CMA, and access to its"
            " /dev/dma_heap node"
        )
    if memory.dma_bits < 64:
        return (
            f"; fix: a heap known to stay below 2**{memory.dma_bits} (a CMA region placed low,"
            " or a DMA32 heap)"
        )
    return "; fix: access to /dev/dma_heap/system or /dev/udmabuf"


def _after_learning(message: str, attempts: Sequence[Attempt]) -> str:
    learned = "; ".join(line for a in attempts for line in a.learned)
    return f"after verification ({learned}): {message}"

"""What a heap offers (HeapProperties), what a buffer needs (HeapRequest), and how they match.

Example:
    >>> props = dma_heap_properties("system")
    >>> props.contiguous, props.cpu_cache
    (False, 'cached')
    >>> unmet(props, HeapRequest(contiguous=True))
    ['is scattered']
    >>> unmet(dma_heap_properties("vendor,mystery"), HeapRequest(contiguous=True))
    ['has unknown contiguity', 'may be protected (unknown)', 'may not be CPU-mappable (unknown)']

Everything here is pure: no I/O. Unknown is ``None`` and never satisfies a requirement, so a heap
whose name devalloc does not know is listed but not chosen for anything it might not do.

dma-heap properties come from the kernel's stable heap names:

=====================================================  ==========  ===============  =========
name                                                   contiguous  CPU cache        protected
=====================================================  ==========  ===============  =========
``system``                                             no          cached           no
``system-uncached``                                    no          write-combined   no
``default_cma_region``, ``linux,cma``, ``reserved``,   yes         cached           no
``default-pool`` (the CMA heap's names)
``protected,*``                                        unknown     (not mappable)   yes
anything else                                          unknown     unknown          unknown
=====================================================  ==========  ===============  =========
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, get_args

from ..errors import UsageError

HeapKind = Literal["dma-heap", "udmabuf", "device", "memfd", "carveout"]
CpuCache = Literal["cached", "write-combined", "none"]
CpuAccess = Literal["none", "r", "w", "rw"]

HEAP_KINDS: tuple[str, ...] = get_args(HeapKind)
CPU_CACHES: tuple[str, ...] = get_args(CpuCache)
CPU_ACCESSES: tuple[str, ...] = get_args(CpuAccess)

#: Names the kernel gives the CMA heap (contiguous, cached): the default CMA area is "reserved"
#: (6.12), "default_cma_region" (6.17+), or the reserved-memory node's name ("linux,cma").
CMA_HEAP_NAMES = frozenset({"default_cma_region", "linux,cma", "reserved", "default-pool"})
#: Prefix of the protected (restricted) heaps: buffers the CPU cannot map.
PROTECTED_PREFIX = "protected,"

_MAX_DMA_BITS = 64


@dataclass(frozen=True)
class HeapProperties:
    """What one heap offers. ``None`` means unknown, and unknown never satisfies a requirement.

    Attributes:
        kind: the backend: "dma-heap", "udmabuf", "device" (a DRM device's dumb buffers),
            "memfd" (CPU only) or "carveout".
        name: for diagnostics only (a node path, "udmabuf", "memfd"); nothing selects by it.
        contiguous: physically contiguous buffers (True), scattered pages (False), or unknown.
        cpu_cache: how the CPU maps the memory: "cached", "write-combined", "none", or unknown.
        protected: protected (restricted) memory that only trusted devices may access.
        cpu_mappable: the CPU can mmap buffers from this heap.
        dma_bits: every buffer lies below ``2**dma_bits`` (physical); None when unknown.
        location: "system" (main memory), a device-local memory's id, or None (unknown).
        max_size: the largest single buffer in bytes, or None (bounded only by memory).
        device_importable: devices can import the buffers (False only for memfd).
        accessible: this process can open the heap.
        reason: why not, when ``accessible`` is False.
        chunk: for a scattered heap, the largest physically contiguous chunk its allocator
            tries first (best effort: under fragmentation it falls back to smaller pages), so a
            buffer of exactly this size is usually contiguous; None when unknown.
    """

    kind: HeapKind
    name: str
    contiguous: bool | None = None
    cpu_cache: CpuCache | None = None
    protected: bool | None = None
    cpu_mappable: bool | None = None
    dma_bits: int | None = None
    location: str | None = None
    max_size: int | None = None
    device_importable: bool = True
    accessible: bool = True
    reason: str = ""
    chunk: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise UsageError(f"heap properties: name must be a string, not {self.name!r:.80}")
        if self.kind not in HEAP_KINDS:
            raise UsageError(f"heap {self.name!r}: kind must be one of {HEAP_KINDS}")
        for label in ("contiguous", "protected", "cpu_mappable"):
            value = getattr(self, label)
            if value is not True and value is not False and value is not None:
                raise UsageError(f"heap {self.name!r}: {label} must be True, False or None")
        for label in ("device_importable", "accessible"):
            if not isinstance(getattr(self, label), bool):
                raise UsageError(f"heap {self.name!r}: {label} must be True or False")
        if not isinstance(self.reason, str):
            raise UsageError(f"heap {self.name!r}: reason must be a string")
        if self.cpu_cache is not None and self.cpu_cache not in CPU_CACHES:
            raise UsageError(f"heap {self.name!r}: cpu_cache must be one of {CPU_CACHES} or None")
        _check_optional_int(f"heap {self.name!r}: dma_bits", self.dma_bits, 1, _MAX_DMA_BITS)
        _check_optional_int(f"heap {self.name!r}: max_size", self.max_size, 1, 1 << 64)
        _check_optional_int(f"heap {self.name!r}: chunk", self.chunk, 1, 1 << 64)
        if self.location is not None and (not isinstance(self.location, str) or not self.location):
            raise UsageError(f"heap {self.name!r}: location must be a non-empty string or None")
        if self.accessible and self.reason:
            raise UsageError(f"heap {self.name!r}: a reason is only given for an inaccessible heap")

    def unavailable(self, reason: str) -> HeapProperties:
        """The same heap marked inaccessible to this process, for ``reason``."""
        if not isinstance(reason, str):
            raise UsageError(f"heap {self.name!r}: reason must be a string, not {reason!r:.80}")
        return replace(self, accessible=False, reason=reason or "not accessible")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return asdict(self)


@dataclass(frozen=True)
class HeapRequest:
    """What a buffer needs of its heap.

    Attributes:
        contiguous: True: the heap must be known to give physically contiguous buffers.
            False: either kind will do.
        dma_bits: the device addresses this many bits: the heap must be known to stay below
            ``2**dma_bits`` (64 or None: no limit).
        protected: True: protected memory is required; False: it must be ordinary memory.
        location: "system", a device-local memory's id, or None (anywhere).
        cpu_access: "none", "r", "w" or "rw": anything but "none" needs a CPU-mappable heap.
        cpu_cache: a preference, not a requirement: heaps with this CPU cache mode are tried
            first ("write-combined" for buffers the CPU only writes sequentially).
        device_importable: devices must be able to import the buffer (True excludes memfd).
        size: bytes the buffer will have, to skip heaps whose ``max_size`` is smaller.
    """

    contiguous: bool = False
    dma_bits: int | None = None
    protected: bool = False
    location: str | None = None
    cpu_access: CpuAccess = "rw"
    cpu_cache: CpuCache | None = None
    device_importable: bool = True
    size: int | None = None

    def __post_init__(self) -> None:
        for label in ("contiguous", "protected", "device_importable"):
            if not isinstance(getattr(self, label), bool):
                raise UsageError(f"heap request: {label} must be True or False")
        _check_optional_int("heap request: dma_bits", self.dma_bits, 1, _MAX_DMA_BITS)
        _check_optional_int("heap request: size", self.size, 1, 1 << 64)
        if self.location is not None and (not isinstance(self.location, str) or not self.location):
            raise UsageError("heap request: location must be a non-empty string or None")
        if self.cpu_access not in CPU_ACCESSES:
            raise UsageError(f"heap request: cpu_access must be one of {CPU_ACCESSES}")
        if self.cpu_cache is not None and self.cpu_cache not in CPU_CACHES:
            raise UsageError(f"heap request: cpu_cache must be one of {CPU_CACHES} or None")
        if self.protected and self.cpu_access != "none":
            raise UsageError(
                "heap request: protected memory cannot be accessed by the CPU: "
                "use cpu_access='none' with protected=True"
            )

    def describe(self) -> str:
        """The request in words, for error messages ("contiguous, device-importable, CPU rw")."""
        words = []
        if self.contiguous:
            words.append("contiguous")
        if self.protected:
            words.append("protected")
        if self.device_importable:
            words.append("device-importable")
        if self.cpu_access != "none":
            words.append(f"CPU {self.cpu_access}")
        if self.dma_bits is not None and self.dma_bits < _MAX_DMA_BITS:
            words.append(f"below 2**{self.dma_bits}")
        if self.location is not None:
            words.append(f"in {self.location} memory")
        if self.size is not None:
            words.append(f"{self.size} bytes")
        return ", ".join(words) or "any heap"


def unmet(props: HeapProperties, request: HeapRequest) -> list[str]:
    """Why ``props`` does not satisfy ``request``: one phrase per unmet requirement (empty when it
    does). Accessibility is not checked here (see :class:`HeapRegistry`); unknown never passes."""
    if not isinstance(props, HeapProperties) or not isinstance(request, HeapRequest):
        raise UsageError(
            f"unmet needs HeapProperties and a HeapRequest, not {props!r:.80} and {request!r:.80}"
        )
    reasons: list[str] = []
    if request.contiguous and props.contiguous is not True:
        reasons.append("is scattered" if props.contiguous is False else "has unknown contiguity")
    if request.protected:
        if props.protected is not True:
            reasons.append(
                "is not protected" if props.protected is False else "has unknown protection"
            )
    elif props.protected is not False:
        reasons.append("is protected" if props.protected else "may be protected (unknown)")
    if request.cpu_access != "none" and props.cpu_mappable is not True:
        reasons.append(
            "is not CPU-mappable"
            if props.cpu_mappable is False
            else "may not be CPU-mappable (unknown)"
        )
    if request.device_importable and not props.device_importable:
        reasons.append("is not importable by devices")
    if request.dma_bits is not None and request.dma_bits < _MAX_DMA_BITS:
        if props.dma_bits is None:
            reasons.append(f"has unknown DMA reach (the device addresses {request.dma_bits} bits)")
        elif props.dma_bits > request.dma_bits:
            reasons.append(
                f"reaches {props.dma_bits} address bits, beyond the device's {request.dma_bits}"
            )
    if request.location is not None and props.location != request.location:
        reasons.append(
            f"is in {props.location} memory, not {request.location}"
            if props.location is not None
            else f"has unknown memory location ({request.location} asked)"
        )
    if request.size is not None and props.max_size is not None and request.size > props.max_size:
        reasons.append(f"allocates at most {props.max_size} bytes ({request.size} asked)")
    return reasons


#: The system heap allocates with page orders 8, 4, 0 (drivers/dma-buf/heaps/system_heap.c,
#: ``orders[]``), largest first: a 1 MiB buffer is one order-8 block unless memory is fragmented.
SYSTEM_HEAP_CHUNK = 1 << 20


def dma_heap_properties(
    name: str,
    *,
    path: str | None = None,
    dma_bits: int | None = None,
    cma_bytes: int | None = None,
) -> HeapProperties:
    """Properties of the dma-heap called ``name`` (the node's basename), from the name table.

    Args:
        name: the heap's name under /dev/dma_heap.
        path: the node, for diagnostics (default ``/dev/dma_heap/NAME``).
        dma_bits: the physical reach of system memory
            (:func:`devalloc.heaps.registry.system_ram_bits`), applied to the heaps known to
            allocate from it.
        cma_bytes: the machine's CMA total (``CmaTotal``), an upper bound for a CMA heap's buffers.
    """
    if not isinstance(name, str) or (path is not None and not isinstance(path, str)):
        raise UsageError(
            f"dma_heap_properties: name and path must be strings, not {name!r:.80}, {path!r:.80}"
        )
    path = path or f"/dev/dma_heap/{name}"
    if name == "system":
        return HeapProperties(
            "dma-heap",
            path,
            False,
            "cached",
            False,
            True,
            dma_bits,
            "system",
            None,
            chunk=SYSTEM_HEAP_CHUNK,
        )
    if name == "system-uncached":
        return HeapProperties(
            "dma-heap",
            path,
            False,
            "write-combined",
            False,
            True,
            dma_bits,
            "system",
            None,
            chunk=SYSTEM_HEAP_CHUNK,
        )
    if name in CMA_HEAP_NAMES:
        return HeapProperties(
            "dma-heap", path, True, "cached", False, True, dma_bits, "system", cma_bytes or None
        )
    if name.startswith(PROTECTED_PREFIX):
        return HeapProperties("dma-heap", path, None, None, True, False, None, None, None)
    return HeapProperties("dma-heap", path)


def _check_optional_int(label: str, value: object, low: int, high: int) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise UsageError(f"{label} must be an integer in [{low}, {high}] or None, not {value!r}")

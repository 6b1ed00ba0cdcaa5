"""The raising front of negotiation: :func:`negotiate` and :class:`NegotiationError`, which
carries the conflicts and, when one exists, a copy path.

Example:
    >>> from devalloc.constraints import Constraints
    >>> from devalloc.formats import fourcc_code
    >>> cam = Constraints("cam", "capture", ((fourcc_code("NV12"), 0),), access="write")
    >>> dpy = Constraints("dpy", "primary", ((fourcc_code("XR24"), 0),), access="read")
    >>> negotiate([cam], 64, 64).format.name
    'NV12'
    >>> try:
    ...     negotiate([cam, dpy], 64, 64)
    ... except NegotiationError as exc:
    ...     [c.attribute for c in exc.conflicts], exc.copy_path is not None
    (['format'], True)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..constraints import BufferCounts, Constraints, CpuAccess
from ..errors import NoPlanError
from .combine import DEFAULT_SLACK
from .copy import CopyPath, copy_path_for
from .core import prepare, run
from .plan import Plan
from .records import Conflict

__all__ = ["NegotiationError", "negotiate"]


class NegotiationError(NoPlanError):
    """No buffer fits every device.

    Attributes:
        conflicts: every :class:`Conflict`, in :data:`ATTRIBUTES` order.
        copy_path: a two-buffer proposal with one copy step (a :class:`CopyPath`), or None.
        copy_note: why there is no copy path when there is none (``"needs more than one copy
            step"``, a single device, or too many devices to search); "" when there is one.
    """

    def __init__(
        self,
        message: str,
        conflicts: Sequence[Conflict],
        copy_path: CopyPath | None = None,
        copy_note: str = "",
    ) -> None:
        super().__init__(message, conflicts)
        self.conflicts: tuple[Conflict, ...] = tuple(conflicts)
        self.copy_path = copy_path
        self.copy_note = copy_note


def negotiate(
    constraints: Iterable[Constraints],
    width: int,
    height: int,
    formats: Sequence[str | int] | None = None,
    *,
    cpu_access: CpuAccess = "none",
    prefer_uncached: bool = False,
    known_layout: bool = False,
    propose_copy: bool = True,
    counts: BufferCounts | None = None,
    slack: int = DEFAULT_SLACK,
) -> Plan:
    """One buffer that every device in ``constraints`` can use.

    Args:
        constraints: one :class:`~devalloc.constraints.Constraints` per device and usage.
        width: image width in pixels.
        height: image height in pixels.
        formats: the application's candidate formats (names or fourccs), best first; None
            accepts any format.
        cpu_access: what the application does with the buffer on the CPU.
        prefer_uncached: map write-combined when the CPU only writes and a device is not
            coherent.
        known_layout: the caller allocates the buffer from a heap, so a pair whose layout is
            vendor-private (its size is the exporter's) is passed over for the next pair with
            a computed layout (as it is whenever the CPU accesses the buffer); the plan's
            ``skipped`` provenance record says which and why.
        propose_copy: on failure, search a two-buffer copy path for the error.
        counts: how many buffers the application itself holds at once and its bounds on the
            total (a fixed count is ``BufferCounts(min_count=n, max_count=n)``); None: none.
        slack: buffers added to what every party holds (default 1).

    Returns:
        The plan (format, modifier, layout, memory, cache policy, provenance, buffer count).

    Raises:
        NegotiationError: no single buffer fits (a :class:`~devalloc.errors.NoPlanError` with
            ``conflicts``, ``copy_path`` and ``copy_note``).
        UsageError: an invalid request.
    """
    request = prepare(
        constraints,
        width,
        height,
        formats,
        cpu_access,
        prefer_uncached,
        known_layout,
        counts,
        slack,
    )
    result = run(request)
    if isinstance(result, Plan):
        return result
    copy: CopyPath | None = None
    note = ""
    if propose_copy:
        copy, note = copy_path_for(request)
    message = (
        f"no buffer fits {', '.join(request.labels)} at {width}x{height}: "
        + "; ".join(c.message for c in result)
        + (f"; copy path: {copy.describe()}" if copy is not None else f"; {note}" if note else "")
    )
    raise NegotiationError(message, result, copy, note)

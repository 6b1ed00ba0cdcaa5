"""Copy paths: when no single buffer fits every device, two buffers and one copy between them.

Example:
    >>> from devalloc.constraints import Constraints
    >>> from devalloc.formats import fourcc_code
    >>> cam = Constraints("camera", "capture", ((fourcc_code("NV12"), 0),), access="write")
    >>> gpu = Constraints("gpu", "texture", ((fourcc_code("XR24"), 0),), access="read")
    >>> dpy = Constraints("display", "primary", ((fourcc_code("XR24"), 0),), access="read")
    >>> path = propose_copy_path([cam, gpu, dpy], 1920, 1080)
    >>> path.source_devices, path.destination_devices
    (('camera:capture',), ('display:primary', 'gpu:texture'))
    >>> path.describe().split(" -> copy ")[1]
    '(NV12 -> XR24, 3110400 -> 8294400 bytes/frame) -> {display:primary, gpu:texture}'

The rule: try every split of the devices into two non-empty groups and negotiate each group on
its own; keep the splits where both succeed and the copy has a direction (below). Prefer the
split with the largest zero-copy group (the most devices sharing one buffer), then the fewest
bytes copied per frame (read + written; an unknown, vendor-private size counts as the most),
then the source group's labels, then the destination's.

Direction: the copy goes from the group holding the writers to the other. A group can be the
source when a device in it writes (``write`` or ``read-write``) and the destination when a device
in it reads and none only writes (a write-only device would produce frames nobody gets). When
both directions are possible, the source is the group with more write-only devices, then fewer
read-only devices, then the one whose labels sort first. The application's formats and CPU
access apply to both buffers; the device doing the copy is not part of either group (add its
constraints to a group when they are known).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

from ..constraints import Constraints, CpuAccess, _Table
from ..errors import UsageError
from .core import MAX_COPY_PATH_DEVICES, Request, prepare, run
from .plan import Plan

__all__ = ["CopyPath", "copy_path_for", "propose_copy_path"]


def _size_text(size: int | None) -> str:
    return "?" if size is None else str(size)


@dataclass(frozen=True)
class CopyPath:
    """Two buffers, each shared by a group of devices, and one copy from source to destination.

    Attributes:
        source: the plan of the group that writes the frames.
        destination: the plan of the group that receives the copy.
    """

    source: Plan
    destination: Plan

    @property
    def source_devices(self) -> tuple[str, ...]:
        """The labels of the devices sharing the source buffer."""
        return self.source.devices

    @property
    def destination_devices(self) -> tuple[str, ...]:
        """The labels of the devices sharing the destination buffer."""
        return self.destination.devices

    @property
    def bytes_read(self) -> int | None:
        """Bytes the copy reads per frame (the source buffer; None when its size is the
        exporter's)."""
        return self.source.size

    @property
    def bytes_written(self) -> int | None:
        """Bytes the copy writes per frame (the destination buffer)."""
        return self.destination.size

    @property
    def bytes_per_frame(self) -> int | None:
        """Bytes read plus bytes written per frame (None when either is unknown)."""
        if self.bytes_read is None or self.bytes_written is None:
            return None
        return self.bytes_read + self.bytes_written

    def describe(self) -> str:
        """``{camera:capture} -> copy (NV12 -> XR24, 3110400 -> 8294400 bytes/frame) -> {...}``."""

        def what(plan: Plan) -> str:
            mod = "" if plan.modifier.is_linear else f" {plan.modifier.name}"
            return f"{plan.format.fourcc_str}{mod}"

        return (
            f"{{{', '.join(self.source_devices)}}} -> copy ({what(self.source)} ->"
            f" {what(self.destination)}, {_size_text(self.bytes_read)} ->"
            f" {_size_text(self.bytes_written)} bytes/frame) ->"
            f" {{{', '.join(self.destination_devices)}}}"
        )

    def to_json(self) -> dict[str, object]:
        """Both plans, the devices of each group, the bytes per frame and the description."""
        return {
            "source_devices": list(self.source_devices),
            "destination_devices": list(self.destination_devices),
            "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written,
            "description": self.describe(),
            "source": self.source.to_json(),
            "destination": self.destination.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> CopyPath:
        """Read what :meth:`to_json` wrote (the derived keys are checked against the plans).

        Raises:
            UsageError: a missing or unknown key, or derived values that do not match.
        """
        table = _Table(data, ("copy_path",), lambda path: "")
        source, destination = table.get("source"), table.get("destination")
        if not isinstance(source, Mapping) or not isinstance(destination, Mapping):
            raise UsageError("copy path JSON: source and destination must be plans")
        made = cls(Plan.from_json(source), Plan.from_json(destination))
        derived = {
            "source_devices": list(made.source_devices),
            "destination_devices": list(made.destination_devices),
            "bytes_read": made.bytes_read,
            "bytes_written": made.bytes_written,
            "description": made.describe(),
        }
        for key, value in derived.items():
            if key in table and table.get(key) != value:
                raise table.fail(key, f"does not match the plans ({value!r})")
        table.finish()
        return made


def _can_source(group: Sequence[Constraints]) -> bool:
    return any(d.writes for d in group)


def _can_receive(group: Sequence[Constraints]) -> bool:
    return any(d.reads for d in group) and not any(d.access == "write" for d in group)


def _direction(
    a: Sequence[Constraints], b: Sequence[Constraints]
) -> tuple[Sequence[Constraints], Sequence[Constraints]] | None:
    """(source, destination) for a split, or None when the copy has no direction."""
    options = [(s, d) for s, d in ((a, b), (b, a)) if _can_source(s) and _can_receive(d)]
    if not options:
        return None

    def preference(
        option: tuple[Sequence[Constraints], Sequence[Constraints]],
    ) -> tuple[int, int, list[str]]:
        source = option[0]
        writers = sum(d.access == "write" for d in source)
        readers = sum(d.access == "read" for d in source)
        return (-writers, readers, [d.label for d in source])

    return min(options, key=preference)


def search(request: Request) -> CopyPath | None:
    """The best copy path for a checked request (see the module's rule), or None."""
    devices = request.devices
    count = len(devices)
    if count < 2:
        return None
    plans: dict[tuple[int, ...], Plan | None] = {}

    def plan(indices: tuple[int, ...]) -> Plan | None:
        if indices not in plans:
            result = run(request.subset(devices[i] for i in indices))
            plans[indices] = result if isinstance(result, Plan) else None
        return plans[indices]

    for big in range(count - 1, (count + 1) // 2 - 1, -1):
        found: list[CopyPath] = []
        for group in combinations(range(count), big):
            if big * 2 == count and 0 not in group:
                continue  # an even split: each one once
            rest = tuple(i for i in range(count) if i not in group)
            first, second = plan(group), plan(rest)
            if first is None or second is None:
                continue
            direction = _direction([devices[i] for i in group], [devices[i] for i in rest])
            if direction is None:
                continue
            source_first = direction[0][0] is devices[group[0]]
            found.append(CopyPath(first, second) if source_first else CopyPath(second, first))
        if found:
            return min(
                found,
                key=lambda c: (
                    c.bytes_per_frame is None,
                    c.bytes_per_frame or 0,
                    c.source_devices,
                    c.destination_devices,
                ),
            )
    return None


def copy_path_for(request: Request) -> tuple[CopyPath | None, str]:
    """The copy path for a failed request and, when there is none, why (for messages)."""
    count = len(request.devices)
    if count < 2:
        return None, "no copy path: a single device cannot be split into two groups"
    if count > MAX_COPY_PATH_DEVICES:
        return None, (f"copy path not searched: {count} devices, more than {MAX_COPY_PATH_DEVICES}")
    found = search(request)
    return found, "" if found is not None else "needs more than one copy step"


def propose_copy_path(
    constraints: Iterable[Constraints],
    width: int,
    height: int,
    formats: Sequence[str | int] | None = None,
    *,
    cpu_access: CpuAccess = "none",
    prefer_uncached: bool = False,
) -> CopyPath | None:
    """Two buffers with one copy between them, for devices that cannot share one buffer.

    Meant for when :func:`~devalloc.negotiate.negotiate` fails; it does not check that it
    does. Returns None when no split into two groups works (the caller says "needs more than
    one copy step") or when there is a single device.

    Raises:
        UsageError: an invalid request, or more than :data:`MAX_COPY_PATH_DEVICES` devices (the
            search tries every split).
    """
    request = prepare(constraints, width, height, formats, cpu_access, prefer_uncached)
    if len(request.devices) > MAX_COPY_PATH_DEVICES:
        raise UsageError(
            f"a copy path is searched for at most {MAX_COPY_PATH_DEVICES} devices, not"
            f" {len(request.devices)}"
        )
    return search(request)

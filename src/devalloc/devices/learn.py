"""Pure rules that turn what devices report into :class:`~devalloc.constraints.Constraints`.

Example:
    >>> from devalloc.formats import lookup_format
    >>> samples = [TrySample(640, 480, (1280,), (614400,)), TrySample(322, 242, (704,), (170368,))]
    >>> learned = learn_layout(lookup_format("YUYV"), samples)
    >>> learned.rules.pitch_align, learned.rules.height_align, learned.exact
    (64, 1, (True, True))

Nothing here does I/O: :mod:`devalloc.devices.discover` asks the kernel and calls these, and the
host tests feed them numbers. What the rules can and cannot learn:

- **Pitch alignment** of a V4L2 format comes from VIDIOC_TRY_FMT answers at several sizes: the
  smallest power of two ``A`` such that devalloc's layout with every pitch aligned to ``A`` gives
  each answer's bytes per line (for one-plane formats: the minimum pitch rounded up to ``A``;
  for planar ones the chroma pitches must be aligned too, which can raise the luma pitch).
  Sizes whose natural pitch is already a multiple of a large power of two cannot tell ``A``
  apart from 1, so probes include odd widths; a driver that only offers a few discrete sizes is
  learned from those (it cannot be given any other size anyway).
  When no power of two explains the answers (e.g. a width aligned in pixels for a 3-byte format),
  the largest power of two dividing every answer is used, which is necessary though maybe not
  sufficient, and the note says so.
- **Height alignment / extra rows**: the smallest power-of-two row alignment (then, failing that,
  the fewest extra rows) under which devalloc's layout is at least as large as every sizeimage.
- Answers where the driver's pitch is *below* devalloc's minimum are kept out of the pitch rule
  (vivid truncates chroma at odd widths: its pitch is smaller, so devalloc's is safe) and noted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from ..constraints import Buffers, Constraints, DeviceAccess, MemoryRules
from ..errors import UsageError
from ..formats import FORMATS, LayoutRules, PixelFormat, layout, lookup_format
from ..formats.modifier import DRM_FORMAT_MOD_LINEAR

__all__ = [
    "MAX_LEARNED_ALIGN",
    "MAX_LEARNED_ROWS",
    "PLANE_USAGES",
    "LearnedLayout",
    "TrySample",
    "combine_rules",
    "import_usage",
    "kms_usages",
    "learn_layout",
    "v4l2_single_planar_layout",
    "v4l2_usage",
]

#: The largest pitch alignment (bytes) the learner tries.
MAX_LEARNED_ALIGN = 4096
#: The largest row alignment or number of extra rows the learner tries.
MAX_LEARNED_ROWS = 64


@dataclass(frozen=True)
class TrySample:
    """One VIDIOC_TRY_FMT answer: the size the driver chose and its per-plane numbers.

    Attributes:
        width: width in pixels, as the driver returned it.
        height: height in pixels, as the driver returned it.
        bytesperline: bytes per line of each memory plane (one for the single-planar API).
        sizeimage: bytes of each memory plane.
    """

    width: int
    height: int
    bytesperline: tuple[int, ...]
    sizeimage: tuple[int, ...]

    def to_json(self) -> dict[str, object]:
        """``{width, height, bytesperline, sizeimage}``."""
        return {
            "width": self.width,
            "height": self.height,
            "bytesperline": list(self.bytesperline),
            "sizeimage": list(self.sizeimage),
        }


@dataclass(frozen=True)
class LearnedLayout:
    """The layout rules one pixel format follows on one V4L2 queue, learned from TRY_FMT.

    Attributes:
        format: the DRM format.
        multi_buffer: the V4L2 format puts each plane in its own buffer (``NV12M``).
        rules: the learned rules (pitch alignment, row alignment, extra rows).
        samples: the answers they were learned from.
        exact: per sample, devalloc's layout under :attr:`rules` gives exactly the driver's
            first-plane pitch and every plane size.
        note: how the rules were found, and anything the answers did not explain.
    """

    format: PixelFormat
    multi_buffer: bool
    rules: LayoutRules
    samples: tuple[TrySample, ...]
    exact: tuple[bool, ...]
    note: str = ""

    def to_json(self) -> dict[str, object]:
        """The rules, the samples and the per-sample agreement as JSON."""
        return {
            "format": self.format.name,
            "multi_buffer": self.multi_buffer,
            "pitch_align": self.rules.pitch_align,
            "height_align": self.rules.height_align,
            "extra_rows": self.rules.extra_rows,
            "samples": [s.to_json() for s in self.samples],
            "exact": list(self.exact),
            "note": self.note,
        }


def _powers_of_two(limit: int) -> Iterable[int]:
    value = 1
    while value <= limit:
        yield value
        value *= 2


def _round_up(value: int, align: int) -> int:
    return -(-value // align) * align


def _largest_power_of_two_dividing(values: Iterable[int], limit: int) -> int:
    common = 0
    for v in values:
        common = math.gcd(common, v)
    if common == 0:
        return 1
    return min(common & -common, limit)


def _first_pitch(fmt: PixelFormat, sample: TrySample, align: int, multi_buffer: bool) -> int | None:
    """devalloc's first-plane pitch for ``sample`` with every pitch aligned to ``align``."""
    rules = LayoutRules(pitch_align=align, multi_buffer=multi_buffer)
    try:
        return layout(fmt, sample.width, sample.height, rules=rules).planes[0].pitch
    except UsageError:
        return None


def _sizes(fmt: PixelFormat, sample: TrySample, rules: LayoutRules) -> tuple[int, ...] | None:
    """devalloc's buffer sizes for ``sample`` under ``rules`` (None if it cannot lay it out)."""
    try:
        return layout(fmt, sample.width, sample.height, rules=rules).buffer_sizes
    except UsageError:
        return None


def _covers(fmt: PixelFormat, samples: Sequence[TrySample], rules: LayoutRules) -> bool:
    """Every sample's sizeimage fits in devalloc's layout under ``rules``."""
    for s in samples:
        sizes = _sizes(fmt, s, rules)
        if sizes is None or len(sizes) != len(s.sizeimage):
            return False
        if any(ours < theirs for ours, theirs in zip(sizes, s.sizeimage, strict=True)):
            return False
    return True


def learn_layout(
    fmt: PixelFormat, samples: Sequence[TrySample], *, multi_buffer: bool = False
) -> LearnedLayout:
    """Learn the pitch alignment and row rules a driver applies to ``fmt`` (see module doc).

    Args:
        fmt: the DRM format the V4L2 format maps to.
        samples: TRY_FMT answers (duplicates are dropped).
        multi_buffer: the V4L2 format has one buffer per plane (its samples then carry one
            bytesperline and sizeimage per plane).

    Raises:
        UsageError: no samples, or a sample whose plane count does not fit the format.
    """
    unique = tuple(dict.fromkeys(samples))
    if not unique:
        raise UsageError(f"cannot learn the layout of {fmt.name} from no TRY_FMT answers")
    buffers = fmt.planes if multi_buffer else 1
    for s in unique:
        if len(s.bytesperline) != buffers or len(s.sizeimage) != buffers:
            raise UsageError(
                f"a TRY_FMT answer for {fmt.name} has {len(s.bytesperline)} planes, "
                f"expected {buffers}"
            )
    notes: list[str] = []
    base = LayoutRules(multi_buffer=multi_buffer)
    usable: list[TrySample] = []
    for s in unique:
        try:
            pitch = layout(fmt, s.width, s.height, rules=base).planes[0].pitch
        except UsageError:
            notes.append(f"{s.width}x{s.height} is outside devalloc's layout engine")
            continue
        if s.bytesperline[0] < pitch:
            notes.append(
                f"at {s.width}x{s.height} the driver's pitch {s.bytesperline[0]} is below "
                f"devalloc's minimum {pitch} (it truncates partial pixels); devalloc's is used"
            )
            continue
        usable.append(s)
    pitch_align = 1
    if usable:
        fitting = next(
            (
                a
                for a in _powers_of_two(MAX_LEARNED_ALIGN)
                if all(_first_pitch(fmt, s, a, multi_buffer) == s.bytesperline[0] for s in usable)
            ),
            None,
        )
        if fitting is not None:
            pitch_align = fitting
            notes.append(
                f"pitch: devalloc's layout with pitches aligned to {pitch_align} "
                f"byte{'s' if pitch_align > 1 else ''}"
            )
        else:
            pitch_align = _largest_power_of_two_dividing(
                (s.bytesperline[0] for s in usable), MAX_LEARNED_ALIGN
            )
            notes.append(
                "pitch: no power-of-two alignment of devalloc's layout explains the driver's "
                f"pitches; every one is a multiple of {pitch_align}, which is used"
            )
    rules = LayoutRules(pitch_align=pitch_align, multi_buffer=multi_buffer)
    checked = usable or list(unique)
    if not _covers(fmt, checked, rules):
        for height_align in _powers_of_two(MAX_LEARNED_ROWS):
            candidate = LayoutRules(
                pitch_align=pitch_align, height_align=height_align, multi_buffer=multi_buffer
            )
            if _covers(fmt, checked, candidate):
                rules = candidate
                notes.append(f"rows: aligned to {height_align}")
                break
        else:
            for extra in range(1, MAX_LEARNED_ROWS + 1):
                candidate = LayoutRules(
                    pitch_align=pitch_align, extra_rows=extra, multi_buffer=multi_buffer
                )
                if _covers(fmt, checked, candidate):
                    rules = candidate
                    notes.append(f"rows: {extra} extra")
                    break
            else:
                notes.append(
                    "size: the driver's sizeimage exceeds devalloc's layout by more than "
                    f"{MAX_LEARNED_ROWS} rows: verify buffers against the driver"
                )
    exact = tuple(_exact(fmt, s, rules) for s in unique)
    return LearnedLayout(fmt, multi_buffer, rules, unique, exact, "; ".join(notes))


def _exact(fmt: PixelFormat, sample: TrySample, rules: LayoutRules) -> bool:
    try:
        lay = layout(fmt, sample.width, sample.height, rules=rules)
    except UsageError:
        return False
    return lay.planes[0].pitch == sample.bytesperline[0] and lay.buffer_sizes == sample.sizeimage


def combine_rules(learned: Iterable[LearnedLayout]) -> LayoutRules:
    """One set of rules that covers every learned format: the lcm of the alignments and the most
    extra rows (``multi_buffer`` stays False: constraints say that with ``buffers``)."""
    pitch = height = 1
    extra = 0
    for item in learned:
        pitch = math.lcm(pitch, item.rules.pitch_align)
        height = math.lcm(height, item.rules.height_align)
        extra = max(extra, item.rules.extra_rows)
    return LayoutRules(pitch_align=pitch, height_align=height, extra_rows=extra)


def v4l2_single_planar_layout(
    fmt: PixelFormat, height: int, bytesperline: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Where the single-planar V4L2 API puts each colour plane of ``fmt``: (offsets, pitches).

    The planes follow each other without gaps; the first has ``bytesperline`` per row and
    ``height`` rows, each later one its share of ``bytesperline`` (by bits per pixel and
    horizontal subsampling) and ``ceil(height / vsub)`` rows.
    """
    offsets = [0]
    pitches = [bytesperline]
    end = bytesperline * height
    bpp = [
        Fraction(b * 8, w * h)
        for b, w, h in zip(fmt.block_bytes, fmt.block_w, fmt.block_h, strict=True)
    ]
    for i in range(1, fmt.planes):
        pitch = math.ceil(bytesperline * bpp[i] / (bpp[0] * fmt.hsub))
        offsets.append(end)
        pitches.append(pitch)
        end += pitch * -(-height // fmt.vsub)
    return tuple(offsets), tuple(pitches)


def _known_pairs(pairs: Iterable[tuple[int, int]]) -> tuple[list[tuple[int, int]], list[int]]:
    known: list[tuple[int, int]] = []
    unknown: list[int] = []
    for fourcc, modifier in pairs:
        try:
            lookup_format(fourcc)
        except UsageError:
            if fourcc not in unknown:
                unknown.append(fourcc)
            continue
        if (fourcc, modifier) not in known:
            known.append((fourcc, modifier))
    return known, unknown


#: KMS plane types in the order their usages are listed.
PLANE_USAGES = ("primary", "overlay", "cursor")


def kms_usages(
    device: str,
    driver: str,
    planes: Iterable[tuple[str, Sequence[tuple[int, int]]]],
    *,
    max_width: int | None,
    max_height: int | None,
    cursor_size: tuple[int, int] | None = None,
) -> tuple[list[Constraints], list[int]]:
    """One usage per KMS plane type from each plane's (type, IN_FORMATS pairs).

    Pairs are the union over the planes of a type, in plane order then blob order. Formats
    devalloc has no table entry for are left out and returned (their fourcc codes), not
    guessed. Sizes are the framebuffer limits of MODE_GETRESOURCES (0 means none); the cursor
    usage is limited to DRM_CAP_CURSOR_WIDTH x HEIGHT when given.

    Returns:
        The constraints (primary, overlay, cursor; types without planes left out) and the
        fourcc codes left out.
    """
    by_type: dict[str, list[tuple[int, int]]] = {}
    counts: dict[str, int] = {}
    for plane_type, pairs in planes:
        kind = plane_type or "overlay"
        by_type.setdefault(kind, []).extend(pairs)
        counts[kind] = counts.get(kind, 0) + 1
    usages: list[Constraints] = []
    unmapped: list[int] = []
    order = [t for t in PLANE_USAGES if t in by_type] + sorted(set(by_type) - set(PLANE_USAGES))
    for kind in order:
        known, unknown = _known_pairs(by_type[kind])
        unmapped.extend(f for f in unknown if f not in unmapped)
        if not known:
            continue
        width, height = max_width or None, max_height or None
        if kind == "cursor" and cursor_size is not None:
            width = min(width or cursor_size[0], cursor_size[0])
            height = min(height or cursor_size[1], cursor_size[1])
        n = counts[kind]
        usages.append(
            Constraints(
                device=device,
                usage=kind,
                pairs=tuple(known),
                max_width=width,
                max_height=height,
                access="read",
                description=(
                    f"{n} {kind} plane{'s' if n > 1 else ''} of {driver}: formats and modifiers "
                    "from IN_FORMATS, size limits from MODE_GETRESOURCES"
                ),
            )
        )
    return usages, unmapped


def import_usage(device: str, driver: str) -> Constraints:
    """The ``import`` usage of a DRM device without KMS (vgem, render-only GPUs).

    Such a device takes any dma-buf as a GEM object (DRM_IOCTL_PRIME_FD_TO_HANDLE) whatever its
    contents; it has no format list to read. It is represented as every format devalloc knows
    with DRM_FORMAT_MOD_LINEAR, read-write, scattered system memory: "whatever a linear buffer
    holds". What a GPU's engines can do with the buffer is not discoverable from the kernel.
    """
    return Constraints(
        device=device,
        usage="import",
        pairs=tuple((f.fourcc, DRM_FORMAT_MOD_LINEAR) for f in FORMATS.values()),
        access="read-write",
        description=(
            f"{driver} imports any dma-buf (PRIME); every format devalloc knows, LINEAR, stands "
            "for 'any linear contents'"
        ),
    )


def v4l2_usage(
    device: str,
    usage: str,
    formats: Sequence[tuple[PixelFormat, bool]],
    learned: Sequence[LearnedLayout],
    *,
    max_width: int | None,
    max_height: int | None,
    description: str,
) -> Constraints | None:
    """The usage of one V4L2 queue: its mapped formats (V4L2 has no modifiers: LINEAR), in
    ENUM_FMT order, with the rules that cover every learned format.

    Args:
        device: the device id (the node's sysfs name).
        usage: ``"capture"`` or ``"output"``.
        formats: (DRM format, one buffer per plane) for each enumerated, mapped format.
        learned: the learned layouts (combined with :func:`combine_rules`).
        max_width: the largest width TRY_FMT allowed (None: unknown).
        max_height: the largest height TRY_FMT allowed.
        description: free text.

    Returns:
        None when no enumerated format maps to a DRM format.
    """
    pairs = tuple(dict.fromkeys((fmt.fourcc, DRM_FORMAT_MOD_LINEAR) for fmt, _ in formats))
    if not pairs:
        return None
    kinds = {multi for fmt, multi in formats if fmt.planes > 1}
    buffers: Buffers = "single"
    if kinds == {True}:
        buffers = "per-plane"
    elif kinds == {True, False}:
        buffers = "any"
    access: DeviceAccess = "write" if usage == "capture" else "read"
    return Constraints(
        device=device,
        usage=usage,
        pairs=pairs,
        layout=combine_rules(learned),
        buffers=buffers,
        max_width=max_width,
        max_height=max_height,
        memory=MemoryRules(),
        access=access,
        description=description,
    )

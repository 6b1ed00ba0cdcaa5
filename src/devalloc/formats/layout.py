"""Plane layouts: offsets, pitches and sizes of a format at a size under an importer's rules.

Example:
    >>> lay = layout("NV12", 1920, 1080, rules=LayoutRules(pitch_align=64))
    >>> [(p.offset, p.pitch, p.size) for p in lay.planes], lay.size
    ([(0, 1920, 2073600), (2073600, 1920, 1036800)], 3110400)
    >>> layout("YUV420", 5, 3).planes[1].pitch   # odd sizes round up in subsampled planes
    3

Conventions:
    * The first plane's pitch is the smallest one that holds a row and meets the alignment; the
      other planes' pitches follow from it by subsampling (``ceil(pitch0 * bpp_i / (bpp_0 *
      hsub))``, as V4L2 and GStreamer do). When that would break a plane's own alignment the
      first plane's pitch grows until every plane fits, so the relation always holds.
    * Height alignment and extra rows apply to the first plane; other planes have
      ``ceil(rows0 / vsub)`` rows. Odd dimensions round up in subsampled planes.
    * ``pitch`` is bytes per row of pixels (per the kernel for block formats: a block row is
      ``pitch * block_h`` bytes).
    * Everything is a Python int; layouts above :data:`MAX_SIZE` bytes are refused.

Non-LINEAR modifiers: Intel X, Y, Yf and 4 tiling (and the DG2/LNL/BMG compression modifiers,
whose CCS lives outside the buffer) get tile-aligned pitches, rows and offsets; Broadcom SAND with
a column height gets its column layout; every other modifier gives an opaque layout: the exporter
decides, and no numbers are invented.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from ..errors import UsageError
from .fourcc import PixelFormat, lookup_format
from .modifier import (
    DRM_FORMAT_MOD_LINEAR,
    Modifier,
    Vendor,
    broadcom_param,
    parse_modifier,
)

#: Largest buffer the engine describes (256 TiB); anything larger is a mistake.
MAX_SIZE = 1 << 48
#: Largest width or height accepted.
MAX_DIMENSION = 1 << 20
#: Largest alignment accepted.
MAX_ALIGN = 1 << 30
_PAGE = 4096


@dataclass(frozen=True)
class LayoutRules:
    """What an importer requires of a buffer. All sizes in bytes, rows in pixel rows.

    Attributes:
        pitch_align: every plane's pitch is a multiple of this.
        plane_pitch_align: per-plane pitch alignment on top of ``pitch_align`` (entry i for
            plane i; missing entries mean 1).
        height_align: the first plane's rows are rounded up to this; chroma rows follow.
        offset_align: each plane after the first starts at a multiple of this (one buffer).
        size_align: each buffer's size is a multiple of this.
        extra_rows: rows added to the first plane after height alignment.
        min_size: each buffer is at least this big.
        multi_buffer: one buffer (fd) per plane, each plane at offset 0 of its own buffer.
    """

    pitch_align: int = 1
    plane_pitch_align: tuple[int, ...] = ()
    height_align: int = 1
    offset_align: int = 1
    size_align: int = 1
    extra_rows: int = 0
    min_size: int = 0
    multi_buffer: bool = False

    def __post_init__(self) -> None:
        for name in ("pitch_align", "height_align", "offset_align", "size_align"):
            _check_int(name, getattr(self, name), 1, MAX_ALIGN)
        if not isinstance(self.plane_pitch_align, tuple):
            raise UsageError("plane_pitch_align is a tuple of per-plane alignments")
        for i, align in enumerate(self.plane_pitch_align):
            _check_int(f"plane_pitch_align[{i}]", align, 1, MAX_ALIGN)
        _check_int("extra_rows", self.extra_rows, 0, MAX_DIMENSION)
        _check_int("min_size", self.min_size, 0, MAX_SIZE)
        if not isinstance(self.multi_buffer, bool):
            raise UsageError(f"multi_buffer is True or False, not {self.multi_buffer!r}")

    def to_json(self) -> dict[str, object]:
        """The rules as JSON (``multi_buffer`` left out: constraints and plans say ``buffers``)."""
        return {
            "pitch_align": self.pitch_align,
            "plane_pitch_align": list(self.plane_pitch_align),
            "height_align": self.height_align,
            "offset_align": self.offset_align,
            "size_align": self.size_align,
            "extra_rows": self.extra_rows,
            "min_size": self.min_size,
        }

    def plane_align(self, plane: int) -> int:
        """The pitch alignment of ``plane``."""
        extra = self.plane_pitch_align[plane] if plane < len(self.plane_pitch_align) else 1
        return math.lcm(self.pitch_align, extra)


@dataclass(frozen=True)
class PlaneLayout:
    """One plane: where it starts (in its buffer), bytes per row, bytes in all."""

    offset: int
    pitch: int
    size: int
    rows: int
    buffer: int = 0

    @property
    def end(self) -> int:
        """The offset just past the plane."""
        return self.offset + self.size


@dataclass(frozen=True)
class Layout:
    """The layout of one image.

    Attributes:
        format: the pixel format.
        width: image width in pixels.
        height: image height in pixels.
        modifier: the modifier it was computed for.
        planes: per plane offset/pitch/size (empty when ``opaque``).
        size: total bytes (the sum of ``buffer_sizes``); None when ``opaque``.
        buffer_sizes: size of each buffer: one, or one per plane when ``multi_buffer``.
        multi_buffer: one buffer per plane.
        opaque: the modifier's layout is vendor-private: the exporter decides the sizes.
        note: how the layout was derived, or why it is opaque.
    """

    format: PixelFormat
    width: int
    height: int
    modifier: Modifier
    planes: tuple[PlaneLayout, ...]
    size: int | None
    buffer_sizes: tuple[int, ...] = ()
    multi_buffer: bool = False
    opaque: bool = False
    note: str = ""

    def to_json(self) -> dict[str, object]:
        """The JSON of ``devalloc layout --json``."""
        return {
            "format": self.format.name,
            "fourcc": self.format.fourcc,
            "modifier": self.modifier.hex,
            "modifier_name": self.modifier.name,
            "width": self.width,
            "height": self.height,
            "size": self.size,
            "multi_buffer": self.multi_buffer,
            "opaque": self.opaque,
            "note": self.note,
            "buffer_sizes": list(self.buffer_sizes),
            "planes": [
                {"offset": p.offset, "pitch": p.pitch, "size": p.size, "buffer": p.buffer}
                for p in self.planes
            ],
        }


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{name} must be an integer, not {value!r}")
    if not low <= value <= high:
        raise UsageError(f"{name} must be between {low} and {high}, not {value}")
    return value


def _round_up(value: int, align: int) -> int:
    return -(-value // align) * align


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class _Tiling:
    """Tile shape for a plane of a given pitch unit: bytes wide, rows high (None: not tiled)."""

    name: str
    width_bytes: tuple[int, ...]
    rows: tuple[int, ...]
    pitch_tiles: int = 1


def _plane_geometry(
    fmt: PixelFormat, width: int, rows0: int
) -> tuple[list[int], list[int], list[Fraction]]:
    """Per plane: minimum bytes per row, rows, and bits per pixel."""
    need: list[int] = []
    rows: list[int] = []
    bpp: list[Fraction] = []
    packed_yuv = fmt.planes == 1 and fmt.is_yuv
    for i in range(fmt.planes):
        bw, bh, bb = fmt.block_w[i], fmt.block_h[i], fmt.block_bytes[i]
        if i == 0:
            plane_w = _round_up(width, fmt.hsub) if packed_yuv and bw == 1 else width
            plane_h = rows0
        else:
            plane_w, plane_h = _ceil_div(width, fmt.hsub), _ceil_div(rows0, fmt.vsub)
        blocks = _ceil_div(plane_w, bw)
        need.append(_ceil_div(blocks * bb, bh))
        rows.append(_round_up(plane_h, bh))
        bpp.append(Fraction(bb * 8, bw * bh))
    return need, rows, bpp


def _choose_pitches(
    fmt: PixelFormat, need: list[int], bpp: list[Fraction], aligns: list[int]
) -> list[int]:
    """The smallest first-plane pitch from which every plane's pitch follows and fits."""
    ratios = [Fraction(1)] + [bpp[i] / (bpp[0] * fmt.hsub) for i in range(1, fmt.planes)]
    step = aligns[0]
    lower = _round_up(need[0], aligns[0])
    for i in range(1, fmt.planes):
        r, a = ratios[i], aligns[i]
        step = math.lcm(step, r.denominator * a // math.gcd(r.numerator, r.denominator * a))
        lower = max(lower, math.ceil(Fraction(need[i]) / r))
    upper = _round_up(lower, step)  # at a multiple of ``step`` every derived pitch is aligned

    def derived(pitch0: int) -> list[int] | None:
        pitches = [pitch0]
        for i in range(1, fmt.planes):
            p = math.ceil(pitch0 * ratios[i])
            if p < need[i] or p % aligns[i]:
                return None
            pitches.append(p)
        return pitches

    start = _round_up(need[0], aligns[0])
    if (upper - start) // aligns[0] <= 65536:
        for pitch0 in range(start, upper, aligns[0]):
            found = derived(pitch0)
            if found is not None:
                return found
    result = derived(upper)
    assert result is not None
    return result


def _intel_tiling(value: int, fmt: PixelFormat) -> _Tiling | str:
    """Tile shape of an Intel modifier, or why the layout is opaque."""
    code = value & ((1 << 56) - 1)
    if code == 1:
        return _Tiling("Intel X tiling (512 B x 8 rows)", (512,) * fmt.planes, (8,) * fmt.planes)
    if code == 2:
        return _Tiling("Intel Y tiling (128 B x 32 rows)", (128,) * fmt.planes, (32,) * fmt.planes)
    if code == 9:
        return _Tiling("Intel Tile 4 (128 B x 32 rows)", (128,) * fmt.planes, (32,) * fmt.planes)
    if code in (10, 11, 16, 17):
        # CCS kept outside the buffer; main surface pitch a multiple of four Tile 4 widths.
        return _Tiling(
            "Intel Tile 4, CCS outside the buffer (pitch multiple of 4 tiles)",
            (128,) * fmt.planes,
            (32,) * fmt.planes,
            pitch_tiles=4,
        )
    if code == 3:
        widths: list[int] = []
        for i in range(fmt.planes):
            if fmt.block_w[i] != 1 or fmt.block_h[i] != 1:
                return "Intel Yf tiling of a block format is not public"
            cpp = fmt.block_bytes[i]
            tile_w = {1: 64, 2: 128, 4: 128, 8: 256, 16: 256}.get(cpp)
            if tile_w is None:
                return f"Intel Yf tiling has no tile shape for {cpp} bytes per pixel"
            widths.append(tile_w)
        return _Tiling(
            "Intel Yf tiling (4 KiB tiles)",
            tuple(widths),
            tuple(_PAGE // w for w in widths),
        )
    return "Intel compression with a CCS plane: its size is the driver's"


def layout(
    format: str | int | PixelFormat,
    width: int,
    height: int,
    modifier: int | str | Modifier = DRM_FORMAT_MOD_LINEAR,
    rules: LayoutRules | None = None,
) -> Layout:
    """Compute the plane layout of ``format`` at ``width`` x ``height``.

    Args:
        format: a format name, fourcc or :class:`PixelFormat`.
        width: width in pixels (1 .. :data:`MAX_DIMENSION`).
        height: height in pixels (1 .. :data:`MAX_DIMENSION`).
        modifier: a modifier value, name or :class:`Modifier` (default LINEAR).
        rules: the importer's requirements (default: none).

    Raises:
        UsageError: unknown format or modifier, bad dimensions or rules, or a layout larger
            than :data:`MAX_SIZE`.
    """
    fmt = lookup_format(format)
    _check_int("width", width, 1, MAX_DIMENSION)
    _check_int("height", height, 1, MAX_DIMENSION)
    mod = parse_modifier(modifier)
    rules = LayoutRules() if rules is None else rules
    if not isinstance(rules, LayoutRules):
        raise UsageError(f"rules must be LayoutRules, not {type(rules).__name__}")

    tiling: _Tiling | None = None
    note = "linear"
    if not mod.is_linear:
        if mod.vendor == Vendor.INTEL:
            found = _intel_tiling(mod.value, fmt)
            if isinstance(found, str):
                return _opaque(fmt, width, height, mod, rules, found)
            tiling = found
            note = found.name
        elif mod.vendor == Vendor.BROADCOM and (mod.value & 0xFF) in (2, 3, 4, 5):
            return _sand(fmt, width, height, mod, rules)
        else:
            return _opaque(fmt, width, height, mod, rules, f"{mod.name}: vendor-private layout")

    rows0 = _round_up(height, rules.height_align) + rules.extra_rows
    need, rows, bpp = _plane_geometry(fmt, width, rows0)
    aligns = [rules.plane_align(i) for i in range(fmt.planes)]
    offset_align = rules.offset_align
    size_align = rules.size_align
    if tiling is not None:
        aligns = [
            math.lcm(a, tiling.width_bytes[i] * (tiling.pitch_tiles if i == 0 else 1))
            for i, a in enumerate(aligns)
        ]
        rows = [_round_up(r, tiling.rows[i]) for i, r in enumerate(rows)]
        offset_align = math.lcm(offset_align, _PAGE)
        size_align = math.lcm(size_align, _PAGE)
    pitches = _choose_pitches(fmt, need, bpp, aligns)
    return _assemble(fmt, width, height, mod, rules, pitches, rows, offset_align, size_align, note)


def _assemble(
    fmt: PixelFormat,
    width: int,
    height: int,
    mod: Modifier,
    rules: LayoutRules,
    pitches: list[int],
    rows: list[int],
    offset_align: int,
    size_align: int,
    note: str,
) -> Layout:
    planes: list[PlaneLayout] = []
    buffers: list[int] = []
    end = 0
    for i in range(fmt.planes):
        size = pitches[i] * rows[i]
        if rules.multi_buffer:
            planes.append(PlaneLayout(0, pitches[i], size, rows[i], buffer=i))
            buffers.append(_round_up(max(size, rules.min_size), size_align))
        else:
            offset = _round_up(end, offset_align) if i else 0
            planes.append(PlaneLayout(offset, pitches[i], size, rows[i]))
            end = offset + size
    if not rules.multi_buffer:
        buffers.append(_round_up(max(end, rules.min_size), size_align))
    total = sum(buffers)
    if total > MAX_SIZE:
        raise UsageError(
            f"{fmt.name} {width}x{height} needs {total} bytes, more than the {MAX_SIZE} "
            "bytes (2^48) devalloc will describe"
        )
    return Layout(
        fmt,
        width,
        height,
        mod,
        tuple(planes),
        total,
        tuple(buffers),
        rules.multi_buffer,
        False,
        note,
    )


def _opaque(
    fmt: PixelFormat, width: int, height: int, mod: Modifier, rules: LayoutRules, why: str
) -> Layout:
    return Layout(
        fmt,
        width,
        height,
        mod,
        (),
        None,
        (),
        rules.multi_buffer,
        True,
        f"opaque: the exporter decides ({why})",
    )


def _sand(fmt: PixelFormat, width: int, height: int, mod: Modifier, rules: LayoutRules) -> Layout:
    """Broadcom SAND: columns of fixed byte width, each holding Y rows then CbCr rows."""
    column_width = {2: 32, 3: 64, 4: 128, 5: 256}[mod.value & 0xFF]
    column_height = broadcom_param(mod.value)
    if fmt.name not in ("NV12", "NV21", "P030") or (fmt.name == "P030" and column_width != 128):
        return _opaque(fmt, width, height, mod, rules, f"SAND is not defined for {fmt.name}")
    if column_height == 0:
        return _opaque(fmt, width, height, mod, rules, "SAND without a column height")
    rows0 = _round_up(height, rules.height_align) + rules.extra_rows
    need, rows, _bpp = _plane_geometry(fmt, width, rows0)
    if rows[0] + rows[1] > column_height:
        raise UsageError(
            f"a SAND column of {column_height} rows cannot hold {rows[0]} luma and {rows[1]} "
            "chroma rows"
        )
    columns = _ceil_div(need[0], column_width)
    column_bytes = column_width * column_height
    planes = (
        PlaneLayout(0, need[0], columns * column_width * rows[0], rows[0]),
        PlaneLayout(rows[0] * column_width, need[1], columns * column_width * rows[1], rows[1]),
    )
    total = _round_up(max(columns * column_bytes, rules.min_size), rules.size_align)
    if total > MAX_SIZE:
        raise UsageError(f"{fmt.name} {width}x{height} SAND needs more than 2^48 bytes")
    return Layout(
        fmt,
        width,
        height,
        mod,
        planes,
        total,
        (total,),
        False,
        False,
        f"Broadcom SAND: {columns} columns of {column_width} B x {column_height} rows, "
        "Y then CbCr in each column; pitch is the row width as the header asks",
    )

"""Pure pixel helpers for the codec and copy-path kernel tests: test images and reference models.

Example:
    >>> rgb24_to_rgb565(bytes([255, 0, 0, 0, 0, 255]))  # red, blue -> F800, 001F little-endian
    b'\\x00\\xf8\\x1f\\x00'
    >>> vim2m_rgb24_to_rgb565(bytes([255, 0, 0, 0, 0, 255]))  # vim2m repeats the even pixel
    b'\\x00\\xf8\\x00\\xf8'
    >>> diff_stats(b"\\x01\\x05", b"\\x02\\x05")
    DiffStats(max=1, mean=0.5, count=1)

Byte strings are handled with ``bytes.translate`` and big-integer OR instead of per-pixel Python
loops: the kernel tests run under QEMU TCG, where a 640x480 frame per-pixel loop takes seconds.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

__all__ = [
    "DiffStats",
    "codec_frame",
    "diff_stats",
    "nv12_to_planes",
    "rgb24_to_rgb565",
    "vim2m_rgb24_to_rgb565",
    "yuv420_planes",
]

_R_HI = bytes(v & 0xF8 for v in range(256))  # RGB565 high byte: rrrrrggg, red part
_G_HI = bytes(v >> 5 for v in range(256))  # green's top 3 bits
_G_LO = bytes((v << 3) & 0xE0 for v in range(256))  # low byte gggbbbbb: green's next 3 bits
_B_LO = bytes(v >> 3 for v in range(256))  # blue's top 5 bits


def _or(a: bytes, b: bytes) -> bytes:
    """Bytewise OR of two equally long byte strings."""
    return (int.from_bytes(a, "little") | int.from_bytes(b, "little")).to_bytes(len(a), "little")


def _pack565(r: bytes, g: bytes, b: bytes) -> tuple[bytes, bytes]:
    """(low bytes, high bytes) of little-endian RGB565 for equally long channel strings."""
    return _or(g.translate(_G_LO), b.translate(_B_LO)), _or(r.translate(_R_HI), g.translate(_G_HI))


def rgb24_to_rgb565(frame: bytes) -> bytes:
    """V4L2 RGB24 (bytes R, G, B; DRM BGR888) to V4L2 RGB565 (DRM RGB565: little-endian
    ``rrrrrggg gggbbbbb``), truncating each channel as vim2m does (``r & 0xF8``, ``g >> 2``,
    ``b >> 3``)."""
    if len(frame) % 3:
        raise ValueError(f"an RGB24 frame is a multiple of 3 bytes, not {len(frame)}")
    lo, hi = _pack565(frame[0::3], frame[1::3], frame[2::3])
    out = bytearray(2 * len(lo))
    out[0::2] = lo
    out[1::2] = hi
    return bytes(out)


def vim2m_rgb24_to_rgb565(frame: bytes) -> bytes:
    """What Linux 6.12's vim2m writes for RGB24 -> RGB565 at the same size: every pixel pair gets
    the colour of its first (even) pixel. ``copy_two_pixels()`` in
    drivers/media/test-drivers/vim2m.c reads both pixels into ``r[2], g[2], b[2]`` but its
    RGB565 and RGB565X output loops never advance the ``r``/``g``/``b`` pointers (the RGB24 and
    BGR24 loops do). Rows have an even number of pixels (vim2m aligns widths to 2)."""
    if len(frame) % 6:
        raise ValueError(f"vim2m converts pixel pairs: {len(frame)} bytes is not a whole number")
    lo, hi = _pack565(frame[0::6], frame[1::6], frame[2::6])
    out = bytearray(4 * len(lo))
    out[0::4] = lo
    out[1::4] = hi
    out[2::4] = lo
    out[3::4] = hi
    return bytes(out)


@dataclass(frozen=True)
class DiffStats:
    """How two equally long byte strings differ, byte by byte."""

    max: int
    mean: float
    count: int


def diff_stats(a: bytes, b: bytes) -> DiffStats:
    """The largest and mean absolute byte difference and the number of differing bytes."""
    if len(a) != len(b):
        raise ValueError(f"compare equally long data, not {len(a)} and {len(b)} bytes")
    if not a:
        return DiffStats(0, 0.0, 0)
    diffs = list(map(abs, map(operator.sub, a, b)))
    return DiffStats(max(diffs), sum(diffs) / len(diffs), len(diffs) - diffs.count(0))


def _flat_value(bx: int, by: int, frame: int, salt: int) -> int:
    """A block value in 16..235 that is never 127..129, where FWHT's intra quantizer drops the
    DC coefficient of a flat block (|16 * (v - 128)| <= qp 20) and decodes 128."""
    value = 16 + (bx * 37 + by * 59 + frame * 23 + salt) % 220
    return value + 4 if 126 < value < 130 else value


def codec_frame(width: int, height: int, frame: int) -> bytes:
    """A YUV420 (YU12, pitch = width) test frame: the top half flat 16x16 blocks (8x8 in the
    chroma planes) whose values move with ``frame``, the bottom half a smooth diagonal ramp.

    Flat 8x8 blocks are what FWHT reproduces exactly: the encoder codes a block with no variance
    as an intra block (``vari <= vard`` in codec-fwht.c decide_blocktype), whose only coefficient,
    the DC, survives quantization unchanged when the value is not within 1 of 128.
    """
    if width % 16 or height % 32:
        raise ValueError(
            f"the test frame needs width % 16 == 0 and height % 32 == 0: {width}x{height}"
        )
    cw, ch = width // 2, height // 2

    def plane(w: int, h: int, block: int, salt: int, ramp: tuple[int, int, int]) -> bytes:
        rows: list[bytes] = []
        for y in range(h // 2):
            by = y // block
            rows.append(
                b"".join(
                    bytes((_flat_value(bx, by, frame, salt),)) * block for bx in range(w // block)
                )
            )
        base, kx, ky = ramp
        for y in range(h // 2, h):
            rows.append(bytes(base + (x * kx + y * ky) // (w + h) + frame for x in range(w)))
        return b"".join(rows)

    y = plane(width, height, 16, 0, (16, 150, 50))
    u = plane(cw, ch, 8, 101, (64, 100, 20))
    v = plane(cw, ch, 8, 211, (96, 20, 100))
    return y + u + v


def yuv420_planes(data: bytes, width: int, height: int) -> tuple[bytes, bytes, bytes]:
    """(Y, U, V) of a YU12 image without padding."""
    ysize, csize = width * height, (width // 2) * (height // 2)
    return data[:ysize], data[ysize : ysize + csize], data[ysize + csize : ysize + 2 * csize]


def nv12_to_planes(data: bytes, width: int, height: int) -> tuple[bytes, bytes, bytes]:
    """(Y, U, V) of an NV12 image without padding (U and V de-interleaved)."""
    ysize = width * height
    uv = data[ysize : ysize + ysize // 2]
    return data[:ysize], uv[0::2], uv[1::2]

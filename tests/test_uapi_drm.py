"""parse_in_formats decodes IN_FORMATS blobs built by hand from the drm_mode.h structs."""

from __future__ import annotations

import ctypes

import pytest

from devalloc.uapi.drm import (
    FORMAT_BLOB_CURRENT,
    drm_format_modifier,
    drm_format_modifier_blob,
    parse_in_formats,
)

LINEAR = 0
X_TILED = 0x0100000000000001  # I915_FORMAT_MOD_X_TILED
AFBC = 0x0800000000000001  # an arbitrary vendor modifier


def _fourcc(code: str) -> int:
    return int.from_bytes(code.encode("ascii"), "little")


def _blob(
    formats: list[int],
    modifiers: list[tuple[int, int, int]],
    *,
    version: int = FORMAT_BLOB_CURRENT,
) -> bytes:
    """An IN_FORMATS blob laid out as the kernel does: header, formats, 8-aligned modifiers.

    ``modifiers`` are (formats bitmask, offset, modifier) triples.
    """
    header_size = ctypes.sizeof(drm_format_modifier_blob)
    formats_offset = header_size
    modifiers_offset = formats_offset + 4 * len(formats)
    modifiers_offset += -modifiers_offset % 8
    header = drm_format_modifier_blob(
        version=version,
        flags=0,
        count_formats=len(formats),
        formats_offset=formats_offset,
        count_modifiers=len(modifiers),
        modifiers_offset=modifiers_offset,
    )
    data = bytearray(modifiers_offset + ctypes.sizeof(drm_format_modifier) * len(modifiers))
    data[:header_size] = bytes(header)
    data[formats_offset:modifiers_offset] = bytes((ctypes.c_uint32 * len(formats))(*formats)).ljust(
        modifiers_offset - formats_offset, b"\0"
    )
    for n, (mask, offset, modifier) in enumerate(modifiers):
        entry = drm_format_modifier(formats=mask, offset=offset, pad=0, modifier=modifier)
        start = modifiers_offset + n * ctypes.sizeof(drm_format_modifier)
        data[start : start + ctypes.sizeof(entry)] = bytes(entry)
    return bytes(data)


# 70 formats, so that a modifier's window can start at offset 64 and still name real formats.
FORMATS = [_fourcc("XR24"), _fourcc("AR24"), _fourcc("NV12")] + [0x1000 + i for i in range(67)]


def test_struct_sizes_match_the_kernel_layout() -> None:
    assert ctypes.sizeof(drm_format_modifier_blob) == 24
    assert ctypes.sizeof(drm_format_modifier) == 24
    assert drm_format_modifier.modifier.offset == 16


def test_parse_in_formats_pairs_each_modifier_with_its_formats() -> None:
    blob = _blob(
        FORMATS,
        [
            (0b111, 0, LINEAR),  # formats 0, 1, 2
            (0b101, 0, X_TILED),  # formats 0 and 2
            # window 64..127: bits 0 and 5 are formats 64 and 69 (the last one)
            ((1 << 0) | (1 << 5), 64, AFBC),
        ],
    )
    assert parse_in_formats(blob) == [
        (_fourcc("XR24"), LINEAR),
        (_fourcc("AR24"), LINEAR),
        (_fourcc("NV12"), LINEAR),
        (_fourcc("XR24"), X_TILED),
        (_fourcc("NV12"), X_TILED),
        (FORMATS[64], AFBC),
        (FORMATS[69], AFBC),
    ]


def test_parse_in_formats_uses_bit_63_of_the_window() -> None:
    blob = _blob(FORMATS, [(1 << 63, 2, LINEAR)])
    assert parse_in_formats(blob) == [(FORMATS[65], LINEAR)]


def test_parse_in_formats_of_an_empty_list() -> None:
    assert parse_in_formats(_blob([], [])) == []


def test_parse_in_formats_rejects_a_short_header() -> None:
    with pytest.raises(ValueError, match="shorter than its 24-byte header"):
        parse_in_formats(b"\x01\x00\x00\x00")


def test_parse_in_formats_rejects_an_unknown_version() -> None:
    with pytest.raises(ValueError, match="version 2"):
        parse_in_formats(_blob(FORMATS, [(1, 0, LINEAR)], version=2))


def test_parse_in_formats_rejects_a_truncated_blob() -> None:
    blob = _blob(FORMATS, [(1, 0, LINEAR), (2, 0, X_TILED)])
    with pytest.raises(ValueError, match="cannot hold 2 modifiers"):
        parse_in_formats(blob[:-1])
    with pytest.raises(ValueError, match="cannot hold 70 formats"):
        parse_in_formats(blob[:100])


def test_parse_in_formats_rejects_garbage() -> None:
    garbage = bytes(
        drm_format_modifier_blob(version=1, count_formats=0xFFFFFFFF, formats_offset=24)
    )
    with pytest.raises(ValueError, match="cannot hold"):
        parse_in_formats(garbage)


def test_parse_in_formats_rejects_a_format_index_past_the_list() -> None:
    blob = _blob(FORMATS, [(1 << 6, 64, AFBC)])  # format 70 of 70
    with pytest.raises(ValueError, match="refers to format 70"):
        parse_in_formats(blob)

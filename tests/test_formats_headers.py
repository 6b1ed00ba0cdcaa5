"""devalloc.formats against the system's drm_fourcc.h and videodev2.h.

The headers' macros are expanded by a small preprocessor here (object- and function-like macros,
``##`` pasting) and evaluated as integer expressions, so every fourcc, modifier and field constant
we define is compared with the header's own value. Header formats we do not cover must be in
EXCLUDED_FORMATS, so a new kernel format fails this test until it is classified. Headers missing:
skip, unless DEVALLOC_STRICT=1.
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path

import pytest

from devalloc.formats import FORMATS, V4L2_FORMATS, parse_modifier
from devalloc.formats import modifier as mod

DRM_FOURCC_CANDIDATES = (
    Path("/usr/include/drm/drm_fourcc.h"),
    Path("/usr/include/libdrm/drm_fourcc.h"),
)
VIDEODEV2 = Path("/usr/include/linux/videodev2.h")

#: Header formats deliberately not in the table.
EXCLUDED_FORMATS = {
    # Not a format: the invalid sentinel (0).
    "INVALID",
    # Not a format: the flag OR-ed into a fourcc for big-endian variants.
    "BIG_ENDIAN",
    # The header: "Non-linear modifier only"; no CPU-addressable linear layout is defined.
    "VUY101010",
    # The header: "the exact Linear layout is undefined. These formats can only be used with a
    # non-Linear modifier" (AFBC/Amlogic compressed YUV 4:2:0).
    "YUV420_8BIT",
    "YUV420_10BIT",
}


def _header(candidates: tuple[Path, ...]) -> Path | None:
    for path in candidates:
        if path.exists():
            return path
    if os.environ.get("DEVALLOC_STRICT") == "1":
        pytest.fail(f"DEVALLOC_STRICT=1 and none of {[str(p) for p in candidates]} exists")
    return None


class Macros:
    """A tiny C preprocessor for the integer macros of a uapi header."""

    _DEFINE = re.compile(r"^\s*#\s*define\s+(\w+)(\(([^)]*)\))?\s*(.*)$")
    _IDENT = re.compile(r"[A-Za-z_]\w*")

    def __init__(self, text: str) -> None:
        text = re.sub(r"/\*.*?\*/", " ", text, flags=re.DOTALL).replace("\\\n", " ")
        self.objects: dict[str, str] = {}
        self.functions: dict[str, tuple[list[str], str]] = {}
        for line in text.splitlines():
            match = self._DEFINE.match(line)
            if match is None:
                continue
            name, params, body = match.group(1), match.group(3), match.group(4).strip()
            if match.group(2) is not None and line.split(name, 1)[1].startswith("("):
                self.functions[name] = ([p.strip() for p in params.split(",")], body)
            else:
                self.objects[name] = body

    def expand(self, text: str, depth: int = 0) -> str:
        assert depth < 50, f"macro recursion in {text!r}"
        out: list[str] = []
        pos = 0
        while True:
            match = self._IDENT.search(text, pos)
            if match is None:
                out.append(text[pos:])
                return "".join(out)
            out.append(text[pos : match.start()])
            name, pos = match.group(0), match.end()
            if name in self.functions:
                rest = text[pos:].lstrip()
                if rest.startswith("("):
                    start = len(text) - len(rest)
                    args, end = self._args(text, start)
                    params, body = self.functions[name]
                    out.append(
                        "(" + self.expand(self._substitute(params, args, body), depth + 1) + ")"
                    )
                    pos = end
                    continue
            if name in self.objects:
                out.append("(" + self.expand(self.objects[name], depth + 1) + ")")
                continue
            out.append(name)

    @staticmethod
    def _args(text: str, start: int) -> tuple[list[str], int]:
        level, args, current = 0, [], ""
        for i in range(start, len(text)):
            ch = text[i]
            if ch == "(":
                level += 1
                if level == 1:
                    continue
            elif ch == ")":
                level -= 1
                if level == 0:
                    args.append(current.strip())
                    return args, i + 1
            elif ch == "," and level == 1:
                args.append(current.strip())
                current = ""
                continue
            current += ch
        raise AssertionError(f"unbalanced parentheses in {text!r}")

    @classmethod
    def _substitute(cls, params: list[str], args: list[str], body: str) -> str:
        values = dict(zip(params, args, strict=True))
        body = re.sub(r"\s*##\s*", "##", body)
        replaced = cls._IDENT.sub(lambda m: values.get(m.group(0), m.group(0)), body)
        return replaced.replace("##", "")

    def value(self, text: str) -> int:
        expr = self.expand(text)
        expr = re.sub(r"\((?:__u32|__u64|int)\)", "", expr)
        expr = re.sub(r"'(.)'", lambda m: str(ord(m.group(1))), expr)
        expr = re.sub(r"\b(0[xX][0-9a-fA-F]+|\d+)[uUlL]+\b", r"\1", expr)
        # Only integer arithmetic is left once every macro is expanded.
        result = eval(expr, {"__builtins__": {}}, {})
        assert isinstance(result, int), f"{text} -> {expr!r}"
        return result & mod.U64_MASK


@cache
def drm_macros() -> Macros | None:
    path = _header(DRM_FOURCC_CANDIDATES)
    return None if path is None else Macros(path.read_text())


@cache
def v4l2_macros() -> Macros | None:
    path = _header((VIDEODEV2,))
    return None if path is None else Macros(path.read_text())


@pytest.fixture
def drm() -> Macros:
    macros = drm_macros()
    if macros is None:
        pytest.skip("no drm_fourcc.h (install libdrm-dev, or linux-libc-dev with drm headers)")
    return macros


@pytest.fixture
def v4l2() -> Macros:
    macros = v4l2_macros()
    if macros is None:
        pytest.skip("no linux/videodev2.h (install linux-libc-dev)")
    return macros


def header_formats(drm: Macros) -> dict[str, int]:
    return {
        name.removeprefix("DRM_FORMAT_"): drm.value(body)
        for name, body in drm.objects.items()
        if name.startswith("DRM_FORMAT_")
        and not name.startswith(("DRM_FORMAT_MOD_", "DRM_FORMAT_RESERVED"))
    }


def test_every_format_matches_the_header(drm: Macros) -> None:
    in_header = header_formats(drm)
    mismatched = {
        name: (hex(fmt.fourcc), hex(in_header[name]))
        for name, fmt in FORMATS.items()
        if name in in_header and in_header[name] != fmt.fourcc
    }
    assert not mismatched


def test_header_formats_we_leave_out_are_the_excluded_ones(drm: Macros) -> None:
    missing = set(header_formats(drm)) - set(FORMATS)
    assert missing == EXCLUDED_FORMATS & set(header_formats(drm)), (
        "classify these header formats: add them to the table or to EXCLUDED_FORMATS"
    )


def test_formats_newer_than_the_header_are_few(drm: Macros) -> None:
    """Formats the installed header lacks are checked where a newer header has them."""
    newer = set(FORMATS) - set(header_formats(drm))
    assert newer <= {
        *("C1", "C2", "C4", "D1", "D2", "D4", "D8", "R1", "R2", "R4"),
        *("AVUY8888", "XVUY8888", "NV20", "NV30"),
        *(f"S{s}{b}" for s in "024" for b in ("10", "12", "16")),
    }


def header_modifiers(drm: Macros) -> dict[str, int]:
    names = {
        name
        for name in drm.objects
        if name.startswith(("DRM_FORMAT_MOD_", "I915_FORMAT_MOD_"))
        and not name.startswith(("DRM_FORMAT_MOD_VENDOR_", "DRM_FORMAT_MOD_ARM_TYPE_"))
    }
    names.add("AMD_FMT_MOD")
    return {name: drm.value(name) for name in names if name in drm.objects}


def test_every_header_modifier_is_known_with_the_same_value(drm: Macros) -> None:
    in_header = header_modifiers(drm)
    assert in_header, "no modifier macros found"
    for name, value in in_header.items():
        assert mod.MODIFIER_MACROS.get(name) == value, name
        assert parse_modifier(name).value == value, name
        assert parse_modifier(str(parse_modifier(value))).value == value, name


def test_field_and_flag_macros_match_the_header(drm: Macros) -> None:
    checked = 0
    for name, value in mod.FIELD_MACROS.items():
        if name in drm.objects:
            assert drm.value(name) == value, name
            checked += 1
    assert checked > 60


def test_header_field_macros_are_all_known(drm: Macros) -> None:
    prefixes: tuple[str, ...] = ("AFBC_FORMAT_MOD_", "AFRC_FORMAT_MOD_", "AMD_FMT_MOD_")
    prefixes += ("VIVANTE_MOD_", "AMLOGIC_FBC_", "MTK_FMT_MOD_", "DRM_FORMAT_MOD_VENDOR_")
    unknown = {n for n in drm.objects if n.startswith(prefixes)} - set(mod.FIELD_MACROS)
    assert unknown == set()


@pytest.mark.parametrize(
    ("macro", "ours"),
    [
        (
            "DRM_FORMAT_MOD_NVIDIA_BLOCK_LINEAR_2D(0, 1, 2, 0xfe, 4)",
            mod.nvidia_block_linear_2d(0, 1, 2, 0xFE, 4),
        ),
        ("DRM_FORMAT_MOD_NVIDIA_16BX2_BLOCK(5)", mod.nvidia_16bx2_block(5)),
        ("DRM_FORMAT_MOD_BROADCOM_SAND128_COL_HEIGHT(96)", mod.broadcom_sand(128, 96)),
        ("DRM_FORMAT_MOD_BROADCOM_SAND256_COL_HEIGHT(1234567)", mod.broadcom_sand(256, 1234567)),
        (
            "DRM_FORMAT_MOD_ARM_AFBC(AFBC_FORMAT_MOD_BLOCK_SIZE_32x8_64x4 | AFBC_FORMAT_MOD_SPARSE"
            " | AFBC_FORMAT_MOD_YTR | AFBC_FORMAT_MOD_USM)",
            mod.arm_afbc(4 | mod.AFBC_FORMAT_MOD_SPARSE | mod.AFBC_FORMAT_MOD_YTR | 1 << 12),
        ),
        (
            "DRM_FORMAT_MOD_ARM_AFRC(AFRC_FORMAT_MOD_CU_SIZE_P0(AFRC_FORMAT_MOD_CU_SIZE_24) | "
            "AFRC_FORMAT_MOD_CU_SIZE_P12(AFRC_FORMAT_MOD_CU_SIZE_32) | "
            "AFRC_FORMAT_MOD_LAYOUT_SCAN)",
            mod.arm_afrc(
                mod.afrc_cu_size_p0(2) | mod.afrc_cu_size_p12(3) | mod.AFRC_FORMAT_MOD_LAYOUT_SCAN
            ),
        ),
        (
            "DRM_FORMAT_MOD_AMLOGIC_FBC(AMLOGIC_FBC_LAYOUT_SCATTER, AMLOGIC_FBC_OPTION_MEM_SAVING)",
            mod.amlogic_fbc(2, 1),
        ),
        (
            "AMD_FMT_MOD | AMD_FMT_MOD_SET(TILE_VERSION, AMD_FMT_MOD_TILE_VER_GFX10_RBPLUS) | "
            "AMD_FMT_MOD_SET(TILE, AMD_FMT_MOD_TILE_GFX9_64K_R_X) | AMD_FMT_MOD_SET(DCC, 1) | "
            "AMD_FMT_MOD_SET(DCC_INDEPENDENT_64B, 1) | AMD_FMT_MOD_SET(PIPE_XOR_BITS, 4) | "
            "AMD_FMT_MOD_SET(PACKERS, 3) | AMD_FMT_MOD_SET(PIPE, 7)",
            mod.amd_fmt_mod(
                tile_version=3,
                tile=27,
                dcc=1,
                dcc_independent_64b=1,
                pipe_xor_bits=4,
                packers=3,
                pipe=7,
            ),
        ),
    ],
)
def test_parametrized_modifier_macros(drm: Macros, macro: str, ours: int) -> None:
    assert drm.value(macro) == ours
    assert parse_modifier(str(parse_modifier(ours))).value == ours


def test_v4l2_formats_match_videodev2(v4l2: Macros) -> None:
    checked = 0
    for name, fmt in V4L2_FORMATS.items():
        macro = f"V4L2_PIX_FMT_{name}"
        if macro in v4l2.objects:
            assert v4l2.value(macro) == fmt.fourcc, name
            checked += 1
    assert checked >= 60


def test_v4l2_formats_newer_than_the_header_are_few(v4l2: Macros) -> None:
    newer = {n for n in V4L2_FORMATS if f"V4L2_PIX_FMT_{n}" not in v4l2.objects}
    assert newer <= {"Y210", "Y212", "Y216", "NV15", "P012", "P012M"}


def test_the_preprocessor_reads_fourcc_code(drm: Macros) -> None:
    assert drm.value("DRM_FORMAT_NV12") == 0x3231564E
    assert drm.value("DRM_FORMAT_MOD_INVALID") == (1 << 56) - 1

"""DRM format modifiers: vendor + value, readable names, and parsing back.

Example:
    >>> str(Modifier(I915_FORMAT_MOD_X_TILED))
    'I915_X_TILED'
    >>> m = Modifier(arm_afbc(AFBC_FORMAT_MOD_BLOCK_SIZE_16x16 | AFBC_FORMAT_MOD_SPARSE))
    >>> str(m), m.hex
    ('ARM_AFBC(16x16,SPARSE)', '0x0800000000000041')
    >>> parse_modifier("NVIDIA_BLOCK_LINEAR_2D(h=4,k=0xfe,g=2,s=1,c=0)").hex
    '0x03000000006fe014'
    >>> parse_modifier(str(m)) == m
    True

The top 8 bits of a modifier name the vendor, the low 56 bits are the vendor's own. Every vendor
encoding in ``drm_fourcc.h`` is decoded (Intel, AMD, NVIDIA, Samsung, Qualcomm, Vivante,
Broadcom, Arm AFBC/AFRC/misc, Allwinner, Amlogic, MediaTek, Apple). A value that no decoder
accepts prints as ``VENDOR_MOD(0x...)`` (its raw 56 bits), so every 64-bit value prints as a name
that :func:`parse_modifier` turns back into the same value. Decoded names use the header's macro
names without ``DRM_FORMAT_MOD_``/``FORMAT_MOD_`` (``LINEAR``, ``I915_Y_TILED``,
``BROADCOM_SAND128_COL_HEIGHT(96)``); :func:`parse_modifier` also takes the full macro names.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType

from ..errors import UsageError

U64_MASK = (1 << 64) - 1
_VALUE_MASK = (1 << 56) - 1


class Vendor(IntEnum):
    """``DRM_FORMAT_MOD_VENDOR_*``: the top 8 bits of a modifier."""

    NONE = 0x00
    INTEL = 0x01
    AMD = 0x02
    NVIDIA = 0x03
    SAMSUNG = 0x04
    QCOM = 0x05
    VIVANTE = 0x06
    BROADCOM = 0x07
    ARM = 0x08
    ALLWINNER = 0x09
    AMLOGIC = 0x0A
    MTK = 0x0B
    APPLE = 0x0C


def fourcc_mod_code(vendor: int, value: int) -> int:
    """``fourcc_mod_code(vendor, val)``: vendor in the top 8 bits, ``value`` in the low 56."""
    return ((int(vendor) & 0xFF) << 56) | (value & _VALUE_MASK)


def mod_vendor(modifier: int) -> int:
    """``fourcc_mod_get_vendor``: the vendor id of a modifier."""
    return (modifier >> 56) & 0xFF


DRM_FORMAT_RESERVED = (1 << 56) - 1
DRM_FORMAT_MOD_INVALID = fourcc_mod_code(Vendor.NONE, DRM_FORMAT_RESERVED)
DRM_FORMAT_MOD_LINEAR = fourcc_mod_code(Vendor.NONE, 0)
LINEAR = DRM_FORMAT_MOD_LINEAR
INVALID = DRM_FORMAT_MOD_INVALID

# Intel: whole-value codes.
_INTEL_NAMES: dict[int, str] = {
    1: "X_TILED",
    2: "Y_TILED",
    3: "Yf_TILED",
    4: "Y_TILED_CCS",
    5: "Yf_TILED_CCS",
    6: "Y_TILED_GEN12_RC_CCS",
    7: "Y_TILED_GEN12_MC_CCS",
    8: "Y_TILED_GEN12_RC_CCS_CC",
    9: "4_TILED",
    10: "4_TILED_DG2_RC_CCS",
    11: "4_TILED_DG2_MC_CCS",
    12: "4_TILED_DG2_RC_CCS_CC",
    13: "4_TILED_MTL_RC_CCS",
    14: "4_TILED_MTL_MC_CCS",
    15: "4_TILED_MTL_RC_CCS_CC",
    16: "4_TILED_LNL_CCS",
    17: "4_TILED_BMG_CCS",
}
I915_FORMAT_MOD_X_TILED = fourcc_mod_code(Vendor.INTEL, 1)
I915_FORMAT_MOD_Y_TILED = fourcc_mod_code(Vendor.INTEL, 2)
I915_FORMAT_MOD_YF_TILED = fourcc_mod_code(Vendor.INTEL, 3)
I915_FORMAT_MOD_Y_TILED_CCS = fourcc_mod_code(Vendor.INTEL, 4)
I915_FORMAT_MOD_YF_TILED_CCS = fourcc_mod_code(Vendor.INTEL, 5)
I915_FORMAT_MOD_Y_TILED_GEN12_RC_CCS = fourcc_mod_code(Vendor.INTEL, 6)
I915_FORMAT_MOD_Y_TILED_GEN12_MC_CCS = fourcc_mod_code(Vendor.INTEL, 7)
I915_FORMAT_MOD_Y_TILED_GEN12_RC_CCS_CC = fourcc_mod_code(Vendor.INTEL, 8)
I915_FORMAT_MOD_4_TILED = fourcc_mod_code(Vendor.INTEL, 9)
I915_FORMAT_MOD_4_TILED_DG2_RC_CCS = fourcc_mod_code(Vendor.INTEL, 10)
I915_FORMAT_MOD_4_TILED_DG2_MC_CCS = fourcc_mod_code(Vendor.INTEL, 11)

_SAMSUNG_NAMES = {1: "64_32_TILE", 2: "16_16_TILE"}
DRM_FORMAT_MOD_SAMSUNG_64_32_TILE = fourcc_mod_code(Vendor.SAMSUNG, 1)
DRM_FORMAT_MOD_SAMSUNG_16_16_TILE = fourcc_mod_code(Vendor.SAMSUNG, 2)

_QCOM_NAMES = {1: "COMPRESSED", 2: "TILED2", 3: "TILED3"}
DRM_FORMAT_MOD_QCOM_COMPRESSED = fourcc_mod_code(Vendor.QCOM, 1)
DRM_FORMAT_MOD_QCOM_TILED2 = fourcc_mod_code(Vendor.QCOM, 2)
DRM_FORMAT_MOD_QCOM_TILED3 = fourcc_mod_code(Vendor.QCOM, 3)

# Vivante: a base tiling plus tile-status (TS) and compression extension bits.
_VIVANTE_NAMES = {1: "TILED", 2: "SUPER_TILED", 3: "SPLIT_TILED", 4: "SPLIT_SUPER_TILED"}
DRM_FORMAT_MOD_VIVANTE_TILED = fourcc_mod_code(Vendor.VIVANTE, 1)
DRM_FORMAT_MOD_VIVANTE_SUPER_TILED = fourcc_mod_code(Vendor.VIVANTE, 2)
DRM_FORMAT_MOD_VIVANTE_SPLIT_TILED = fourcc_mod_code(Vendor.VIVANTE, 3)
DRM_FORMAT_MOD_VIVANTE_SPLIT_SUPER_TILED = fourcc_mod_code(Vendor.VIVANTE, 4)
VIVANTE_MOD_TS_64_4 = 1 << 48
VIVANTE_MOD_TS_64_2 = 2 << 48
VIVANTE_MOD_TS_128_4 = 3 << 48
VIVANTE_MOD_TS_256_4 = 4 << 48
VIVANTE_MOD_TS_MASK = 0xF << 48
VIVANTE_MOD_COMP_DEC400 = 1 << 52
VIVANTE_MOD_COMP_MASK = 0xF << 52
VIVANTE_MOD_EXT_MASK = VIVANTE_MOD_TS_MASK | VIVANTE_MOD_COMP_MASK
_VIVANTE_TS = {1: "TS_64_4", 2: "TS_64_2", 3: "TS_128_4", 4: "TS_256_4"}
_VIVANTE_COMP = {1: "COMP_DEC400"}

# NVIDIA.
DRM_FORMAT_MOD_NVIDIA_TEGRA_TILED = fourcc_mod_code(Vendor.NVIDIA, 1)
_NV_BLOCK_LINEAR = 0x10
_NV_KNOWN_BITS = 0xF | _NV_BLOCK_LINEAR | (0xFF << 12) | (0x3 << 20) | (0x1 << 22) | (0x7 << 23)


def nvidia_block_linear_2d(c: int, s: int, g: int, k: int, h: int) -> int:
    """``DRM_FORMAT_MOD_NVIDIA_BLOCK_LINEAR_2D(c, s, g, k, h)`` (same argument order)."""
    return fourcc_mod_code(
        Vendor.NVIDIA,
        _NV_BLOCK_LINEAR
        | (h & 0xF)
        | ((k & 0xFF) << 12)
        | ((g & 0x3) << 20)
        | ((s & 0x1) << 22)
        | ((c & 0x7) << 23),
    )


def nvidia_16bx2_block(v: int) -> int:
    """``DRM_FORMAT_MOD_NVIDIA_16BX2_BLOCK(v)``: the legacy Tegra block-linear modifiers."""
    return nvidia_block_linear_2d(0, 0, 0, 0, v)


_NV_GOB_NAMES = ("ONE", "TWO", "FOUR", "EIGHT", "SIXTEEN", "THIRTYTWO")

# Broadcom: low 8 bits the type, the next 48 bits parameters.
_BROADCOM_PARAM_SHIFT = 8
_BROADCOM_PARAM_BITS = 48
_BROADCOM_SAND_WIDTHS = {2: 32, 3: 64, 4: 128, 5: 256}


def fourcc_mod_broadcom_code(val: int, params: int) -> int:
    """``fourcc_mod_broadcom_code(val, params)``."""
    return fourcc_mod_code(Vendor.BROADCOM, (params << _BROADCOM_PARAM_SHIFT) | val)


def broadcom_sand(column_width: int, column_height: int = 0) -> int:
    """``DRM_FORMAT_MOD_BROADCOM_SAND<column_width>_COL_HEIGHT(column_height)``."""
    for code, width in _BROADCOM_SAND_WIDTHS.items():
        if width == column_width:
            return fourcc_mod_broadcom_code(code, column_height)
    raise UsageError(f"Broadcom SAND columns are 32, 64, 128 or 256 wide, not {column_width}")


def broadcom_param(modifier: int) -> int:
    """``fourcc_mod_broadcom_param``: the parameter bits (SAND column height)."""
    return (modifier >> _BROADCOM_PARAM_SHIFT) & ((1 << _BROADCOM_PARAM_BITS) - 1)


DRM_FORMAT_MOD_BROADCOM_VC4_T_TILED = fourcc_mod_code(Vendor.BROADCOM, 1)
DRM_FORMAT_MOD_BROADCOM_SAND32 = broadcom_sand(32)
DRM_FORMAT_MOD_BROADCOM_SAND64 = broadcom_sand(64)
DRM_FORMAT_MOD_BROADCOM_SAND128 = broadcom_sand(128)
DRM_FORMAT_MOD_BROADCOM_SAND256 = broadcom_sand(256)
DRM_FORMAT_MOD_BROADCOM_UIF = fourcc_mod_code(Vendor.BROADCOM, 6)

# Arm: the top 4 of the 56 bits are a category (AFBC, MISC, AFRC).
DRM_FORMAT_MOD_ARM_TYPE_AFBC = 0x00
DRM_FORMAT_MOD_ARM_TYPE_MISC = 0x01
DRM_FORMAT_MOD_ARM_TYPE_AFRC = 0x02
_ARM_VAL_MASK = (1 << 52) - 1


def arm_code(kind: int, value: int) -> int:
    """``DRM_FORMAT_MOD_ARM_CODE(type, val)``."""
    return fourcc_mod_code(Vendor.ARM, (kind << 52) | (value & _ARM_VAL_MASK))


def arm_afbc(mode: int) -> int:
    """``DRM_FORMAT_MOD_ARM_AFBC(mode)``; ``mode`` ORs a block size and ``AFBC_FORMAT_MOD_*``."""
    return arm_code(DRM_FORMAT_MOD_ARM_TYPE_AFBC, mode)


def arm_afrc(mode: int) -> int:
    """``DRM_FORMAT_MOD_ARM_AFRC(mode)``; ``mode`` ORs coding-unit sizes and the layout bit."""
    return arm_code(DRM_FORMAT_MOD_ARM_TYPE_AFRC, mode)


AFBC_FORMAT_MOD_BLOCK_SIZE_MASK = 0xF
AFBC_FORMAT_MOD_BLOCK_SIZE_16x16 = 1  # the header's names, lowercase x included
AFBC_FORMAT_MOD_BLOCK_SIZE_32x8 = 2
AFBC_FORMAT_MOD_BLOCK_SIZE_64x4 = 3
AFBC_FORMAT_MOD_BLOCK_SIZE_32x8_64x4 = 4
AFBC_FORMAT_MOD_YTR = 1 << 4
AFBC_FORMAT_MOD_SPLIT = 1 << 5
AFBC_FORMAT_MOD_SPARSE = 1 << 6
AFBC_FORMAT_MOD_CBR = 1 << 7
AFBC_FORMAT_MOD_TILED = 1 << 8
AFBC_FORMAT_MOD_SC = 1 << 9
AFBC_FORMAT_MOD_DB = 1 << 10
AFBC_FORMAT_MOD_BCH = 1 << 11
AFBC_FORMAT_MOD_USM = 1 << 12
_AFBC_BLOCK_SIZES = {1: "16x16", 2: "32x8", 3: "64x4", 4: "32x8_64x4"}
_AFBC_FLAGS = {
    "YTR": AFBC_FORMAT_MOD_YTR,
    "SPLIT": AFBC_FORMAT_MOD_SPLIT,
    "SPARSE": AFBC_FORMAT_MOD_SPARSE,
    "CBR": AFBC_FORMAT_MOD_CBR,
    "TILED": AFBC_FORMAT_MOD_TILED,
    "SC": AFBC_FORMAT_MOD_SC,
    "DB": AFBC_FORMAT_MOD_DB,
    "BCH": AFBC_FORMAT_MOD_BCH,
    "USM": AFBC_FORMAT_MOD_USM,
}

AFRC_FORMAT_MOD_CU_SIZE_MASK = 0xF
AFRC_FORMAT_MOD_CU_SIZE_16 = 1
AFRC_FORMAT_MOD_CU_SIZE_24 = 2
AFRC_FORMAT_MOD_CU_SIZE_32 = 3
AFRC_FORMAT_MOD_LAYOUT_SCAN = 1 << 8
_AFRC_CU_BYTES = {1: 16, 2: 24, 3: 32}


def afrc_cu_size_p0(size: int) -> int:
    """``AFRC_FORMAT_MOD_CU_SIZE_P0(size)``."""
    return size


def afrc_cu_size_p12(size: int) -> int:
    """``AFRC_FORMAT_MOD_CU_SIZE_P12(size)``."""
    return size << 4


DRM_FORMAT_MOD_ARM_16X16_BLOCK_U_INTERLEAVED = arm_code(DRM_FORMAT_MOD_ARM_TYPE_MISC, 1)

DRM_FORMAT_MOD_ALLWINNER_TILED = fourcc_mod_code(Vendor.ALLWINNER, 1)

# Amlogic FBC: layout in bits 0-7, options in bits 8-15.
AMLOGIC_FBC_LAYOUT_BASIC = 1
AMLOGIC_FBC_LAYOUT_SCATTER = 2
AMLOGIC_FBC_OPTION_MEM_SAVING = 1 << 0
_AMLOGIC_LAYOUTS = {1: "BASIC", 2: "SCATTER"}


def amlogic_fbc(layout: int, options: int) -> int:
    """``DRM_FORMAT_MOD_AMLOGIC_FBC(layout, options)``."""
    return fourcc_mod_code(Vendor.AMLOGIC, (layout & 0xFF) | ((options & 0xFF) << 8))


# MediaTek: tile layout (bits 0-7), compression (8-15), 10-bit layout (16-23).
MTK_FMT_MOD_TILE_MASK = 0xF
MTK_FMT_MOD_TILE_NONE = 0x0
MTK_FMT_MOD_TILE_16L32S = 0x1
MTK_FMT_MOD_COMPRESS_MASK = 0xF << 8
MTK_FMT_MOD_COMPRESS_NONE = 0x0 << 8
MTK_FMT_MOD_COMPRESS_V1 = 0x1 << 8
MTK_FMT_MOD_10BIT_LAYOUT_MASK = 0xF << 16
MTK_FMT_MOD_10BIT_LAYOUT_PACKED = 0x0 << 16
MTK_FMT_MOD_10BIT_LAYOUT_LSBTILED = 0x1 << 16
MTK_FMT_MOD_10BIT_LAYOUT_LSBRASTER = 0x2 << 16
_MTK_TILES = {0: "TILE_NONE", 1: "TILE_16L32S"}
_MTK_COMPRESS = {0: "COMPRESS_NONE", 1: "COMPRESS_V1"}
_MTK_10BIT = {0: "10BIT_LAYOUT_PACKED", 1: "10BIT_LAYOUT_LSBTILED", 2: "10BIT_LAYOUT_LSBRASTER"}


def mtk_modifier(flags: int) -> int:
    """``DRM_FORMAT_MOD_MTK(flags)``."""
    return fourcc_mod_code(Vendor.MTK, flags)


DRM_FORMAT_MOD_MTK_16L_32S_TILE = mtk_modifier(MTK_FMT_MOD_TILE_16L32S)

DRM_FORMAT_MOD_APPLE_GPU_TILED = fourcc_mod_code(Vendor.APPLE, 1)
DRM_FORMAT_MOD_APPLE_GPU_TILED_COMPRESSED = fourcc_mod_code(Vendor.APPLE, 2)

# AMD: a field layout.
AMD_FMT_MOD = fourcc_mod_code(Vendor.AMD, 0)
AMD_FMT_MOD_TILE_VER_GFX9 = 1
AMD_FMT_MOD_TILE_VER_GFX10 = 2
AMD_FMT_MOD_TILE_VER_GFX10_RBPLUS = 3
AMD_FMT_MOD_TILE_VER_GFX11 = 4
AMD_FMT_MOD_TILE_VER_GFX12 = 5
AMD_FMT_MOD_TILE_GFX9_64K_S = 9
AMD_FMT_MOD_TILE_GFX9_64K_D = 10
AMD_FMT_MOD_TILE_GFX9_4K_D_X = 22
AMD_FMT_MOD_TILE_GFX9_64K_S_X = 25
AMD_FMT_MOD_TILE_GFX9_64K_D_X = 26
AMD_FMT_MOD_TILE_GFX9_64K_R_X = 27
AMD_FMT_MOD_TILE_GFX11_256K_R_X = 31
AMD_FMT_MOD_TILE_GFX12_256B_2D = 1
AMD_FMT_MOD_TILE_GFX12_4K_2D = 2
AMD_FMT_MOD_TILE_GFX12_64K_2D = 3
AMD_FMT_MOD_TILE_GFX12_256K_2D = 4
AMD_FMT_MOD_DCC_BLOCK_64B = 0
AMD_FMT_MOD_DCC_BLOCK_128B = 1
AMD_FMT_MOD_DCC_BLOCK_256B = 2

#: AMD fields: name -> (shift, mask), in bit order (``AMD_FMT_MOD_<name>_SHIFT``/``_MASK``).
AMD_FIELDS: MappingProxyType[str, tuple[int, int]] = MappingProxyType(
    {
        "TILE_VERSION": (0, 0xFF),
        "TILE": (8, 0x1F),
        "DCC": (13, 0x1),
        "DCC_RETILE": (14, 0x1),
        "DCC_PIPE_ALIGN": (15, 0x1),
        "DCC_INDEPENDENT_64B": (16, 0x1),
        "DCC_INDEPENDENT_128B": (17, 0x1),
        "DCC_MAX_COMPRESSED_BLOCK": (18, 0x3),
        "DCC_CONSTANT_ENCODE": (20, 0x1),
        "PIPE_XOR_BITS": (21, 0x7),
        "BANK_XOR_BITS": (24, 0x7),
        "PACKERS": (27, 0x7),
        "RB": (30, 0x7),
        "PIPE": (33, 0x7),
    }
)
_AMD_KNOWN_BITS = sum(mask << shift for shift, mask in AMD_FIELDS.values())
_AMD_VERSIONS = {1: "GFX9", 2: "GFX10", 3: "GFX10_RBPLUS", 4: "GFX11", 5: "GFX12"}
_AMD_TILES_GFX9 = {
    9: "64K_S",
    10: "64K_D",
    22: "4K_D_X",
    25: "64K_S_X",
    26: "64K_D_X",
    27: "64K_R_X",
    31: "256K_R_X",
}
_AMD_TILES_GFX12 = {1: "256B_2D", 2: "4K_2D", 3: "64K_2D", 4: "256K_2D"}
_AMD_DCC_BLOCKS = {0: "64B", 1: "128B", 2: "256B"}


def amd_fmt_mod(**fields: int) -> int:
    """An AMD modifier from its fields (``tile_version=AMD_FMT_MOD_TILE_VER_GFX10, tile=25, ...``).

    Keyword names are the ``AMD_FMT_MOD_<FIELD>`` fields, in any case.

    Raises:
        UsageError: an unknown field, or a value that does not fit the field.
    """
    value = AMD_FMT_MOD
    for key, field_value in fields.items():
        name = key.upper()
        if name not in AMD_FIELDS:
            raise UsageError(f"unknown AMD modifier field {key!r}; fields: {', '.join(AMD_FIELDS)}")
        shift, mask = AMD_FIELDS[name]
        if not 0 <= field_value <= mask:
            raise UsageError(f"AMD modifier field {name} is 0..{mask}, not {field_value}")
        value |= field_value << shift
    return value


def _amd_tiles(version: int) -> dict[int, str]:
    return _AMD_TILES_GFX12 if version >= AMD_FMT_MOD_TILE_VER_GFX12 else _AMD_TILES_GFX9


# ---------------------------------------------------------------------------------------------
# Names of whole values: canonical short name -> value, and header macro name -> value.

_VENDOR_SIMPLE: dict[Vendor, dict[int, str]] = {
    Vendor.INTEL: _INTEL_NAMES,
    Vendor.SAMSUNG: _SAMSUNG_NAMES,
    Vendor.QCOM: _QCOM_NAMES,
    Vendor.ALLWINNER: {1: "TILED"},
    Vendor.APPLE: {1: "GPU_TILED", 2: "GPU_TILED_COMPRESSED"},
}
_VENDOR_PREFIX = {Vendor.INTEL: "I915"}


def _short_prefix(vendor: Vendor) -> str:
    return _VENDOR_PREFIX.get(vendor, vendor.name)


_SIMPLE_NAMES: dict[str, int] = {"LINEAR": DRM_FORMAT_MOD_LINEAR, "INVALID": DRM_FORMAT_MOD_INVALID}
for _vendor, _names in _VENDOR_SIMPLE.items():
    for _code, _suffix in _names.items():
        _SIMPLE_NAMES[f"{_short_prefix(_vendor)}_{_suffix}"] = fourcc_mod_code(_vendor, _code)
for _code, _suffix in _VIVANTE_NAMES.items():
    _SIMPLE_NAMES[f"VIVANTE_{_suffix}"] = fourcc_mod_code(Vendor.VIVANTE, _code)
_SIMPLE_NAMES.update(
    {
        "NVIDIA_TEGRA_TILED": DRM_FORMAT_MOD_NVIDIA_TEGRA_TILED,
        "BROADCOM_VC4_T_TILED": DRM_FORMAT_MOD_BROADCOM_VC4_T_TILED,
        "BROADCOM_UIF": DRM_FORMAT_MOD_BROADCOM_UIF,
        "ARM_16X16_BLOCK_U_INTERLEAVED": DRM_FORMAT_MOD_ARM_16X16_BLOCK_U_INTERLEAVED,
    }
)
for _width in _BROADCOM_SAND_WIDTHS.values():
    _SIMPLE_NAMES[f"BROADCOM_SAND{_width}"] = broadcom_sand(_width)


def _header_name(short: str) -> str:
    if short.startswith("I915_"):
        return "I915_FORMAT_MOD_" + short.removeprefix("I915_")
    return "DRM_FORMAT_MOD_" + short


#: Every object-like modifier macro of drm_fourcc.h (and newer ones) -> its value.
MODIFIER_MACROS: MappingProxyType[str, int] = MappingProxyType(
    {
        **{_header_name(short): value for short, value in _SIMPLE_NAMES.items()},
        "DRM_FORMAT_MOD_NONE": 0,
        "DRM_FORMAT_MOD_GENERIC_16_16_TILE": DRM_FORMAT_MOD_SAMSUNG_16_16_TILE,
        "DRM_FORMAT_MOD_MTK_16L_32S_TILE": DRM_FORMAT_MOD_MTK_16L_32S_TILE,
        "AMD_FMT_MOD": AMD_FMT_MOD,
        **{
            f"DRM_FORMAT_MOD_NVIDIA_16BX2_BLOCK_{gobs}_GOB": nvidia_16bx2_block(v)
            for v, gobs in enumerate(_NV_GOB_NAMES)
        },
    }
)

#: Field and flag macros of the vendor encodings -> value (checked against the header by test).
FIELD_MACROS: MappingProxyType[str, int] = MappingProxyType(
    {
        **{f"DRM_FORMAT_MOD_VENDOR_{v.name}": int(v) for v in Vendor},
        "DRM_FORMAT_RESERVED": DRM_FORMAT_RESERVED,
        "DRM_FORMAT_MOD_ARM_TYPE_AFBC": DRM_FORMAT_MOD_ARM_TYPE_AFBC,
        "DRM_FORMAT_MOD_ARM_TYPE_MISC": DRM_FORMAT_MOD_ARM_TYPE_MISC,
        "DRM_FORMAT_MOD_ARM_TYPE_AFRC": DRM_FORMAT_MOD_ARM_TYPE_AFRC,
        "AFBC_FORMAT_MOD_BLOCK_SIZE_MASK": AFBC_FORMAT_MOD_BLOCK_SIZE_MASK,
        **{f"AFBC_FORMAT_MOD_BLOCK_SIZE_{n}": v for v, n in _AFBC_BLOCK_SIZES.items()},
        **{f"AFBC_FORMAT_MOD_{n}": v for n, v in _AFBC_FLAGS.items()},
        "AFRC_FORMAT_MOD_CU_SIZE_MASK": AFRC_FORMAT_MOD_CU_SIZE_MASK,
        **{f"AFRC_FORMAT_MOD_CU_SIZE_{b}": v for v, b in _AFRC_CU_BYTES.items()},
        "AFRC_FORMAT_MOD_LAYOUT_SCAN": AFRC_FORMAT_MOD_LAYOUT_SCAN,
        **{f"VIVANTE_MOD_{n}": v << 48 for v, n in _VIVANTE_TS.items()},
        **{f"VIVANTE_MOD_{n}": v << 52 for v, n in _VIVANTE_COMP.items()},
        "VIVANTE_MOD_TS_MASK": VIVANTE_MOD_TS_MASK,
        "VIVANTE_MOD_COMP_MASK": VIVANTE_MOD_COMP_MASK,
        "VIVANTE_MOD_EXT_MASK": VIVANTE_MOD_EXT_MASK,
        "AMLOGIC_FBC_LAYOUT_BASIC": AMLOGIC_FBC_LAYOUT_BASIC,
        "AMLOGIC_FBC_LAYOUT_SCATTER": AMLOGIC_FBC_LAYOUT_SCATTER,
        "AMLOGIC_FBC_OPTION_MEM_SAVING": AMLOGIC_FBC_OPTION_MEM_SAVING,
        "MTK_FMT_MOD_TILE_MASK": MTK_FMT_MOD_TILE_MASK,
        "MTK_FMT_MOD_COMPRESS_MASK": MTK_FMT_MOD_COMPRESS_MASK,
        "MTK_FMT_MOD_10BIT_LAYOUT_MASK": MTK_FMT_MOD_10BIT_LAYOUT_MASK,
        **{f"MTK_FMT_MOD_{n}": v for v, n in _MTK_TILES.items()},
        **{f"MTK_FMT_MOD_{n}": v << 8 for v, n in _MTK_COMPRESS.items()},
        **{f"MTK_FMT_MOD_{n}": v << 16 for v, n in _MTK_10BIT.items()},
        **{f"AMD_FMT_MOD_TILE_VER_{n}": v for v, n in _AMD_VERSIONS.items()},
        **{f"AMD_FMT_MOD_TILE_GFX9_{n}": v for v, n in _AMD_TILES_GFX9.items() if v != 31},
        "AMD_FMT_MOD_TILE_GFX11_256K_R_X": AMD_FMT_MOD_TILE_GFX11_256K_R_X,
        **{f"AMD_FMT_MOD_TILE_GFX12_{n}": v for v, n in _AMD_TILES_GFX12.items()},
        **{f"AMD_FMT_MOD_DCC_BLOCK_{n}": v for v, n in _AMD_DCC_BLOCKS.items()},
        **{f"AMD_FMT_MOD_{n}_SHIFT": s for n, (s, _m) in AMD_FIELDS.items()},
        **{f"AMD_FMT_MOD_{n}_MASK": m for n, (_s, m) in AMD_FIELDS.items()},
    }
)

# ---------------------------------------------------------------------------------------------
# Decoding: value -> name. Each decoder returns None when it does not recognise the value exactly.


def _decode_nvidia(v: int) -> str | None:
    if v == 1:
        return "NVIDIA_TEGRA_TILED"
    if not v & _NV_BLOCK_LINEAR or v & ~_NV_KNOWN_BITS:
        return None
    h, k, g, s, c = v & 0xF, (v >> 12) & 0xFF, (v >> 20) & 0x3, (v >> 22) & 1, (v >> 23) & 0x7
    if k == g == s == c == 0:
        return f"NVIDIA_16BX2_BLOCK({h})"
    return f"NVIDIA_BLOCK_LINEAR_2D(h={h},k={k:#x},g={g},s={s},c={c})"


def _decode_broadcom(v: int) -> str | None:
    kind, param = v & 0xFF, broadcom_param(v)
    if kind in _BROADCOM_SAND_WIDTHS:
        width = _BROADCOM_SAND_WIDTHS[kind]
        return f"BROADCOM_SAND{width}_COL_HEIGHT({param})" if param else f"BROADCOM_SAND{width}"
    if param:
        return None
    return {1: "BROADCOM_VC4_T_TILED", 6: "BROADCOM_UIF"}.get(kind)


def _decode_arm(v: int) -> str | None:
    kind, val = v >> 52, v & _ARM_VAL_MASK
    if kind == DRM_FORMAT_MOD_ARM_TYPE_AFBC:
        size = val & AFBC_FORMAT_MOD_BLOCK_SIZE_MASK
        flags = [n for n, bit in _AFBC_FLAGS.items() if val & bit]
        known = AFBC_FORMAT_MOD_BLOCK_SIZE_MASK | sum(_AFBC_FLAGS.values())
        if size not in _AFBC_BLOCK_SIZES or val & ~known:
            return None
        return f"ARM_AFBC({','.join([_AFBC_BLOCK_SIZES[size], *flags])})"
    if kind == DRM_FORMAT_MOD_ARM_TYPE_MISC:
        return "ARM_16X16_BLOCK_U_INTERLEAVED" if val == 1 else None
    if kind == DRM_FORMAT_MOD_ARM_TYPE_AFRC:
        p0, p12 = val & 0xF, (val >> 4) & 0xF
        if p0 not in _AFRC_CU_BYTES or (p12 and p12 not in _AFRC_CU_BYTES):
            return None
        if val & ~(0xFF | AFRC_FORMAT_MOD_LAYOUT_SCAN):
            return None
        parts = [f"p0={_AFRC_CU_BYTES[p0]}"]
        if p12:
            parts.append(f"p12={_AFRC_CU_BYTES[p12]}")
        parts.append("SCAN" if val & AFRC_FORMAT_MOD_LAYOUT_SCAN else "ROT")
        return f"ARM_AFRC({','.join(parts)})"
    return None


def _decode_vivante(v: int) -> str | None:
    base, ts, comp = v & ~VIVANTE_MOD_EXT_MASK, (v >> 48) & 0xF, (v >> 52) & 0xF
    if base not in _VIVANTE_NAMES or (ts and ts not in _VIVANTE_TS):
        return None
    if comp and comp not in _VIVANTE_COMP:
        return None
    ext = [_VIVANTE_TS[ts]] if ts else []
    if comp:
        ext.append(_VIVANTE_COMP[comp])
    name = f"VIVANTE_{_VIVANTE_NAMES[base]}"
    return f"{name}({','.join(ext)})" if ext else name


def _decode_amlogic(v: int) -> str | None:
    layout, options = v & 0xFF, (v >> 8) & 0xFF
    if v >> 16 or options & ~AMLOGIC_FBC_OPTION_MEM_SAVING or layout not in _AMLOGIC_LAYOUTS:
        return None
    parts = [_AMLOGIC_LAYOUTS[layout]]
    if options & AMLOGIC_FBC_OPTION_MEM_SAVING:
        parts.append("MEM_SAVING")
    return f"AMLOGIC_FBC({','.join(parts)})"


def _decode_mtk(v: int) -> str | None:
    tile, comp, tenbit = v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF
    if v >> 24 or tile not in _MTK_TILES or comp not in _MTK_COMPRESS or tenbit not in _MTK_10BIT:
        return None
    parts = [_MTK_TILES[tile]]
    if comp:
        parts.append(_MTK_COMPRESS[comp])
    if tenbit:
        parts.append(_MTK_10BIT[tenbit])
    return f"MTK({','.join(parts)})"


def _decode_amd(v: int) -> str | None:
    if v & ~_AMD_KNOWN_BITS:
        return None
    fields = {name: (v >> shift) & mask for name, (shift, mask) in AMD_FIELDS.items()}
    version = fields.pop("TILE_VERSION")
    tile = fields.pop("TILE")
    parts = [_AMD_VERSIONS.get(version, str(version)), _amd_tiles(version).get(tile, str(tile))]
    for name, field_value in fields.items():
        if not field_value:
            continue
        if AMD_FIELDS[name][1] == 1:
            parts.append(name)
        elif name == "DCC_MAX_COMPRESSED_BLOCK":
            parts.append(f"{name}={_AMD_DCC_BLOCKS.get(field_value, str(field_value))}")
        else:
            parts.append(f"{name}={field_value}")
    return f"AMD({','.join(parts)})"


def _decode_simple(vendor: Vendor, v: int) -> str | None:
    names = _VENDOR_SIMPLE.get(vendor, {})
    return f"{_short_prefix(vendor)}_{names[v]}" if v in names else None


_DECODERS: dict[Vendor, Callable[[int], str | None]] = {
    Vendor.NVIDIA: _decode_nvidia,
    Vendor.BROADCOM: _decode_broadcom,
    Vendor.ARM: _decode_arm,
    Vendor.VIVANTE: _decode_vivante,
    Vendor.AMLOGIC: _decode_amlogic,
    Vendor.MTK: _decode_mtk,
    Vendor.AMD: _decode_amd,
}


def _vendor_label(vendor: int) -> str:
    try:
        return Vendor(vendor).name
    except ValueError:
        return f"VENDOR_{vendor:#04x}"


def _raw_name(value: int) -> str:
    return f"{_vendor_label(mod_vendor(value))}_MOD({value & _VALUE_MASK:#x})"


def modifier_name(value: int) -> str:
    """The readable name of a modifier; ``VENDOR_MOD(0x...)`` where no decoder applies.

    The name always parses back to ``value`` with :func:`parse_modifier`.
    """
    value = _check_range(value)
    if value == DRM_FORMAT_MOD_LINEAR:
        return "LINEAR"
    if value == DRM_FORMAT_MOD_INVALID:
        return "INVALID"
    vendor_id, low = mod_vendor(value), value & _VALUE_MASK
    name: str | None = None
    if vendor_id in Vendor.__members__.values():
        vendor = Vendor(vendor_id)
        decoder = _DECODERS.get(vendor)
        name = decoder(low) if decoder else _decode_simple(vendor, low)
    if name is None:
        return _raw_name(value)
    # A name must round-trip; fall back to the raw form if a decoder ever disagrees.
    try:
        if _parse_text(name) == value:
            return name
    except UsageError:
        pass
    return _raw_name(value)


# ---------------------------------------------------------------------------------------------
# Parsing: name -> value.


def _check_range(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"a modifier is a 64-bit integer or a name, not {value!r}")
    if not 0 <= value <= U64_MASK:
        raise UsageError(f"a modifier is a 64-bit unsigned integer; {value:#x} is out of range")
    return value


def _int_arg(text: str, what: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise UsageError(f"{what}: {text!r} is not an integer") from None


def _field(value: int, mask: int, what: str) -> int:
    if not 0 <= value <= mask:
        raise UsageError(f"{what} is 0..{mask}, not {value}")
    return value


def _parse_nvidia_2d(args: list[str]) -> int:
    names = ("c", "s", "g", "k", "h")
    masks = {"c": 0x7, "s": 0x1, "g": 0x3, "k": 0xFF, "h": 0xF}
    values: dict[str, int] = {}
    if all("=" not in a for a in args):
        if len(args) != 5:
            raise UsageError("NVIDIA_BLOCK_LINEAR_2D takes (c, s, g, k, h) or h=,k=,g=,s=,c=")
        values = dict(
            zip(names, (_int_arg(a, "NVIDIA_BLOCK_LINEAR_2D") for a in args), strict=True)
        )
    else:
        for arg in args:
            key, _, text = arg.partition("=")
            key = key.strip().lower()
            if key not in masks or key in values:
                raise UsageError(f"NVIDIA_BLOCK_LINEAR_2D: unexpected field {arg!r}")
            values[key] = _int_arg(text.strip(), f"NVIDIA_BLOCK_LINEAR_2D {key}")
        if set(values) != set(names):
            raise UsageError("NVIDIA_BLOCK_LINEAR_2D needs all of h, k, g, s, c")
    for key, field_value in values.items():
        _field(field_value, masks[key], f"NVIDIA_BLOCK_LINEAR_2D {key}")
    return nvidia_block_linear_2d(values["c"], values["s"], values["g"], values["k"], values["h"])


def _parse_nvidia_16bx2(args: list[str]) -> int:
    if len(args) != 1:
        raise UsageError("NVIDIA_16BX2_BLOCK takes one argument (log2 of GOBs per block)")
    return nvidia_16bx2_block(_field(_int_arg(args[0], "NVIDIA_16BX2_BLOCK"), 0xF, "the GOB log2"))


def _parse_sand(width: int) -> Callable[[list[str]], int]:
    def parse(args: list[str]) -> int:
        if len(args) != 1:
            raise UsageError(f"BROADCOM_SAND{width}_COL_HEIGHT takes one argument")
        height = _int_arg(args[0], "SAND column height")
        return broadcom_sand(width, _field(height, (1 << _BROADCOM_PARAM_BITS) - 1, "height"))

    return parse


def _parse_afbc(args: list[str]) -> int:
    sizes = {n.upper(): v for v, n in _AFBC_BLOCK_SIZES.items()}
    mode = 0
    seen_size = False
    for arg in (a.upper() for a in args):
        if arg in sizes and not seen_size:
            mode |= sizes[arg]
            seen_size = True
        elif arg in _AFBC_FLAGS:
            mode |= _AFBC_FLAGS[arg]
        else:
            raise UsageError(
                f"ARM_AFBC: unknown part {arg!r}; block sizes "
                f"{', '.join(_AFBC_BLOCK_SIZES.values())}, flags {', '.join(_AFBC_FLAGS)}"
            )
    if not seen_size:
        raise UsageError("ARM_AFBC needs a block size (16x16, 32x8, 64x4, 32x8_64x4)")
    return arm_afbc(mode)


def _parse_afrc(args: list[str]) -> int:
    cu = {b: v for v, b in _AFRC_CU_BYTES.items()}
    mode = 0
    for arg in (a.upper() for a in args):
        key, _, text = arg.partition("=")
        if key in ("P0", "P12") and text:
            size = _int_arg(text, f"ARM_AFRC {key}")
            if size not in cu:
                raise UsageError(f"ARM_AFRC coding unit sizes are 16, 24 or 32 bytes, not {size}")
            mode |= cu[size] if key == "P0" else cu[size] << 4
        elif arg == "SCAN":
            mode |= AFRC_FORMAT_MOD_LAYOUT_SCAN
        elif arg != "ROT":
            raise UsageError(f"ARM_AFRC: unknown part {arg!r} (p0=N, p12=N, SCAN or ROT)")
    if not mode & 0xF:
        raise UsageError("ARM_AFRC needs p0=16|24|32")
    return arm_afrc(mode)


def _parse_amlogic(args: list[str]) -> int:
    layouts = {n: v for v, n in _AMLOGIC_LAYOUTS.items()}
    layout, options = 0, 0
    for arg in (a.upper() for a in args):
        if arg in layouts and not layout:
            layout = layouts[arg]
        elif arg == "MEM_SAVING":
            options |= AMLOGIC_FBC_OPTION_MEM_SAVING
        else:
            raise UsageError(f"AMLOGIC_FBC: unknown part {arg!r} (BASIC, SCATTER, MEM_SAVING)")
    if not layout:
        raise UsageError("AMLOGIC_FBC needs a layout (BASIC or SCATTER)")
    return amlogic_fbc(layout, options)


def _parse_mtk(args: list[str]) -> int:
    parts = {n: v for v, n in _MTK_TILES.items()}
    parts.update({n: v << 8 for v, n in _MTK_COMPRESS.items()})
    parts.update({n: v << 16 for v, n in _MTK_10BIT.items()})
    flags = 0
    for arg in (a.upper() for a in args):
        if arg not in parts:
            raise UsageError(f"MTK: unknown part {arg!r}; parts: {', '.join(parts)}")
        flags |= parts[arg]
    return mtk_modifier(flags)


def _parse_amd(args: list[str]) -> int:
    if len(args) < 2:
        raise UsageError("AMD(...) takes the tile version, the tile, then flags and FIELD=value")
    versions = {n: v for v, n in _AMD_VERSIONS.items()}
    version_text = args[0].upper()
    version = versions.get(version_text)
    if version is None:
        version = _field(_int_arg(version_text, "AMD tile version"), 0xFF, "AMD TILE_VERSION")
    tiles = {n: v for v, n in _amd_tiles(version).items()}
    tile = tiles.get(args[1].upper())
    if tile is None:
        tile = _field(_int_arg(args[1], "AMD tile"), 0x1F, "AMD TILE")
    fields = {"tile_version": version, "tile": tile}
    blocks = {n: v for v, n in _AMD_DCC_BLOCKS.items()}
    for arg in (a.upper() for a in args[2:]):
        key, eq, text = arg.partition("=")
        if key in ("TILE_VERSION", "TILE") or key.lower() in fields or key not in AMD_FIELDS:
            raise UsageError(f"AMD: unexpected part {arg!r}; fields: {', '.join(AMD_FIELDS)}")
        if not eq:
            fields[key.lower()] = 1
        elif key == "DCC_MAX_COMPRESSED_BLOCK" and text in blocks:
            fields[key.lower()] = blocks[text]
        else:
            fields[key.lower()] = _int_arg(text, f"AMD {key}")
    return amd_fmt_mod(**fields)


def _parse_vivante(base: int) -> Callable[[list[str]], int]:
    def parse(args: list[str]) -> int:
        ext = {n: v << 48 for v, n in _VIVANTE_TS.items()}
        ext.update({n: v << 52 for v, n in _VIVANTE_COMP.items()})
        value = fourcc_mod_code(Vendor.VIVANTE, base)
        for arg in (a.upper() for a in args):
            if arg not in ext:
                raise UsageError(f"VIVANTE: unknown extension {arg!r}; known: {', '.join(ext)}")
            value |= ext[arg]
        return value

    return parse


_FUNCTIONS: dict[str, Callable[[list[str]], int]] = {
    "NVIDIA_BLOCK_LINEAR_2D": _parse_nvidia_2d,
    "NVIDIA_16BX2_BLOCK": _parse_nvidia_16bx2,
    "ARM_AFBC": _parse_afbc,
    "ARM_AFRC": _parse_afrc,
    "AMLOGIC_FBC": _parse_amlogic,
    "MTK": _parse_mtk,
    "AMD": _parse_amd,
    **{f"BROADCOM_SAND{w}_COL_HEIGHT": _parse_sand(w) for w in _BROADCOM_SAND_WIDTHS.values()},
    **{f"VIVANTE_{n}": _parse_vivante(code) for code, n in _VIVANTE_NAMES.items()},
}
_NAMED: dict[str, int] = {
    **{k.upper(): v for k, v in _SIMPLE_NAMES.items()},
    **{k.upper(): v for k, v in MODIFIER_MACROS.items()},
    "NONE": 0,
}
_CALL = re.compile(r"^([A-Za-z0-9_]+)\s*(?:\((.*)\))?$", re.DOTALL)
_RAW = re.compile(r"^(?:VENDOR_(0X[0-9A-F]{1,2})|([A-Z]+))_MOD$")


def _parse_raw(name: str, args: list[str]) -> int | None:
    match = _RAW.match(name)
    if match is None:
        return None
    if match.group(1) is not None:
        vendor = int(match.group(1), 16)
    elif match.group(2) in Vendor.__members__:
        vendor = Vendor[match.group(2)]
    else:
        return None
    if len(args) != 1:
        raise UsageError(f"{name}(...) takes the vendor's 56-bit value")
    return fourcc_mod_code(vendor, _field(_int_arg(args[0], name), _VALUE_MASK, "the value"))


def _parse_text(text: str) -> int:
    stripped = text.strip()
    try:
        return _check_range(int(stripped, 0))
    except ValueError:
        pass
    match = _CALL.match(stripped)
    if match is None:
        found = _parse_other_tools(stripped)
        if found is None:
            raise UsageError(f"cannot read a modifier from {text!r}")
        return found
    name = match.group(1).upper()
    for prefix, replacement in (("DRM_FORMAT_MOD_", ""), ("I915_FORMAT_MOD_", "I915_")):
        if name.startswith(prefix) and name not in _NAMED:
            name = replacement + name.removeprefix(prefix)
    inner = match.group(2)
    if inner is None:
        if name in _NAMED:
            return _NAMED[name]
    else:
        args = [a.strip() for a in inner.split(",")] if inner.strip() else []
        if name in _FUNCTIONS:
            return _FUNCTIONS[name](args)
        raw = _parse_raw(name, args)
        if raw is not None:
            return raw
    found = _parse_other_tools(stripped)
    if found is not None:
        return found
    from .libdrm import LIBDRM_SIMPLE_NAMES

    known = [*_NAMED, *LIBDRM_SIMPLE_NAMES, *(f"{n}(...)" for n in _FUNCTIONS)]
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"; closest known: {', '.join(close)}" if close else ""
    raise UsageError(f"unknown modifier {text.strip()!r}{hint}")


_WITH_VALUE = re.compile(r"^(.+?)\s*\(\s*(0[xX][0-9A-Fa-f]{1,16})\s*\)$", re.DOTALL)


def _parse_other_tools(text: str) -> int | None:
    """libdrm's names as modetest prints them (``INTEL_Y_TILED``), alone or as modetest's
    IN_FORMATS lists them, followed by the value (``INTEL_Y_TILED(0x100000000000002)``)."""
    from .libdrm import libdrm_vendor, modetest_name, read_modetest_name  # builds on this module

    match = _WITH_VALUE.match(text)
    if match is None:
        return read_modetest_name(text)
    name, value = match.group(1), int(match.group(2), 16)
    if name.upper() == modetest_name(value).upper():
        return value
    try:
        named: int | None = _parse_text(name)
    except UsageError:
        named = None
    if named is None:
        vendor = libdrm_vendor(value)
        if vendor is not None and name.upper().startswith(f"{vendor}_") and "," in name:
            return value  # another libdrm's decoder (AMD's changed in 2.4.124): the value rules
        return None
    if named != value:
        raise UsageError(
            f"{text!r}: the name {name!r} is {named:#018x}, but the value says {value:#018x}"
        )
    return value


@dataclass(frozen=True)
class Modifier:
    """A 64-bit DRM format modifier.

    ``str()`` gives its readable name, ``int()`` its value; equal values are equal modifiers.
    """

    value: int

    def __post_init__(self) -> None:
        _check_range(self.value)

    @property
    def vendor(self) -> int:
        """The vendor id (top 8 bits)."""
        return mod_vendor(self.value)

    @property
    def vendor_name(self) -> str:
        """``"INTEL"``, ``"ARM"``, ... or ``"VENDOR_0x0d"`` for an id the header does not name."""
        return _vendor_label(self.vendor)

    @property
    def name(self) -> str:
        """The readable name (see :func:`modifier_name`)."""
        return modifier_name(self.value)

    @property
    def hex(self) -> str:
        """The value as 18 characters: ``0x`` and 16 hex digits."""
        return f"{self.value:#018x}"

    @property
    def is_linear(self) -> bool:
        """The modifier is ``LINEAR``."""
        return self.value == DRM_FORMAT_MOD_LINEAR

    def __str__(self) -> str:
        return self.name

    def __int__(self) -> int:
        return self.value

    def __index__(self) -> int:
        return self.value

    def to_dict(self) -> dict[str, object]:
        """A JSON-friendly description (``devalloc modifier --json``)."""
        return {"value": self.hex, "vendor": self.vendor_name, "name": self.name}


def parse_modifier(spec: str | int | Modifier) -> Modifier:
    """Read a modifier from an integer, a number in text (``"0x0100000000000002"``), a name
    (``"LINEAR"``, ``"I915_Y_TILED"``, ``"I915_FORMAT_MOD_Y_TILED"``) or a decoded form
    (``"ARM_AFBC(16x16,SPARSE,YTR)"``, ``"BROADCOM_SAND128_COL_HEIGHT(96)"``). Names are
    case-insensitive.

    Raises:
        UsageError: the text is no modifier; the message suggests the closest names.
    """
    if isinstance(spec, Modifier):
        return spec
    if isinstance(spec, str):
        return Modifier(_parse_text(spec))
    return Modifier(_check_range(spec))

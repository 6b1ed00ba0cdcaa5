"""Modifier names as libdrm prints them (modetest, weston, drm_info), and reading them back.

Example:
    >>> modetest_name(0x0800000000000051)
    'ARM_BLOCK_SIZE=16x16,MODE=YTR|SPARSE'
    >>> libdrm_vendor(0x0100000000000002), libdrm_name(0x0100000000000002)
    ('INTEL', 'Y_TILED')
    >>> hex(parse_modetest_name("INTEL_Y_TILED"))
    '0x100000000000002'

libdrm's ``drmGetFormatModifierVendor`` names the vendor (``DRM_FORMAT_MOD_VENDOR_<NAME>``);
``drmGetFormatModifierName`` names the rest: Arm AFBC/AFRC, NVIDIA block-linear, AMD, Amlogic and
Vivante through a decoder each (``BLOCK_SIZE=16x16,MODE=YTR|SPARSE``,
``BLOCK_LINEAR_2D,HEIGHT=4,KIND=254,GEN=2,SECTOR=1,COMPRESSION=0``,
``GFX10,64KB_S_X,PIPE_XOR_BITS=3``, ``FBC,LAYOUT=BASIC,OPTIONS=0``, ``SUPER_TILED,TS=64B_4``),
every other vendor through a table of the header's object-like macros (``Y_TILED``,
``SAND128``, ``16X16_BLOCK_U_INTERLEAVED``). modetest prints ``<vendor>_<name>``, ``LINEAR``
alone, and ``<vendor>_UNKNOWN_MODIFIER`` where libdrm has no name.

libdrm's decoders print only some bits: a value with bits they skip (an AFBC bit beyond ``USM``,
an AMD field outside the tile's mode) prints like the value without them. Such names read back
to the value libdrm's text describes; :func:`libdrm_exact` tells whether a value survives the
round trip.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType

from ..errors import UsageError
from .modifier import (
    _AFBC_BLOCK_SIZES,
    _AFBC_FLAGS,
    _VIVANTE_NAMES,
    AFBC_FORMAT_MOD_BLOCK_SIZE_MASK,
    AFRC_FORMAT_MOD_CU_SIZE_MASK,
    AFRC_FORMAT_MOD_LAYOUT_SCAN,
    AMD_FIELDS,
    AMLOGIC_FBC_OPTION_MEM_SAVING,
    DRM_FORMAT_MOD_INVALID,
    DRM_FORMAT_MOD_LINEAR,
    VIVANTE_MOD_COMP_MASK,
    VIVANTE_MOD_EXT_MASK,
    VIVANTE_MOD_TS_MASK,
    Vendor,
    amd_fmt_mod,
    amlogic_fbc,
    arm_afbc,
    arm_afrc,
    fourcc_mod_code,
    mod_vendor,
    nvidia_block_linear_2d,
)

__all__ = [
    "LIBDRM_SIMPLE_NAMES",
    "libdrm_exact",
    "libdrm_name",
    "libdrm_vendor",
    "modetest_name",
    "parse_modetest_name",
    "read_modetest_name",
]

_MASK56 = (1 << 56) - 1

# libdrm's table of "simple" modifiers (gen_table_fourcc.py over drm_fourcc.h): every
# I915_FORMAT_MOD_* and the object-like DRM_FORMAT_MOD_{ARM,SAMSUNG,QCOM,VIVANTE,NVIDIA,BROADCOM,
# ALLWINNER}_* macros, named by what follows the vendor. (vendor, name) -> low 56 bits.
_SIMPLE: tuple[tuple[Vendor, str, int], ...] = (
    *(
        (Vendor.INTEL, name, code)
        for code, name in enumerate(
            (
                "X_TILED",
                "Y_TILED",
                "Yf_TILED",
                "Y_TILED_CCS",
                "Yf_TILED_CCS",
                "Y_TILED_GEN12_RC_CCS",
                "Y_TILED_GEN12_MC_CCS",
                "Y_TILED_GEN12_RC_CCS_CC",
                "4_TILED",
                "4_TILED_DG2_RC_CCS",
                "4_TILED_DG2_MC_CCS",
                "4_TILED_DG2_RC_CCS_CC",
                "4_TILED_MTL_RC_CCS",
                "4_TILED_MTL_MC_CCS",
                "4_TILED_MTL_RC_CCS_CC",
                "4_TILED_LNL_CCS",
                "4_TILED_BMG_CCS",
            ),
            start=1,
        )
    ),
    (Vendor.SAMSUNG, "64_32_TILE", 1),
    (Vendor.SAMSUNG, "16_16_TILE", 2),
    (Vendor.QCOM, "COMPRESSED", 1),
    (Vendor.QCOM, "TILED3", 3),
    (Vendor.QCOM, "TILED2", 2),
    (Vendor.NVIDIA, "TEGRA_TILED", 1),
    (Vendor.BROADCOM, "VC4_T_TILED", 1),
    (Vendor.BROADCOM, "SAND32", 2),
    (Vendor.BROADCOM, "SAND64", 3),
    (Vendor.BROADCOM, "SAND128", 4),
    (Vendor.BROADCOM, "SAND256", 5),
    (Vendor.BROADCOM, "UIF", 6),
    (Vendor.ARM, "16X16_BLOCK_U_INTERLEAVED", (1 << 52) | 1),
    (Vendor.ALLWINNER, "TILED", 1),
)

#: modetest's ``<VENDOR>_<NAME>`` for every modifier of libdrm's simple table -> its value.
LIBDRM_SIMPLE_NAMES: MappingProxyType[str, int] = MappingProxyType(
    {f"{v.name}_{name}": fourcc_mod_code(v, low) for v, name, low in _SIMPLE}
)
_SIMPLE_BY_VALUE = {value: name.split("_", 1)[1] for name, value in LIBDRM_SIMPLE_NAMES.items()}
_SIMPLE_UPPER = {name.upper(): value for name, value in LIBDRM_SIMPLE_NAMES.items()}

# Arm AFBC: block sizes, then the mode bits in libdrm's order.
_AFBC_MODES = tuple(_AFBC_FLAGS.items())  # the header's (and libdrm's) order
_AFRC_UNITS = {1: "CU_16", 2: "CU_24", 3: "CU_32"}

# AMD tile names, indexed by the TILE field (GFX9-GFX11, and GFX12 which names only 0-7).
_AMD_TILES_GFX9 = (
    *("LINEAR", "256B_S", "256B_D", "256B_R", "4KB_Z", "4KB_S", "4KB_D", "4KB_R"),
    *("64KB_Z", "64KB_S", "64KB_D", "64KB_R", "INVALID12", "INVALID13", "INVALID14", "INVALID15"),
    *("64KB_Z_T", "64KB_S_T", "64KB_D_T", "64KB_R_T", "4KB_Z_X", "4KB_S_X", "4KB_D_X", "4KB_R_X"),
    *("64KB_Z_X", "64KB_S_X", "64KB_D_X", "64KB_R_X"),
    *("256KB_Z_X", "256KB_S_X", "256KB_D_X", "256KB_R_X"),
)
_AMD_TILES_GFX12 = (
    *("LINEAR", "256B_2D", "4KB_2D", "64KB_2D", "256KB_2D", "4KB_3D", "64KB_3D", "256KB_3D"),
)
_AMD_VERSIONS = {1: "GFX9", 2: "GFX10", 3: "GFX10_RBPLUS", 4: "GFX11", 5: "GFX12"}
_AMD_FLAGS = (
    "DCC_INDEPENDENT_64B",
    "DCC_INDEPENDENT_128B",
    "DCC_CONSTANT_ENCODE",
    "DCC_PIPE_ALIGN",
    "DCC_RETILE",
)

_VIVANTE_TILINGS = {0: "LINEAR", **_VIVANTE_NAMES}
_VIVANTE_TS = {1: "64B_4", 2: "64B_2", 3: "128B_4", 4: "256B_4"}
_VIVANTE_COMP = {1: "DEC400"}
_AMLOGIC_LAYOUTS = {1: "BASIC", 2: "SCATTER"}


# ---------------------------------------------------------------------------------------------
# Printing, as libdrm does.


def libdrm_vendor(value: int) -> str | None:
    """``drmGetFormatModifierVendor``: ``"INTEL"``, ``"ARM"``, ... or None for an unknown id."""
    try:
        return Vendor(mod_vendor(value)).name
    except ValueError:
        return None


def _afbc(value: int) -> str | None:
    mode = value & ((1 << 52) - 1)
    block = _AFBC_BLOCK_SIZES.get(mode & AFBC_FORMAT_MOD_BLOCK_SIZE_MASK)
    if block is None:
        return None
    modes = [name for name, bit in _AFBC_MODES if mode & bit]
    return f"BLOCK_SIZE={block}," + (f"MODE={'|'.join(modes)}" if modes else "")


def _afrc(value: int) -> str | None:
    parts = []
    for i, key in enumerate(("P0", "P12")):
        unit = _AFRC_UNITS.get((value >> (4 * i)) & AFRC_FORMAT_MOD_CU_SIZE_MASK)
        if unit is None:
            if i == 0:
                return None
            break
        parts.append(f"{key}={unit},")
    return "".join(parts) + ("SCAN" if value & AFRC_FORMAT_MOD_LAYOUT_SCAN else "ROT")


def _arm(value: int) -> str | None:
    kind = (value >> 52) & 0xF
    if kind == 0:
        return _afbc(value)
    if kind == 2:
        return _afrc(value)
    return None


def _nvidia(value: int) -> str | None:
    if not value & 0x10:
        return None
    height, kind, gen = value & 0xF, (value >> 12) & 0xFF, (value >> 20) & 0x3
    sector, compression = (value >> 22) & 0x1, (value >> 23) & 0x7
    return (
        f"BLOCK_LINEAR_2D,HEIGHT={height},KIND={kind},GEN={gen},SECTOR={sector},"
        f"COMPRESSION={compression}"
    )


def _amd_get(value: int, field: str) -> int:
    shift, mask = AMD_FIELDS[field]
    return (value >> shift) & mask


def _amd(value: int) -> str | None:
    version = _amd_get(value, "TILE_VERSION")
    if version not in _AMD_VERSIONS:
        return None
    tile = _amd_get(value, "TILE")
    parts = [_AMD_VERSIONS[version]]
    dcc_block = f"DCC_MAX_COMPRESSED_BLOCK={64 << _amd_get(value, 'DCC_MAX_COMPRESSED_BLOCK')}B"
    if version >= 5:
        if tile >= len(_AMD_TILES_GFX12):
            return None  # libdrm would print a NULL string here
        parts.append(_AMD_TILES_GFX12[tile])
        if _amd_get(value, "DCC"):
            parts += ["DCC", dcc_block]
        return ",".join(parts)
    parts.append(_AMD_TILES_GFX9[tile])
    if tile >= 16:
        parts.append(f"PIPE_XOR_BITS={_amd_get(value, 'PIPE_XOR_BITS')}")
        if version == 1:
            parts.append(f"BANK_XOR_BITS={_amd_get(value, 'BANK_XOR_BITS')}")
        elif version in (3, 4):
            parts.append(f"PACKERS={_amd_get(value, 'PACKERS')}")
    if _amd_get(value, "DCC"):
        if version == 1 and (_amd_get(value, "DCC_PIPE_ALIGN") or _amd_get(value, "DCC_RETILE")):
            parts += [f"RB={_amd_get(value, 'RB')}", f"PIPE={_amd_get(value, 'PIPE')}"]
        parts += ["DCC", dcc_block]
        parts += [flag for flag in _AMD_FLAGS if _amd_get(value, flag)]
    return ",".join(parts)


def _amlogic(value: int) -> str:
    layout = _AMLOGIC_LAYOUTS.get(value & 0xFF, "INVALID_LAYOUT")
    options = "MEM_SAVING" if (value >> 8) & AMLOGIC_FBC_OPTION_MEM_SAVING else "0"
    return f"FBC,LAYOUT={layout},OPTIONS={options}"


def _vivante(value: int) -> str:
    ts, comp = (value & VIVANTE_MOD_TS_MASK) >> 48, (value & VIVANTE_MOD_COMP_MASK) >> 52
    base = value & ~VIVANTE_MOD_EXT_MASK & _MASK56
    text = _VIVANTE_TILINGS.get(base, "UNKNOWN")
    if ts:
        text += f",TS={_VIVANTE_TS.get(ts, 'UNKNOWN')}"
    if comp:
        text += f",COMP={_VIVANTE_COMP.get(comp, 'UNKNOWN')}"
    return text


def libdrm_name(value: int) -> str | None:
    """``drmGetFormatModifierName``: the name after the vendor, or None where libdrm has none."""
    vendor = mod_vendor(value)
    found: str | None = None
    if vendor == Vendor.ARM:
        found = _arm(value)
    elif vendor == Vendor.NVIDIA:
        found = _nvidia(value)
    elif vendor == Vendor.AMD:
        found = _amd(value)
    elif vendor == Vendor.AMLOGIC:
        found = _amlogic(value)
    elif vendor == Vendor.VIVANTE:
        found = _vivante(value)
    if found is not None:
        return found
    if value == DRM_FORMAT_MOD_INVALID:
        return "INVALID"
    if value == DRM_FORMAT_MOD_LINEAR:
        return "LINEAR"
    return _SIMPLE_BY_VALUE.get(value)


def modetest_name(value: int) -> str:
    """What modetest prints for a modifier (``INTEL_Y_TILED``, ``LINEAR``,
    ``ARM_UNKNOWN_MODIFIER``); weston's debug output uses the same two libdrm calls."""
    name, vendor = libdrm_name(value), libdrm_vendor(value)
    if name is None:
        return f"{vendor or 'UNKNOWN_VENDOR'}_UNKNOWN_MODIFIER"
    if value == DRM_FORMAT_MOD_LINEAR:
        return name
    return f"{vendor}_{name}"


def libdrm_exact(value: int) -> bool:
    """modetest's name for ``value`` reads back to ``value`` (libdrm prints every bit of it)."""
    try:
        return parse_modetest_name(modetest_name(value)) == value
    except UsageError:
        return False


# ---------------------------------------------------------------------------------------------
# Reading modetest's names back.


def _number(text: str, what: str, limit: int) -> int:
    if not text.isdigit() or int(text) > limit:
        raise UsageError(f"{what} is a number from 0 to {limit}, not {text!r}")
    return int(text)


def _key_values(parts: list[str], what: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for part in parts:
        key, eq, text = part.partition("=")
        if not eq or key in values:
            raise UsageError(f"{what}: expected KEY=VALUE once each, not {part!r}")
        values[key] = text
    return values


def _parse_afbc(rest: str) -> int:
    head, _, tail = rest.partition(",")
    sizes = {name.upper(): code for code, name in _AFBC_BLOCK_SIZES.items()}
    block = sizes.get(head.removeprefix("BLOCK_SIZE="))
    if block is None:
        known = ", ".join(_AFBC_BLOCK_SIZES.values())
        raise UsageError(f"AFBC block size is one of {known}: {head!r}")
    mode = block
    if tail:
        if not tail.startswith("MODE="):
            raise UsageError(f"AFBC: expected MODE=FLAG|FLAG after the block size, not {tail!r}")
        bits = dict(_AFBC_MODES)
        for flag in tail.removeprefix("MODE=").split("|"):
            if flag not in bits:
                raise UsageError(f"AFBC mode {flag!r} is not one of {', '.join(bits)}")
            mode |= bits[flag]
    return arm_afbc(mode)


def _parse_afrc(rest: str) -> int:
    *units, layout = rest.split(",")
    if layout not in ("SCAN", "ROT") or not 1 <= len(units) <= 2:
        raise UsageError(f"AFRC is P0=CU_n[,P12=CU_n],SCAN|ROT, not {rest!r}")
    codes = {name: code for code, name in _AFRC_UNITS.items()}
    mode = AFRC_FORMAT_MOD_LAYOUT_SCAN if layout == "SCAN" else 0
    for i, (key, text) in enumerate(_key_values(units, "AFRC").items()):
        if key != ("P0", "P12")[i] or text not in codes:
            raise UsageError(f"AFRC coding units are P0=, then P12=, CU_16/24/32: {key}={text}")
        mode |= codes[text] << (4 * i)
    return arm_afrc(mode)


def _parse_nvidia(rest: str) -> int:
    head, _, tail = rest.partition(",")
    fields = _key_values(tail.split(","), "NVIDIA BLOCK_LINEAR_2D")
    limits = {"HEIGHT": 0xF, "KIND": 0xFF, "GEN": 0x3, "SECTOR": 0x1, "COMPRESSION": 0x7}
    if head != "BLOCK_LINEAR_2D" or list(fields) != list(limits):
        raise UsageError(
            f"NVIDIA is BLOCK_LINEAR_2D,HEIGHT=h,KIND=k,GEN=g,SECTOR=s,COMPRESSION=c, not {rest!r}"
        )
    h, k, g, s, c = (_number(fields[key], f"NVIDIA {key}", mask) for key, mask in limits.items())
    return nvidia_block_linear_2d(c, s, g, k, h)


def _parse_amd(rest: str) -> int:
    version_name, _, tail = rest.partition(",")
    tile_name, *parts = tail.split(",")
    versions = {name: code for code, name in _AMD_VERSIONS.items()}
    if version_name not in versions:
        raise UsageError(f"AMD tile version is one of {', '.join(versions)}: {version_name!r}")
    version = versions[version_name]
    tiles = _AMD_TILES_GFX12 if version >= 5 else _AMD_TILES_GFX9
    upper_tiles = [t.upper() for t in tiles]
    if tile_name not in upper_tiles:
        raise UsageError(f"AMD {version_name} tile {tile_name!r} is not one of {', '.join(tiles)}")
    fields = {"tile_version": version, "tile": upper_tiles.index(tile_name)}
    for part in parts:
        key, eq, text = part.partition("=")
        if key.lower() in fields or key not in AMD_FIELDS or key in ("TILE", "TILE_VERSION"):
            raise UsageError(f"AMD: unexpected part {part!r}")
        if key == "DCC_MAX_COMPRESSED_BLOCK":
            blocks = {f"{64 << n}B": n for n in range(4)}
            if text not in blocks:
                raise UsageError(f"AMD DCC_MAX_COMPRESSED_BLOCK is one of {', '.join(blocks)}")
            fields[key.lower()] = blocks[text]
        elif eq:
            fields[key.lower()] = _number(text, f"AMD {key}", AMD_FIELDS[key][1])
        else:
            fields[key.lower()] = 1
    return amd_fmt_mod(**fields)


def _parse_amlogic(rest: str) -> int:
    head, _, tail = rest.partition(",")
    fields = _key_values(tail.split(","), "AMLOGIC FBC")
    layouts = {name: code for code, name in _AMLOGIC_LAYOUTS.items()}
    options = {"0": 0, "MEM_SAVING": AMLOGIC_FBC_OPTION_MEM_SAVING}
    if head != "FBC" or list(fields) != ["LAYOUT", "OPTIONS"]:
        raise UsageError(f"AMLOGIC is FBC,LAYOUT=BASIC|SCATTER,OPTIONS=0|MEM_SAVING, not {rest!r}")
    if fields["LAYOUT"] not in layouts or fields["OPTIONS"] not in options:
        raise UsageError(
            f"AMLOGIC FBC: LAYOUT is BASIC or SCATTER, OPTIONS 0 or MEM_SAVING: {rest}"
        )
    return amlogic_fbc(layouts[fields["LAYOUT"]], options[fields["OPTIONS"]])


def _parse_vivante(rest: str) -> int:
    head, _, tail = rest.partition(",")
    tilings = {name: code for code, name in _VIVANTE_TILINGS.items()}
    if head not in tilings:
        raise UsageError(f"VIVANTE tiling is one of {', '.join(tilings)}, not {head!r}")
    value = fourcc_mod_code(Vendor.VIVANTE, tilings[head])
    fields = _key_values(tail.split(","), "VIVANTE") if tail else {}
    if not set(fields) <= {"TS", "COMP"}:
        raise UsageError(f"VIVANTE takes TS= and COMP= after the tiling, not {tail!r}")
    ts = {name: code for code, name in _VIVANTE_TS.items()}
    comp = {name: code for code, name in _VIVANTE_COMP.items()}
    if "TS" in fields:
        if fields["TS"] not in ts:
            raise UsageError(f"VIVANTE TS is one of {', '.join(ts)}, not {fields['TS']!r}")
        value |= ts[fields["TS"]] << 48
    if "COMP" in fields:
        if fields["COMP"] not in comp:
            raise UsageError(f"VIVANTE COMP is one of {', '.join(comp)}, not {fields['COMP']!r}")
        value |= comp[fields["COMP"]] << 52
    return value


def parse_modetest_name(text: str) -> int:
    """The value of a modifier name as modetest prints it (case-insensitive).

    Raises:
        UsageError: not such a name, or one that names no value (``*_UNKNOWN_MODIFIER``).
    """
    value = read_modetest_name(text)
    if value is None:
        raise UsageError(f"{text.strip()!r} is not a modifier name as modetest prints it")
    return value


def read_modetest_name(text: str) -> int | None:
    """Like :func:`parse_modetest_name`, but None where ``text`` is not of modetest's form at all
    (a name of modetest's form that is wrong still raises, with what is wrong)."""
    upper = text.strip().upper()
    if upper in ("LINEAR", "NONE_LINEAR"):
        return DRM_FORMAT_MOD_LINEAR
    if upper == "NONE_INVALID":
        return DRM_FORMAT_MOD_INVALID
    if upper in _SIMPLE_UPPER:
        return _SIMPLE_UPPER[upper]
    vendor_name, _, rest = upper.partition("_")
    if upper.endswith("_UNKNOWN_MODIFIER"):
        raise UsageError(
            f"{text.strip()!r} is what modetest prints when libdrm has no name for a modifier;"
            " give the value it prints beside it (0x...)"
        )
    parsers: dict[str, Callable[[str], int]] = {
        "ARM": lambda r: _parse_afbc(r) if r.startswith("BLOCK_SIZE=") else _parse_afrc(r),
        "NVIDIA": _parse_nvidia,
        "AMD": _parse_amd,
        "AMLOGIC": _parse_amlogic,
        "VIVANTE": _parse_vivante,
    }
    starts = {
        "ARM": ("BLOCK_SIZE=", "P0="),
        "NVIDIA": ("BLOCK_LINEAR_2D,",),
        "AMD": tuple(f"{v}," for v in _AMD_VERSIONS.values()),
        "AMLOGIC": ("FBC,",),
        "VIVANTE": tuple(_VIVANTE_TILINGS.values()),
    }
    if vendor_name not in parsers or not rest.startswith(starts[vendor_name]):
        return None
    return parsers[vendor_name](rest)

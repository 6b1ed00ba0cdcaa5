"""Every spelling of formats and modifiers that other tools print, read back (issue 15, part 1).

libdrm's own ``drmGetFormatModifierName``/``drmGetFormatModifierVendor`` (through ctypes, where
libdrm.so.2 is installed) is the reference for modetest's names; GStreamer's names are checked
against the byte order they stand for, derived from the DRM names.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import random
from collections.abc import Callable, Iterator
from functools import cache

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devalloc.constraints import load_device_file
from devalloc.errors import UsageError
from devalloc.formats import (
    FORMATS,
    GST_FORMATS,
    V4L2_FORMATS,
    drm_format_string,
    format_spellings,
    gst_caps,
    gst_format_name,
    gst_to_drm,
    lookup_format,
    modetest_name,
    modifier_spellings,
    parse_drm_format,
    parse_modifier,
)
from devalloc.formats import modifier as mod
from devalloc.formats.libdrm import libdrm_exact, libdrm_name, libdrm_vendor
from devalloc.profiles import profile_names, profile_path

# ---------------------------------------------------------------------------------------------
# Modifiers: the reproductions.


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("ARM_BLOCK_SIZE=16x16,MODE=YTR|SPARSE", 0x0800000000000051),
        ("INTEL_Y_TILED", 0x0100000000000002),
        ("INTEL_Yf_TILED", 0x0100000000000003),
        ("INTEL_4_TILED", 0x0100000000000009),
        ("INTEL_X_TILED", 0x0100000000000001),
        ("I915_FORMAT_MOD_Y_TILED", 0x0100000000000002),
        ("I915_FORMAT_MOD_Yf_TILED", 0x0100000000000003),
        ("DRM_FORMAT_MOD_LINEAR", 0),
        ("DRM_FORMAT_MOD_BROADCOM_SAND128", 0x0700000000000004),
        ("0x0100000000000002", 0x0100000000000002),
        ("I915_Y_TILED", 0x0100000000000002),
        ("NONE_INVALID", mod.DRM_FORMAT_MOD_INVALID),
        # modetest's IN_FORMATS lines: the name, then the value in parentheses.
        ("INTEL_Y_TILED(0x100000000000002)", 0x0100000000000002),
        ("ARM_BLOCK_SIZE=16x16,MODE=YTR|SPARSE(0x800000000000051)", 0x0800000000000051),
        ("LINEAR(0x0)", 0),
        ("INTEL_UNKNOWN_MODIFIER(0x100000000000099)", 0x0100000000000099),
        # Debian 12's libdrm (2.4.114) prints AMD modifiers in its older form: the value rules.
        ("AMD_GFX10,GFX9_64K_S_X,PIPE_XOR_BITS=3(0x200000000601902)", 0x0200000000601902),
    ],
)
def test_every_spelling_reads(text: str, value: int) -> None:
    assert parse_modifier(text).value == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("INTEL_Y_TILE", "closest known: INTEL_Y_TILED"),
        ("INTEL_Y_TILED(0x100000000000001)", "but the value says 0x0100000000000001"),
        ("ARM_BLOCK_SIZE=16x17,", "AFBC block size is one of"),
        ("ARM_BLOCK_SIZE=16x16,MODE=YTR|FOO", "AFBC mode 'FOO'"),
        ("INTEL_UNKNOWN_MODIFIER", "give the value it prints beside it"),
        ("NVIDIA_BLOCK_LINEAR_2D,HEIGHT=99,KIND=0,GEN=0,SECTOR=0,COMPRESSION=0", "0 to 15"),
        ("AMD_GFX9,64KB_Q", "is not one of"),
        ("VIVANTE_TILED,TS=1B", "VIVANTE TS is one of"),
        ("AMLOGIC_FBC,LAYOUT=ROUND,OPTIONS=0", "LAYOUT is BASIC or SCATTER"),
        ("ARM_P0=CU_17,ROT", "AFRC coding units"),
    ],
)
def test_wrong_spellings_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace("|", r"\|")):
        parse_modifier(text)


# Outputs read from libdrm's xf86drm.c (drmGetFormatModifierName and its vendor helpers).
LIBDRM_FACTS = [
    (0x0800000000000051, "ARM_BLOCK_SIZE=16x16,MODE=YTR|SPARSE"),
    (mod.arm_afbc(mod.AFBC_FORMAT_MOD_BLOCK_SIZE_32x8), "ARM_BLOCK_SIZE=32x8,"),
    (
        mod.arm_afbc(4 | mod.AFBC_FORMAT_MOD_SPLIT | mod.AFBC_FORMAT_MOD_USM),
        "ARM_BLOCK_SIZE=32x8_64x4,MODE=SPLIT|USM",
    ),
    (mod.arm_afrc(1 | (2 << 4) | mod.AFRC_FORMAT_MOD_LAYOUT_SCAN), "ARM_P0=CU_16,P12=CU_24,SCAN"),
    (mod.arm_afrc(3), "ARM_P0=CU_32,ROT"),
    (mod.DRM_FORMAT_MOD_ARM_16X16_BLOCK_U_INTERLEAVED, "ARM_16X16_BLOCK_U_INTERLEAVED"),
    (
        mod.nvidia_block_linear_2d(0, 1, 2, 0xFE, 4),
        "NVIDIA_BLOCK_LINEAR_2D,HEIGHT=4,KIND=254,GEN=2,SECTOR=1,COMPRESSION=0",
    ),
    (mod.DRM_FORMAT_MOD_NVIDIA_TEGRA_TILED, "NVIDIA_TEGRA_TILED"),
    (
        mod.amd_fmt_mod(tile_version=2, tile=25, pipe_xor_bits=3),
        "AMD_GFX10,64KB_S_X,PIPE_XOR_BITS=3",
    ),
    (
        mod.amd_fmt_mod(
            tile_version=1,
            tile=27,
            pipe_xor_bits=2,
            bank_xor_bits=1,
            dcc=1,
            dcc_retile=1,
            rb=2,
            pipe=3,
            dcc_independent_64b=1,
        ),
        "AMD_GFX9,64KB_R_X,PIPE_XOR_BITS=2,BANK_XOR_BITS=1,RB=2,PIPE=3,DCC,"
        "DCC_MAX_COMPRESSED_BLOCK=64B,DCC_INDEPENDENT_64B,DCC_RETILE",
    ),
    (
        mod.amd_fmt_mod(tile_version=4, tile=31, pipe_xor_bits=5, packers=3),
        "AMD_GFX11,256KB_R_X,PIPE_XOR_BITS=5,PACKERS=3",
    ),
    (
        mod.amd_fmt_mod(tile_version=5, tile=3, dcc=1, dcc_max_compressed_block=2),
        "AMD_GFX12,64KB_2D,DCC,DCC_MAX_COMPRESSED_BLOCK=256B",
    ),
    (mod.amlogic_fbc(1, 1), "AMLOGIC_FBC,LAYOUT=BASIC,OPTIONS=MEM_SAVING"),
    (mod.amlogic_fbc(2, 0), "AMLOGIC_FBC,LAYOUT=SCATTER,OPTIONS=0"),
    (
        mod.DRM_FORMAT_MOD_VIVANTE_SUPER_TILED
        | mod.VIVANTE_MOD_TS_64_4
        | mod.VIVANTE_MOD_COMP_DEC400,
        "VIVANTE_SUPER_TILED,TS=64B_4,COMP=DEC400",
    ),
    (mod.DRM_FORMAT_MOD_VIVANTE_TILED, "VIVANTE_TILED"),
    (mod.DRM_FORMAT_MOD_BROADCOM_SAND128, "BROADCOM_SAND128"),
    (mod.DRM_FORMAT_MOD_SAMSUNG_64_32_TILE, "SAMSUNG_64_32_TILE"),
    (mod.DRM_FORMAT_MOD_QCOM_TILED3, "QCOM_TILED3"),
    (mod.DRM_FORMAT_MOD_ALLWINNER_TILED, "ALLWINNER_TILED"),
    (mod.I915_FORMAT_MOD_Y_TILED_GEN12_RC_CCS_CC, "INTEL_Y_TILED_GEN12_RC_CCS_CC"),
    (mod.I915_FORMAT_MOD_YF_TILED_CCS, "INTEL_Yf_TILED_CCS"),
    (0, "LINEAR"),
    (mod.DRM_FORMAT_MOD_INVALID, "NONE_INVALID"),
]


@pytest.mark.parametrize(("value", "name"), LIBDRM_FACTS)
def test_modetest_names_in_and_out(value: int, name: str) -> None:
    assert modetest_name(value) == name
    assert parse_modifier(name).value == value
    assert libdrm_exact(value)


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (mod.broadcom_sand(128, 96), "BROADCOM_UNKNOWN_MODIFIER"),
        (mod.DRM_FORMAT_MOD_MTK_16L_32S_TILE, "MTK_UNKNOWN_MODIFIER"),
        (mod.DRM_FORMAT_MOD_APPLE_GPU_TILED, "APPLE_UNKNOWN_MODIFIER"),
        (0x0D00000000000001, "UNKNOWN_VENDOR_UNKNOWN_MODIFIER"),
    ],
)
def test_modifiers_libdrm_cannot_name(value: int, name: str) -> None:
    assert modetest_name(value) == name
    assert not libdrm_exact(value)
    with pytest.raises(UsageError, match="give the value"):
        parse_modifier(name)
    assert parse_modifier(f"{name}({value:#x})").value == value


def test_libdrm_skipped_bits_are_reported_not_exact() -> None:
    # libdrm's AFBC decoder prints no name for bit 13; the name is the value without it.
    value = mod.arm_afbc(1 | (1 << 13))
    assert modetest_name(value) == "ARM_BLOCK_SIZE=16x16,"
    assert not libdrm_exact(value)
    assert modifier_spellings(value)["modetest_exact"] is False


def _bundled_modifiers() -> list[int]:
    values: set[int] = set()
    for name in profile_names():
        for usage in load_device_file(profile_path(name)).usages.values():
            values.update(modifier for _fourcc, modifier in usage.pairs)
    return sorted(values)


BUNDLED = _bundled_modifiers()


def test_bundled_profiles_have_tiled_modifiers() -> None:
    # The pairs test below must cover more than LINEAR (Intel, Broadcom and AFBC are bundled).
    assert {v >> 56 for v in BUNDLED} >= {0, 0x01, 0x07, 0x08}


@pytest.mark.parametrize("value", BUNDLED, ids=[f"{v:#018x}" for v in BUNDLED])
def test_pairs_every_bundled_modifier(value: int) -> None:
    """Every spelling of every bundled modifier reads back to it and prints back the same."""
    spellings = modifier_spellings(value)
    assert spellings["modetest_exact"] is True
    for key in ("devalloc", "modetest", "hex", "macro"):
        text = spellings[key]
        if text is None:
            continue
        assert isinstance(text, str)
        assert parse_modifier(text).value == value, key
        assert parse_modifier(text.lower()).value == value, key
        assert modifier_spellings(parse_modifier(text))[key] == text
    assert modetest_name(parse_modifier(str(spellings["modetest"])).value) == spellings["modetest"]


@given(st.integers(0, (1 << 64) - 1))
def test_any_value_modetest_name_is_exact_or_says_so(value: int) -> None:
    name = modetest_name(value)
    if libdrm_exact(value):
        assert parse_modifier(name).value == value
    assert parse_modifier(f"{name}(0x{value:x})").value == value


@given(
    st.sampled_from(list(mod.Vendor)),
    st.integers(0, (1 << 56) - 1) | st.integers(0, 0xFFFF) | st.integers(0, 0x1FF),
)
def test_vendor_values_round_trip_when_exact(vendor: mod.Vendor, low: int) -> None:
    value = mod.fourcc_mod_code(vendor, low)
    name = modetest_name(value)
    try:
        back = parse_modifier(name).value
    except UsageError:
        assert name.endswith("UNKNOWN_MODIFIER") or "UNKNOWN" in name or "INVALID" in name
        return
    assert modetest_name(back) == name  # what libdrm prints is stable
    assert (back == value) == libdrm_exact(value)


# ---------------------------------------------------------------------------------------------
# libdrm itself, where installed.


@cache
def _libdrm() -> tuple[Callable[[int], str | None], Callable[[int], str | None]] | None:
    path = ctypes.util.find_library("drm")
    if path is None:
        return None
    lib = ctypes.CDLL(path)
    libc = ctypes.CDLL(None)
    libc.free.argtypes = [ctypes.c_void_p]
    functions = []
    for name in ("drmGetFormatModifierName", "drmGetFormatModifierVendor"):
        function = getattr(lib, name, None)
        if function is None:
            return None
        function.restype = ctypes.c_void_p
        function.argtypes = [ctypes.c_uint64]

        def call(value: int, function: Callable[[int], int | None] = function) -> str | None:
            pointer = function(value)
            if not pointer:
                return None
            try:
                return ctypes.string_at(pointer).decode()
            finally:
                libc.free(pointer)

        functions.append(call)
    return functions[0], functions[1]


def _sample_values() -> Iterator[int]:
    rng = random.Random(15)
    yield from (0, mod.DRM_FORMAT_MOD_INVALID, *BUNDLED, *(v for v, _n in LIBDRM_FACTS))
    for vendor in range(14):
        yield from (mod.fourcc_mod_code(vendor, low) for low in range(40))
    for _ in range(5000):
        bits = rng.choice([4, 8, 9, 13, 16, 24, 40, 56])
        yield mod.fourcc_mod_code(rng.randrange(14), rng.getrandbits(bits))
    yield from (mod.arm_afbc(size | flags) for size in range(5) for flags in range(0, 1 << 13, 16))
    yield from (mod.arm_afrc(mode) for mode in range(0x200))


def test_names_match_the_installed_libdrm() -> None:
    libdrm = _libdrm()
    if libdrm is None:
        pytest.skip("libdrm.so.2 with drmGetFormatModifierName is not installed")
    name_of, vendor_of = libdrm
    # libdrm before 2.4.124 printed AMD modifiers in another form ("GFX9" alone for tile 0).
    old_amd = name_of(mod.amd_fmt_mod(tile_version=1, tile=0)) == "GFX9"
    compared = 0
    for value in _sample_values():
        vendor = vendor_of(value)
        if vendor is not None:  # an older libdrm may not know the newest vendors
            assert libdrm_vendor(value) == vendor, hex(value)
        name = name_of(value)
        if name is None or (old_amd and value >> 56 == mod.Vendor.AMD):
            continue  # an older libdrm may not name the newest modifiers
        assert libdrm_name(value) == name, hex(value)
        compared += 1
    assert compared > 1000


# ---------------------------------------------------------------------------------------------
# Formats.


def _gst_name_from_drm(drm: str) -> str:
    """GStreamer's byte-order name of a DRM 32-bit RGB format ``[31:0] A:R:G:B`` little-endian:
    the components in memory order are the DRM name's letters reversed; padding is ``x``."""
    letters = drm.removesuffix("8888")
    return "".join(reversed(letters)).replace("X", "x")


@pytest.mark.parametrize(
    "drm",
    [
        "XRGB8888",
        "XBGR8888",
        "RGBX8888",
        "BGRX8888",
        "ARGB8888",
        "ABGR8888",
        "RGBA8888",
        "BGRA8888",
    ],
)
def test_gstreamer_rgb_names_are_byte_order(drm: str) -> None:
    gst = _gst_name_from_drm(drm)
    assert gst_to_drm(gst)[0].name == drm
    assert gst_format_name(drm) == gst
    assert lookup_format(gst).name == drm


def test_gstreamer_24_bit_and_yuv_names() -> None:
    assert lookup_format("RGB").name == "BGR888"  # bytes R, G, B: DRM [23:0] B:G:R
    assert lookup_format("BGR").name == "RGB888"
    assert lookup_format("I420").name == "YUV420"
    assert lookup_format("YV12").name == "YVU420"
    assert lookup_format("YUY2").name == "YUYV"
    assert lookup_format("VUYA").name == "AYUV"
    assert lookup_format("P010_10LE").name == "P010"


def test_every_gstreamer_format_maps_consistently() -> None:
    for name, (fmt, modifier) in GST_FORMATS.items():
        assert gst_format_name(fmt, modifier) == name
        assert parse_drm_format(name) == (fmt, modifier)
        if modifier.is_linear:
            assert lookup_format(name) == fmt
        else:
            with pytest.raises(UsageError, match="with the modifier"):
                lookup_format(name)


def test_gstreamer_names_are_case_sensitive_and_say_so() -> None:
    with pytest.raises(UsageError, match=r"GStreamer's RGBA .* is DRM ABGR8888"):
        lookup_format("rgba")
    assert lookup_format("RGBA8888").name == "RGBA8888"  # DRM's own name is not GStreamer's


def test_v4l2_names() -> None:
    assert lookup_format("RGB24").name == "BGR888"
    assert lookup_format("V4L2_PIX_FMT_NV12M").name == "NV12"
    assert lookup_format("RGB3").name == "BGR888"
    assert lookup_format("NM12").name == "NV12"
    assert lookup_format("GREY").name == "R8"
    for name, entry in V4L2_FORMATS.items():
        assert lookup_format(f"V4L2_PIX_FMT_{name}") == entry.drm


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_format_spelling_reads_back(name: str) -> None:
    spellings = format_spellings(name)
    fmt = FORMATS[name]
    for key in ("drm", "macro", "fourcc", "fourcc_hex", "gstreamer"):
        text = spellings[key]
        if text is not None:
            assert isinstance(text, str)
            assert lookup_format(text) == fmt, key
    v4l2 = spellings["v4l2"]
    assert isinstance(v4l2, list)
    for v4l2_name in v4l2:
        assert lookup_format(f"V4L2_PIX_FMT_{v4l2_name}") == fmt
    assert parse_drm_format(drm_format_string(fmt, 0)) == (fmt, parse_modifier(0))


def test_drm_format_strings() -> None:
    assert drm_format_string("NV12", "I915_Y_TILED") == "NV12:0x0100000000000002"
    assert drm_format_string("XRGB8888", 0) == "XR24"
    assert drm_format_string("R8", 0) == "R8  "  # GStreamer prints the fourcc's four characters
    fmt, modifier = parse_drm_format("NV12:0x0100000000000002")
    assert (fmt.name, modifier.value) == ("NV12", 0x0100000000000002)
    assert parse_drm_format("XR24")[0].name == "XRGB8888"
    assert parse_drm_format("R8  ")[0].name == "R8"
    assert parse_drm_format("XRGB8888:INTEL_Y_TILED")[1].value == 0x0100000000000002
    assert parse_drm_format("NV12_4L4") == (FORMATS["NV12"], parse_modifier("VIVANTE_TILED"))
    with pytest.raises(UsageError, match="INVALID"):
        drm_format_string("NV12", mod.DRM_FORMAT_MOD_INVALID)
    with pytest.raises(UsageError, match="drm-format 'NV12:0xzz'"):
        parse_drm_format("NV12:0xzz")
    with pytest.raises(UsageError, match=r"drm-format 'QQQQ:0x1'.*unknown pixel format"):
        parse_drm_format("QQQQ:0x1")
    with pytest.raises(UsageError, match="only the format is asked for"):
        lookup_format("NV12:0x0100000000000002")
    assert lookup_format("NV12:0x0000000000000000").name == "NV12"


def test_gst_caps() -> None:
    caps = gst_caps("XRGB8888", 0, 640, 480)
    assert caps == {
        "raw": "video/x-raw,format=BGRx,width=640,height=480",
        "dma_drm": "video/x-raw(memory:DMABuf),format=DMA_DRM,drm-format=XR24,width=640,height=480",
        "drm_format": "XR24",
    }
    tiled = gst_caps("NV12", "I915_Y_TILED", 64, 48)
    assert tiled["raw"] is None
    assert tiled["drm_format"] == "NV12:0x0100000000000002"
    assert gst_caps("NV15", 0, 64, 48)["raw"] is None  # GStreamer has no linear NV15 name


@given(st.text(max_size=40))
def test_any_text_is_a_format_or_a_usage_error(text: str) -> None:
    for parse in (lookup_format, parse_drm_format, parse_modifier):
        with contextlib.suppress(UsageError):
            parse(text)


# ---------------------------------------------------------------------------------------------
# Everywhere a format or a modifier is accepted.


def test_device_files_take_every_spelling() -> None:
    from devalloc.constraints import loads_device

    profile = loads_device(
        """
device = "pasted"
[usages.scanout]
formats = ["BGRx", "V4L2_PIX_FMT_NV12M", "DRM_FORMAT_ABGR8888"]
modifiers = ["INTEL_Y_TILED", "I915_FORMAT_MOD_X_TILED", "LINEAR"]
[usages.afbc]
pairs = [["XR24", "ARM_BLOCK_SIZE=16x16,MODE=YTR|SPARSE(0x800000000000051)"]]
"""
    )
    scanout = profile.usages["scanout"]
    assert [(lookup_format(f).name, m) for f, m in scanout.pairs][:3] == [
        ("XRGB8888", 0x0100000000000002),
        ("XRGB8888", 0x0100000000000001),
        ("XRGB8888", 0),
    ]
    assert {lookup_format(f).name for f, _m in scanout.pairs} == {"XRGB8888", "NV12", "ABGR8888"}
    assert profile.usages["afbc"].pairs == ((FORMATS["XRGB8888"].fourcc, 0x0800000000000051),)


def test_negotiate_takes_a_drm_format_pin() -> None:
    from devalloc.constraints import Constraints
    from devalloc.negotiate import NegotiationError, negotiate

    xr24 = FORMATS["XRGB8888"].fourcc
    tiled = ((xr24, 0x0100000000000002), (xr24, 0x0100000000000001), (xr24, 0))
    gpu = Constraints("gpu", "render", tiled)
    assert negotiate([gpu], 64, 48, ["XR24"]).modifier.name == "I915_Y_TILED"
    assert negotiate([gpu], 64, 48, ["XR24:0x0100000000000001"]).modifier.name == "I915_X_TILED"
    assert negotiate([gpu], 64, 48, ["BGRx:LINEAR"]).modifier.is_linear
    with pytest.raises(NegotiationError) as info:
        negotiate([gpu], 64, 48, ["XRGB8888:INTEL_4_TILED"])
    (conflict,) = info.value.conflicts
    assert conflict.attribute == "modifier"
    assert conflict.devices[0] == "application"


def test_cli_negotiate_with_a_gstreamer_drm_format(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from devalloc.cli import main

    argv = ["negotiate", "-d", "intel-tgl:scanout", "-d", "intel-tgl:render", "--size", "64x48"]
    assert main([*argv, "--format", "XR24:0x0100000000000001", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["modifier"] == "I915_X_TILED"
    assert data["drm_format"] == "XR24:0x0100000000000001"
    assert main([*argv, "--format", "BGRx:LINEAR"]) == 0
    assert "  gstreamer drm-format XR24, raw format BGRx" in capsys.readouterr().out.splitlines()
    assert main([*argv, "--format", "NV12:0xzz"]) == 2
    assert "drm-format 'NV12:0xzz'" in capsys.readouterr().err


def test_pipeline_files_take_spellings_and_pins() -> None:
    from devalloc.negotiate import negotiate
    from devalloc.pipeline import loads_pipeline

    pipe = loads_pipeline(
        'name = "p"\nwidth = 64\nheight = 48\n'
        'formats = ["BGRx", "XR24:0x0100000000000001", "NV12_4L4", "I420"]\n'
        '[[devices]]\nprofile = "intel-tgl"\nusage = "render"\n'
    )
    assert pipe.formats == (
        "XRGB8888",
        "XRGB8888:0x0100000000000001",
        "NV12:0x0600000000000001",
        "YUV420",
    )
    plan = negotiate(pipe.constraints(), pipe.width, pipe.height, pipe.formats)
    assert (plan.format.name, plan.modifier.name) == ("XRGB8888", "I915_X_TILED")

"""Modifiers: names, known values from drm_fourcc.h, and round trips over every vendor encoding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devalloc.errors import UsageError
from devalloc.formats import Modifier, modifier_name, parse_modifier
from devalloc.formats import modifier as mod


def test_linear_and_invalid() -> None:
    assert str(Modifier(0)) == "LINEAR"
    assert Modifier(0).hex == "0x0000000000000000"
    assert str(Modifier(0x00FFFFFFFFFFFFFF)) == "INVALID"
    assert parse_modifier("linear").value == 0
    assert parse_modifier("DRM_FORMAT_MOD_INVALID").value == mod.DRM_FORMAT_MOD_INVALID


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (0x0100000000000001, "I915_X_TILED"),
        (0x0100000000000002, "I915_Y_TILED"),
        (0x0100000000000003, "I915_Yf_TILED"),
        (0x0100000000000009, "I915_4_TILED"),
        (0x0300000000000014, "NVIDIA_16BX2_BLOCK(4)"),
        (0x0300000000000001, "NVIDIA_TEGRA_TILED"),
        (0x0700000000000001, "BROADCOM_VC4_T_TILED"),
        (0x0700000000000004, "BROADCOM_SAND128"),
        (0x0700000000000006, "BROADCOM_UIF"),
        (0x0810000000000001, "ARM_16X16_BLOCK_U_INTERLEAVED"),
        (0x0900000000000001, "ALLWINNER_TILED"),
        (0x0400000000000001, "SAMSUNG_64_32_TILE"),
        (0x0500000000000001, "QCOM_COMPRESSED"),
        (0x0600000000000002, "VIVANTE_SUPER_TILED"),
    ],
)
def test_known_values(value: int, name: str) -> None:
    assert modifier_name(value) == name
    assert parse_modifier(name).value == value
    assert parse_modifier(hex(value)).value == value


def test_readable_names_of_composed_modifiers() -> None:
    nv = mod.nvidia_block_linear_2d(c=0, s=0, g=2, k=0xFE, h=4)
    assert str(Modifier(nv)) == "NVIDIA_BLOCK_LINEAR_2D(h=4,k=0xfe,g=2,s=0,c=0)"
    afbc = mod.arm_afbc(
        mod.AFBC_FORMAT_MOD_BLOCK_SIZE_16x16 | mod.AFBC_FORMAT_MOD_SPARSE | mod.AFBC_FORMAT_MOD_YTR
    )
    assert str(Modifier(afbc)) == "ARM_AFBC(16x16,YTR,SPARSE)"
    assert parse_modifier("arm_afbc(16x16, SPARSE, YTR)").value == afbc
    assert str(Modifier(mod.broadcom_sand(128, 96))) == "BROADCOM_SAND128_COL_HEIGHT(96)"
    assert str(Modifier(mod.amlogic_fbc(1, 1))) == "AMLOGIC_FBC(BASIC,MEM_SAVING)"
    assert str(Modifier(mod.DRM_FORMAT_MOD_MTK_16L_32S_TILE)) == "MTK(TILE_16L32S)"
    assert str(Modifier(mod.AMD_FMT_MOD)) == "AMD(0,0)"


def test_unknown_bits_print_raw_and_round_trip() -> None:
    value = mod.fourcc_mod_code(mod.Vendor.ARM, 0xF << 48)
    assert modifier_name(value) == "ARM_MOD(0xf000000000000)"
    assert modifier_name(0x0D00000000000007) == "VENDOR_0x0d_MOD(0x7)"
    assert parse_modifier("VENDOR_0x0d_MOD(0x7)").value == 0x0D00000000000007


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "NOT_A_MODIFIER",
        "ARM_AFBC(12x12)",
        "NVIDIA_BLOCK_LINEAR_2D(h=99,k=0,g=0,s=0,c=0)",
        "-1",
        "0x10000000000000000",
        "AMD(GFX9)",
        "BROADCOM_SAND128_COL_HEIGHT(x)",
    ],
)
def test_bad_modifiers(bad: str) -> None:
    with pytest.raises(UsageError):
        parse_modifier(bad)


def test_unknown_name_suggests() -> None:
    with pytest.raises(UsageError, match="I915_X_TILED"):
        parse_modifier("I915_X_TILD")


@given(st.integers(min_value=0, max_value=mod.U64_MASK))
def test_every_value_round_trips(value: int) -> None:
    assert parse_modifier(str(Modifier(value))).value == value


def _vendor_value(vendor: mod.Vendor, low: st.SearchStrategy[int]) -> st.SearchStrategy[int]:
    return low.map(lambda v: mod.fourcc_mod_code(vendor, v))


ENCODED = st.one_of(
    st.builds(
        mod.nvidia_block_linear_2d,
        st.integers(0, 7),
        st.integers(0, 1),
        st.integers(0, 3),
        st.integers(0, 255),
        st.integers(0, 15),
    ),
    st.builds(mod.broadcom_sand, st.sampled_from([32, 64, 128, 256]), st.integers(0, 2**48 - 1)),
    st.builds(
        mod.arm_afbc,
        st.builds(
            lambda s, f: s | f, st.integers(1, 4), st.integers(0, 0x1FF).map(lambda f: f << 4)
        ),
    ),
    st.builds(
        mod.arm_afrc,
        st.builds(
            lambda p0, p12, scan: p0 | p12 << 4 | scan << 8,
            st.integers(1, 3),
            st.integers(0, 3),
            st.integers(0, 1),
        ),
    ),
    st.builds(mod.amlogic_fbc, st.integers(1, 2), st.integers(0, 1)),
    st.builds(
        mod.mtk_modifier,
        st.builds(
            lambda t, c, b: t | c << 8 | b << 16,
            st.integers(0, 1),
            st.integers(0, 1),
            st.integers(0, 2),
        ),
    ),
    _vendor_value(
        mod.Vendor.VIVANTE,
        st.builds(
            lambda b, t, c: b | t << 48 | c << 52,
            st.integers(1, 4),
            st.integers(0, 4),
            st.integers(0, 1),
        ),
    ),
    _vendor_value(mod.Vendor.AMD, st.integers(0, 2**36 - 1)),
    _vendor_value(mod.Vendor.INTEL, st.integers(1, 17)),
)


@given(ENCODED)
def test_vendor_encodings_decode_and_round_trip(value: int) -> None:
    name = modifier_name(value)
    assert "_MOD(" not in name, name  # decoded, not the raw fallback
    assert parse_modifier(name).value == value
    assert parse_modifier(name.lower()).value == value

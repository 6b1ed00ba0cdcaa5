"""The bundled device profiles (src/devalloc/profiles/*.toml): they load, every constraint line
names its source, and the facts we meant to encode are the ones that load."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from devalloc.constraints import Constraints, load_constraints, load_device_file
from devalloc.errors import UsageError
from devalloc.formats import lookup_format, parse_modifier
from devalloc.formats.layout import LayoutRules
from devalloc.profiles import PROFILE_DIR, profile_names, profile_path

from .kernel.test_v4l2_layout import VIVID_MAPPED, VIVID_RULES

NAMES = profile_names()
#: Comments shorter than this do not name a source (a bare "#" or "# ok" is not one).
MIN_COMMENT = 12
_USAGE_HEADER = re.compile(r"^\s*\[\s*usages\.")
_HEADER = re.compile(r"^\s*\[")
_KEY = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")


def _comment_of(line: str) -> str | None:
    """The comment at the end of a TOML line (outside strings), or None."""
    quote = ""
    i = 0
    while i < len(line):
        ch = line[i]
        if quote:
            if ch == "\\" and quote == '"':
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return line[i + 1 :].strip()
        i += 1
    return None


def uncited_lines(text: str) -> list[tuple[int, str]]:
    """Key lines inside ``[usages.*]`` tables (``description`` excepted: it is prose, not a
    constraint) that lack a source comment of at least :data:`MIN_COMMENT` characters."""
    bad: list[tuple[int, str]] = []
    in_usage = False
    for number, line in enumerate(text.splitlines(), start=1):
        if _HEADER.match(line):
            in_usage = bool(_USAGE_HEADER.match(line))
            continue
        key = _KEY.match(line)
        if not in_usage or key is None or key.group(1) == "description":
            continue
        comment = _comment_of(line)
        if comment is None or len(comment) < MIN_COMMENT:
            bad.append((number, line.strip()))
    return bad


def _constraints(name: str) -> dict[str, Constraints]:
    return load_device_file(profile_path(name)).usages


def _pair(fmt: str, mod: str = "LINEAR") -> tuple[int, int]:
    return lookup_format(fmt).fourcc, parse_modifier(mod).value


# ---------------------------------------------------------------------------------------------
# The collection.


def test_at_least_sixteen_profiles_ship_and_names_are_sorted_stems() -> None:
    assert sorted(NAMES) == NAMES
    assert len(NAMES) >= 16
    assert set(NAMES) == {p.stem for p in PROFILE_DIR.glob("*.toml")}


def test_profile_path_finds_a_bundled_file() -> None:
    path = profile_path("rk3399-vop")
    assert path.is_file()
    assert path.name == "rk3399-vop.toml"
    assert path.parent == PROFILE_DIR


@pytest.mark.parametrize("bad", ["rk3399-vopp", "", "rk3399-vop.toml", "../vivid"])
def test_profile_path_refuses_an_unknown_name_and_lists_the_known_ones(bad: str) -> None:
    with pytest.raises(UsageError, match="no bundled device profile named") as err:
        profile_path(bad)
    for name in NAMES:
        assert name in str(err.value)


def test_a_close_miss_gets_a_suggestion() -> None:
    with pytest.raises(UsageError, match="closest: rk3399-vop"):
        profile_path("rk3399-vop2")


@pytest.mark.parametrize("name", NAMES)
def test_every_profile_loads_with_pairs_and_sources(name: str) -> None:
    profile = load_device_file(profile_path(name))
    assert profile.device == name, "the device id is the file stem, so specs read the same"
    assert profile.description
    assert profile.sources, "every device file lists its public sources"
    assert profile.usages
    for usage, constraints in profile.usages.items():
        assert constraints.usage == usage
        assert len(constraints.pairs) >= 1
        assert constraints.description, f"{name}:{usage} has no description"
        assert Constraints.from_json(constraints.to_json()) == constraints


@pytest.mark.parametrize("name", NAMES)
def test_bundled_names_work_as_device_specs(name: str) -> None:
    everything = load_constraints(name)
    assert [c.label for c in everything] == [f"{name}:{usage}" for usage in _constraints(name)]
    first = everything[0]
    assert load_constraints(f"{name}:{first.usage}") == [first]


# ---------------------------------------------------------------------------------------------
# Every constraint names its source.


@pytest.mark.parametrize("name", NAMES)
def test_every_constraint_line_has_a_source_comment(name: str) -> None:
    text = profile_path(name).read_text(encoding="utf-8")
    assert uncited_lines(text) == []


@pytest.mark.parametrize("name", NAMES)
def test_the_checker_sees_every_constraint_key_of_the_file(name: str) -> None:
    """The line scanner must not miss keys: count the keys tomllib reads in the usages (minus
    descriptions) and the key lines the scanner looks at."""
    text = profile_path(name).read_text(encoding="utf-8")
    data = tomllib.loads(text)

    def count(table: dict[str, object]) -> int:
        total = 0
        for key, value in table.items():
            if isinstance(value, dict):
                total += count(value)
            elif key != "description":
                total += 1
        return total

    expected = sum(count(usage) for usage in data["usages"].values())
    seen = 0
    in_usage = False
    for line in text.splitlines():
        if _HEADER.match(line):
            in_usage = bool(_USAGE_HEADER.match(line))
        elif in_usage and (key := _KEY.match(line)) and key.group(1) != "description":
            seen += 1
    assert seen == expected


def test_the_checker_catches_a_missing_or_empty_comment() -> None:
    text = (
        'device = "x"  \n'
        "[usages.a]\n"
        'description = "prose needs no citation"\n'
        'formats = ["NV12"]  # drivers/foo.c: foo_formats[]\n'
        "[usages.a.layout]\n"
        "pitch_align = 64\n"
        "height_align = 2  # ok\n"
        'max_width = 4096  # a string "#" inside is fine: foo.c MAX_W\n'
        '[usages.a.memory]\ncontiguous = true # "quoted # is not a comment start"\n'
        'location = "vram#1"\n'
    )
    assert uncited_lines(text) == [
        (6, "pitch_align = 64"),
        (7, "height_align = 2  # ok"),
        (11, 'location = "vram#1"'),
    ]


def test_a_real_profile_with_a_comment_removed_fails_the_check(tmp_path: Path) -> None:
    text = profile_path("rk3399-vop").read_text(encoding="utf-8")
    line = next(i for i, s in enumerate(text.splitlines()) if s.startswith("dma_bits"))
    lines = text.splitlines()
    lines[line] = lines[line].split("#")[0].rstrip()
    assert uncited_lines("\n".join(lines)) == [(line + 1, lines[line])]


# ---------------------------------------------------------------------------------------------
# Spot checks: the facts we meant to write are the ones that load.


def test_the_npu_reaches_only_32_bit_addresses() -> None:
    usages = _constraints("rk3568-rknpu")
    assert usages
    assert all(c.memory.dma_bits == 32 for c in usages.values())
    assert all(c.access == "read" for c in usages.values())


def test_the_display_without_iommu_needs_contiguous_memory() -> None:
    for usage in _constraints("stm32mp1-ltdc").values():
        assert usage.memory.contiguous
        assert usage.memory.max_segments == 1
        assert usage.memory.dma_bits == 32
        assert usage.max_pitch == 8191
        assert (usage.max_width, usage.max_height) == (2048, 2048)
        assert _pair("NV12") not in usage.pairs  # an RGB-only LTDC


def test_the_display_with_iommu_takes_scattered_pages_but_only_below_4_gib() -> None:
    primary = _constraints("rk3399-vop")["primary"]
    assert not primary.memory.contiguous
    assert primary.memory.max_segments is None
    assert primary.memory.dma_bits == 32
    assert primary.layout.pitch_align == 4
    assert primary.pairs[0] == _pair("XRGB8888", "ARM_AFBC(16x16,YTR,SPARSE)")
    assert _pair("NV12") in primary.pairs
    assert _pair("NV12", "ARM_AFBC(16x16,YTR,SPARSE)") not in primary.pairs  # RGB-only AFBC


def test_the_raspberry_pi_offers_sand128_for_nv12_and_a_16_line_codec_path() -> None:
    rpi = _constraints("rpi4")
    sand128 = _pair("NV12", "BROADCOM_SAND128")
    assert sand128 in rpi["scanout"].pairs
    assert rpi["hevc-decode"].pairs == (sand128,)
    assert rpi["hevc-decode"].layout.height_align == 16
    assert _pair("XRGB8888", "BROADCOM_VC4_T_TILED") in rpi["scanout"].pairs
    assert rpi["scanout"].memory.contiguous
    assert rpi["scanout"].memory.dma_bits == 30
    assert not rpi["render"].memory.contiguous  # V3D has its own MMU
    codec = _constraints("bcm2835-codec")
    assert codec["encode"].layout.height_align == 16
    assert codec["decode"].layout.height_align == 16
    assert sand128 in codec["decode"].pairs


def test_the_gpu_has_vendor_tiling_in_several_usages() -> None:
    intel = _constraints("intel-tgl")
    assert set(intel) >= {"render", "texture", "scanout"}
    for usage in ("render", "texture", "scanout"):
        pairs = intel[usage].pairs
        assert pairs[0] == _pair("XRGB8888", "I915_Y_TILED")
        assert _pair("XRGB8888", "I915_X_TILED") in pairs
        assert _pair("XRGB8888") in pairs
    assert intel["scanout"].layout.pitch_align == 64
    assert intel["scanout"].max_pitch == 32768
    assert intel["render"].memory.coherent
    assert not intel["scanout"].memory.coherent


def test_the_decoder_and_encoders_align_to_macroblocks() -> None:
    vpu = _constraints("rk3399-vpu")
    decode = vpu["decode"]
    assert decode.pairs == (_pair("NV12"),)
    assert (decode.layout.pitch_align, decode.layout.height_align) == (16, 16)
    assert (decode.max_width, decode.max_height) == (1920, 1088)
    assert decode.access == "write"
    assert vpu["jpeg-encode"].buffers == "per-plane"


def test_the_camera_isp_paths_capture() -> None:
    isp = _constraints("rkisp1")
    assert set(isp) == {"mainpath", "selfpath"}
    assert all(c.access == "write" for c in isp.values())
    assert _pair("XRGB8888") in isp["selfpath"].pairs
    assert _pair("XRGB8888") not in isp["mainpath"].pairs  # RGB only on the self path
    assert (isp["mainpath"].max_width, isp["selfpath"].max_width) == (4416, 1920)


def test_the_webcam_is_cpu_written_and_takes_any_pages() -> None:
    cam = _constraints("uvc-webcam")["capture"]
    assert cam.memory.cpu_access == "w"
    assert not cam.memory.contiguous
    assert list(cam.pairs) == [_pair("YUYV"), _pair("NV12")]


def test_the_protected_path_is_protected_and_never_cpu_mapped() -> None:
    usages = _constraints("secure-video")
    assert usages
    for usage in usages.values():
        assert usage.memory.protected
        assert usage.memory.cpu_access == "none"


def test_vivid_and_vgem_match_what_the_vm_tests_measured() -> None:
    vivid = _constraints("vivid")
    assert set(vivid) == {"capture", "output"}
    measured = {_pair(f.drm.name) for f in VIVID_MAPPED}  # what the VM test checks vivid has
    for usage in vivid.values():
        assert usage.layout == VIVID_RULES == LayoutRules()
        assert set(usage.pairs) == measured
        assert len(usage.pairs) == len(measured)
    assert vivid["capture"].memory.cpu_access == "w"
    assert vivid["output"].memory.cpu_access == "r"
    vgem = _constraints("vgem")
    assert set(vgem) == {"import", "dumb"}  # no KMS planes: no scan-out usage
    assert vgem["dumb"].layout.size_align == 4096


def test_the_second_test_kernel_devices_have_the_readme_formats() -> None:
    vkms = _constraints("vkms")
    readme = {_pair(f) for f in ("AR24", "XR24", "XR48", "AR48", "RG16")}
    for usage in ("primary", "overlay", "cursor"):
        assert set(vkms[usage].pairs) == readme
    assert vkms["writeback"].access == "write"
    assert _pair("BG24") in _constraints("vimc")["capture"].pairs  # vimc's default RGB3
    vim2m = _constraints("vim2m")
    assert _pair("RG16") in vim2m["output"].pairs
    assert _pair("BG24") in vim2m["input"].pairs
    assert (vim2m["input"].max_width, vim2m["input"].max_height) == (640, 480)
    vicodec = _constraints("vicodec")
    assert set(vicodec) == {"encoder-input", "decoder-output"}
    assert _pair("NV12") in vicodec["encoder-input"].pairs


@pytest.mark.parametrize("bad", [None, b"rk3399-vop", 7, ["rk3399-vop"], "\udcff", "x" * 100_000])
def test_profile_path_refuses_wrong_types_and_huge_names_in_one_short_line(bad: object) -> None:
    with pytest.raises(UsageError, match=r"^no bundled device profile named ") as err:
        profile_path(bad)  # type: ignore[arg-type]
    message = str(err.value)
    assert "\n" not in message
    assert len(message) < 1000  # a 100,000-character name is cut, not repeated

"""The constraints model: validation, JSON round trips, device files (TOML) and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devalloc.constraints import (
    Constraints,
    MemoryRules,
    cpu_access_union,
    load_constraints,
    load_device_file,
    loads_device,
    modifier_text,
)
from devalloc.errors import UsageError
from devalloc.formats import LayoutRules, fourcc_code, parse_modifier

DATA = Path(__file__).parent / "data" / "negotiate"
NV12 = fourcc_code("NV12")
XR24 = fourcc_code("XR24")
Y_TILED = parse_modifier("I915_Y_TILED").value

GOOD = """\
# a display engine
device = "rk3399-vop"
description = "Rockchip RK3399 VOP"
sources = ["linux: drivers/gpu/drm/rockchip/rockchip_drm_vop.c"]

[usages.primary]
description = "primary plane scan-out"
access = "read"
formats = ["XR24", "AR24", "NV12"]
modifiers = ["LINEAR"]
pairs = [
  ["NV12", "ARM_AFBC(16x16,SPARSE)"],
  ["XR24", "LINEAR"],
]

[usages.primary.layout]
pitch_align = 64
plane_pitch_align = [64, 128]
height_align = 2
offset_align = 4096
size_align = 4096
extra_rows = 4
min_size = 8192
buffers = "single"
min_pitch = 64
max_pitch = 65535
max_width = 4096
max_height = 2160

[usages.primary.memory]
contiguous = true
dma_bits = 32
location = "system"
protected = false
coherent = false
cpu_access = "none"

[usages.cursor]
formats = ["AR24"]
"""


def device(**changes: object) -> Constraints:
    fields: dict[str, object] = {"device": "dev", "usage": "use", "pairs": ((NV12, 0),)}
    fields.update(changes)
    return Constraints(**fields)  # type: ignore[arg-type]


# --- the model -----------------------------------------------------------------------------------


def test_label_positions_and_access() -> None:
    c = device(pairs=((XR24, 0), (NV12, Y_TILED), (NV12, 0)), access="write")
    assert c.label == "dev:use"
    assert c.positions == {(XR24, 0): 0, (NV12, Y_TILED): 1, (NV12, 0): 2}
    assert c.fourccs == {XR24: 0, NV12: 1}
    assert c.writes
    assert not c.reads


def test_contiguous_means_one_segment() -> None:
    assert MemoryRules(contiguous=True).max_segments == 1
    assert MemoryRules(contiguous=True, max_segments=1) == MemoryRules(contiguous=True)
    with pytest.raises(UsageError, match="max_segments 4 contradicts contiguous"):
        MemoryRules(contiguous=True, max_segments=4)


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"pairs": ()}, "dev:use: at least one"),
        ({"pairs": ((NV12, 0), (NV12, 0))}, r"dev:use: pairs\[1\] repeats NV12 LINEAR"),
        ({"pairs": ((0x12345678, 0),)}, r"dev:use: pairs\[0\]: unknown pixel format"),
        ({"pairs": ((NV12, -1),)}, "not a 64-bit value"),
        ({"pairs": ((NV12,),)}, "is a .fourcc, modifier. pair"),
        ({"buffers": "two"}, "dev:use: buffers is one of"),
        ({"access": "rw"}, "dev:use: access is one of"),
        ({"min_pitch": -1}, "dev:use: min_pitch"),
        ({"max_pitch": 0}, "dev:use: max_pitch"),
        ({"max_width": 1 << 21}, "dev:use: max_width"),
        ({"max_height": True}, "dev:use: max_height"),
        ({"min_pitch": 64, "max_pitch": 32}, "max_pitch 32 is below min_pitch 64"),
        ({"layout": LayoutRules(multi_buffer=True)}, 'say buffers = "per-plane"'),
        ({"device": "a:b"}, "device is a non-empty name"),
        ({"usage": ""}, "usage is a non-empty name"),
        ({"memory": "contiguous"}, "dev:use: memory is a MemoryRules"),
    ],
)
def test_invalid_constraints(changes: dict[str, object], needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        device(**changes)


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"dma_bits": 8}, "memory.dma_bits"),
        ({"dma_bits": 65}, "memory.dma_bits"),
        ({"location": "vram card0"}, "memory.location"),
        ({"cpu_access": "x"}, "memory.cpu_access"),
        ({"coherent": 1}, "memory.coherent"),
        ({"max_segments": 0}, "memory.max_segments"),
    ],
)
def test_invalid_memory(changes: dict[str, object], needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        MemoryRules(**changes)  # type: ignore[arg-type]


def test_cpu_access_union() -> None:
    assert cpu_access_union() == "none"
    assert cpu_access_union("none", "r") == "r"
    assert cpu_access_union("r", "w") == "rw"
    assert cpu_access_union("w", "none", "w") == "w"


def test_modifier_text_names_or_hex() -> None:
    assert modifier_text(0) == "LINEAR"
    assert modifier_text(Y_TILED) == "I915_Y_TILED"
    for value in (0x0D00000000000001, (1 << 64) - 1, 0x0800000000000041):
        assert parse_modifier(modifier_text(value)).value == value


# --- JSON ----------------------------------------------------------------------------------------


def test_json_round_trip_of_everything() -> None:
    c = Constraints(
        device="gpu",
        usage="texture",
        pairs=((NV12, Y_TILED), (XR24, 0), (NV12, 0x0D00000000000001)),
        layout=LayoutRules(
            pitch_align=64,
            plane_pitch_align=(1, 128),
            height_align=16,
            offset_align=4096,
            size_align=4096,
            extra_rows=2,
            min_size=1 << 20,
        ),
        buffers="per-plane",
        min_pitch=64,
        max_pitch=32768,
        max_width=8192,
        max_height=4096,
        memory=MemoryRules(
            max_segments=8, dma_bits=40, location="vram:card0", coherent=True, cpu_access="rw"
        ),
        access="read",
        description="a texture",
    )
    data = c.to_json()
    assert data["pairs"] == [
        ["NV12", "I915_Y_TILED"],
        ["XRGB8888", "LINEAR"],
        ["NV12", "VENDOR_0x0d_MOD(0x1)"],
    ]
    text = json.dumps(data)
    assert Constraints.from_json(json.loads(text)) == c
    assert MemoryRules.from_json(c.memory.to_json()) == c.memory


def test_from_json_accepts_numbers_and_fourcc_names() -> None:
    data = device().to_json()
    data["pairs"] = [["XR24", "0x0100000000000002"], [NV12, 0]]
    c = Constraints.from_json(data)
    assert c.pairs == ((XR24, Y_TILED), (NV12, 0))


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda d: d.update(colour="red"), "unknown key colour"),
        (lambda d: d["memory"].update(contigous=True), "unknown key memory.contigous"),
        (lambda d: d.update(pairs=[["NV13", "LINEAR"]]), "unknown pixel format 'NV13'"),
        (lambda d: d.update(pairs=[["NV12", "BOGUS"]]), "unknown modifier 'BOGUS'"),
        (lambda d: d.update(max_width="4096"), "max_width must be an integer"),
        (lambda d: d.pop("device"), "missing key device"),
        (lambda d: d["layout"].update(pitch_align=0), "layout.pitch_align must be from 1"),
    ],
)
def test_from_json_errors(mutate: object, needle: str) -> None:
    data = json.loads(json.dumps(device().to_json()))
    mutate(data)  # type: ignore[operator]
    with pytest.raises(UsageError, match=needle):
        Constraints.from_json(data)


# --- device files --------------------------------------------------------------------------------


def test_device_file_fields() -> None:
    profile = loads_device(GOOD, "rk3399-vop.toml")
    assert profile.device == "rk3399-vop"
    assert profile.sources == ("linux: drivers/gpu/drm/rockchip/rockchip_drm_vop.c",)
    assert list(profile.usages) == ["primary", "cursor"]
    primary = profile.usages["primary"]
    afbc = parse_modifier("ARM_AFBC(16x16,SPARSE)").value
    # Explicit pairs first, then formats x modifiers in order, duplicates dropped.
    assert primary.pairs == (
        (NV12, afbc),
        (XR24, 0),
        (fourcc_code("AR24"), 0),
        (NV12, 0),
    )
    assert primary.layout == LayoutRules(
        pitch_align=64,
        plane_pitch_align=(64, 128),
        height_align=2,
        offset_align=4096,
        size_align=4096,
        extra_rows=4,
        min_size=8192,
    )
    assert (primary.buffers, primary.min_pitch, primary.max_pitch) == ("single", 64, 65535)
    assert (primary.max_width, primary.max_height, primary.access) == (4096, 2160, "read")
    assert primary.memory == MemoryRules(contiguous=True, dma_bits=32)
    cursor = profile.usages["cursor"]
    assert cursor.pairs == ((fourcc_code("AR24"), 0),)
    assert cursor == Constraints("rk3399-vop", "cursor", ((fourcc_code("AR24"), 0),))


def test_modifiers_multiply_formats_format_major() -> None:
    text = (
        'device = "g"\n[usages.t]\nformats = ["XR24", "NV12"]\n'
        'modifiers = ["I915_Y_TILED", "LINEAR"]\n'
    )
    assert loads_device(text).usages["t"].pairs == (
        (XR24, Y_TILED),
        (XR24, 0),
        (NV12, Y_TILED),
        (NV12, 0),
    )


def _error(text: str) -> str:
    with pytest.raises(UsageError) as info:
        loads_device(text, "rk3399-vop.toml")
    return str(info.value)


def test_unknown_key_names_file_line_and_path() -> None:
    text = GOOD.replace("contiguous = true", "contigous = true")
    line = text.splitlines().index("contigous = true") + 1
    assert _error(text) == (
        f"rk3399-vop.toml:{line}: unknown key usages.primary.memory.contigous"
        " (did you mean contiguous?)"
    )


@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        ('access = "read"', 'acess = "read"', "unknown key usages.primary.acess"),
        ("[usages.primary.memory]", "[usages.primary.memroy]", "unknown key usages.primary.memroy"),
        ('device = "rk3399-vop"', 'device = "rk3399-vop"\ncolour = 1', "unknown key colour"),
        ("max_height = 2160", "max_hieght = 2160", "unknown key usages.primary.layout.max_hieght"),
    ],
)
def test_unknown_keys(old: str, new: str, needle: str) -> None:
    text = GOOD.replace(old, new)
    key_line = new.splitlines()[-1]
    line = text.splitlines().index(key_line) + 1
    assert _error(text).startswith(f"rk3399-vop.toml:{line}: {needle}")


@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        ("dma_bits = 32", 'dma_bits = "32"', "usages.primary.memory.dma_bits must be an integer"),
        ("contiguous = true", "contiguous = 1", "usages.primary.memory.contiguous must be true or"),
        ("pitch_align = 64", "pitch_align = true", "usages.primary.layout.pitch_align must be an"),
        (
            'formats = ["XR24", "AR24", "NV12"]',
            'formats = "XR24"',
            "usages.primary.formats must be",
        ),
        ('access = "read"', "access = 1", "usages.primary.access must be one of"),
        ('buffers = "single"', 'buffers = "one"', "usages.primary.layout.buffers must be one of"),
        ("pitch_align = 64", "pitch_align = 0", "usages.primary.layout.pitch_align must be from 1"),
        ("dma_bits = 32", "dma_bits = 65", "usages.primary.memory.dma_bits must be from 12 to 64"),
        ('cpu_access = "none"', 'cpu_access = "all"', "usages.primary.memory.cpu_access must be"),
        ('location = "system"', 'location = "v ram"', "usages.primary.memory.location must be"),
        ("max_pitch = 65535", "max_pitch = 32", "max_pitch 32 is below min_pitch 64"),
        ("dma_bits = 32", "dma_bits = 32\nmax_segments = 2", "max_segments 2 contradicts"),
    ],
)
def test_wrong_types_and_values(old: str, new: str, needle: str) -> None:
    text = GOOD.replace(old, new)
    line = text.splitlines().index(new.splitlines()[-1]) + 1
    message = _error(text)
    assert message.startswith(f"rk3399-vop.toml:{line}: "), message
    assert needle in message


def test_unknown_format_and_modifier() -> None:
    text = GOOD.replace('"AR24", "NV12"]', '"AR42", "NV12"]')
    message = _error(text)
    assert message.startswith("rk3399-vop.toml:9: usages.primary.formats[1]: unknown pixel format")
    message = _error(GOOD.replace('modifiers = ["LINEAR"]', 'modifiers = ["I915_Z_TILED"]'))
    assert message.startswith("rk3399-vop.toml:10: usages.primary.modifiers[0]: unknown modifier")
    message = _error(GOOD.replace('["XR24", "LINEAR"]', '["XR24", "FOO"]'))
    assert "usages.primary.pairs[1]: unknown modifier 'FOO'" in message
    message = _error(GOOD.replace('["XR24", "LINEAR"]', '["XR24"]'))
    assert "usages.primary.pairs[1] must be [format, modifier]" in message


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[usages.a]\nformats = ['NV12']\n", "missing key device"),
        ('device = "x"\n', "declares no [usages.NAME] table"),
        ('device = "x"\n[usages.a]\ndescription = "nothing"\n', "usages.a needs formats or pairs"),
        ('device = "x"\n[usages.a]\nmodifiers = ["LINEAR"]\n', "combines with formats"),
        ('device = "x"\n[usages.a]\nformats = ["NV12"]\nmodifiers = []\n', "is empty"),
        ('device = "a b"\n[usages.a]\nformats = ["NV12"]\n', "without spaces"),
        ('device = "x"\nusages = [', "invalid TOML"),
        ('device = "x"\nusages = 3\n', "usages must be a table"),
    ],
)
def test_structural_errors(text: str, needle: str) -> None:
    assert needle in _error(text)


def test_misspelt_usages_table_is_an_unknown_key() -> None:
    text = 'device = "x"\n\n[usage.a]\nformats = ["NV12"]\n'
    assert _error(text) == "rk3399-vop.toml:3: unknown key usage (did you mean usages?)"


def test_inline_tables_and_dotted_keys_are_located() -> None:
    text = 'device = "x"\n[usages.a]\nformats = ["NV12"]\nmemory = { dma_bits = 32, colour = 1 }\n'
    assert _error(text) == "rk3399-vop.toml:4: unknown key usages.a.memory.colour"
    text = 'device = "x"\n[usages.a]\nformats = ["NV12"]\n\nlayout.pitch_algn = 4\n'
    assert _error(text).startswith("rk3399-vop.toml:5: unknown key usages.a.layout.pitch_algn")


def test_multiline_arrays_do_not_confuse_the_locator() -> None:
    text = 'device = "x"\n[usages.a]\npairs = [\n  ["NV12", "LINEAR"]\n]\nbogus = 1\n'
    assert _error(text) == "rk3399-vop.toml:6: unknown key usages.a.bogus"


# --- files and specs -----------------------------------------------------------------------------


def test_load_device_file_and_constraints() -> None:
    profile = load_device_file(DATA / "display.toml")
    assert profile.path == str(DATA / "display.toml")
    assert list(profile.usages) == ["primary", "cursor"]
    both = load_constraints(str(DATA / "display.toml"))
    assert [c.label for c in both] == ["display:primary", "display:cursor"]
    (one,) = load_constraints(f"{DATA / 'display.toml'}:cursor")
    assert one == profile.usages["cursor"]


def test_unknown_usage_lists_the_usages() -> None:
    with pytest.raises(UsageError) as info:
        load_constraints(f"{DATA / 'display.toml'}:overlay")
    message = str(info.value)
    assert "has no usage 'overlay'" in message
    assert message.endswith("its usages: primary, cursor")


def test_missing_file_and_bad_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such device file"):
        load_device_file(tmp_path / "absent.toml")
    with pytest.raises(UsageError, match="no such device file"):
        load_constraints(str(tmp_path / "absent.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text('device = "x"\n[usages.a]\nformats = ["NV12"]\nfoo = 1\n')
    with pytest.raises(UsageError, match=rf"^{bad}:4: unknown key usages.a.foo$"):
        load_constraints(str(bad))
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(UsageError, match="not UTF-8"):
        load_device_file(binary)


def test_unknown_profile_name() -> None:
    with pytest.raises(UsageError, match="no device file or bundled profile named 'no-such-dev'"):
        load_constraints("no-such-dev")
    with pytest.raises(UsageError, match="a device is FILE"):
        load_constraints("")

"""Host tests of devalloc.v4l2.m2m's pure parts and of the kernel tests' pixel models.

Example:
    >>> # .venv/bin/pytest -q tests/test_m2m_pure.py

The converter search (:func:`devalloc.v4l2.m2m.find_converter`, :func:`propose_converted_path`,
:func:`plan_misfits`) runs on the bundled profiles and on hand-made constraints; node lookup by
name runs over a fake sysfs tree; the pixel models of tests/kernel/_pixels.py are checked
against straightforward per-pixel versions with hypothesis.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devalloc.constraints import Constraints, MemoryRules, load_constraints
from devalloc.errors import NoDeviceError, UsageError
from devalloc.formats import DRM_FORMAT_MOD_LINEAR, LayoutRules, lookup_format
from devalloc.negotiate import negotiate, propose_copy_path
from devalloc.uapi.videodev2 import V4L2_EVENT_SRC_CH_RESOLUTION, V4l2EventType
from devalloc.v4l2.m2m import (
    Converter,
    ConverterChoice,
    V4l2Event,
    converter_misfits,
    find_converter,
    plan_misfits,
    propose_converted_path,
    v4l2_node_by_name,
    v4l2_nodes_by_name,
)

from .kernel._pixels import (
    codec_frame,
    diff_stats,
    nv12_to_planes,
    rgb24_to_rgb565,
    vim2m_rgb24_to_rgb565,
    yuv420_planes,
)

LINEAR = DRM_FORMAT_MOD_LINEAR
W, H = 640, 480


def pairs(*names: str) -> tuple[tuple[int, int], ...]:
    return tuple((lookup_format(n).fourcc, LINEAR) for n in names)


def vim2m() -> Converter:
    return Converter.from_usages(load_constraints("vim2m"), "input", "output")


def vimc() -> list[Constraints]:
    return load_constraints("vimc:capture")


def vkms() -> list[Constraints]:
    return load_constraints("vkms:primary")


def converter(name: str, accepts: tuple[str, ...], produces: tuple[str, ...]) -> Converter:
    return Converter(
        name,
        Constraints(name, "output", pairs(*accepts), access="read"),
        Constraints(name, "capture", pairs(*produces), access="write"),
    )


# --- Converter ----------------------------------------------------------------------------------


def test_a_converter_from_a_profile_and_its_checks() -> None:
    conv = vim2m()
    assert conv.name == "vim2m"
    assert conv.accepts.label == "vim2m:input"
    assert conv.produces.label == "vim2m:output"
    with pytest.raises(UsageError, match="no usage 'capture'"):
        Converter.from_usages(load_constraints("vim2m"), "input", "capture")
    mixed = load_constraints("vim2m:input") + load_constraints("vkms:primary")
    with pytest.raises(UsageError, match="one device"):
        Converter.from_usages(mixed, "input", "primary")
    writer = Constraints("x", "out", pairs("RGB565"), access="write")
    with pytest.raises(UsageError, match="must read"):
        Converter("x", writer, writer)
    reader = Constraints("x", "in", pairs("RGB565"), access="read")
    with pytest.raises(UsageError, match="must write"):
        Converter("x", reader, reader)


# --- plan_misfits ---------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    fmt=st.sampled_from(["RGB565", "BGR888", "NV12", "YUV420", "XRGB8888"]),
    width=st.integers(2, 1024).map(lambda v: v * 2),
    height=st.integers(2, 512).map(lambda v: v * 2),
    align=st.sampled_from([1, 4, 16, 64, 256]),
)
def test_a_plan_fits_the_constraints_it_was_made_from(
    fmt: str, width: int, height: int, align: int
) -> None:
    c = Constraints("dev", "use", pairs(fmt), LayoutRules(pitch_align=align), access="read")
    plan = negotiate([c], width, height)
    assert plan_misfits(plan, c) == ()


def test_misfits_name_the_format_the_layout_the_size_and_the_memory() -> None:
    base = Constraints("conv", "output", pairs("RGB565"), access="read")
    plan = negotiate([base], 100, 10)
    assert plan.layout.planes[0].pitch == 200
    (reason,) = plan_misfits(plan, replace(base, pairs=pairs("XRGB8888")))
    assert reason.startswith("conv:output:")
    assert "RGB565" in reason
    assert "XRGB8888" in reason
    (reason,) = plan_misfits(plan, replace(base, layout=LayoutRules(pitch_align=64)))
    assert "layout would change" in reason
    assert "[200] -> [256]" in reason
    (reason,) = plan_misfits(plan, replace(base, max_width=64))
    assert "64" in reason
    (reason,) = plan_misfits(plan, replace(base, memory=MemoryRules(contiguous=True)))
    assert "contiguous" in reason
    (reason,) = plan_misfits(plan, replace(base, memory=MemoryRules(dma_bits=32)))
    assert "32-bit" in reason
    # A plan that already promises more than the converter needs fits.
    strict = negotiate([replace(base, memory=MemoryRules(contiguous=True, dma_bits=32))], 100, 10)
    assert plan_misfits(strict, base) == ()


def test_a_constraint_named_like_the_pinned_plan_still_checks() -> None:
    c = Constraints("planned", "buffer", pairs("RGB565"), access="read")
    plan = negotiate([c], 64, 64)
    assert plan_misfits(plan, c) == ()


# --- find_converter and propose_converted_path --------------------------------------------------


def test_the_plain_copy_path_needs_a_converter_that_writes_what_the_display_wants() -> None:
    copy = propose_copy_path(vimc() + vkms(), W, H)
    assert copy is not None
    assert (copy.source.format.name, copy.destination.format.name) == ("BGR888", "XRGB8888")
    assert find_converter(copy.source, copy.destination, [vim2m()]) is None
    (reason,) = converter_misfits(vim2m(), copy.source, copy.destination)
    assert reason.startswith("vim2m:output:")
    assert "XRGB8888" in reason


def test_a_converted_path_plans_each_side_with_the_converters_queue() -> None:
    choice = propose_converted_path(vimc(), vkms(), [vim2m()], W, H)
    assert choice is not None
    assert choice.converter.name == "vim2m"
    assert choice.source.format.name == "BGR888"
    assert choice.destination.format.name == "RGB565"
    assert choice.source.devices == ("vim2m:input", "vimc:capture")
    assert choice.source_devices == ("vimc:capture",)
    assert choice.destination_devices == ("vkms:primary",)
    assert choice.bytes_per_frame == W * H * 3 + W * H * 2
    assert choice.describe() == (
        "{vimc:capture} -> vim2m (BG24 -> RG16, 921600 -> 614400 bytes/frame) -> {vkms:primary}"
    )
    data = json.loads(json.dumps(choice.to_json()))
    assert data["converter"] == "vim2m"
    assert data["destination"]["format"] == "RGB565"
    assert data["rejected"] == []
    again = find_converter(choice.source, choice.destination, [vim2m()])
    assert again is not None
    assert again.converter == choice.converter


def test_no_converter_fits_beyond_vim2ms_size_limit() -> None:
    assert propose_converted_path(vimc(), vkms(), [vim2m()], 800, 600) is None
    copy = propose_copy_path(vimc() + vkms(), 800, 600)
    assert copy is not None
    reasons = converter_misfits(vim2m(), copy.source, copy.destination)
    assert any("640" in r for r in reasons)


def test_the_converter_that_moves_fewer_bytes_wins() -> None:
    source = [Constraints("cam", "capture", pairs("BGR888"), access="write")]
    display = [Constraints("dpy", "primary", pairs("XRGB8888", "RGB565"), access="read")]
    wide = converter("a-wide", ("BGR888",), ("XRGB8888",))
    narrow = converter("b-narrow", ("BGR888",), ("RGB565",))
    useless = converter("c-useless", ("NV12",), ("NV12",))
    choice = propose_converted_path(source, display, [useless, wide, narrow], 320, 240)
    assert choice is not None
    assert choice.converter is narrow
    rejected = dict(choice.rejected)
    assert rejected["a-wide"] == ("moves more bytes per frame",)
    assert any("NV12" in r for r in rejected["c-useless"])
    # find_converter takes the first by name that fits and records those before it.
    found = find_converter(choice.source, choice.destination, [narrow, useless, wide])
    assert found is not None
    assert found.converter is narrow
    assert [name for name, _ in found.rejected] == ["a-wide"]


def test_bad_converter_requests_are_usage_errors() -> None:
    twin = converter("same", ("BGR888",), ("RGB565",))
    with pytest.raises(UsageError, match="distinct names"):
        propose_converted_path(vimc(), vkms(), [twin, twin], W, H)
    with pytest.raises(UsageError, match="source group"):
        propose_converted_path([], vkms(), [twin], W, H)
    copy = propose_copy_path(vimc() + vkms(), 320, 240)
    assert copy is not None
    other = negotiate(vkms(), 640, 480)
    (reason,) = converter_misfits(vim2m(), copy.source, other)
    assert "differ in size" in reason


def test_converter_choice_without_sizes() -> None:
    choice = propose_converted_path(vimc(), vkms(), [vim2m()], W, H)
    assert choice is not None
    assert isinstance(choice, ConverterChoice)
    assert choice.rejected == ()


# --- events and node names --------------------------------------------------------------------


def test_event_names_and_the_resolution_flag() -> None:
    change = V4l2Event(V4l2EventType.SOURCE_CHANGE, 0, 0, V4L2_EVENT_SRC_CH_RESOLUTION, 1.5, 0)
    assert change.name == "SOURCE_CHANGE"
    assert change.resolution_changed
    eos = V4l2Event(V4l2EventType.EOS, 1, 0, 0, 2.0, 0)
    assert eos.name == "EOS"
    assert not eos.resolution_changed
    assert V4l2Event(0x08000001, 0, 0, 0, 0.0, 0).name == "0x08000001"
    assert not V4l2Event(V4l2EventType.SOURCE_CHANGE, 0, 0, 0, 0.0, 0).resolution_changed


def fake_sysfs(tmp_path: Path, names: dict[str, str]) -> Path:
    base = tmp_path / "sys" / "class" / "video4linux"
    for entry, name in names.items():
        (base / entry).mkdir(parents=True)
        (base / entry / "name").write_text(name + "\n")
    return tmp_path / "sys"


def test_nodes_are_found_by_the_names_their_drivers_gave_them(tmp_path: Path) -> None:
    sysfs = fake_sysfs(
        tmp_path,
        {
            "video10": "vim2m",
            "video2": "stateful-encoder",
            "video3": "vim2m",
            "v4l-subdev0": "Sensor A",
            "video4": "RGB/YUV Capture",
        },
    )
    nodes = v4l2_nodes_by_name(str(sysfs), "/dev")
    assert nodes == {
        "stateful-encoder": "/dev/video2",
        "vim2m": "/dev/video3",  # the lowest node keeps a repeated name
        "RGB/YUV Capture": "/dev/video4",
    }
    assert v4l2_node_by_name("RGB/YUV Capture", str(sysfs), "/dev") == "/dev/video4"
    with pytest.raises(NoDeviceError, match="stateful-decoder") as info:
        v4l2_node_by_name("stateful-decoder", str(sysfs), "/dev")
    assert "stateful-encoder, vim2m" in str(info.value)
    assert v4l2_nodes_by_name(str(tmp_path / "nowhere")) == {}


# --- the kernel tests' pixel models -----------------------------------------------------------


def rgb565_reference(r: int, g: int, b: int) -> bytes:
    return (((r << 8) & 0xF800) | ((g << 3) & 0x07E0) | (b >> 3)).to_bytes(2, "little")


@given(st.binary(min_size=0, max_size=240).map(lambda b: b[: len(b) - len(b) % 6]))
def test_rgb565_models_match_per_pixel_conversions(frame: bytes) -> None:
    pixels = [frame[i : i + 3] for i in range(0, len(frame), 3)]
    assert rgb24_to_rgb565(frame) == b"".join(rgb565_reference(*p) for p in pixels)
    vim2m_like = b"".join(rgb565_reference(*pixels[i - i % 2]) for i in range(len(pixels)))
    assert vim2m_rgb24_to_rgb565(frame) == vim2m_like


def test_pixel_models_refuse_partial_pixels() -> None:
    with pytest.raises(ValueError, match="multiple of 3"):
        rgb24_to_rgb565(b"\x00\x01")
    with pytest.raises(ValueError, match="pixel pairs"):
        vim2m_rgb24_to_rgb565(b"\x00\x01\x02")
    with pytest.raises(ValueError, match="equally long"):
        diff_stats(b"\x00", b"")


@given(st.lists(st.tuples(st.integers(0, 255), st.integers(0, 255)), max_size=50))
def test_diff_stats_match_a_direct_computation(values: list[tuple[int, int]]) -> None:
    a = bytes(v for v, _ in values)
    b = bytes(v for _, v in values)
    stats = diff_stats(a, b)
    diffs = [abs(x - y) for x, y in values]
    assert stats.max == max(diffs, default=0)
    assert stats.count == sum(1 for d in diffs if d)
    assert stats.mean == pytest.approx(sum(diffs) / len(diffs) if diffs else 0.0)


@pytest.mark.parametrize("frame", [0, 1, 11])
def test_codec_frames_have_flat_blocks_on_top_and_a_ramp_below(frame: int) -> None:
    width, height = 64, 32
    data = codec_frame(width, height, frame)
    assert len(data) == width * height * 3 // 2
    for plane, w in zip(
        yuv420_planes(data, width, height), (width, width // 2, width // 2), strict=True
    ):
        h = len(plane) // w
        top = plane[: len(plane) // 2]
        assert not set(top) & {127, 128, 129}
        for by in range(0, h // 2, 8):
            for bx in range(0, w, 8):
                block_values = {top[(by + y) * w + bx + x] for y in range(8) for x in range(8)}
                assert len(block_values) == 1
        assert len(set(plane[len(plane) // 2 :])) > 1  # the ramp
    assert codec_frame(width, height, frame) != codec_frame(width, height, frame + 1)
    with pytest.raises(ValueError, match="width % 16"):
        codec_frame(60, 32, 0)


def test_nv12_planes_deinterleave_chroma() -> None:
    y, u, v = bytes(range(16)), bytes([1, 2, 3, 4]), bytes([5, 6, 7, 8])
    nv12 = y + bytes([1, 5, 2, 6, 3, 7, 4, 8])
    assert nv12_to_planes(nv12, 4, 4) == (y, u, v)
    assert yuv420_planes(y + u + v, 4, 4) == (y, u, v)

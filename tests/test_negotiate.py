"""Negotiation: every combining rule, the ranking, the cache policy, every conflict kind, the plan's
JSON and explanation, and copy paths."""

from __future__ import annotations

import json

import pytest

from devalloc.constraints import Constraints, MemoryRules
from devalloc.errors import NoPlanError, UsageError
from devalloc.formats import LayoutRules, fourcc_code, layout, parse_modifier
from devalloc.formats.layout import MAX_ALIGN
from devalloc.negotiate import (
    APPLICATION,
    Conflict,
    CopyPath,
    NegotiationError,
    Plan,
    acceptable_pairs,
    negotiate,
    propose_copy_path,
    try_negotiate,
)

NV12 = fourcc_code("NV12")
XR24 = fourcc_code("XR24")
AR24 = fourcc_code("AR24")
YUYV = fourcc_code("YUYV")
LINEAR = 0
Y_TILED = parse_modifier("I915_Y_TILED").value
NV_BLOCK = parse_modifier("NVIDIA_BLOCK_LINEAR_2D(h=4,k=0xfe,g=2,s=1,c=0)").value
AFBC = parse_modifier("ARM_AFBC(16x16,SPARSE)").value
INVALID = parse_modifier("INVALID").value


def dev(
    label: str,
    *pairs: tuple[int, int] | int,
    layout_rules: LayoutRules | None = None,
    **fields: object,
) -> Constraints:
    """A Constraints from ``"device:usage"``; a bare fourcc means (fourcc, LINEAR)."""
    device, usage = label.split(":")
    listed = tuple(p if isinstance(p, tuple) else (p, LINEAR) for p in pairs) or ((NV12, 0),)
    return Constraints(
        device,
        usage,
        listed,
        layout_rules or LayoutRules(),
        **fields,  # type: ignore[arg-type]
    )


def conflicts(*args: object, **kwargs: object) -> tuple[Conflict, ...]:
    result = try_negotiate(*args, **kwargs)  # type: ignore[arg-type]
    assert not isinstance(result, Plan), f"expected conflicts, got a plan for {result.format.name}"
    return result


def plan_of(*args: object, **kwargs: object) -> Plan:
    result = try_negotiate(*args, **kwargs)  # type: ignore[arg-type]
    assert isinstance(result, Plan), [c.message for c in result]
    return result


def record(plan: Plan, attribute: str) -> tuple[object, tuple[str, ...]]:
    found = plan.find(attribute)
    assert found is not None, attribute
    return found.value, found.forced_by


# --- combining rules -----------------------------------------------------------------------------


def test_pitch_alignment_is_the_lcm() -> None:
    a = dev("gpu:render", XR24, layout_rules=LayoutRules(pitch_align=64))
    b = dev("display:primary", XR24, layout_rules=LayoutRules(pitch_align=48))
    plan = plan_of([a, b], 100, 10)
    assert plan.rules.layout.pitch_align == 192
    assert plan.layout.planes[0].pitch == 576  # 400 bytes rounded up to 192
    assert record(plan, "pitch_align") == (192, ("display:primary", "gpu:render"))
    c = dev("display:primary", XR24, layout_rules=LayoutRules(pitch_align=16))
    assert record(plan_of([a, c], 100, 10), "pitch_align") == (64, ("gpu:render",))


def test_plane_pitch_alignment_per_plane_lcm() -> None:
    a = dev("a:x", NV12, layout_rules=LayoutRules(plane_pitch_align=(1, 128)))
    b = dev("b:x", NV12, layout_rules=LayoutRules(pitch_align=2, plane_pitch_align=(1, 96)))
    plan = plan_of([a, b], 100, 10)
    assert plan.rules.layout.plane_pitch_align == (1, 384)
    assert plan.rules.layout.plane_align(1) == 384
    assert plan.layout.planes[1].pitch % 384 == 0
    assert record(plan, "plane_align[1]") == (384, ("a:x", "b:x"))


def test_height_offset_and_size_alignment_lcm() -> None:
    a = dev("a:x", NV12, layout_rules=LayoutRules(height_align=16, offset_align=4096))
    b = dev("b:x", NV12, layout_rules=LayoutRules(height_align=6, size_align=65536))
    plan = plan_of([a, b], 64, 100)
    rules = plan.rules.layout
    assert (rules.height_align, rules.offset_align, rules.size_align) == (48, 4096, 65536)
    assert plan.layout.planes[0].rows == 144
    assert plan.layout.planes[1].offset % 4096 == 0
    assert plan.layout.size == 65536
    assert record(plan, "height_align") == (48, ("a:x", "b:x"))
    assert record(plan, "size_align") == (65536, ("b:x",))


def test_extra_rows_min_size_and_min_pitch_by_max() -> None:
    a = dev("a:x", XR24, layout_rules=LayoutRules(extra_rows=2, min_size=1 << 16), min_pitch=64)
    b = dev("b:x", XR24, layout_rules=LayoutRules(extra_rows=8), min_pitch=256)
    plan = plan_of([a, b], 16, 16)
    assert (plan.rules.layout.extra_rows, plan.rules.layout.min_size) == (8, 1 << 16)
    assert plan.layout.planes[0].rows == 24
    assert plan.rules.min_pitch == 256
    assert record(plan, "extra_rows") == (8, ("b:x",))
    assert record(plan, "min_size") == (1 << 16, ("a:x",))
    assert record(plan, "min_pitch") == (256, ("b:x",))


def test_min_pitch_raises_the_pitch_alignment() -> None:
    a = dev("a:x", XR24, layout_rules=LayoutRules(pitch_align=16), min_pitch=100)
    plan = plan_of([a], 8, 8)  # 32 bytes per row, raised to the first multiple of 16 >= 100
    assert plan.layout.planes[0].pitch == 112
    assert plan.rules.layout.pitch_align == 112
    note = plan.find("pitch_align")
    assert note is not None
    assert "raised from 16 to 112" in note.note
    assert layout(plan.format, 8, 8, plan.modifier, plan.rules.layout) == plan.layout


def test_limits_by_min() -> None:
    a = dev("a:x", XR24, max_pitch=8192, max_width=4096)
    b = dev("b:x", XR24, max_pitch=16384, max_width=2048, max_height=1080)
    plan = plan_of([a, b], 1920, 1080)
    rules = plan.rules
    assert (rules.max_pitch, rules.max_width, rules.max_height) == (8192, 2048, 1080)
    assert record(plan, "max_width") == (2048, ("b:x",))
    assert record(plan, "max_pitch") == (8192, ("a:x",))


def test_memory_rules_combined() -> None:
    a = dev("a:x", memory=MemoryRules(max_segments=8, dma_bits=40, coherent=True))
    b = dev("b:x", memory=MemoryRules(max_segments=4, dma_bits=32, coherent=True, cpu_access="r"))
    plan = plan_of([a, b], 64, 64, cpu_access="w")
    memory = plan.memory
    assert (memory.contiguous, memory.max_segments, memory.dma_bits) == (False, 4, 32)
    assert (memory.coherent, memory.cpu_access, memory.protected) == (True, "rw", False)
    assert record(plan, "cpu_access") == ("rw", (APPLICATION, "b:x"))
    c = dev("c:x", memory=MemoryRules(contiguous=True))
    memory = plan_of([a, b, c], 64, 64).memory
    assert (memory.contiguous, memory.max_segments, memory.coherent) == (True, 1, False)
    assert record(plan_of([a, c], 64, 64), "contiguous") == (True, ("c:x",))


def test_location_any_defers_to_the_others() -> None:
    anywhere = dev("a:x", memory=MemoryRules(location="any"))
    vram = dev("b:x", memory=MemoryRules(location="vram:card0"))
    assert plan_of([anywhere, vram], 64, 64).memory.location == "vram:card0"
    assert plan_of([anywhere], 64, 64).memory.location == "any"
    assert plan_of([anywhere, dev("c:x")], 64, 64).memory.location == "system"


def test_protected_without_cpu_access() -> None:
    secure = dev("dec:out", memory=MemoryRules(protected=True))
    plan = plan_of([secure, dev("dpy:scan")], 64, 64)
    assert plan.memory.protected
    assert plan.heap_hint == "a protected (secure) heap"
    assert plan.cache.cpu_mapping == "none"


def test_buffers_per_plane_and_single() -> None:
    per_plane = dev("dec:out", NV12, buffers="per-plane")
    plan = plan_of([per_plane, dev("gpu:tex", NV12)], 64, 64)
    assert plan.rules.buffers == "per-plane"
    assert [p.buffer for p in plan.layout.planes] == [0, 1]
    assert len(plan.layout.buffer_sizes) == 2
    single = plan_of([dev("a:x", NV12), dev("b:x", NV12)], 64, 64)
    assert single.rules.buffers == "single"
    assert [p.buffer for p in single.layout.planes] == [0, 0]


def test_single_and_per_plane_agree_on_a_single_plane_format() -> None:
    a = dev("a:x", NV12, YUYV, buffers="single")
    b = dev("b:x", NV12, YUYV, buffers="per-plane")
    plan = plan_of([a, b], 64, 64)
    assert plan.format.name == "YUYV"  # NV12 ranks first but cannot be both
    assert "one buffer either way" in "\n".join(plan.explain())


# --- ranking -------------------------------------------------------------------------------------


def test_ranking_sum_of_positions() -> None:
    a = dev("a:x", XR24, NV12, YUYV)
    b = dev("b:x", NV12, YUYV, XR24)
    assert plan_of([a, b], 64, 64).format.name == "NV12"  # sums: XR24 2, NV12 1, YUYV 3


def test_ranking_worst_position_breaks_ties() -> None:
    a = dev("a:x", XR24, NV12, YUYV)
    b = dev("b:x", YUYV, NV12, XR24)
    assert plan_of([a, b], 64, 64).format.name == "NV12"  # sums all 2; worst: 2, 1, 2


def test_ranking_fourcc_then_modifier_break_ties() -> None:
    a = dev("a:x", XR24, NV12)
    b = dev("b:x", NV12, XR24)
    assert NV12 < XR24
    assert plan_of([a, b], 64, 64).format.name == "NV12"
    c = dev("c:x", (NV12, Y_TILED), (NV12, LINEAR))
    d = dev("d:x", (NV12, LINEAR), (NV12, Y_TILED))
    assert plan_of([c, d], 64, 64).modifier.value == LINEAR


def test_application_order_comes_first() -> None:
    a = dev("a:x", NV12, YUYV, XR24)
    b = dev("b:x", NV12, YUYV, XR24)
    assert plan_of([a, b], 64, 64, ["XR24", "NV12"]).format.name == "XRGB8888"
    plan = plan_of([a, b], 64, 64, [YUYV])
    assert plan.format.name == "YUYV"
    assert record(plan, "pair")[1] == (APPLICATION,)


def test_ranking_does_not_depend_on_device_order() -> None:
    a = dev("a:x", XR24, NV12, layout_rules=LayoutRules(pitch_align=64))
    b = dev("b:x", NV12, XR24, memory=MemoryRules(contiguous=True))
    c = dev("c:x", YUYV, NV12, XR24, max_width=4096)
    first = plan_of([a, b, c], 1920, 1080)
    assert plan_of([c, a, b], 1920, 1080) == first
    assert plan_of([b, c, a], 1920, 1080) == first


def test_modifier_must_be_listed_by_every_device() -> None:
    a = dev("a:x", (NV12, Y_TILED), (NV12, LINEAR))
    b = dev("b:x", (NV12, Y_TILED))
    assert plan_of([a, b], 64, 64).modifier.value == Y_TILED
    assert acceptable_pairs([a, b], 64, 64) == [(NV12, Y_TILED)]


def test_linear_is_not_implied_and_invalid_matches_only_invalid() -> None:
    tiled = dev("a:x", (NV12, Y_TILED))
    assert {c.attribute for c in conflicts([tiled, dev("b:x", NV12)], 64, 64)} == {"modifier"}
    implicit = dev("c:x", (NV12, INVALID))
    assert {c.attribute for c in conflicts([implicit, tiled], 64, 64)} == {"modifier"}
    plan = plan_of([implicit, dev("d:x", (NV12, INVALID))], 64, 64)
    assert plan.modifier.value == INVALID
    assert plan.layout.opaque
    assert plan.size is None


def test_best_pair_over_a_limit_falls_back_to_the_next() -> None:
    a = dev("a:x", XR24, NV12)
    b = dev("b:x", XR24, NV12, max_pitch=2000)
    plan = plan_of([a, b], 1920, 1080)  # XR24 needs 7680 bytes per row
    assert plan.format.name == "NV12"
    assert acceptable_pairs([a, b], 1920, 1080) == [(NV12, LINEAR)]


# --- cache policy --------------------------------------------------------------------------------


def test_cache_no_cpu_access() -> None:
    cache = plan_of([dev("a:x")], 64, 64).cache
    assert (cache.cpu_mapping, cache.sync) == ("none", "not-needed")


def test_cache_coherent_devices() -> None:
    coherent = dev("a:x", memory=MemoryRules(coherent=True))
    cache = plan_of([coherent], 64, 64, cpu_access="rw").cache
    assert (cache.cpu_mapping, cache.sync) == ("cached", "recommended")


def test_cache_non_coherent_device_needs_sync() -> None:
    coherent = dev("a:x", memory=MemoryRules(coherent=True))
    cache = plan_of([coherent, dev("b:x")], 64, 64, cpu_access="r").cache
    assert (cache.cpu_mapping, cache.sync) == ("cached", "required")
    assert "b:x does not snoop" in cache.reason
    assert "DMA_BUF_IOCTL_SYNC" in cache.reason


def test_cache_write_combined_only_for_write_only_cpu() -> None:
    cache = plan_of([dev("a:x")], 64, 64, cpu_access="w", prefer_uncached=True).cache
    assert (cache.cpu_mapping, cache.sync) == ("write-combined", "required")
    assert "slow" in cache.reason
    cache = plan_of([dev("a:x")], 64, 64, cpu_access="rw", prefer_uncached=True).cache
    assert (cache.cpu_mapping, cache.sync) == ("cached", "required")
    assert "write-combined was not chosen" in cache.reason
    reader = dev("b:x", memory=MemoryRules(cpu_access="r"))
    cache = plan_of([reader], 64, 64, cpu_access="w", prefer_uncached=True).cache
    assert cache.cpu_mapping == "cached"  # a device's own CPU access counts too


# --- conflicts -----------------------------------------------------------------------------------


def test_no_common_format() -> None:
    (found,) = conflicts([dev("camera:capture", NV12, YUYV), dev("gpu:texture", XR24)], 64, 64)
    assert found.attribute == "format"
    assert found.devices == ("camera:capture", "gpu:texture")
    assert found.values == ("{NV12, YUYV}", "{XRGB8888}")
    assert found.message == (
        "no format every device accepts: camera:capture offers {NV12, YUYV},"
        " gpu:texture offers {XRGB8888}"
    )
    assert "camera:capture's NV12 to gpu:texture's XRGB8888" in found.suggestion


def test_application_formats_that_no_device_shares() -> None:
    (found,) = conflicts([dev("a:x", NV12, XR24), dev("b:x", NV12)], 64, 64, ["XR24"])
    assert found.attribute == "format"
    assert found.devices == (APPLICATION, "a:x", "b:x")
    assert found.values[0] == "{XRGB8888}"
    assert "the formats every device accepts are {NV12}" in found.message


def test_no_common_modifier_message() -> None:
    camera = dev("camera:capture", (NV12, LINEAR))
    gpu = dev("gpu:texture", (NV12, NV_BLOCK))
    (found,) = conflicts([gpu, camera], 64, 64)
    assert found.attribute == "modifier"
    assert found.message == (
        "no common modifier for NV12: camera:capture offers {LINEAR}, gpu:texture offers"
        " {NVIDIA_BLOCK_LINEAR_2D(h=4,k=0xfe,g=2,s=1,c=0)}"
    )
    assert found.values == ("{LINEAR}", "{NVIDIA_BLOCK_LINEAR_2D(h=4,k=0xfe,g=2,s=1,c=0)}")


def test_one_modifier_conflict_per_common_format() -> None:
    a = dev("a:x", (NV12, LINEAR), (XR24, Y_TILED))
    b = dev("b:x", (XR24, LINEAR), (NV12, Y_TILED))
    found = conflicts([a, b], 64, 64)
    assert [c.attribute for c in found] == ["modifier", "modifier"]
    assert [c.message.split(":")[0] for c in found] == [
        "no common modifier for NV12",
        "no common modifier for XRGB8888",
    ]


def test_location_conflict() -> None:
    system = dev("camera:capture", memory=MemoryRules(contiguous=True, dma_bits=32))
    vram = dev("dgpu:scanout", memory=MemoryRules(location="vram:card0"))
    (found,) = conflicts([vram, system], 64, 64)
    assert found.attribute == "location"
    assert found.devices == ("camera:capture", "dgpu:scanout")
    assert found.values == ("system", "vram:card0")
    assert "a CMA heap below 4 GiB" in found.suggestion


def test_buffers_conflict_only_for_multi_planar_formats() -> None:
    a = dev("dec:out", NV12, buffers="per-plane")
    b = dev("dpy:scan", NV12, buffers="single")
    (found,) = conflicts([a, b], 64, 64)
    assert found.attribute == "buffers"
    assert found.devices == ("dec:out", "dpy:scan")
    assert found.values == ("per-plane", "single")
    assert "{NV12} have several planes" in found.message


def test_protected_against_cpu_access() -> None:
    secure = dev("dec:out", memory=MemoryRules(protected=True))
    (found,) = conflicts([secure, dev("dpy:scan")], 64, 64, cpu_access="r")
    assert found.attribute == "protected"
    assert found.devices == (APPLICATION, "dec:out")
    assert found.values == ("cpu_access r", "protected")
    reader = dev("npu:in", memory=MemoryRules(cpu_access="r"))
    (found,) = conflicts([secure, reader], 64, 64)
    assert found.devices == ("dec:out", "npu:in")
    assert found.values == ("protected", "cpu_access r")


def test_width_and_height_above_a_maximum() -> None:
    small = dev("dpy:cursor", max_width=256, max_height=128)
    found = conflicts([small, dev("gpu:x")], 300, 200)
    assert [c.attribute for c in found] == ["width", "height"]
    width, height = found
    assert width.devices == (APPLICATION, "dpy:cursor")
    assert width.values == ("width 300", "max_width 256")
    assert "at most 256 pixels of width" in width.suggestion
    assert height.values == ("height 200", "max_height 128")
    assert [c.attribute for c in conflicts([small], 256, 200)] == ["height"]


def test_pitch_above_the_maximum() -> None:
    a = dev("dpy:primary", XR24, max_pitch=4096)
    (found,) = conflicts([a, dev("gpu:x", XR24)], 1920, 1080)
    assert found.attribute == "pitch"
    assert found.devices == ("dpy:primary",)
    assert found.values == ("max_pitch 4096",)
    assert "XRGB8888 LINEAR at 1920x1080 needs 7680 bytes per row" in found.message
    assert found.suggestion.startswith("at most 1024 pixels wide fits in XRGB8888 LINEAR")


def test_pitch_range_contradiction() -> None:
    a = dev("a:x", XR24, min_pitch=8192)
    b = dev("b:x", XR24, max_pitch=4096)
    (found,) = conflicts([a, b], 64, 64)
    assert found.attribute == "pitch"
    assert found.values == ("min_pitch 8192", "max_pitch 4096")


def test_min_pitch_that_the_alignment_pushes_past_the_max() -> None:
    a = dev("a:x", XR24, layout_rules=LayoutRules(pitch_align=64), min_pitch=100)
    b = dev("b:x", XR24, max_pitch=120)
    (found,) = conflicts([a, b], 8, 8)  # 100 rounded up to 64 is 128 > 120
    assert found.attribute == "pitch"
    assert set(found.devices) == {"a:x", "b:x"}


def test_alignment_overflow() -> None:
    a = dev("a:x", layout_rules=LayoutRules(pitch_align=MAX_ALIGN))
    b = dev("b:x", layout_rules=LayoutRules(pitch_align=3))
    (found,) = conflicts([a, b], 64, 64)
    assert found.attribute == "alignment"
    assert found.devices == ("a:x", "b:x")


def test_layout_refused() -> None:
    sand = parse_modifier("BROADCOM_SAND128_COL_HEIGHT(96)").value
    (found,) = conflicts([dev("isp:x", (NV12, sand))], 64, 100)
    assert found.attribute == "layout"
    assert "cannot hold 100 luma and 50 chroma rows" in found.message


def test_every_conflict_is_reported_in_order() -> None:
    a = dev("a:x", NV12, max_width=100, memory=MemoryRules(location="vram:card0"))
    b = dev("b:x", XR24, memory=MemoryRules(protected=True))
    found = conflicts([a, b], 200, 64, cpu_access="w")
    assert [c.attribute for c in found] == ["format", "width", "location", "protected"]


def test_conflicts_name_only_real_attributes() -> None:
    # Everything below is combinable; only the width is over the limit.
    a = dev(
        "a:x",
        NV12,
        buffers="single",
        max_width=1280,
        memory=MemoryRules(contiguous=True, location="any"),
    )
    b = dev("b:x", NV12, YUYV, max_pitch=4096, memory=MemoryRules(coherent=True, dma_bits=32))
    assert [c.attribute for c in conflicts([a, b], 1920, 1080, cpu_access="rw")] == ["width"]
    assert isinstance(try_negotiate([a, b], 1280, 1080, cpu_access="rw"), Plan)


def test_conflict_json_round_trip() -> None:
    for found in conflicts([dev("a:x", NV12, max_width=8), dev("b:x", XR24)], 64, 64):
        data = found.to_json()
        assert set(data) == {"attribute", "devices", "values", "message", "suggestion"}
        assert Conflict.from_json(json.loads(json.dumps(data))) == found


# --- negotiate() and its errors ------------------------------------------------------------------


def test_negotiate_raises_no_plan_error_with_conflicts() -> None:
    with pytest.raises(NoPlanError) as info:
        negotiate([dev("a:x", NV12), dev("b:x", XR24, access="read")], 64, 64)
    error = info.value
    assert isinstance(error, NegotiationError)
    assert [c.attribute for c in error.conflicts] == ["format"]
    assert "no buffer fits a:x, b:x at 64x64: no format every device accepts" in str(error)


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: negotiate([], 64, 64), "at least one device"),
        (lambda: negotiate([dev("a:x"), dev("a:x")], 64, 64), "a:x is given twice"),
        (lambda: negotiate([dev("a:x")], 0, 64), "the width is from 1"),
        (lambda: negotiate([dev("a:x")], 64, 1 << 21), "the height is from 1"),
        (lambda: negotiate([dev("a:x")], 64.0, 64), "the width is an integer"),  # type: ignore[arg-type]
        (lambda: negotiate([dev("a:x")], 64, 64, ["NV13"]), "unknown pixel format 'NV13'"),
        (lambda: negotiate([dev("a:x")], 64, 64, []), "formats is empty"),
        (lambda: negotiate([dev("a:x")], 64, 64, "NV12"), "not the text"),
        (lambda: negotiate([dev("a:x")], 64, 64, cpu_access="x"), "cpu_access is one of"),  # type: ignore[arg-type]
        (lambda: negotiate([object()], 64, 64), "takes Constraints"),  # type: ignore[list-item]
        (lambda: negotiate(dev("a:x"), 64, 64), "not a single one"),  # type: ignore[arg-type]
    ],
)
def test_bad_requests(call: object, needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        call()  # type: ignore[operator]


# --- the plan: JSON and explanation --------------------------------------------------------------


def _pipeline() -> list[Constraints]:
    camera = dev(
        "camera:capture",
        NV12,
        YUYV,
        layout_rules=LayoutRules(pitch_align=16, height_align=16),
        access="write",
    )
    gpu = dev(
        "gpu:render",
        (NV12, Y_TILED),
        NV12,
        XR24,
        layout_rules=LayoutRules(pitch_align=64, size_align=4096),
        memory=MemoryRules(coherent=True),
    )
    display = dev(
        "display:primary",
        XR24,
        NV12,
        layout_rules=LayoutRules(pitch_align=16),
        buffers="single",
        max_width=4096,
        memory=MemoryRules(contiguous=True, dma_bits=32),
        access="read",
    )
    return [camera, gpu, display]


def test_plan_json_shape() -> None:
    plan = plan_of(_pipeline(), 1920, 1080, cpu_access="w")
    data = json.loads(json.dumps(plan.to_json()))
    assert (data["format"], data["modifier"]) == ("NV12", "LINEAR")
    assert data["size"] == {"width": 1920, "height": 1080, "bytes": 3133440}
    assert data["planes"] == [
        {"offset": 0, "pitch": 1920, "size": 1920 * 1088, "buffer": 0},
        {"offset": 1920 * 1088, "pitch": 1920, "size": 1920 * 544, "buffer": 0},
    ]
    assert data["memory"] == {
        "contiguous": True,
        "max_segments": 1,
        "dma_bits": 32,
        "protected": False,
        "location": "system",
        "coherent": False,
        "cpu_access": "w",
    }
    assert data["cache"]["cpu_mapping"] == "cached"
    assert data["cache"]["sync"] == "required"
    assert data["devices"] == ["camera:capture", "display:primary", "gpu:render"]
    assert data["heap_hint"] == "a CMA heap below 4 GiB (contiguous, 32-bit DMA)"
    # The same planes as `devalloc layout --json` with the combined rules.
    same = layout("NV12", 1920, 1080, rules=plan.rules.layout).to_json()
    assert data["planes"] == same["planes"]


def test_plan_json_round_trip_and_tamper_check() -> None:
    plan = plan_of(_pipeline(), 1920, 1080, cpu_access="w")
    data = json.loads(json.dumps(plan.to_json()))
    assert Plan.from_json(data) == plan
    data["planes"][1]["pitch"] = 2048
    with pytest.raises(UsageError, match="do not match the layout"):
        Plan.from_json(data)
    data = json.loads(json.dumps(plan.to_json()))
    data["colour"] = 1
    with pytest.raises(UsageError, match=r"unknown key plan\.colour"):
        Plan.from_json(data)


def test_opaque_layout_stays_honest() -> None:
    a = dev("gpu:x", (XR24, AFBC), max_pitch=64)
    b = dev("dpy:y", (XR24, AFBC))
    plan = plan_of([a, b], 1920, 1080)  # a max_pitch cannot be checked on a vendor layout
    assert plan.layout.opaque
    assert plan.size is None
    data = plan.to_json()
    assert data["size"] == {"width": 1920, "height": 1080, "bytes": None}
    assert data["planes"] == []
    assert Plan.from_json(json.loads(json.dumps(data))) == plan
    assert any("decided by the exporter" in line for line in plan.explain())


def test_explain_lines() -> None:
    gpu = dev("gpu:render", XR24, layout_rules=LayoutRules(pitch_align=64))
    display = dev(
        "display:primary",
        XR24,
        layout_rules=LayoutRules(pitch_align=16),
        memory=MemoryRules(contiguous=True),
    )
    lines = plan_of([gpu, display], 480, 270).explain()
    assert "plane 0 pitch 1920 aligned to 64 (lcm of display:primary 16, gpu:render 64)" in lines
    assert "contiguous: required by display:primary" in lines
    assert lines[0].startswith("XRGB8888 LINEAR: the best of 1 common pair(s)")
    assert lines[-1] == "heap: a CMA heap (contiguous, 64-bit DMA)"
    lines = plan_of(_pipeline(), 1920, 1080, cpu_access="w").explain()
    assert "height 1080 aligned to 16 (lcm of camera:capture 16) -> 1088 rows" in lines
    assert "DMA reach 32 bits: the memory must lie below 2^32: display:primary" in lines
    assert "CPU access w: application w" in lines


# --- copy paths ----------------------------------------------------------------------------------


def _camera_gpu_display() -> list[Constraints]:
    return [
        dev("camera:capture", NV12, access="write"),
        dev("gpu:texture", XR24, access="read"),
        dev("display:primary", XR24, access="read"),
    ]


def test_copy_path_description_and_bytes() -> None:
    path = propose_copy_path(_camera_gpu_display(), 1920, 1080)
    assert path is not None
    assert path.describe() == (
        "{camera:capture} -> copy (NV12 -> XR24, 3110400 -> 8294400 bytes/frame) ->"
        " {display:primary, gpu:texture}"
    )
    assert (path.bytes_read, path.bytes_written) == (3110400, 8294400)
    assert path.source_devices == ("camera:capture",)
    assert path.destination_devices == ("display:primary", "gpu:texture")
    data = json.loads(json.dumps(path.to_json()))
    assert data["description"] == path.describe()
    assert CopyPath.from_json(data) == path


def test_negotiate_error_carries_the_copy_path() -> None:
    with pytest.raises(NegotiationError) as info:
        negotiate(_camera_gpu_display(), 1920, 1080)
    assert info.value.copy_path == propose_copy_path(_camera_gpu_display(), 1920, 1080)
    assert info.value.copy_note == ""
    assert "copy path: {camera:capture} -> copy (NV12 -> XR24" in str(info.value)


def test_copy_path_prefers_the_largest_zero_copy_group() -> None:
    devices = [
        dev("cam:cap", NV12, XR24, access="write"),
        dev("enc:in", NV12, access="read"),
        dev("gpu:tex", XR24, access="read"),
        dev("dpy:scan", XR24, access="read"),
    ]
    path = propose_copy_path(devices, 640, 480)
    assert path is not None
    assert path.source_devices == ("cam:cap", "dpy:scan", "gpu:tex")
    assert path.destination_devices == ("enc:in",)


def test_copy_path_prefers_fewer_bytes_among_equal_groups() -> None:
    camera = dev("cam:cap", NV12, access="write")
    vram = dev(
        "a:scan",
        NV12,
        layout_rules=LayoutRules(pitch_align=256),
        access="read",
        memory=MemoryRules(location="vram:card0"),
    )
    tall = dev(
        "z:tex",
        NV12,
        layout_rules=LayoutRules(height_align=64),
        access="read",
        memory=MemoryRules(location="any"),
    )
    path = propose_copy_path([camera, vram, tall], 1920, 1080)
    assert path is not None
    # {cam, z} -> {a}: 3133440 + 3317760; {cam} -> {a, z}: 3110400 + 3342336 (more bytes,
    # though its source labels sort first).
    assert path.source_devices == ("cam:cap", "z:tex")
    assert path.destination_devices == ("a:scan",)
    assert path.bytes_per_frame == 3133440 + 3317760
    other = plan_of([vram, tall], 1920, 1080)
    assert other.size is not None
    assert 3110400 + other.size > 3133440 + 3317760


def test_copy_goes_from_the_writers() -> None:
    reader = dev("dpy:scan", XR24, access="read")
    writer = dev("cam:cap", NV12, access="write")
    path = propose_copy_path([reader, writer], 64, 64)
    assert path is not None
    assert path.source_devices == ("cam:cap",)
    assert propose_copy_path([reader, dev("enc:in", NV12, access="read")], 64, 64) is None
    only_writers = [writer, dev("isp:out", XR24, access="write")]
    assert propose_copy_path(only_writers, 64, 64) is None


def test_needs_more_than_one_copy_step() -> None:
    devices = [
        dev("cam:cap", NV12, access="write"),
        dev("gpu:tex", XR24, access="read"),
        dev("enc:in", YUYV, access="read"),
    ]
    assert propose_copy_path(devices, 64, 64) is None
    with pytest.raises(NegotiationError) as info:
        negotiate(devices, 64, 64)
    assert info.value.copy_path is None
    assert info.value.copy_note == "needs more than one copy step"
    assert str(info.value).endswith("; needs more than one copy step")
    with pytest.raises(NegotiationError) as info:
        negotiate([dev("a:x", max_width=8)], 64, 64)
    assert "single device" in info.value.copy_note


def test_min_pitch_on_a_tiled_modifier_steps_in_tile_widths() -> None:
    """Found by hypothesis: min_pitch 300 on Y-tiled NV12 raised the alignment to 300, whose lcm
    with the 128-byte tile (9600) broke max_pitch 4096, while a device asking for 16-byte
    alignment made it 304 -> 2432 and fit: adding a device enlarged the accepted pairs."""
    from devalloc.negotiate import acceptable_pairs

    y_tiled = (fourcc_code("NV12"), 0x0100000000000002)
    alone = Constraints("dev0", "a", (y_tiled,), min_pitch=300, max_pitch=4096, access="read")
    stricter = Constraints("dev9", "a", (y_tiled,), LayoutRules(pitch_align=16), access="read")
    assert list(acceptable_pairs([alone], 1, 1)) == [y_tiled]
    assert list(acceptable_pairs([alone, stricter], 1, 1)) == [y_tiled]
    plan = negotiate([alone], 1, 1)
    assert [p.pitch for p in plan.layout.planes] == [384, 384]


# ---------------------------------------------------------------------------------------------
# The package's modules import each other one way.


def _package_imports() -> dict[str, set[str]]:
    """negotiate/*.py -> the sibling modules it imports (at the top, in functions, or for type
    checking only: every import counts)."""
    import ast
    from pathlib import Path

    import devalloc.negotiate as package

    folder = Path(package.__file__).parent
    modules = {path.stem for path in folder.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in folder.glob("*.py"):
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                names = [node.module] if node.module else [a.name for a in node.names]
                edges.update(n.split(".")[0] for n in names if n.split(".")[0] in modules)
            elif isinstance(node, ast.ImportFrom) and node.module:
                parts = node.module.split(".")
                if parts[:2] == ["devalloc", "negotiate"] and len(parts) > 2:
                    edges.add(parts[2])
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    parts = alias.name.split(".")
                    if parts[:2] == ["devalloc", "negotiate"] and len(parts) > 2:
                        edges.add(parts[2])
        edges.discard(path.stem)
        graph[path.stem] = edges
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (as a path that ends where it starts), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"plan": {"explain"}, "explain": {"combine"}, "combine": {"plan"}}) == [
        "combine",
        "plan",
        "explain",
        "combine",
    ]
    assert _cycle({"core": {"copy"}, "copy": set()}) is None


def test_negotiate_modules_import_each_other_without_circles() -> None:
    graph = _package_imports()
    assert {"core", "copy", "plan", "explain", "combine", "records", "api"} <= set(graph)
    assert _cycle(graph) is None, f"import circle: {' -> '.join(_cycle(graph) or [])}"

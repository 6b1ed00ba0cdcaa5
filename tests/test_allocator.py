"""The front door on any machine: profiles and explicit constraints, heaps chosen by properties.

The registry here is a real one over a directory with no heaps (memfd only) or the host's /dev,
so the CPU-only fallback and the "no heap" explanations are exercised for real.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devalloc import limits
from devalloc.allocator import Allocator, heap_request
from devalloc.buffer import Buffer
from devalloc.cli import main
from devalloc.constraints import Constraints, CpuAccess, MemoryRules
from devalloc.devices.discover import Discovery
from devalloc.errors import (
    AllocationLimitError,
    ClosedResourceError,
    NoPlanError,
    OutOfMemoryError,
    UsageError,
    error_from_errno,
)
from devalloc.formats import LayoutRules, fourcc_code
from devalloc.heaps.memfd import MemfdHeap
from devalloc.heaps.properties import HeapProperties
from devalloc.heaps.registry import HeapRegistry
from devalloc.negotiate import NegotiationError, Plan, negotiate

from .conftest import assert_fd_closed, open_fds, require

NV12 = fourcc_code("NV12")
XR24 = fourcc_code("XR24")


@pytest.fixture
def empty_dev(tmp_path: Path) -> Path:
    """A /dev and /sys with nothing in them: only the memfd heap exists."""
    (tmp_path / "dev").mkdir()
    (tmp_path / "sys").mkdir()
    return tmp_path


@pytest.fixture
def alloc(empty_dev: Path) -> Iterator[Allocator]:
    registry = HeapRegistry.discover(str(empty_dev / "dev"), str(empty_dev / "sys"))
    camera = Constraints("camera", "capture", ((NV12, 0), (XR24, 0)), access="write")
    display = Constraints(
        "display",
        "primary",
        ((XR24, 0), (NV12, 0)),
        LayoutRules(pitch_align=64),
        memory=MemoryRules(dma_bits=32),
        access="read",
    )
    allocator = Allocator(registry=registry, discovery=Discovery(), constraints=[camera, display])
    yield allocator
    allocator.close()
    registry.close()


def test_heap_request_follows_the_plan() -> None:
    c = Constraints("npu", "in", ((XR24, 0),), memory=MemoryRules(contiguous=True, dma_bits=32))
    request = heap_request(negotiate([c], 64, 64, cpu_access="w"))
    assert request.contiguous
    assert request.dma_bits == 32
    assert request.cpu_access == "w"
    assert request.size == 64 * 64 * 4
    assert request.device_importable


def test_no_importable_heap_is_explained(alloc: Allocator) -> None:
    with pytest.raises(NoPlanError) as info:
        alloc.allocate(640, 480, usages=["camera", "display"])
    text = str(info.value)
    assert "memfd is not importable by devices" in text
    assert "camera:capture" in text
    assert "display:primary" in text
    assert "fix:" in text


def test_cpu_only_fallback_keeps_the_layout(alloc: Allocator) -> None:
    before = open_fds()
    with alloc.allocate(
        640, 480, usages=["camera", "display:primary"], count=3, cpu_access="w", allow_cpu_only=True
    ) as result:
        assert result.plan.format.name == "NV12"
        assert result.heap_properties.kind == "memfd"
        assert len(result.buffers) == 3
        assert all(b.size >= result.plan.layout.size for b in result.buffers)  # type: ignore[operator]
        assert any("CPU only" in note for note in result.notes)
        assert set(result.unverified) == {"camera:capture", "display:primary"}
        with result.buffers[0].cpu_access("w") as view:
            view[:4] = b"\x01\x02\x03\x04"
        data = json.loads(json.dumps(result.to_json()))
        assert data["plan"]["format"] == "NV12"
        assert len(data["buffers"]) == 3
        fds = [b.fileno() for b in result.buffers]
    assert result.closed
    for fd in fds:
        assert_fd_closed(fd)
    assert open_fds() == before


def test_protected_plan_never_falls_back_to_memfd(alloc: Allocator) -> None:
    secure = Constraints("secure", "scanout", ((XR24, 0),), memory=MemoryRules(protected=True))
    with pytest.raises(NoPlanError, match="protected"):
        alloc.allocate(64, 64, usages=[secure], allow_cpu_only=True)


def test_negotiation_failure_carries_conflicts(alloc: Allocator) -> None:
    other = Constraints("scaler", "in", ((fourcc_code("YUYV"), 0),))
    with pytest.raises(NegotiationError) as info:
        alloc.allocate(64, 64, usages=["camera", other], allow_cpu_only=True)
    assert [c.attribute for c in info.value.conflicts] == ["format"]


def test_bundled_profiles_resolve(alloc: Allocator) -> None:
    found = alloc.resolve("rk3399-vop:primary")
    assert [(c.label, d) for c, d in found] == [("rk3399-vop:primary", None)]
    plan = alloc.plan(1920, 1080, usages=["rkisp1:mainpath", "rk3399-vop:primary"])
    assert plan.format.name == "NV12"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("camera:nope", "has no usage 'nope'"),
        ("no-such-device-anywhere", "no-such-device-anywhere"),
        (("camera",), "a usage is"),
        (42, "a usage is"),
    ],
)
def test_bad_usages(alloc: Allocator, spec: object, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        alloc.allocate(64, 64, usages=[spec], allow_cpu_only=True)  # type: ignore[list-item]


@pytest.mark.parametrize("count", [0, -1, True, 1.5])
def test_bad_count(alloc: Allocator, count: object) -> None:
    before = open_fds()
    with pytest.raises(UsageError, match="count"):
        alloc.allocate(64, 64, usages=["camera"], count=count, allow_cpu_only=True)  # type: ignore[arg-type]
    assert open_fds() == before


def test_usages_must_be_a_list(alloc: Allocator) -> None:
    with pytest.raises(UsageError, match="non-empty list"):
        alloc.allocate(64, 64, usages="camera", allow_cpu_only=True)
    with pytest.raises(UsageError, match="non-empty list"):
        alloc.allocate(64, 64, usages=b"camera", allow_cpu_only=True)  # type: ignore[arg-type]


def test_no_usages_allocates_for_the_application_alone(alloc: Allocator) -> None:
    """Issue 15: no device at all: the application's formats and CPU access decide."""
    before = open_fds()
    with alloc.allocate(64, 48, usages=[], formats=["YUYV"], cpu_access="rw") as result:
        assert result.plan.devices == ()
        assert result.plan.format.name == "YUYV"
        assert result.plan.memory.cpu_access == "rw"
        assert result.unverified == ()
        assert result.notes[0].startswith("no device takes part")
        assert result.to_json()["plan"]["devices"] == []
        (image,) = result.images
        with image[0].cpu_access("rw") as view:
            view[:4] = b"abcd"
            assert bytes(view[:4]) == b"abcd"
    with alloc.allocate(64, 48, usages=[], formats=["NV12:0x0100000000000002"]) as tiled:
        assert tiled.plan.modifier.name == "I915_Y_TILED"
    with pytest.raises(UsageError, match="with no device, the application's formats decide"):
        alloc.allocate(64, 48, usages=[])
    assert open_fds() == before


def test_cli_alloc_without_devices(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["alloc", "--size", "640x480", "--format", "YUYV", "--cpu-access", "rw"])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.startswith("plan for the application alone (no device) at 640x480")
    assert "note: no device takes part" in out
    assert main(["alloc", "--size", "64x48"]) == 2
    assert "with no device, the application's formats decide" in capsys.readouterr().err


def test_per_plane_layout_gives_one_buffer_per_plane(alloc: Allocator) -> None:
    mplane = Constraints("m2m", "out", ((NV12, 0),), buffers="per-plane")
    with alloc.allocate(64, 48, usages=[mplane], count=2, allow_cpu_only=True) as result:
        assert [len(image) for image in result.images] == [2, 2]
        assert [
            b.size >= s
            for b, s in zip(result.images[0], result.plan.layout.buffer_sizes, strict=True)
        ] == [True, True]


def test_vendor_private_layout_cannot_come_from_a_heap(alloc: Allocator) -> None:
    sand = Constraints("hvs", "scanout", ((NV12, 0x0700000000000004),))
    with pytest.raises(UsageError, match="vendor-private"):
        alloc.allocate(64, 64, usages=[sand], allow_cpu_only=True)


def test_closed_allocator(empty_dev: Path) -> None:
    alloc = Allocator(
        discovery=Discovery(), dev=str(empty_dev / "dev"), sysfs=str(empty_dev / "sys")
    )
    alloc.close()
    alloc.close()
    assert alloc.closed
    with pytest.raises(ClosedResourceError):
        alloc.allocate(64, 64, usages=["rk3399-vop:primary"], allow_cpu_only=True)


def test_cli_alloc_cpu_only(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        [
            "alloc",
            "-d",
            "uvc-webcam",
            "-d",
            "rk3399-vop:primary",
            "--size",
            "320x240",
            "--cpu-only",
            "--count",
            "2",
            "--json",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    data = json.loads(out)
    assert data["plan"]["format"] == "NV12"
    assert len(data["buffers"]) == 2


def test_cli_alloc_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alloc", "-d", "uvc-webcam", "-d", "stm32mp1-ltdc", "--size", "64x64"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert main(["alloc", "-d", "uvc-webcam", "--size", "64"]) == 2
    assert main(["alloc", "-d", "nope.toml", "--size", "64x64"]) == 2


def test_cli_examples_main_job(capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(__file__).resolve().parents[1]
    rc = main(["examples", str(root / "examples"), "--no-live", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert data["ok"]
    results = {p["name"]: p["result"] for p in data["pipelines"]}
    assert results["secure-decode-cpu-read"] == "conflict"
    assert results["webcam-display-copy"] == "copy"
    assert results["decode-display"] == "plan"
    assert all(p["ok"] for p in data["pipelines"])
    assert any("read back" in line for p in data["pipelines"] for line in p["lines"])


def test_pool_needs_a_device_importable_heap(alloc: Allocator) -> None:
    with pytest.raises(NoPlanError, match="memfd is not importable"):
        alloc.pool(64, 64, usages=["camera"], count=2)


class _FakeHeap:
    """A heap for the allocator's fallback logic: memfd buffers, out of memory after ``budget``
    allocations (the kernel's part is tested in tests/kernel/test_allocator_live.py)."""

    def __init__(self, name: str, budget: int) -> None:
        self.properties = HeapProperties(
            "dma-heap", name, True, "cached", False, True, 64, "system", None
        )
        self.budget = budget
        self.closed = False

    def allocate(self, size: int, *, name: str | None = None) -> Buffer:
        if self.budget == 0:
            raise error_from_errno(
                errno.ENOMEM, f"allocate {size} bytes from {self.properties.name}"
            )
        self.budget -= 1
        return MemfdHeap().allocate(size)

    def close(self) -> None:
        self.closed = True


def _contiguous_user() -> Constraints:
    return Constraints("dsp", "in", ((XR24, 0),), memory=MemoryRules(contiguous=True))


def test_out_of_memory_falls_back_to_the_next_eligible_heap(empty_dev: Path) -> None:
    registry = HeapRegistry.discover(str(empty_dev / "dev"), str(empty_dev / "sys"))
    first = registry.add(_FakeHeap("cma-a", budget=1))  # one buffer, then ENOMEM
    second = registry.add(_FakeHeap("cma-b", budget=10))
    before = open_fds()
    with Allocator(registry=registry, discovery=Discovery()) as alloc:
        with alloc.allocate(64, 64, usages=[_contiguous_user()], count=2) as result:
            assert result.heap is second
            assert any("fell back to cma-b" in n and "cma-a" in n for n in result.notes)
        # cma-a gave one buffer before refusing: it was closed, not leaked.
        assert open_fds() == before
        with pytest.raises(OutOfMemoryError) as info:
            alloc.allocate(64, 64, usages=[_contiguous_user()], count=11)
        assert "cma-a" in str(info.value)
        assert "cma-b" in str(info.value)
        # Each refusal was counted against its heap, and the buffers cma-a gave were closed.
        assert registry.stats(first).failures == 2
        assert registry.stats(first).live_buffers == 0
        assert registry.stats(second).failures == 1
    assert open_fds() == before
    registry.close()


# --- the size caps (issue 12, defect 1: count x size) ----------------------------------------


@pytest.fixture
def caps() -> Iterator[None]:
    """Explicit caps for the test, the defaults again afterwards."""
    yield
    limits.set_limits()


def _nothing_allocated(before_fds: set[int], before_bytes: int) -> None:
    assert open_fds() == before_fds
    assert limits.in_use() == before_bytes


def test_count_times_size_above_the_total_cap_is_refused_before_any_buffer(caps: None) -> None:
    limits.set_limits(max_buffer=1 << 30, max_total=16 << 30)
    fds, in_use = open_fds(), limits.in_use()
    with (
        Allocator(discover_devices=False) as alloc,
        pytest.raises(AllocationLimitError, match=r"1000 x 268435456 bytes") as info,
    ):
        alloc.allocate(8192, 8192, usages=["vgem"], allow_cpu_only=True, count=1000)
    assert "DEVALLOC_MAX_TOTAL" in str(info.value)
    assert "Allocator.allocate (XRGB8888 8192x8192)" in str(info.value)
    _nothing_allocated(fds, in_use)


def test_issue_reproduction_with_the_machine_defaults() -> None:
    asked = 1000 * (256 << 20)
    require(asked > limits.max_total(), "this machine's default total cap is above 250 GiB")
    fds, in_use = open_fds(), limits.in_use()
    with Allocator(discover_devices=False) as alloc, pytest.raises(AllocationLimitError):
        alloc.allocate(8192, 8192, usages=["vgem"], allow_cpu_only=True, count=1000)
    _nothing_allocated(fds, in_use)


def test_one_buffer_above_the_buffer_cap_is_refused(alloc: Allocator, caps: None) -> None:
    limits.set_limits(max_buffer=64 << 10)
    fds, in_use = open_fds(), limits.in_use()
    with pytest.raises(AllocationLimitError, match="per-buffer cap"):
        alloc.allocate(256, 256, usages=["camera"], formats=["XR24"], allow_cpu_only=True)
    _nothing_allocated(fds, in_use)


def test_the_total_cap_counts_live_buffers(alloc: Allocator, caps: None) -> None:
    size = 64 * 64 * 4
    limits.set_limits(max_total=3 * size + limits.in_use())
    kwargs = {"usages": ["camera"], "formats": ["XR24"], "allow_cpu_only": True}
    with alloc.allocate(64, 64, count=2, **kwargs) as held:  # type: ignore[arg-type]
        assert held.plan.layout.size == size
        fds, in_use = open_fds(), limits.in_use()
        with pytest.raises(AllocationLimitError, match=f"2 x {size} bytes"):
            alloc.allocate(64, 64, count=2, **kwargs)  # type: ignore[arg-type]
        _nothing_allocated(fds, in_use)
    with alloc.allocate(64, 64, count=3, **kwargs) as again:  # type: ignore[arg-type]
        assert len(again.images) == 3


def test_per_plane_images_are_capped_per_buffer_and_in_total(alloc: Allocator, caps: None) -> None:
    mplane = Constraints("m2m", "out", ((NV12, 0),), buffers="per-plane")
    sizes = negotiate([mplane], 128, 128).layout.buffer_sizes
    assert len(sizes) == 2
    # Each buffer fits the per-buffer cap though the image does not: allowed.
    limits.set_limits(max_buffer=max(sizes), max_total=2 * sum(sizes) + limits.in_use())
    with alloc.allocate(128, 128, usages=[mplane], count=2, allow_cpu_only=True) as result:
        assert [len(image) for image in result.images] == [2, 2]
    fds, in_use = open_fds(), limits.in_use()
    with pytest.raises(AllocationLimitError, match="2 buffers per image"):
        alloc.allocate(128, 128, usages=[mplane], count=3, allow_cpu_only=True)
    _nothing_allocated(fds, in_use)


@pytest.mark.parametrize("count", [True, False, 0, -1, 1.5, "2", None, 2**64 * 1.0])
def test_count_must_be_a_positive_int(alloc: Allocator, count: object) -> None:
    with pytest.raises(UsageError, match="count must be a positive integer"):
        alloc.allocate(64, 64, usages=["camera"], count=count, allow_cpu_only=True)  # type: ignore[arg-type]


# --- the plan cache -------------------------------------------------------------------------------

CAM = Constraints("camera", "capture", ((NV12, 0), (XR24, 0)), access="write")
DPY = Constraints("display", "primary", ((XR24, 0), (NV12, 0)), access="read")


def _cached(empty_dev: Path, size: int = 256) -> Allocator:
    registry = HeapRegistry.discover(str(empty_dev / "dev"), str(empty_dev / "sys"))
    return Allocator(registry=registry, discovery=Discovery(), plan_cache_size=size)


def test_a_repeated_allocation_negotiates_once(empty_dev: Path) -> None:
    """The same request again reuses its plan (the same object); the buffers are new each time."""
    with _cached(empty_dev) as alloc:
        plans, fds = [], []
        for _ in range(3):
            with alloc.allocate(64, 32, usages=[CAM, DPY], allow_cpu_only=True) as a:
                plans.append(a.plan)
                fds.append(a.buffers[0].fileno())
            assert a.closed
        assert alloc.negotiations == 1
        assert plans[0] is plans[1] is plans[2]
        assert alloc.plan(64, 32, usages=[CAM, DPY]) is plans[0]  # plan() shares it
        assert alloc.negotiations == 1
        for fd in set(fds):
            assert_fd_closed(fd)
        alloc.registry.close()


@pytest.mark.parametrize(
    "change",
    [
        {"width": 66},
        {"height": 34},
        {"usages": [DPY, CAM]},
        {"usages": [CAM]},
        {"formats": ["NV12"]},
        {"formats": ["XR24", "NV12"]},
        {"cpu_access": "w"},
        {"prefer_uncached": True},
    ],
)
def test_a_change_of_any_input_negotiates_again(empty_dev: Path, change: dict[str, object]) -> None:
    base: dict[str, object] = {"width": 64, "height": 32, "usages": [CAM, DPY]}
    with _cached(empty_dev) as alloc:
        first = alloc.plan(**base)  # type: ignore[arg-type]
        again = alloc.plan(**(base | change))  # type: ignore[arg-type]
        assert alloc.negotiations == 2
        assert again == negotiate(
            change.get("usages", [CAM, DPY]),  # type: ignore[arg-type]
            change.get("width", 64),  # type: ignore[arg-type]
            change.get("height", 32),  # type: ignore[arg-type]
            change.get("formats"),  # type: ignore[arg-type]
            cpu_access=change.get("cpu_access", "none"),  # type: ignore[arg-type]
            prefer_uncached=change.get("prefer_uncached", False),  # type: ignore[arg-type]
            known_layout=True,
        )
        assert alloc.plan(**base) is first  # type: ignore[arg-type]
        assert alloc.negotiations == 2
        alloc.registry.close()


def test_what_is_learned_changes_the_plan(empty_dev: Path) -> None:
    """A learned constraint (what verification keeps in ``learned``) is part of the key: the
    next request is negotiated with it, not served from the cache."""
    with _cached(empty_dev) as alloc:
        before = alloc.plan(64, 32, usages=[CAM, DPY])
        assert not before.memory.contiguous
        stricter = Constraints(
            "display",
            "primary",
            ((XR24, 0), (NV12, 0)),
            memory=MemoryRules(contiguous=True),
            access="read",
        )
        alloc.learned[DPY.label] = stricter
        after = alloc.plan(64, 32, usages=[CAM, DPY])
        assert alloc.negotiations == 2
        assert after.memory.contiguous
        assert after == negotiate([CAM, stricter], 64, 32, known_layout=True)
        alloc.registry.close()


def test_the_cache_is_bounded_and_can_be_off(empty_dev: Path) -> None:
    with _cached(empty_dev, size=2) as alloc:
        for width in (16, 32, 48, 16):  # 16 is the oldest when 48 comes: gone
            alloc.plan(width, 16, usages=[CAM])
        assert alloc.negotiations == 4
        alloc.plan(48, 16, usages=[CAM])
        assert alloc.negotiations == 4
        alloc.registry.close()
    with _cached(empty_dev, size=0) as off:
        off.plan(16, 16, usages=[CAM])
        off.plan(16, 16, usages=[CAM])
        assert off.negotiations == 2
        off.registry.close()


@pytest.mark.parametrize("size", [-1, True, 1.5, "8", None])
def test_bad_plan_cache_size(empty_dev: Path, size: object) -> None:
    with pytest.raises(UsageError, match="plan_cache_size is a count of plans"):
        Allocator(discover_devices=False, dev=str(empty_dev / "dev"), plan_cache_size=size)  # type: ignore[arg-type]


def test_a_bad_argument_is_judged_every_time(empty_dev: Path) -> None:
    """A cached plan for width 1 does not answer width=True (negotiate refuses a bool)."""
    with _cached(empty_dev) as alloc:
        alloc.plan(1, 16, usages=[CAM])
        for _ in range(2):
            with pytest.raises(UsageError):
                alloc.plan(True, 16, usages=[CAM])
        with pytest.raises(UsageError):
            alloc.plan(16, 16, usages=[CAM], formats=[["NV12"]])  # type: ignore[list-item]
        alloc.registry.close()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Allocator]:
    """One allocator across the hypothesis examples, so that later examples hit earlier ones."""
    root = tmp_path_factory.mktemp("shared")
    with Allocator(discover_devices=False, dev=str(root), sysfs=str(root)) as alloc:
        yield alloc


@settings(max_examples=40, deadline=None)
@given(
    width=st.integers(1, 4096),
    height=st.integers(1, 4096),
    usages=st.sampled_from([[CAM], [DPY], [CAM, DPY], [DPY, CAM]]),
    formats=st.sampled_from([None, ["NV12"], ["XR24"], ["XR24", "NV12"], [XR24]]),
    cpu_access=st.sampled_from(["none", "r", "w", "rw"]),
    prefer_uncached=st.booleans(),
)
def test_a_cached_plan_equals_an_uncached_negotiation(
    shared: Allocator,
    width: int,
    height: int,
    usages: list[Constraints],
    formats: list[str | int] | None,
    cpu_access: CpuAccess,
    prefer_uncached: bool,
) -> None:
    def planned() -> Plan:
        return shared.plan(width, height, usages=usages, formats=formats, **options)

    options: dict[str, Any] = {"cpu_access": cpu_access, "prefer_uncached": prefer_uncached}
    try:  # the uncached negotiation, as the allocator asks for it
        fresh = negotiate(usages, width, height, formats, known_layout=True, **options)
    except NegotiationError:
        with pytest.raises(NegotiationError):
            planned()
        return
    assert planned() == fresh  # a miss, or a hit from an earlier example
    assert planned() == fresh  # a hit


def test_allocate_plan_gives_what_allocate_gives(alloc: Allocator) -> None:
    """A plan kept from one allocation allocates again without negotiating: the same plan,
    heap and notes as Allocator.allocate (the caller's notes first), the caps and the CPU-only
    rule still applied, and no negotiation counted."""
    usages = [Constraints("cam", "out", ((fourcc_code("NV12"), 0),))]
    with alloc.allocate(64, 32, usages=usages, count=2, allow_cpu_only=True) as first:
        negotiations = alloc.negotiations
        with alloc.allocate_plan(
            first.plan, count=2, allow_cpu_only=True, notes=["kept"], unverified=["cam:out"]
        ) as again:
            assert again.plan is first.plan
            assert again.heap_properties == first.heap_properties
            assert again.notes == ("kept", *first.notes)
            assert again.unverified == ("cam:out",)
            assert [[b.size for b in i] for i in again.images] == [
                [b.size for b in i] for i in first.images
            ]
        assert alloc.negotiations == negotiations
        with pytest.raises(NoPlanError, match="memfd is not importable"):
            alloc.allocate_plan(first.plan)  # no device heap here, and CPU-only not allowed
        with pytest.raises(AllocationLimitError):
            alloc.allocate_plan(first.plan, count=10**9, allow_cpu_only=True)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"plan": "NV12"}, "plan must be a devalloc Plan"),
        ({"count": 0}, "count must be a positive integer"),
        ({"count": True}, "count must be a positive integer"),
        ({"allow_cpu_only": 1}, "allow_cpu_only is True or False"),
        ({"name": "x" * 40}, "name"),
        ({"notes": "one note"}, "notes is a sequence of strings"),
        ({"unverified": [1]}, "unverified is a sequence of strings"),
    ],
)
def test_allocate_plan_refuses_bad_arguments(
    alloc: Allocator, kwargs: dict[str, Any], match: str
) -> None:
    plan = alloc.plan(16, 16, usages=["display"], formats=["XR24"])
    arguments: dict[str, Any] = {"plan": plan, "allow_cpu_only": True, **kwargs}
    with pytest.raises(UsageError, match=match):
        alloc.allocate_plan(arguments.pop("plan"), **arguments)

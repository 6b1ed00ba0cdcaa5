"""A vendor-private pair is passed over when it cannot be served (issue 12, defect 6).

devalloc allocates from heaps, and the CPU cannot use a vendor-private (opaque) layout: when the
best pair every device accepts has such a layout, the next pair with a computed layout is taken
and the plan's ``skipped`` provenance record (and the allocation's notes) say why.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from devalloc.allocator import Allocator
from devalloc.cli import main
from devalloc.constraints import Constraints, MemoryRules, load_constraints
from devalloc.devices.discover import Discovery
from devalloc.errors import UsageError
from devalloc.formats import fourcc_code, parse_modifier
from devalloc.heaps.registry import HeapRegistry
from devalloc.negotiate import Plan, acceptable_pairs, negotiate, try_negotiate
from devalloc.profiles import profile_names

from .conftest import open_fds

XR24 = fourcc_code("XR24")
NV12 = fourcc_code("NV12")
LINEAR = 0
AFBC = parse_modifier("ARM_AFBC(16x16,YTR,SPARSE)").value
SAND = parse_modifier("BROADCOM_SAND128").value

BUNDLED = [c for name in profile_names() for c in load_constraints(name)]


@pytest.fixture
def alloc(tmp_path: Path) -> Iterator[Allocator]:
    """An allocator over a machine with no heaps: only the CPU-only memfd heap."""
    (tmp_path / "dev").mkdir()
    (tmp_path / "sys").mkdir()
    registry = HeapRegistry.discover(str(tmp_path / "dev"), str(tmp_path / "sys"))
    with Allocator(registry=registry, discovery=Discovery()) as allocator:
        yield allocator
    registry.close()


def afbc_first() -> Constraints:
    return Constraints("vop", "primary", ((XR24, AFBC), (XR24, LINEAR)), access="read")


def test_bundled_profiles_are_all_here() -> None:
    assert len(BUNDLED) == 35


def test_the_best_pair_stays_when_nothing_rules_it_out() -> None:
    plan = negotiate([afbc_first()], 64, 64)
    assert (plan.modifier.value, plan.layout.opaque) == (AFBC, True)
    assert plan.find("skipped") is None


def test_cpu_access_passes_over_a_vendor_private_pair() -> None:
    plan = negotiate([afbc_first()], 64, 64, cpu_access="rw")
    assert plan.modifier.value == LINEAR
    assert plan.layout.size == 64 * 64 * 4
    skipped = plan.find("skipped")
    assert skipped is not None
    assert skipped.forced_by == ("application",)
    assert skipped.note == (
        "XRGB8888 ARM_AFBC(16x16,YTR,SPARSE) skipped: vendor-private modifier, not"
        " CPU-accessible (cpu_access rw: application); took XRGB8888 LINEAR"
    )
    assert skipped.note in plan.explain()
    assert "after 1 vendor-private one(s)" in plan.explain()[0]
    assert Plan.from_json(json.loads(json.dumps(plan.to_json()))) == plan


def test_a_device_that_reads_on_the_cpu_counts_too() -> None:
    reader = Constraints(
        "npu",
        "input",
        ((XR24, AFBC), (XR24, LINEAR)),
        memory=MemoryRules(cpu_access="r"),
    )
    plan = negotiate([reader], 64, 64)
    assert plan.modifier.value == LINEAR
    skipped = plan.find("skipped")
    assert skipped is not None
    assert skipped.forced_by == ("npu:input",)


def test_known_layout_passes_over_a_vendor_private_pair() -> None:
    plan = negotiate([afbc_first()], 64, 64, known_layout=True)
    assert plan.modifier.value == LINEAR
    skipped = plan.find("skipped")
    assert skipped is not None
    assert "cannot be allocated from a heap" in skipped.note


def test_only_vendor_private_pairs_keep_the_best_and_say_so() -> None:
    only = Constraints("hvs", "scanout", ((NV12, SAND),))
    plan = negotiate([only], 64, 64, known_layout=True)
    assert plan.modifier.value == SAND
    assert plan.layout.opaque
    skipped = plan.find("skipped")
    assert skipped is not None
    assert skipped.note.startswith("only vendor-private pairs fit (NV12 BROADCOM_SAND128)")


def test_acceptable_pairs_put_computed_layouts_first_as_negotiate_does() -> None:
    devices = [afbc_first()]
    assert acceptable_pairs(devices, 64, 64) == [(XR24, AFBC), (XR24, LINEAR)]
    for kwargs in ({"cpu_access": "w"}, {"known_layout": True}):
        pairs = acceptable_pairs(devices, 64, 64, **kwargs)
        assert pairs == [(XR24, LINEAR), (XR24, AFBC)]
        plan = try_negotiate(devices, 64, 64, **kwargs)
        assert isinstance(plan, Plan)
        assert (plan.format.fourcc, plan.modifier.value) == pairs[0]


def test_known_layout_must_be_a_bool() -> None:
    with pytest.raises(UsageError, match="known_layout"):
        negotiate([afbc_first()], 64, 64, known_layout=1)  # type: ignore[arg-type]


@pytest.mark.parametrize("usage", BUNDLED, ids=[c.label for c in BUNDLED])
def test_every_bundled_usage_allocates_on_memfd_when_a_linear_pair_exists(
    alloc: Allocator, usage: Constraints
) -> None:
    linear_formats = list(dict.fromkeys(f for f, m in usage.pairs if m == LINEAR))
    for fourcc in linear_formats:
        best = negotiate([usage], 64, 64, [fourcc])
        plan = alloc.plan(64, 64, usages=[usage], formats=[fourcc])
        assert not plan.layout.opaque, f"{usage.label} {fourcc:#x}"
        assert (plan.find("skipped") is not None) == best.layout.opaque
        if usage.memory.protected:
            continue  # memfd is not protected: no heap here; the plan above is what matters
        before = open_fds()
        with alloc.allocate(
            64, 64, usages=[usage], formats=[fourcc], allow_cpu_only=True
        ) as result:
            assert result.plan == plan
            sizes = plan.layout.buffer_sizes
            assert all(b.size >= s for b, s in zip(result.images[0], sizes, strict=True))
            if best.layout.opaque:
                assert any("skipped: vendor-private modifier" in n for n in result.notes)
        assert open_fds() == before
    if not linear_formats:  # nothing LINEAR: a vendor-private plan is still refused, typed
        with pytest.raises(UsageError, match="vendor-private"):
            alloc.allocate(64, 64, usages=[usage], allow_cpu_only=True)


def test_cli_alloc_takes_linear_where_the_best_pair_is_vendor_private(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["alloc", "-d", "rk3399-vop:primary", "--size", "64x64", "-f", "XR24"]
    status = main([*argv, "--cpu-only", "--json"])
    out, err = capsys.readouterr()
    assert (status, err) == (0, "")
    data = json.loads(out)
    assert (data["plan"]["format"], data["plan"]["modifier"]) == ("XRGB8888", "LINEAR")
    assert data["buffers"][0]["size"] >= 64 * 64 * 4
    assert (
        "XRGB8888 ARM_AFBC(16x16,YTR,SPARSE) skipped: vendor-private modifier, its size is the"
        " exporter's, so it cannot be allocated from a heap (known_layout); took XRGB8888 LINEAR"
    ) in data["notes"]

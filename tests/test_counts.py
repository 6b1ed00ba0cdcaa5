"""Buffer counts in negotiation (issue 14, part 1): what each party holds at once, its bounds, and
the plan's count = sum of holds + slack within every min/max, with provenance and conflicts."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devalloc.constraints import BufferCounts, Constraints, loads_device
from devalloc.errors import UsageError
from devalloc.formats import fourcc_code
from devalloc.negotiate import NegotiationError, Plan, negotiate, try_negotiate
from devalloc.negotiate.combine import combine_counts

NV12 = ((fourcc_code("NV12"), 0),)


def _device(name: str, counts: BufferCounts) -> Constraints:
    return Constraints(name, "use", NV12, counts=counts)


def test_without_counts_a_plan_has_one_buffer_as_before() -> None:
    plan = negotiate([_device("a", BufferCounts())], 64, 64)
    assert plan.count == 1
    assert negotiate([_device("a", BufferCounts())], 64, 64, slack=0).count == 1
    assert Plan.from_json(plan.to_json()) == plan
    data = plan.to_json()
    del data["count"]
    assert Plan.from_json(data).count == 1  # plans written before counts existed


def test_the_count_is_the_sum_of_holds_plus_slack_with_provenance() -> None:
    dec = _device("dec", BufferCounts(holds=4))
    dpy = _device("dpy", BufferCounts(holds=2))
    plan = negotiate([dpy, dec], 64, 64, counts=BufferCounts(holds=1), slack=2)
    assert plan.count == 4 + 2 + 1 + 2
    record = plan.find("count")
    assert record is not None
    assert record.rule == "sum"
    assert record.forced_by == ("application", "dec:use", "dpy:use")
    assert dict(record.inputs) == {
        "application": "holds 1",
        "dec:use": "holds 4",
        "dpy:use": "holds 2",
    }
    assert "holds 7 (application 1, dec:use 4, dpy:use 2) + slack 2 = 9" in record.note
    assert any(line.startswith("count 9: holds 7") for line in plan.explain())
    assert Plan.from_json(plan.to_json()) == plan


def test_a_minimum_raises_and_a_maximum_lowers_the_count() -> None:
    raised = negotiate([_device("isp", BufferCounts(holds=2, min_count=5))], 64, 64)
    assert raised.count == 5
    record = raised.find("count")
    assert record is not None
    assert "raised to the min_count 5 of isp:use" in record.note
    lowered = negotiate(
        [_device("dec", BufferCounts(holds=4)), _device("dpy", BufferCounts(max_count=4))],
        64,
        64,
    )
    assert lowered.count == 4  # the slack is what gives way, not what the decoder holds
    record = lowered.find("count")
    assert record is not None
    assert "lowered to the max_count 4 of dpy:use" in record.note
    assert record.forced_by == ("dec:use", "dpy:use")


def test_a_fixed_application_count_is_its_min_and_max() -> None:
    fixed = BufferCounts(min_count=8, max_count=8)
    assert negotiate([_device("dpy", BufferCounts(holds=2))], 64, 64, counts=fixed).count == 8


def test_bounds_that_cannot_meet_are_a_count_conflict_naming_the_devices() -> None:
    dec = _device("dec", BufferCounts(holds=5))
    dpy = _device("dpy", BufferCounts(holds=2, max_count=6))
    result = try_negotiate([dec, dpy], 64, 64)
    assert isinstance(result, tuple)
    (conflict,) = result
    assert conflict.attribute == "count"
    assert conflict.devices == ("dec:use", "dpy:use")
    assert conflict.values == ("holds 5", "holds 2, max 6")
    assert "at least 7 buffers" in conflict.message
    assert "at most 6" in conflict.message
    assert "raise the max_count of dpy:use to at least 7" in conflict.suggestion
    with pytest.raises(NegotiationError) as caught:
        negotiate([dec, dpy], 64, 64)
    assert "count" in [c.attribute for c in caught.value.conflicts]
    # the application's own maximum against a device's minimum
    isp = _device("isp", BufferCounts(min_count=3))
    clash = try_negotiate([isp], 64, 64, counts=BufferCounts(max_count=2))
    assert isinstance(clash, tuple)
    assert clash[0].devices == ("isp:use", "application")
    assert "min_count 3 of isp:use" in clash[0].message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"holds": -1}, "holds is an integer from 0"),
        ({"holds": True}, "holds is an integer from 0"),
        ({"min_count": 1 << 17}, "min_count is an integer from 0"),
        ({"max_count": 0}, "max_count is None or an integer from 1"),
        ({"min_count": 3, "max_count": 2}, "min_count 3 is above max_count 2"),
        ({"holds": 3, "max_count": 2}, "holds 3 is above max_count 2"),
    ],
)
def test_invalid_counts_are_refused(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        BufferCounts(**kwargs)


def test_negotiate_refuses_bad_counts_and_slack() -> None:
    device = [_device("a", BufferCounts())]
    with pytest.raises(UsageError, match="counts is a BufferCounts"):
        negotiate(device, 64, 64, counts=3)  # type: ignore[arg-type]
    for slack in (-1, True, 1 << 17, 1.5):
        with pytest.raises(UsageError, match="slack is an integer"):
            negotiate(device, 64, 64, slack=slack)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="counts is a BufferCounts"):
        Constraints("a", "b", NV12, counts=2)  # type: ignore[arg-type]


DEVICE = """\
device = "dec"
[usages.out]
formats = ["NV12"]
holds = 4
min_count = 5
max_count = 32
"""


def test_device_files_state_counts_per_usage() -> None:
    (usage,) = loads_device(DEVICE, "dec.toml").usages.values()
    assert usage.counts == BufferCounts(4, 5, 32)
    assert Constraints.from_json(usage.to_json()) == usage
    assert usage.to_json()["counts"] == {"holds": 4, "min_count": 5, "max_count": 32}
    assert BufferCounts.from_json({"holds": 2}) == BufferCounts(2)
    with pytest.raises(UsageError, match=r"unknown key counts\.hold"):
        BufferCounts.from_json({"hold": 2})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (DEVICE.replace("max_count = 32", "max_count = 3"), r"dec.toml:6: .*max_count 3 is below"),
        (DEVICE.replace("holds = 4", "holds = 40"), r"dec.toml:6: .*below holds 40"),
        (DEVICE.replace("holds = 4", 'holds = "4"'), r"dec.toml:4: usages.out.holds must be an"),
        (DEVICE.replace("holds = 4", "hold = 4"), r"unknown key usages.out.hold \(did you mean"),
    ],
)
def test_device_file_count_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        loads_device(text, "dec.toml")


# ---------------------------------------------------------------------------------------------
# Properties.

_counts = st.builds(
    BufferCounts,
    holds=st.integers(0, 6),
    min_count=st.integers(0, 12),
    max_count=st.none() | st.integers(12, 30),
) | st.builds(
    lambda holds, low, extra: BufferCounts(holds, low, max(holds, low, 1) + extra),
    st.integers(0, 6),
    st.integers(0, 12),
    st.integers(0, 4),
)


@settings(max_examples=300, deadline=None)
@given(
    parties=st.lists(_counts, min_size=1, max_size=5),
    application=_counts,
    slack=st.integers(0, 3),
    seed=st.integers(0, 1000),
)
def test_count_properties(
    parties: list[BufferCounts], application: BufferCounts, slack: int, seed: int
) -> None:
    devices = [_device(f"d{i}", c) for i, c in enumerate(parties)]
    everyone = [application, *parties]
    floor = max(max(c.min_count for c in everyone), sum(c.holds for c in everyone), 1)
    highs = [c.max_count for c in everyone if c.max_count is not None]
    meets = not highs or floor <= min(highs)
    result = combine_counts(devices, application, slack)
    # a conflict exactly when the bounds cannot meet
    assert (result.conflict is None) == meets
    if meets:
        count = result.count
        assert count is not None
        assert count >= floor  # every minimum, and every buffer held at once
        assert all(count <= high for high in highs)  # every maximum
        assert count == min([max(floor, sum(c.holds for c in everyone) + slack), *highs])
    else:
        assert result.count is None
        assert result.conflict is not None
        assert result.conflict.devices
    # independent of the order of the devices (negotiation sorts them; the rule itself too)
    shuffled = devices[:]
    random.Random(seed).shuffle(shuffled)
    again = combine_counts(sorted(shuffled, key=lambda d: d.label), application, slack)
    assert again == result
    unsorted = combine_counts(shuffled, application, slack)
    assert unsorted.count == result.count
    assert (unsorted.conflict is None) == (result.conflict is None)
    plan = try_negotiate(shuffled, 64, 64, counts=application, slack=slack)
    if meets:
        assert isinstance(plan, Plan)
        assert plan.count == result.count
    else:
        assert isinstance(plan, tuple)
        assert [c.attribute for c in plan] == ["count"]

"""Buffer counts in ``devalloc examples`` and ``devalloc negotiate --pipeline``: a pipeline's holds,
slack and fixed count are negotiated with the devices' own (as ``devalloc size`` does), the
negotiated count is what ``examples`` allocates (capped at MAX_DEMO_COUNT, said so) and what both
commands print and put in --json; Allocator.plan takes counts/slack and caches by them.

The expected counts below are worked out by hand from the rule (docs/negotiation.md): the sum of
what every party holds, plus the slack, raised to every min_count, lowered to every max_count; a
floor above the smallest max_count is a count conflict naming the parties.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devalloc import cli
from devalloc.allocator import Allocator
from devalloc.constraints import BufferCounts, Constraints
from devalloc.errors import NoPlanError, UsageError
from devalloc.formats import fourcc_code
from devalloc.negotiate import NegotiationError, negotiate
from devalloc.pipeline import load_pipeline, pipeline_paths
from devalloc.sizing.compute import size_pipeline

from .conftest import assert_fd_closed

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
MAX_DEMO_COUNT = 4  # devalloc.commands.examples.MAX_DEMO_COUNT, restated: the test's own number

_DEVICE = """\
device = "{name}"

[usages.{usage}]
access = "{access}"
formats = ["NV12"]
holds = {holds}
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A decoder that holds 3 buffers and a display that holds 2, as device files."""
    (tmp_path / "dec.toml").write_text(
        _DEVICE.format(name="dec", usage="out", access="write", holds=3)
    )
    (tmp_path / "dpy.toml").write_text(
        _DEVICE.format(name="dpy", usage="primary", access="read", holds=2)
    )
    return tmp_path


def _pipeline(folder: Path, name: str, top: str, devices: tuple[str, ...]) -> str:
    """A pipeline file of 64x32 NV12 for ``devices`` (file stems) with ``top``-level keys."""
    usage = {"dec": "out", "dpy": "primary"}
    text = f'name = "{name}"\nwidth = 64\nheight = 32\nformats = ["NV12"]\n{top}'
    for device in devices:
        text += f'\n[[devices]]\nprofile = "{device}.toml"\nusage = "{usage[device]}"\n'
    path = folder / f"{name}.toml"
    path.write_text(text)
    return str(path)


def _main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = cli.main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def _examples_json(path: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    status, out, _err = _main(["examples", path, "--no-live", "--json"], capsys)
    data = json.loads(out)
    assert len(data["pipelines"]) == 1
    return status, data["pipelines"][0]


def _images(allocation: dict[str, Any]) -> int:
    return len({b["image"] for b in allocation["buffers"]})


# --- devalloc examples ----------------------------------------------------------------------------


def test_examples_allocate_the_negotiated_count_capped_and_say_so(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # application holds 1 + dec 3 + dpy 2 = 6, + slack 2 = 8; 4 are allocated (the cap)
    path = _pipeline(folder, "held", 'expect = "plan"\nholds = 1\nslack = 2\n', ("dec", "dpy"))
    status, pipe = _examples_json(path, capsys)
    assert status == 0
    assert (pipe["result"], pipe["ok"]) == ("plan", True)
    assert pipe["plan"]["count"] == 8
    note = "holds 6 (application 1, dec:out 3, dpy:primary 2) + slack 2 = 8"
    assert pipe["counts"] == {"buffers": {"negotiated": 8, "allocated": 4, "note": note}}
    assert f"buffers: count 8: {note}" in pipe["lines"]
    assert (
        "buffers: allocating 4 of the 8 negotiated buffers (a demonstration allocates at most 4)"
        in pipe["lines"]
    )
    assert [_images(a) for a in pipe["allocations"]] == [MAX_DEMO_COUNT]
    # the human report says the same
    status, out, _err = _main(["examples", path, "--no-live"], capsys)
    assert status == 0
    assert f"  buffers: count 8: {note}" in out.splitlines()
    assert "  buffers: 4 x NV12 from the memfd heap" in out


def test_examples_below_the_cap_allocate_exactly_the_negotiated_count(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # dpy holds 2, the application 0, slack 1: 3 buffers, all of them allocated
    path = _pipeline(folder, "small", 'expect = "plan"\n', ("dpy",))
    status, pipe = _examples_json(path, capsys)
    assert (status, pipe["ok"]) == (0, True)
    assert pipe["counts"]["buffers"]["negotiated"] == 3
    assert pipe["counts"]["buffers"]["allocated"] == 3
    assert [_images(a) for a in pipe["allocations"]] == [3]
    assert not any("allocating" in line for line in pipe["lines"])
    # slack 0: what is held, 2
    path = _pipeline(folder, "tight", 'expect = "plan"\nslack = 0\n', ("dpy",))
    status, pipe = _examples_json(path, capsys)
    assert (status, pipe["ok"]) == (0, True)
    assert [_images(a) for a in pipe["allocations"]] == [2]
    assert pipe["counts"]["buffers"]["note"] == "holds 2 (dpy:primary 2) + slack 0 = 2"


def test_a_fixed_count_below_what_the_devices_hold_is_a_count_conflict_in_examples(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the devices hold 3 + 2 = 5 at once but the file fixes count = 2: no plan; split into
    # {dec} and {dpy}, the decoder alone still holds 3 > 2, so no copy path either
    path = _pipeline(folder, "fixed", 'expect = "conflict"\ncount = 2\n', ("dec", "dpy"))
    status, pipe = _examples_json(path, capsys)
    assert status == 0
    assert (pipe["result"], pipe["ok"]) == ("conflict", True)
    conflicts = [line for line in pipe["lines"] if line.startswith("conflict: count: ")]
    assert len(conflicts) == 1
    for party in ("application", "dec:out", "dpy:primary"):
        assert party in conflicts[0]
    assert "at least 5 buffers" in conflicts[0]
    assert "copy path: none (needs more than one copy step)" in pipe["lines"]
    assert "allocations" not in pipe
    # a file that expects a plan fails (exit 1), and says why on stderr
    wrong = _pipeline(folder, "wrong", 'expect = "plan"\ncount = 2\n', ("dec", "dpy"))
    status, out, err = _main(["examples", wrong, "--no-live"], capsys)
    assert status == 1
    assert "FAILED: expected plan, got conflict" in out
    assert err.startswith("devalloc: examples: 1 of 1 pipelines did not give what")


def test_a_fixed_count_within_the_bounds_is_allocated(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # dpy holds 2 + slack 1 = 3, raised to the file's count 4 (its min and its max)
    path = _pipeline(folder, "four", 'expect = "plan"\ncount = 4\n', ("dpy",))
    status, pipe = _examples_json(path, capsys)
    assert (status, pipe["ok"]) == (0, True)
    assert pipe["counts"]["buffers"] == {
        "negotiated": 4,
        "allocated": 4,
        "note": "holds 2 (dpy:primary 2) + slack 1 = 3; raised to the min_count 4 of application",
    }
    assert [_images(a) for a in pipe["allocations"]] == [4]


@pytest.fixture(scope="module")
def bundled() -> dict[str, Any]:
    """``devalloc examples examples --no-live --json``, run once: (exit status, JSON by name)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        status = cli.main(["examples", str(EXAMPLES), "--no-live", "--json"])
    data = json.loads(out.getvalue())
    return {"status": status, "pipelines": {p["name"]: p for p in data["pipelines"]}}


def test_the_bundled_examples_still_give_what_they_expect(bundled: dict[str, Any]) -> None:
    assert bundled["status"] == 0
    assert all(p["ok"] for p in bundled["pipelines"].values())
    assert len(bundled["pipelines"]) == len(pipeline_paths(EXAMPLES))


@pytest.mark.parametrize("path", pipeline_paths(EXAMPLES), ids=lambda p: p.stem)
def test_the_bundled_examples_allocate_what_devalloc_size_counts(
    bundled: dict[str, Any], path: Path
) -> None:
    """``devalloc examples`` and ``devalloc size`` negotiate a pipeline with the same counts: the
    count examples reports for each buffer set is the one size_pipeline sizes, and what it
    allocates is that count up to the demonstration's cap."""
    pipe = load_pipeline(path)
    got = bundled["pipelines"][pipe.name]
    try:
        sized = size_pipeline(pipe)
    except NoPlanError:  # no plan and no copy path: nothing counted on either side
        assert got["result"] == "conflict"
        assert "counts" not in got
        return
    except UsageError:  # the exporter decides the size: size refuses, examples does not allocate
        assert got["counts"]["buffers"]["allocated"] == 0
        assert got["counts"]["buffers"]["negotiated"] == got["plan"]["count"]
        return
    label = {"plan": "buffers", "source": "source", "destination": "destination"}
    counts = {label[g.role]: g.count for g in sized.groups}
    assert {k: v["negotiated"] for k, v in got["counts"].items()} == counts
    allocated = [v["allocated"] for v in got["counts"].values()]
    assert allocated == [min(n, MAX_DEMO_COUNT) for n in counts.values()]
    assert [_images(a) for a in got["allocations"]] == allocated


def test_a_bundled_fixed_count_above_the_cap_is_capped(bundled: dict[str, Any]) -> None:
    # decode-display fixes count = 6 (VPU holds 4 + VOP 2 + slack 1 = 7, lowered to 6)
    got = bundled["pipelines"]["decode-display"]
    assert got["counts"]["buffers"]["negotiated"] == 6
    assert got["counts"]["buffers"]["allocated"] == MAX_DEMO_COUNT
    assert any(line.startswith("buffers: allocating 4 of the 6") for line in got["lines"])


# --- devalloc negotiate --pipeline ----------------------------------------------------------------


def test_negotiate_a_pipeline_prints_its_negotiated_count(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _pipeline(folder, "held", 'expect = "plan"\nholds = 1\nslack = 2\n', ("dec", "dpy"))
    status, out, err = _main(["negotiate", "--pipeline", path], capsys)
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "plan for dec:out, dpy:primary at 64x32"
    note = "holds 6 (application 1, dec:out 3, dpy:primary 2) + slack 2 = 8"
    assert f"  count     8 buffers: {note}" in lines
    status, out, err = _main(["negotiate", "-p", path, "--json", "--explain"], capsys)
    assert (status, err) == (0, "")
    data = json.loads(out)
    assert data["count"] == 8
    assert data["pipeline"] == {
        "name": "held",
        "path": path,
        "holds": 1,
        "slack": 2,
        "count": None,
    }
    record = next(p for p in data["provenance"] if p["attribute"] == "count")
    assert record["note"] == note
    assert f"count 8: {note}" in data["explain"]


def test_negotiate_a_pipeline_is_the_api_with_its_counts(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _pipeline(folder, "held", "holds = 1\nslack = 2\n", ("dec", "dpy"))
    status, out, _err = _main(["negotiate", "-p", path, "--json"], capsys)
    assert status == 0
    data = json.loads(out)
    pipe = load_pipeline(path)
    plan = negotiate(
        pipe.constraints(),
        64,
        32,
        ["NV12"],
        counts=BufferCounts(holds=1),
        slack=2,
    )
    assert {k: v for k, v in data.items() if k != "pipeline"} == json.loads(
        json.dumps(plan.to_json())
    )


def test_negotiate_device_form_prints_the_count_of_what_devices_hold(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["negotiate", "-d", str(folder / "dec.toml"), "-d", str(folder / "dpy.toml")]
    status, out, _err = _main([*argv, "--size", "64x32"], capsys)
    assert status == 0
    assert "  count     6 buffers: holds 5 (dec:out 3, dpy:primary 2) + slack 1 = 6" in out


def test_negotiate_a_pipeline_whose_fixed_count_conflicts_exits_3(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _pipeline(folder, "fixed", 'expect = "conflict"\ncount = 2\n', ("dec", "dpy"))
    status, out, err = _main(["negotiate", "--pipeline", path], capsys)
    assert status == 3
    assert err == "devalloc: no plan: 1 conflict\n"
    assert out.splitlines()[0] == "no plan for dec:out, dpy:primary at 64x32: 1 conflict"
    assert "  count: the parties need at least 5 buffers" in out
    status, out, err = _main(["negotiate", "--pipeline", path, "--json"], capsys)
    assert status == 3
    data = json.loads(out)
    assert [c["attribute"] for c in data["conflicts"]] == ["count"]
    assert set(data["conflicts"][0]["devices"]) == {"application", "dec:out", "dpy:primary"}
    assert data["copy_path"] is None
    assert data["pipeline"]["count"] == 2


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--size", "64x64"], "leave out --size"),
        (["-d", "rk3399-vop:primary"], "leave out --device"),
        (["--format", "NV12"], "leave out --format"),
        (["--cpu-access", "none"], "leave out --cpu-access"),
    ],
)
def test_negotiate_pipeline_with_request_options_is_exit_2(
    folder: Path, extra: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _pipeline(folder, "held", "", ("dpy",))
    status, out, err = _main(["negotiate", "--pipeline", path, *extra], capsys)
    assert (status, out) == (2, "")
    assert err.startswith("devalloc: error: --pipeline names the devices")
    assert needle in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--pipeline", "/nonexistent/pipe.toml"], "no such"),
        ([], "required: -d/--device, --size (or --pipeline PIPELINE)"),
    ],
)
def test_negotiate_bad_pipeline_arguments_are_exit_2(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = _main(["negotiate", *argv], capsys)
    assert (status, out) == (2, "")
    assert err.startswith("devalloc: error: ")
    assert needle in err
    assert "Traceback" not in err


# --- Allocator.plan(counts=, slack=) ----------------------------------------------------------

NV12 = ((fourcc_code("NV12"), 0),)
DEC = Constraints("dec", "out", NV12, access="write", counts=BufferCounts(holds=3))
DPY = Constraints("dpy", "primary", NV12, access="read", counts=BufferCounts(holds=2))


@pytest.fixture
def alloc(tmp_path: Path) -> Iterator[Allocator]:
    """An allocator of its own heaps over an empty /dev and /sys (memfd only), no devices."""
    with Allocator(discover_devices=False, dev=str(tmp_path), sysfs=str(tmp_path)) as allocator:
        yield allocator


def test_plan_negotiates_the_application_counts_and_slack(alloc: Allocator) -> None:
    usages = [DEC, DPY]
    plan = alloc.plan(64, 32, usages=usages, counts=BufferCounts(holds=1), slack=2)
    assert plan.count == 3 + 2 + 1 + 2
    assert plan == negotiate(
        usages, 64, 32, known_layout=True, counts=BufferCounts(holds=1), slack=2
    )
    assert alloc.plan(64, 32, usages=usages).count == 3 + 2 + 1  # the defaults: slack 1


def test_the_plan_cache_keys_on_counts_and_slack(alloc: Allocator) -> None:
    usages = [DEC, DPY]
    default = alloc.plan(64, 32, usages=usages)
    assert alloc.negotiations == 1
    # no counts and slack 1 are the defaults: the same request, the same plan
    assert alloc.plan(64, 32, usages=usages, counts=BufferCounts(), slack=1) is default
    assert alloc.plan(64, 32, usages=usages, counts=None) is default
    assert alloc.negotiations == 1
    more = alloc.plan(64, 32, usages=usages, slack=3)
    assert (alloc.negotiations, more.count) == (2, 8)
    held = alloc.plan(64, 32, usages=usages, counts=BufferCounts(holds=2))
    assert (alloc.negotiations, held.count) == (3, 8)
    fixed = alloc.plan(64, 32, usages=usages, counts=BufferCounts(min_count=7, max_count=7))
    assert (alloc.negotiations, fixed.count) == (4, 7)
    assert alloc.plan(64, 32, usages=usages, slack=3) is more
    assert alloc.plan(64, 32, usages=usages, counts=BufferCounts(holds=2)) is held
    assert alloc.negotiations == 4
    # allocate still starts from the default plan
    with alloc.allocate(64, 32, usages=usages, allow_cpu_only=True) as result:
        assert result.plan is default
        fd = result.buffers[0].fileno()
    assert_fd_closed(fd)
    assert alloc.negotiations == 4


def test_plan_with_a_count_conflict_names_the_parties(alloc: Allocator) -> None:
    fixed = BufferCounts(min_count=2, max_count=2)
    for _ in range(2):  # a conflict is never cached as a plan
        with pytest.raises(NegotiationError) as info:
            alloc.plan(64, 32, usages=[DEC, DPY], counts=fixed)
        (conflict,) = info.value.conflicts
        assert conflict.attribute == "count"
        assert set(conflict.devices) == {"application", "dec:out", "dpy:primary"}
    assert alloc.negotiations == 2


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"slack": True}, "slack is an integer"),
        ({"slack": -1}, "slack is an integer"),
        ({"counts": 3}, "counts is a BufferCounts"),
    ],
)
def test_bad_counts_or_slack_are_judged_every_time(
    alloc: Allocator, options: dict[str, Any], needle: str
) -> None:
    alloc.plan(64, 32, usages=[DPY], slack=1)
    for _ in range(2):  # True is not served the plan of slack 1
        with pytest.raises(UsageError, match=needle):
            alloc.plan(64, 32, usages=[DPY], **options)

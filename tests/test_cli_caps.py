"""``-d caps:CAPS``: GStreamer caps as a device usage in ``devalloc negotiate`` and ``alloc``
(in-process and through the service)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devalloc import cli
from devalloc.commands._common import device_usages
from devalloc.constraints import Constraints
from devalloc.errors import UsageError
from devalloc.formats import fourcc_code

from ._service_helpers import service


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = cli.main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def test_caps_arguments_become_numbered_caps_devices() -> None:
    usages = device_usages(
        [
            "caps:video/x-raw,format=NV12",
            "rk3399-vop:primary",
            "caps:video/x-raw,format={ BGRx, NV12 }",
        ]
    )
    assert usages[1] == "rk3399-vop:primary"
    first, third = usages[0], usages[2]
    assert isinstance(first, Constraints)
    assert isinstance(third, Constraints)
    assert (first.label, third.label) == ("caps1:caps", "caps2:caps")
    assert [f for f, _ in first.pairs] == [fourcc_code("NV12")]
    assert [f for f, _ in third.pairs] == [fourcc_code("XR24"), fourcc_code("NV12")]


def test_negotiate_with_caps_and_a_profile(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["negotiate", "-d", "caps:video/x-raw,format=NV12", "-d", "rk3399-vop:primary"]
    status, out, err = _run([*argv, "--size", "64x64"], capsys)
    assert (status, err) == (0, "")
    assert out.splitlines()[0] == "plan for caps1:caps, rk3399-vop:primary at 64x64"
    assert "  format    NV12 (fourcc NV12)" in out.splitlines()


def test_two_caps_that_share_no_format_conflict_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["negotiate", "-d", "caps:video/x-raw,format=NV12", "-d", "caps:video/x-raw,format=BGRx"]
    status, out, _ = _run([*argv, "--size", "64x64", "--json"], capsys)
    assert status == 3
    conflicts = json.loads(out)["conflicts"]
    assert any({"caps1:caps", "caps2:caps"} <= set(c["devices"]) for c in conflicts), conflicts


def test_alloc_with_caps(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["alloc", "-d", "caps:video/x-raw,format=BGRx", "--size", "64x32", "--cpu-only"]
    status, out, err = _run([*argv, "--json"], capsys)
    assert (status, err) == (0, "")
    data = json.loads(out)
    assert data["plan"]["format"] == "XRGB8888"
    assert data["plan"]["devices"] == ["caps1:caps"]


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("caps:", "caps:CAPS needs caps"),
        ("caps:   ", "caps:CAPS needs caps"),
        ("caps:audio/x-raw", "no video format"),
        ("caps:video/x-raw,format=NOT_A_FORMAT", "no video format"),
    ],
)
def test_bad_caps_are_one_line_usage_errors(
    spec: str, match: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(UsageError, match=match):
        device_usages([spec])
    for command in ("negotiate", "alloc"):
        status, out, err = _run([command, "-d", spec, "--size", "8x8"], capsys)
        assert status == 2, (command, out, err)
        assert len(err.strip().splitlines()) == 1
        assert match in err


@given(st.text(max_size=60))
@settings(max_examples=200)
def test_any_caps_text_is_a_plan_a_conflict_or_a_usage_error(text: str) -> None:
    """Whatever follows caps:, the answer is a usage or a typed error, never a traceback."""
    try:
        usages = device_usages(["caps:" + text])
    except UsageError:
        return
    assert isinstance(usages[0], Constraints)


def test_alloc_with_caps_through_the_service() -> None:
    """The client turns the caps into constraints and sends them: the service never reads
    caps (nor files) for a client."""
    with service() as served:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "devalloc.cli",
                "alloc",
                "--service",
                served.path,
                "-d",
                "caps:video/x-raw,format=NV12",
                "--size",
                "64x48",
                "--cpu-only",
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["plan"]["format"] == "NV12"
    assert data["plan"]["devices"] == ["caps1:caps"]

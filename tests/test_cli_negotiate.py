"""`devalloc negotiate`: the plan table, --explain, --json, no-plan reports (exit 3) and bad
input (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devalloc import cli
from devalloc.constraints import load_constraints
from devalloc.negotiate import negotiate

DATA = Path(__file__).parent / "data" / "negotiate"
CAMERA = str(DATA / "camera.toml")
GPU_TEXTURE = f"{DATA / 'gpu.toml'}:texture"
DISPLAY = f"{DATA / 'display.toml'}:primary"
VRAM = str(DATA / "vram.toml")


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = cli.main(["negotiate", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_plan_table(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["-d", CAMERA, "-d", GPU_TEXTURE, "-d", DISPLAY, "--size", "1920x1080"]
    status, out, err = run([*argv, "--cpu-access", "w"], capsys)
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "plan for camera:capture, display:primary, gpu:texture at 1920x1080"
    assert "  format    NV12 (fourcc NV12)" in lines
    assert "  modifier  LINEAR (0x0000000000000000)" in lines
    assert "  size      3133440 bytes in 1 buffer" in lines
    assert "  plane 0: offset          0  pitch    1920  size    2088960  buffer 0" in lines
    assert "  plane 1: offset    2088960  pitch    1920  size    1044480  buffer 0" in lines
    assert any(line.startswith("  memory    contiguous, 32-bit DMA") for line in lines)
    assert "  cache     cached mapping, DMA_BUF_IOCTL_SYNC required" in lines
    assert "why:" not in lines


def test_explain(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["-d", CAMERA, "-d", DISPLAY, "--size", "1920x1080", "--explain"]
    status, out, _err = run(argv, capsys)
    assert status == 0
    assert "why:" in out.splitlines()
    assert (
        "  - plane 0 pitch 1920 aligned to 64 (lcm of camera:capture 16, display:primary 64)" in out
    )
    assert "  - contiguous: required by display:primary" in out
    assert "  - height 1080 aligned to 16 (lcm of camera:capture 16) -> 1088 rows" in out


def test_json_matches_the_api(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["-d", CAMERA, "-d", GPU_TEXTURE, "--size", "640x480", "--format", "YUYV"]
    argv += ["--format", "NV12", "--json"]
    status, out, err = run(argv, capsys)
    assert (status, err) == (0, "")
    data = json.loads(out)
    devices = load_constraints(CAMERA) + load_constraints(GPU_TEXTURE)
    plan = negotiate(devices, 640, 480, ["YUYV", "NV12"])
    assert data == json.loads(json.dumps(plan.to_json()))
    assert data["format"] == "NV12"  # YUYV is not something the GPU samples
    assert "explain" not in data


def test_json_explain_and_cache_options(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["-d", DISPLAY, "--size", "640x480", "--cpu-access", "w", "--prefer-uncached"]
    status, out, _err = run([*argv, "--json", "--explain"], capsys)
    assert status == 0
    data = json.loads(out)
    assert data["cache"]["cpu_mapping"] == "write-combined"
    assert data["format"] == "XRGB8888"
    assert isinstance(data["explain"], list)
    assert data["explain"]


def test_format_filter(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["-d", GPU_TEXTURE, "-d", DISPLAY, "--size", "64x64", "--format", "AR24", "--json"]
    status, out, _err = run(argv, capsys)
    assert status == 0
    assert json.loads(out)["format"] == "ARGB8888"


def test_no_plan_prints_every_conflict_and_the_copy_path(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, err = run(["-d", CAMERA, "-d", VRAM, "--size", "1920x1080"], capsys)
    assert status == 3
    lines = out.splitlines()
    assert lines[0] == "no plan for camera:capture, dgpu:scanout at 1920x1080: 2 conflicts"
    assert lines[1].startswith("  format: no format every device accepts: camera:capture offers")
    assert lines[2].startswith("    suggestion: ")
    assert lines[3].startswith("  location: the devices need memory in different places")
    assert lines[-1] == (
        "copy path: {camera:capture} -> copy (NV12 -> XR24, 3133440 -> 8294400 bytes/frame) ->"
        " {dgpu:scanout}"
    )
    assert err == "devalloc: no plan: 2 conflicts (a copy path is proposed)\n"


def test_no_plan_without_a_copy_path(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["-d", CAMERA, "-d", DISPLAY, "--size", "1920x1080", "--format", "XR24"]
    status, out, _err = run(argv, capsys)
    assert status == 3
    assert "the application accepts only {XRGB8888}" in out
    assert out.splitlines()[-1] == "copy path: none (needs more than one copy step)"


def test_no_plan_json(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _err = run(["-d", CAMERA, "-d", VRAM, "--size", "1920x1080", "--json"], capsys)
    assert status == 3
    data = json.loads(out)
    assert [c["attribute"] for c in data["conflicts"]] == ["format", "location"]
    assert set(data["conflicts"][0]) == {"attribute", "devices", "values", "message", "suggestion"}
    assert data["copy_path"]["source_devices"] == ["camera:capture"]
    assert data["copy_path"]["destination"]["format"] == "XRGB8888"
    argv = ["-d", CAMERA, "-d", DISPLAY, "--size", "5000x100", "--json"]
    status, out, _err = run(argv, capsys)
    assert status == 3
    data = json.loads(out)
    assert [c["attribute"] for c in data["conflicts"]] == ["width"]
    assert data["copy_path"] is None
    assert data["copy_note"] == "needs more than one copy step"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["-d", "tests/data/negotiate/absent.toml", "--size", "64x64"], "no such device file"),
        (["-d", f"{DATA / 'display.toml'}:overlay", "--size", "64x64"], "its usages: primary"),
        (["-d", "no-such-profile", "--size", "64x64"], "no device file or bundled profile"),
        (["-d", CAMERA, "--size", "0x64"], "size '0x64'"),
        (["-d", CAMERA, "--size", "big"], "size 'big' is not WIDTHxHEIGHT"),
        (["-d", CAMERA, "--size=-5x3"], "size '-5x3'"),
        (["-d", CAMERA, "--size", "-5x3"], "size '-5x3' is not WIDTHxHEIGHT"),
        (["-d", CAMERA, "--size", "64x64", "--format", "NV13"], "unknown pixel format 'NV13'"),
        (["-d", CAMERA, "--size", "64x64", "--cpu-access", "all"], "invalid choice: 'all'"),
        (["-d", CAMERA], "--size"),
        (["--size", "64x64"], "--device"),
        (["-d", CAMERA, "-d", CAMERA, "--size", "64x64"], "camera:capture is given twice"),
    ],
)
def test_bad_input_exit_2(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(argv, capsys)
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("devalloc: error: ")
    assert needle in err
    assert "Traceback" not in err


def test_unknown_key_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "cam.toml"
    bad.write_text('device = "cam"\n\n[usages.capture]\nformats = ["NV12"]\nacess = "write"\n')
    status, out, err = run(["-d", str(bad), "--size", "64x64"], capsys)
    assert (status, out) == (2, "")
    assert (
        err
        == f"devalloc: error: {bad}:5: unknown key usages.capture.acess (did you mean access?)\n"
    )


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["negotiate", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out
    assert "--explain" in out
    assert "exit status" in out

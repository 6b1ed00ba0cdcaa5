"""`devalloc formats`, `modifier` and `layout`: output shape, JSON keys and bad input."""

from __future__ import annotations

import json

import pytest

from devalloc import cli


def _json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> object:
    assert cli.main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_formats_table(capsys: pytest.CaptureFixture[str]) -> None:
    rows = _json(["formats"], capsys)
    assert isinstance(rows, list)
    names = {r["name"] for r in rows}
    assert {"NV12", "YUYV", "XRGB8888", "P010", "YUV420"} <= names
    assert cli.main(["formats"]) == 0
    assert "NV12" in capsys.readouterr().out


@pytest.mark.parametrize("spec", ["0x0100000000000002", "I915_Y_TILED", "i915_y_tiled"])
def test_modifier_by_value_and_name(spec: str, capsys: pytest.CaptureFixture[str]) -> None:
    data = _json(["modifier", spec], capsys)
    assert data == {
        "value": "0x0100000000000002",
        "vendor": "INTEL",
        "name": "I915_Y_TILED",
        "spellings": {
            "devalloc": "I915_Y_TILED",
            "modetest": "INTEL_Y_TILED",
            "modetest_exact": True,
            "vendor": "INTEL",
            "macro": "I915_FORMAT_MOD_Y_TILED",
            "hex": "0x0100000000000002",
        },
    }


def test_modifier_as_modetest_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 15: what modetest prints reads back, and is printed back in that form."""
    assert cli.main(["modifier", "ARM_BLOCK_SIZE=16x16,MODE=YTR|SPARSE"]) == 0
    assert capsys.readouterr().out == (
        "0x0800000000000051  ARM_AFBC(16x16,YTR,SPARSE)\n"
        "  modetest  ARM_BLOCK_SIZE=16x16,MODE=YTR|SPARSE\n"
    )
    assert cli.main(["modifier", "INTEL_Y_TILED"]) == 0
    assert capsys.readouterr().out == (
        "0x0100000000000002  I915_Y_TILED\n"
        "  modetest  INTEL_Y_TILED\n"
        "  macro     I915_FORMAT_MOD_Y_TILED\n"
    )


def test_formats_table_shows_gstreamer_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["formats"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "gstreamer" in lines[0]
    xrgb = next(line for line in lines if line.startswith("XRGB8888 "))
    assert xrgb.split()[-2:] == ["BGRx", "XBGR32"]


def test_layout_json(capsys: pytest.CaptureFixture[str]) -> None:
    data = _json(
        ["layout", "NV12", "1920x1080", "--pitch-align", "256", "--height-align", "16"], capsys
    )
    assert isinstance(data, dict)
    assert (data["format"], data["fourcc"], data["modifier"]) == (
        "NV12",
        0x3231564E,
        "0x" + "0" * 16,
    )
    assert (data["width"], data["height"]) == (1920, 1080)
    luma, chroma = data["planes"]
    assert luma == {"offset": 0, "pitch": 2048, "size": 2048 * 1088, "buffer": 0}
    assert chroma == {"offset": 2048 * 1088, "pitch": 2048, "size": 2048 * 544, "buffer": 0}
    assert data["size"] == 2048 * (1088 + 544)


def test_layout_human(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["layout", "YUYV", "640x480"]) == 0
    out = capsys.readouterr().out
    assert "614400 bytes" in out
    assert "pitch    1280" in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["layout", "NV13", "64x64"], "unknown pixel format 'NV13'"),
        (["layout", "NV12", "0x0"], "size '0x0'"),
        (["layout", "NV12", "-5x3"], "size '-5x3'"),
        (["layout", "NV12", "1920x"], "size '1920x'"),
        (["layout", "NV12", "99999999x99999999"], "above the largest"),
        (["layout", "NV12", "64x64", "--pitch-align", "0"], "--pitch-align"),
        (["modifier", "NOT_A_MODIFIER"], "unknown modifier"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert needle in lines[0]

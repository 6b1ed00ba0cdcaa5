"""The CLI's main job and the machine survey (over a fake /dev + /sys tree for the logic)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from devalloc import cli
from devalloc.system import survey


def _fake_tree(root: pathlib.Path) -> tuple[str, str]:
    dev = root / "dev"
    sysfs = root / "sys"
    (dev / "dma_heap").mkdir(parents=True)
    (dev / "dma_heap" / "system").touch(mode=0o600)
    (dev / "dma_heap" / "reserved").touch(mode=0o000)
    (dev / "dri").mkdir()
    for node in ("card0", "renderD128", "by-path"):
        (dev / "dri" / node).touch()
    (dev / "video0").touch()
    (dev / "video10").touch()
    (dev / "video2").touch()
    for name, driver in (("video0", "vivid"), ("video2", "vivid"), ("video10", "vicodec")):
        d = sysfs / "class" / "video4linux" / name
        (d / "device").mkdir(parents=True)
        (d / "name").write_text(f"{driver}-node\n")
        drivers = sysfs / "bus" / "platform" / "drivers" / driver
        drivers.mkdir(parents=True, exist_ok=True)
        (d / "device" / "driver").symlink_to(drivers)
    for node in ("card0", "renderD128"):
        d = sysfs / "class" / "drm" / node / "device"
        d.mkdir(parents=True)
        (d / "modalias").write_text("platform:vgem\n")
    return str(dev), str(sysfs)


def test_survey_of_a_fake_machine(tmp_path: pathlib.Path) -> None:
    dev, sysfs = _fake_tree(tmp_path)
    report = survey(dev=dev, sysfs=sysfs)
    assert [h.name for h in report.dma_heaps] == ["reserved", "system"]
    assert report.udmabuf is None
    # root can read a 000 file, so accessibility is only checked when not root
    if os.geteuid() != 0:
        assert not report.dma_heaps[0].accessible
        assert "permission" in report.dma_heaps[0].reason
    assert [n.path.rsplit("/", 1)[1] for n in report.drm] == ["card0", "renderD128"]
    assert {n.name for n in report.drm} == {"vgem"}
    assert [n.path.rsplit("/", 1)[1] for n in report.v4l2] == ["video0", "video2", "video10"]
    assert report.v4l2[2].details["driver"] == "vicodec"
    assert report.backend == "dma-heap"
    json.dumps(report.to_json())


def test_survey_of_an_empty_machine(tmp_path: pathlib.Path) -> None:
    (tmp_path / "dev").mkdir()
    report = survey(dev=str(tmp_path / "dev"), sysfs=str(tmp_path / "sys"))
    assert (report.dma_heaps, report.udmabuf, report.drm, report.v4l2) == ([], None, [], [])
    assert report.backend == "memfd"


def test_main_job_human(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    assert "dma-heaps" in out
    assert "backend:" in out
    assert "self-test: 1048576 bytes" in out
    assert ": ok" in out


def test_main_job_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["selftest"]["ok"] is True
    assert data["backend"] in {"dma-heap", "udmabuf", "memfd"}
    assert isinstance(data["dma_heaps"], list)


@pytest.mark.parametrize("argv", [["bogus"], ["info", "--frobnicate"]])
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("devalloc: error:")
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_console_script_runs() -> None:
    exe = pathlib.Path(sys.executable).parent / "devalloc"
    proc = subprocess.run([str(exe), "--json"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["selftest"]["ok"] is True

"""The main job on a real kernel: the survey finds the VM's heaps and devices and the self-test
allocates from the dma-heap."""

from __future__ import annotations

import json
import os

import pytest

from devalloc import cli
from devalloc.system import survey

from ..conftest import require
from .conftest import SYSTEM_HEAP

pytestmark = pytest.mark.kernel


def test_survey_finds_heaps_udmabuf_drm_and_v4l2() -> None:
    report = survey()
    require(bool(report.dma_heaps), "no dma-heaps")
    assert "system" in [h.name for h in report.dma_heaps]
    assert report.udmabuf is not None
    assert report.udmabuf.details["size_limit"].endswith("MiB")
    assert {n.name for n in report.drm} >= {"vgem"}
    require(bool(report.v4l2), "no V4L2 nodes (modprobe vivid)")
    assert all(n.details["driver"] == "vivid" for n in report.v4l2 if "vivid" in n.name)
    assert report.backend == "dma-heap"


def test_main_job_allocates_from_the_dma_heap(capsys: pytest.CaptureFixture[str]) -> None:
    require(os.access(SYSTEM_HEAP, os.R_OK), f"{SYSTEM_HEAP} is absent or not accessible")
    assert cli.main([]) == 0
    human = capsys.readouterr().out
    with capsys.disabled():
        print(human)  # the README's example output comes from here
    assert "/dev/dma_heap/system" in human
    assert cli.main(["--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["selftest"]["ok"] is True
    assert data["selftest"]["source"].startswith("dma-heap system")

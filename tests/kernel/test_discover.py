"""Discovery on the test VM's devices: vgem (DRM without KMS), vivid (V4L2), and a KMS device
where the kernel has one (vkms on the full kernel), checked against the kernel asked directly."""

from __future__ import annotations

import json
import os

import pytest

from devalloc.cli import main
from devalloc.constraints import Constraints
from devalloc.devices.discover import (
    MAX_PROBE,
    Discovery,
    DrmInfo,
    V4l2Info,
    discover,
)
from devalloc.devices.learn import import_usage
from devalloc.drm import DrmDevice, drm_nodes_of_driver
from devalloc.errors import UsageError
from devalloc.formats import layout, lookup_format, v4l2_to_drm
from devalloc.formats.modifier import DRM_FORMAT_MOD_LINEAR
from devalloc.uapi.videodev2 import V4l2BufType
from devalloc.v4l2 import V4l2Device

from ..conftest import capability, require

pytestmark = pytest.mark.kernel

VIVID_CAPTURE = "vivid-000-vid-cap"
VIVID_OUTPUT = "vivid-000-vid-out"


@pytest.fixture(scope="module")
def found() -> Discovery:
    return discover()


def _vgem(found: Discovery) -> DrmInfo:
    infos = [d for d in found.drm if d.driver == "vgem"]
    require(len(infos) == 1, "no vgem device (modprobe vgem)")
    return infos[0]


def _vivid(found: Discovery, name: str) -> V4l2Info:
    infos = [d for d in found.v4l2 if d.name == name]
    require(len(infos) == 1, f"no {name} node (modprobe vivid)")
    info = infos[0]
    assert isinstance(info, V4l2Info)
    return info


def test_vgem_is_one_device_with_both_nodes(found: Discovery) -> None:
    info = _vgem(found)
    nodes = drm_nodes_of_driver("vgem")
    assert info.nodes == tuple(nodes)
    assert info.card is not None
    assert info.card.startswith("/dev/dri/card")
    assert info.render is not None
    assert info.render.startswith("/dev/dri/renderD")
    assert info.sysfs == "/sys/devices/platform/vgem"
    assert info.identity in (info.sysfs, *info.by_path)
    assert info.version is not None
    assert info.version.desc == "Virtual GEM provider"
    assert info.prime_import
    assert info.prime_export
    assert info.problems == ()


def test_vgem_dumb_buffers_are_found_despite_get_cap(found: Discovery) -> None:
    info = _vgem(found)
    assert info.dumb
    assert "EOPNOTSUPP" in info.dumb_note
    assert "works" in info.dumb_note
    assert info.kms is False
    assert info.planes == ()


def test_vgem_usage_is_import_of_any_linear_format(found: Discovery) -> None:
    info = _vgem(found)
    assert info.usages == (import_usage(info.name, "vgem"),)
    assert found.find(info.name) is info
    assert found.find(info.render or "") is info


def test_vivid_capture_node(found: Discovery) -> None:
    info = _vivid(found, VIVID_CAPTURE)
    assert info.caps is not None
    assert info.driver == "vivid"
    assert info.sysfs.startswith("/sys/devices/platform/vivid")
    assert [q.usage for q in info.queues] == ["capture"]
    queue = info.queue("capture")
    assert queue.buf_type == V4l2BufType.VIDEO_CAPTURE  # vivid's default: single-planar API
    assert queue.dmabuf is True
    with V4l2Device(info.path) as dev:
        enumerated = [d.pixelformat for d in dev.enum_formats(V4l2BufType.VIDEO_CAPTURE)]
        biggest = dev.try_format(V4l2BufType.VIDEO_CAPTURE, "YUYV", MAX_PROBE, MAX_PROBE)
    assert [f.code for f in queue.formats] == enumerated
    assert (queue.max_width, queue.max_height) == (biggest.width, biggest.height)


def test_vivid_formats_are_mapped_or_listed_never_invented(found: Discovery) -> None:
    for name in (VIVID_CAPTURE, VIVID_OUTPUT):
        for queue in _vivid(found, name).queues:
            for f in queue.formats:
                if f.drm is None:
                    assert f.reason
                    if "big-endian" not in f.reason and "compressed" not in f.reason:
                        with pytest.raises(UsageError):
                            v4l2_to_drm(f.code)
                else:
                    mapping = v4l2_to_drm(f.code)
                    assert (f.drm, f.multi_planar) == (mapping.drm, mapping.multi_planar)
            assert queue.unmapped == tuple(f.v4l2 for f in queue.formats if f.drm is None)


def test_vivid_capture_usage(found: Discovery) -> None:
    info = _vivid(found, VIVID_CAPTURE)
    usage = info.usage("capture")
    mapped = [f.drm.fourcc for f in info.queue("capture").formats if f.drm is not None]
    assert usage.pairs == tuple(dict.fromkeys((f, DRM_FORMAT_MOD_LINEAR) for f in mapped))
    assert (lookup_format("YUYV").fourcc, DRM_FORMAT_MOD_LINEAR) in usage.pairs
    assert usage.access == "write"
    assert usage.buffers == "single"
    assert usage.memory.contiguous is False  # vb2-dma-contig is invisible here: verify learns it
    # vivid pads nothing: every learned rule is "no alignment".
    assert usage.layout.pitch_align == 1
    assert usage.layout.height_align == 1
    assert usage.layout.extra_rows == 0
    assert _vivid(found, VIVID_OUTPUT).usage("output").access == "read"


def test_learned_layouts_agree_with_try_fmt_and_devalloc(found: Discovery) -> None:
    """Every TRY_FMT answer is reproduced by devalloc's layout under the learned rules, except
    where vivid truncates partial chroma (its pitch or size is then the smaller one)."""
    checked = 0
    for name in (VIVID_CAPTURE, VIVID_OUTPUT):
        for queue in _vivid(found, name).queues:
            for f in queue.formats:
                if f.drm is None:
                    continue
                learned = f.learned
                assert learned is not None, f"{name} {f.v4l2}: {f.reason}"
                assert len(learned.samples) >= 1
                for sample, exact in zip(learned.samples, learned.exact, strict=True):
                    ours = layout(f.drm, sample.width, sample.height, rules=learned.rules)
                    assert ours.size is not None
                    if exact:
                        assert ours.planes[0].pitch == sample.bytesperline[0]
                        assert ours.buffer_sizes == sample.sizeimage
                    else:
                        assert ours.size >= sum(sample.sizeimage), (name, f.v4l2, sample)
                    checked += 1
                assert any(learned.exact), f"{name} {f.v4l2}: no TRY_FMT answer reproduced"
    assert checked > 100


def test_vivid_metadata_nodes_have_no_usages(found: Discovery) -> None:
    meta = [d for d in found.v4l2 if d.name.startswith("vivid-000-meta")]
    require(len(meta) == 2, "no vivid metadata nodes (modprobe vivid)")
    for info in meta:
        assert info.queues == ()
        assert info.usages == ()
        with pytest.raises(UsageError, match="has no usage 'capture'"):
            info.usage("capture")


@pytest.mark.needs("kms")
def test_kms_planes_become_usages(found: Discovery) -> None:
    cards = set(capability("kms").nodes)
    kms = [d for d in found.drm if d.kms]
    assert {d.card for d in kms} == cards
    for info in kms:
        assert info.card is not None
        with DrmDevice(info.card) as dev:
            res = dev.resources()
            ids = dev.planes()
        assert (info.max_width, info.max_height) == (res.max_width, res.max_height)
        assert [p.id for p in info.planes] == [p.id for p in ids]
        types = {p.type for p in info.planes}
        assert "primary" in types
        assert types <= {"primary", "overlay", "cursor"}
        for plane in info.planes:
            assert plane.in_formats
            assert set(plane.formats) == {f for f, _ in plane.pairs}
        for usage in info.usages:
            expected: dict[tuple[int, int], None] = {}
            for plane in info.planes:
                if plane.type == usage.usage:
                    for fourcc, modifier in plane.pairs:
                        try:
                            lookup_format(fourcc)
                        except UsageError:
                            continue
                        expected[(fourcc, modifier)] = None
            assert usage.pairs == tuple(expected)
            assert usage.access == "read"
        assert info.usage("primary").max_width == res.max_width


def test_cli_devices_json_carries_the_constraints(
    found: Discovery, capsys: pytest.CaptureFixture[str]
) -> None:
    cam, vgem = _vivid(found, VIVID_CAPTURE), _vgem(found)
    assert main(["devices", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    by_name = {d["name"]: d for d in [*data["drm"], *data["v4l2"]]}
    for info in found.devices():
        usages = by_name[info.name]["usages"]
        assert [Constraints.from_json(u) for u in usages] == list(info.usages)
    assert main(["devices"]) == 0
    table = capsys.readouterr().out
    assert "vivid-000-vid-cap" in table
    assert f"capture ({len(cam.usage('capture').pairs)} pairs)" in table
    assert f"import ({len(vgem.usage('import').pairs)} pairs)" in table
    assert os.path.basename(vgem.card or "") in table

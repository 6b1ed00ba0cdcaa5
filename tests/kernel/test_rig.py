"""The test rig itself: each VM kernel has exactly the capabilities it promises, and the full
kernel's virtual SoC works: a CMA heap, vkms as a KMS device with a writeback connector, and the
V4L2 test drivers (vicodec, vim2m, vimc, visl) found by name and answering QUERYCAP.

Example:
    $ bash tests/vm/run.sh --kernel full -- -m kernel tests/kernel/test_rig.py

On the stock kernel the full-kernel tests skip with the capability reason (the summary expects
those skips there); on the host they skip like every kernel test.
"""

from __future__ import annotations

import ctypes
import gzip
import os
import pathlib
import re
from dataclasses import dataclass

import pytest

from devalloc._fd import ioctl
from devalloc.drm import DrmDevice
from devalloc.heaps.dmaheap import DmaHeap
from devalloc.uapi import drm as uapi_drm
from devalloc.uapi.videodev2 import V4l2BufType, V4l2Cap
from devalloc.v4l2 import V4l2Caps, V4l2Device, v4l2_node_name

from ..conftest import CAPABILITIES, IN_VM, VM_KERNEL, VM_KERNEL_PROVIDES, capability, require

pytestmark = pytest.mark.kernel

FRAGMENT = pathlib.Path(__file__).parents[1] / "vm" / "full-kernel.config"
#: 6.12 names the default CMA area's heap "reserved" (a device-tree area would be "linux,cma").
CMA_HEAP = "/dev/dma_heap/reserved"

DRM_MODE_CONNECTOR_VIRTUAL = uapi_drm.DrmModeConnector.VIRTUAL
DRM_MODE_CONNECTOR_WRITEBACK = uapi_drm.DrmModeConnector.WRITEBACK


@dataclass(frozen=True)
class CardResources:
    """DRM_IOCTL_MODE_GETRESOURCES: the object ids of a KMS card and its size limits."""

    crtcs: tuple[int, ...]
    connectors: tuple[int, ...]
    encoders: tuple[int, ...]
    min_width: int
    max_width: int


def _resources(dev: DrmDevice) -> CardResources:
    """GETRESOURCES twice: the counts, then the id arrays (no framebuffers are asked for)."""
    res = uapi_drm.drm_mode_card_res()
    what = f"list the KMS resources of {dev.description}"
    ioctl(dev.fileno(), uapi_drm.DRM_IOCTL_MODE_GETRESOURCES, res, name="GETRESOURCES", what=what)
    crtcs = (ctypes.c_uint32 * res.count_crtcs)()
    connectors = (ctypes.c_uint32 * res.count_connectors)()
    encoders = (ctypes.c_uint32 * res.count_encoders)()
    res.count_fbs = 0
    res.crtc_id_ptr = ctypes.addressof(crtcs)
    res.connector_id_ptr = ctypes.addressof(connectors)
    res.encoder_id_ptr = ctypes.addressof(encoders)
    ioctl(dev.fileno(), uapi_drm.DRM_IOCTL_MODE_GETRESOURCES, res, name="GETRESOURCES", what=what)
    assert (res.count_crtcs, res.count_connectors, res.count_encoders) == (
        len(crtcs),
        len(connectors),
        len(encoders),
    ), "the KMS resources changed between the two calls"
    return CardResources(
        tuple(crtcs), tuple(connectors), tuple(encoders), res.min_width, res.max_width
    )


def _connector_type(dev: DrmDevice, connector_id: int) -> int:
    conn = uapi_drm.drm_mode_get_connector(connector_id=connector_id)
    ioctl(
        dev.fileno(),
        uapi_drm.DRM_IOCTL_MODE_GETCONNECTOR,
        conn,
        name="DRM_IOCTL_MODE_GETCONNECTOR",
        what=f"query connector {connector_id} of {dev.description}",
    )
    return int(conn.connector_type)


def _meminfo() -> dict[str, int]:
    """/proc/meminfo in kB."""
    with open("/proc/meminfo", encoding="ascii") as f:
        return {k: int(v.split()[0]) for k, _, v in (line.partition(":") for line in f)}


def _kernel_config() -> dict[str, str]:
    """The running kernel's configuration (/proc/config.gz): option -> value, "n" if not set."""
    with gzip.open("/proc/config.gz", "rt", encoding="utf-8") as f:
        return _parse_config(f.read())


def _parse_config(text: str) -> dict[str, str]:
    options = {}
    for line in text.splitlines():
        if m := re.fullmatch(r"(CONFIG_\w+)=(.*)", line):
            options[m.group(1)] = m.group(2)
        elif m := re.fullmatch(r"# (CONFIG_\w+) is not set", line):
            options[m.group(1)] = "n"
    return options


# --- the rig ---------------------------------------------------------------------------------


def test_vm_kernel_has_exactly_the_capabilities_it_promises() -> None:
    require(IN_VM, "this checks the test VM's kernel: it runs in the VM only")
    found = {name for name in CAPABILITIES if capability(name).present}
    # Exact, not a subset: when the stock kernel gains one (say Debian enables the CMA heap),
    # VM_KERNEL_PROVIDES must say so, so that tests needing it stop skipping there.
    assert found == VM_KERNEL_PROVIDES[VM_KERNEL], {
        "missing": sorted(VM_KERNEL_PROVIDES[VM_KERNEL] - found),
        "unexpected": sorted(found - VM_KERNEL_PROVIDES[VM_KERNEL]),
    }


@pytest.mark.needs("ikconfig")
def test_running_kernel_has_every_option_of_the_full_kernel_fragment() -> None:
    # Only the full kernel has /proc/config.gz in the VM; the host's may be any kernel.
    require(IN_VM, "this checks the test VM's full kernel: it runs in the VM only")
    wanted = _parse_config(FRAGMENT.read_text())
    assert len(wanted) >= 30, f"{FRAGMENT} lists only {len(wanted)} options"
    running = _kernel_config()
    wrong = {k: (v, running.get(k, "n")) for k, v in wanted.items() if running.get(k, "n") != v}
    assert not wrong, f"fragment option: (wanted, running): {wrong}"


# --- CMA -------------------------------------------------------------------------------------


@pytest.mark.needs("cma_heap")
def test_cma_heap_is_the_reserved_area_and_allocates() -> None:
    assert CMA_HEAP in capability("cma_heap").nodes
    assert _meminfo()["CmaTotal"] > 0
    with DmaHeap(CMA_HEAP) as heap, heap.allocate(4 << 20) as buf:
        assert buf.size == 4 << 20
        assert buf.info().exp_name == "reserved"
        with buf.cpu_access("w") as view:
            view[:4] = b"head"
            view[-4:] = b"tail"
        with buf.cpu_access("r") as view:
            assert (bytes(view[:4]), bytes(view[-4:])) == (b"head", b"tail")


@pytest.mark.needs("cma_heap", "ikconfig")
def test_cma_size_is_the_configured_one() -> None:
    require(IN_VM, "this checks the test VM's full kernel: it runs in the VM only")
    with open("/proc/cmdline", encoding="ascii") as f:
        cmdline = f.read().split()
    sizes = [a for a in cmdline if a.startswith("cma=")]
    if sizes:
        pytest.fail(f"the VM was booted with {sizes[0]}: this test checks the configured default")
    mbytes = int(_kernel_config()["CONFIG_CMA_SIZE_MBYTES"])
    assert _meminfo()["CmaTotal"] == mbytes * 1024


# --- KMS: vkms -------------------------------------------------------------------------------


def _vkms_card() -> str:
    cards = [n for n in capability("vkms").nodes if os.path.basename(n).startswith("card")]
    assert len(cards) == 1, f"vkms nodes: {capability('vkms').nodes}"
    return cards[0]


@pytest.mark.needs("vkms", "kms")
def test_vkms_is_a_kms_card_with_crtcs_and_connectors() -> None:
    card = _vkms_card()
    assert card in capability("kms").nodes
    with DrmDevice(card) as dev:
        assert dev.version().name == "vkms"
        res = _resources(dev)
        assert res.crtcs, "no CRTC"
        assert res.encoders, "no encoder"
        assert res.connectors, "no connector"
        assert 0 < res.min_width <= res.max_width
        types = [_connector_type(dev, c) for c in res.connectors]
        assert DRM_MODE_CONNECTOR_VIRTUAL in types
        # Writeback connectors stay hidden from clients that did not ask for them.
        assert DRM_MODE_CONNECTOR_WRITEBACK not in types


@pytest.mark.needs("vkms", "kms")
def test_vkms_has_a_writeback_connector_for_atomic_clients() -> None:
    card = _vkms_card()
    with DrmDevice(card) as dev:
        before = _resources(dev)
        dev.set_client_cap(uapi_drm.DRM_CLIENT_CAP_ATOMIC)  # the writeback cap requires it
        dev.set_client_cap(uapi_drm.DRM_CLIENT_CAP_WRITEBACK_CONNECTORS)
        after = _resources(dev)
        assert after.crtcs == before.crtcs
        added = [c for c in after.connectors if c not in before.connectors]
        assert [_connector_type(dev, c) for c in added] == [DRM_MODE_CONNECTOR_WRITEBACK]
    # sysfs names it too: that is what the "kms" capability is detected from.
    assert os.path.isdir(f"/sys/class/drm/{os.path.basename(card)}-Writeback-1")


# --- V4L2 test drivers -----------------------------------------------------------------------


@dataclass(frozen=True)
class V4l2Node:
    """A V4L2 node of a test driver, by its sysfs name, and formats it must offer."""

    driver: str
    name: str
    m2m: bool
    output: frozenset[str] = frozenset()
    capture: frozenset[str] = frozenset()


V4L2_NODES = (
    V4l2Node("vicodec", "stateful-encoder", True, frozenset({"YU12", "NV12"}), frozenset({"FWHT"})),
    V4l2Node("vicodec", "stateful-decoder", True, frozenset({"FWHT"}), frozenset({"YU12", "NV12"})),
    V4l2Node("vicodec", "stateless-decoder", True, frozenset({"SFWH"}), frozenset({"YU12"})),
    V4l2Node("vim2m", "vim2m", True, frozenset({"RGB3", "RGBP"}), frozenset({"RGBP", "YUYV"})),
    V4l2Node("visl", "visl", True, frozenset({"SFWH", "S264"}), frozenset({"NV12", "YU12"})),
    V4l2Node("vimc", "Raw Capture 0", False),
    V4l2Node("vimc", "Raw Capture 1", False),
    V4l2Node("vimc", "RGB/YUV Capture", False, capture=frozenset({"RGB3"})),
)


def _queue(caps: V4l2Caps, output: bool) -> V4l2BufType:
    if output:
        return V4l2BufType.VIDEO_OUTPUT_MPLANE if caps.is_multiplanar else V4l2BufType.VIDEO_OUTPUT
    return V4l2BufType.VIDEO_CAPTURE_MPLANE if caps.is_multiplanar else V4l2BufType.VIDEO_CAPTURE


@pytest.mark.parametrize(
    "node",
    [
        pytest.param(n, marks=pytest.mark.needs(n.driver), id=f"{n.driver}:{n.name}")
        for n in V4L2_NODES
    ],
)
def test_v4l2_test_driver_node_is_found_by_name_and_answers_querycap(node: V4l2Node) -> None:
    nodes = [p for p in capability(node.driver).nodes if v4l2_node_name(p) == node.name]
    assert len(nodes) == 1, f"{node.driver} nodes named {node.name!r}: {nodes}"
    with V4l2Device(nodes[0]) as dev:
        caps = dev.querycap()
        assert caps.driver == node.driver
        assert caps.is_streaming
        m2m = V4l2Cap.VIDEO_M2M | V4l2Cap.VIDEO_M2M_MPLANE
        assert bool(caps.node_caps & m2m) == node.m2m, caps.node_caps
        capture = _queue(caps, output=False)
        assert caps.supports(capture)
        captured = {d.fourcc for d in dev.enum_formats(capture)}
        assert captured, f"{node.name} enumerates no capture format"
        assert node.capture <= captured, sorted(captured)
        if node.m2m:
            output = _queue(caps, output=True)
            assert caps.supports(output)
            assert node.output <= {d.fourcc for d in dev.enum_formats(output)}

"""Kernel-tier fixtures: real dma-heap, udmabuf and DRM nodes (the test VM provides them all)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from devalloc.drm import DrmDevice, drm_nodes_of_driver
from devalloc.heaps.dmaheap import DmaHeap
from devalloc.heaps.udmabuf import UDMABUF_PATH, UdmabufDevice

from ..conftest import require

SYSTEM_HEAP = "/dev/dma_heap/system"


@pytest.fixture(autouse=True)
def _every_kernel_test_checks_fds(no_fd_leak: None) -> None:
    """Each kernel test fails if it leaves an fd open."""


@pytest.fixture
def system_heap() -> Iterator[DmaHeap]:
    require(os.path.exists(SYSTEM_HEAP), f"{SYSTEM_HEAP} is absent (no dma-heap support here)")
    require(os.access(SYSTEM_HEAP, os.R_OK), f"{SYSTEM_HEAP} is not accessible to this user")
    with DmaHeap(SYSTEM_HEAP) as heap:
        yield heap


@pytest.fixture
def udmabuf() -> Iterator[UdmabufDevice]:
    require(os.path.exists(UDMABUF_PATH), f"{UDMABUF_PATH} is absent (no udmabuf support here)")
    require(os.access(UDMABUF_PATH, os.R_OK | os.W_OK), f"{UDMABUF_PATH} is not accessible")
    with UdmabufDevice() as dev:
        yield dev


def _vgem_node(kind: str) -> str:
    nodes = [n for n in drm_nodes_of_driver("vgem") if os.path.basename(n).startswith(kind)]
    require(bool(nodes), f"no vgem {kind} node (modprobe vgem)")
    return nodes[0]


@pytest.fixture
def vgem() -> Iterator[DrmDevice]:
    """vgem's primary node (card*): dumb buffers work there."""
    with DrmDevice(_vgem_node("card")) as dev:
        yield dev


@pytest.fixture
def vgem_render() -> Iterator[DrmDevice]:
    """vgem's render node (renderD*)."""
    with DrmDevice(_vgem_node("renderD")) as dev:
        yield dev

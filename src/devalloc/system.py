"""What this machine offers: dma-heaps, udmabuf, DRM and V4L2 nodes (read from /dev and sysfs).

Example:
    >>> report = survey()
    >>> isinstance(report.backend, str)
    True

Nothing here allocates; a node that cannot be opened is listed with the reason.
"""

from __future__ import annotations

import glob
import os
import platform
from dataclasses import asdict, dataclass, field
from typing import Any

from .drm import drm_driver_name, drm_nodes
from .heaps.dmaheap import heap_paths
from .heaps.udmabuf import size_limit_bytes
from .v4l2 import natural_key, v4l2_node_driver, v4l2_node_name


@dataclass(frozen=True)
class Node:
    """A device node: its path, what it is, and whether this process can open it."""

    path: str
    kind: str
    name: str
    accessible: bool
    reason: str = ""
    details: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Survey:
    """Everything :func:`survey` found."""

    kernel: str
    dma_heaps: list[Node]
    udmabuf: Node | None
    drm: list[Node]
    v4l2: list[Node]
    backend: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _access(path: str, mode: int) -> tuple[bool, str]:
    if os.access(path, mode):
        return True, ""
    if not os.path.exists(path):
        return False, "missing"
    return False, "permission denied (the node is not readable/writable by this user)"


def _drm_nodes(dev: str, sysfs: str) -> list[Node]:
    nodes = []
    for path in drm_nodes(os.path.join(dev, "dri")):
        ok, reason = _access(path, os.R_OK | os.W_OK)
        driver = drm_driver_name(path, sysfs)
        kind = "drm-render" if os.path.basename(path).startswith("renderD") else "drm-card"
        nodes.append(Node(path, kind, driver or "unknown", ok, reason))
    return nodes


def _v4l2_nodes(dev: str, sysfs: str) -> list[Node]:
    nodes = []
    for path in sorted(glob.glob(os.path.join(dev, "video*")), key=natural_key):
        ok, reason = _access(path, os.R_OK | os.W_OK)
        name = v4l2_node_name(path, sysfs)
        driver = v4l2_node_driver(path, sysfs)
        nodes.append(Node(path, "v4l2", name or "unknown", ok, reason, {"driver": driver}))
    return nodes


def survey(dev: str = "/dev", sysfs: str = "/sys") -> Survey:
    """Look at /dev and /sys and report the dma-buf providers and devices found."""
    heaps = []
    for path in heap_paths(os.path.join(dev, "dma_heap")):
        ok, reason = _access(path, os.R_OK)
        heaps.append(Node(path, "dma-heap", os.path.basename(path), ok, reason))
    udmabuf_path = os.path.join(dev, "udmabuf")
    udmabuf = None
    if os.path.exists(udmabuf_path):
        ok, reason = _access(udmabuf_path, os.R_OK | os.W_OK)
        limit = size_limit_bytes()
        details = {"size_limit": f"{limit >> 20} MiB"} if limit else {}
        udmabuf = Node(udmabuf_path, "udmabuf", "udmabuf", ok, reason, details)
    if any(h.accessible for h in heaps):
        backend = "dma-heap"
    elif udmabuf is not None and udmabuf.accessible:
        backend = "udmabuf"
    else:
        backend = "memfd"
    return Survey(
        kernel=platform.release(),
        dma_heaps=heaps,
        udmabuf=udmabuf,
        drm=_drm_nodes(dev, sysfs),
        v4l2=_v4l2_nodes(dev, sysfs),
        backend=backend,
    )

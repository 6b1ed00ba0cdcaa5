"""Shared fixtures: kernel-feature gates, fd-leak checks, the kernel version in the report.

Example:
    >>> import pytest
    >>> @pytest.mark.needs("cma_heap")                               # doctest: +SKIP
    ... def test_cma() -> None:
    ...     path = capability("cma_heap").nodes[0]  # "/dev/dma_heap/reserved"

Two kinds of gate:

- :func:`require` for what every test VM kernel has: it skips on the host and fails in the VM.
- The ``needs`` marker (``@pytest.mark.needs("cma_heap", "kms")``) and :func:`need` for
  capabilities that only some kernels have. A capability is detected from the running kernel
  (``/dev/dma_heap``, ``/sys/class/drm``, ``/sys/class/video4linux/*``, ...; see
  :data:`CAPABILITIES`). When one is absent the test skips with a reason that starts with
  :data:`CAPABILITY_SKIP_PREFIX`, except in the test VM on a kernel that must provide it
  (:data:`VM_KERNEL_PROVIDES`), where it fails. The VM's summary (tests/vm/summary.py) accepts
  those skips on the stock kernel and none on the full kernel.
"""

from __future__ import annotations

import functools
import os
import platform
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, settings

# Speed is measured in bench/, never in unit tests: hypothesis's timing checks (the per-example
# deadline, "input generation is slow") fail on a loaded 2-core CI machine without any bug. Every
# assertion and example count stays as each test sets it.
settings.register_profile("devalloc", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("devalloc")

IN_VM = os.environ.get("DEVALLOC_IN_VM") == "1"

#: Which test-VM kernel this is ("stock" or "full", from tests/vm/run.sh); "" outside the VM.
VM_KERNEL = os.environ.get("DEVALLOC_VM_KERNEL", "stock") if IN_VM else ""

#: What each capability is, and where it is looked for.
CAPABILITIES: dict[str, str] = {
    "system_heap": "the system dma-heap (/dev/dma_heap/system)",
    "cma_heap": "a CMA dma-heap (/dev/dma_heap/* other than system*, e.g. reserved)",
    "udmabuf": "udmabuf (/dev/udmabuf)",
    "dmabuf_sysfs": "dma-buf sysfs statistics (/sys/kernel/dmabuf/buffers, DMABUF_SYSFS_STATS)",
    "debugfs": "dma-buf debugfs (/sys/kernel/debug/dma_buf/bufinfo)",
    "ikconfig": "the kernel's own configuration (/proc/config.gz, IKCONFIG_PROC)",
    "vgem": "a vgem DRM device (/sys/class/drm/card*)",
    "vkms": "a vkms DRM device (/sys/class/drm/card*)",
    "kms": "a DRM card with KMS connectors (/sys/class/drm/cardN-*)",
    "vivid": "vivid V4L2 nodes (/sys/class/video4linux/video*)",
    "vicodec": "vicodec V4L2 nodes (stateful-encoder, stateful-decoder, stateless-decoder)",
    "vim2m": "the vim2m V4L2 mem2mem node",
    "vimc": "vimc V4L2 capture nodes (Raw Capture 0/1, RGB/YUV Capture)",
    "visl": "the visl V4L2 stateless decoder node",
}

#: What each test-VM kernel must provide: in the VM a missing one fails instead of skipping.
VM_KERNEL_PROVIDES: dict[str, frozenset[str]] = {
    "stock": frozenset({"system_heap", "udmabuf", "debugfs", "vgem", "vivid"}),
    "full": frozenset(CAPABILITIES),
}

#: The start of every skip reason for an absent capability (tests/vm/summary.py matches it).
CAPABILITY_SKIP_PREFIX = "capability absent from this kernel: "

#: The V4L2 drivers whose nodes make a capability of the same name.
_V4L2_DRIVERS = ("vivid", "vicodec", "vim2m", "vimc", "visl")


@dataclass(frozen=True)
class Capability:
    """A capability as detected in the running kernel.

    Attributes:
        name: its name (a key of :data:`CAPABILITIES`).
        description: what it is and where it is looked for.
        nodes: what proves it, sorted: device nodes (``/dev/dma_heap/reserved``,
            ``/dev/dri/card1``, ``/dev/video3``) or files; empty when it is absent.
    """

    name: str
    description: str
    nodes: tuple[str, ...]

    @property
    def present(self) -> bool:
        """The running kernel has it."""
        return bool(self.nodes)


@dataclass(frozen=True)
class KernelRoots:
    """Where the kernel's trees are mounted (a fake tree in host tests)."""

    sysfs: str = "/sys"
    dev: str = "/dev"
    proc: str = "/proc"


def _natural(name: str) -> tuple[str, int]:
    m = re.fullmatch(r"(.*?)(\d+)", name)
    return (m.group(1), int(m.group(2))) if m else (name, -1)


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path), key=_natural)
    except OSError:
        return []


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return ""


def _device_driver(sysfs_device: str) -> str:
    """The driver a sysfs device is bound to, else the one its modalias names ("" if neither):
    virtual platform devices such as vgem and vkms have no driver link, only ``platform:vgem``."""
    try:
        return os.path.basename(os.readlink(os.path.join(sysfs_device, "driver")))
    except OSError:
        return _read(os.path.join(sysfs_device, "modalias")).partition(":")[2]


def _drm_nodes(roots: KernelRoots, driver: str) -> tuple[str, ...]:
    base = os.path.join(roots.sysfs, "class", "drm")
    return tuple(
        os.path.join(roots.dev, "dri", name)
        for name in _listdir(base)
        if re.fullmatch(r"(card|renderD)\d+", name)
        and _device_driver(os.path.join(base, name, "device")) == driver
    )


def _kms_cards(roots: KernelRoots) -> tuple[str, ...]:
    """Cards with at least one connector: sysfs lists each as ``cardN-<type>-<index>``."""
    cards = {
        m.group(1)
        for name in _listdir(os.path.join(roots.sysfs, "class", "drm"))
        if (m := re.fullmatch(r"(card\d+)-.+", name))
    }
    return tuple(os.path.join(roots.dev, "dri", c) for c in sorted(cards, key=_natural))


def _v4l2_nodes(roots: KernelRoots, driver: str) -> tuple[str, ...]:
    """video* nodes whose device is bound to ``driver``; without a driver link, those whose sysfs
    name is ``driver`` or starts with ``driver-``."""
    base = os.path.join(roots.sysfs, "class", "video4linux")
    found = []
    for name in _listdir(base):
        if not re.fullmatch(r"video\d+", name):
            continue
        bound = _device_driver(os.path.join(base, name, "device"))
        node_name = _read(os.path.join(base, name, "name"))
        if bound == driver or (not bound and re.fullmatch(rf"{driver}(-.*)?", node_name)):
            found.append(os.path.join(roots.dev, name))
    return tuple(found)


def _files(*paths: str) -> tuple[str, ...]:
    return tuple(p for p in paths if os.path.exists(p))


def detect_capability(name: str, roots: KernelRoots | None = None) -> Capability:
    """Detect one capability in the kernel whose trees are at ``roots`` (default: this one's).

    Raises:
        KeyError: ``name`` is not a known capability.
    """
    description = CAPABILITIES[name]
    roots = roots or KernelRoots()
    heaps = os.path.join(roots.dev, "dma_heap")
    debug = os.path.join(roots.sysfs, "kernel", "debug", "dma_buf", "bufinfo")
    probes: dict[str, Callable[[], tuple[str, ...]]] = {
        "system_heap": lambda: _files(os.path.join(heaps, "system")),
        "cma_heap": lambda: tuple(
            os.path.join(heaps, h) for h in _listdir(heaps) if not h.startswith("system")
        ),
        "udmabuf": lambda: _files(os.path.join(roots.dev, "udmabuf")),
        "dmabuf_sysfs": lambda: _files(os.path.join(roots.sysfs, "kernel", "dmabuf", "buffers")),
        "debugfs": lambda: _files(debug),
        "ikconfig": lambda: _files(os.path.join(roots.proc, "config.gz")),
        "vgem": lambda: _drm_nodes(roots, "vgem"),
        "vkms": lambda: _drm_nodes(roots, "vkms"),
        "kms": lambda: _kms_cards(roots),
        **{d: functools.partial(_v4l2_nodes, roots, d) for d in _V4L2_DRIVERS},
    }
    return Capability(name, description, probes[name]())


@functools.cache
def capability(name: str) -> Capability:
    """The capability ``name`` in the running kernel (detected once per session).

    Raises:
        pytest.UsageError: ``name`` is not a known capability.
    """
    if name not in CAPABILITIES:
        known = ", ".join(CAPABILITIES)
        raise pytest.UsageError(f"unknown capability {name!r}: the known ones are {known}")
    return detect_capability(name)


def capability_skip_reason(missing: list[Capability]) -> str:
    """The skip reason for absent capabilities (it starts with :data:`CAPABILITY_SKIP_PREFIX`)."""
    names = ", ".join(c.name for c in missing)
    details = "; ".join(c.description for c in missing)
    return f"{CAPABILITY_SKIP_PREFIX}{names} [looked for {details}]"


def need(*names: str) -> None:
    """Gate on capabilities (the imperative form of ``@pytest.mark.needs``, e.g. in a fixture).

    Skips when one is absent, except in the test VM on a kernel that must provide it
    (:data:`VM_KERNEL_PROVIDES`): there it fails.
    """
    missing = [c for c in map(capability, names) if not c.present]
    if not missing:
        return
    if IN_VM:
        owed = [c for c in missing if c.name in VM_KERNEL_PROVIDES.get(VM_KERNEL, frozenset())]
        if owed:
            pytest.fail(
                f"the test VM's {VM_KERNEL} kernel must provide this: "
                + "; ".join(f"{c.name} ({c.description})" for c in owed)
            )
    pytest.skip(capability_skip_reason(missing))


def _needed(item: pytest.Item) -> list[str]:
    return [str(n) for mark in item.iter_markers("needs") for n in mark.args]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "needs(*capabilities): run only on a kernel with these capabilities (tests/conftest.py "
        "CAPABILITIES: " + ", ".join(CAPABILITIES) + "); skip with the reason elsewhere",
    )
    if IN_VM and VM_KERNEL not in VM_KERNEL_PROVIDES:
        raise pytest.UsageError(
            f"DEVALLOC_VM_KERNEL={VM_KERNEL!r}: the test VM's kernel is 'stock' or 'full'"
        )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse unknown capability names at collection, so a typo never turns into a skip."""
    for item in items:
        for mark in item.iter_markers("needs"):
            if not mark.args:
                raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.needs() names no capability")
            unknown = [n for n in mark.args if n not in CAPABILITIES]
            if unknown:
                raise pytest.UsageError(
                    f"{item.nodeid}: unknown capability {', '.join(map(repr, unknown))} in "
                    f"@pytest.mark.needs; the known ones are {', '.join(CAPABILITIES)}"
                )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Apply ``@pytest.mark.needs`` before any fixture is set up."""
    names = _needed(item)
    if names:
        need(*names)


def open_fds() -> set[int]:
    """The fds open in this process right now."""
    return {int(n) for n in os.listdir("/proc/self/fd")}


def assert_fd_closed(fd: int) -> None:
    """Prove ``fd`` is closed: fstat must fail with EBADF."""
    with pytest.raises(OSError, match=r"Bad file descriptor") as info:
        os.fstat(fd)
    assert info.value.errno == 9


def require(condition: bool, reason: str) -> None:
    """Skip on a host that lacks a kernel feature; in the test VM a missing feature is a failure."""
    if condition:
        return
    if IN_VM:
        pytest.fail(f"the test VM must provide this: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session", autouse=True)
def _kernel_in_report(record_testsuite_property: Callable[[str, object], None]) -> None:
    record_testsuite_property("kernel", platform.release())
    record_testsuite_property("in_vm", str(IN_VM))
    if IN_VM:
        record_testsuite_property("vm_kernel", VM_KERNEL)


@pytest.fixture
def no_fd_leak() -> Iterator[None]:
    """Fail the test if it leaves any new fd open."""
    before = open_fds()
    yield
    leaked = open_fds() - before
    details = {
        fd: os.readlink(f"/proc/self/fd/{fd}")
        for fd in leaked
        if os.path.exists(f"/proc/self/fd/{fd}")
    }
    assert not leaked, f"fds leaked by the test: {details}"
